"""Round trips: qonnx (raw, cleaned, channels-last) and onnxruntime equal the engine exactly,
on every scheme, with real-valued or integer-code inputs; the graphs are float32 only."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

import hwquant
from hwquant.engine import run
from hwquant.export import export_qdq, export_qonnx, run_onnxruntime, run_qonnx
from hwquant.export.graph import BATCH, IR_VERSION, OPSET
from hwquant.qat.recipe import NonUniformOptions, Recipe
from tests.export.conftest import scheme_cnn

pytest.importorskip("onnxruntime")
pytest.importorskip("qonnx")

FLOAT_TYPES = {onnx.TensorProto.FLOAT}
ALLOWED_INITIALIZERS = {
    onnx.TensorProto.FLOAT,
    onnx.TensorProto.INT8,  # QDQ weights and zero points
    onnx.TensorProto.UINT8,
    onnx.TensorProto.INT64,  # Reshape's target shape
}


def engine_codes(model: hwquant.IntModel, x: torch.Tensor) -> np.ndarray:
    return run(model, model.quantize_input(x)).output.numpy()


def graph_input(model: hwquant.IntModel, x: torch.Tensor, codes: bool) -> np.ndarray:
    return model.quantize_input(x).float().numpy() if codes else x.numpy()


def qonnx_pipeline(proto: onnx.ModelProto, batch: int):
    """What a qonnx user does: batch size, cleanup, shapes, channels-last, then datatypes."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.change_batchsize import ChangeBatchSize
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.util.cleanup import cleanup_model

    cleaned = cleanup_model(ModelWrapper(proto).transform(ChangeBatchSize(batch)))
    cleaned = cleaned.transform(InferShapes()).transform(InferDataTypes())
    channels_last = cleanup_model(ModelWrapper(proto).transform(ChangeBatchSize(batch)))
    channels_last = channels_last.transform(InferShapes())
    channels_last = channels_last.transform(ConvertToChannelsLastAndClean())
    return cleaned, channels_last.transform(InferDataTypes())


def execute(wrapper, x: np.ndarray) -> np.ndarray:
    from qonnx.core.onnx_exec import execute_onnx

    out = execute_onnx(wrapper, {wrapper.graph.input[0].name: x})
    return out[wrapper.graph.output[0].name]


@pytest.mark.parametrize("codes", [False, True], ids=["values", "codes"])
def test_qonnx_round_trips_equal_the_engine(exported_model, codes):
    _, model, x = exported_model
    proto = export_qonnx(model, tuple(x.shape), quantize_input=not codes)
    onnx.checker.check_model(proto, full_check=True)
    want = engine_codes(model, x)
    inputs = graph_input(model, x, codes)
    assert np.array_equal(run_qonnx(proto, inputs), want)
    cleaned, channels_last = qonnx_pipeline(proto, len(x))
    assert np.array_equal(execute(cleaned, inputs), want)
    assert any(n.op_type == "Transpose" for n in channels_last.graph.node)
    assert np.array_equal(execute(channels_last, inputs), want)


LIMB_RECIPES = {
    "llsq_W8A8": Recipe(weight_bits=8, act_bits=8, bn_freeze_step=1),
    "nonuniform_W2A8": Recipe(  # 8-bit codebook integers, the BN gain per channel
        scheme="nonuniform",
        scale_constraint="pow2",
        weight_bits=2,
        act_bits=8,
        bn_freeze_step=1,
        nonuniform=NonUniformOptions(bn_gain="per_channel"),
    ),
}


