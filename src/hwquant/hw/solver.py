"""The Mix-and-Match ratio solver: how many rows go to LUT-based PEs (methods.md §2.2).

A design has two groups of processing elements (PEs), each doing one MAC per cycle:
``P_dsp = DSP slices × MACs per slice`` fixed-point PEs on the DSPs, and ``P_lut`` PEs built
from LUTs (SP2 shift-add MACs for MSQ), as many as the LUT and flip-flop budget allows:

    P_lut = min(⌊(f·LUTs − P_dsp·LUTs_per_DSP_MAC) / LUTs_per_PE⌋, same for FFs)

(whatever fabric a synthesized DSP MAC needs besides its slice comes first; with the
accumulator in the slice's P register that is about one LUT),
where ``f`` is the utilisation ceiling (default 0.7: the remaining 30% is left to control,
buffers, the requantizers and routing slack, none of which this model counts). A layer with
``R`` rows of ``M`` MACs each gives ``r·R`` rows to the LUT PEs and ``(1 − r)·R`` to the DSP
PEs; the groups finish together when ``r·R·M / P_lut = (1 − r)·R·M / P_dsp``, i.e.

    r* = P_lut / (P_lut + P_dsp),

independent of the layer, and the layer then takes ``R·M / (P_lut + P_dsp)`` cycles instead of
``R·M / P_dsp`` on the DSPs alone: a speed-up of ``1 / (1 − r*)``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from fractions import Fraction

from hwquant.core.errors import ConfigError
from hwquant.core.intmath import accumulator_bits
from hwquant.hw.devices import Device, get_device
from hwquant.hw.mac_cost import (
    DEFAULT_COSTS,
    CostTable,
    UnitCost,
    macs_per_dsp,
    sp2_int_bits,
    sp2_split,
)

DEFAULT_LUT_FRACTION = 0.7
"""Share of the device's LUTs (and flip-flops) the MAC PEs may take [D]; the rest is left for
control, buffers, requantizers and routing, which the model does not count."""
DEFAULT_FAN_IN = 3 * 3 * 512
"""Fan-in that sizes the LUT PEs' accumulator when no network is given: the largest of ResNet-18
(a 3x3 convolution over 512 channels) [D]."""
LUT_UNITS: tuple[str, ...] = ("sp2_mac", "lut_mac")


@dataclass(frozen=True)
class PEArrays:
    """The PE groups of one design: DSP slices used as MACs and LUT-based PEs of ``lut_unit``.

    ``weight_bits``/``act_bits``/``acc_bits`` are the widths the LUT PEs are built for;
    ``lut_cost`` is the cost of one LUT PE (None when there are none); ``dsp_cost`` that of one
    DSP MAC (the fabric the synthesized unit needs besides the slice; None: not counted).
    """

    device: Device
    dsp_slices: int
    lut_pes: int
    lut_unit: str | None
    lut_cost: UnitCost | None
    weight_bits: int
    act_bits: int
    acc_bits: int
    packing: int = 1
    dsp_cost: UnitCost | None = None

    def dsp_rate(self, weight_bits: int, act_bits: int) -> int:
        """MACs per cycle of the DSP group on ``weight_bits`` x ``act_bits`` operands."""
        return self.dsp_slices * macs_per_dsp(self.device, weight_bits, act_bits, self.packing)

    @property
    def p_dsp(self) -> int:
        """MACs per cycle of the DSP group at the design's widths."""
        return self.dsp_rate(self.weight_bits, self.act_bits)

    @property
    def p_lut(self) -> int:
        """MACs per cycle of the LUT group (one per PE)."""
        return self.lut_pes

    @property
    def share(self) -> Fraction:
        """``r* = P_lut / (P_lut + P_dsp)``: the share of rows that balances the groups."""
        total = self.p_lut + self.p_dsp
        return Fraction(self.p_lut, total) if total else Fraction(0)

    @property
    def dsp_luts(self) -> int:
        """LUTs of the DSP MACs' fabric (``P_dsp`` MACs)."""
        return self.p_dsp * self.dsp_cost.luts if self.dsp_cost else 0

    @property
    def luts(self) -> int:
        """LUTs of the LUT PEs and of the DSP MACs' fabric."""
        return (self.lut_pes * self.lut_cost.luts if self.lut_cost else 0) + self.dsp_luts

    @property
    def ffs(self) -> int:
        """Flip-flops of the LUT PEs and of the DSP MACs' fabric."""
        lut_ffs = self.lut_pes * self.lut_cost.ffs if self.lut_cost else 0
        return lut_ffs + (self.p_dsp * self.dsp_cost.ffs if self.dsp_cost else 0)


