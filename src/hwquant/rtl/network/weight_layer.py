"""The block of a convolution or fully connected layer: sliding-window unit, PE x SIMD array,
accumulators and requantizer, for every scheme whose weights have a lane product.

**Work.** Output pixel ``(oy, ox)`` of channel ``r`` is ``acc[r] = b[r] + Σ W[r, c, ky, kx] ·
x[c, oy·sy − py + ky, ox·sx − px + kx]`` (zero outside the input: the engine's zero padding).
The block walks, one work item per cycle, ``for oy, ox: for nf < NF: for ky, kx: for cs <
C/SIMD`` (``cs`` fastest): the *sliding-window unit* turns ``(oy, ox, ky, kx)`` into a pixel
address of the input edge (or a padding flag) and selects the ``cs``-th chunk of ``SIMD``
channels of that pixel word. A fully connected layer reading a flattened ``[C, H, W]`` map is
the same with the kernel covering the map (``KH = H, KW = W``, one output pixel), and one
reading a vector is a 1 x 1 kernel. The fan-in order differs from the engine's ``(c, ky, kx)``
unfold order only by a permutation of the weight columns, and a sum of integers modulo
``2^acc_bits`` does not depend on the order of its terms, so the result is the engine's.

**Array.** ``PE`` lanes each form ``SIMD`` products per cycle with the scheme's
:class:`~hwquant.rtl.unit.Product` (fixed-point multiply, SP2 shift-add, codebook decode);
lane ``p`` holds row ``rows[nf][p]`` during neuron fold ``nf`` (:func:`lane_layout`: an MSQ
layer gives its SP2 rows to shift-add lanes and its fixed rows to multiplier lanes; rows beyond
the layer are idle lanes). The weight ROM holds one word of every lane's ``SIMD`` weight
fields per (nf, ky, kx, cs), read synchronously from a ``$readmemh`` image (block RAM when deep,
LUTs when at most :data:`LUTROM_DEPTH` words; a very deep one in banks of
:data:`ROM_BANK_WORDS`, one image each).

**Pipeline** (one register per stage, so one stage sets Fmax): window coordinates → padding
flag and pixel address → input RAM read
and weight ROM read → (the read word registered, when the chunk select has at least
:data:`WIDE_CHUNKS` ways or the ROM is banked) → bank select and chunk select → (a copy of
the operand per lane, beyond :data:`OPERAND_COPY_LANES` DSP lanes) → products →
(the products registered again when they are ROM reads, table lookups) → ``⌈log2 SIMD⌉``
adder-tree levels → accumulator (bias on a fold's first item, wrapping at ``acc_bits``:
:class:`hwquant.core.intmath.Accumulator` "wrap") → ``acc`` and ``M`` registered, ``acc·M``
registered (:mod:`~hwquant.rtl.network.multiplier`: on ECP5 the MULT18X18D's own registers)
→ the product registered again, in every lane, when any lane of the block multiplies →
``+ 2^(s−1)`` → ``>>> s`` →
``clamp(·, lo, hi)`` → pixel word assembly in the write register (each fold's codes into
their fields) and write.
``acc_bits`` is the width the engine's analysis proves (:meth:`WeightNode.worst_case_bits`),
or the node's own narrower wrapping accumulator.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from functools import reduce
from typing import Protocol

import numpy as np

from hwquant.core.errors import ConfigError, UnsupportedLayerError
from hwquant.core.intmath import code_format
from hwquant.ir.intmodel import WeightNode
from hwquant.rtl.golden import lane_groups
from hwquant.rtl.network import multiplier
from hwquant.rtl.network.stream import (
    Block,
    FeatureMap,
    block_ports,
    control_lines,
    counter_lines,
    module_text,
    window_coordinates,
    window_pixel,
)
from hwquant.rtl.requantizer import clamp_statement
from hwquant.rtl.testbench import mem_text
from hwquant.rtl.unit import Product, case_block, index_bits, literal

WIDE_CHUNKS = 8
"""A chunk select over at least this many chunks of the input word (``C/SIMD``) gets its own
register stage after the input RAM: on the fixed-only digits design (``C/SIMD = 32``) the
DP16KD's output through the 32:1 multiplexer limited Fmax to 82.5 MHz."""

ROM_BANK_WORDS = 2048
"""A weight ROM deeper than :data:`ROM_CASCADE_BANKS` banks of this many words (a power of
two) is emitted as banks (the last one shorter), each read into a register of its own; the
next stage selects the bank. One bank is one DP16KD deep (2048 x 9), so its block RAMs sit
side by side with no multiplexer between them: Yosys cascading the MNIST-5k classifier's
31,360-word ROM 16 DP16KD deep put a 16:1 multiplexer after the block RAMs' outputs and
limited Fmax to 68.8 MHz."""

ROM_CASCADE_BANKS = 8
"""A ROM of at most this many banks' words is left to Yosys, which cascades its block RAMs
behind a multiplexer of as many ways (two LUT levels): the digits designs' 10,240-word
classifier ROM (5 DP16KD deep) read through it within 100 MHz (every digits design placed at
100.81-116.86 MHz, none with that path critical: benchmarks/results/network_build.json), without the
banks' registers (a ROM word's width in flip-flops per bank)."""

