"""Where a design's weights live: the block RAMs while they fit, else DRAM, and the bandwidth
that streaming them takes.

Each layer's weights take their own whole block RAMs (``blocks[i]``). Layers are kept on chip
in network order while their blocks fit the device's ``capacity``; every later layer's weights
(``bits[i]``) stream from off-chip DRAM. A design reads every weight once per image (batch 1),
so the streamed bits cross the DRAM interface once per image and the bandwidth it needs is

    bandwidth = streamed bits / 8 · images per second   [bytes/s].

(Keeping the first layers is one simple placement, not the best one; a design that packs the
layers better streams less.)

>>> t = weight_traffic(bits=[1000, 80_000, 8_000], blocks=[1, 3, 1], capacity=3)
>>> (t.blocks_used, t.streamed_bits, t.fits)  # the second layer's 3 blocks do not fit
(1, 88000, False)
>>> round(t.bandwidth_gbps(images_per_s=50_000), 3)  # 11 kB per image x 50k images/s
0.55
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class WeightTraffic:
    """Blocks needed and kept, bits kept on chip and streamed from DRAM."""

    blocks_needed: int
    blocks_used: int
    capacity: int
    on_chip_bits: int
    streamed_bits: int

    @property
    def fits(self) -> bool:
        """Whether every layer's weights fit the block RAMs."""
        return self.streamed_bits == 0 and self.blocks_needed <= self.capacity

    def bandwidth_gbps(self, images_per_s: float) -> float:
        """DRAM bandwidth in GB/s (10^9 bytes) at ``images_per_s`` (module docstring)."""
        return self.streamed_bits / 8 * images_per_s / 1e9

    def line(self, device: str, block: str, images_per_s: float) -> str:
        """The fit line of a design whose weights do not fit (empty when they do)."""
        if self.fits:
            return ""
        return (
            f"weights: need {self.blocks_needed:,} {block}, {device} has {self.capacity:,}; "
            f"{self.streamed_bits / 8 / 1e6:,.2f} MB of them must stream from DRAM at "
            f"{self.bandwidth_gbps(images_per_s):,.2f} GB/s ({images_per_s:,.1f} images/s)"
        )


def fit_problems(
    usage: dict[str, tuple[int, int]],
    device: str,
    traffic: WeightTraffic,
    block: str,
    images_per_s: float,
) -> list[str]:
    """One line per resource of ``usage`` (``key -> (used, available)``) over the device's
    count, and the weights' DRAM line when they do not fit the ``block`` RAMs (empty when
    everything fits): the fit check of every cost model.

    >>> fit_problems({"luts": (90, 100), "dsps": (9, 8)}, "dev",
    ...              weight_traffic([1], [1], 1), "BRAM36", 10.0)
    ['DSP slices: needs 9, dev has 8']
    """
    names = {"luts": "LUTs", "ffs": "flip-flops", "dsps": "DSP slices"}
    lines = [
        f"{names[key]}: needs {used:,}, {device} has {have:,}"
        for key, (used, have) in usage.items()
        if key in names and used > have
    ]
    if not traffic.fits:
        lines.append(traffic.line(device, block, images_per_s))
    return lines


class DeviceFit:
    """Whether a design fits its device, read from what the design reports: the base of the
    cost models' designs (:class:`hwquant.hw.estimate.ArrayDesign`,
    :class:`hwquant.hw.folding.FoldedDesign`).

    A subclass gives ``usage`` (``resource -> (used, available)``, its block RAM under
    :attr:`block_key`), ``traffic`` (its weights' :class:`WeightTraffic`), ``images_per_s`` and
    ``device``; :attr:`block_name` names its block RAM in :meth:`problems`.
    """

    block_key: ClassVar[str]
    block_name: ClassVar[str]

    @property
    def logic_fits(self) -> bool:
        """Whether the design's logic fits the device's LUTs, flip-flops and DSP slices."""
        logic = [(used, have) for key, (used, have) in self.usage.items() if key != self.block_key]
        return all(used <= have for used, have in logic)

    @property
    def weights_on_chip(self) -> bool:
        """Whether all weights fit the block RAMs."""
        return self.traffic.fits

    @property
    def fits(self) -> bool:
        """Whether the design fits the device: its logic and all its weights on chip."""
        return self.logic_fits and self.weights_on_chip

    @property
    def dram_gbps(self) -> float:
        """DRAM bandwidth the streamed weights need at the design's rate, GB/s (0 when all are
        on chip)."""
        return self.traffic.bandwidth_gbps(self.images_per_s)

    def problems(self) -> list[str]:
        """One line per resource over the device's count; for the weights, the DRAM bandwidth
        (:func:`fit_problems`; empty when everything fits)."""
        return fit_problems(
            self.usage, self.device.name, self.traffic, self.block_name, self.images_per_s
        )

    def fit_record(self) -> dict[str, Any]:
        """The fit as JSON-ready data: usage, the verdicts, the weights streamed and their DRAM
        bandwidth, and the problems (a part of each design's ``to_dict``)."""
        return {
            "usage": {k: {"used": u, "available": h} for k, (u, h) in self.usage.items()},
            "fits": self.fits,
            "logic_fits": self.logic_fits,
            "weights_on_chip": self.weights_on_chip,
            "weights_streamed_bits": self.traffic.streamed_bits,
            "dram_gb_per_s": self.dram_gbps,
            "problems": self.problems(),
        }


def weight_traffic(bits: Sequence[int], blocks: Sequence[int], capacity: int) -> WeightTraffic:
    """Keep layers on chip in order while their ``blocks`` fit ``capacity`` (module docstring)."""
    used = on_chip = streamed = 0
    for layer_bits, layer_blocks in zip(bits, blocks, strict=True):
        if not streamed and used + layer_blocks <= capacity:
            used += layer_blocks
            on_chip += layer_bits
        else:
            streamed += layer_bits
    return WeightTraffic(sum(blocks), used, capacity, on_chip, streamed)
