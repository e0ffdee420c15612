"""Multiply-free kernels against straightforward references."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from hwquant.core.intmath import window_sum
from hwquant.schemes.tables import kernels


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 6), st.integers(2, 5), st.integers(1, 4), st.integers(1, 11), st.data())
def test_grouped_lookup_equals_the_sum_of_table_entries(acts, weights, group, fan_in, data):
    seed = data.draw(st.integers(0, 2**16))
    gen = torch.Generator().manual_seed(seed)
    table = torch.randint(-500, 500, (acts, weights), generator=gen)
    w = torch.randint(0, weights, (3, fan_in), generator=gen)
    x = torch.randint(0, acts + 1, (2, 5, fan_in), generator=gen)  # index `acts` is padding
    padded = torch.cat([table, torch.zeros_like(table[:1])])
    expected = padded[x[:, :, None, :], w[None, None, :, :]].sum(-1)  # [N, P, O]
    plan = kernels.compile_lookup(table, w, group)
    assert torch.equal(kernels.accumulate(plan, x).long(), expected)


@pytest.mark.parametrize(("kernel", "stride", "padding"), [(3, 1, 1), (3, 2, 1), (1, 2, 0)])
def test_patches_match_unfold(kernel, stride, padding):
    x = torch.randint(0, 7, (2, 3, 6, 6))
    cols, out_h, out_w = kernels.patches(x, kernel, stride, padding, pad_index=99)
    reference = F.unfold(x.double() + 1, kernel, padding=padding, stride=stride)  # pads with 0
    reference = torch.where(reference == 0, 99.0, reference - 1).long().transpose(1, 2)
    assert torch.equal(cols, reference)
    assert out_h * out_w == cols.shape[1]


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "dilation"),
    [
        ((1, 5), (1, 2), (0, 2), (1, 1)),
        ((3, 3), (1, 1), (2, 2), (2, 2)),
        ((2, 3), (2, 1), (1, 0), (1, 2)),
    ],
)
def test_patches_take_every_geometry(kernel, stride, padding, dilation):
    x = torch.randint(0, 7, (2, 3, 7, 9))
    cols, out_h, out_w = kernels.patches(x, kernel, stride, padding, 99, dilation)
    reference = F.unfold(x.double() + 1, kernel, dilation, padding, stride)  # pads with 0
    reference = torch.where(reference == 0, 99.0, reference - 1).long().transpose(1, 2)
    assert torch.equal(cols, reference)
    assert out_h * out_w == cols.shape[1]


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "dilation"),
    [(3, 2, 0, 1), (2, 2, 1, 1), ((3, 2), (2, 3), (1, 0), (2, 1)), (3, 3, 1, 2)],
)
def test_window_max_with_dilation_and_ceil_mode_matches_max_pool(kernel, stride, padding, dilation):
    x = torch.randint(0, 9, (2, 3, 7, 8))
    for ceil_mode in (False, True):
        want = F.max_pool2d(x.double(), kernel, stride, padding, dilation, ceil_mode).long()
        got = kernels.window_max(x, kernel, stride, padding, dilation, ceil_mode)
        assert torch.equal(got, want), ceil_mode


def test_window_max_of_a_non_square_window():
    x = torch.randint(0, 9, (2, 3, 4, 8))
    assert torch.equal(
        kernels.window_max(x, (1, 2), (1, 2), 0), F.max_pool2d(x.double(), (1, 2)).long()
    )


def test_window_max_and_sum():
    x = torch.randint(0, 9, (2, 3, 6, 6))
    reference = F.max_pool2d(x.double(), 3, 2, 1).long()
    assert torch.equal(kernels.window_max(x, 3, 2, 1), reference)
    assert torch.equal(window_sum(x, 2), (F.avg_pool2d(x.double(), 2) * 4).long())
    assert torch.equal(window_sum(x, None)[..., 0, 0], x.sum((2, 3)))


def test_count_passed_flips_on_descending_channels():
    acc = torch.tensor([[5, 5]])
    tau = torch.tensor([[0, 5, 9], [0, 5, 9]])
    assert kernels.count_passed(acc, tau, torch.tensor([False, True])).tolist() == [[2, 2]]
    assert kernels.count_passed(acc + 1, tau, torch.tensor([False, True])).tolist() == [[2, 1]]


def test_lookup_add_reads_the_table():
    table = torch.arange(6).reshape(2, 3)
    start = torch.tensor([0, 3])
    a, b = torch.tensor([1, 0, 1]), torch.tensor([2, 1, 0])
    assert torch.equal(kernels.lookup_add(table, start, a, b), table[a, b])


def test_choose_group_respects_the_budget():
    assert kernels.choose_group(9, 288, 32) == 3
    assert kernels.choose_group(257, 9, 32) == 1
    assert kernels.choose_group(9, 144, 16, block_budget=2**13) == 2  # 9^3·16 > 2^13
    assert kernels.choose_group(9, 144, 16, block_budget=2**14) == 3
