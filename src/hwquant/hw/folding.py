"""PE x SIMD folding: every layer gets its own processing array, as in FINN's matrix-vector unit
(Umuroglu et al. 2017, FINN; methods.md §2.2), costed with the synthesized unit formulas.

A layer of ``R`` rows (output channels), fan-in ``K`` and ``P`` output positions runs on an
array of ``PE`` lanes (rows in parallel) × ``SIMD`` MACs per lane (fan-in in parallel), so

    cycles = ⌈R / PE⌉ · ⌈K / SIMD⌉ · P.

All arrays exist at once and stream into each other (a dataflow pipeline): an image leaves
every ``II = max(cycles)`` cycles, and one image takes ``Σ cycles`` (latency). Resources per
layer: ``PE·SIMD`` MAC units (the design's kind, :mod:`hwquant.hw.synthesized`), one
requantizer per lane (except the last layer, whose accumulators are the output), and the
weight memory: ``PE`` memories of ``SIMD·w`` bits × ``⌈R/PE⌉·⌈K/SIMD⌉`` words, in RAMB18 at the
aspect ratio that takes fewest (UG473: 16K×1 .. 512×36), or in LUTs (64×1 per LUT, UG474)
when a memory is at most :data:`LUTRAM_DEPTH` words deep. In the MSQ design a layer's lanes
are split between SP2 MACs and DSP MACs in proportion to its SP2 rows (at least one of each
kind it has rows for).

The default folding is solved: the smallest ``II`` for which, with each layer given the
fewest MACs (``PE`` dividing ``R``, ``SIMD`` dividing ``K``, as FINN requires) that meet it,
LUTs and FFs stay within the ceiling ``f`` and DSPs within the device.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from hwquant.core.errors import ConfigError
from hwquant.core.intmath import accumulator_bits
from hwquant.hw.devices import Device, get_device
from hwquant.hw.estimate import DESIGN_KINDS
from hwquant.hw.mac_cost import DEFAULT_COSTS, CostTable, UnitCost
from hwquant.hw.memory import DeviceFit, WeightTraffic, weight_traffic
from hwquant.hw.network import LayerWork
from hwquant.hw.solver import DEFAULT_LUT_FRACTION, check_fraction, dsp_pe_cost, lut_pe_cost

RAMB18_SHAPES: tuple[tuple[int, int], ...] = (
    (1, 16384),
    (2, 8192),
    (4, 4096),
    (9, 2048),
    (18, 1024),
    (36, 512),
)
"""(width, depth) configurations of one RAMB18E1 (UG473, 7 Series FPGAs Memory Resources)."""
LUTRAM_DEPTH = 64
"""Memories at most this deep go to distributed RAM: one LUT per bit of width (RAM64X1S) [D]."""
REQUANT_MULTIPLIER_BITS = 16
"""Width of a requantizer's integer multiplier M [D] (hwquant.core.intmath.requant_params)."""


@dataclass(frozen=True)
class Fold:
    """A layer's array: ``pe`` lanes × ``simd`` MACs per lane."""

    pe: int
    simd: int


@dataclass(frozen=True)
class FoldedLayer:
    """One layer's array, its resources and its cycles per image."""

    work: LayerWork
    fold: Fold
    lut_lanes: int
    luts: int
    ffs: int
    dsps: int
    bram18: int
    cycles: int


def weight_memory(depth: int, width: int) -> tuple[int, int]:
    """``(RAMB18, LUTs)`` of one ``depth`` × ``width``-bit weight memory (module docstring)."""
    if depth <= LUTRAM_DEPTH:
        return 0, width
    return min(math.ceil(width / w) * math.ceil(depth / d) for w, d in RAMB18_SHAPES), 0


def _mac_costs(
    work: LayerWork, design: str, device: Device, costs: CostTable
) -> tuple[UnitCost, UnitCost | None]:
    """The layer's DSP-MAC cost and its LUT-MAC cost (None when the layer has no LUT MACs)."""
    dsp = dsp_pe_cost(costs, device, work.weight_bits, work.act_bits, work.fan_in)
    unit = DESIGN_KINDS[design].lut_unit
    if work.role != "inner" or unit is None:
        return dsp, None
    lut, _acc = lut_pe_cost(costs, unit, work.weight_bits, work.act_bits, work.fan_in)
    return dsp, lut


def _sp2_rows(work: LayerWork) -> int:
    """SP2 rows of an inner layer under an "encoded" design: its encoding's, else half its
    rows."""
    return work.sp2_rows if work.sp2_rows is not None else work.rows // 2


