"""Resource estimate of a built design, block by block, from its ``design.json`` alone.

The folded cost model of ``hwquant hw`` (:mod:`hwquant.hw.folding`) costs the MAC arrays and
the weight memories; a whole design also has the blocks around them. This module costs every
block and edge the generator emits by its structure, on the 4-input-LUT families the flow
places (ECP5, iCE40), in the units the synthesized counts use
(:func:`hwquant.rtl.implement.synth_utilisation`: LUT4s, a carry cell two, a 16x4 LUTRAM four):

* **adder / comparator** of ``w`` bits: ``w`` LUT4s (two bits per ECP5 carry cell, each two
  LUT4s: Lattice FPGA-DS-02012 §2.4 "Slice"; one LUT per bit beside the iCE40 carry);
* **n:1 multiplexer** of one bit: ``2(n−1)/3`` LUT4s (a 4:1 mux is two LUT4s and the slice's
  PFUMX) [D];
* **constant table** of ``n`` entries (a per-row bias, multiplier or shift chosen by the neuron
  fold): none when ``n = 1`` (a constant), else ``2⌈n/16⌉ − 1`` LUT4s per bit (a LUT4 is a
  16-entry table) [D];
* **counters and control** (schedule, sliding-window address, loop counters): three LUT4s per
  counter bit (increment, wrap compare, enable) [D];
* **memories** (edge FIFOs, weight ROMs) as Yosys 0.70 maps them: block RAM in the aspect
  ratio that takes fewest blocks (ECP5 DP16KD 16384x1 .. 512x36; iCE40 SB_RAM40_4K 2048x2 ..
  256x16); on ECP5 a RAM goes to 16x4 LUTRAM (4 LUT4s each, and a ``depth/16``:1 output mux per
  bit) when that is cheaper by Yosys's own costs (4 per LUTRAM, 128 per DP16KD:
  ``techlibs/ecp5/lutrams.txt``, ``brams.txt``); weight ROMs marked ``distributed`` become
  constant tables; iCE40 has no LUTRAM: a RAM of at most :data:`ICE40_LOGIC_WORDS` words is
  flip-flops and a multiplexer [D];
* **multipliers**: one 18x18 MULT18X18D (ECP5) or 16x16 SB_MAC16 (iCE40) per fixed-point or
  codebook product and per requantizer lane, ``⌈a/n⌉·⌈b/n⌉`` of them for a wider product on
  ECP5; on iCE40 none for a product under 11 bits and none for a slice under 2 bits, as
  Yosys splits them (:func:`ice40_macs`);
  an SP2 shift-add product three LUT4s per product bit (two shift multiplexers, one adder) [D];
  a codebook product adds its level table.

[D] marks a planning figure of this module; the benchmark (benchmarks/network_build.py) puts
every estimate beside the synthesized count and records how far off it is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
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
LUTS_PER_COUNTER_BIT = 3
"""Increment, wrap compare and enable per counter bit [D]."""
LUTS_PER_SP2_BIT = 3
"""Two shift multiplexers and one adder per SP2 product bit [D]."""


@dataclass
class Cost:
    """LUT4s, hardware multipliers and block RAMs of one part of a design."""

    luts: float = 0.0
    dsps: int = 0
    brams: int = 0

    def __iadd__(self, other: Cost) -> Cost:
        self.luts += other.luts
        self.dsps += other.dsps
        self.brams += other.brams
        return self


@dataclass
class DesignEstimate:
    """The estimate of a whole design: totals and the cost of every block and edge."""

    family: str
    parts: dict[str, Cost] = field(default_factory=dict)

    @property
    def total(self) -> Cost:
        """The sum of the parts."""
        out = Cost()
        for cost in self.parts.values():
            out += cost
        return out

    def to_dict(self) -> dict:
        """JSON-ready: totals (LUTs rounded) and per part ``[luts, dsps, brams]``."""
        t = self.total
        return {
            "luts": round(t.luts),
            "dsps": t.dsps,
            "brams": t.brams,
            "parts": {k: [round(c.luts), c.dsps, c.brams] for k, c in self.parts.items()},
        }


def bits(n: int) -> int:
    """Bits of a counter over ``0..n−1`` (at least 1)."""
    return max(1, (n - 1).bit_length())


def mux_luts(ways: int, width: int) -> float:
    """LUT4s of a ``ways``:1 multiplexer of ``width`` bits (module docstring)."""
    return 0.0 if ways <= 1 else width * 2 * (ways - 1) / 3


def table_luts(entries: int, width: int) -> float:
    """LUT4s of a table of ``entries`` constants of ``width`` bits (module docstring)."""
    return 0.0 if entries <= 1 else width * (2 * math.ceil(entries / 16) - 1)


def multipliers(a: int, b: int, family: str) -> int:
    """Hardware multipliers of an ``a`` x ``b``-bit product: ``⌈a/n⌉·⌈b/n⌉`` of ``n``-bit ones
    on ECP5; on iCE40 as ``synth_ice40 -dsp`` splits it (:func:`ice40_macs`).

    >>> multipliers(17, 17, "ecp5"), multipliers(17, 17, "ice40"), multipliers(5, 4, "ice40")
    (1, 1, 0)
    """
    if family == "ice40":
        return ice40_macs(a, b)
    n = DSP_BITS[family]
    return math.ceil(a / n) * math.ceil(b / n)


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


def memory(depth: int, width: int, family: str) -> Cost:
    """A ``depth`` x ``width``-bit RAM as Yosys maps it (module docstring)."""
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


def edge_cost(edge: Mapping, family: str) -> Cost:
    """An image FIFO: its RAM, two address adders and the bank and count control."""
    cost = memory(int(edge["words"]), int(edge["width"]), family)
    cost.luts += 2 * bits(int(edge["words"])) + LUTS_PER_COUNTER_BIT * 4
    return cost


def _adder_tree(simd: int, product_bits: int, acc_bits: int) -> float:
    """LUT4s of one lane's registered adder tree over ``simd`` products."""
    widths, luts = [product_bits] * simd, 0.0
    while len(widths) > 1:
        nxt = []
        for i in range(0, len(widths), 2):
            pair = widths[i : i + 2]
            width = min(max(pair) + (len(pair) > 1), acc_bits)
            luts += width if len(pair) > 1 else 0
            nxt.append(width)
        widths = nxt
    return luts


