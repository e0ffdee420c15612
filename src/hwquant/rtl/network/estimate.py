"""Resource estimate of a built design, block by block, from its ``design.json`` alone.

The folded cost model of ``hwquant hw`` (:mod:`hwquant.hw.folding`) costs the MAC arrays and
the weight memories; a whole design also has the blocks around them. This module costs every
block and edge the generator emits by its structure, in the units of
:mod:`hwquant.rtl.resources` (LUT4s, multipliers, block RAMs), on the 4-input-LUT families the
flow places (ECP5, iCE40):

* **counters and control** (schedule, sliding-window address, loop counters): three LUT4s per
  counter bit (increment, wrap compare, enable) [D];
* **lanes**: each lane's products as its product kind registered them
  (:func:`hwquant.rtl.resources.lane_cost`: a multiplier per fixed-point or codebook product,
  shift-add LUTs per SP2 product, a ROM image per table product), then its adder tree, its
  accumulator and the fold's bias table;
* **requantizer** per lane (``code = clamp((acc·M + 2^(s−1)) >>> s)``): a multiplier (none
  where ``M`` is a constant 0 or power of two: design.json's ``requantizer.multiplies``), then the
  rounding adder, the shift and the clamp on the *live* bits only. With ``s_min`` the
  smallest shift the lane's shift table can select, bits ``0 .. s_min − 2`` of ``acc·M`` feed
  nothing (the rounding term ``2^(s−1)`` has no lower bits, and the shift drops them), so
  Yosys's ``opt_clean`` removes their flip-flops and ``wreduce`` the adder bits; and the top
  ``s_min`` bits of the shifted value all copy its sign, which ``opt_merge`` keeps once. The
  three wide stages are ``wide − s_min + 1`` bits each (design.json's
  ``requantizer.min_shifts``; on the MSQ digits design, shifts 17-26 of a 34-bit product,
  that is half the requantizer);
* **edges** in block RAM: the bank and count registers and their next-state LUTs, and the
  address adders ``bank·DEPTH + address`` only when ``DEPTH`` (words per bank) is not a power
  of two (else the sum is a concatenation, no logic: Yosys's ``opt_expr`` / ``wreduce``);
* **max pool**: per bit of the word a comparator bit (half an ECP5 carry cell, CCU2C) and one
  LUT4 that selects the new or the running maximum (its inputs: both bits, the compare result
  and the window's first-item flag), and one more for the padding multiplexer unless the
  window provably stays inside the map (:func:`window_stays_inside`: the digits pools, 8 x 8
  to 4 x 4, measured 2 LUT4s per bit; the MNIST-5k pools, 28 x 28 and 14 x 14, 3);

**Flip-flops** are counted register by register as the generator writes them (Yosys keeps
every one that is read): the pipeline registers of a weight block (window address, weight and
input words, one per product bit, adder-tree levels, accumulator and result, the
requantizer's operand registers and three wide stages (four where a lane multiplies; on
ECP5 the operand and product registers of a multiplying lane are its DSP's) and code,
the word assembly), each stage's tags, the schedule and loop counters; an edge in block RAM
costs its bank and count registers only (its RAM is ``no_rw_check``: Yosys adds no bypass
register beside it), an edge in LUTRAM
its registered read word too, and an iCE40 edge in logic every word; a max pool holds the read
word, the running maximum and the output word; the output interface holds the logits twice
(the argmax tree and the top's output register) [D].

[D] marks a planning figure; the benchmark (benchmarks/network_build.py) puts every estimate
beside the synthesized count and records how far off it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from hwquant.core.errors import ConfigError
from hwquant.rtl.network import multiplier
from hwquant.rtl.network.weight_layer import ROM_BANK_WORDS
from hwquant.rtl.resources import (
    FAMILIES,
    Cost,
    LaneShape,
    bits,
    lane_cost,
    memory,
    multipliers,
    mux_luts,
    table_luts,
)

LUTS_PER_COUNTER_BIT = 3
"""Increment, wrap compare and enable per counter bit [D]."""


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


def edge_cost(edge: Mapping, family: str) -> Cost:
    """An image FIFO (:func:`hwquant.rtl.network.stream.edge_module`): its RAM, the bank and
    count registers (``2·⌈log2 banks⌉ + ⌈log2(banks + 1)⌉`` bits, a next-state LUT4 each, and
    one each for ``avail`` and ``space``), and the two address adders ``bank·DEPTH + address``
    when ``DEPTH`` is not a power of two (module docstring); in block RAM nothing else (its RAM
    is ``no_rw_check``: no bypass register), in LUTRAM the read word and counters too, in iCE40
    logic every word and the read word.

    >>> edge_cost({"words": 128, "width": 256, "banks": 2}, "ecp5")
    Cost(luts=6.0, dsps=0, brams=8, ffs=4)
    """
    words, width, banks = int(edge["words"]), int(edge["width"]), int(edge.get("banks", 2))
    cost = memory(words, width, family)
    depth = words // banks
    adders = 0 if depth & (depth - 1) == 0 else 2 * bits(words)
    if cost.brams:
        control = 2 * bits(banks) + bits(banks + 1)
        cost.luts += control + 2 + adders
        cost.ffs = control
        return cost
    cost.luts += 2 * bits(words) + LUTS_PER_COUNTER_BIT * 4
    if family == "ice40":  # no LUTRAM: the words themselves are flip-flops
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


def weight_block_cost(block: Mapping, family: str) -> Cost:
    """A convolution / fully connected block (:mod:`hwquant.rtl.network.weight_layer`)."""
    simd, nf = int(block["simd"]), int(block["neuron_folds"])
    acc, a, c_in = int(block["acc_bits"]), int(block["in_bits"]), int(block["in_channels"])
    kh, kw = block["kernel"]
    _, oh, ow = block["out_shape"]
    words, rom_bits = int(block["weight_rom"]["words"]), int(block["weight_rom"]["width"])
    counters = [c_in // simd, kw, kh, nf, ow, oh, words]
    count_bits = sum(bits(n) for n in counters) + bits(block["cycles"])
    cost = Cost(LUTS_PER_COUNTER_BIT * count_bits)
    cost.luts += mux_luts(c_in // simd, simd * a)  # the chunk select
    # schedule and loop counters, ROM address (three times), the window's coordinates (and
    # their sign bits), pixel address, input and weight words
    sy, sx = block["stride"]
    cost.ffs = count_bits + 1 + 2 * bits(words) + bits(max(kh * kw, oh * ow * sy * sx))
    cost.ffs += bits(oh * sy + kh) + bits(ow * sx + kw) + 2
    cost.ffs += simd * max(a, 1) + rom_bits
    banks = int(block["weight_rom"].get("banks", 1))
    if block.get("word_registered"):  # the read word and each bank's weight word registered
        cost.ffs += c_in * a + banks * rom_bits
    copies = int(block.get("operand_copies", 1))
    if copies > 1:  # every DSP lane's own copy of the x operand, and the weight word delayed
        cost.ffs += copies * simd * a + rom_bits
    # the tags (valid, padding, first, last, chunk and fold) through the pipeline's stages
    cost.ffs += int(block["depth"]) * (4 + bits(nf)) + 3 * bits(c_in // simd)
    if block["weight_rom"]["style"] == "logic":  # a small ROM: LUT logic
        cost.luts += table_luts(words, rom_bits, family)
        cost.ffs += rom_bits  # the ROM's read register (block RAM holds its own)
    elif banks > 1:  # banks of bank_words (the last one shorter), then a banks:1 select
        # (a design.json written before the bank size was recorded banked at the default)
        bank_words = int(block["weight_rom"].get("bank_words", ROM_BANK_WORDS))
        for start in range(0, words, bank_words):
            cost += memory(min(bank_words, words - start), rom_bits, family)
        cost.luts += mux_luts(banks, rom_bits)
    else:
        cost += memory(words, rom_bits, family)
    lanes = zip(block["lanes"], block["product_bits"], block["weight_fields"], strict=True)
    for kind, pbits, wfield in lanes:
        cost += lane_cost(LaneShape(kind, simd, a, int(pbits), int(wfield), family, block))
        tree_luts, tree_regs = _adder_tree(simd, pbits, acc)
        cost.luts += tree_luts + acc + table_luts(nf, acc, family)  # + accumulator
        cost.ffs += simd * pbits + tree_regs + 2 * acc  # products, tree, sum and result
        if block.get("product_registered"):  # a ROM read product registered once more
            cost.ffs += simd * pbits
    rq = block.get("requantizer")
    if rq:
        wide, ob, shifts = int(rq["wide"]), int(block["out_bits"]), int(rq["distinct_shifts"])
        # per lane, on its live bits (module docstring): the rounding adder and the clamp
        # about 2.5 LUT4s per bit, a shift chosen among n per row ⌈log2 n⌉ levels of 2:1
        # multiplexers, half a LUT4 per bit each; the per-row multiplier, shift and rounding
        # term are constant tables that Yosys folds into the logic they feed [D]
        # a multiplying lane's operand and product registers are the MULT18X18D's own on
        # ECP5 (:mod:`hwquant.rtl.network.multiplier`), flip-flops elsewhere
        mult_bits = int(rq["mult_bits"])
        in_dsp = multiplier.in_dsp(family, acc, mult_bits)
        dsp_lanes = set(rq.get("multiply_lanes", [])) if in_dsp else set()
        for p, low in enumerate(rq["min_shifts"]):
            live = wide - max(int(low) - 1, 0)
            cost.luts += 2.5 * live + live * bits(shifts) / 2 * (shifts > 1) + ob
            cost.ffs += 2 * live + int(rq["shift_bits"]) + ob  # rounded, shifted, code
            cost.ffs += live * (int(rq["multiplies"]) > 0)  # the product registered again
            cost.ffs += 0 if p in dsp_lanes else acc + live  # the result operand, the product
        # the multiplier register (kept) where a lane's rows have several; the fabric form's
        # copy of it (``b_q``) is not counted: every placed design with such lanes multiplies
        # inside its MULT18X18D (ECP5, operands of at most 18 bits). On iCE40 ``synth_ice40
        # -dsp`` packs a product's registers of up to 16 bits into its SB_MAC16, which these
        # counts do not model (they count the flip-flops) [D]
        cost.ffs += mult_bits * int(rq["mult_registers"])
        cost.dsps += int(rq["multiplies"]) * multipliers(acc, mult_bits, family)
    th = block.get("thresholds")
    if th:  # per lane: the fold's thresholds, the compares and their sum
        count, width = int(th["count"]), int(th["compare_bits"])
        for live in th["live_columns"]:
            # Yosys's proc_rom turns the fold's threshold case into a ROM and memory_dff
            # moves the fold register behind it: its live columns (design.json) are a table
            # and a register each
            cost.luts += table_luts(nf, live, family) + count * width + count * bits(count + 1)
            cost.ffs += live + count + int(block["out_bits"])  # table, compares, their sum
    cost.luts += 2 * nf + LUTS_PER_COUNTER_BIT * bits(oh * ow)  # word assembly, write address
    word = int(block["out_shape"][0]) * int(block["out_bits"])
    cost.ffs += word + bits(oh * ow) + 1  # the written word (folds assembled in it)
    return cost


def window_stays_inside(block: Mapping, in_shape: tuple[int, int]) -> bool:
    """Whether a window's padding test ``iy < 0 || iy >= H || ...`` is constant false *as
    Yosys sees it*: no padding, and ``iy = oy·sy + ky`` below ``H`` for every value of the
    ``oy`` and ``ky`` counters' bits (``2^bits(n) − 1``, not ``n − 1``: Yosys does not know a
    counter's wrap), on both axes; then ``opt_expr`` removes the padding multiplexer.

    >>> pool = {"kernel": [2, 2], "stride": [2, 2], "padding": [0, 0], "out_shape": [64, 4, 4]}
    >>> window_stays_inside(pool, (8, 8))  # iy <= 3 * 2 + 1 < 8
    True
    >>> window_stays_inside(pool | {"out_shape": [64, 7, 7]}, (14, 14))  # iy <= 7 * 2 + 1
    False
    """
    if any(int(p) for p in block["padding"]):
        return False
    _, oh, ow = block["out_shape"]
    reach = [
        ((1 << bits(int(o))) - 1) * int(s) + (1 << bits(int(k))) - 1
        for o, s, k in zip((oh, ow), block["stride"], block["kernel"], strict=True)
    ]
    return all(r < int(size) for r, size in zip(reach, in_shape, strict=True))


def pool_block_cost(
    block: Mapping, in_width: int, family: str, in_shape: tuple[int, int] | None = None
) -> Cost:
    """A max or average pooling block (:mod:`hwquant.rtl.network.pool`): per bit of the word
    a compare and a select (max: module docstring), or an adder and requantizer (avg); and
    per bit the padding multiplexer ``pad ? 0 : word`` unless the window cannot leave the
    input map ``in_shape`` (:func:`window_stays_inside`; unknown: kept)."""
    kh, kw = block["kernel"]
    oc, oh, ow = block["out_shape"]
    cost = Cost(LUTS_PER_COUNTER_BIT * (bits(kh) + bits(kw) + bits(oh) + bits(ow) + 10))
    cost.ffs = 3 * in_width + 2 * (bits(kh) + bits(kw) + bits(oh) + bits(ow)) + 20
    if in_shape is None or not window_stays_inside(block, in_shape):
        cost.luts += in_width
    if block["op"] == "maxpool":
        cost.luts += 2 * in_width
    else:
        cost.luts += 4 * in_width
        cost.dsps += oc
    return cost


def estimate_design(record: Mapping, family: str) -> DesignEstimate:
    """The estimate of the design whose ``design.json`` is ``record`` on ``family``.

    Raises:
        ConfigError: a family other than ``ecp5`` / ``ice40``, or a block op it cannot cost.
    """
    if family not in FAMILIES:
        raise ConfigError(f"no estimate for family {family!r}. Fix: use ecp5 or ice40.")
    est = DesignEstimate(family)
    widths = {e["to"]: int(e["width"]) for e in record["edges"]}
    shapes = {b["name"]: b["out_shape"] for b in record["blocks"]}
    for block in record["blocks"]:
        op, name = block["op"], block["name"]
        if "pe" in block:
            est.parts[name] = weight_block_cost(block, family)
        elif op in ("maxpool", "avgpool"):
            shape = shapes.get(block["inputs"][0])
            size = None if shape is None else (int(shape[1]), int(shape[2]))
            est.parts[name] = pool_block_cost(block, widths[name], family, size)
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
        elif "cost" in block:  # a block that costs itself (its op module records it)
            est.parts[name] = Cost(**block["cost"][family])
        else:
            raise ConfigError(f"no cost for block '{name}' ({op}). Fix: add one to {__name__}.")
    for edge in record["edges"]:
        est.parts[f"edge {edge['from']} -> {edge['to']}"] = edge_cost(edge, family)
    return est
