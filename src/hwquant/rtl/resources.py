"""FPGA resource units of the 4-input-LUT families the flow places (ECP5, iCE40), and the
lane-cost registry: what one processing-array lane's products cost, kind by kind.

Counts are in the units the synthesized counts use
(:func:`hwquant.rtl.implement.synth_utilisation`: LUT4s, a carry cell two, a 16x4 LUTRAM four):

* **adder / comparator** of ``w`` bits: ``w`` LUT4s (two bits per ECP5 carry cell, each two
  LUT4s: Lattice FPGA-DS-02012 §2.4 "Slice"; one LUT per bit beside the iCE40 carry);
* **n:1 multiplexer** of one bit: one LUT4 for ``n = 2`` (three inputs), else ``2(n−1)/3``
  LUT4s (a 4:1 mux is two LUT4s and the slice's PFUMX) [D];
* **constant table** of ``n`` entries (a per-row bias, multiplier or shift chosen by the neuron
  fold): none when ``n = 1`` (a constant), else a LUT4 per 16 entries per bit, joined by the
  ECP5 slice's PFUMX / L6MUX21 up to 64 entries, by LUT4 multiplexers on iCE40
  (:func:`table_luts`);
* **memories** as Yosys 0.70 maps them: block RAM in the aspect ratio that takes fewest
  blocks (ECP5 DP16KD 16384x1 .. 512x36; iCE40 SB_RAM40_4K 2048x2 .. 256x16); on ECP5 a RAM
  goes to 16x4 LUTRAM (4 LUT4s each, and a ``depth/16``:1 output mux per bit) when that is
  cheaper by Yosys's own costs (4 per LUTRAM, 128 per DP16KD: ``techlibs/ecp5/lutrams.txt``,
  ``brams.txt``); iCE40 has no LUTRAM: a RAM of at most :data:`ICE40_LOGIC_WORDS` words is
  flip-flops and a multiplexer [D];
* **multipliers**: one 18x18 MULT18X18D (ECP5) or 16x16 SB_MAC16 (iCE40) per product, more for
  a wider one as Yosys's ``mul2dsp`` cuts it (:func:`multipliers`).

**Lanes.** Each product kind a processing array can hold (:class:`hwquant.rtl.unit.Product`'s
``kind``: fixed-point, SP2 shift-add, codebook, table lookup) registers its cost beside the
emitter that writes it (:func:`register_lane_cost`): :mod:`hwquant.rtl.fixed_mac` and the
schemes' ``rtl`` modules. The whole-design estimate (:mod:`hwquant.rtl.network.estimate`)
prices a lane by looking its kind up here (:func:`lane_cost`), so it names no scheme.

[D] marks a planning figure; the benchmark (benchmarks/network_build.py) puts every estimate
beside the synthesized count and records how far off it is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from hwquant.core.errors import ConfigError

ECP5_BRAM_SHAPES = ((36, 512), (18, 1024), (9, 2048), (4, 4096), (2, 8192), (1, 16384))
"""(width, depth) of one ECP5 DP16KD / PDPW16KD (FPGA-TN-02204, ECP5 Memory Usage Guide)."""
ICE40_BRAM_SHAPES = ((16, 256), (8, 512), (4, 1024), (2, 2048))
"""(width, depth) of one iCE40 SB_RAM40_4K (FPGA-TN-02002, iCE40 Memory Usage Guide)."""
ECP5_LUTRAM_COST, ECP5_BRAM_COST = 4, 128
"""Yosys 0.70's mapping costs of a TRELLIS_DPR16X4 and a DP16KD (ECP5 techlib)."""
ICE40_LOGIC_WORDS = 4
"""iCE40 RAMs of at most this many words are left to flip-flops [D]."""
DSP_BITS = {"ecp5": 18, "ice40": 16}
"""Operand width of one hardware multiplier per family."""
FAMILIES = tuple(DSP_BITS)
"""The families these rules describe: what a block's per-family ``cost`` record covers."""


