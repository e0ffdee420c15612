"""``hwquant export``: the file appears only when the graph is (checked to be) exact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

import hwquant.export
from hwquant.cli import main
from tests.helpers import lowered_small_cnn


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    return lowered_small_cnn()[0].save(tmp_path_factory.mktemp("m") / "model.npz")


def export_argv(model_file: Path, out: Path) -> list[str]:
    """A QDQ export of the small CNN to ``out`` (runs on onnxruntime, no qonnx needed)."""
    argv = ["export", str(model_file), "--format", "qdq", "--input-shape", "2,1,8,8"]
    return [*argv, "--out", str(out), "--json"]


def test_export_writes_a_loadable_graph_and_no_temporary_file(model_file, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    assert main(export_argv(model_file, out)) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["written"] is True
    onnx.checker.check_model(onnx.load(str(out)))
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_inexact_check_leaves_no_file(model_file, tmp_path, monkeypatch, capsys):
    def off_by_one(proto: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
        return hwquant.export.onnx_qdq.run_onnxruntime(proto, x) + 1.0

    monkeypatch.setattr(hwquant.export, "run_onnxruntime", off_by_one)
    out = tmp_path / "model.onnx"
    assert main([*export_argv(model_file, out), "--check"]) == 1
    figures = json.loads(capsys.readouterr().out)
    assert figures["exact"] is False and figures["written"] is False
    assert list(tmp_path.iterdir()) == []
