"""QONNX export: qonnx's executor reproduces the integer engine exactly."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto

import hwquant
from hwquant.core.errors import UnsupportedLayerError
from hwquant.engine import run
from hwquant.export import export_qonnx, run_qonnx
from hwquant.export.graph import INPUT_NAME, OPSET, OUTPUT_NAME, Graph
from hwquant.export.qonnx import QONNX_DOMAIN, QONNXStyle
from hwquant.ir.intmodel import AddNode, AvgPoolNode
from hwquant.qat.recipe import Recipe
from tests.helpers import RandomNet, lowered_small_cnn, trained_qat_model

pytest.importorskip("qonnx")


def engine_value(model: hwquant.IntModel, x: torch.Tensor) -> np.ndarray:
    """The engine's dequantized output (output codes times output_scale, float64)."""
    return model.dequantize(run(model, model.quantize_input(x)).output).numpy()


def residual_net() -> tuple[hwquant.IntModel, torch.Tensor]:
    """Conv, depthwise conv, residual add, max pool, global average pool, linear."""
    torch.manual_seed(1)
    blocks = [
        ("conv", 8, 3, 1, False, True, "relu", False),
        ("residual", "relu"),
        ("maxpool",),
        ("conv", 8, 3, 2, True, True, "relu6", True),
    ]
    x = torch.randn(4, 1, 8, 8)
    qat = trained_qat_model(RandomNet(1, blocks, 5, True, 8), Recipe(bn_freeze_step=1), x)
    return hwquant.lower(qat, x), x


@pytest.mark.parametrize("build", [lowered_small_cnn, residual_net], ids=["small_cnn", "resnet"])
def test_qonnx_graph_equals_engine_exactly(build):
    model, x = build()
    proto = export_qonnx(model, tuple(x.shape))
    onnx.checker.check_model(proto)
    out = run_qonnx(proto, x.numpy())
    # output / output_scale are the engine's integer codes: compare the values bit for bit
    assert np.array_equal(out, engine_value(model, x))
    assert np.array_equal(
        np.round(out / model.output_scale.reshape(1, -1)),
        run(model, model.quantize_input(x)).output,
    )


def test_quant_nodes_carry_qonnx_attributes(tmp_path):
    model, x = lowered_small_cnn()
    path = tmp_path / "model.onnx"
    export_qonnx(model, tuple(x.shape), path)
    proto = onnx.load(str(path))
    quants = [n for n in proto.graph.node if n.op_type == "Quant"]
    assert {n.domain for n in quants} == {QONNX_DOMAIN}
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    weight_quants = [n for n in quants if n.output[0].endswith("/weight")]
    assert len(weight_quants) == len(model.weight_nodes())
    for node, wq in zip(model.weight_nodes(), weight_quants, strict=True):
        assert inits[wq.input[3]] == node.weight_bits  # bit-width
        assert inits[wq.input[2]] == 0  # zero point
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in wq.attribute}
        assert attrs == {"signed": 1, "narrow": 0, "rounding_mode": b"FLOOR"}
        assert np.array_equal(inits[wq.input[0]], node.weight.astype(np.float32))


def test_overflowing_accumulator_is_refused():
    model, x = lowered_small_cnn()
    node = model.weight_nodes()[1]
    model.set_accumulator(node.worst_case_bits() - 1, "wrap", [node.name])
    with pytest.raises(UnsupportedLayerError, match=f"'{node.name}'.*overflow.*Fix"):
        export_qonnx(model, tuple(x.shape))


def test_large_accumulators_are_split_and_stay_exact():
    """Partial sums past 2^24 (float32's exact range): the split conv keeps them exact."""
    torch.manual_seed(2)
    blocks = [("conv", 64, 3, 1, False, True, "relu", False)] * 2
    x = torch.randn(2, 3, 4, 4)
    recipe = Recipe(bn_freeze_step=1, weight_bits=8, act_bits=8)
    qat = trained_qat_model(RandomNet(3, blocks, 4, False, 4), recipe, x)
    model = hwquant.lower(qat, x)
    node = model.weight_nodes()[1]
    node.weight = np.random.default_rng(0).choice([-128, 127], node.weight.shape)
    assert node.worst_case_bits() > 25  # beyond 2^24
    proto = export_qonnx(model, tuple(x.shape))
    assert any(n.name.endswith("/acc_hi") for n in proto.graph.node)
    assert np.array_equal(run_qonnx(proto, x.numpy()), engine_value(model, x))


def test_one_bit_signed_step_keeps_hwquant_range():
    """qonnx's 1-bit signed Quant is bipolar (±1); the export gives clamp(floor(v), −1, 0)."""
    x = np.array([[-3.5, -1.0, -0.5, 0.0, 0.7, 3.0]], np.float32)
    g = Graph()
    QONNXStyle(custom_ops=False).quantize(g, INPUT_NAME, x.shape, 1, True, OUTPUT_NAME)
    info = [onnx.helper.make_tensor_value_info(n, TensorProto.FLOAT, x.shape) for n in "xy"]
    opsets = [onnx.helper.make_opsetid("", OPSET), onnx.helper.make_opsetid(QONNX_DOMAIN, 1)]
    inner = [v for name, v in g.infos.items() if name != OUTPUT_NAME]
    graph = onnx.helper.make_graph(g.nodes, "q", info[:1], info[1:], g.initializers, None, inner)
    out = run_qonnx(onnx.helper.make_model(graph, opset_imports=opsets), x)
    assert np.array_equal(out, [[-1, -1, -1, 0, 0, 0]])


def break_avgpool(model: hwquant.IntModel) -> str:
    """Input codes so wide (24 bits) that a pool's window sums pass float32's exact 2^24."""
    node = next(n for n in model.nodes if isinstance(n, AvgPoolNode))
    next(n for n in model.nodes if n.name == node.inputs[0]).hi = 2**24 - 1
    return rf"'{node.name}'.*window sums.*2\^24.*Fix"


def break_add(model: hwquant.IntModel) -> str:
    """Multipliers that push |a·M_a| + |b·M_b| past double's exact 2^53."""
    node = next(n for n in model.nodes if isinstance(n, AddNode))
    node.mults = (2**50, 2**50)
    return rf"'{node.name}'.*\|a·M_a\| \+ \|b·M_b\|.*Fix"


def break_requant_half(model: hwquant.IntModel) -> str:
    """A shift whose rounding term 2^(s−1) alone passes 2^53."""
    node = model.weight_nodes()[0]
    node.shift = np.full_like(node.shift, 60)
    return rf"'{node.name}'.*2\^\(s−1\).*Fix"


@pytest.mark.parametrize("breaks", [break_avgpool, break_add, break_requant_half])
def test_inexact_float_steps_are_refused(breaks):
    model, x = residual_net()
    with pytest.raises(UnsupportedLayerError, match=breaks(model)):
        export_qonnx(model, tuple(x.shape))
