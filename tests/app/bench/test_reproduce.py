"""``hwquant bench reproduce``: the smoke tier end to end, resume, refusals and bad input."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

import hwquant
from hwquant.app.bench.reproduce import (
    Options,
    load_tier_data,
    reproduce,
    select_models,
    synthetic_splits,
)
from hwquant.app.bench.reproduce import settings_of as reproduce_settings
from hwquant.app.bench.rows import ROW_KINDS, all_rows, select_rows
from hwquant.app.bench.tiers import TIERS, get_tier
from hwquant.app.train import Trainer
from hwquant.cli import main
from hwquant.core.checkpoint import load_checkpoint
from hwquant.core.errors import ConfigError, DataError, UnsupportedLayerError
from hwquant.core.provenance import file_sha256


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output directory of one smoke run of the whole table through the CLI."""
    out = tmp_path_factory.mktemp("smoke")
    assert main(["bench", "reproduce", "--tier", "smoke", "--out", str(out)]) == 0
    return out


def test_smoke_run_has_every_row_kind_and_engine_equals_fake_quant(smoke: Path):
    document = json.loads((smoke / "results.json").read_text())
    results = document["results"]
    assert results["complete"] and results["all_exact"]
    rows = results["rows"]
    assert [r["row"] for r in rows] == [r.name for r in all_rows()]
    assert {r["kind"] for r in rows} == set(ROW_KINDS)
    for row in rows:
        assert row["status"] == "done"
        assert row["test_images"] == 32
        assert row["images_with_unequal_outputs"] == 0
        assert row["fake_quant_acc"] == row["engine_acc"]
        widths = row["accumulators"]["max"]
        assert 2 <= widths["worst_case_bits"] <= 62
        if row["kind"] != "tables":  # observed never exceeds the worst case
            assert widths["observed_bits"] <= widths["worst_case_bits"]
        assert row["seed"] == 0 and row["command"].startswith("python -m hwquant bench")
        assert row["wall_seconds"] > 0
    assert set(results["fp32"]) == {"resnet20"}
    ratios = results["step_time"]["resnet20"]["qat_over_fp32"]
    assert set(ratios) == {"llsq", "nonuniform", "msq", "tables"}
    assert all(r > 0 for r in ratios.values())
    assert document["machine"]["torch"] and document["command"] == rows[0]["command"]
    markdown = (smoke / "results.md").read_text()
    assert all(f"| resnet20 | {row.name} |" in markdown for row in all_rows())


def test_resume_skips_finished_rows_without_needing_the_fp32_weights(smoke: Path):
    before = (smoke / "rows" / "resnet20" / "llsq_W4A4.json").read_bytes()
    (smoke / "fp32" / "resnet20.ckpt").unlink()  # no pending row: the weights are not read
    outcome = reproduce(
        Options(
            TIERS["smoke"],
            smoke,
            ("resnet20",),
            select_rows(["llsq"]),
            resume=True,
            step_time=False,
        )
    )
    assert outcome["ran"] == []
    llsq = ["llsq_W4A4", "llsq_W3A3", "llsq_W2A2", "llsq_W2A8"]
    assert outcome["skipped"] == [f"resnet20/{row}" for row in llsq]
    assert (smoke / "rows" / "resnet20" / "llsq_W4A4.json").read_bytes() == before
    assert outcome["results"]["fp32"]["resnet20"]["test_acc"] > 0


def test_resume_refuses_a_stored_row_whose_recipe_changed_in_code(smoke: Path, tmp_path: Path):
    out = tmp_path / "run"
    shutil.copytree(smoke, out)
    path = out / "rows" / "resnet20" / "llsq_W4A4.json"
    record = json.loads(path.read_text())
    record["recipe"]["weight_bits"] = 8  # as if the row had been redefined since it ran
    path.write_text(json.dumps(record))
    options = Options(TIERS["smoke"], out, ("resnet20",), select_rows(["llsq_W4A4"]), resume=True)
    with pytest.raises(ConfigError, match=r"llsq_W4A4.*weight_bits: stored 8, now 4.*delete"):
        reproduce(replace(options, step_time=False))