def _mixed(work: LayerWork, design: str) -> bool:
    """Whether ``work`` is an inner layer of an "encoded" design (``DesignKind.lut_rows``, the
    MSQ design) with both SP2 and fixed-point rows."""
    return (
        DESIGN_KINDS[design].lut_rows == "encoded"
        and work.role == "inner"
        and 0 < _sp2_rows(work) < work.rows
    )


def _lanes(work: LayerWork, design: str, pe: int) -> tuple[int, int]:
    """``(LUT lanes, DSP lanes)``, summing to ``pe``: an inner layer of a design with LUT PEs is
    all LUT lanes, but under an "encoded" design (MSQ) a mixed layer splits ``pe`` by its SP2
    share with at least one lane of each kind, so it needs ``pe >= 2``."""
    kind = DESIGN_KINDS[design]
    if work.role != "inner" or kind.lut_unit is None:
        return 0, pe
    if kind.lut_rows != "encoded":
        return pe, 0
    if not _mixed(work, design):
        return (pe, 0) if _sp2_rows(work) else (0, pe)
    if pe < 2:
        raise ConfigError(
            f"MSQ layer {work.name} has SP2 and fixed-point rows, so its array needs a lane of "
            f"each kind; PE = {pe} is too few. Fix: use PE >= 2 (a divisor of {work.rows})."
        )
    lut = min(max(math.floor(pe * _sp2_rows(work) / work.rows + 0.5), 1), pe - 1)
    return lut, pe - lut


def fold_layer(
    work: LayerWork, fold: Fold, design: str, device: Device, costs: CostTable, last: bool
) -> FoldedLayer:
    """Resources and cycles of ``work`` on a ``fold`` array of ``design`` (module docstring)."""
    if fold.pe < 1 or fold.simd < 1:
        raise ConfigError(f"folding {fold} of {work.name} is invalid. Fix: use PE, SIMD >= 1.")
    dsp_mac, lut_mac = _mac_costs(work, design, device, costs)
    lut_lanes, dsp_lanes = _lanes(work, design, fold.pe)
    k_steps = math.ceil(work.fan_in / fold.simd) * work.positions
    if lut_lanes and dsp_lanes:
        sp2_rows = _sp2_rows(work)
        row_steps = max(
            math.ceil(sp2_rows / lut_lanes), math.ceil((work.rows - sp2_rows) / dsp_lanes)
        )
    else:
        row_steps = math.ceil(work.rows / fold.pe)
    luts = fold.simd * dsp_lanes * dsp_mac.luts
    ffs = fold.simd * dsp_lanes * dsp_mac.ffs
    dsps = math.ceil(fold.simd * dsp_lanes * dsp_mac.dsps)
    if lut_mac:
        luts += fold.simd * lut_lanes * lut_mac.luts
        ffs += fold.simd * lut_lanes * lut_mac.ffs
    if not last and costs.fitted is not None:
        acc = accumulator_bits(work.weight_bits, work.act_bits, work.fan_in, work.act_signed)
        requant = costs.unit(
            "requantizer",
            acc_bits=acc,
            multiplier_bits=REQUANT_MULTIPLIER_BITS,
            out_bits=work.act_bits,
        )
        luts, ffs, dsps = (
            luts + fold.pe * requant.luts,
            ffs + fold.pe * requant.ffs,
            dsps + fold.pe * int(requant.dsps),
        )
    depth = math.ceil(work.rows / fold.pe) * math.ceil(work.fan_in / fold.simd)
    bram, lutram = weight_memory(depth, fold.simd * work.weight_bits)
    return FoldedLayer(
        work,
        fold,
        lut_lanes,
        luts + fold.pe * lutram,
        ffs,
        dsps,
        fold.pe * bram,
        row_steps * k_steps,
    )


def divisors(n: int) -> list[int]:
    """The divisors of ``n`` in increasing order."""
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


