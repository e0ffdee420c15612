"""The training-fit benchmark on a smoke reproduce run: it rebuilds each finished row from its
trainer checkpoint, checks it against the recorded test accuracy, measures both accuracies,
keeps stored entries, and refuses checkpoints, records and runs that are not what they say."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import hwquant
from benchmarks import cifar10_train_fit as train_fit
from hwquant.app.bench.evaluate import fp32_accuracy
from hwquant.app.bench.reproduce import Options, build_model, load_baseline, synthetic_splits
from hwquant.app.bench.tiers import get_tier
from hwquant.cli import main
from hwquant.core.checkpoint import load_checkpoint, save_checkpoint
from hwquant.core.errors import ConfigError
from hwquant.data import BatchLoader
from hwquant.qat.recipe import Recipe

ROWS = ("llsq_W4A4", "tables_40")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A smoke reproduce run with one linear and one table row."""
    out = tmp_path_factory.mktemp("run")
    args = ["bench", "reproduce", "--tier", "smoke", "--out", str(out), "--no-step-time"]
    assert main([*args, "--rows", *ROWS]) == 0
    return out


def _argv(result: Path, *runs: Path) -> list[str]:
    return ["--runs", *map(str, runs), "--out", str(result)]


def _copy(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


def test_each_row_is_measured_on_its_training_images_with_its_recorded_test_accuracy(
    run: Path, tmp_path: Path
):
    results = train_fit.main(_argv(tmp_path / "fit.json", run))
    assert sorted(results["rows"]) == [f"{run.name}/resnet20/{row}" for row in ROWS]
    assert results["rows_without_checkpoint"] == []
    (key, baseline), = results["fp32"].items()  # fmt: skip
    state, record = load_baseline(run / "fp32" / "resnet20.ckpt")
    assert key == f"fp32/resnet20/{record['checkpoint_sha256'][:12]}"
    tier = get_tier("smoke")
    splits = synthetic_splits(tier.input_size, 0)
    train = BatchLoader(splits.train, tier.eval_batch, mean=splits.mean, std=splits.std,
                        shuffle=False, augment=False)  # fmt: skip
    options = Options(tier, run, ("resnet20",), ())
    model = build_model("resnet20", options)
    model.load_state_dict(state)
    assert baseline["train_acc"] == fp32_accuracy(model, train)  # measured, not taken from a log
    assert baseline["test_acc"] == record["test_acc"]
    stored = json.loads((run / "rows" / "resnet20" / "llsq_W4A4.json").read_text())
    qat = hwquant.prepare(build_model("resnet20", options), Recipe.from_dict(stored["recipe"]))
    qat.load_state_dict(load_checkpoint(run / "work/resnet20/llsq_W4A4/last.pt")["model"])
    entry = results["rows"][f"{run.name}/resnet20/llsq_W4A4"]
    assert entry["train_acc"] == fp32_accuracy(qat, train)
    for row in ROWS:
        entry = results["rows"][f"{run.name}/resnet20/{row}"]
        stored = json.loads((run / "rows" / "resnet20" / f"{row}.json").read_text())
        assert entry["test_acc"] == stored["fake_quant_acc"]
        assert entry["training"]["epochs"] == stored["training"]["config"]["epochs"]
        assert entry["run"] == str(run) and len(entry["row_record_sha256"]) == 64
    document = json.loads((tmp_path / "fit.json").read_text())
    assert document["config"]["runs"] == [str(run)] and document["machine"]["torch"]


def test_a_second_invocation_keeps_the_stored_entries_and_the_rows_it_could_not_measure(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    committed = _copy(run, tmp_path / "committed")
    shutil.rmtree(committed / "work" / "resnet20" / "tables_40")  # as a clone has it
    first = train_fit.main(_argv(tmp_path / "fit.json", committed))
    assert list(first["rows"]) == [f"{committed.name}/resnet20/llsq_W4A4"]
    assert first["rows_without_checkpoint"] == [f"{committed.name}/resnet20/tables_40"]

    def measured_again(*args: object) -> None:
        raise AssertionError("a stored entry was measured again")

    monkeypatch.setattr(train_fit, "fit", measured_again)
    other = _copy(committed, tmp_path / "other")
    shutil.rmtree(other / "work")
    again = train_fit.main(_argv(tmp_path / "fit.json", other))  # nothing left to measure
    assert (again["fp32"], again["rows"]) == (first["fp32"], first["rows"])
    assert again["rows_without_checkpoint"] == [
        "committed/resnet20/tables_40", "other/resnet20/llsq_W4A4", "other/resnet20/tables_40"
    ]  # fmt: skip


def test_a_row_trained_again_or_a_run_folder_of_the_same_name_is_refused(run: Path, tmp_path: Path):
    first = _copy(run, tmp_path / "a" / "same")
    train_fit.main(_argv(tmp_path / "fit.json", first))
    second = _copy(run, tmp_path / "b" / "same")
    record = second / "rows" / "resnet20" / "llsq_W4A4.json"
    record.write_text(record.read_text().replace('"seed": 0', '"seed": 0 '))  # another record
    with pytest.raises(ConfigError, match=r"holds same/resnet20/llsq_W4A4 measured from .*/a/"):
        train_fit.main(_argv(tmp_path / "fit.json", second))
    with pytest.raises(ConfigError, match=r"both have row same/resnet20/llsq_W4A4"):
        train_fit.main(_argv(tmp_path / "new.json", first, second))
    assert not (tmp_path / "new.json").exists()  # refused before anything was measured


def test_a_checkpoint_or_record_that_is_not_the_rows_end_is_refused(run: Path, tmp_path: Path):
    copy = _copy(run, tmp_path / "edited")
    record_path = copy / "rows" / "resnet20" / "llsq_W4A4.json"
    record = json.loads(record_path.read_text())
    record["fake_quant_acc"] += 1 / 32  # another model than the checkpoint's
    record_path.write_text(json.dumps(record))
    with pytest.raises(ConfigError, match="is not the recorded"):
        train_fit.main([*_argv(tmp_path / "a.json", copy), "--rows", "llsq_W4A4"])
    checkpoint = copy / "work" / "resnet20" / "tables_40" / "last.pt"
    state = load_checkpoint(checkpoint)
    state["epoch"] -= 1  # a row stopped part-way
    save_checkpoint(checkpoint, state)
    with pytest.raises(ConfigError, match=r"is not the end of row .*tables_40 \(epoch 0 of 1"):
        train_fit.main([*_argv(tmp_path / "b.json", copy), "--rows", "tables_40"])


def test_rows_that_one_of_the_runs_has_not_finished_are_refused_before_any_is_measured(
    run: Path, tmp_path: Path
):
    partial = _copy(run, tmp_path / "partial")
    (partial / "rows" / "resnet20" / "tables_40.json").unlink()
    with pytest.raises(ConfigError, match="partial has no finished row tables_40"):
        train_fit.main([*_argv(tmp_path / "fit.json", run, partial), "--rows", "tables_40"])
    assert not (tmp_path / "fit.json").exists()