OPERAND_COPY_LANES = 8
"""A block with more DSP lanes than this (products Yosys maps to MULT18X18D, ``style`` "dsp")
gives every lane a copy of the activation operand register ``x_q`` of its own, one stage
after it, so that each copy sits beside its lane's multipliers: the MNIST-5k LLSQ design
(153 of 156 MULT18X18D) routed its 32-lane ``x_q`` to the farthest DSP in 5.7 ns (88.22 MHz),
and with copies beyond 16 lanes its 16-lane ``features.3.0`` ``x_q`` in 5.9 ns (96.46 MHz);
with copies beyond 8 lanes that design closes at 106.03 MHz (session 8)."""

LUTROM_DEPTH = 64
"""Weight ROMs at most this many words deep are marked for LUTs (``rom_style = "logic"``: a
multiplexer tree; Yosys 0.70's ``synth_ecp5`` finds no mapping for a ROM marked
``"distributed"``, LUTRAM having a write port), deeper ones for block RAM (the same boundary
as :data:`hwquant.hw.folding.LUTRAM_DEPTH`)."""


@dataclass(frozen=True)
class Lane:
    """One PE lane: its product and, per neuron fold, the layer row it computes (−1: idle)."""

    product: Product
    rows: tuple[int, ...]


def accumulator_width(node: WeightNode) -> int:
    """The accumulator bits the block builds (module docstring): the L1 bound
    :meth:`~hwquant.ir.intmodel.WeightNode.worst_case_bits`, or the node's narrower accumulator
    when the proved interval (:meth:`~hwquant.ir.intmodel.WeightNode.proved_bits`, what
    ``lower`` proves) fits it or when it wraps (the engine's result is then modulo
    ``2^acc_bits`` too)."""
    bound = node.worst_case_bits()
    if node.acc_bits >= bound:
        return bound
    if node.overflow == "wrap" or node.acc_bits >= node.proved_bits():
        return node.acc_bits
    needed = node.proved_bits()
    raise UnsupportedLayerError(
        f"layer '{node.name}' has a {node.acc_bits}-bit accumulator with overflow policy "
        f"'{node.overflow}', narrower than the {needed} bits its worst case needs; the hardware "
        f"accumulator wraps. Fix: set_accumulator({needed}) or policy 'wrap' for this layer."
    )


def lane_layout(node: WeightNode, pe: int) -> list[tuple[Lane, np.ndarray]]:
    """The ``pe`` lanes of ``node`` with their weight words ``[rows, K]`` in the engine's
    fan-in order (:func:`share_lanes` of the row groups of
    :func:`hwquant.rtl.golden.lane_groups`)."""
    return share_lanes(node.name, lane_groups(node), node.weight.shape[0], pe)


def share_lanes(
    name: str, groups: list[tuple[str, np.ndarray, Product, np.ndarray]], rows_total: int, pe: int
) -> list[tuple[Lane, np.ndarray]]:
    """The ``pe`` lanes of layer ``name``: its row ``groups`` ``(label, rows, product, words)``
    of one product kind each share the lanes in proportion to their rows, at least one lane
    each; every lane comes with its group's words placed at their layer rows ``[rows_total,
    K]``."""
    if pe < len(groups):
        raise ConfigError(
            f"layer '{name}' has {len(groups)} kinds of rows "
            f"({', '.join(g[0] for g in groups)}), each needing its own lanes; PE = {pe} is "
            f"too few. Fix: use PE >= {len(groups)}."
        )
    shares = [1] * len(groups)
    for _ in range(pe - len(groups)):  # give each further lane to the slowest group
        slowest = max(range(len(groups)), key=lambda g: len(groups[g][1]) / shares[g])
        shares[slowest] += 1
    folds = max(math.ceil(len(g[1]) / s) for g, s in zip(groups, shares, strict=True))
    lanes = []
    for (_, rows, product, words), share in zip(groups, shares, strict=True):
        for j in range(share):
            picked = [
                int(rows[nf * share + j]) if nf * share + j < len(rows) else -1
                for nf in range(folds)
            ]
            lanes.append((Lane(product, tuple(picked)), _row_words(rows, words, rows_total)))
    return lanes


def _row_words(rows: np.ndarray, words: np.ndarray, total: int) -> np.ndarray:
    """Words of a group placed at their layer rows (zeros elsewhere): ``[total, K]``."""
    out = np.zeros((total, words.shape[1]), np.int64)
    out[rows] = words
    return out


Geometry = tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]
"""``(kernel, stride, padding, output size)`` of a layer on its input map."""


def conv_geometry(
    kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int], fmap: FeatureMap
) -> Geometry:
    """The geometry of a convolution: ``Ho = ⌊(H + 2·py − KH) / sy⌋ + 1``, likewise ``Wo``."""
    (kh, kw), (sy, sx), (py, px) = kernel, stride, padding
    ho = (fmap.height + 2 * py - kh) // sy + 1
    wo = (fmap.width + 2 * px - kw) // sx + 1
    return (kh, kw), (sy, sx), (py, px), (ho, wo)


def dense_geometry(name: str, fan_in: int, fmap: FeatureMap) -> Geometry:
    """The geometry of a fully connected layer of ``fan_in`` inputs: its kernel covers the
    ``[C, H, W]`` map it reads (module docstring)."""
    if fan_in != fmap.channels * fmap.pixels:
        raise UnsupportedLayerError(
            f"layer '{name}' takes {fan_in} inputs but its input map "
            f"{fmap.shape()} holds {fmap.channels * fmap.pixels}. Fix: feed it a flattened "
            "[C, H, W] map (torch.flatten) or a vector."
        )
    return (fmap.height, fmap.width), (1, 1), (0, 0), (1, 1)