@dataclass
class Cost:
    """LUT4s, hardware multipliers, block RAMs and flip-flops of one part of a design."""

    luts: float = 0.0
    dsps: int = 0
    brams: int = 0
    ffs: int = 0

    def __iadd__(self, other: Cost) -> Cost:
        self.luts += other.luts
        self.dsps += other.dsps
        self.brams += other.brams
        self.ffs += other.ffs
        return self


def bits(n: int) -> int:
    """Bits of a counter over ``0..n−1`` (at least 1).

    >>> bits(1), bits(2), bits(64), bits(65)
    (1, 1, 6, 7)
    """
    return max(1, (n - 1).bit_length())


def mux_luts(ways: int, width: int) -> float:
    """LUT4s of a ``ways``:1 multiplexer of ``width`` bits (module docstring).

    >>> mux_luts(1, 8), mux_luts(2, 8), mux_luts(4, 3)
    (0.0, 8.0, 6.0)
    """
    if ways <= 1:
        return 0.0
    return float(width) if ways == 2 else width * 2 * (ways - 1) / 3


def table_luts(entries: int, width: int, family: str) -> float:
    """LUT4s of a table of ``entries`` constants of ``width`` bits (module docstring): per bit
    one LUT4 per 16 entries; on ECP5 the slice's PFUMX and L6MUX21 join two and four LUT4s
    into a 32- and a 64-entry table (a LUT5, a LUT6) at no LUT cost, elsewhere (iCE40) a
    LUT4 multiplexer joins each pair.

    >>> table_luts(1, 8, "ecp5"), table_luts(16, 8, "ecp5"), table_luts(32, 8, "ecp5")
    (0.0, 8.0, 16.0)
    >>> table_luts(64, 1, "ecp5"), table_luts(128, 1, "ecp5"), table_luts(32, 8, "ice40")
    (4.0, 9.0, 24.0)
    """
    _known(family)
    if entries <= 1:
        return 0.0
    if family == "ice40":
        return float(width * (2 * math.ceil(entries / 16) - 1))
    sixes = math.ceil(entries / 64)  # LUT6s of up to 64 entries, then a multiplexer
    if sixes == 1:
        return float(width * 2 ** max(0, math.ceil(math.log2(entries / 16))))
    return 4.0 * width * sixes + mux_luts(sixes, width)


def multipliers(a: int, b: int, family: str) -> int:
    """Hardware multipliers of an ``a`` x ``b``-bit product. On ECP5, Yosys's ``mul2dsp``
    cuts each operand into 18-bit slices and leaves a slice under 2 bits (its
    ``DSP_A_MINWIDTH``) to LUTs: a 19 x 2 requantizer product is one MULT18X18D. On iCE40 as
    ``synth_ice40 -dsp`` splits it (:func:`ice40_macs`).

    >>> multipliers(19, 2, "ecp5"), multipliers(20, 17, "ecp5")
    (1, 2)
    >>> multipliers(17, 17, "ice40"), multipliers(5, 4, "ice40")
    (1, 0)
    >>> multipliers(8, 8, "xc7")
    Traceback (most recent call last):
    ...
    hwquant.core.errors.ConfigError: no resource rules for the 'xc7' family (ecp5, ice40). Fix: ...
    """
    _known(family)
    if family == "ice40":
        return ice40_macs(a, b)
    return _slices(a, DSP_BITS["ecp5"]) * _slices(b, DSP_BITS["ecp5"])


def _known(family: str) -> None:
    """Refuse a family these rules do not describe (each rule cites an ECP5 or iCE40 mapping)."""
    if family not in FAMILIES:
        raise ConfigError(
            f"no resource rules for the {family!r} family ({', '.join(FAMILIES)}). Fix: estimate "
            "an ECP5 or iCE40 part; other families are synthesized, not estimated."
        )


