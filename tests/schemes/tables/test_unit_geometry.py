"""Table units of every convolution geometry (groups, dilation, non-square windows, the zero
insertion of a transposed convolution) against an independent dense reference: the same
unit with one group, undilated, its missing weights an extra table column of zeros."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from hwquant.qat.nn.zero_insert import zero_insert
from hwquant.schemes.tables import engine
from hwquant.schemes.tables.model import UnitNode


def _unit(out_ch: int, in_per_group: int, kernel: tuple[int, int], seed: int, **geometry):
    """A random conv unit with 4 activation levels, 3 weight levels and 2 thresholds."""
    gen = np.random.default_rng(seed)
    tau = np.sort(gen.integers(-400, 400, (out_ch, 2)), axis=1)
    return UnitNode(
        "u",
        ["x"],
        "conv",
        gen.integers(0, 3, (out_ch, in_per_group, *kernel)),
        gen.integers(-50, 50, (4, 3)),
        tau,
        gen.random(out_ch) < 0.3,
        np.zeros(out_ch, np.int64),
        np.arange(4.0),
        np.arange(3.0),
        np.arange(3.0),
        **geometry,
    )


def _dense(node: UnitNode) -> UnitNode:
    """``node`` as one undilated group: weight index 3 (a zero column) fills the gaps."""
    out_ch, per_group, kh, kw = node.weight_index.shape
    dh, dw = node.dilation
    size = out_ch // node.groups
    dense = np.full((out_ch, per_group * node.groups, dh * (kh - 1) + 1, dw * (kw - 1) + 1), 3)
    for o in range(out_ch):
        g = o // size
        dense[o, g * per_group : (g + 1) * per_group, ::dh, ::dw] = node.weight_index[o]
    table = np.concatenate([node.table, np.zeros((4, 1), np.int64)], axis=1)
    return replace(node, weight_index=dense, table=table, groups=1, dilation=(1, 1))


@pytest.mark.parametrize(
    ("groups", "kernel", "geometry"),
    [
        (4, (3, 3), dict(stride=1, padding=1)),  # depthwise-like
        (2, (1, 3), dict(stride=(1, 2), padding=(0, 1))),  # a grouped Conv1d form
        (1, (3, 3), dict(stride=1, padding=2, dilation=(2, 2))),
        (2, (3, 2), dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2))),
    ],
)
@pytest.mark.parametrize("kernel_choice", ["torch", "auto"])
def test_grouped_dilated_units_equal_their_dense_form(groups, kernel, geometry, kernel_choice):
    node = _unit(8, 8 // groups, kernel, groups, groups=groups, **geometry)
    x = torch.randint(0, 4, (2, 8, 7, 9))
    got = engine.run_unit(engine.compile_unit(node, engine=kernel_choice), x)
    want = engine.run_unit(engine.compile_unit(_dense(node), engine="torch"), x)
    assert got.dtype == torch.int64 and torch.equal(got, want)


@pytest.mark.parametrize("kernel_choice", ["torch", "auto"])
def test_zero_insertion_reads_the_zero_row(kernel_choice):
    insert = dict(insert_stride=(2, 2), insert_before=(1, 1), insert_after=(2, 2))
    node = _unit(4, 2, (3, 3), 7, groups=2, **insert)
    x = torch.randint(0, 4, (2, 4, 3, 3))
    got = engine.run_unit(engine.compile_unit(node, engine=kernel_choice), x)
    plain = replace(node, insert_stride=(1, 1), insert_before=(0, 0), insert_after=(0, 0))
    stuffed = zero_insert(x, (2, 2), (1, 1), (2, 2), fill=4)  # index |A| = 4: the zero row
    want = engine.run_unit(engine.compile_unit(plain, engine="torch"), stuffed)
    assert got.shape == (2, 4, 6, 6) and torch.equal(got, want)
    assert node.inserts_zeros and not plain.inserts_zeros