def kernel_geometry(node: WeightNode, fmap: FeatureMap) -> Geometry:
    """``(kernel, stride, padding, output size)`` of ``node`` on input ``fmap``."""
    if node.spatial:
        if node.groups != 1 or node.dilation != (1, 1):
            raise UnsupportedLayerError(
                f"layer '{node.name}' is a grouped or dilated convolution (groups="
                f"{node.groups}, dilation={node.dilation}); the network generator builds "
                "dense, undilated convolutions. Fix: use groups=1, dilation=1."
            )
        return conv_geometry(tuple(node.weight.shape[2:]), node.stride, node.padding, fmap)
    return dense_geometry(node.name, node.weight.shape[1], fmap)


class Activation(Protocol):
    """The stage after the accumulators of a layer that is not the last: it turns lane ``p``'s
    ``res_<p>`` (valid with ``res_v``, neuron fold ``res_nf``) into the output code
    ``code_<p>`` some register stages later."""

    def out_format(self) -> tuple[int, bool]:
        """Bits and signedness of the output codes."""
        ...

    def lines(
        self, lanes: list[tuple[Lane, np.ndarray]], stages: Stages, acc_bits: int
    ) -> list[str]:
        """The Verilog of the stage, advancing ``stages`` by its register stages."""
        ...

    def record(self, lanes: list[tuple[Lane, np.ndarray]], acc_bits: int) -> dict:
        """What design.json records of the stage (merged into the block's entry)."""
        ...