def test_resume_refuses_a_stored_row_trained_with_other_qat_settings(smoke: Path, tmp_path):
    """A row trained under bf16 autocast is not reported beside rows trained without it (the
    trainer's settings changed in code since it ran): the difference is named."""
    out = tmp_path / "run"
    shutil.copytree(smoke, out)
    path = out / "rows" / "resnet20" / "llsq_W4A4.json"
    record = json.loads(path.read_text())
    record["training"]["config"] |= {"amp": True, "cpu_amp": True}
    path.write_text(json.dumps(record))
    options = Options(TIERS["smoke"], out, ("resnet20",), select_rows(["llsq_W4A4"]), resume=True)
    with pytest.raises(ConfigError, match=r"llsq_W4A4.*train\.amp: stored True, now False"):
        reproduce(replace(options, step_time=False))


def test_resume_refuses_a_stored_row_with_a_training_setting_that_no_longer_exists(
    smoke: Path, tmp_path
):
    """A stored row's training setting that the trainer no longer has is named, not a
    TypeError from rebuilding the stored configuration."""
    out = tmp_path / "run"
    shutil.copytree(smoke, out)
    path = out / "rows" / "resnet20" / "llsq_W4A4.json"
    record = json.loads(path.read_text())
    record["training"]["config"]["mixup_alpha"] = 2
    path.write_text(json.dumps(record))
    options = Options(TIERS["smoke"], out, ("resnet20",), select_rows(["llsq_W4A4"]), resume=True)
    with pytest.raises(ConfigError, match=r"train\.mixup_alpha: stored 2, no longer a setting"):
        reproduce(replace(options, step_time=False))


def test_a_resumed_run_reports_the_step_times_it_measured_before(smoke: Path, monkeypatch):
    stored = json.loads((smoke / "step_time.json").read_text())
    assert set(stored) == {"resnet20"}

    def time_again(*args, **kwargs):
        raise AssertionError("a resumed run timed the steps again")

    monkeypatch.setattr("hwquant.app.bench.reproduce.measure_step_times", time_again)
    rows = select_rows(["llsq_W4A4"])
    outcome = reproduce(Options(TIERS["smoke"], smoke, ("resnet20",), rows, resume=True))
    assert outcome["ran"] == [] and outcome["results"]["step_time"] == stored


def test_a_row_prepare_refuses_is_recorded_as_refused(tmp_path: Path, monkeypatch):
    """Every built-in model is accepted by every scheme now (MobileNetV2's depthwise convs were
    the last a scheme refused), so a refusal is made here: the row is recorded with the reason,
    not trained, and the run goes on."""
    reason = "'features.1.conv.0' (Conv2d) has no table-unit form. Fix: use another scheme."

    def refuse(model, recipe):
        raise UnsupportedLayerError(reason)

    monkeypatch.setattr(hwquant, "prepare", refuse)
    outcome = reproduce(
        Options(
            TIERS["smoke"], tmp_path, ("mobilenetv2",), select_rows(["tables_40"]), step_time=False
        )
    )
    (row,) = outcome["results"]["rows"]
    assert row["status"] == "refused" and row["reason"] == reason
    assert "refused" in (tmp_path / "results.md").read_text()


@pytest.mark.parametrize(
    ("argv", "allowed"),
    [
        (["--models", "alexnet"], "resnet20, resnet18, vgg_small, mobilenetv2"),
        (["--rows", "llsq_W8A8"], "llsq_W4A4"),
        (["--epochs-qat", "0"], ">= 1"),
        (["--qat-lr", "0"], "finite number above 0"),
        (["--qat-lr", "-0.01"], "finite number above 0"),
        (["--qat-lr", "nan"], "finite number above 0"),
        (["--qat-lr", "inf"], "finite number above 0"),
    ],
)
def test_bad_arguments_are_config_errors(argv, allowed, capsys):
    assert main(["bench", "reproduce", "--tier", "smoke", *argv]) == 2
    err = capsys.readouterr().err
    assert "Fix:" in err and allowed in err


def test_unknown_names_raise_config_error_listing_allowed_values():
    with pytest.raises(ConfigError, match="gpu, cpu, cpu-full, cpu-long, smoke"):
        get_tier("tpu")
    with pytest.raises(ConfigError, match="mobilenetv2"):
        select_models(["resnet50"], TIERS["gpu"])
    with pytest.raises(ConfigError, match="tables_320"):
        select_rows(["tables_80"])


def test_unknown_tier_is_a_usage_error(capsys):
    assert main(["bench", "reproduce", "--tier", "tpu"]) == 2
    assert "gpu" in capsys.readouterr().err


def test_missing_cifar_data_names_the_fix(tmp_path: Path):
    options = Options(
        TIERS["cpu"], tmp_path, ("resnet20",), select_rows(["llsq_W4A4"]),
        data_root=tmp_path / "missing.tar.gz",
    )  # fmt: skip
    with pytest.raises(DataError, match=r"does not exist\. Fix: .*cifar10-jpeg-q75\.tar\.gz"):
        reproduce(options)


