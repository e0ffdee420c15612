"""Cycles, resources and throughput of a network on a device, for each design (methods.md §2, §6).

Designs (the PE groups are sized by :func:`hwquant.hw.solver.solve`):

* ``fixed``: every row on the DSP slices; the LUTs hold no PEs (the DSP-only baseline).
* ``sp2``: every inner row on LUT-based SP2 PEs.
* ``msq``: inner rows split between SP2 PEs (the rows an MSQ encoding marks SP2, else the
  solver's share ``r*`` of each layer's rows, rounded half up) and the DSPs.
* ``fixed_lut``: fixed-point everywhere, but the LUTs also hold LUT multipliers, with the rows
  split by that design's own ``r*``: what a fixed-point design gains from its idle LUTs.

The first and last layers are 8-bit fixed-point in every scheme, so they always run on the
DSPs. Layers run one after another on the shared PE groups. A layer's rows of ``M`` MACs each
are split ``R_lut + R_dsp = R``; each group spreads its MACs over its PEs, so

    cycles = max(⌈R_lut·M / P_lut⌉, ⌈R_dsp·M / P_dsp⌉)

and the network takes the sum over layers; throughput is ``clock / cycles`` images per second
(batch 1, no overlap of layers). Weights are stored on chip at their stored bits, each layer in
its own 36 Kb block RAMs, while they fit; the rest stream from DRAM, at the bandwidth
:mod:`hwquant.hw.memory` works out, and such a design does not fit the device. Not modelled:
routing, achievable clock, control, the requantizers and the non-weight layers (adds, pooling).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from hwquant.core.errors import ConfigError
from hwquant.hw.devices import BRAM36_BITS, Device, get_device
from hwquant.hw.mac_cost import DEFAULT_COSTS, CostTable
from hwquant.hw.memory import DeviceFit, WeightTraffic, weight_traffic
from hwquant.hw.network import LayerWork, layer_work
from hwquant.hw.solver import (
    DEFAULT_LUT_FRACTION,
    PEArrays,
    check_fraction,
    dsp_pe_cost,
    solve,
    split_rows,
)
from hwquant.ir.intmodel import IntModel

LutRows = Literal["all", "share", "encoded"]


@dataclass(frozen=True)
class DesignKind:
    """What a design builds and how it places an inner layer's rows (module docstring).

    ``lut_unit``: the kind of LUT PE it builds (:data:`hwquant.hw.solver.LUT_UNITS`; None: no
    LUT PEs, every row on the DSPs). ``lut_rows``: which inner rows go to its LUT PEs: "all";
    "share", the solver's share ``r*`` of each layer's rows; or "encoded", the rows the layer's
    weight encoding marks multiply-free (``LayerWork.sp2_rows``; ``r*`` of a layer without such
    an encoding), so that a layer's array splits its lanes between the two PE kinds
    (:mod:`hwquant.hw.folding`).
    """

    lut_unit: str | None
    lut_rows: LutRows = "share"


DESIGN_KINDS: dict[str, DesignKind] = {
    "fixed": DesignKind(None),
    "sp2": DesignKind("sp2_mac", "all"),
    "msq": DesignKind("sp2_mac", "encoded"),
    "fixed_lut": DesignKind("lut_mac", "share"),
}
DESIGNS: tuple[str, ...] = tuple(DESIGN_KINDS)


@dataclass(frozen=True)
class LayerCycles:
    """A layer's rows and cycles on each PE group of a design."""

    work: LayerWork
    lut_rows: int
    dsp_rows: int
    lut_cycles: int
    dsp_cycles: int

    @property
    def cycles(self) -> int:
        """The layer's cycles: the slower group's."""
        return max(self.lut_cycles, self.dsp_cycles)