@dataclass(frozen=True)
class Requantizer:
    """``code = clamp((acc·M[row] + 2^(s[row]−1)) >>> s[row], lo, hi)``, one register stage
    per step (:func:`hwquant.rtl.requantizer.clamp_statement`); ``M`` is a constant in a lane
    whose rows share it (:func:`lane_multiplier`)."""

    mult: np.ndarray
    shift: np.ndarray
    lo: int
    hi: int

    def out_format(self) -> tuple[int, bool]:
        """The narrowest format of ``lo..hi``."""
        return code_format(self.lo, self.hi)

    def lines(
        self, lanes: list[tuple[Lane, np.ndarray]], stages: Stages, acc_bits: int
    ) -> list[str]:
        """``scaled = res·M[row]``, then ``code = clamp((scaled + 2^(s−1)) >>> s)``."""
        mult = np.asarray(self.mult, np.int64)
        shift = np.asarray(self.shift, np.int64)
        ob = self.out_format()[0]
        mult_bits = int(mult.max()).bit_length() + 1
        wide = acc_bits + mult_bits + 1
        shift_bits = max(2, int(shift.max()).bit_length() + 1)
        lines: list[str] = []
        # a lane whose real rows share one multiplier multiplies by that constant (an idle
        # fold's code is computed with it too, but never written: the word assembly skips
        # idle rows); a lane choosing among several has its row's multiplier chosen in the
        # accumulator's stage ``a`` and registered with the result (``v && last``): a
        # multiplexer before the DSP limited Fmax to 93 MHz on the SP2-only digits design
        a = stages.now - 1
        lines += stages.advance()
        factors = [lane_multiplier(mult, lane.rows) for lane, _ in lanes]
        for p, (lane, _) in enumerate(lanes):
            if factors[p] is None:
                ms = [int(mult[r]) if r >= 0 else 0 for r in lane.rows]
                lines += [
                    f"    reg signed [{mult_bits - 1}:0] mult_sel_{p}, mult_{p};",
                    _case(f"nf_{a}", f"mult_sel_{p}", [literal(m, mult_bits) for m in ms]),
                    # kept: the bits of the lanes' multiplier tables are functions of the fold
                    # alone, and Yosys merged equal ones, one flip-flop then driving DSPs of
                    # several lanes across the die (4.3 ns of route on the MNIST-5k LLSQ
                    # design's features.3.0, 100.46 MHz)
                    f"    (* keep *) always @(posedge clk) if (v_{a} && last_{a}) "
                    f"mult_{p} <= mult_sel_{p};",
                ]
        # the multiply's operands registered again, in a stage of their own, then the product
        # registered: on a DSP lane these are the MULT18X18D's own input and output registers
        # on ECP5 (:mod:`hwquant.rtl.network.multiplier`), which the placer cannot put away
        # from the DSP (fabric registers there, with 153 of 156 DSPs used: features.1.0's
        # mult_24 on the MNIST-5k MSQ design reached its DSP through 4.4 ns of route, 87.62
        # MHz; features.3.0's res_q_28 through 3.1 ns, and 3.3 ns on to scaled_28, 92.24
        # MHz). A lane multiplying by a constant 0 or power of two shifts in the fabric.
        lines += stages.advance()
        for p in range(len(lanes)):
            operand = literal(factors[p], mult_bits) if factors[p] is not None else f"mult_{p}"
            if _multiplies(factors[p]):
                lines += [
                    f"    wire signed [{wide - 1}:0] scaled_{p};",
                    multiplier.instance(
                        f"mul_{p}", f"res_{p}", operand, f"scaled_{p}", (acc_bits, mult_bits, wide)
                    ),
                ]
                continue
            lines += [
                f"    reg signed [{acc_bits - 1}:0] res_q_{p};",
                f"    always @(posedge clk) res_q_{p} <= res_{p};",
                f"    reg signed [{wide - 1}:0] scaled_{p};",
                f"    always @(posedge clk) scaled_{p} <= res_q_{p} * {operand};",
            ]
        product = "scaled"
        if any(_multiplies(f) for f in factors):
            lines += stages.advance()
            for p in range(len(lanes)):
                lines += [
                    f"    reg signed [{wide - 1}:0] scaled_q_{p};",
                    f"    always @(posedge clk) scaled_q_{p} <= scaled_{p};",
                ]
            product = "scaled_q"
        t = stages.now
        lines += stages.advance()
        for p, (lane, _) in enumerate(lanes):
            ss = [int(shift[r]) if r >= 0 else 0 for r in lane.rows]
            halves = [(1 << s) >> 1 for s in ss]
            lines += [
                f"    reg [{shift_bits - 1}:0] shift_{p};",
                _case(f"res_nf_{t}", f"shift_{p}", [f"{shift_bits}'d{s}" for s in ss]),
                f"    reg signed [{wide - 1}:0] half_{p};",
                _case(f"res_nf_{t}", f"half_{p}", [literal(h, wide) for h in halves]),
                f"    reg signed [{wide - 1}:0] rounded_{p};",
                f"    reg [{shift_bits - 1}:0] rshift_{p};",
                "    always @(posedge clk) begin",
                f"        rounded_{p} <= {product}_{p} + half_{p};",
                f"        rshift_{p} <= shift_{p};",
                "    end",
            ]
        lines += stages.advance()
        for p in range(len(lanes)):
            lines += [
                f"    reg signed [{wide - 1}:0] shifted_{p};",
                f"    always @(posedge clk) shifted_{p} <= rounded_{p} >>> rshift_{p};",
            ]
        lines += stages.advance()
        for p in range(len(lanes)):
            clamp = clamp_statement(f"code_{p}", f"shifted_{p}", self.lo, self.hi, wide, ob)
            lines += [
                f"    reg [{ob - 1}:0] code_{p};",
                "    always @(posedge clk) begin",
                "        " + clamp.rstrip(),
                "    end",
            ]
        return lines

    def record(self, lanes: list[tuple[Lane, np.ndarray]], acc_bits: int) -> dict:
        """design.json's ``requantizer``: the widths of :meth:`lines`; over the lanes, the
        most distinct multipliers and shifts one lane selects among (1: a constant, no
        multiplexer); ``mult_registers``, the lanes that keep a multiplier register
        (:func:`lane_multiplier`: their rows' multipliers differ), and ``multiplies``, the
        lanes whose product is a multiplication (a constant 0 or power of two is a shift,
        which Yosys's ``opt_expr`` makes of it: the non-uniform designs' ``M = 1``), on
        :mod:`~hwquant.rtl.network.multiplier` (``multiply_lanes``: which); and per lane
        ``min_shifts``, the smallest shift its registered shift
        amount ``rshift`` can take as Yosys sees it: the bits common to every shift its table
        can give (an idle fold's 0, and the table's default 0 when the fold select has codes
        beyond the folds, included), since ``opt_dff`` removes the register's constant bits
        and knows nothing of the others. The scaled value's bits below it feed nothing
        (:mod:`hwquant.rtl.network.estimate`): shifts {17, 25} keep bits from 16 up, shifts
        {15, 16} (no common bit) all of them."""
        mult = np.asarray(self.mult, np.int64)
        shift = np.asarray(self.shift, np.int64)
        mult_bits = int(mult.max()).bit_length() + 1
        rows = [[r for r in lane.rows if r >= 0] for lane, _ in lanes]
        factors = [lane_multiplier(mult, lane.rows) for lane, _ in lanes]
        folds = len(lanes[0][0].rows)
        default = [0] if 1 << index_bits(folds) > folds else []  # the select's spare codes
        return {
            "requantizer": {
                "mult_bits": mult_bits,
                "wide": acc_bits + mult_bits + 1,
                "shift_bits": max(2, int(shift.max()).bit_length() + 1),
                "distinct_mults": max(len({int(mult[r]) for r in rs}) for rs in rows),
                "distinct_shifts": max(len({int(shift[r]) for r in rs}) for rs in rows),
                "mult_registers": sum(factor is None for factor in factors),
                "multiplies": sum(_multiplies(f) for f in factors),
                "multiply_lanes": [p for p, f in enumerate(factors) if _multiplies(f)],
                "min_shifts": [
                    reduce(
                        operator.and_, [int(shift[r]) if r >= 0 else 0 for r in lane.rows] + default
                    )
                    for lane, _ in lanes
                ],
            }
        }


def lane_multiplier(mult: np.ndarray, rows: tuple[int, ...]) -> int | None:
    """The requantizer multiplier ``M`` a lane holding ``rows`` (−1: an idle fold) uses in
    every fold with a real row, or None when its rows' multipliers differ (a lane of idle
    folds only multiplies by 0).

    >>> lane_multiplier(np.array([5, 5, 7]), (0, 1, -1))
    5
    >>> lane_multiplier(np.array([5, 5, 7]), (1, 2)) is None
    True
    >>> lane_multiplier(np.array([5]), (-1, -1))
    0
    """
    factors = {int(mult[r]) for r in rows if r >= 0}
    if len(factors) > 1:
        return None
    return factors.pop() if factors else 0


