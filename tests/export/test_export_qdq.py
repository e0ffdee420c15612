"""QDQ export: onnxruntime runs the standard-ONNX graph and reproduces the engine exactly."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from hwquant.engine import run
from hwquant.export import export_qdq, run_onnxruntime
from tests.helpers import lowered_small_cnn

pytest.importorskip("onnxruntime")


def test_qdq_graph_equals_engine_exactly(tmp_path):
    model, x = lowered_small_cnn()
    proto = export_qdq(model, tuple(x.shape), tmp_path / "model.onnx")
    onnx.checker.check_model(proto)
    assert {n.domain for n in proto.graph.node} == {""}  # standard ONNX only
    out = run_onnxruntime(onnx.load(str(tmp_path / "model.onnx")), x.numpy())
    codes = run(model, model.quantize_input(x)).output
    assert np.array_equal(out, model.dequantize(codes).numpy())


def test_eight_bit_tensors_use_qdq_pairs():
    model, x = lowered_small_cnn()
    proto = export_qdq(model, tuple(x.shape))
    kinds = [n.op_type for n in proto.graph.node]
    eight_bit_weights = [n for n in model.weight_nodes() if n.weight_bits <= 8]
    # one DequantizeLinear per 8-bit weight tensor, one Q/DQ pair per 8-bit activation
    assert kinds.count("DequantizeLinear") >= len(eight_bit_weights)
    assert kinds.count("QuantizeLinear") >= 1  # the 8-bit input
    assert "Clip" in kinds  # the 4-bit activations
