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
  codebook product and per requantizer lane, ``⌈a/n⌉·⌈b/n⌉`` of them for a wider product
  (on iCE40 none for a product under 11 bits or a slice under 2 bits: :func:`ice40_macs`);
  an SP2 shift-add product four LUT4s per product bit (two shift multiplexers, an adder,
  the sign) [D];
  a codebook product adds its level table; a table product is a ROM image of every ``{x, w}``
  address, a memory as above whose block RAM holds the product register.

**Flip-flops** are counted register by register as the generator writes them (Yosys keeps
every one that is read): the pipeline registers of a weight block (window address, weight and
input words, one per product bit, adder-tree levels, accumulator and result, the
requantizer's three wide stages and code, the word assembly), each stage's tags, the schedule
and loop counters; an edge in block RAM costs its bank and count registers only (its RAM is
``no_rw_check``: Yosys adds no bypass register beside it), an edge in LUTRAM its registered
read word too, and an iCE40 edge in logic every word; a max pool holds the read
word, the running maximum and the output word; the output interface holds the logits twice
(the argmax tree and the top's output register) [D].

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
LUTS_PER_SP2_BIT = 4
"""Two shift multiplexers, one adder and the sign per SP2 product bit [D]."""


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
        """JSON-ready: totals (LUTs rounded) and per part ``[luts, dsps, brams, ffs]``."""
        t = self.total
        return {
            "luts": round(t.luts),
            "dsps": t.dsps,
            "brams": t.brams,
            "ffs": t.ffs,
            "parts": {k: [round(c.luts), c.dsps, c.brams, c.ffs] for k, c in self.parts.items()},
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
    """Hardware multipliers of an ``a`` x ``b``-bit product. On ECP5, Yosys's ``mul2dsp``
    cuts each operand into 18-bit slices and leaves a slice under 2 bits (its
    ``DSP_A_MINWIDTH``) to LUTs: a 19 x 2 requantizer product is one MULT18X18D. On iCE40 as
    ``synth_ice40 -dsp`` splits it (:func:`ice40_macs`).

    >>> multipliers(19, 2, "ecp5"), multipliers(20, 17, "ecp5")
    (1, 2)
    >>> multipliers(17, 17, "ice40"), multipliers(5, 4, "ice40")
    (1, 0)
    """
    if family == "ice40":
        return ice40_macs(a, b)
    n = DSP_BITS[family]
    if family == "ecp5":
        return _slices(a, n) * _slices(b, n)
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


def _slices(width: int, n: int) -> int:
    """``n``-bit slices of an operand that map to multipliers (a last one of 1 bit does not)."""
    return max(1, width // n + (width % n >= 2))


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
    """An image FIFO: its RAM, two address adders and the bank and count control; in block
    RAM only the bank and count registers, in LUTRAM the read word too, in iCE40 logic every
    word and the read word (module docstring)."""
    words, width = int(edge["words"]), int(edge["width"])
    cost = memory(words, width, family)
    cost.luts += 2 * bits(words) + LUTS_PER_COUNTER_BIT * 4
    if cost.brams:
        cost.ffs = 6
    elif family == "ice40":  # no LUTRAM: the words themselves are flip-flops
        cost.ffs = (words + 1) * width + 4
    else:
        cost.ffs = width + 4
    return cost


def _adder_tree(simd: int, product_bits: int, acc_bits: int) -> tuple[float, int]:
    """LUT4s and register bits of one lane's registered adder tree over ``simd`` products."""
    widths, luts, regs = [product_bits] * simd, 0.0, 0
    while len(widths) > 1:
        nxt = []
        for i in range(0, len(widths), 2):
            pair = widths[i : i + 2]
            width = min(max(pair) + (len(pair) > 1), acc_bits)
            luts += width if len(pair) > 1 else 0
            regs += width
            nxt.append(width)
        widths = nxt
    return luts, regs


def _table_depth(entries: int, weight_bits: int) -> int:
    """Words of a table product's ROM image: every ``{x, w}`` address, ``x`` of
    ``⌈log2(entries / 2^weight_bits)⌉`` bits (:func:`hwquant.schemes.tables.rtl.table_product`)."""
    rows = -(-entries >> weight_bits)
    return 1 << (bits(rows) + weight_bits)


def weight_block_cost(block: Mapping, family: str) -> Cost:
    """A convolution / fully connected block (:mod:`hwquant.rtl.network.weight_layer`)."""
    pe, simd, nf = int(block["pe"]), int(block["simd"]), int(block["neuron_folds"])
    acc, a, c_in = int(block["acc_bits"]), int(block["in_bits"]), int(block["in_channels"])
    kh, kw = block["kernel"]
    _, oh, ow = block["out_shape"]
    words, rom_bits = int(block["weight_rom"]["words"]), int(block["weight_rom"]["width"])
    counters = [c_in // simd, kw, kh, nf, ow, oh, words]
    count_bits = sum(bits(n) for n in counters) + bits(block["cycles"])
    cost = Cost(LUTS_PER_COUNTER_BIT * count_bits)
    cost.luts += mux_luts(c_in // simd, simd * a)  # the chunk select
    # schedule and loop counters, ROM address (twice), pixel address, input and weight words
    sy, sx = block["stride"]
    cost.ffs = count_bits + 1 + bits(words) + bits(max(kh * kw, oh * ow * sy * sx))
    cost.ffs += simd * max(a, 1) + rom_bits
    if block.get("word_registered"):  # the read word and the weight word registered first
        cost.ffs += c_in * a + rom_bits
    # the tags (valid, padding, first, last, chunk and fold) through the pipeline's stages
    cost.ffs += int(block["depth"]) * (4 + bits(nf)) + 3 * bits(c_in // simd)
    if block["weight_rom"]["style"] == "distributed":
        cost.luts += table_luts(words, rom_bits)
        cost.ffs += rom_bits  # the ROM's read register (block RAM holds its own)
    else:
        cost += memory(words, rom_bits, family)
    lanes = zip(block["lanes"], block["product_bits"], block["weight_fields"], strict=True)
    for kind, pbits, wfield in lanes:
        if kind == "sp2":
            cost.luts += simd * LUTS_PER_SP2_BIT * pbits
        elif kind == "codebook":  # index -> level table, then the multiplier
            cost.luts += simd * table_luts(2**wfield, pbits - a)
            cost.dsps += simd * multipliers(a + 1, pbits - a, family)
        elif kind == "table":  # a ROM image per product, no multiplier (module docstring)
            rom = memory(_table_depth(int(block["table_entries"]), wfield), pbits, family)
            cost.luts += simd * rom.luts
            cost.brams += simd * rom.brams
            if rom.brams:  # the block RAM's output register holds the product
                cost.ffs -= simd * pbits
        else:
            cost.dsps += simd * multipliers(a + 1, wfield, family)
        tree_luts, tree_regs = _adder_tree(simd, pbits, acc)
        cost.luts += tree_luts + acc + table_luts(nf, acc)  # + accumulator
        cost.ffs += simd * pbits + tree_regs + 2 * acc  # products, tree, sum and result
    rq = block.get("requantizer")
    if rq:
        wide, ob = int(rq["wide"]), int(block["out_bits"])
        # the per-row multiplier, shift and rounding term are constant tables that Yosys
        # folds into the logic they feed (measured: a few LUT4s per lane); the rounding adder
        # and the clamp take about 2.5 LUT4s per bit of the wide value, and a shift chosen
        # among n per row about ⌈log2 n⌉ levels of 2:1 multiplexers, half a LUT4 per bit
        # each (the shift register's constant bits drop out) [D]
        shifts = int(rq["distinct_shifts"])
        per_lane = 2.5 * wide + wide * bits(shifts) / 2 * (shifts > 1) + ob
        cost.luts += pe * per_lane
        cost.dsps += pe * multipliers(acc, int(rq["mult_bits"]), family)
        cost.ffs += pe * (3 * wide + int(rq["shift_bits"]) + ob)  # scaled, rounded, shifted
    th = block.get("thresholds")
    if th:  # per lane: the fold's thresholds, the compares and their sum
        count, width = int(th["count"]), int(th["compare_bits"])
        per_lane = table_luts(nf, count * width + 1) + count * width + count * bits(count + 1)
        cost.luts += pe * per_lane
        cost.ffs += pe * (count + int(block["out_bits"]))  # the compares, then their sum
    cost.luts += 2 * nf + LUTS_PER_COUNTER_BIT * bits(oh * ow)  # word assembly, write address
    word = int(block["out_shape"][0]) * int(block["out_bits"])
    cost.ffs += word + bits(oh * ow) + 1  # the written word (folds assembled in it)
    return cost


def pool_block_cost(block: Mapping, in_width: int, family: str) -> Cost:
    """A max or average pooling block (:mod:`hwquant.rtl.network.pool`): a compare (max) or
    an adder and requantizer (avg) per channel of the word."""
    kh, kw = block["kernel"]
    oc, oh, ow = block["out_shape"]
    cost = Cost(LUTS_PER_COUNTER_BIT * (bits(kh) + bits(kw) + bits(oh) + bits(ow) + 10))
    cost.ffs = 3 * in_width + 2 * (bits(kh) + bits(kw) + bits(oh) + bits(ow)) + 20
    if block["op"] == "maxpool":
        cost.luts += 3.5 * in_width  # compare, select, first-item and padding muxes per bit [D]
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
            pixels = bits(record["input"]["pixels"])
            est.parts[name] = Cost(LUTS_PER_COUNTER_BIT * pixels, ffs=pixels)
        elif op == "output":
            out = record["output"]
            classes, ab = int(out["classes"]), int(out["acc_bits"])
            est.parts[name] = Cost(
                (classes - 1) * (2 * ab + bits(classes)) + 10,
                ffs=2 * (classes * ab + bits(classes)) + 16,
            )
        elif op == "add":
            est.parts[name] = Cost(3 * widths[name], dsps=2)
        else:
            raise ConfigError(f"no cost for block '{name}' ({op}). Fix: add one to {__name__}.")
    for edge in record["edges"]:
        est.parts[f"edge {edge['from']} -> {edge['to']}"] = edge_cost(edge, family)
    return est
