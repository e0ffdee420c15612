"""Cost of one multiply-accumulate unit (MAC) per scheme, in LUTs, flip-flops and DSP slices.

Every processing element (PE) of the model does one MAC per clock cycle. Three kinds exist
(methods.md §2 and §6):

* **Fixed-point on a DSP slice** (:meth:`CostTable.dsp_mac`): the slice's multiplier and its
  48-bit accumulator do ``acc += w·x`` (UG479/UG579), so the MAC takes no LUTs. With
  ``packing=2`` one slice does two MACs that share the activation, ``x·(w1 + 2^k·w2)``, the
  technique of Xilinx WP486 (*Deep Learning with INT8 Optimization on Xilinx Devices*: two
  8-bit products per DSP48E2). On a DSP48E1 (25x18) the two products only fit below 4 bits,
  the packing methods.md §6 assumes [D]; FINN's RTL MVU goes further, four 4-bit MACs per
  DSP48E2 (``mvu_4sx4u``, Xilinx/finn ``dsp_estimation``).
* **SP2 shift-add in LUTs** (:func:`sp2_mac_luts`): ``acc ± ((x << s1) + (x << s2))``: two
  shifters (multiplexers), one adder and the accumulator adder.
* **Fixed-point multiplier in LUTs** (:func:`lut_mac_luts`): FINN's LUT multiplier estimate plus
  the accumulator adder (for completeness: a fixed-point design that also fills its LUTs).

The default costs (:data:`DEFAULT_COSTS`) are the formulas fitted to Yosys syntheses of the
emitted units (:mod:`hwquant.hw.synthesized`, issue 6). The analytic formulas of this module
(:data:`ANALYTIC_COSTS`) are kept as a documented comparison: they follow the 7-series slice
structure (UG474, 7 Series FPGAs CLB User Guide: four LUT6 feeding a CARRY4 chain, so an adder
costs one LUT per bit; a LUT6 is a 4:1 multiplexer) and assume an ideal datapath.
:meth:`CostTable.from_json` reads measured entries or another sweep file.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from hwquant.core.errors import ConfigError, FileFormatError
from hwquant.core.intmath import bits_needed
from hwquant.hw.devices import Device
from hwquant.hw.synthesized import SynthesizedCosts, load_packaged, mux_lut6s
from hwquant.ir.intmodel import default_sp2_split

Unit = Literal["dsp_mac", "sp2_mac", "lut_mac"]
UNITS: tuple[str, ...] = ("dsp_mac", "sp2_mac", "lut_mac")

LUTS_PER_ADDER_BIT = 1
"""One LUT6 per adder bit on the CARRY4 chain (UG474: 4 LUTs + CARRY4 per slice); the same LUT
also absorbs add/subtract selection, so an accumulator ``acc ± t`` is one LUT per bit."""
PACKED_MAX_BITS: dict[str, int] = {"DSP48E1": 4, "DSP48E2": 8}
"""Largest weight and activation bits for which ``packing=2`` puts two MACs in one slice:
4 bits on a DSP48E1 (methods.md §6 [D]), 8 bits on a DSP48E2 (WP486). Slices not listed (the
Lattice MULT18X18D and SB_MAC16) have no packed form: ``packing=2`` is refused on them."""
PACKINGS: tuple[int, ...] = (1, 2)


@dataclass(frozen=True)
class UnitCost:
    """Resources of one MAC unit: LUTs, flip-flops, DSP slices (a fraction when packed)."""

    luts: int
    ffs: int
    dsps: float
    source: str


def sp2_split(bits: int) -> tuple[int, int]:
    """``(m1, m2)`` of an m-bit SP2 code, ``m = m1 + m2 + 1``, ``m1 ≥ m2`` as even as possible
    (4 bits: (2, 1); 3 bits: (1, 1); methods.md §2.1)."""
    if bits < 2:
        raise ConfigError(
            f"SP2 needs at least 2 bits (sign and one term), got {bits}. Fix: use 2..16."
        )
    return default_sp2_split(bits)


def sp2_shift_ranges(m1: int, m2: int) -> tuple[tuple[int, int], tuple[int, int] | None]:
    """Shift ranges ``(lo, hi)`` of the two SP2 terms of the integer form.

    ``q1 ∈ {2^-1 .. 2^-(2^m1-1)}`` and ``q2 ∈ {2^-1 .. 2^-(2^m2-1)}`` (plus 0) become integers in
    units of the finest level ``2^-(2^m1-1)``: term 1 shifts by ``0 .. 2^m1 − 2``, term 2 by
    ``2^m1 − 2^m2 .. 2^m1 − 2``; ``m2 = 0`` has no second term (plain power of two).
    """
    if m1 < 1 or m2 < 0 or m1 < m2:
        raise ConfigError(
            f"SP2 split m1={m1}, m2={m2} is invalid. Fix: use m1 >= m2 >= 0, m1 >= 1."
        )
    top = 2**m1 - 2
    return (0, top), ((2**m1 - 2**m2, top) if m2 else None)


def sp2_int_bits(m1: int, m2: int) -> int:
    """Signed bits of the integer SP2 weights ``±(2^s1 + 2^s2)``."""
    (_, top1), second = sp2_shift_ranges(m1, m2)
    return bits_needed(2**top1 + (2 ** second[1] if second else 0))


def sp2_mac_luts(act_bits: int, m1: int, m2: int, acc_bits: int) -> int:
    """LUTs of one SP2 shift-add MAC: ``acc ± ((x << s1) + (x << s2))``.

    With ``a`` activation bits, term 1 shifting by ``0..S1`` and term 2 by ``S2lo..S1``
    (:func:`sp2_shift_ranges`), each shifter output bit is a mux over its shifts plus "absent"::

        shifter 1: (a + S1)        bits × mux_lut6s(2^m1)
        shifter 2: (a + S1 − S2lo) bits × mux_lut6s(2^m2)     (bits below S2lo are always 0)
        term adder: a + S1 + 1 − S2lo LUTs                   (bits below S2lo pass through)
        accumulator: acc_bits LUTs                           (add/subtract by the sign bit)

    Assumptions: one LUT per adder bit (UG474), unsigned activations, the sign folded into the
    accumulator's add/subtract, no LUT sharing between PEs, no routing or control logic.
    """
    (_, top1), second = sp2_shift_ranges(m1, m2)
    luts = (act_bits + top1) * mux_lut6s(2**m1) + acc_bits * LUTS_PER_ADDER_BIT
    if second is not None:
        low = second[0]
        luts += (act_bits + top1 - low) * mux_lut6s(2**m2)
        luts += (act_bits + top1 + 1 - low) * LUTS_PER_ADDER_BIT
    return luts


def sp2_mac_ffs(act_bits: int, m1: int, m2: int, acc_bits: int) -> int:
    """Flip-flops of one SP2 MAC: the accumulator register and one pipeline register on the
    shifted-term sum (``a + S1 + 1`` bits)."""
    (_, top1), _second = sp2_shift_ranges(m1, m2)
    return acc_bits + act_bits + top1 + 1


def lut_mac_luts(weight_bits: int, act_bits: int, acc_bits: int) -> int:
    """LUTs of one fixed-point MAC without DSP: FINN's LUT multiplier estimate
    ``(2·⌈(w+a)/6⌉ − 1)·(w+a)`` (Xilinx/finn, MVAU ``lut_estimation``, resType "lut") plus the
    accumulator adder, one LUT per bit."""
    width = weight_bits + act_bits
    return (2 * math.ceil(width / 6) - 1) * width + acc_bits * LUTS_PER_ADDER_BIT


def lut_mac_ffs(weight_bits: int, act_bits: int, acc_bits: int) -> int:
    """Flip-flops of one LUT fixed-point MAC: product register and accumulator register."""
    return weight_bits + act_bits + acc_bits


def macs_per_dsp(device: Device, weight_bits: int, act_bits: int, packing: int = 1) -> int:
    """MACs one DSP slice of ``device`` does per cycle: ``packing`` where the operands are
    narrow enough (:data:`PACKED_MAX_BITS`), else 1.

    Raises:
        ConfigError: ``packing`` is not 1 or 2, or the operands exceed the slice's multiplier.
    """
    if packing not in PACKINGS:
        raise ConfigError(f"dsp packing {packing!r} is not allowed. Fix: use one of 1, 2.")
    if weight_bits > device.dsp.b_bits or act_bits + 1 > device.dsp.a_bits:
        raise ConfigError(
            f"a {weight_bits}x{act_bits}-bit product does not fit one {device.dsp.name} "
            f"({device.dsp.a_bits}x{device.dsp.b_bits}). Fix: use at most {device.dsp.b_bits}-bit "
            f"weights and {device.dsp.a_bits - 1}-bit activations."
        )
    if packing == 1:
        return 1
    if device.dsp.name not in PACKED_MAX_BITS:
        raise ConfigError(
            f"dsp packing 2 is not defined for {device.name}'s {device.dsp.name} slices. "
            "Fix: use packing 1 on this device."
        )
    narrow = max(weight_bits, act_bits) <= PACKED_MAX_BITS[device.dsp.name]
    return packing if narrow else 1


def _key(unit: str, weight_bits: int, act_bits: int, acc_bits: int) -> tuple[str, int, int, int]:
    return (unit, weight_bits, act_bits, acc_bits)


DSP_GLUE_WIDTHS = (8, 8)
"""Activation and weight bits at which a DSP MAC's fabric cost is read from the synthesized
``fixed_mac_dsp`` formula. Yosys maps the product and the gated accumulator into the
DSP48E1 (its P register), so once the product is on the slice the fabric cost is the
gating glue alone and does not depend on the operand widths; products under 9 bits, which
Yosys would put in LUTs (:data:`hwquant.hw.synthesized.DSP_MIN_PRODUCT_BITS`), are placed on
the slice by design here."""


@dataclass(frozen=True)
class CostTable:
    """Per-unit costs. In order of precedence: ``measured`` entries (keyed by unit, weight
    bits, activation bits, accumulator bits; from a ``--costs`` file), the formulas ``fitted``
    to a Yosys synthesis sweep (:mod:`hwquant.hw.synthesized`), and the analytic formulas of
    this module (a documented comparison: :data:`ANALYTIC_COSTS` has only those)."""

    measured: Mapping[tuple[str, int, int, int], tuple[int, int]] = field(default_factory=dict)
    source: str = "analytic (hwquant.hw.mac_cost)"
    fitted: SynthesizedCosts | None = None

    def _lookup(
        self, unit: str, key: tuple[int, int, int], analytic: tuple[int, int], fit: Fitted
    ) -> tuple[int, int, str]:
        hit = self.measured.get(_key(unit, *key))
        if hit is not None:
            return (*hit, self.source)
        if self.fitted is not None:
            kind, widths = fit
            counts = self.fitted.cost(kind, **widths)
            return counts["luts"], counts["ffs"], self.fitted.source
        return (*analytic, "analytic")

    def dsp_mac(
        self,
        device: Device,
        weight_bits: int,
        act_bits: int,
        packing: int = 1,
        *,
        acc_bits: int = 48,
    ) -> UnitCost:
        """A fixed-point MAC on a DSP slice: 1/packing slice, and the fabric the synthesized
        unit needs besides the slice (:data:`DSP_GLUE_WIDTHS`; analytic: none, the slice
        accumulates)."""
        share = 1 / macs_per_dsp(device, weight_bits, act_bits, packing)
        a, w = DSP_GLUE_WIDTHS
        luts, ffs, source = self._lookup(
            "dsp_mac",
            (weight_bits, act_bits, acc_bits),
            (0, 0),
            ("fixed_mac_dsp", {"act_bits": a, "weight_bits": w, "acc_bits": acc_bits}),
        )
        return UnitCost(luts, ffs, share, f"{source}; {device.dsp.source}")

    def sp2_mac(self, weight_bits: int, act_bits: int, acc_bits: int) -> UnitCost:
        """An SP2 shift-add MAC in LUTs at the default m1/m2 split (analytic:
        :func:`sp2_mac_luts`)."""
        m1, m2 = sp2_split(weight_bits)
        luts, ffs, source = self._lookup(
            "sp2_mac",
            (weight_bits, act_bits, acc_bits),
            (sp2_mac_luts(act_bits, m1, m2, acc_bits), sp2_mac_ffs(act_bits, m1, m2, acc_bits)),
            ("sp2_mac", {"act_bits": act_bits, "m1": m1, "m2": m2, "acc_bits": acc_bits}),
        )
        return UnitCost(luts, ffs, 0.0, source)

    def lut_mac(self, weight_bits: int, act_bits: int, acc_bits: int) -> UnitCost:
        """A fixed-point MAC with a LUT multiplier (analytic: :func:`lut_mac_luts`)."""
        luts, ffs, source = self._lookup(
            "lut_mac",
            (weight_bits, act_bits, acc_bits),
            (
                lut_mac_luts(weight_bits, act_bits, acc_bits),
                lut_mac_ffs(weight_bits, act_bits, acc_bits),
            ),
            (
                "fixed_mac_lut",
                {"act_bits": act_bits, "weight_bits": weight_bits, "acc_bits": acc_bits},
            ),
        )
        return UnitCost(luts, ffs, 0.0, source)

    def unit(self, kind: str, **params: int) -> UnitCost:
        """Any synthesized unit kind (:data:`hwquant.hw.synthesized.PARAMS`: codebook MACs, the
        table accumulator, the threshold unit, the requantizer, ...), from the fitted formulas.

        Raises:
            ConfigError: the table has no synthesized formulas (an analytic-only table), or
            the kind or its widths are unknown.
        """
        if self.fitted is None:
            raise ConfigError(
                f"unit {kind} has no analytic formula and this cost table has no synthesized "
                "costs. Fix: use hwquant.hw.DEFAULT_COSTS or a sweep file from "
                "'hwquant synth sweep'."
            )
        counts = self.fitted.cost(kind, **params)
        return UnitCost(counts["luts"], counts["ffs"], counts["dsps"], self.fitted.source)

    @classmethod
    def from_json(cls, path: str | Path) -> CostTable:
        """Unit costs from a JSON file: either a synthesis sweep written by ``hwquant synth
        sweep`` (its fitted formulas replace the shipped ones), or measured entries::

            {"source": "my measurements", "units": [
              {"unit": "sp2_mac", "weight_bits": 4, "act_bits": 4, "acc_bits": 22,
               "luts": 35, "ffs": 29}, ...]}

        which replace the shipped synthesized formulas at exactly those widths (``dsp_mac``
        entries give the LUT/FF glue of a DSP MAC).

        Raises:
            FileFormatError: the file is missing, not JSON, or an entry is malformed.
        """
        path = Path(path)
        fix = (
            'Fix: write {"source": ..., "units": [{"unit", "weight_bits", "act_bits", '
            f'"acc_bits", "luts", "ffs"}}, ...]}} with unit one of {", ".join(UNITS)}, or a '
            "sweep file from 'hwquant synth sweep --out FILE'."
        )
        try:
            doc = json.loads(path.read_text())
            if "fits" in doc:
                return cls(
                    source=f"synthesized ({path.name})",
                    fitted=SynthesizedCosts.from_doc(doc, path.name),
                )
            measured = {}
            for entry in doc["units"]:
                if entry["unit"] not in UNITS:
                    raise ValueError(f"unknown unit {entry['unit']!r}")
                key = _key(
                    entry["unit"],
                    int(entry["weight_bits"]),
                    int(entry["act_bits"]),
                    int(entry["acc_bits"]),
                )
                measured[key] = (int(entry["luts"]), int(entry["ffs"]))
            return cls(measured, str(doc.get("source", path.name)), DEFAULT_COSTS.fitted)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise FileFormatError(f"cost table '{path}' is not usable ({exc}). {fix}") from exc


Fitted = tuple[str, Mapping[str, int]]
"""A synthesized unit kind and the widths its fitted formula is evaluated at."""

ANALYTIC_COSTS = CostTable()
"""The analytic cost table (the formulas of this module only): a comparison, not the default."""


def _default_costs() -> CostTable:
    """The shipped sweep's table; the analytic one, with a warning, when the file is missing or
    does not match this version of the feature functions (so that ``hwquant synth sweep`` can
    still run and regenerate it)."""
    try:
        shipped = load_packaged()
    except FileFormatError as exc:
        warnings.warn(f"{exc} Using the analytic unit costs until then.", stacklevel=2)
        return ANALYTIC_COSTS
    if shipped is None:
        warnings.warn(
            "the synthesized cost file hwquant/hw/data/synth_costs.json is missing; using the "
            "analytic unit costs. Fix: run 'make synth-costs' (or 'hwquant synth sweep').",
            stacklevel=2,
        )
        return ANALYTIC_COSTS
    return CostTable(source=shipped.source, fitted=shipped)


DEFAULT_COSTS = _default_costs()
"""The default cost table: the formulas fitted to the shipped Yosys sweep
(``hwquant/hw/data/synth_costs.json``)."""
