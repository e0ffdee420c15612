"""Integer arithmetic: rounding, requantization, exact products, accumulators, nibbles."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from hwquant.core.errors import AccumulatorOverflowError, ConfigError
from hwquant.core.intmath import (
    Accumulator,
    aligned_requant_params,
    bits_needed,
    float_requant_exact,
    int_conv2d,
    int_linear,
    qrange,
    requant_params,
    requantize,
    round_half_up,
    split_nibbles,
)

ratios = st.floats(min_value=1e-6, max_value=1e3, allow_nan=False, allow_infinity=False)


def test_round_half_up_sends_ties_up():
    v = torch.tensor([-2.5, -1.5, -0.5, 0.5, 1.5, 2.4, 2.6])
    assert round_half_up(v).tolist() == [-2.0, -1.0, 0.0, 1.0, 2.0, 2.0, 3.0]


@given(ratio=ratios, bits=st.integers(2, 24))
def test_requant_params_precision(ratio: float, bits: int):
    mult, shift = requant_params(np.array([ratio]), bits)
    m, s = int(mult[0]), int(shift[0])
    assert s >= 0 and m >= 1
    approx = Fraction(m, 2**s)
    assert abs(approx - Fraction(ratio)) <= Fraction(ratio) * Fraction(1, 2 ** (bits - 1))


@given(k=st.integers(-20, 20), bits=st.integers(2, 16))
def test_power_of_two_ratio_is_a_pure_shift(k: int, bits: int):
    mult, shift = requant_params(np.array([2.0**k]), bits)
    assert Fraction(int(mult[0]), 2 ** int(shift[0])) == Fraction(2) ** k
    if k <= 0:
        assert int(mult[0]) == 1 and int(shift[0]) == -k


def test_requant_params_rejects_bad_ratio():
    with pytest.raises(ConfigError, match="scale is zero"):
        requant_params(np.array([0.0]), 16)


@given(
    acc=st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=20),
    ratio=ratios,
    bits=st.integers(2, 16),
)
def test_requantize_is_round_half_up_of_exact_product(acc: list[int], ratio: float, bits: int):
    mult, shift = requant_params(np.array([ratio]), bits)
    m, s = int(mult[0]), int(shift[0])
    got = requantize(torch.tensor(acc), torch.tensor(m), torch.tensor(s), -(2**62), 2**62)
    expected = [int((Fraction(a * m, 2**s) + Fraction(1, 2)).__floor__()) for a in acc]
    assert got.tolist() == expected


@given(
    acc=st.lists(st.integers(-(2**23), 2**23), min_size=1, max_size=20),
    ratio=ratios,
    bits=st.integers(2, 16),
)
def test_float_requantize_equals_integer_requantize(acc: list[int], ratio: float, bits: int):
    mult, shift = (torch.from_numpy(a) for a in requant_params(np.array([ratio]), bits))
    assert float_requant_exact(2**23, mult)
    exact = requantize(torch.tensor(acc), mult, shift, -(2**15), 2**15 - 1)
    fast = requantize(torch.tensor(acc, dtype=torch.float32), mult, shift, -(2**15), 2**15 - 1)
    assert fast.dtype == torch.float32 and torch.equal(fast.to(torch.int64), exact)


def test_requantize_clamps():
    out = requantize(torch.tensor([-100, 5, 100]), torch.tensor(1), torch.tensor(0), 0, 15)
    assert out.tolist() == [0, 5, 15]


@given(ra=ratios, rb=ratios)
def test_aligned_requant_share_a_shift(ra: float, rb: float):
    mults, shift = aligned_requant_params([ra, rb], 16)
    for m, r in zip(mults, (ra, rb), strict=True):
        assert abs(Fraction(int(m), 2**shift) - Fraction(r)) <= Fraction(1, 2 ** (shift + 1))
    # the larger ratio keeps all its bits, also when it is a power of two
    assert int(max(mults)) >= 2**15


def test_aligned_requant_power_of_two_keeps_the_small_operand():
    mults, shift = aligned_requant_params([1.0, 0.3], 16)
    assert shift == 15 and abs(int(mults[1]) / 2**shift - 0.3) <= 2.0 ** -(shift + 1)


@pytest.mark.parametrize("groups", [1, 2, 4])
@pytest.mark.parametrize("magnitude", [7, 2**14, 2**27])  # float32, float64 and int64 paths
def test_int_conv2d_backends_agree(groups: int, magnitude: int):
    g = torch.Generator().manual_seed(groups)
    x = torch.randint(-magnitude, magnitude, (2, 4, 6, 6), generator=g)
    w = torch.randint(-magnitude, magnitude, (8, 4 // groups, 3, 3), generator=g)
    b = torch.randint(-magnitude, magnitude, (8,), generator=g)
    args = ((2, 1), (1, 1), (1, 1), groups, magnitude)
    fast = int_conv2d(x, w, b, *args)
    reference = int_conv2d(x, w, b, *args, backend="int64")
    assert reference.dtype == torch.int64
    assert fast.dtype == (
        torch.float32
        if magnitude == 7
        else reference.dtype
        if magnitude == 2**27
        else torch.float64
    )
    assert torch.equal(fast.to(torch.int64), reference)


def test_int_conv2d_matches_python_sum():
    x = torch.tensor([[[[1, 2], [3, 4]]]])
    w = torch.tensor([[[[5, -6], [7, 8]]]])
    out = int_conv2d(x, w, torch.tensor([10]), (1, 1), (0, 0), (1, 1), 1, x_max=4)
    assert out.item() == 1 * 5 - 2 * 6 + 3 * 7 + 4 * 8 + 10


@pytest.mark.parametrize("magnitude", [15, 2**30])
def test_int_linear_backends_agree(magnitude: int):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(-magnitude, magnitude, (3, 17), generator=g)
    w = torch.randint(-magnitude, magnitude, (5, 17), generator=g)
    assert torch.equal(int_linear(x, w, None, magnitude).to(torch.int64), x @ w.t())
    assert torch.equal(int_linear(x, w, None, magnitude, backend="int64"), x @ w.t())


@given(
    values=st.lists(st.integers(-(2**20), 2**20), min_size=1, max_size=30), bits=st.integers(2, 20)
)
def test_accumulator_policies(values: list[int], bits: int):
    acc = torch.tensor(values)
    lo, hi = qrange(bits, signed=True)
    outside = sum(1 for v in values if not lo <= v <= hi)
    wrapped, count = Accumulator(bits, "wrap").apply(acc, "layer")
    assert count == outside
    for v, w in zip(values, wrapped.tolist(), strict=True):
        assert lo <= w <= hi and (v - w) % 2**bits == 0
    saturated, _ = Accumulator(bits, "saturate").apply(acc, "layer")
    assert saturated.tolist() == [min(max(v, lo), hi) for v in values]
    if outside:
        with pytest.raises(AccumulatorOverflowError, match=r"layer 'layer'.*Fix"):
            Accumulator(bits, "raise").apply(acc, "layer")
    else:
        assert torch.equal(Accumulator(bits, "raise").apply(acc, "layer")[0], acc)


def test_accumulator_rejects_bad_settings():
    with pytest.raises(ConfigError, match="wrap, saturate, raise"):
        Accumulator(16, "clip")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"2\.\.62"):
        Accumulator(1)


@given(bits=st.integers(1, 16), signed=st.booleans(), data=st.data())
def test_split_nibbles_reconstructs(bits: int, signed: bool, data: st.DataObject):
    lo, hi = qrange(bits, signed)
    values = data.draw(st.lists(st.integers(lo, hi), min_size=1, max_size=20))
    v = torch.tensor(values)
    digits = split_nibbles(v, bits)
    total = sum(d * 16**k for k, d in enumerate(digits))
    assert torch.equal(total, v)
    for d in digits[:-1]:
        assert int(d.min()) >= 0 and int(d.max()) <= 15
    assert int(digits[-1].min()) >= (-8 if signed else 0) and int(digits[-1].max()) <= 15


def test_bits_needed():
    assert [bits_needed(p) for p in (0, 1, 127, 128, 32767, 32768)] == [1, 2, 8, 9, 16, 17]