def ice40_macs(a: int, b: int) -> int:
    """SB_MAC16s of an ``a`` x ``b``-bit product as Yosys 0.70's ``synth_ice40 -dsp`` maps it
    (``techmap +/mul2dsp.v`` with ``DSP_A/B_MAXWIDTH = 16``, ``DSP_A/B_MINWIDTH = 2``,
    ``DSP_Y_MINWIDTH = 11``): the wider operand is cut into 16-bit slices and a remainder,
    recursively, and a slice narrower than 2 bits or with a product under 11 bits stays in
    LUTs. So a 5 x 4 lane product takes none and a 17 x 17 requantizer one (its 1-bit
    remainders are LUTs).

    >>> ice40_macs(9, 8), ice40_macs(5, 4), ice40_macs(17, 13), ice40_macs(32, 16)
    (1, 0, 1, 2)
    """
    a, b = max(a, b), min(a, b)
    if b < 2 or a + b < 11:
        return 0
    if a <= DSP_BITS["ice40"]:
        return 1
    n = (a - 1) // DSP_BITS["ice40"]
    return n * ice40_macs(DSP_BITS["ice40"], b) + ice40_macs(a - n * DSP_BITS["ice40"], b)


def _slices(width: int, n: int) -> int:
    """``n``-bit slices of an operand that map to multipliers (a last one of 1 bit does not)."""
    return max(1, width // n + (width % n >= 2))


def memory(depth: int, width: int, family: str) -> Cost:
    """A ``depth`` x ``width``-bit RAM as Yosys maps it (module docstring)."""
    _known(family)
    shapes = ECP5_BRAM_SHAPES if family == "ecp5" else ICE40_BRAM_SHAPES
    blocks = min(math.ceil(width / w) * math.ceil(depth / d) for w, d in shapes)
    if family == "ecp5":
        lutrams = math.ceil(depth / 16) * math.ceil(width / 4)
        if lutrams * ECP5_LUTRAM_COST < blocks * ECP5_BRAM_COST:
            return Cost(4 * lutrams + mux_luts(math.ceil(depth / 16), width))
        return Cost(brams=blocks)
    if depth <= ICE40_LOGIC_WORDS:
        return Cost(mux_luts(depth, width))
    return Cost(brams=blocks)


@dataclass(frozen=True)
class LaneShape:
    """One processing-array lane as design.json records it: its product ``kind``, ``simd``
    products per cycle of ``in_bits``-bit codes and ``weight_field``-bit weight fields, each
    ``product_bits`` wide, on ``family``; ``block`` is the block's whole design.json entry
    (figures a kind of its own needs, such as a table lane's ``table_entries``)."""

    kind: str
    simd: int
    in_bits: int
    product_bits: int
    weight_field: int
    family: str
    block: Mapping = field(default_factory=dict)


LaneCost = Callable[[LaneShape], Cost]
"""The cost of one lane's ``simd`` products (not its adder tree or accumulator, which every
lane has alike); negative ``ffs`` where a product register sits in a block RAM's read port."""

_LANE_COSTS: dict[str, LaneCost] = {}


def register_lane_cost(kind: str, cost: LaneCost) -> LaneCost:
    """Register the cost of product kind ``kind`` (once)."""
    if kind in _LANE_COSTS:
        raise ConfigError(f"lane cost of product kind '{kind}' is registered twice")
    _LANE_COSTS[kind] = cost
    return cost


def lane_kinds() -> list[str]:
    """The product kinds with a registered cost, sorted."""
    return sorted(_LANE_COSTS)


def lane_cost(lane: LaneShape) -> Cost:
    """The cost of ``lane``'s products (:func:`register_lane_cost`).

    Raises:
        ConfigError: no cost is registered for the lane's kind.
    """
    cost = _LANE_COSTS.get(lane.kind)
    if cost is None:
        raise ConfigError(
            f"no lane cost for product kind '{lane.kind}'. Fix: register one with "
            f"hwquant.rtl.resources.register_lane_cost (registered: {', '.join(lane_kinds())})."
        )
    return cost(lane)
