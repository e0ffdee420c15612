"""Elementwise activations as lookup tables over the input codes: ``code = T[c − lo_in]``.

An activation ``f`` between two quantizers reads ``2^b`` possible input codes, so its integer
form is the table of :class:`~hwquant.qat.nn.qactivation.QActivation`::

    T[c − lo_in] = clamp(round_half_up(f(α_in · c) / α_out), lo, hi)

(``f``: sigmoid, hardsigmoid, hardswish, SiLU, tanh, leaky ReLU, hardtanh/ReLU6, GELU).

* IR node: :class:`LutNode` (declared here; the registry adds it to the IntModel file format);
* QAT: :func:`fuse` recognises every such activation that no layer fused (modules, functions,
  methods), :func:`build` makes its :class:`~hwquant.qat.nn.qactivation.QActivation`;
* lowering: a QActivation becomes a LutNode;
* engine: an index into the table (exact: integers only);
* export: the table as a sum of steps in standard ONNX (:func:`export`), exact in float32;
* hardware: :func:`block`, one pixel per cycle, the table as a ROM (a Verilog ``case``) read
  by every channel.

The table scheme has its own form: an index table between two codebooks
(:class:`hwquant.schemes.tables.layers.TableActivation`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
from torch import fx, nn

from hwquant.core.errors import HwquantError, UnsupportedLayerError
from hwquant.core.intmath import code_format
from hwquant.engine.integer import RunContext
from hwquant.hw.folding import Fold
from hwquant.ir.intmodel import IntNode
from hwquant.ir.ops import OpHandler, register_op
from hwquant.qat.fusion import FusedSpec, Fusion, LayerContext
from hwquant.qat.lower import out_scale
from hwquant.qat.nn.qactivation import QActivation, elementwise_of
from hwquant.rtl.network.stream import Block, FeatureMap, pixelwise_block

if TYPE_CHECKING:  # the export needs the optional onnx package: imported on use
    from hwquant.export.graph import Graph, QuantStyle

MAX_BLOCK_BITS = 10
"""Widest input code the hardware block tabulates (a ROM of ``2^bits`` words)."""
MAX_EXPORT_STEPS = 4096
"""Most steps (table entries that differ from the one before) the exported sum may hold: each
is one comparison per element."""


@dataclass
class LutNode(IntNode):
    """An elementwise lookup table: ``code = table[c − in_lo]``, then in ``[lo, hi]``."""

    table: np.ndarray = field(repr=False)  # int64 [2^in_bits]: output code of input in_lo + i
    function: str = ""  # what the table computes, e.g. "sigmoid()" (documentation)
    in_lo: int = 0
    lo: int = 0
    hi: int = 0
    out_scale: float = 1.0
    op: ClassVar[str] = "lut"

    def __post_init__(self) -> None:
        """Refuse a table that is not a non-empty 1-D integer array inside ``[lo, hi]`` (a file
        that lies: :func:`hwquant.load` reports it as a malformed header)."""
        t = self.table
        if not (isinstance(t, np.ndarray) and t.ndim == 1 and t.size and t.dtype.kind in "iu"):
            raise ValueError(f"the table of '{self.name}' is not a 1-D integer array")
        if t.min() < self.lo or t.max() > self.hi:
            raise ValueError(
                f"the table of '{self.name}' spans [{t.min()}, {t.max()}], outside "
                f"[{self.lo}, {self.hi}]"
            )


def fuse(fusion: Fusion, node: fx.Node, mod: nn.Module | None) -> tuple[fx.Node, FusedSpec] | None:
    """An activation :func:`~hwquant.qat.nn.qactivation.elementwise_of` recognises (a function
    or method becomes a module call ``<kind>_<k>`` of its own)."""
    function = elementwise_of(node, mod)
    if function is None:
        return None
    new = node if mod is not None else fusion.new_module_node(node, function.kind, node.args[:1])
    fusion.collapse(node, node, new)
    return new, FusedSpec("lut", options={"function": function})


def build(spec: FusedSpec, layer: LayerContext) -> QActivation:
    """The QAT activation (its output unsigned when ``f`` is never negative: :func:`signed`)."""
    return QActivation(spec.options["function"], layer.out_quant(spec))


def signed(spec: FusedSpec, input_signed: Callable[[int], bool]) -> bool:
    """Signed unless ``f`` is never negative (a sigmoid, a ReLU-like clip)."""
    return not spec.options["function"].nonnegative


def lower(node: fx.Node, mod: nn.Module | None, inputs: list[str], name: str) -> LutNode | None:
    """The LutNode of a QAT activation: its table, as the QAT model's eval forward reads it."""
    if not isinstance(mod, QActivation):
        return None
    lo, hi = mod.out_range()
    table = mod.table().numpy()
    in_lo = mod.input_quants[0].qmin
    return LutNode(mod.qname, inputs, table, str(mod.function), in_lo, lo, hi, out_scale(mod))


def execute(node: LutNode, inputs: list[torch.Tensor], context: RunContext) -> torch.Tensor:
    """``table[c − in_lo]`` for every code ``c``."""
    (x,) = inputs
    index = x.to(torch.int64) - node.in_lo
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= node.table.size):
        raise HwquantError(
            f"layer '{node.name}' holds a table for codes {node.in_lo}.."
            f"{node.in_lo + node.table.size - 1}, got codes {int(x.min())}..{int(x.max())}. "
            "Fix: run the IntModel on codes from quantize_input (its nodes' ranges are proved)."
        )
    return torch.from_numpy(node.table).to(x.device)[index].to(x.dtype)


