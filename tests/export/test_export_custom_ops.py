"""hwquant's custom ops: reference executors, the worked table of the spec, and exact graphs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hwquant
from hwquant.engine import run
from hwquant.errors import UnsupportedLayerError
from hwquant.export import export_qdq, export_qonnx, run_qonnx
from hwquant.export.custom_ops import DOMAIN, codebook_weight, msq_weight
from hwquant.intmodel import CodebookEncoding, MSQEncoding
from hwquant.recipe import Recipe
from tests.helpers import lowered_small_cnn, trained_qat_model


def msq_encoding(shape: tuple[int, ...], seed: int) -> MSQEncoding:
    """Half the rows SP2 (m1=2, m2=1: |w| <= 4+2), half 4-bit fixed point."""
    rng = np.random.default_rng(seed)
    rows = np.arange(shape[0]) % 2 == 0
    mask = rows.reshape(-1, *([1] * (len(shape) - 1)))
    sign = np.where(mask, rng.choice([-1, 0, 1], shape), 0).astype(np.int8)
    shift1 = np.where(mask & (sign != 0), rng.integers(-1, 3, shape), -1).astype(np.int8)
    shift2 = np.where(mask & (sign != 0), rng.integers(-1, 2, shape), -1).astype(np.int8)
    fixed = np.where(mask, 0, rng.integers(-8, 8, shape)).astype(np.int64)
    return MSQEncoding(rows, sign, shift1, shift2, fixed, bits=4, m1=2, m2=1)


def codebook_encoding(shape: tuple[int, ...], seed: int) -> CodebookEncoding:
    """2-bit indices into a per-channel codebook of 4 integer levels."""
    rng = np.random.default_rng(seed)
    codebook = np.sort(rng.integers(-7, 8, (shape[0], 4)), axis=1)
    return CodebookEncoding(rng.integers(0, 4, shape), codebook, index_bits=2, grid_bits=4)


def test_spec_worked_tables():
    """The numbers of the worked tables in docs/export/custom_ops.md."""
    sign = np.array([[1, -1, 0, 1]], np.int8)
    shift1 = np.array([[2, 0, -1, -1]], np.int8)
    shift2 = np.array([[1, -1, -1, 0]], np.int8)
    fixed = np.array([[0, 0, 0, 0], [3, -8, 7, 0]])
    got = msq_weight(
        np.array([True, False]),
        np.vstack([sign, sign * 0]),
        np.vstack([shift1, -np.ones_like(shift1)]),
        np.vstack([shift2, -np.ones_like(shift2)]),
        fixed,
    )
    assert np.array_equal(got, [[6, -1, 0, 1], [3, -8, 7, 0]])
    codebook = np.array([[-5, -1, 2, 6]])
    assert np.array_equal(codebook_weight(np.array([[0, 3], [2, 1]]), codebook), [[-5, 6], [2, -1]])


@pytest.mark.parametrize("seed", range(5))
def test_reference_executors_decode_like_the_encodings(seed):
    shape = (6, 3, 3, 3)
    msq = msq_encoding(shape, seed)
    assert np.array_equal(
        msq_weight(msq.sp2_rows, msq.sign, msq.shift1, msq.shift2, msq.fixed), msq.decode()
    )
    book = codebook_encoding(shape, seed)
    assert np.array_equal(codebook_weight(book.indices, book.codebook), book.decode())
    shared = CodebookEncoding(book.indices, book.codebook[:1], 2, 4)
    assert np.array_equal(codebook_weight(shared.indices, shared.codebook), shared.decode())


def encoded_model():
    """The small CNN with an MSQ conv and a codebook conv (weights replaced by the decodes)."""
    model, x = lowered_small_cnn()
    convs = [n for n in model.weight_nodes() if n.op == "conv2d"]
    for node, encoding in zip(convs, (msq_encoding, codebook_encoding), strict=True):
        node.encoding = encoding(node.weight.shape, 0)
        node.weight = node.encoding.decode()
        node.weight_bits = 4
    return model, x


def test_custom_op_graph_equals_engine_exactly():
    pytest.importorskip("qonnx")
    model, x = encoded_model()
    proto = export_qonnx(model, tuple(x.shape), custom_ops=True)
    assert {n.op_type for n in proto.graph.node if n.domain == DOMAIN} == {
        "MSQWeight",
        "CodebookWeight",
    }
    out = run_qonnx(proto, x.numpy())
    assert np.array_equal(out, run(model, model.quantize_input(x)).output)


def test_encoded_layers_are_decoded_without_custom_ops():
    model, x = encoded_model()
    want = run(model, model.quantize_input(x)).output
    for proto in (export_qonnx(model, tuple(x.shape)), export_qdq(model, tuple(x.shape))):
        assert not [n for n in proto.graph.node if n.domain == DOMAIN]
    pytest.importorskip("qonnx")
    assert np.array_equal(run_qonnx(export_qonnx(model, tuple(x.shape)), x.numpy()), want)


@pytest.mark.parametrize(
    "recipe",
    [
        Recipe(scheme="msq", bn_freeze_step=1),
        Recipe(scheme="nonuniform", scale_constraint="pow2", bn_freeze_step=1),
    ],
    ids=["msq", "nonuniform"],
)
def test_trained_scheme_models_export_exactly(recipe):
    """The encodings the MSQ and non-uniform quantizers write go through the custom ops."""
    pytest.importorskip("qonnx")
    from hwquant.models import build

    torch.manual_seed(0)
    x = torch.randn(4, 1, 8, 8)
    qat = trained_qat_model(build("small_cnn", in_channels=1, input_size=8), recipe, x)
    model = hwquant.lower(qat, x)
    assert any(n.encoding is not None for n in model.weight_nodes())
    out = run_qonnx(export_qonnx(model, tuple(x.shape), custom_ops=True), x.numpy())
    assert np.array_equal(out, run(model, model.quantize_input(x)).output)


def test_qonnx_infers_shapes_and_integer_types_of_custom_ops():
    pytest.importorskip("qonnx")
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes

    model, x = encoded_model()
    wrapper = ModelWrapper(export_qonnx(model, tuple(x.shape), custom_ops=True))
    wrapper = wrapper.transform(InferShapes()).transform(InferDataTypes())
    convs = [n for n in model.weight_nodes() if n.encoding is not None]
    for node in convs:
        name = f"{node.name}/weight"
        assert tuple(wrapper.get_tensor_shape(name)) == node.weight.shape
        peak = int(np.abs(node.weight).max())
        assert wrapper.get_tensor_datatype(name).name == f"INT{peak.bit_length() + 1}"


def test_verify_node_reports_inconsistent_attributes():
    pytest.importorskip("qonnx")
    from onnx import helper

    from hwquant.export.qonnx_ops import CodebookWeight, MSQWeight

    inputs = ["sp2_rows", "sign", "shift1", "shift2", "fixed"]
    good = helper.make_node("MSQWeight", inputs, ["w"], domain=DOMAIN, bits=4, m1=2, m2=1)
    assert MSQWeight(good).verify_node() == []
    bad = helper.make_node("MSQWeight", inputs[:4], ["w"], domain=DOMAIN, bits=5, m1=2, m2=1)
    assert MSQWeight(bad).verify_node() == [
        "expects 5 inputs, has 4",
        "bits=5 is not m1 + m2 + 1 = 4",
    ]
    book = helper.make_node("CodebookWeight", ["i", "c"], ["w"], index_bits=0, grid_bits=4)
    assert CodebookWeight(book).verify_node() == ["index_bits=0 is below 1"]


def test_codebook_rows_must_be_one_or_per_channel():
    with pytest.raises(UnsupportedLayerError, match=r"3 rows; allowed: 1.*or 6.*Fix"):
        codebook_weight(np.zeros((6, 2), np.int64), np.zeros((3, 4), np.int64))
