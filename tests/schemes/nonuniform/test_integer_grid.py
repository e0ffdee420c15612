"""Single-scale integer codebooks: levels snapped to a power-of-two B-bit grid (methods.md §1.2)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from hwquant.core.errors import ConfigError
from hwquant.schemes.nonuniform.integer_grid import check_codebook_fits, grid_limit, snap_levels


@st.composite
def spread_levels(draw):
    """k ascending levels with gaps of at least 1/40 of their span, and a grid that holds them."""
    k = draw(st.integers(2, 16))
    gaps = draw(st.lists(st.floats(1.0, 4.0), min_size=k - 1, max_size=k - 1))
    start = draw(st.floats(-3.0, 0.0))
    unit = draw(st.floats(1e-4, 1.0))
    values = [start]
    for gap in gaps:
        values.append(values[-1] + gap)
    return torch.tensor(values) * unit, draw(st.integers(8, 16))


@given(spread_levels())
def test_snapping_gives_a_power_of_two_scale_and_nearest_grid_integers(case):
    levels, grid_bits = case
    codebook, scale = snap_levels(levels, grid_bits)
    s = float(scale)
    assert scale.shape == (1,) and codebook.dtype == torch.int64
    assert math.log2(s) == round(math.log2(s))  # a power of two
    limit = grid_limit(grid_bits)
    assert int(codebook.abs().max()) <= limit
    # the smallest such power of two: half of it would put the largest level off the grid
    assert float(levels.abs().max()) / (s / 2) > limit
    # each integer is the nearest grid point of its level
    assert bool(((codebook.double() * s - levels.double()).abs() <= s / 2 + 1e-12).all())
    assert bool((codebook[1:] > codebook[:-1]).all())  # sorted and distinct


def test_levels_that_merge_on_the_grid_are_an_error_naming_b_and_b():
    levels = 5.0 + 0.001 * torch.arange(8, dtype=torch.float32)
    with pytest.raises(ConfigError, match=r"layer 'fc1'.*weight_bits b = 3.*grid_bits B = 8.*Fix:"):
        snap_levels(levels, 8, layer="fc1")


@pytest.mark.parametrize(("b", "B"), [(2, 2), (3, 3), (4, 4), (8, 8)])
def test_a_codebook_larger_than_the_grid_is_an_error(b, B):
    with pytest.raises(ConfigError, match=rf"b = {b}.*B = {B}.*grid_bits >= {b + 1}"):
        check_codebook_fits(b, B)


@pytest.mark.parametrize(("b", "B"), [(2, 3), (3, 4), (4, 5), (4, 8)])
def test_a_grid_with_room_for_the_codebook_is_accepted(b, B):
    check_codebook_fits(b, B)