def test_gpu_tier_without_cuda_names_the_fix(tmp_path: Path, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    options = Options(TIERS["gpu"], tmp_path, ("resnet18",), select_rows(None))
    with pytest.raises(ConfigError, match=r"Fix: .*--tier cpu"):
        reproduce(options)


def test_bf16_tier_on_a_cpu_without_native_bf16_names_no_amp(tmp_path: Path, monkeypatch):
    monkeypatch.setattr("hwquant.app.bench.reproduce.cpu_has_native_bf16", lambda: False)
    rows = select_rows(["llsq_W4A4"])
    missing = tmp_path / "missing.tar.gz"
    with pytest.raises(ConfigError, match=r"no native bf16 kernels.*Fix: add --no-amp"):
        reproduce(Options(TIERS["cpu-long"], tmp_path, ("resnet20",), rows, data_root=missing))
    assert not (tmp_path / "settings.json").exists()  # refused before anything is written
    float32 = Options(get_tier("cpu-long", amp=False), tmp_path, ("resnet20",), rows,
                      data_root=missing)  # fmt: skip
    with pytest.raises(DataError):  # past the check: it goes on to read the data
        reproduce(float32)
    assert json.loads((tmp_path / "settings.json").read_text())["tier"]["amp"] is False


def test_no_amp_reaches_the_tier_from_the_command_line(tmp_path: Path, monkeypatch, capsys):
    """--no-amp on a bf16 tier: past the bf16 check (the run stops at the missing data) with
    the tier's amp off in settings.json, and spelled out in the command a row records."""
    monkeypatch.setattr("hwquant.app.bench.reproduce.cpu_has_native_bf16", lambda: False)
    missing = ["--data-root", str(tmp_path / "missing.tar.gz"), "--rows", "llsq_W4A4"]
    out = tmp_path / "long"
    args = ["bench", "reproduce", "--tier", "cpu-long", "--out", str(out), *missing]
    assert main(args) == 2 and "Fix: add --no-amp" in capsys.readouterr().err
    assert main([*args, "--no-amp"]) == 1 and "does not exist" in capsys.readouterr().err
    assert json.loads((out / "settings.json").read_text())["tier"]["amp"] is False
    smoke = ["bench", "reproduce", "--tier", "smoke", "--out", str(tmp_path / "smoke")]
    assert main([*smoke, "--rows", "llsq_W4A4", "--no-step-time", "--no-amp"]) == 0
    row = json.loads((tmp_path / "smoke" / "rows" / "resnet20" / "llsq_W4A4.json").read_text())
    assert row["command"].endswith("--no-amp")


def test_a_spent_time_budget_starts_nothing_and_leaves_the_run_incomplete(tmp_path: Path):
    options = Options(TIERS["smoke"], tmp_path, ("resnet20",), select_rows(None), stop_after=0)
    outcome = reproduce(options)
    assert outcome["stopped"] and outcome["ran"] == []
    assert not outcome["results"]["complete"] and outcome["results"]["rows"] == []
    assert not (tmp_path / "fp32").exists()


def test_resume_with_other_settings_is_refused_naming_the_difference(tmp_path, monkeypatch):
    args = ["bench", "reproduce", "--tier", "smoke", "--out", str(tmp_path), "--rows", "llsq_W4A4"]
    assert main([*args, "--no-step-time"]) == 0
    assert main([*args, "--no-step-time"]) == 2  # a finished run is not overwritten
    with pytest.raises(ConfigError, match=r"seed: stored 0, now 1"):
        reproduce(replace(_options(tmp_path), seed=1, resume=True))
    with pytest.raises(ConfigError, match=r"tier\.epochs_qat: stored 1, now 2"):
        reproduce(replace(_options(tmp_path), tier=get_tier("smoke", epochs_qat=2), resume=True))
    with pytest.raises(ConfigError, match=r"tier\.qat_lr: stored 0\.005, now 0\.02"):
        reproduce(replace(_options(tmp_path), tier=get_tier("smoke", qat_lr=0.02), resume=True))
    monkeypatch.setattr("hwquant.app.bench.reproduce.cpu_has_native_bf16", lambda: True)
    with pytest.raises(ConfigError, match=r"tier\.amp: stored False, now True"):
        reproduce(replace(_options(tmp_path), tier=get_tier("smoke", amp=True), resume=True))


def test_a_row_seed_resamples_the_rows_from_the_same_fp32_weights(tmp_path):
    """--row-seed trains the rows again from the FP32 checkpoint of --seed (copied, not
    retrained) with another QAT seed: recorded per row and in the settings, which then refuse
    a resume with another row seed, and a resume into the seed-0 run refuses it too."""
    first_out, out = tmp_path / "seed0", tmp_path / "seed1"
    args = ["bench", "reproduce", "--tier", "smoke", "--rows", "llsq_W4A4", "--no-step-time"]
    assert main([*args, "--out", str(first_out)]) == 0
    shutil.copytree(first_out / "fp32", out / "fp32")
    assert main([*args, "--out", str(out), "--row-seed", "1", "--resume"]) == 0
    assert json.loads((out / "settings.json").read_text())["row_seed"] == 1
    row = json.loads((out / "rows" / "resnet20" / "llsq_W4A4.json").read_text())
    first = json.loads((first_out / "rows" / "resnet20" / "llsq_W4A4.json").read_text())
    assert (row["seed"], row["training"]["config"]["seed"], first["seed"]) == (1, 1, 0)
    assert row["fp32_acc"] == first["fp32_acc"] and row["exact"]
    assert row["training"]["history"] != first["training"]["history"]
    assert "--row-seed 1" in row["command"]
    with pytest.raises(ConfigError, match=r"row_seed: stored 1, now None"):
        reproduce(replace(_options(out), resume=True))
    with pytest.raises(ConfigError, match=r"row_seed: stored None, now 2"):
        reproduce(replace(_options(first_out), row_seed=2, resume=True))
    other = tmp_path / "other"  # a copied baseline is not relabelled with another --seed
    shutil.copytree(first_out / "fp32", other / "fp32")
    with pytest.raises(ConfigError, match=r"trained with --seed 0, this run has --seed 1"):
        reproduce(replace(_options(other), seed=1, resume=True))
    assert replace(_options(out), row_seed=0).qat_seed == 0  # equal to --seed: the default
    assert "row_seed" not in reproduce_settings(replace(_options(out), row_seed=0))


def test_fp32_from_starts_the_rows_from_another_runs_baseline(tmp_path):
    """--fp32-from copies a finished baseline into --out (no --resume needed) and the rows
    start from it: with the same seeds the row is the one trained in the source run. The
    baseline's sha256 is in the settings, so a resume from other weights is refused."""
    first_out, out = tmp_path / "first", tmp_path / "from"
    args = ["bench", "reproduce", "--tier", "smoke", "--rows", "llsq_W4A4", "--no-step-time"]
    assert main([*args, "--out", str(first_out)]) == 0
    assert main([*args, "--out", str(out), "--fp32-from", str(first_out)]) == 0
    source = first_out / "fp32" / "resnet20.json"
    assert (out / "fp32" / "resnet20.json").read_bytes() == source.read_bytes()
    digest = json.loads(source.read_text())["checkpoint_sha256"]
    assert file_sha256(out / "fp32" / "resnet20.ckpt") == digest
    assert json.loads((out / "settings.json").read_text())["fp32_from"] == {"resnet20": digest}
    row = json.loads((out / "rows" / "resnet20" / "llsq_W4A4.json").read_text())
    first = json.loads((first_out / "rows" / "resnet20" / "llsq_W4A4.json").read_text())
    untimed = [[{k: v for k, v in h.items() if k != "seconds"} for h in r["training"]["history"]]
               for r in (row, first)]  # fmt: skip
    assert untimed[0] == untimed[1]
    assert (row["engine_acc"], row["fp32_acc"]) == (first["engine_acc"], first["fp32_acc"])
    assert f"--fp32-from {first_out}" in row["command"]
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["fp32_from"] == str(first_out)
    assert f"FP32 baselines copied from `{first_out}`" in (out / "results.md").read_text()


def test_fp32_from_refuses_other_weights_seeds_and_sources(tmp_path):
    """Every way --fp32-from could start rows from weights other than the source's, or write
    into a directory it cannot finish, is refused before anything is written, naming it."""
    first_out, other = tmp_path / "first", tmp_path / "other"
    args = ["bench", "reproduce", "--tier", "smoke", "--rows", "llsq_W4A4", "--no-step-time"]
    assert main([*args, "--out", str(first_out), "--fp32-only"]) == 0
    assert main([*args, "--out", str(other), "--seed", "1", "--fp32-only"]) == 0
    fresh = tmp_path / "fresh"
    with pytest.raises(ConfigError, match=r"records seed 1 .*this run has --seed 0"):
        reproduce(replace(_options(fresh), fp32_from=other))
    assert not fresh.exists()
    record = other / "fp32" / "resnet20.json"  # another baseline of seed 0
    record.write_text(json.dumps(json.loads(record.read_text()) | {"seed": 0}))
    out = tmp_path / "from"
    reproduce(replace(_options(out), fp32_only=False, fp32_from=first_out))
    with pytest.raises(ConfigError, match=r"fp32_from\.resnet20: stored '\w+', now '\w+'"):
        reproduce(replace(_options(out), fp32_from=other, resume=True))
    by_hand = tmp_path / "by_hand"  # the old way: a copy of another baseline already there
    shutil.copytree(first_out / "fp32", by_hand / "fp32")
    with pytest.raises(ConfigError, match=r"resnet20\.ckpt is another baseline .* --fp32-from's"):
        reproduce(replace(_options(by_hand), fp32_from=other))
    (tmp_path / "empty" / "fp32").mkdir(parents=True)
    (tmp_path / "empty" / "fp32" / "vgg_small.json").write_text(record.read_text())
    with pytest.raises(ConfigError, match=r"no resnet20 baseline to start from"):
        reproduce(replace(_options(tmp_path / "x"), fp32_from=tmp_path / "empty"))
    (tmp_path / "empty" / "fp32" / "resnet20.json").write_text('{"seed": 0}')
    with pytest.raises(ConfigError, match=r"record\(s\) resnet20 in fp32/ have no checkpoint_sha"):
        reproduce(replace(_options(tmp_path / "x"), fp32_from=tmp_path / "empty"))
    ckpt = first_out / "fp32" / "resnet20.ckpt"
    ckpt.write_bytes(ckpt.read_bytes() + b"\0")
    with pytest.raises(ConfigError, match=r"resnet20\.ckpt has sha256 \w+, but its record gives"):
        reproduce(replace(_options(tmp_path / "z"), fp32_from=first_out))
    assert not (tmp_path / "z" / "fp32").exists()
    with pytest.raises(ConfigError, match=r"is --out itself"):
        reproduce(replace(_options(first_out), fp32_from=first_out, resume=True))
    with pytest.raises(ConfigError, match=r"--fp32-only trains .* --fp32-from brings"):
        reproduce(replace(_options(tmp_path / "y"), fp32_only=True, fp32_from=first_out))
    assert not any((tmp_path / name).exists() for name in ("x", "y"))


def test_fp32_checkpoint_with_another_sha256_is_refused(tmp_path):
    assert main(["bench", "reproduce", "--tier", "smoke", "--out", str(tmp_path),
                 "--rows", "llsq_W4A4", "--no-step-time"]) == 0  # fmt: skip
    ckpt = tmp_path / "fp32" / "resnet20.ckpt"
    record = json.loads(ckpt.with_suffix(".json").read_text())
    assert record["checkpoint_sha256"] == file_sha256(ckpt)
    (tmp_path / "rows" / "resnet20" / "llsq_W4A4.json").unlink()  # a row still to run
    ckpt.write_bytes(ckpt.read_bytes() + b"\0")
    with pytest.raises(ConfigError, match="sha256"):
        reproduce(replace(_options(tmp_path), resume=True))


def test_fp32_only_trains_the_baseline_alone_and_a_resume_continues_it(tmp_path):
    args = ["bench", "reproduce", "--tier", "smoke", "--out", str(tmp_path), "--fp32-only"]
    assert main(args) == 0
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    assert set(results["fp32"]) == {"resnet20"} and results["rows"] == []
    assert not results["complete"]
    ckpt = tmp_path / "fp32" / "resnet20.ckpt"
    digest = file_sha256(ckpt)
    # stopped after its last epoch, before the record: the resume finishes from last.pt
    ckpt.unlink()
    ckpt.with_suffix(".json").unlink()
    assert main([*args, "--resume"]) == 0
    assert file_sha256(ckpt) == digest
    # the rows come later, from that checkpoint
    outcome = reproduce(replace(_options(tmp_path), resume=True))
    assert outcome["ran"] == ["resnet20/llsq_W4A4"]
    assert outcome["results"]["rows"][0]["fp32_acc"] == results["fp32"]["resnet20"]["test_acc"]


def test_qat_lr_is_the_rows_peak_learning_rate_recorded_in_settings_and_command(tmp_path):
    args = ["--tier", "smoke", "--out", str(tmp_path), "--rows", "llsq_W4A4", "--no-step-time"]
    assert main(["bench", "reproduce", *args, "--qat-lr", "0.02"]) == 0
    settings = json.loads((tmp_path / "settings.json").read_text())
    assert settings["tier"]["qat_lr"] == 0.02
    row = json.loads((tmp_path / "rows" / "resnet20" / "llsq_W4A4.json").read_text())
    assert row["training"]["config"]["lr"] == 0.02
    assert "--qat-lr 0.02" in row["command"]
    assert "peak lr 0.02 (cosine)" in (tmp_path / "results.md").read_text()
    fp32 = json.loads((tmp_path / "fp32" / "resnet20.json").read_text())
    assert fp32["training"]["config"]["lr"] == TIERS["smoke"].fp32_lr  # the baseline keeps its own


def test_qat_cutout_reaches_the_rows_batches_only_and_is_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """--qat-cutout N: the rows' QAT batches get a Cutout square of N pixels, the FP32 batches
    and the test sets none; the side is in settings.json, the command and results.md."""
    smoke = synthetic_splits(16, 0)
    monkeypatch.setattr("hwquant.app.bench.reproduce.load_dataset", lambda *a, **k: smoke)
    cifar = replace(TIERS["smoke"], data="cifar10")  # the synthetic images, augmented
    data = load_tier_data(replace(_options(tmp_path), tier=replace(cifar, qat_cutout=8)))
    assert data.qat_train.cutout == 8 and data.qat_train.augment
    assert (data.train.cutout, data.monitor.cutout, data.test.cutout) == (0, 0, 0)
    monkeypatch.setitem(TIERS, "smoke", cifar)  # the command line picks it by name
    out = tmp_path / "cut"
    args = ["bench", "reproduce", "--tier", "smoke", "--out", str(out), "--rows", "llsq_W4A4"]
    assert main([*args, "--no-step-time", "--qat-cutout", "8"]) == 0
    assert json.loads((out / "settings.json").read_text())["tier"]["qat_cutout"] == 8
    row = json.loads((out / "rows" / "resnet20" / "llsq_W4A4.json").read_text())
    assert "--qat-cutout 8" in row["command"]
    assert "peak lr 0.005 (cosine), Cutout 8" in (out / "results.md").read_text()


@pytest.mark.parametrize(
    ("tier", "side", "match"),
    [
        ("smoke", 4, r"--qat-cutout=4: tier 'smoke' trains on synthetic images"),
        ("cpu-long", 33, r"--qat-cutout=33 is not a square side within .* 32-pixel"),
        ("cpu-long", -1, r"--qat-cutout=-1 is not a square side"),
    ],
)
def test_qat_cutout_outside_the_images_or_on_synthetic_data_is_refused(
    tier: str, side: int, match: str
):
    with pytest.raises(ConfigError, match=match):
        get_tier(tier, qat_cutout=side)
    assert get_tier("smoke", qat_cutout=0).qat_cutout == 0  # none: allowed everywhere


def test_a_run_stored_before_the_later_tier_fields_existed_resumes_at_their_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    args = ["bench", "reproduce", "--tier", "smoke", "--out", str(tmp_path), "--rows", "llsq_W4A4"]
    assert main([*args, "--no-step-time"]) == 0
    settings = json.loads((tmp_path / "settings.json").read_text())
    for field in ("qat_cutout", "qat_distill", "qat_distill_temperature"):
        del settings["tier"][field]  # as written before the fields existed
    (tmp_path / "settings.json").write_text(json.dumps(settings))
    assert main([*args, "--no-step-time", "--resume"]) == 0
    assert main([*args, "--no-step-time", "--resume", "--qat-distill", "0.5"]) == 2
    assert "tier.qat_distill: stored 0.0, now 0.5" in capsys.readouterr().err  # not as another


def test_qat_distill_trains_the_rows_from_their_fp32_baseline_and_is_recorded(
    baseline: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """--qat-distill λ --qat-distill-temperature T: each row's trainer distils from a teacher
    holding the FP32 baseline's weights, with λ and T in its config; both are in settings.json,
    the row's training config, its command and results.md; the loss is not the plain row's."""
    teachers: list[torch.nn.Module] = []

    class Recording(Trainer):
        def __init__(self, *args: Any, teacher: torch.nn.Module | None = None, **kwargs: Any):
            teachers.append(teacher)
            super().__init__(*args, teacher=teacher, **kwargs)

    monkeypatch.setattr("hwquant.app.bench.reproduce.Trainer", Recording)
    args = ["bench", "reproduce", "--tier", "smoke", "--rows", "llsq_W4A4", "--no-step-time"]
    args += ["--fp32-from", str(baseline)]
    plain, distilled = tmp_path / "plain", tmp_path / "distilled"
    assert main([*args, "--out", str(plain)]) == 0
    assert teachers == [None]
    distill = ["--qat-distill", "0.5", "--qat-distill-temperature", "2.0"]
    assert main([*args, "--out", str(distilled), *distill]) == 0
    teacher = teachers[1]
    fp32 = load_checkpoint(baseline / "fp32" / "resnet20.ckpt")["state_dict"]
    assert teacher is not None and not teacher.training
    assert all(torch.equal(v, fp32[k]) for k, v in teacher.state_dict().items())
    tier = json.loads((distilled / "settings.json").read_text())["tier"]
    assert (tier["qat_distill"], tier["qat_distill_temperature"]) == (0.5, 2.0)
    row = json.loads((distilled / "rows" / "resnet20" / "llsq_W4A4.json").read_text())
    config = row["training"]["config"]
    assert (config["distill_weight"], config["distill_temperature"]) == (0.5, 2.0)
    assert "--qat-distill 0.5 --qat-distill-temperature 2.0" in row["command"]
    assert "distilled from the FP32 model (λ 0.5, T 2.0)" in (distilled / "results.md").read_text()
    plain_row = json.loads((plain / "rows" / "resnet20" / "llsq_W4A4.json").read_text())
    losses = [[h["train_loss"] for h in r["training"]["history"]] for r in (plain_row, row)]
    assert losses[0] != losses[1]


@pytest.mark.parametrize(
    ("weight", "temperature", "match"),
    [
        (1.5, None, r"--qat-distill=1.5 is not a distillation weight"),
        (-0.1, None, r"--qat-distill=-0.1 is not a distillation weight"),
        (float("nan"), None, r"--qat-distill=nan is not a distillation weight"),
        (0.5, 0.0, r"--qat-distill-temperature=0.0 is not a temperature"),
        (0.5, float("inf"), r"--qat-distill-temperature=inf is not a temperature"),
        (None, 4.0, r"--qat-distill-temperature=4.0 without --qat-distill"),
        (0.0, 4.0, r"--qat-distill-temperature=4.0 without --qat-distill"),
    ],
)
def test_qat_distill_out_of_range_or_a_temperature_alone_is_refused(
    weight: float | None, temperature: float | None, match: str
):
    with pytest.raises(ConfigError, match=match):
        get_tier("cpu-long", qat_distill=weight, qat_distill_temperature=temperature)


class Interrupt(Exception):
    """Stands in for a kill between two epochs of a row."""


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A smoke run holding a finished FP32 baseline only (the rows start from it)."""
    out = tmp_path_factory.mktemp("baseline")
    reproduce(replace(_options(out), fp32_only=True))
    return out


@pytest.mark.parametrize(
    ("row", "distill"),
    [("llsq_W4A4", 0.0), ("nonuniform_W2A2", 0.0), ("msq_W4A4", 0.0), ("tables_40", 0.0),
     ("llsq_W4A4", 0.5)],
)  # fmt: skip
def test_a_row_killed_between_epochs_resumes_to_the_weights_of_a_run_that_never_stopped(
    row: str, distill: float, baseline: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A row stopped after its first of two QAT epochs (the trainer's checkpoint written), then
    run again with --resume, continues from that checkpoint: its weights and quantizer state
    (scales, codebooks, SP2 rows, ring buffers, step counters) equal those of a run that never
    stopped, and so does the row's record but for the seconds and the step it resumed at. It
    resumes parked (docs/results.md): from a copy of the run folder elsewhere, as a clone of
    the repository has it, whose trainer folder holds only the committed ``last.pt`` and
    ``start.json`` (no ``last.prev.pt``). A distilled row resumes with its teacher too."""
    options = _two_epoch_options(tmp_path / "stopped", baseline, row)
    options = replace(options, tier=replace(options.tier, qat_distill=distill))
    whole = replace(options, out=tmp_path / "whole")
    reproduce(whole)
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "_run_epoch", _interrupt_at_the_second_epoch(Trainer._run_epoch))
        with pytest.raises(Interrupt):
            reproduce(options)
    assert not (options.out / "rows" / "resnet20" / f"{row}.json").exists()
    stopped_work = options.out / "work" / "resnet20" / row
    options = replace(options, out=tmp_path / "parked", resume=True)
    shutil.copytree(stopped_work.parents[2], options.out, ignore=shutil.ignore_patterns("work"))
    parked_work = options.out / "work" / "resnet20" / row
    parked_work.mkdir(parents=True)
    for name in ("last.pt", "start.json"):
        shutil.copy2(stopped_work / name, parked_work / name)
    assert reproduce(options)["ran"] == [f"resnet20/{row}"]

    work = [out / "work" / "resnet20" / row for out in (options.out, whole.out)]
    resumed, uninterrupted = (load_checkpoint(w / "last.pt")["model"] for w in work)
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)
    records = [json.loads((out / "rows" / "resnet20" / f"{row}.json").read_text())
               for out in (options.out, whole.out)]  # fmt: skip
    # on the CPU a row trained again from its start would end with the same weights too: this
    # says that the second run continued the checkpoint (64 synthetic images, batches of 32)
    assert records[0]["training"]["resumed_at_step"] == 2
    assert "resumed_at_step" not in records[1]["training"]
    for record in records:
        record["training"].pop("resumed_at_step", None)
        record.pop("wall_seconds")
        record["training"].pop("wall_seconds")
        for epoch in record["training"]["history"]:
            epoch.pop("seconds")
    assert records[0] == records[1]


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda r: r["recipe"].update(weight_bits=8), r"recipe\.weight_bits: stored 8, now 3"),
        (lambda r: r["train"].update(lr=0.5), r"train\.lr: stored 0\.5, now 0\.005"),
        (lambda r: r["train"].update(mixup=1), r"train\.mixup: stored 1, no longer a setting"),
        (lambda r: r.update(fp32_checkpoint_sha256="0" * 64), r"fp32_checkpoint_sha256: stored"),
        (lambda r: r.clear(), r"without the start\.json"),
        (lambda r: r.update(resume=False), r"not started with --resume.*add --resume"),
    ],
)
def test_a_checkpoint_the_run_would_not_continue_exactly_is_refused_before_any_row_trains(
    edit: Callable[[dict[str, Any]], None],
    match: str,
    baseline: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    """A row's trainer checkpoint of another recipe, training setting or FP32 baseline, one
    without its start record, or any in a run started without --resume, is refused with the
    difference named before the rows before it in the table are trained."""
    options = _two_epoch_options(tmp_path, baseline, "llsq_W3A3")
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "_run_epoch", _interrupt_at_the_second_epoch(Trainer._run_epoch))
        with pytest.raises(Interrupt):
            reproduce(options)
    work = tmp_path / "work" / "resnet20" / "llsq_W3A3"
    start = json.loads((work / "start.json").read_text())
    assert start["recipe"]["weight_bits"] == 3 and start["train"]["epochs"] == 2
    edit(start)
    if start.pop("resume", True):
        options = replace(options, resume=True)
    else:  # a run into this --out without --resume, its settings.json removed
        (tmp_path / "settings.json").unlink()
    if start:
        (work / "start.json").write_text(json.dumps(start))
    else:
        (work / "start.json").unlink()
    both = replace(options, rows=select_rows(["llsq_W4A4", "llsq_W3A3"]))
    with pytest.raises(ConfigError, match=match) as refusal:
        reproduce(both)
    assert str(work) in str(refusal.value) and "Fix:" in str(refusal.value)
    assert (work / "last.pt").exists()
    assert not (tmp_path / "work" / "resnet20" / "llsq_W4A4").exists()


def _interrupt_at_the_second_epoch(run_epoch: Callable[..., None]) -> Callable[..., None]:
    """``Trainer._run_epoch`` (``run_epoch``) that stops the run when its second epoch would
    start."""

    def interrupted(trainer: Trainer, bars: Any) -> None:
        if trainer.epoch == 1:
            raise Interrupt
        run_epoch(trainer, bars)

    return interrupted


def _two_epoch_options(out: Path, baseline: Path, row: str) -> Options:
    """``row`` of the smoke tier trained for two QAT epochs from ``baseline``'s FP32 weights."""
    tier = get_tier("smoke", epochs_qat=2)
    return replace(_options(out), tier=tier, rows=select_rows([row]), fp32_from=baseline)


def _options(out: Path) -> Options:
    return Options(TIERS["smoke"], out, ("resnet20",), select_rows(["llsq_W4A4"]), step_time=False)
