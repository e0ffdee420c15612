"""Every subcommand: examples in --help; ``train --json``; ``hwquant export`` exit codes."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from hwquant import train
from hwquant.cli import build_parser, main
from hwquant.config import RunConfig
from hwquant.train import TrainResult
from tests.helpers import lowered_small_cnn


def subcommands() -> list[str]:
    """Names of the top-level subcommands (those other modules add included)."""
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(action.choices)


def test_the_ecosystem_commands_are_registered():
    assert {"train", "config", "demo", "export", "report"} <= set(subcommands())


@pytest.mark.parametrize("command", subcommands())
def test_every_subcommand_help_ends_with_examples(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"examples:\n  (hwquant|torchrun .*-m hwquant) {command}\b", out)


def test_train_json_prints_the_result(tmp_path: Path, monkeypatch, capsys):
    def fake(config: RunConfig, *, progress: bool, resume: bool) -> TrainResult:
        history = [{"epoch": 1, "test_acc": 0.75}]
        return TrainResult(history, 0.75, 1, 0.75, Path(config.out_dir) / "last.pt")

    monkeypatch.setattr(train, "train_from_config", fake)
    path = tmp_path / "run.toml"
    path.write_text('[model]\nname = "m"\n[data]\nname = "d"\n')
    assert main(["train", "--config", str(path), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["best_accuracy"] == 0.75 and figures["history"][0]["epoch"] == 1


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    return lowered_small_cnn()[0].save(tmp_path_factory.mktemp("m") / "model.npz")


@pytest.mark.parametrize("form", ["qonnx", "qdq"])
def test_export_check_is_exact(model_file: Path, tmp_path: Path, form: str, capsys):
    pytest.importorskip("qonnx")
    out = tmp_path / "model.onnx"
    argv = ["export", str(model_file), "--format", form, "--data", "digits"]
    assert main([*argv, "--out", str(out), "--check", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["exact"] is True and out.is_file() and figures["nodes"] > 5
    assert figures["images"] == 256 and figures["mismatches"] == 0


def test_export_bad_shape_is_a_usage_error(model_file: Path, tmp_path: Path, capsys):
    argv = ["export", str(model_file), "--input-shape", "1x1x8x8", "--out", str(tmp_path / "m")]
    assert main(argv) == 2
    assert "Fix: give positive sizes" in capsys.readouterr().err


def test_export_of_an_unreadable_model_exits_1(tmp_path: Path, capsys):
    argv = ["export", str(tmp_path / "none.npz"), "--input-shape", "1,1,8,8", "--out", "m.onnx"]
    assert main(argv) == 1
    assert "does not exist" in capsys.readouterr().err
