"""QONNX form: Quant nodes, the 1-bit signed step, and the refusals of inexact layers."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto

import hwquant
from hwquant.core.errors import UnsupportedLayerError
from hwquant.engine.accumulators import adversarial_run
from hwquant.export import export_qdq, export_qonnx, run_onnxruntime, run_qonnx
from hwquant.export.graph import INPUT_NAME, IR_VERSION, OPSET, Graph
from hwquant.export.qonnx import QONNX_DOMAIN, QONNXStyle
from hwquant.ir.intmodel import AvgPoolNode, LinearNode
from hwquant.qat.recipe import Recipe
from tests.export.conftest import residual_net
from tests.helpers import RandomNet, full_range_classifier, lowered_small_cnn, trained_qat_model

pytest.importorskip("qonnx")


def test_quant_nodes_carry_qonnx_attributes(tmp_path):
    model, x = lowered_small_cnn()
    path = tmp_path / "model.onnx"
    export_qonnx(model, tuple(x.shape), path)
    proto = onnx.load(str(path))
    quants = [n for n in proto.graph.node if n.op_type == "Quant"]
    assert {n.domain for n in quants} == {QONNX_DOMAIN}
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    weight_quants = [n for n in quants if "/weight" in n.output[0]]
    assert len(weight_quants) == len(model.weight_nodes())
    for node, wq in zip(model.weight_nodes(), weight_quants, strict=True):
        assert inits[wq.input[3]] == node.weight_bits  # bit-width
        assert inits[wq.input[2]] == 0  # zero point
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in wq.attribute}
        assert attrs == {"signed": 1, "narrow": 0, "rounding_mode": b"ROUND"}
        stored = node.weight.T if isinstance(node, LinearNode) else node.weight
        assert np.array_equal(inits[wq.input[0]], stored.astype(np.float32))
    # requantizations round (proved tie-free); only the real-valued input floors
    modes = [onnx.helper.get_attribute_value(a) for n in quants for a in n.attribute]
    assert modes.count(b"FLOOR") == 1


def test_one_bit_signed_step_keeps_hwquant_range():
    """qonnx's 1-bit signed Quant is bipolar (±1); the export gives clamp(floor(v), −1, 0)."""
    x = np.array([[-3.5, -1.0, -0.5, 0.0, 0.7, 3.0]], np.float32)
    g = Graph()
    QONNXStyle(custom_ops=False).quant(g, INPUT_NAME, x.shape, 1, True, "y", "FLOOR")
    info = [onnx.helper.make_tensor_value_info(n, TensorProto.FLOAT, x.shape) for n in "xy"]
    opsets = [onnx.helper.make_opsetid("", OPSET), onnx.helper.make_opsetid(QONNX_DOMAIN, 1)]
    inner = [v for name, v in g.infos.items() if name != "y"]
    graph = onnx.helper.make_graph(g.nodes, "q", info[:1], info[1:], g.initializers, None, inner)
    proto = onnx.helper.make_model(graph, opset_imports=opsets, ir_version=IR_VERSION)
    assert np.array_equal(run_qonnx(proto, x), [[-1, -1, -1, 0, 0, 0]])


def test_large_accumulators_are_split_and_stay_exact():
    """Partial sums past 2^24 (float32's exact range): two products below it, two terms."""
    torch.manual_seed(2)
    blocks = [("conv", 64, 3, 1, False, True, "relu", False)] * 2
    x = torch.randn(2, 3, 4, 4)
    recipe = Recipe(bn_freeze_step=1, weight_bits=8, act_bits=8)
    qat = trained_qat_model(RandomNet(3, blocks, 4, False, 4), recipe, x)
    model = hwquant.lower(qat, x)
    node = model.weight_nodes()[1]
    node.weight = np.random.default_rng(0).choice([-128, 127], node.weight.shape)
    node.bias = None
    assert node.worst_case_bits() > 25  # beyond 2^24
    want = hwquant.engine.run(model, model.quantize_input(x)).output.numpy()
    proto = export_qonnx(model, tuple(x.shape))
    assert any(n.name == f"{node.name}/acc1" for n in proto.graph.node)
    assert np.array_equal(run_qonnx(proto, x.numpy()), want)
    assert np.array_equal(run_onnxruntime(export_qdq(model, tuple(x.shape)), x.numpy()), want)


def break_last_layer(model: hwquant.IntModel) -> str:
    """Last-layer weights so wide that its accumulator, the graph's output, passes 2^24."""
    node = model.weight_nodes()[-1]
    node.weight = np.full_like(node.weight, 2**14)
    node.weight_bits = 16
    return rf"'{node.name}'.*graph's output.*2\^24.*Fix"


def break_accumulator(model: hwquant.IntModel) -> str:
    """An accumulator narrower than the layer's worst case (the graph has no wrap-around)."""
    node = model.weight_nodes()[0]
    model.set_accumulator(node.proved_bits() - 1, "wrap", [node.name])
    return rf"'{node.name}'.*overflow.*accumulator.*Fix"


def break_avgpool(model: hwquant.IntModel) -> str:
    """Input codes so wide (24 bits) that a pool's window sums pass float32's exact 2^24."""
    node = next(n for n in model.nodes if isinstance(n, AvgPoolNode))
    next(n for n in model.nodes if n.name == node.inputs[0]).hi = 2**24 - 1
    return rf"'{node.name}'.*window sums.*2\^24.*Fix"


@pytest.mark.parametrize("breaks", [break_last_layer, break_accumulator, break_avgpool])
@pytest.mark.parametrize("form", [export_qonnx, export_qdq], ids=["qonnx", "qdq"])
def test_inexact_layers_are_refused(breaks, form):
    model, x = residual_net()
    with pytest.raises(UnsupportedLayerError, match=breaks(model)):
        form(model, tuple(x.shape))


def test_accumulator_check_is_the_interval_lower_proves():
    """The export refuses a layer exactly when the interval ``lower`` proves (the bias inside
    the accumulator, on its own side) leaves ``acc_bits``, as the engine and the RTL do: the
    16-bit layer of the accumulator-aware MLP was refused as 17 bits (issue 20)."""
    model, x = lowered_small_cnn()
    node = full_range_classifier(model)
    assert node.proved_interval() == (-(2**15), 255 * 127 + 128)
    assert (node.proved_bits(), node.worst_case_bits()) == (16, 17)
    model.set_accumulator(16, "raise", [node.name])
    acc = adversarial_run(node).output.reshape(2 * node.weight.shape[0], -1)
    assert (int(acc[0, 0]), int(acc[11, 1])) == (255 * 127 + 128, -(2**15))  # reached, no raise
    want = hwquant.engine.run(model, model.quantize_input(x)).output.numpy()
    assert np.array_equal(run_qonnx(export_qonnx(model, tuple(x.shape)), x.numpy()), want)
    assert np.array_equal(run_onnxruntime(export_qdq(model, tuple(x.shape)), x.numpy()), want)
    model.set_accumulator(15, "raise", [node.name])
    with pytest.raises(UnsupportedLayerError, match=r"overflow its 15-bit.*widen acc_bits to 16"):
        export_qonnx(model, tuple(x.shape))