def _multiplies(factor: int | None) -> bool:
    """Whether a lane of requantizer multiplier ``factor`` (:func:`lane_multiplier`; None: a
    register) multiplies: a constant 0 or power of two is a shift, which Yosys's ``opt_expr``
    makes of it (no DSP)."""
    return factor is None or factor & (factor - 1) != 0


@dataclass(frozen=True)
class ArraySpec:
    """What the block of a weight layer computes, whatever its scheme (module docstring):
    the layer ``name`` (``op``) reads node ``source``, expects ``in_bits``-bit codes
    (``in_signed``), has the row ``groups`` ``(label, rows, product, words [rows, K])`` of
    :func:`share_lanes`, ``rows`` output channels, a ``bias`` per row added on a fold's first
    item, ``acc_bits``-bit accumulators (``acc_bits_worst_case``: the proven bound, recorded),
    ``weight_bits`` (recorded) and an ``activation`` (None: the last layer outputs its
    accumulators, the logits). ``pad_code`` is the ``x`` operand of a padding position (the
    code whose product is 0); ``info`` adds figures to the block's design.json entry."""

    name: str
    op: str
    source: str
    in_bits: int
    in_signed: bool
    groups: list[tuple[str, np.ndarray, Product, np.ndarray]]
    rows: int
    bias: np.ndarray
    acc_bits: int
    acc_bits_worst_case: int
    weight_bits: int
    activation: Activation | None
    pad_code: int = 0
    info: dict = field(default_factory=dict)


def node_spec(node: WeightNode) -> ArraySpec:
    """The :class:`ArraySpec` of an IntModel weight layer: its lane groups
    (:func:`hwquant.rtl.golden.lane_groups`), bias, proven accumulator width
    (:func:`accumulator_width`) and requantizer (none on the last layer)."""
    rows = node.weight.shape[0]
    bias = np.zeros(rows, np.int64) if node.bias is None else np.asarray(node.bias, np.int64)
    requant = None
    if node.mult is not None:
        requant = Requantizer(node.mult, node.shift, node.lo, node.hi)
    return ArraySpec(
        node.name,
        node.op,
        node.inputs[0],
        node.in_bits,
        node.in_signed,
        lane_groups(node),
        rows,
        bias,
        accumulator_width(node),
        node.worst_case_bits(),
        node.weight_bits,
        requant,
    )


def emit(node: WeightNode, inputs: list[FeatureMap], pe: int, simd: int, module: str) -> Block:
    """The block of ``node`` (module docstring) reading ``inputs[0]`` with ``pe`` x ``simd``."""
    geometry = kernel_geometry(node, inputs[0])
    return emit_array(node_spec(node), geometry, inputs[0], pe, simd, module)


