"""The ``hwquant`` command line: exit codes, messages and dispatch."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from hwquant.app import train
from hwquant.app.config import RunConfig
from hwquant.app.train import TrainResult
from hwquant.cli import main, version
from hwquant.core.errors import NonFiniteError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


GOOD = '[model]\nname = "m"\n[data]\nname = "d"\n[train]\nepochs = 2\n'


def test_config_show_prints_the_effective_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "show", str(write(tmp_path, GOOD))]) == 0
    out = capsys.readouterr().out
    assert "[train]\nepochs = 2\n" in out
    assert 'optimizer = "sgd"' in out  # defaults filled in


def test_config_show_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "show", str(write(tmp_path, GOOD)), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["train"]["epochs"] == 2


def test_bad_config_exits_2_with_message_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, GOOD + "lrr = 0.1\n")
    assert main(["config", "show", str(path)]) == 2
    err = capsys.readouterr().err
    assert "unknown field 'train.lrr'" in err
    assert "Traceback" not in err
    assert main(["train", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"hwquant {version()}"


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--help"]) == 0
    assert "examples:\n  hwquant train --config" in capsys.readouterr().out


def test_demo_dispatches_to_run_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    demo = types.ModuleType("hwquant.app.demo")
    demo.run_demo = lambda out_dir, quick: calls.append((out_dir, quick)) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "hwquant.app.demo", demo)
    assert main(["demo", "--out", str(tmp_path), "--quick"]) == 0
    assert calls == [(tmp_path, True)]


def test_train_passes_out_and_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = []

    def train_from_config(config: RunConfig, *, progress: bool, resume: bool) -> TrainResult:
        calls.append((config.out_dir, progress, resume))
        history = [{"epoch": 1, "test_acc": 0.5}]
        return TrainResult(history, 0.5, 1, 0.5, Path(config.out_dir) / "last.pt")

    monkeypatch.setattr(train, "train_from_config", train_from_config)
    argv = ["train", "--config", str(write(tmp_path, GOOD)), "--out", "o", "--resume"]
    assert main([*argv, "--no-progress"]) == 0
    assert calls == [("o", False, True)]
    assert "best test accuracy 50.00% (epoch 1)" in capsys.readouterr().out


def test_other_hwquant_errors_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail(config: RunConfig, **kwargs: object) -> TrainResult:
        raise NonFiniteError("the training loss is nan")

    monkeypatch.setattr(train, "train_from_config", fail)
    assert main(["train", "--config", str(write(tmp_path, GOOD))]) == 1
    assert capsys.readouterr().err == "hwquant: error: the training loss is nan\n"


def interrupted(config: RunConfig, **kwargs: object) -> TrainResult:
    raise KeyboardInterrupt


def test_ctrl_c_in_train_names_the_resume_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(train, "train_from_config", interrupted)
    config = write(tmp_path, GOOD)
    assert main(["train", "--config", str(config), "--out", "o"]) == 130
    expected = f"hwquant: interrupted. Continue with `hwquant train --config {config} --out o "
    assert capsys.readouterr().err == expected + "--resume`.\n"


def test_ctrl_c_elsewhere_suggests_no_resume(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from hwquant.app import hw_cli

    def interrupt(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(hw_cli, "_model_and_shape", interrupt)
    assert main(["hw", "resnet20", "--device", "xc7z020"]) == 130
    assert capsys.readouterr().err == "hwquant: interrupted.\n"


def test_demo_out_that_is_a_file_is_refused_before_the_demo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = []
    demo = types.ModuleType("hwquant.app.demo")
    demo.run_demo = lambda out_dir, quick: calls.append(out_dir) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "hwquant.app.demo", demo)
    afile = tmp_path / "report.html"
    afile.write_text("mine")
    assert main(["demo", "--out", str(afile)]) == 2
    assert f"--out '{afile}' is a file, not a directory" in capsys.readouterr().err
    assert calls == [] and afile.read_text() == "mine"
