"""hls4ml export: the graph hls4ml reads and the exact fixed-point types of its configuration.

hls4ml itself is not installed in the test environment; `make interop` runs the round trip
through hls4ml's C++ emulation. Here every activation of the exported graph, executed by qonnx
on real inputs, must lie inside the interval and on the grid of the format the configuration
types it with: a type that could truncate or overflow fails.
"""

from __future__ import annotations

import json
import re
from fractions import Fraction

import numpy as np
import onnx
import pytest

import hwquant.export.graph as graph_module
from hwquant.cli import main
from hwquant.engine import run
from hwquant.export.hls4ml import (
    CONFIG_FILE,
    DEFAULT_PRECISION,
    MODEL_FILE,
    Format,
    export_hls4ml,
    value_formats,
)
from hwquant.export.qonnx import export_qonnx
from tests.app.test_export_cli import export_argv, model_file  # noqa: F401 (fixture)
from tests.export.conftest import residual_net

pytest.importorskip("qonnx")


@pytest.mark.parametrize(
    ("lo", "hi", "frac", "expected"),
    [
        (-8, 7, 0, "fixed<4,4>"),
        (-9, 7, 0, "fixed<5,5>"),
        (0, 15, 0, "ufixed<4,4>"),
        (0, 16, 0, "ufixed<5,5>"),
        (0, Fraction(3, 4), 2, "ufixed<3,1>"),
        (Fraction(-1, 2), Fraction(1, 4), 2, "fixed<3,1>"),
    ],
)
def test_precision_is_the_narrowest_exact_type(lo, hi, frac, expected):
    assert Format(Fraction(lo), Fraction(hi), frac).precision() == expected


def test_format_of_constants_counts_fractional_bits():
    f = Format.of(np.array([0.75, -0.125, 3.0], np.float32))
    assert (f.lo, f.hi, f.frac) == (Fraction(-1, 8), Fraction(3), 3)


def _in_format(values: np.ndarray, fmt: Format) -> bool:
    scaled = values.astype(np.float64) * 2.0**fmt.frac
    return bool(
        np.array_equal(scaled, np.round(scaled))
        and values.min() >= float(fmt.lo)
        and values.max() <= float(fmt.hi)
    )


def test_every_activation_lies_in_its_configured_format(exported_model, tmp_path):
    name, model, x = exported_model
    _check_formats(name, model, x, tmp_path)


def _check_formats(name, model, x, tmp_path):
    """Export, execute with qonnx (exact in float32 on these small nets) on every input: the
    engine's output, and every activation inside its configured format; every layer typed."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    written = export_hls4ml(model, tuple(x.shape), tmp_path)
    wrapper = ModelWrapper(str(written.model))
    formats = value_formats(wrapper, model.input.bits, model.input.signed)
    codes = model.quantize_input(x).numpy().transpose(0, 2, 3, 1).astype(np.float32)
    expected = run(model, model.quantize_input(x)).output.numpy()
    config = json.loads(written.config.read_text())
    layers = config["HLSConfig"]["LayerName"]
    for i in range(len(codes)):
        feed = {wrapper.graph.input[0].name: codes[i : i + 1]}
        context = execute_onnx(wrapper, feed, return_full_exec_context=True)
        assert np.array_equal(context[wrapper.graph.output[0].name].reshape(-1), expected[i])
        for tensor, fmt in formats.items():
            assert _in_format(context[tensor], fmt), (name, tensor)
    typed = {n.name for n in wrapper.graph.node if n.op_type != "Quant"}
    assert typed <= set(layers), typed - set(layers)
    assert wrapper.graph.input[0].name in layers
    assert config["OnnxModel"] == MODEL_FILE
    return wrapper


def test_cli_writes_model_and_config_and_refuses_check(model_file, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "hls"
    argv = ["export", str(model_file), "--to", "hls4ml", "--input-shape", "1,8,8", "--out"]
    assert main([*argv, str(out), "--io-type", "io_stream"]) == 0
    assert (out / MODEL_FILE).exists()
    assert json.loads((out / CONFIG_FILE).read_text())["IOType"] == "io_stream"
    assert main([*argv, str(tmp_path / "other"), "--check", "--data", "digits"]) == 2
    assert "--check cannot be combined with --to hls4ml" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize("existing", [MODEL_FILE, CONFIG_FILE])
def test_cli_replaces_an_existing_export_only_with_force(
    model_file,  # noqa: F811
    tmp_path,
    capsys,
    existing,
):
    out = tmp_path / "hls"
    out.mkdir()
    (out / existing).write_text("mine")
    argv = ["export", str(model_file), "--to", "hls4ml", "--input-shape", "1,8,8"]
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert existing in err and "--force" in err
    assert (out / existing).read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == [existing]
    assert main([*argv, "--out", str(out), "--force"]) == 0
    assert json.loads((out / CONFIG_FILE).read_text())["OnnxModel"] == MODEL_FILE


def test_no_limbs_in_exact_arithmetic(monkeypatch, tmp_path):
    """Where no float32 one-step form is proved (here: forced), the QONNX export uses limbs,
    which hls4ml 1.3 crashes on; the hls4ml graph takes the exact scales M·2^-s and an offset
    instead, and the typed graph still computes the engine's outputs."""
    model, x = residual_net()
    monkeypatch.setattr(graph_module, "one_step", lambda *args: None)
    assert any("/limb" in n.name for n in export_qonnx(model, tuple(x.shape)).graph.node)
    wrapper = _check_formats("residual", model, x, tmp_path)
    assert not any("limb" in n.name for n in wrapper.graph.node)
    requantized = [n.name for n in model.nodes if n.op not in ("maxpool", "reshape")]
    offsets = {n.name for n in wrapper.graph.node if n.op_type == "Add" and "shifted" in n.name}
    expected = {re.sub(r"\W", "_", name) + "_shifted" for name in requantized[:-1]}
    assert offsets == expected
    meta = {p.key: p.value for p in wrapper.model.metadata_props}
    assert "float32 execution (onnxruntime, qonnx) is not exact" in meta["hwquant.arithmetic"]


def test_max_pool_window_is_typed(tmp_path):
    """hls4ml's max pool holds its window in accum_t: left at fixed<16,6>, 8-bit codes >= 32
    wrap (every small CNN output differed so)."""
    model, x = residual_net()
    written = export_hls4ml(model, tuple(x.shape), tmp_path)
    pools = [n.name for n in onnx.load(written.model).graph.node if n.op_type == "MaxPool"]
    assert pools
    for name in pools:
        precision = written.layers[name]["Precision"]
        assert precision["accum"] == precision["result"] != DEFAULT_PRECISION