def check_fraction(lut_fraction: float) -> None:
    """Raise :class:`ConfigError` unless ``0 < lut_fraction <= 1``."""
    if not 0 < lut_fraction <= 1:
        raise ConfigError(
            f"LUT utilisation ceiling {lut_fraction!r} is out of range. Fix: use a fraction in "
            f"(0, 1], e.g. {DEFAULT_LUT_FRACTION}."
        )


def lut_pe_cost(
    costs: CostTable, lut_unit: str, weight_bits: int, act_bits: int, fan_in: int
) -> tuple[UnitCost, int]:
    """Cost of one LUT PE of ``lut_unit`` and its accumulator width for ``fan_in``."""
    if lut_unit == "sp2_mac":
        acc = accumulator_bits(sp2_int_bits(*sp2_split(weight_bits)), act_bits, fan_in)
        return costs.sp2_mac(weight_bits, act_bits, acc), acc
    if lut_unit == "lut_mac":
        acc = accumulator_bits(weight_bits, act_bits, fan_in)
        return costs.lut_mac(weight_bits, act_bits, acc), acc
    raise ConfigError(f"LUT unit {lut_unit!r} is unknown. Fix: use one of {', '.join(LUT_UNITS)}.")


def dsp_pe_cost(
    costs: CostTable,
    device: Device,
    weight_bits: int,
    act_bits: int,
    fan_in: int,
    packing: int = 1,
) -> UnitCost:
    """Cost of one DSP MAC with the accumulator width ``fan_in`` needs."""
    acc = accumulator_bits(weight_bits, act_bits, fan_in)
    return costs.dsp_mac(device, weight_bits, act_bits, packing, acc_bits=acc)


def solve(
    device: str | Device,
    weight_bits: int,
    act_bits: int = 4,
    *,
    lut_unit: str = "sp2_mac",
    fan_in: int = DEFAULT_FAN_IN,
    lut_fraction: float = DEFAULT_LUT_FRACTION,
    packing: int = 1,
    costs: CostTable = DEFAULT_COSTS,
) -> PEArrays:
    """Size both PE groups on ``device``: every DSP slice, and as many ``lut_unit`` PEs as the
    LUT/FF budget ``lut_fraction`` allows after the DSP MACs' own fabric (module docstring).

    Raises:
        ConfigError: unknown device or unit, a ceiling outside (0, 1], bad bits or packing.
    """
    device = get_device(device)
    check_fraction(lut_fraction)
    cost, acc = lut_pe_cost(costs, lut_unit, weight_bits, act_bits, fan_in)
    dsp = dsp_pe_cost(costs, device, weight_bits, act_bits, fan_in, packing)
    arrays = PEArrays(
        device, device.dsps, 0, lut_unit, cost, weight_bits, act_bits, acc, packing, dsp
    )
    by_luts = (math.floor(device.luts * lut_fraction) - arrays.luts) // max(cost.luts, 1)
    by_ffs = (math.floor(device.ffs * lut_fraction) - arrays.ffs) // max(cost.ffs, 1)
    return dataclasses.replace(arrays, lut_pes=max(min(by_luts, by_ffs), 0))


def sp2_share_for(
    device: str | Device,
    weight_bits: int,
    act_bits: int = 4,
    *,
    lut_fraction: float = DEFAULT_LUT_FRACTION,
    packing: int = 1,
    costs: CostTable = DEFAULT_COSTS,
) -> float:
    """The SP2 share of rows ``r* = P_lut / (P_lut + P_dsp)`` for MSQ on ``device`` at
    ``weight_bits``-bit weights and ``act_bits``-bit activations (:func:`solve`)."""
    arrays = solve(
        device, weight_bits, act_bits, lut_fraction=lut_fraction, packing=packing, costs=costs
    )
    return float(arrays.share)


def split_rows(rows: int, share: Fraction | float) -> int:
    """Rows of a layer given to the LUT PEs: ``⌊share·rows + 1/2⌋`` (round half up)."""
    return math.floor(Fraction(share) * rows + Fraction(1, 2))
