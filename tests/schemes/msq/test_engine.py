"""Shift-add execution of MSQ nodes: equal to the plain integer convolution, bit for bit, and
the end-to-end invariant (QAT eval output == lowered IntModel engine output) for MSQ models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import hwquant
from hwquant.core.intmath import int_conv2d, int_linear
from hwquant.engine import run
from hwquant.ir.intmodel import ConvNode, LinearNode, MSQEncoding
from hwquant.qat.nn import capture_codes
from hwquant.qat.recipe import MSQOptions, Recipe
from hwquant.schemes.msq.engine import shift_add_accumulate
from hwquant.schemes.msq.quantizer import sp2_row_count
from hwquant.schemes.msq.sp2 import SP2Levels
from tests.helpers import RandomNet, trained_qat_model


def _encoding(rows: int, shape: tuple[int, ...], bits: int, share: float, seed: int) -> MSQEncoding:
    """Random MSQ weights: SP2 rows drawn from the SP2 set, fixed rows from -Q..Q."""
    rng = np.random.default_rng(seed)
    sp2 = SP2Levels(bits)
    sp2_rows = rng.random(rows) < share
    on_sp2 = sp2_rows.reshape(-1, *([1] * len(shape)))
    q = 2 ** (bits - 1) - 1
    sp2_codes = rng.choice(sp2.integers().numpy(), size=(rows, *shape))
    fixed = np.where(on_sp2, 0, rng.integers(-q, q + 1, size=(rows, *shape)))
    sign, shift1, shift2 = sp2.decompose(np.where(on_sp2, sp2_codes, 0))
    return MSQEncoding(sp2_rows, sign, shift1, shift2, fixed, bits, sp2.m1, sp2.m2)


def _node_fields(enc: MSQEncoding, bias: np.ndarray | None, in_bits: int, signed: bool) -> dict:
    rows = enc.fixed.shape[0]
    return dict(
        name="layer",
        inputs=["x"],
        weight=enc.decode(),
        bias=bias,
        acc_scale=np.ones(rows),
        weight_bits=enc.bits + 1,
        in_bits=in_bits,
        in_signed=signed,
        encoding=enc,
    )


def _codes(shape: tuple[int, ...], in_bits: int, signed: bool, seed: int) -> torch.Tensor:
    lo, hi = (-(2 ** (in_bits - 1)), 2 ** (in_bits - 1) - 1) if signed else (0, 2**in_bits - 1)
    return torch.randint(lo, hi + 1, shape, generator=torch.Generator().manual_seed(seed))


@settings(max_examples=40)
@given(
    groups=st.integers(1, 3),
    c_in=st.integers(1, 3),
    c_out=st.integers(1, 4),
    kernel=st.sampled_from([1, 2, 3]),
    stride=st.integers(1, 2),
    padding=st.integers(0, 2),
    dilation=st.integers(1, 2),
    size=st.integers(3, 7),
    bits=st.integers(2, 9),
    in_bits=st.sampled_from([2, 4, 8, 12]),
    signed=st.booleans(),
    share=st.sampled_from([0.0, 0.3, 0.7, 1.0]),
    with_bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_conv_shift_add_equals_integer_conv(
    groups, c_in, c_out, kernel, stride, padding, dilation, size, bits, in_bits, signed, share,
    with_bias, seed,
):  # fmt: skip
    assume(dilation * (kernel - 1) + 1 <= size + 2 * padding)
    rows = groups * c_out
    enc = _encoding(rows, (c_in, kernel, kernel), bits, share, seed)
    bias = np.arange(rows, dtype=np.int64) * 37 - 50 if with_bias else None
    node = ConvNode(
        **_node_fields(enc, bias, in_bits, signed),
        stride=(stride, stride),
        padding=(padding, padding),
        dilation=(dilation, dilation),
        groups=groups,
    )
    x = _codes((2, groups * c_in, size, size), in_bits, signed, seed)
    w = torch.from_numpy(node.weight)
    b = None if bias is None else torch.from_numpy(bias)
    args = ((stride,) * 2, (padding,) * 2, (dilation,) * 2, groups, 2**in_bits)
    expected = int_conv2d(x, w, b, *args, backend="int64")
    for backend, codes in (("int64", x), ("auto", x.float())):
        acc = shift_add_accumulate(node, codes, b, backend)
        assert torch.equal(acc.to(torch.int64), expected)
        assert acc.is_floating_point() == (backend == "auto")  # as int_conv2d returns it


@given(
    rows=st.integers(1, 9),
    features=st.integers(1, 20),
    bits=st.integers(2, 9),
    share=st.sampled_from([0.0, 0.5, 1.0]),
    seed=st.integers(0, 2**16),
)
def test_linear_shift_add_equals_integer_linear(rows, features, bits, share, seed):
    enc = _encoding(rows, (features,), bits, share, seed)
    bias = np.full(rows, -7, dtype=np.int64)
    node = LinearNode(**_node_fields(enc, bias, 8, False))
    x = _codes((3, features), 8, False, seed)
    expected = int_linear(x, torch.from_numpy(node.weight), torch.from_numpy(bias), 255, "int64")
    for backend, codes in (("int64", x), ("auto", x.float())):
        acc = shift_add_accumulate(node, codes, torch.from_numpy(bias), backend)
        assert torch.equal(acc.to(torch.int64), expected)


def _msq_net() -> RandomNet:
    blocks = [
        ("conv", 6, 3, 1, False, True, "relu", False),
        ("conv", 8, 3, 1, False, True, "relu", True),
        ("conv", 8, 3, 2, True, True, "relu6", False),  # depthwise: grouped shift-add
        ("residual", "relu"),
        ("maxpool",),
    ]
    return RandomNet(2, blocks, 5, True, 9)


@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_msq_models_are_bit_exact_and_survive_save_load(share, tmp_path):
    torch.manual_seed(0)
    x = torch.randn(4, 2, 9, 9)
    recipe = Recipe(
        scheme="msq",
        bn_freeze_step=1,
        msq=MSQOptions(sp2_share=share, refresh_steps=1, freeze_step=2),
    )
    qat = trained_qat_model(_msq_net(), recipe, x, steps=3)
    int_model = hwquant.lower(qat, x)
    encoded = [n for n in int_model.weight_nodes() if n.encoding is not None]
    assert len(encoded) == 4  # every inner layer; the first and last layers stay LLSQ
    sp2_counts = [int(n.encoding.sp2_rows.sum()) for n in encoded]
    assert sp2_counts == [sp2_row_count(n.weight.shape[0], share) for n in encoded]
    report = hwquant.verify(qat, int_model, x)
    assert report.exact, str(report)
    with capture_codes(qat) as codes:
        qat(x)
    x_int = int_model.quantize_input(x)
    result = run(int_model, x_int)
    out = result.output
    assert torch.equal(out, codes[int_model.output])
    assert torch.equal(run(int_model, x_int, backend="int64").output, out)
    assert torch.equal(run(int_model, x_int, four_bit=True).output, out)
    assert len(torch.unique(out)) > 1, "a degenerate test: every output is the same"
    for node in encoded:  # the SP2 rows' MACs ran without a multiply
        stats = result.stats[node.name]
        rows = node.encoding.sp2_rows
        assert stats.multiply_free_macs == stats.macs * int(rows.sum()) // rows.size
    loaded = hwquant.load(int_model.save(tmp_path / "msq.npz"))
    for before, after in zip(
        encoded, [n for n in loaded.weight_nodes() if n.encoding], strict=True
    ):
        assert isinstance(after.encoding, MSQEncoding)
        for field in ("sp2_rows", "sign", "shift1", "shift2", "fixed"):
            assert np.array_equal(getattr(after.encoding, field), getattr(before.encoding, field))
        assert (after.encoding.m1, after.encoding.m2) == (before.encoding.m1, before.encoding.m2)
    assert torch.equal(loaded.run(x_int), out)
