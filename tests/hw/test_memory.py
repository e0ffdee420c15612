"""Weights on chip or streamed from DRAM: the placement in network order and the bandwidth."""

from __future__ import annotations

import dataclasses
import doctest
import types
from typing import Any, ClassVar

import pytest

from hwquant.hw import memory
from hwquant.hw.memory import DeviceFit, WeightTraffic, weight_traffic


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


def test_device_fit_reads_the_designs_usage_and_traffic():
    """DeviceFit: the fit verdict both cost models' designs share (estimate, folding)."""

    @dataclasses.dataclass(frozen=True)
    class Design(DeviceFit):
        block_key: ClassVar[str] = "bram18"
        block_name: ClassVar[str] = "RAMB18"
        usage: dict
        traffic: WeightTraffic
        device: Any = None
        images_per_s: float = 100.0

    kept = weight_traffic([800], [1], 1)
    dev = types.SimpleNamespace(name="dev")
    over = Design({"luts": (5, 10), "bram18": (9, 1)}, kept, dev)  # block RAM is the traffic's say
    assert over.logic_fits and over.fits and over.problems() == [] and over.dram_gbps == 0
    streamed = Design({"dsps": (3, 2)}, weight_traffic([800, 8000], [1, 1], 1), dev)
    assert not streamed.logic_fits and not streamed.weights_on_chip and not streamed.fits
    assert streamed.dram_gbps == 8000 / 8 * 100 / 1e9
    assert streamed.problems()[0] == "DSP slices: needs 3, dev has 2"
    assert "need 2 RAMB18, dev has 1" in streamed.problems()[1]
