"""The Brevitas A2Q+ CIFAR-10 driver: its arguments, the worker's options, resume refusals and
the side-by-side table (the worker itself runs in Brevitas's venv, not here)."""

from __future__ import annotations

import doctest

import pytest

from benchmarks import brevitas_a2q_cifar10 as driver
from hwquant.app.bench.tiers import get_tier


def test_doctests():
    assert doctest.testmod(driver, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0


def test_the_worker_trains_like_the_tier_w4a4_row():
    tier = get_tier("cpu-long")
    options = driver.worker_options(tier.epochs_qat, tier.batch_size, tier.qat_lr, 0)
    given = dict(zip(options[3::2], options[4::2], strict=False))
    assert options[:3] == ["--model", "resnet20", "--augment"]
    assert given == {
        "--weight-bits": "4", "--act-bits": "4", "--first-last-bits": "8", "--epochs": "3",
        "--batch-size": "256", "--lr": "0.01", "--momentum": "0.9", "--weight-decay": "0.0005",
        "--seed": "0",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--quick"], "--quick writes a smoke result"),
        (["--jobs", "0"], "--jobs 0: use an integer >= 1"),
        (["--acc-bits", "16,x"], "is not a comma-separated list of integers"),
    ],
    ids=["quick-into-the-published-file", "no-jobs", "bad-widths"],
)
def test_bad_arguments_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit):
        driver.parse_args(argv)
    assert message in capsys.readouterr().err


def test_a_missing_brevitas_venv_names_the_fix(tmp_path):
    argv = ["--brevitas-python", str(tmp_path / "none" / "python"), "--out", str(tmp_path / "r")]
    with pytest.raises(SystemExit, match=r"--brevitas-python .*Fix: build its venv"):
        driver.main(argv)
    assert not (tmp_path / "r").exists()


def test_a_resume_with_other_settings_names_them(tmp_path):
    config = {"fp32_checkpoint_sha256": "ab", "worker_options": ["--epochs", "3"],
              "train_examples": 50000, "test_examples": 10000, "brevitas": "0.13.4",
              "brevitas_venv_torch": "2.13.0"}  # fmt: skip
    driver.check_resume(tmp_path / "r.json", dict(config), config)
    stored = {**config, "worker_options": ["--epochs", "1"], "brevitas": "0.13.3"}
    with pytest.raises(SystemExit, match=r"worker_options: stored .*'1'.*brevitas: stored"):
        driver.check_resume(tmp_path / "r.json", stored, config)


def test_side_by_side_skips_failed_widths_and_widths_hwquant_did_not_run():
    rows = {"W4A4_P12": {"test_acc": 0.80}, "W4A4_P10": {"error": "boom"}}
    table = driver.side_by_side(rows, {"engine_acc_by_acc_bits": {"14": 0.86}}, 0.88)
    assert table == {"12": {"a2q_plus_acc": 0.80, "a2q_plus_loss_from_fp32_points": 8.0}}
