"""SP2 level set: the paper's definition, the 4-bit table, projection, shift pairs, bad splits."""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from hwquant.core.errors import ConfigError
from hwquant.core.intmath import bits_needed
from hwquant.schemes.msq.sp2 import SP2Levels, allowed_splits

SPLITS = [(bits, m1, m2) for bits in range(2, 10) for m1, m2 in allowed_splits(bits)]
split_st = st.sampled_from(SPLITS)
values_st = st.lists(st.floats(-1e5, 1e5, allow_nan=False, width=32), min_size=1, max_size=40)


def _definition(m1: int, m2: int) -> set[Fraction]:
    """Magnitudes {q1 + q2} / max, straight from methods.md §2.1."""
    q1 = [Fraction(0)] + [Fraction(1, 2**i) for i in range(1, 2**m1)]
    q2 = [Fraction(0)] + [Fraction(1, 2**i) for i in range(1, 2**m2)]
    sums = {a + b for a, b in itertools.product(q1, q2)}
    top = max(sums)
    return {s / top for s in sums}


def test_four_bit_magnitudes_are_the_papers():
    levels = SP2Levels(4)
    assert (levels.m1, levels.m2, levels.max_int) == (2, 1, 8)
    expected = [0, 1 / 8, 1 / 4, 1 / 2, 5 / 8, 3 / 4, 1]
    assert levels.levels()[6:].tolist() == expected
    assert levels.levels().numel() == 13
    # 2^E = 8 needs one bit more than m = 4
    assert bits_needed(levels.max_int) == 5


@pytest.mark.parametrize(("bits", "m1", "m2"), SPLITS)
def test_levels_match_the_definition(bits, m1, m2):
    levels = SP2Levels(bits, m1, m2)
    got = {Fraction(int(k), levels.max_int) for k in levels.magnitudes()}
    assert got == _definition(m1, m2)
    assert levels.integers().tolist() == sorted({-k for k in got_ints(levels)} | got_ints(levels))
    if m2 >= 1:  # the unit is α / 2^(2^m1 - 1)
        assert levels.max_int == 2 ** (2**m1 - 1)


def got_ints(levels: SP2Levels) -> set[int]:
    return set(levels.magnitudes().tolist())


def test_default_split_is_ceil_half():
    assert [(SP2Levels(b).m1, SP2Levels(b).m2) for b in range(2, 10)] == [
        (1, 0), (1, 1), (2, 1), (2, 2), (3, 2), (3, 3), (4, 3), (4, 4)
    ]  # fmt: skip


@given(split=split_st, values=values_st)
def test_projection_is_the_nearest_level(split, values):
    levels = SP2Levels(*split)
    v = torch.tensor(values, dtype=torch.float64)
    codes = levels.project(v)
    ints = levels.integers().double()
    assert bool(torch.isin(codes, ints).all())
    best = (v.view(-1, 1) - ints.view(1, -1)).abs().amin(dim=1)
    assert torch.equal((v - codes).abs(), best)


@given(split=split_st, data=st.data())
def test_ties_go_to_the_upper_level(split, data):
    levels = SP2Levels(*split)
    ints = levels.integers().tolist()
    k = data.draw(st.integers(0, len(ints) - 2))
    middle = torch.tensor([(ints[k] + ints[k + 1]) / 2], dtype=torch.float32)
    assert int(levels.project(middle)) == ints[k + 1]


@given(split=split_st, data=st.data())
def test_shift_pairs_decode_to_the_codes(split, data):
    levels = SP2Levels(*split)
    ints = levels.integers().tolist()
    codes = np.array(data.draw(st.lists(st.sampled_from(ints), min_size=1, max_size=30)))
    sign, shift1, shift2 = levels.decompose(codes)
    assert sign.dtype == shift1.dtype == shift2.dtype == np.int8
    wide = [s.astype(np.int64) for s in (shift1, shift2)]
    term = [np.where(s >= 0, np.left_shift(1, np.maximum(s, 0)), 0) for s in wide]
    assert np.array_equal(sign * (term[0] + term[1]), codes)
    assert set(shift1.tolist()) <= {-1, *levels.shifts1}
    assert set(shift2.tolist()) <= {-1, *levels.shifts2}
    assert np.array_equal(sign, np.sign(codes))


def test_canonical_pair_of_one_half_uses_q1():
    levels = SP2Levels(4)
    sign, shift1, shift2 = levels.decompose(np.array([4, -8, 5, 0]))
    assert shift1.tolist() == [2, 2, 0, -1] and shift2.tolist() == [-1, 2, 2, -1]
    assert sign.tolist() == [1, -1, 1, 0]


def test_decompose_refuses_values_off_the_set():
    with pytest.raises(ConfigError, match=r"\[3, 9\] are not 4-bit SP2 integers.*Fix"):
        SP2Levels(4).decompose(np.array([1, 3, 9]))


@pytest.mark.parametrize(
    ("bits", "m1", "m2", "allowed"),
    [
        (4, 1, 2, r"\(m1=2, m2=1\), \(m1=3, m2=0\)"),
        (4, 2, 2, r"\(m1=2, m2=1\), \(m1=3, m2=0\)"),
        (5, 1, 3, r"\(m1=2, m2=2\), \(m1=3, m2=1\), \(m1=4, m2=0\)"),
        (9, 5, 3, r"\(m1=4, m2=4\)"),
    ],
)
def test_bad_splits_list_the_allowed_ones(bits, m1, m2, allowed):
    with pytest.raises(ConfigError, match=rf"m1={m1}, m2={m2} is not allowed.*Fix: use one of "
                       + allowed):  # fmt: skip
        SP2Levels(bits, m1, m2)


@pytest.mark.parametrize("bits", [1, 10, 16])
def test_bits_without_an_sp2_set_are_refused(bits):
    with pytest.raises(ConfigError, match=r"Fix: use an integer in 2\.\.9"):
        SP2Levels(bits)