def weight_block_cost(block: Mapping, family: str) -> Cost:
    """A convolution / fully connected block (:mod:`hwquant.rtl.network.weight_layer`)."""
    pe, simd, nf = int(block["pe"]), int(block["simd"]), int(block["neuron_folds"])
    acc, a, c_in = int(block["acc_bits"]), int(block["in_bits"]), int(block["in_channels"])
    kh, kw = block["kernel"]
    _, oh, ow = block["out_shape"]
    counters = [c_in // simd, kw, kh, nf, ow, oh, int(block["weight_rom"]["words"])]
    cost = Cost(LUTS_PER_COUNTER_BIT * (sum(bits(n) for n in counters) + bits(block["cycles"])))
    cost.luts += mux_luts(c_in // simd, simd * a)  # the chunk select
    rom = block["weight_rom"]
    if rom["style"] == "distributed":
        cost.luts += table_luts(int(rom["words"]), int(rom["width"]))
    else:
        cost += memory(int(rom["words"]), int(rom["width"]), family)
    lanes = zip(block["lanes"], block["product_bits"], block["weight_fields"], strict=True)
    for kind, pbits, wfield in lanes:
        if kind == "sp2":
            cost.luts += simd * LUTS_PER_SP2_BIT * pbits
        elif kind == "codebook":  # index -> level table, then the multiplier
            cost.luts += simd * table_luts(2**wfield, pbits - a)
            cost.dsps += simd * multipliers(a + 1, pbits - a, family)
        elif kind == "table":  # a lookup ROM in LUTs, no multiplier
            cost.luts += simd * table_luts(int(block["table_entries"]), pbits)
        else:
            cost.dsps += simd * multipliers(a + 1, wfield, family)
        cost.luts += _adder_tree(simd, pbits, acc) + acc + table_luts(nf, acc)  # + accumulator
    rq = block.get("requantizer")
    if rq:
        wide, ob = int(rq["wide"]), int(block["out_bits"])
        per_lane = table_luts(int(rq["distinct_mults"]), int(rq["mult_bits"]))
        if int(rq["distinct_shifts"]) > 1:  # rounding term and shift chosen per row
            per_lane += table_luts(int(rq["distinct_shifts"]), wide + int(rq["shift_bits"]))
            # the shifter: one 2:1 stage per shift-amount bit that differs between the rows
            # (design.json's shift_stages; older records: every bit but the sign)
            stages = int(rq.get("shift_stages", int(rq["shift_bits"]) - 1))
            per_lane += wide * stages * 2 / 3
        per_lane += wide + 2 * wide + ob  # rounding adder, two clamp compares, result mux
        cost.luts += pe * per_lane
        cost.dsps += pe * multipliers(acc, int(rq["mult_bits"]), family)
    th = block.get("thresholds")
    if th:  # per lane: the fold's thresholds, the compares and their sum
        count, width = int(th["count"]), int(th["compare_bits"])
        per_lane = table_luts(nf, count * width + 1) + count * width + count * bits(count + 1)
        cost.luts += pe * per_lane
    cost.luts += 2 * nf + LUTS_PER_COUNTER_BIT * bits(oh * ow)  # word assembly, write address
    return cost


def pool_block_cost(block: Mapping, in_width: int, family: str) -> Cost:
    """A max or average pooling block (:mod:`hwquant.rtl.network.pool`): a compare (max) or
    an adder and requantizer (avg) per channel of the word."""
    kh, kw = block["kernel"]
    oc, oh, ow = block["out_shape"]
    cost = Cost(LUTS_PER_COUNTER_BIT * (bits(kh) + bits(kw) + bits(oh) + bits(ow) + 10))
    if block["op"] == "maxpool":
        cost.luts += 2 * in_width  # compare and select per channel bit
    else:
        cost.luts += 4 * in_width
        cost.dsps += oc
    return cost


def estimate_design(record: Mapping, family: str) -> DesignEstimate:
    """The estimate of the design whose ``design.json`` is ``record`` on ``family``.

    Raises:
        ConfigError: a family other than ``ecp5`` / ``ice40``, or a block op it cannot cost.
    """
    if family not in DSP_BITS:
        raise ConfigError(f"no estimate for family {family!r}. Fix: use ecp5 or ice40.")
    est = DesignEstimate(family)
    widths = {e["to"]: int(e["width"]) for e in record["edges"]}
    for block in record["blocks"]:
        op, name = block["op"], block["name"]
        if "pe" in block:
            est.parts[name] = weight_block_cost(block, family)
        elif op in ("maxpool", "avgpool"):
            est.parts[name] = pool_block_cost(block, widths[name], family)
        elif op == "input":
            est.parts[name] = Cost(LUTS_PER_COUNTER_BIT * bits(record["input"]["pixels"]))
        elif op == "output":
            out = record["output"]
            classes, ab = int(out["classes"]), int(out["acc_bits"])
            est.parts[name] = Cost((classes - 1) * (2 * ab + bits(classes)) + 10)
        elif op == "add":
            est.parts[name] = Cost(3 * widths[name], dsps=2)
        else:
            raise ConfigError(f"no cost for block '{name}' ({op}). Fix: add one to {__name__}.")
    for edge in record["edges"]:
        est.parts[f"edge {edge['from']} -> {edge['to']}"] = edge_cost(edge, family)
    return est
