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
* hardware: none yet (the accelerator refuses the op, naming the ops that have a block); the
  table scheme refuses products in ``prepare``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
from torch import fx, nn

from hwquant.core.intmath import requantize
from hwquant.engine.integer import RunContext
from hwquant.ir.intmodel import IntNode
from hwquant.ir.ops import OpHandler, register_op
from hwquant.qat.fusion import FusedSpec, Fusion, LayerContext
from hwquant.qat.lower import out_scale
from hwquant.qat.nn.qmul import QMul, is_product

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


register_op(
    OpHandler(
        "mul",
        MulNode,
        lower=lower,
        execute=execute,
        export=export,
        fuse=fuse,
        build=build,
        signed=signed,
    )
)