@pytest.mark.parametrize("codes", [False, True], ids=["values", "codes"])
@pytest.mark.parametrize("recipe", LIMB_RECIPES.values(), ids=LIMB_RECIPES.keys())
def test_limb_requantizers_survive_qonnx_channels_last(recipe, codes):
    """W8A8 accumulators (or 8-bit codebook integers times 8-bit activations) times 16-bit
    per-channel multipliers pass float32's 2^24, so the requantizer is written in limbs (several
    exact products of the accumulator). The products come from one tiled tensor: a fork of the
    accumulator into several products is rewired wrongly by qonnx's channels-last pass (it
    failed shape inference, W6A6 and W8A8 alike)."""
    model, x = scheme_cnn(recipe)
    proto = export_qonnx(model, tuple(x.shape), quantize_input=not codes)
    assert any(node.op_type == "Tile" for node in proto.graph.node)  # the limb form is in use
    inputs, want = graph_input(model, x, codes), engine_codes(model, x)
    assert np.array_equal(run_qonnx(proto, inputs), want)
    cleaned, channels_last = qonnx_pipeline(proto, len(x))
    assert np.array_equal(execute(cleaned, inputs), want)
    assert np.array_equal(execute(channels_last, inputs), want)
    qdq = export_qdq(model, tuple(x.shape), quantize_input=not codes)
    assert np.array_equal(run_onnxruntime(qdq, inputs), want)


@pytest.mark.parametrize("codes", [False, True], ids=["values", "codes"])
def test_onnxruntime_round_trip_equals_the_engine(exported_model, codes):
    _, model, x = exported_model
    proto = export_qdq(model, tuple(x.shape), quantize_input=not codes)
    onnx.checker.check_model(proto, full_check=True)
    assert {n.domain for n in proto.graph.node} == {""}  # standard ONNX only
    assert np.array_equal(
        run_onnxruntime(proto, graph_input(model, x, codes)), engine_codes(model, x)
    )


def test_backend_onnxruntime_gives_the_engines_integers(exported_model):
    _, model, x = exported_model
    x_int = model.quantize_input(torch.cat([x, 3 * x, -x]))
    got = model.run(x_int, backend="onnxruntime")
    assert got.dtype == torch.int64
    assert torch.equal(got, model.run(x_int))
    assert torch.equal(model.run(x_int[:1], backend="onnxruntime"), model.run(x_int[:1]))


@pytest.mark.parametrize("form", [export_qonnx, export_qdq], ids=["qonnx", "qdq"])
def test_graphs_are_float32_only_with_a_symbolic_batch(exported_model, form):
    _, model, x = exported_model
    proto = form(model, tuple(x.shape))
    assert proto.ir_version == IR_VERSION
    assert {o.domain: o.version for o in proto.opset_import}[""] == OPSET
    assert not [n for n in proto.graph.node if n.op_type == "Cast"]
    inferred = onnx.shape_inference.infer_shapes(proto)
    tensors = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    kinds = {t.type.tensor_type.elem_type for t in tensors}
    assert kinds <= FLOAT_TYPES | {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
    assert {t.data_type for t in proto.graph.initializer} <= ALLOWED_INITIALIZERS
    for io in (proto.graph.input[0], proto.graph.output[0]):
        assert io.type.tensor_type.shape.dim[0].dim_param == BATCH


def test_msq_and_codebook_layers_are_written_decoded(exported_model):
    name, model, x = exported_model
    proto = export_qonnx(model, tuple(x.shape))
    assert {n.domain for n in proto.graph.node} <= {"", "qonnx.custom_op.general"}
    if name in ("msq_cnn", "nonuniform_cnn"):
        assert any(n.encoding is not None for n in model.weight_nodes())


def test_output_scale_is_in_the_metadata(exported_model):
    _, model, x = exported_model
    meta = {p.key: p.value for p in export_qonnx(model, tuple(x.shape)).metadata_props}
    assert np.array_equal(json.loads(meta["hwquant.output_scale"]), model.output_scale.reshape(-1))


def test_backend_options_are_honoured_or_refused():
    from tests.helpers import lowered_small_cnn

    model, x = lowered_small_cnn()
    x_int = model.quantize_input(x)
    with pytest.raises(hwquant.HwquantError, match=r"four_bit.*Fix"):
        model.run(x_int, four_bit=True, backend="onnxruntime")
    with pytest.raises(hwquant.HwquantError, match=r"'tpu'.*Fix"):
        model.run(x_int, backend="tpu")
    with pytest.raises(hwquant.HwquantError, match=r"integer codes.*Fix"):
        model.run(x, backend="onnxruntime")
    model.weight_nodes()[0].mult = model.weight_nodes()[0].mult + 1  # a changed model
    assert torch.equal(model.run(x_int, backend="onnxruntime"), model.run(x_int))