def export(g: Graph, node: LutNode, shapes: dict[str, tuple[int, ...]], style: QuantStyle) -> None:
    """The table as a sum of steps, in standard ONNX ops that every consumer runs exactly.

    With ``d_j = T[j] − T[j−1]`` and ``θ_j = in_lo + j − 1/2``, for every input code ``c``::

        T[c − in_lo] = T[0] + Σ_j d_j · [c > θ_j]
                     = (T[0] + Σ_j d_j/2) + Σ_j (d_j/2) · sign(c − θ_j)

    (``c − θ_j`` is never 0, so ``sign`` is ±1). The graph: ``Unsqueeze`` the codes to
    ``[..., 1]``, ``Sub`` the K thresholds of the non-zero ``d_j`` (``[..., K]``), ``Sign``,
    ``MatMul`` by the ``d_j/2`` (``[K, 1]``), ``Add`` the constant, ``Squeeze``, then the form's
    saturation (its type). Every value is a multiple of 1/2 below ``Σ|d_j|/2 + |T[0]|``,
    which is checked to be below 2^23, so each float32 step is exact in any summation order.
    The table need not be monotone (SiLU, hardswish and GELU are not); a ``Gather`` over
    the table would need a ``Cast`` of the codes to int64, and FINN's ``MultiThreshold`` takes
    monotone tables only.
    """
    from hwquant.export.graph import activation_shape, refuse

    table = node.table.astype(np.int64)
    steps = np.flatnonzero(np.diff(table)) + 1  # j with d_j != 0
    deltas = (table[steps] - table[steps - 1]).astype(np.float64)
    constant = table[0] + deltas.sum() / 2
    peak = abs(table[0]) + np.abs(deltas).sum()
    problems = []
    if steps.size > MAX_EXPORT_STEPS:
        problems.append(f"its table has {steps.size} steps, above {MAX_EXPORT_STEPS}")
    if peak >= 2**23:
        problems.append(f"its step sum reaches {peak}, beyond float32's exact 2^23 for halves")
    refuse(node.name, problems, "lower the activation's input bits")
    shape = activation_shape(shapes[node.name])
    bits, signed = code_format(node.lo, node.hi)
    x, name = node.inputs[0], node.name
    if steps.size == 0:  # a constant table: 0·x + T[0] keeps the shape
        zero = g.op("Mul", [x, g.f32(f"{name}/zero", 0.0)], f"{name}/zeros", shape)
        flat = g.op("Add", [zero, g.f32(f"{name}/constant", float(table[0]))], f"{name}/sum", shape)
        style.saturate(g, flat, shape, bits, signed, name)
        return
    last = g.const(f"{name}/last_axis", np.array([-1], np.int64))
    wide = g.op("Unsqueeze", [x, last], f"{name}/codes", (*shape, 1))
    thresholds = g.f32(f"{name}/thresholds", node.in_lo + steps - 0.5)
    diff = g.op("Sub", [wide, thresholds], f"{name}/diff", (*shape, steps.size))
    sign = g.op("Sign", [diff], f"{name}/sign", (*shape, steps.size))
    halves = g.f32(f"{name}/half_steps", (deltas / 2).reshape(-1, 1))
    total = g.op("MatMul", [sign, halves], f"{name}/steps", (*shape, 1))
    summed = g.op("Add", [total, g.f32(f"{name}/constant", constant)], f"{name}/sum", (*shape, 1))
    flat = g.op("Squeeze", [summed, last], f"{name}/table", shape)
    style.saturate(g, flat, shape, bits, signed, name)


def block(node: LutNode, inputs: list[FeatureMap], fold: Fold, module: str) -> Block:
    """The table block: per pixel, each channel's code looked up in the table.

    The table is one Verilog function, a ``case`` over the input word's raw bits (a ROM of
    ``2^bits`` words for the codes the input map can hold), called once per channel.
    Pipeline (``depth = 3``): address → RAM read → the looked-up word written. The output map
    has the format of ``[lo, hi]``.
    """
    (fmap,) = inputs
    bits = fmap.bits
    if bits > MAX_BLOCK_BITS:
        raise UnsupportedLayerError(
            f"activation '{node.name}' reads {bits}-bit codes: its ROM would hold 2^{bits} "
            f"words, the block builds tables of up to {MAX_BLOCK_BITS}-bit codes. Fix: lower "
            "the activation bits of the layer before it."
        )
    out_bits, out_signed = code_format(node.lo, node.hi)
    out = FeatureMap(fmap.channels, fmap.height, fmap.width, out_bits, out_signed)
    arms = []
    for raw in range(2**bits):  # the code a raw word holds, and its table entry
        code = raw - 2**bits if fmap.signed and raw >= 2 ** (bits - 1) else raw
        index = min(max(code - node.in_lo, 0), node.table.size - 1)  # codes outside: unused
        value = int(node.table[index]) % 2**out_bits  # the output word's raw bits
        arms.append(f"            {bits}'d{raw}: rom = {out_bits}'d{value};")
    rom = [
        f"    function [{out_bits - 1}:0] rom(input [{bits - 1}:0] word);",
        "        case (word)",
        *arms,
        "            default: rom = 0;",
        "        endcase",
        "    endfunction",
    ]
    verilog, steps, depth = pixelwise_block(module, fmap, out, lambda _, w: f"rom({w})", rom)
    return Block(node.name, node.op, module, verilog, list(node.inputs), out, steps, depth, {}, {})


register_op(
    OpHandler(
        "lut",
        LutNode,
        lower=lower,
        execute=execute,
        export=export,
        block=block,
        fuse=fuse,
        build=build,
        signed=signed,
    )
)
