"""Integer tables and thresholds: products, overflow, BN/ReLU/quantization folding."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hwquant.core.errors import AccumulatorOverflowError, ConfigError
from hwquant.schemes.tables import fold
from hwquant.schemes.tables.codebooks import nearest_index
from hwquant.schemes.tables.kernels import count_passed


def test_product_table_is_rounded_products_at_entry_bits():
    a = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    w = torch.tensor([-2.0, 1.0], dtype=torch.float64)
    table, scale = fold.product_table(a, w, 8)
    assert scale == 2.0 / 127
    assert table.tolist() == [[0, 0], [-63, 32], [-127, 64]]  # -63.5 and 63.5 round up


def test_bad_tables_are_refused():
    a = torch.tensor([0.0, 1.0], dtype=torch.float64)
    with pytest.raises(ConfigError, match="repeats"):
        fold.product_table(a, torch.tensor([1.0, 1.0], dtype=torch.float64), 8)
    with pytest.raises(ConfigError, match="overflows entry_bits=4"):
        fold.check_table(torch.tensor([[9, -3]]), 4, 10, "conv1")
    with pytest.raises(AccumulatorOverflowError, match="Fix: lower entry_bits"):
        fold.check_table(torch.tensor([[2**15 - 1]]), 16, 2**17, "conv1")


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(-3, 3), min_size=3, max_size=3),
    st.lists(st.floats(-2, 2), min_size=3, max_size=3),
    st.booleans(),
    st.sampled_from([None, 1.5]),
)
def test_thresholds_count_equals_nearest_level_of_the_activation(gains, offsets, relu, ceiling):
    gain = torch.tensor(gains, dtype=torch.float64)
    offset = torch.tensor(offsets, dtype=torch.float64)
    levels = torch.tensor([0.0, 0.4, 1.1, 2.5] if relu else [-1.5, -0.2, 0.7, 2.0]).double()
    ceiling = ceiling if relu else None  # ReLU6's clip (here at 1.5: above two levels)
    tau, descending = fold.thresholds(fold.Affine(gain / 16, offset, relu, ceiling), levels)
    acc = torch.arange(-300, 301, dtype=torch.int64)
    value = acc[:, None].double() * (gain / 16)[None, :] + offset[None, :]
    if relu:
        value = value.clamp(0, ceiling)
    expected = nearest_index(value, levels)
    counted = count_passed(acc[:, None].expand(-1, 3), tau, descending)
    # the two agree except where float rounding puts a value exactly on a midpoint
    mids = fold.midpoints(levels)
    on_edge = ((value[..., None] - mids).abs() < 1e-9).any(-1)
    assert torch.equal(counted[~on_edge], expected[~on_edge])
    assert torch.equal(descending, gain < 0)


def test_add_table_and_pool_form():
    left = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)
    right = torch.tensor([0.0, 2.0], dtype=torch.float64)
    out = torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64)
    assert fold.add_table(left, right, out, relu=True).tolist() == [[0, 1], [0, 2], [1, 3]]
    clipped = fold.add_table(left, right, out, relu=True, ceiling=1.2)
    assert clipped.tolist() == [[0, 1], [0, 1], [1, 1]]  # ReLU6-like clip at 1.2
    product = fold.add_table(left, right, out, relu=False, product=True)
    assert product.tolist() == [[0, 0], [0, 0], [0, 2]]  # a_i·b_j: -2 -> level 0
    values, tau = fold.pool_form(torch.tensor([0.0, 1.0, 2.0]).double(), out, 4, 8)
    assert values.tolist() == [0, 64, 127]  # s_V = 2/127
    assert tau.tolist() == [127, 381, 635]  # ceil(m·4/s_V) for m = 0.5, 1.5, 2.5