def emit_array(
    spec: ArraySpec, geometry: Geometry, fmap: FeatureMap, pe: int, simd: int, module: str
) -> Block:
    """The block of the layer ``spec`` (module docstring) with ``geometry`` on input ``fmap``,
    ``pe`` x ``simd``."""
    (kh, kw), (sy, sx), (py, px), (ho, wo) = geometry
    c_in, a = fmap.channels, fmap.bits
    if fmap.bits != spec.in_bits or fmap.signed != spec.in_signed:
        raise UnsupportedLayerError(
            f"layer '{spec.name}' expects {spec.in_bits}-bit "
            f"{'signed' if spec.in_signed else 'unsigned'} codes but its input carries "
            f"{fmap.bits}-bit {'signed' if fmap.signed else 'unsigned'} ones. Fix: lower the "
            "model again (hwquant.lower) so that the layers agree."
        )
    if simd < 1 or c_in % simd:
        divisors = [d for d in range(1, c_in + 1) if c_in % d == 0]
        raise ConfigError(
            f"layer '{spec.name}': SIMD={simd} must divide its {c_in} input channels. Fix: use "
            f"one of {', '.join(map(str, divisors))}."
        )
    if pe < 1 or pe > spec.rows:
        raise ConfigError(
            f"layer '{spec.name}': PE={pe} must be in 1..{spec.rows} (its output "
            "channels). Fix: choose a PE in that range."
        )
    acc_bits = spec.acc_bits
    lanes = share_lanes(spec.name, spec.groups, spec.rows, pe)
    c_out = spec.rows
    nf = len(lanes[0][0].rows)
    cs = c_in // simd
    sf = kh * kw * cs
    steps = ho * wo * nf * sf
    if spec.activation is None:
        ob, out_signed = acc_bits, True
    else:
        ob, out_signed = spec.activation.out_format()
    out = FeatureMap(c_out, ho, wo, ob, out_signed)
    xb = lanes[0][0].product.x.width  # the products' activation operand
    if any(lane.product.x.width != xb for lane, _ in lanes) or xb < a or (xb > a and fmap.signed):
        raise UnsupportedLayerError(
            f"layer '{spec.name}': its products take {xb}-bit operands, its input carries "
            f"{a}-bit {'signed' if fmap.signed else 'unsigned'} codes. Fix: lower the model "
            "again so that the layers agree."
        )

    # -- weight ROM: one word per (nf, ky, kx, cs), lane p's SIMD fields at offset[p]
    widths = [lane.product.w.width for lane, _ in lanes]
    offsets = np.concatenate([[0], np.cumsum([w * simd for w in widths])]).astype(int)
    rom_bits = int(offsets[-1])
    depth_words = nf * sf
    rom = [0] * depth_words
    for p, (lane, words) in enumerate(lanes):
        stream = words.reshape(c_out, c_in, kh, kw).transpose(0, 2, 3, 1).reshape(c_out, -1)
        for f, row in enumerate(lane.rows):
            if row < 0:
                continue
            fields = stream[row].reshape(sf, simd)
            for k in range(sf):
                word = sum(int(v) << (widths[p] * s) for s, v in enumerate(fields[k]))
                rom[f * sf + k] |= word << int(offsets[p])
    rom_style = "logic" if depth_words <= LUTROM_DEPTH else "block"
    banks = math.ceil(depth_words / ROM_BANK_WORDS)
    banks = banks if banks > ROM_CASCADE_BANKS else 1
    if banks == 1:
        rom_files = {f"{module}_weights.mem": rom}
    else:
        rom_files = {
            f"{module}_weights_{b}.mem": rom[b * ROM_BANK_WORDS : (b + 1) * ROM_BANK_WORDS]
            for b in range(banks)
        }

    stages = Stages()
    lines = counter_lines(
        [("cs", cs), ("kx", kw), ("ky", kh), ("nf", nf), ("ox", wo), ("oy", ho)], "issue"
    )
    lines += [
        f"    reg [{index_bits(depth_words) - 1}:0] wa;",
        "    always @(posedge clk) begin",
        "        if (go) wa <= 0;",
        f"        else if (issue) wa <= (wa == {depth_words - 1}) ? 0 : wa + 1;",
        "    end",
    ]
    # the sliding-window unit in two stages: the coordinates, then the padding flag and the
    # pixel address from them (in one stage, the coordinates' adders and the address's
    # shift-and-add chain were the MNIST-5k LLSQ design's critical path, 98.66 MHz)
    lines += window_coordinates((sy, sx), (py, px))
    # stage 1: the coordinates registered, tags
    tags = {
        "v": ("issue", 1),
        "cs": ("cs", index_bits(cs)),
        "nf": ("nf", index_bits(nf)),
        "first": ("ky == 0 && kx == 0 && cs == 0", 1),
        "last": (f"ky == {kh - 1} && kx == {kw - 1} && cs == {cs - 1}", 1),
    }
    bank_low = ROM_BANK_WORDS.bit_length() - 1
    if banks > 1:  # the bank a weight word lies in: the high bits of its address
        tags["bank"] = (f"wa[{index_bits(depth_words) - 1}:{bank_low}]", index_bits(banks))
    lines += stages.advance(tags)
    lines += [
        "    reg signed [17:0] iy_1, ix_1;",
        f"    reg [{index_bits(depth_words) - 1}:0] wa_1, wa_2;",
        "    always @(posedge clk) begin",
        "        iy_1 <= iy;",
        "        ix_1 <= ix;",
        "        wa_1 <= wa;",
        "    end",
        *window_pixel(fmap, "iy_1", "ix_1"),
    ]
    # stage 2: pixel address registered (the input RAM's read address), padding flag
    lines += stages.advance({"pad": ("pad", 1)})
    lines += [
        f"    always @(posedge clk) rd_addr_0 <= pad ? 0 : pixel[{index_bits(fmap.pixels) - 1}:0];",
        "    always @(posedge clk) wa_2 <= wa_1;",
    ]
    # stage 3: input pixel word and weight word (one per bank)
    lines += stages.advance()
    suffixes = [""] if banks == 1 else [f"_{b}" for b in range(banks)]
    for suffix, (rom_file, words) in zip(suffixes, rom_files.items(), strict=True):
        address = "wa_2" if banks == 1 else f"wa_2[{index_bits(len(words)) - 1}:0]"
        lines += [
            f'    (* rom_style = "{rom_style}" *) '
            f"reg [{rom_bits - 1}:0] wrom{suffix} [0:{len(words) - 1}];",
            f'    initial $readmemh("{rom_file}", wrom{suffix});',
            f"    reg [{rom_bits - 1}:0] w_word{suffix};",
            f"    always @(posedge clk) w_word{suffix} <= wrom{suffix}[{address}];",
        ]
    # a wide chunk select (C/SIMD >= WIDE_CHUNKS) first registers the read word: the input
    # RAM's clock-to-output and a C/SIMD:1 multiplexer in one stage set Fmax otherwise; a
    # banked ROM registers every bank's word there, and the bank is selected after it
    registered = cs >= WIDE_CHUNKS or banks > 1
    word, weights = "rd_data_0", "w_word"
    if registered:
        lines += stages.advance()
        lines += [
            f"    reg [{fmap.word_bits - 1}:0] word_q;",
            *(f"    reg [{rom_bits - 1}:0] w_hold{suffix};" for suffix in suffixes),
            "    always @(posedge clk) begin",
            "        word_q <= rd_data_0;",
            *(f"        w_hold{suffix} <= w_word{suffix};" for suffix in suffixes),
            "    end",
        ]
        word, weights = "word_q", "w_hold"
    if banks > 1:
        lines += [
            f"    reg [{rom_bits - 1}:0] w_bank;",
            _case(f"bank_{stages.now}", "w_bank", [f"w_hold{suffix}" for suffix in suffixes]),
        ]
        weights = "w_bank"
    # stage 4 (5 after a registered read word): chunk select (padding: code 0), weights
    t = stages.now
    lines += stages.advance()
    chunk = f"{word}[cs_{t} * {simd * a} +: {simd * a}]"
    if xb > a or spec.pad_code:  # each field widened to the operand, padding its own code
        # the chunk goes through a wire first: a part-select of a part-select is not
        # Verilog-2005, and Yosys 0.70 drops its variable base (a[s*8 +: 8][4 +: 4] -> a[7:4])
        lines.append(f"    wire [{simd * a - 1}:0] chunk_{t} = {chunk};")
        chunk = f"chunk_{t}"
        fields = ", ".join(
            f"{{{xb - a}'d0, {chunk}[{s * a} +: {a}]}}" if xb > a else f"{chunk}[{s * a} +: {a}]"
            for s in reversed(range(simd))
        )
        pad_word = "{" + ", ".join([f"{xb}'d{spec.pad_code}"] * simd) + "}"
        x_next = f"pad_{t} ? {pad_word} : {{{fields}}}"
    else:
        x_next = f"pad_{t} ? {simd * a}'d0 : {chunk}"
    lines += [
        f"    reg [{simd * xb - 1}:0] x_q;",
        f"    reg [{rom_bits - 1}:0] w_q;",
        "    always @(posedge clk) begin",
        f"        x_q <= {x_next};",
        f"        w_q <= {weights};",
        "    end",
    ]
    # many DSP lanes: a copy of x_q per lane (kept apart: Yosys merges equal registers)
    dsp_lanes = sum(lane.product.params.get("style") == "dsp" for lane, _ in lanes)
    copied = dsp_lanes > OPERAND_COPY_LANES
    x_of, w_all = ["x_q"] * len(lanes), "w_q"
    if copied:
        lines += stages.advance()
        lines += [f"    reg [{rom_bits - 1}:0] w_d;", "    always @(posedge clk) w_d <= w_q;"]
        for p in range(len(lanes)):
            lines += [
                f"    reg [{simd * xb - 1}:0] x_l{p};",
                f"    (* keep *) always @(posedge clk) x_l{p} <= x_q;",
            ]
        x_of, w_all = [f"x_l{p}" for p in range(len(lanes))], "w_d"
    # registered products
    lines += stages.advance()
    prod_modules: dict[str, Product] = {}
    tree: list[list[tuple[str, int]]] = []
    for p, (lane, _) in enumerate(lanes):
        product = lane.product
        pname = f"{module}_product_{product.kind}_{product.tag}"
        prod_modules[pname] = product
        wb = widths[p]
        level = []
        for s in range(simd):
            lines += [
                f"    wire signed [{product.bits - 1}:0] pw_{p}_{s};",
                f"    {pname} mul_{p}_{s} (.x({x_of[p]}[{s * xb} +: {xb}]), "
                f".w({w_all}[{int(offsets[p]) + s * wb} +: {wb}]), .p(pw_{p}_{s}));",
                f"    reg signed [{product.bits - 1}:0] pr_{p}_{s};",
                f"    always @(posedge clk) pr_{p}_{s} <= pw_{p}_{s};",
            ]
            level.append((f"pr_{p}_{s}", product.bits))
        tree.append(level)
    # a product read from a ROM image (a table lookup) is a block RAM whose read port absorbs
    # the `pr` register: its clock-to-output then feeds the adder tree (or the accumulator's
    # carry chain) in one stage, so its output is registered once more in the fabric
    rom_read = any(lane.product.files for lane, _ in lanes)
    if rom_read:
        lines += stages.advance()
        for p, level in enumerate(tree):
            for s, (name, bits) in enumerate(level):
                lines += [
                    f"    reg signed [{bits - 1}:0] pq_{p}_{s};",
                    f"    always @(posedge clk) pq_{p}_{s} <= {name};",
                ]
            tree[p] = [(f"pq_{p}_{s}", bits) for s, (_, bits) in enumerate(level)]
    # adder tree: one registered level per halving
    levels = max(0, math.ceil(math.log2(simd)))
    for j in range(1, levels + 1):
        lines += stages.advance()
        for p in range(len(lanes)):
            nxt = []
            prev = tree[p]
            for i in range(0, len(prev), 2):
                pair = prev[i : i + 2]
                width = min(max(w for _, w in pair) + (len(pair) > 1), acc_bits)
                name = f"t{j}_{p}_{i // 2}"
                expr = " + ".join(n for n, _ in pair)
                lines += [
                    f"    reg signed [{width - 1}:0] {name};",
                    f"    always @(posedge clk) {name} <= {expr};",
                ]
                nxt.append((name, width))
            tree[p] = nxt
    # accumulator stage: bias on a fold's first item; result registered on its last
    t = stages.now
    lines += stages.advance({"res_v": (f"v_{t} && last_{t}", 1), "res_nf": (f"nf_{t}", 0)})
    for p, (lane, _) in enumerate(lanes):
        bias = [0 if r < 0 else int(spec.bias[r]) for r in lane.rows]
        lines += [
            f"    reg signed [{acc_bits - 1}:0] bias_{p};",
            _case(f"nf_{t}", f"bias_{p}", [literal(b, acc_bits) for b in bias]),
            f"    reg signed [{acc_bits - 1}:0] sum_{p}, res_{p};",
            f"    wire signed [{acc_bits - 1}:0] next_{p} = "
            f"(first_{t} ? bias_{p} : sum_{p}) + {tree[p][0][0]};",
            "    always @(posedge clk) begin",
            f"        if (v_{t}) sum_{p} <= next_{p};",
            f"        if (v_{t} && last_{t}) res_{p} <= next_{p};",
            "    end",
        ]
    result = [f"res_{p}" for p in range(len(lanes))]
    stage_info: dict = {"requantizer": None}
    if spec.activation is not None:
        lines += spec.activation.lines(lanes, stages, acc_bits)
        result = [f"code_{p}" for p in range(len(lanes))]
        stage_info = spec.activation.record(lanes, acc_bits)
    multiplies = (stage_info.get("requantizer") or {}).get("multiplies", 0) > 0
    # assembly: each fold's lane codes go straight into their fields of `wr_data`, which is
    # written (wr_en) one cycle after the last fold's: no second copy of the word
    t = stages.now
    valid, fold = f"res_v_{t}", f"res_nf_{t}"
    lines += [
        "    always @(posedge clk) begin",
        "        if (go) wr_addr <= 0;",
        "        else if (wr_en) wr_addr <= wr_addr + 1;",
        "        if (rst) wr_en <= 0;",
        f"        else wr_en <= {valid} && {fold} == {nf - 1};",
        f"        if ({valid}) begin",
        f"            case ({fold})",
    ]
    for f in range(nf):
        sets = " ".join(
            f"wr_data[{lane.rows[f] * ob} +: {ob}] <= {result[p]}[{ob - 1}:0];"
            for p, (lane, _) in enumerate(lanes)
            if lane.rows[f] >= 0
        )
        lines.append(f"                {f}: begin {sets} end")
    lines += ["                default: ;", "            endcase", "        end", "    end"]
    depth = stages.now + 1  # wr_en is high one cycle after the last stage
    body = control_lines(steps, depth) + lines
    ports = block_ports([fmap], out)
    products = "".join(pr.module(name) + "\n" for name, pr in prod_modules.items())
    verilog = products + module_text(module, ports, body)
    info = {
        "pe": pe,
        "simd": simd,
        "neuron_folds": nf,
        "synapse_folds": sf,
        "kernel": [kh, kw],
        "stride": [sy, sx],
        "padding": [py, px],
        "acc_bits": acc_bits,
        "acc_bits_worst_case": spec.acc_bits_worst_case,
        "weight_bits": spec.weight_bits,
        "lanes": [lane.product.kind for lane, _ in lanes],
        "product_bits": [lane.product.bits for lane, _ in lanes],
        "weight_fields": widths,
        "in_bits": a,
        "in_channels": c_in,
        "word_registered": registered,
        "product_registered": rom_read,
        "operand_copies": len(lanes) if copied else 1,
        "products": len(lanes) * simd,
        "weight_rom": {
            "words": depth_words,
            "width": rom_bits,
            "style": rom_style,
            "banks": banks,
            "bank_words": ROM_BANK_WORDS if banks > 1 else depth_words,
        },
        **stage_info,
        **spec.info,
    }
    return Block(
        spec.name,
        spec.op,
        module,
        verilog,
        [spec.source],
        out,
        steps,
        depth,
        {name: mem_text(words, rom_bits) for name, words in rom_files.items()}
        | {name: text for pr in prod_modules.values() for name, text in pr.files.items()},
        info,
        {multiplier.FILE: multiplier.module_text()} if multiplies else {},
    )