@dataclass(frozen=True)
class FoldedDesign(DeviceFit):
    """A design's arrays, one per layer, on a device; its fit on the device: :class:`DeviceFit`
    (block RAM in RAMB18, two per BRAM36)."""

    block_key: ClassVar[str] = "bram18"
    block_name: ClassVar[str] = "RAMB18"

    design: str
    device: Device
    clock_mhz: float
    layers: tuple[FoldedLayer, ...]
    lut_fraction: float

    @property
    def ii_cycles(self) -> int:
        """Cycles between images: the slowest layer's."""
        return max(layer.cycles for layer in self.layers)

    @property
    def latency_cycles(self) -> int:
        """Cycles of one image through every layer."""
        return sum(layer.cycles for layer in self.layers)

    @property
    def images_per_s(self) -> float:
        """Images per second of the pipeline at the clock."""
        return self.clock_mhz * 1e6 / self.ii_cycles

    @property
    def usage(self) -> dict[str, tuple[int, int]]:
        """``resource: (used, available)``; BRAM in RAMB18 (two per BRAM36)."""
        d = self.device
        return {
            "luts": (sum(x.luts for x in self.layers), d.luts),
            "ffs": (sum(x.ffs for x in self.layers), d.ffs),
            "dsps": (sum(x.dsps for x in self.layers), d.dsps),
            "bram18": (sum(x.bram18 for x in self.layers), 2 * d.bram36),
        }

    @property
    def traffic(self) -> WeightTraffic:
        """Weight memories kept in the RAMB18s and streamed from DRAM (:mod:`hwquant.hw.memory`)."""
        bits = [x.work.storage_bits for x in self.layers]
        return weight_traffic(bits, [x.bram18 for x in self.layers], 2 * self.device.bram36)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "design": self.design,
            "ii_cycles": self.ii_cycles,
            "latency_cycles": self.latency_cycles,
            "images_per_s": self.images_per_s,
            **self.fit_record(),
            "layers": [
                {
                    "name": x.work.name,
                    "pe": x.fold.pe,
                    "simd": x.fold.simd,
                    "lut_lanes": x.lut_lanes,
                    "luts": x.luts,
                    "ffs": x.ffs,
                    "dsps": x.dsps,
                    "bram18": x.bram18,
                    "cycles": x.cycles,
                }
                for x in self.layers
            ],
        }


def _within(layers: Sequence[FoldedLayer], device: Device, lut_fraction: float) -> bool:
    return (
        sum(x.luts for x in layers) <= lut_fraction * device.luts
        and sum(x.ffs for x in layers) <= lut_fraction * device.ffs
        and sum(x.dsps for x in layers) <= device.dsps
    )


def solve_folding(
    layers: Sequence[LayerWork],
    device: Device,
    design: str,
    costs: CostTable,
    lut_fraction: float,
) -> list[Fold]:
    """The folding with the smallest II that fits (module docstring); all-ones when even that
    does not fit (the estimate then says so)."""
    last = len(layers) - 1
    options = []
    for index, work in enumerate(layers):
        least = 2 if _mixed(work, design) else 1
        folds = [
            Fold(p, s) for p in divisors(work.rows) if p >= least for s in divisors(work.fan_in)
        ]
        costed = [fold_layer(work, f, design, device, costs, index == last) for f in folds]
        costed.sort(key=lambda x: (x.fold.pe * x.fold.simd, x.luts + 100 * x.dsps))
        options.append(costed)

    def pick(target: int) -> list[FoldedLayer]:
        return [next(x for x in opts if x.cycles <= target) for opts in options]

    lo, hi = (
        max(min(x.cycles for x in opts) for opts in options),
        max(opts[0].cycles for opts in options),
    )
    if not _within(pick(lo), device, lut_fraction):
        while lo < hi:
            mid = (lo + hi) // 2
            if _within(pick(mid), device, lut_fraction):
                hi = mid
            else:
                lo = mid + 1
    return [x.fold for x in pick(lo)]


def fold_network(
    layers: Sequence[LayerWork],
    device: str | Device,
    design: str = "msq",
    *,
    folding: Mapping[str, Fold] | None = None,
    clock_mhz: float | None = None,
    lut_fraction: float = DEFAULT_LUT_FRACTION,
    costs: CostTable = DEFAULT_COSTS,
) -> FoldedDesign:
    """The folded ``design`` of a network on ``device``: ``folding`` by layer name (the solved
    default for layers it leaves out).

    Raises:
        ConfigError: unknown device, design or layer name, a bad fold or ceiling.
    """
    device = get_device(device)
    check_fraction(lut_fraction)
    if design not in DESIGN_KINDS:
        raise ConfigError(
            f"design {design!r} is unknown. Fix: use one of {', '.join(DESIGN_KINDS)}."
        )
    names = {w.name for w in layers}
    unknown = sorted(set(folding or {}) - names)
    if unknown:
        raise ConfigError(f"folding names unknown layer(s) {unknown}. Fix: use {sorted(names)}.")
    solved = solve_folding(layers, device, design, costs, lut_fraction)
    folds = [(folding or {}).get(w.name, f) for w, f in zip(layers, solved, strict=True)]
    last = len(layers) - 1
    folded = tuple(
        fold_layer(w, f, design, device, costs, i == last)
        for i, (w, f) in enumerate(zip(layers, folds, strict=True))
    )
    clock = device.clock_mhz if clock_mhz is None else clock_mhz
    return FoldedDesign(design, device, clock, folded, lut_fraction)
