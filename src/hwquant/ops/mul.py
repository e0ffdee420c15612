"""The elementwise product of two code tensors (squeeze-excitation ``x * gate``), requantized.

``code = clamp((a·b·M + 2^(s−1)) >> s, lo, hi)`` with ``M/2^s ≈ α_a·α_b / α_out``
(:class:`~hwquant.qat.nn.qmul.QMul`); ``b`` broadcasts against ``a`` (a gate ``[N, C, 1, 1]``
scales each channel of ``x``).

* IR node: :class:`MulNode` (declared here; the registry adds it to the IntModel file format);
* QAT: :func:`fuse` makes every product of two tensors a module call of its own, :func:`build`
  a :class:`~hwquant.qat.nn.qmul.QMul`;
* lowering: a QMul becomes a MulNode;
* engine: the code product in int64, then the requantization (exact);
* export: ONNX ``Mul`` of the codes (exact: the product's bound is checked below 2^24), then
  the requantization plan of :func:`hwquant.export.graph.requantize_codes`;
* hardware: :func:`block`, one pixel of ``a`` per cycle, each channel's code times the gate's
  code, then the requantization; its cost :func:`cost`. The table scheme looks products up in a
  table of its own (``schemes/tables``), as it does residual adds.

**The gate in hardware.** In a squeeze-excitation block ``a`` feeds both the product and the
global pool whose 1x1 map becomes the gate, so the gate of an image exists only after that
image has gone through the pool and the gate's layers, while ``a`` streams on. The network
generator gives the edge ``a → mul`` ``2·L`` image banks, ``L`` the edges of the longest path
from ``a``'s producer to the product (:func:`hwquant.rtl.network.graph.edge_banks`: the
residual add's rule), so ``a``'s producer never waits for the gate; that edge is the buffer,
``2L·H·W`` words of ``C·bits`` (block RAM on ECP5 when :func:`hwquant.rtl.network.estimate.memory`
finds it cheaper than LUTRAM, as for every edge). The gate's own edge is two banks of one word
(LUTRAM or flip-flops). The product starts when both are committed, i.e. ``Σ cycles`` of the
gate's path after ``a``, and reads the gate's one word with every pixel of ``a`` (address 0:
no extra register, the edge's read port is otherwise idle).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
from torch import fx, nn

from hwquant.core.errors import UnsupportedLayerError
from hwquant.core.intmath import code_format, requantize
from hwquant.engine.integer import RunContext
from hwquant.hw.folding import Fold
from hwquant.ir.intmodel import IntNode
from hwquant.ir.ops import OpHandler, register_op
from hwquant.qat.fusion import FusedSpec, Fusion, LayerContext
from hwquant.qat.lower import out_scale
from hwquant.qat.nn.qmul import QMul, is_product
from hwquant.rtl.network import estimate
from hwquant.rtl.network.stream import (
    Block,
    FeatureMap,
    block_ports,
    control_lines,
    counter_lines,
    module_text,
    write_address_lines,
)
from hwquant.rtl.requantizer import clamp_statement
from hwquant.rtl.resources import FAMILIES
from hwquant.rtl.unit import index_bits, literal

if TYPE_CHECKING:  # the export needs the optional onnx package: imported on use
    from hwquant.export.graph import Graph, QuantStyle


@dataclass
class MulNode(IntNode):
    """Elementwise product of two code tensors (the second broadcast), then requantization."""

    mult: int = 1
    shift: int = 0
    lo: int = 0
    hi: int = 0
    out_scale: float = 1.0
    op: ClassVar[str] = "mul"


def fuse(fusion: Fusion, node: fx.Node, mod: nn.Module | None) -> tuple[fx.Node, FusedSpec] | None:
    """A product of two tensors, as a module call ``mul_<k>`` of its own."""
    if not is_product(node):
        return None
    new = fusion.new_module_node(node, "mul", tuple(node.args))
    fusion.collapse(node, node, new)
    return new, FusedSpec("mul")


def build(spec: FusedSpec, layer: LayerContext) -> QMul:
    """The QAT product (signed when either input is: :func:`signed`)."""
    return QMul(layer.out_quant(spec), layer.recipe.requant_bits)


def signed(spec: FusedSpec, input_signed: Callable[[int], bool]) -> bool:
    """A product is signed when either factor is."""
    return input_signed(0) or input_signed(1)


def lower(node: fx.Node, mod: nn.Module | None, inputs: list[str], name: str) -> MulNode | None:
    """The MulNode of a QAT product."""
    if not isinstance(mod, QMul):
        return None
    r = mod.integer_params()
    return MulNode(mod.qname, inputs, int(r.mult[0]), int(r.shift[0]), r.lo, r.hi, out_scale(mod))


def execute(node: MulNode, inputs: list[torch.Tensor], context: RunContext) -> torch.Tensor:
    """``clamp((a·b·M + 2^(s−1)) >> s, lo, hi)`` in int64."""
    a, b = (t.to(torch.int64) for t in inputs)
    one = torch.ones(1, dtype=torch.int64, device=a.device)
    out = requantize(a * b, one * node.mult, one * node.shift, node.lo, node.hi)
    return out.to(inputs[0].dtype)


def export(g: Graph, node: MulNode, shapes: dict[str, tuple[int, ...]], style: QuantStyle) -> None:
    """``Mul`` of the two code tensors, then the requantization plan."""
    from hwquant.export.graph import activation_shape, refuse, requantize_codes
    from hwquant.export.requant import FLOAT32_EXACT

    a, b = node.inputs
    peak = g.peaks[a] * g.peaks[b]
    fix = "lower the activation bits of the product's inputs"
    if peak >= FLOAT32_EXACT:
        refuse(node.name, [f"its code products can reach {peak}, beyond float32's 2^24"], fix)
    shape = activation_shape(shapes[node.name])
    product = g.op("Mul", [a, b], f"{node.name}/product", shape)
    terms, mults = [(product, peak)], [np.array([node.mult])]
    requantize_codes(g, node.name, terms, mults, node.shift, node.lo, node.hi, shape, style, fix)


def _as_signed(slice_: str, fmap: FeatureMap) -> str:
    """A code field of ``fmap`` as a signed Verilog value (an unsigned code zero-extended)."""
    return f"$signed({slice_})" if fmap.signed else f"$signed({{1'b0, {slice_}}})"


def widths(node: MulNode, a: FeatureMap, b: FeatureMap) -> dict[str, int]:
    """Register widths of the product block: the code product ``a·b`` (``product``), the
    multiplier literal (``mult``) and the scaled value with its rounding term (``wide``)."""
    product = a.bits + (not a.signed) + b.bits + (not b.signed)
    mult = node.mult.bit_length() + 1
    return {"product": product, "mult": mult, "wide": product + mult + 1}


def block(node: MulNode, inputs: list[FeatureMap], fold: Fold, module: str) -> Block:
    """The product block: per pixel of ``a`` and channel ``c``,
    ``clamp((a_c·b_c·M + 2^(s−1)) >>> s, lo, hi)``, ``b`` read at pixel 0 when it is one pixel
    (the gate) or at ``a``'s pixel when it has ``a``'s size, at channel 0 when it has one
    channel or at ``c`` (PyTorch's broadcast of the second operand).

    Pipeline (``depth = 6``): address → both RAM reads → both read words registered → the code
    product ``a·b`` (registered) → times ``M`` (registered) → rounding shift and clamp,
    written. The two products are separate stages so that each maps to one hardware multiplier
    with its register rather than a cascade in one cycle.

    Raises:
        UnsupportedLayerError: ``b`` does not broadcast against ``a`` in those forms.
    """
    a, b = inputs
    if (b.height, b.width) not in {(1, 1), (a.height, a.width)} or b.channels not in {
        1,
        a.channels,
    }:
        raise UnsupportedLayerError(
            f"product '{node.name}' multiplies a {a.shape()} map by a {b.shape()} one; the "
            "network generator builds a product whose second operand has the first's shape, or "
            "one pixel (a per-channel gate), or one channel. Fix: write the product as x * gate "
            "with gate of shape [N, C, 1, 1] or [N, C, H, W], or use the integer engine or the "
            "exported graph for this model."
        )
    out_bits, out_signed = code_format(node.lo, node.hi)
    out = FeatureMap(a.channels, a.height, a.width, out_bits, out_signed)
    steps, depth = a.pixels, 6
    w = widths(node, a, b)
    half = (1 << node.shift) >> 1
    aw = index_bits(a.pixels)
    b_addr = "0" if b.pixels == 1 else f"px[{aw - 1}:0]"
    lines = control_lines(steps, depth) + counter_lines([("px", a.pixels)], "issue")
    lines += [
        "    reg v_1, v_2, v_3, v_4, v_5;",
        f"    reg [{a.word_bits - 1}:0] word_0;",
        f"    reg [{b.word_bits - 1}:0] word_1;",
        "    always @(posedge clk) begin",
        "        if (rst) begin v_1 <= 0; v_2 <= 0; v_3 <= 0; v_4 <= 0; v_5 <= 0; wr_en <= 0; end",
        "        else begin",
        "            v_1 <= issue; v_2 <= v_1; v_3 <= v_2; v_4 <= v_3; v_5 <= v_4; wr_en <= v_5;",
        "        end",
        f"        rd_addr_0 <= px[{aw - 1}:0]; rd_addr_1 <= {b_addr};",
        "        word_0 <= rd_data_0; word_1 <= rd_data_1;",
        "    end",
        *write_address_lines(),
    ]
    for c in range(a.channels):
        cb = c if b.channels > 1 else 0
        x = _as_signed(f"word_0[{c * a.bits} +: {a.bits}]", a)
        g = _as_signed(f"word_1[{cb * b.bits} +: {b.bits}]", b)
        lines += [
            f"    reg signed [{w['product'] - 1}:0] prod_{c};",
            f"    reg signed [{w['wide'] - 1}:0] scaled_{c};",
            f"    wire signed [{w['wide'] - 1}:0] shifted_{c} = (scaled_{c} + "
            f"{literal(half, w['wide'])}) >>> {node.shift};",
            "    always @(posedge clk) begin",
            f"        prod_{c} <= {x} * {g};",
            f"        scaled_{c} <= prod_{c} * {literal(node.mult, w['mult'])};",
            "        "
            + clamp_statement(
                f"wr_data[{c * out_bits} +: {out_bits}]",
                f"shifted_{c}",
                node.lo,
                node.hi,
                w["wide"],
                out_bits,
            ).rstrip(),
            "    end",
        ]
    verilog = module_text(module, block_ports([a, b], out), lines)
    info = {
        "mult": node.mult,
        "shift": node.shift,
        "broadcast": [b.channels, b.height, b.width],
        "cost": {f: asdict(cost(node, a, b, f)) for f in FAMILIES},
    }
    return Block(
        node.name, node.op, module, verilog, list(node.inputs), out, steps, depth, {}, info
    )


def cost(node: MulNode, a: FeatureMap, b: FeatureMap, family: str) -> estimate.Cost:
    """The product block's estimated cost on ``family``, in the units of
    :mod:`hwquant.rtl.network.estimate`: per channel the code product and the times-``M``
    product (hardware multipliers as Yosys's ``mul2dsp`` splits them), ``out_bits + 3`` LUT4s
    for the rounding, overflow test and clamp (their operands are constants and the bits below
    the shift are dropped, so they cost far less than a requantizer lane's 2.5 per wide bit),
    and flip-flops for the scaled register less its two top bits and the written word (the
    synthesized flip-flops match these alone: the read words and the code product do not
    appear as fabric flip-flops, absorbed by the counts into the multipliers' registers); the
    pixel counter. Fitted [D] to two ECP5 syntheses of the block alone (YoWASP Yosys 0.70,
    ``synth_ecp5``), both 4-bit codes times a 4-bit gate, ``wide = 28``: 16 channels into
    8-bit codes, 196 LUT4 / 560 FF / 32 MULT18X18D against 194 / 560 / 32 estimated
    (``benchmarks/results/network_blocks.json``), and the test's 8 channels into 4-bit codes,
    92 / 240 / 16 against 74 / 256 / 16 (synthesized by hand, not in the results JSON)."""
    w = widths(node, a, b)
    out_bits = code_format(node.lo, node.hi)[0]
    dsps = estimate.multipliers(a.bits + (not a.signed), b.bits + (not b.signed), family)
    dsps += estimate.multipliers(w["product"], w["mult"], family)
    return estimate.Cost(
        luts=estimate.LUTS_PER_COUNTER_BIT * estimate.bits(a.pixels) + a.channels * (out_bits + 3),
        dsps=a.channels * dsps,
        ffs=a.channels * (w["wide"] - 2 + out_bits) + 2 * index_bits(a.pixels) + 4,
    )


register_op(
    OpHandler(
        "mul",
        MulNode,
        lower=lower,
        execute=execute,
        export=export,
        block=block,
        fuse=fuse,
        build=build,
        signed=signed,
    )
)
