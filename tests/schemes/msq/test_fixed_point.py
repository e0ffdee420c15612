"""Fixed-point level set: the definition, nearest-level projection, ties and clipping."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from hwquant.core.errors import ConfigError
from hwquant.schemes.msq.fixed_point import FixedPointLevels

bits_st = st.integers(2, 16)
values_st = st.lists(st.floats(-1e5, 1e5, allow_nan=False, width=32), min_size=1, max_size=40)


@given(bits=bits_st)
def test_levels_match_the_definition(bits):
    levels = FixedPointLevels(bits)
    q = 2 ** (bits - 1) - 1
    assert levels.max_int == q
    assert levels.integers().tolist() == list(range(-q, q + 1))
    assert levels.levels().tolist() == [k / q for k in range(-q, q + 1)]
    assert levels.integers().numel() == 2**bits - 1


def test_four_bit_levels():
    assert FixedPointLevels(4).levels().mul(7).tolist() == list(range(-7, 8))


@given(bits=bits_st, values=values_st)
def test_projection_is_the_nearest_level_in_range(bits, values):
    levels = FixedPointLevels(bits)
    v = torch.tensor(values)
    codes = levels.project(v)
    ints = levels.integers().float()
    assert bool(torch.isin(codes, ints).all())
    best = (v.view(-1, 1) - ints.view(1, -1)).abs().amin(dim=1)
    assert torch.equal((v - codes).abs(), best)


@given(bits=bits_st, k=st.integers(-(2**15), 2**15))
def test_ties_go_towards_plus_infinity_and_ends_clip(bits, k):
    levels = FixedPointLevels(bits)
    q = levels.max_int
    code = int(levels.project(torch.tensor([k + 0.5], dtype=torch.float64)))
    assert code == min(max(k + 1, -q), q)


@pytest.mark.parametrize("bits", [1, 0, 17, 2.0])
def test_bad_bits_are_refused(bits):
    with pytest.raises(ConfigError, match=r"Fix: use an integer in 2\.\.16"):
        FixedPointLevels(bits)
