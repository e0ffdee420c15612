"""Codebook families: level sets, nearest-level indices, bad codebooks."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hwquant.core.errors import ConfigError
from hwquant.qat.recipe import CODEBOOK_FAMILIES
from hwquant.schemes.tables.codebooks import (
    FAMILIES,
    check_codebook,
    estimate,
    lloyd_max,
    nearest_index,
    pixel_levels,
)

samples = st.lists(st.floats(-50, 50, allow_nan=False), min_size=1, max_size=200).map(
    lambda v: torch.tensor(v, dtype=torch.float64)
)


def test_families_are_the_recipe_choices():
    assert tuple(FAMILIES) == CODEBOOK_FAMILIES


@settings(max_examples=30, deadline=None)
@given(samples, st.integers(2, 12), st.booleans(), st.sampled_from(CODEBOOK_FAMILIES))
def test_levels_are_k_distinct_increasing(x, k, unsigned, family):
    if unsigned:
        x = x.clamp_min(0)
    levels = estimate(family, x, k, unsigned)
    assert levels.shape == (k,) and levels.dtype == torch.float64
    assert bool((levels[1:] > levels[:-1]).all())
    if unsigned:
        assert float(levels[0]) == 0.0  # ReLU's exact zeros have a level


eighths = st.lists(st.integers(-400, 400), min_size=1, max_size=100).map(
    lambda v: torch.tensor(v, dtype=torch.float64) / 8
)  # exact in binary, so distances and ties are exact


@settings(max_examples=50, deadline=None)
@given(eighths, st.integers(2, 9))
def test_nearest_index_is_the_argmin_with_ties_up(x, k):
    levels = torch.arange(k, dtype=torch.float64) * 5 - 20
    index = nearest_index(x, levels)
    distance = (x[:, None] - levels[None, :]).abs()
    best = distance.min(1).values
    # the chosen level is at minimum distance, and it is the upper one on a tie
    assert torch.equal(distance.gather(1, index[:, None])[:, 0], best)
    last_best = k - 1 - (distance == best[:, None]).flip(1).int().argmax(1)
    assert torch.equal(index, last_best)


def test_fixed_families_use_only_the_range():
    x = torch.tensor([-4.0, 0.5, 1.0])
    assert torch.equal(estimate("fixed-uniform", x, 5, False), torch.linspace(-4, 4, 5).double())
    pow2 = estimate("fixed-pow2", x, 5, False)
    assert pow2.tolist() == [-4.0, -2.0, 0.0, 2.0, 4.0]
    assert estimate("fixed-pow2", x.abs(), 4, True).tolist() == [0.0, 1.0, 2.0, 4.0]


def test_lloyd_max_of_a_gaussian_matches_the_known_levels():
    # Max (1960): the 2-level optimum of N(0,1) is ±√(2/π) ≈ ±0.7979
    x = torch.special.ndtri((torch.arange(20000, dtype=torch.float64) + 0.5) / 20000)
    levels = lloyd_max(x, 2, False)
    assert torch.allclose(levels, torch.tensor([-0.7979, 0.7979], dtype=torch.float64), atol=2e-3)


def test_kmeans_finds_two_clusters():
    x = torch.cat([torch.full((50,), -3.0), torch.full((50,), 5.0)])
    assert estimate("kmeans", x, 2, False).tolist() == [-3.0, 5.0]


def test_pixel_levels_are_the_256_pixel_values():
    pixels = torch.arange(256, dtype=torch.float64)
    x = (pixels / 255 - 0.3) / 0.4
    assert torch.equal(nearest_index(x, pixel_levels(x, 256)), pixels.long())


def test_repeated_levels_and_unknown_family_are_refused():
    with pytest.raises(ConfigError, match="repeats"):
        check_codebook("W", torch.tensor([0.0, 1.0, 1.0]))
    with pytest.raises(ConfigError, match="Fix: use one of"):
        estimate("lloyd", torch.ones(3), 2, False)
