"""The training-fit benchmark on a smoke reproduce run: it rebuilds each finished row from its
trainer checkpoint, checks it against the recorded test accuracy, splits the gap, keeps stored
entries, and refuses checkpoints and records that are not the row's."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmarks import cifar10_train_fit as train_fit
from hwquant.app.bench.evaluate import fp32_accuracy
from hwquant.app.bench.reproduce import Options, build_model, load_baseline, synthetic_splits
from hwquant.app.bench.tiers import get_tier
from hwquant.cli import main
from hwquant.core.checkpoint import load_checkpoint, save_checkpoint
from hwquant.core.errors import ConfigError
from hwquant.data import BatchLoader

ROWS = ("llsq_W4A4", "tables_40")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A smoke reproduce run with one linear and one table row."""
    out = tmp_path_factory.mktemp("run")
    args = ["bench", "reproduce", "--tier", "smoke", "--out", str(out), "--no-step-time"]
    assert main([*args, "--rows", *ROWS]) == 0
    return out


def _argv(run: Path, result: Path) -> list[str]:
    return ["--runs", str(run), "--out", str(result)]


def test_each_row_is_measured_with_its_recorded_test_accuracy_and_its_gap_split(
    run: Path, tmp_path: Path
):
    results = train_fit.main(_argv(run, tmp_path / "fit.json"))
    assert sorted(results["rows"]) == [f"{run.name}/resnet20/{row}" for row in ROWS]
    assert results["rows_without_checkpoint"] == []
    (key, baseline), = results["fp32"].items()  # fmt: skip
    state, record = load_baseline(run / "fp32" / "resnet20.ckpt")
    assert key == f"fp32/resnet20/{record['checkpoint_sha256'][:12]}"
    tier = get_tier("smoke")
    splits = synthetic_splits(tier.input_size, 0)
    model = build_model("resnet20", Options(tier, run, ("resnet20",), ()))
    model.load_state_dict(state)
    train = BatchLoader(splits.train, tier.eval_batch, mean=splits.mean, std=splits.std,
                        shuffle=False, augment=False)  # fmt: skip
    assert baseline["train_acc"] == fp32_accuracy(model, train)  # measured, not taken from a log
    assert baseline["test_acc"] == record["test_acc"]
    for row in ROWS:
        entry = results["rows"][f"{run.name}/resnet20/{row}"]
        stored = json.loads((run / "rows" / "resnet20" / f"{row}.json").read_text())
        assert entry["test_acc"] == stored["fake_quant_acc"]
        assert entry["fit_deficit"] == baseline["train_acc"] - entry["train_acc"]
        assert entry["test_gap"] == pytest.approx(
            entry["fit_deficit"] + entry["generalisation_excess"]
        )
        assert entry["training"]["epochs"] == stored["training"]["config"]["epochs"]
    document = json.loads((tmp_path / "fit.json").read_text())
    assert document["config"]["runs"] == [str(run)] and document["machine"]["torch"]


def test_a_second_invocation_keeps_the_stored_entries(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    first = train_fit.main(_argv(run, tmp_path / "fit.json"))

    def measured_again(*args: object) -> None:
        raise AssertionError("a stored entry was measured again")

    monkeypatch.setattr(train_fit, "fit", measured_again)
    again = train_fit.main(_argv(run, tmp_path / "fit.json"))
    assert (again["fp32"], again["rows"]) == (first["fp32"], first["rows"])


def test_a_row_without_its_trainer_checkpoint_is_named_not_measured(run: Path, tmp_path: Path):
    copy = tmp_path / "committed"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("tables_40"))
    shutil.copy2(run / "rows" / "resnet20" / "tables_40.json", copy / "rows" / "resnet20")
    results = train_fit.main(_argv(copy, tmp_path / "fit.json"))
    assert list(results["rows"]) == [f"{copy.name}/resnet20/llsq_W4A4"]
    assert results["rows_without_checkpoint"] == [f"{copy.name}/resnet20/tables_40"]


def test_a_checkpoint_or_record_that_is_not_the_rows_end_is_refused(run: Path, tmp_path: Path):
    copy = tmp_path / "edited"
    shutil.copytree(run, copy)
    record_path = copy / "rows" / "resnet20" / "llsq_W4A4.json"
    record = json.loads(record_path.read_text())
    record["fake_quant_acc"] += 1 / 32  # another model than the checkpoint's
    record_path.write_text(json.dumps(record))
    with pytest.raises(ConfigError, match="is not the recorded"):
        train_fit.main([*_argv(copy, tmp_path / "a.json"), "--rows", "llsq_W4A4"])
    checkpoint = copy / "work" / "resnet20" / "tables_40" / "last.pt"
    state = load_checkpoint(checkpoint)
    state["epoch"] -= 1  # a row stopped part-way
    save_checkpoint(checkpoint, state)
    with pytest.raises(ConfigError, match=r"is not the end of row .*tables_40 \(epoch 0 of 1"):
        train_fit.main([*_argv(copy, tmp_path / "b.json"), "--rows", "tables_40"])
    with pytest.raises(ConfigError, match="has no finished row msq_W4A4"):
        train_fit.main([*_argv(copy, tmp_path / "c.json"), "--rows", "msq_W4A4"])