@dataclass(frozen=True)
class ArrayDesign(DeviceFit):
    """One design of a network on a device: the PE arrays of the per-layer cost model, its
    clock, cycles and block RAMs (the generated RTL's estimate, block by block, is
    ``hwquant.rtl.network.estimate.DesignEstimate``); its fit on the device: :class:`DeviceFit`."""

    block_key: ClassVar[str] = "bram36"
    block_name: ClassVar[str] = "BRAM36"

    design: str
    arrays: PEArrays
    clock_mhz: float
    layers: tuple[LayerCycles, ...]
    bram36: int

    @property
    def device(self) -> Device:
        return self.arrays.device

    @property
    def cycles(self) -> int:
        """Cycles per image: the sum over layers."""
        return sum(layer.cycles for layer in self.layers)

    @property
    def latency_s(self) -> float:
        """Seconds per image at the clock."""
        return self.cycles / (self.clock_mhz * 1e6)

    @property
    def images_per_s(self) -> float:
        """Images per second at the clock (batch 1)."""
        return self.clock_mhz * 1e6 / self.cycles if self.cycles else math.inf

    @property
    def usage(self) -> dict[str, tuple[int, int]]:
        """``resource: (used, available)`` for LUTs, flip-flops, DSP slices and BRAM36."""
        d = self.device
        return {
            "luts": (self.arrays.luts, d.luts),
            "ffs": (self.arrays.ffs, d.ffs),
            "dsps": (self.arrays.dsp_slices, d.dsps),
            "bram36": (self.bram36, d.bram36),
        }

    @property
    def traffic(self) -> WeightTraffic:
        """Weights kept in the BRAM36s and streamed from DRAM (:mod:`hwquant.hw.memory`)."""
        works = [lc.work for lc in self.layers]
        blocks = [-(-w.storage_bits // BRAM36_BITS) for w in works]
        return weight_traffic([w.storage_bits for w in works], blocks, self.device.bram36)

    def to_dict(self) -> dict[str, Any]:
        """The design as JSON-ready data, with the arithmetic behind its cycles."""
        a = self.arrays
        inner = [lc for lc in self.layers if lc.work.role == "inner"]
        return {
            "design": self.design,
            "clock_mhz": self.clock_mhz,
            "pe_arrays": {
                "dsp_slices": a.dsp_slices,
                "packing": a.packing,
                "p_dsp_inner": a.p_dsp,
                "lut_unit": a.lut_unit,
                "lut_pes": a.lut_pes,
                "luts_per_pe": a.lut_cost.luts if a.lut_cost else 0,
                "ffs_per_pe": a.lut_cost.ffs if a.lut_cost else 0,
                "lut_pe_acc_bits": a.acc_bits if a.lut_cost else None,
                "lut_cost_source": a.lut_cost.source if a.lut_cost else None,
                "luts_per_dsp_mac": a.dsp_cost.luts if a.dsp_cost else 0,
                "ffs_per_dsp_mac": a.dsp_cost.ffs if a.dsp_cost else 0,
                "dsp_mac_fabric_luts": a.dsp_luts,
                "solver_share": float(a.share),
            },
            "inner_rows": {
                "lut": sum(lc.lut_rows for lc in inner),
                "dsp": sum(lc.dsp_rows for lc in inner),
            },
            **self.fit_record(),
            "cycles": self.cycles,
            "latency_ms": self.latency_s * 1e3,
            "images_per_s": self.images_per_s,
            "layers": [
                {
                    "name": lc.work.name,
                    "lut_rows": lc.lut_rows,
                    "dsp_rows": lc.dsp_rows,
                    "lut_cycles": lc.lut_cycles,
                    "dsp_cycles": lc.dsp_cycles,
                    "cycles": lc.cycles,
                }
                for lc in self.layers
            ],
        }


@dataclass(frozen=True)
class NetworkEstimate:
    """A network's layers and its designs on one device, with the fixed-only baseline."""

    device: Device
    layers: tuple[LayerWork, ...]
    designs: dict[str, ArrayDesign]
    baseline: ArrayDesign

    def speedup(self, design: str) -> float:
        """Throughput of ``design`` over the fixed-only design."""
        return self.baseline.cycles / self.designs[design].cycles

    def to_dict(self) -> dict[str, Any]:
        """The estimate as JSON-ready data."""
        return {
            "device": dataclasses.asdict(self.device),
            "layers": [
                dataclasses.asdict(w) | {"macs": w.macs, "row_macs": w.row_macs}
                for w in self.layers
            ],
            "total_macs": sum(w.macs for w in self.layers),
            "designs": {
                name: d.to_dict() | {"speedup_over_fixed": self.speedup(name)}
                for name, d in self.designs.items()
            },
        }


def _inner_widths(layers: Sequence[LayerWork]) -> tuple[int, int, int] | None:
    """Weight bits, activation bits and fan-in the LUT PEs must serve (maxima over inner layers)."""
    inner = [w for w in layers if w.role == "inner"]
    if not inner:
        return None
    return (
        max(w.weight_bits for w in inner),
        max(w.act_bits for w in inner),
        max(w.fan_in for w in inner),
    )


def design_arrays(
    design: str,
    device: Device,
    layers: Sequence[LayerWork],
    *,
    lut_fraction: float,
    packing: int,
    costs: CostTable,
    lut_pes: int | None = None,
    dsp_slices: int | None = None,
) -> PEArrays:
    """The PE groups of ``design`` for ``layers``: solved from the budget, then overridden by
    ``lut_pes`` / ``dsp_slices`` where given (a design that may not fit)."""
    widths = _inner_widths(layers) or (8, 8, 1)
    unit = DESIGN_KINDS[design].lut_unit
    if unit is None:
        dsp = dsp_pe_cost(costs, device, *widths, packing)
        arrays = PEArrays(device, device.dsps, 0, None, None, *widths[:2], 0, packing, dsp)
    else:
        arrays = solve(
            device,
            widths[0],
            widths[1],
            lut_unit=unit,
            fan_in=widths[2],
            lut_fraction=lut_fraction,
            packing=packing,
            costs=costs,
        )
        if _inner_widths(layers) is None:
            arrays = dataclasses.replace(arrays, lut_pes=0)
        if lut_pes is not None:
            arrays = dataclasses.replace(arrays, lut_pes=lut_pes)
    if dsp_slices is not None:
        arrays = dataclasses.replace(arrays, dsp_slices=dsp_slices)
    return arrays


def _cycles(macs: int, rate: int, group: str, design: str) -> int:
    if macs == 0:
        return 0
    if rate <= 0:
        raise ConfigError(
            f"design {design!r} gives rows to its {group} PEs but has none. Fix: allow some "
            f"{group} PEs (raise the LUT ceiling or the PE/DSP count)."
        )
    return -(-macs // rate)


def layer_cycles(work: LayerWork, arrays: PEArrays, design: str) -> LayerCycles:
    """Rows of ``work`` on each group of ``design`` and the cycles each group takes."""
    kind = DESIGN_KINDS[design]
    if work.role != "inner" or kind.lut_unit is None:
        lut_rows = 0
    elif kind.lut_rows == "all":
        lut_rows = work.rows
    elif kind.lut_rows == "encoded" and work.sp2_rows is not None:
        lut_rows = work.sp2_rows
    else:
        lut_rows = split_rows(work.rows, arrays.share)
    dsp_rows = work.rows - lut_rows
    dsp_rate = arrays.dsp_rate(work.weight_bits, work.act_bits)
    return LayerCycles(
        work,
        lut_rows,
        dsp_rows,
        _cycles(lut_rows * work.row_macs, arrays.p_lut, "LUT", design),
        _cycles(dsp_rows * work.row_macs, dsp_rate, "DSP", design),
    )


def estimate_layers(
    layers: Sequence[LayerWork],
    device: str | Device,
    *,
    designs: Sequence[str] = DESIGNS,
    clock_mhz: float | None = None,
    lut_fraction: float = DEFAULT_LUT_FRACTION,
    packing: int = 1,
    costs: CostTable = DEFAULT_COSTS,
    lut_pes: int | None = None,
    dsp_slices: int | None = None,
) -> NetworkEstimate:
    """Estimate ``designs`` of a network given by its ``layers`` on ``device`` (module docstring).

    ``clock_mhz`` defaults to the device's; ``lut_pes``/``dsp_slices`` replace the solver's PE
    counts (then the design may not fit, which the estimate reports).

    Raises:
        ConfigError: unknown device or design, a bad ceiling, packing, clock or PE count.
    """
    device = get_device(device)
    check_fraction(lut_fraction)
    unknown = [d for d in designs if d not in DESIGNS]
    if unknown or not designs:
        raise ConfigError(f"unknown design(s) {unknown}. Fix: use one of {', '.join(DESIGNS)}.")
    for name, count in (("lut_pes", lut_pes), ("dsp_slices", dsp_slices)):
        if count is not None and (
            isinstance(count, bool) or not isinstance(count, int) or count < 0
        ):
            raise ConfigError(f"{name}={count!r} is invalid. Fix: use an integer >= 0.")
    clock = device.clock_mhz if clock_mhz is None else clock_mhz
    if not clock > 0:
        raise ConfigError(f"clock {clock!r} MHz is invalid. Fix: use a positive number of MHz.")
    bram36 = sum(-(-w.storage_bits // BRAM36_BITS) for w in layers)
    options = dict(lut_fraction=lut_fraction, packing=packing, costs=costs)

    def build(design: str, overrides: dict[str, int | None]) -> ArrayDesign:
        arrays = design_arrays(design, device, layers, **options, **overrides)
        cycles = tuple(layer_cycles(w, arrays, design) for w in layers)
        return ArrayDesign(design, arrays, clock, cycles, bram36)

    overrides = {"lut_pes": lut_pes, "dsp_slices": dsp_slices}
    return NetworkEstimate(
        device,
        tuple(layers),
        {d: build(d, overrides) for d in designs},
        build("fixed", {}),  # speed-ups are always against the whole device's fixed design
    )


def estimate(
    model: IntModel, device: str | Device, input_shape: tuple[int, ...], **options: Any
) -> NetworkEstimate:
    """:func:`estimate_layers` for the weight layers of ``model`` run on ``input_shape``."""
    return estimate_layers(layer_work(model, input_shape), device, **options)
