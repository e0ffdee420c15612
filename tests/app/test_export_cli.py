"""``hwquant export``: checked on real test images; the file appears only when exact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

import hwquant.export
from hwquant.cli import main
from tests.helpers import lowered_small_cnn

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    return lowered_small_cnn()[0].save(tmp_path_factory.mktemp("m") / "model.npz")


def export_argv(model_file: Path, out: Path, *extra: str) -> list[str]:
    """A QDQ export of the 8x8 small CNN, checked on scikit-learn's 8x8 digits."""
    argv = ["export", str(model_file), "--format", "qdq", "--data", "digits", "--check"]
    return [*argv, "--out", str(out), "--json", *extra]


@pytest.mark.parametrize("extra", [[], ["--input", "codes"]], ids=["values", "codes"])
def test_check_runs_a_batch_of_real_images(model_file, tmp_path, capsys, extra):
    out = tmp_path / "model.onnx"
    assert main(export_argv(model_file, out, *extra)) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["images"] == 256 and figures["mismatches"] == 0
    assert figures["written"] is True
    onnx.checker.check_model(onnx.load(str(out)))
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_inexact_check_leaves_no_file(model_file, tmp_path, monkeypatch, capsys):
    def one_image_off(proto: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
        out = hwquant.export.onnx_qdq.run_onnxruntime(proto, x)
        out[3, 0] += 1.0
        return out

    monkeypatch.setattr(hwquant.export, "run_onnxruntime", one_image_off)
    out = tmp_path / "model.onnx"
    assert main(export_argv(model_file, out)) == 1
    figures = json.loads(capsys.readouterr().out)
    assert figures["mismatches"] == 1 and figures["written"] is False
    assert list(tmp_path.iterdir()) == []


def test_check_needs_real_images(model_file, tmp_path, capsys):
    argv = ["export", str(model_file), "--input-shape", "1,8,8", "--out", str(tmp_path / "m.onnx")]
    assert main([*argv, "--check"]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(argv) == 0  # without --check the shape is enough


def test_an_existing_file_is_replaced_only_with_force(model_file, tmp_path, capsys):
    out = tmp_path / "new" / "m.onnx"
    argv = ["export", str(model_file), "--input-shape", "1,8,8", "--out", str(out)]
    assert main(argv) == 0  # its folder is made
    out.write_bytes(b"mine")
    assert main(argv) == 2
    assert "already exists" in capsys.readouterr().err
    assert out.read_bytes() == b"mine"
    assert main([*argv, "--force"]) == 0
    onnx.checker.check_model(onnx.load(str(out)))


def test_custom_ops_with_qdq_names_both_fixes(model_file, tmp_path, capsys):
    argv = ["export", str(model_file), "--input-shape", "1,1,8,8", "--out", str(tmp_path / "m")]
    assert main([*argv, "--format", "qdq", "--custom-ops"]) == 2
    err = capsys.readouterr().err
    assert "Fix: drop --custom-ops to write QDQ, or write QONNX with --format qonnx" in err
    assert main([*argv, "--format", "qonnx", "--custom-ops"]) == 0  # the hint works, N,C,H,W too
    qdq = [*argv[:-1], str(tmp_path / "m.qdq.onnx")]  # --out: an existing file needs --force
    assert main([*qdq, "--format", "qdq"]) == 0
    assert main([*argv[:3], "1,8", *argv[4:]]) == 2
    assert "argument --input-shape: '1,8' is not a shape" in capsys.readouterr().err


def test_hls4ml_only_options_are_refused_without_to_hls4ml(model_file, tmp_path, capsys):
    argv = ["export", str(model_file), "--input-shape", "1,8,8", "--out", str(tmp_path / "m")]
    assert main([*argv, "--io-type", "io_stream"]) == 2
    assert "--io-type io_stream configures hls4ml" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
    assert main([*argv, "--to", "hls4ml", "--input", "values"]) == 2
    assert "--input values cannot be combined with --to hls4ml" in capsys.readouterr().err
