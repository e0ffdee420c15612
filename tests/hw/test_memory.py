"""Weights on chip or streamed from DRAM: the placement in network order and the bandwidth."""

from __future__ import annotations

import doctest

import pytest

from hwquant.hw import memory
from hwquant.hw.memory import weight_traffic


def test_docstring_examples() -> None:
    assert doctest.testmod(memory).failed == 0


def test_layers_stay_on_chip_in_order_until_one_does_not_fit() -> None:
    t = weight_traffic([10, 20, 30, 5], [2, 3, 4, 1], capacity=6)
    # 2 + 3 fit; the third (4 blocks) does not, so it and every later layer stream
    assert (t.blocks_needed, t.blocks_used, t.on_chip_bits, t.streamed_bits) == (10, 5, 30, 35)
    assert not t.fits and t.bandwidth_gbps(1e9) == pytest.approx(35 / 8)


def test_everything_on_chip_needs_no_bandwidth() -> None:
    t = weight_traffic([10, 20], [1, 1], capacity=2)
    assert t.fits and t.bandwidth_gbps(1e6) == 0.0 and t.line("dev", "RAMB18", 1.0) == ""