def _case(select: str, target: str, arms: list[str]) -> str:
    return case_block(select, target, arms).rstrip("\n")


class Stages:
    """Pipeline bookkeeping: stage ``now`` is the register stage whose values the next lines
    read; :meth:`advance` moves one stage on, delaying every tag (``name_<stage>``)."""

    def __init__(self) -> None:
        self.now = 0
        self.tags: dict[str, int] = {}

    def advance(self, new: dict[str, tuple[str, int]] | None = None) -> list[str]:
        """Register every tag one stage further; ``new`` adds tags ``name: (source, width)``
        (a width of 0 takes the width of the source tag ``<tag>_<now>``)."""
        lines = []
        nxt = self.now + 1
        for name, width in self.tags.items():
            lines += self._reg(f"{name}_{nxt}", f"{name}_{self.now}", width, name)
        for name, (source, width) in (new or {}).items():
            if width == 0:
                width = self.tags[source.rsplit("_", 1)[0]]
            self.tags[name] = width
            lines += self._reg(f"{name}_{nxt}", source, width, name)
        self.now = nxt
        return lines

    @staticmethod
    def _reg(name: str, source: str, width: int, tag: str) -> list[str]:
        vec = f"[{width - 1}:0] " if width > 1 else ""
        if tag in ("v", "res_v"):  # valid bits are reset: no write before the first image
            return [
                f"    reg {name};",
                f"    always @(posedge clk) if (rst) {name} <= 0; else {name} <= {source};",
            ]
        return [f"    reg {vec}{name};", f"    always @(posedge clk) {name} <= {source};"]
