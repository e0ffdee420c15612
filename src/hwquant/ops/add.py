"""The residual add: ``code = clamp((a·M_a + b·M_b + 2^(s−1)) >> s, lo, hi)``.

Both inputs are codes with their own scales; the integer multipliers ``M_a``, ``M_b`` and the
shift ``s`` align them to the output scale (:class:`~hwquant.qat.nn.QAdd`).

* IR node: :class:`~hwquant.ir.intmodel.AddNode`;
* QAT: ``prepare`` fuses ``a + b`` (``operator.add``/``iadd``, ``torch.add`` with alpha 1, the
  tensor methods) and a ReLU/ReLU6 after it into a :class:`~hwquant.qat.nn.QAdd`;
* lowering: a QAdd becomes an AddNode;
* engine: the formula above (in float64 where every step is provably exact);
* export: the requantization plan of :func:`hwquant.export.graph.requantize_codes` on the two
  code tensors;
* hardware: the two-input block of :mod:`hwquant.rtl.network.add`.
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import fx, nn

from hwquant.core.intmath import requantize
from hwquant.engine.integer import RunContext
from hwquant.hw.folding import Fold
from hwquant.ir.intmodel import AddNode
from hwquant.ir.ops import OpHandler, register_op
from hwquant.qat.fusion import FusedSpec, Fusion, LayerContext
from hwquant.qat.lower import out_scale
from hwquant.qat.nn import QAdd
from hwquant.qat.options import check_add
from hwquant.rtl.network import add as add_block
from hwquant.rtl.network.stream import Block, FeatureMap

if TYPE_CHECKING:  # the export needs the optional onnx package: imported on use
    from hwquant.export.graph import Graph, QuantStyle


FUNCTIONS = (operator.add, torch.add, operator.iadd)
"""The functions of a residual add (and the tensor methods ``add``, ``__add__``)."""


def is_add(node: fx.Node) -> bool:
    """Whether ``node`` adds two tensors."""
    is_call = (node.op == "call_function" and node.target in FUNCTIONS) or (
        node.op == "call_method" and node.target in ("add", "__add__")
    )
    return is_call and len(node.args) == 2 and all(isinstance(a, fx.Node) for a in node.args)


def fuse(fusion: Fusion, node: fx.Node, mod: nn.Module | None) -> tuple[fx.Node, FusedSpec] | None:
    """A residual add and the ReLU/ReLU6 after it, as a call of a new layer ``add_<k>``."""
    if not is_add(node):
        return None
    check_add(node)
    tail, _, act = fusion.absorb(node, None)
    new = fusion.new_module_node(node, "add", tuple(node.args[:2]))
    fusion.collapse(node, tail, new)
    return new, FusedSpec("add", act=act)


def build(spec: FusedSpec, layer: LayerContext) -> QAdd:
    """The QAT add; its output is unsigned after a ReLU."""
    return QAdd(layer.out_quant(spec), spec.act, layer.recipe.requant_bits)


def lower(node: fx.Node, mod: nn.Module | None, inputs: list[str], name: str) -> AddNode | None:
    """The AddNode of a QAT residual add."""
    if not isinstance(mod, QAdd):
        return None
    p = mod.integer_params()
    return AddNode(mod.qname, inputs, p.mults, p.shift, p.lo, p.hi, out_scale(mod))


def execute(node: AddNode, inputs: list[torch.Tensor], context: RunContext) -> torch.Tensor:
    """The engine's step (module docstring)."""
    a, b = inputs
    if a.is_floating_point():
        # floor((a·M_a + b·M_b)/2^s + 1/2) in float64: codes below 2^16 times multipliers below
        # 2^31 and their sum stay below 2^53, so every step is exact
        ra, rb = (m * 2.0**-node.shift for m in node.mults)
        total = a.to(torch.float64).mul_(ra).add_(b, alpha=rb).add_(0.5).floor_()
        return total.to(torch.float32).clamp_(node.lo, node.hi)
    acc = a * node.mults[0] + b * node.mults[1]
    one = torch.ones(1, dtype=torch.int64, device=acc.device)
    return requantize(acc, one, one * node.shift, node.lo, node.hi)


def export(g: Graph, node: AddNode, shapes: dict[str, tuple[int, ...]], style: QuantStyle) -> None:
    """The exported graph's requantization of the two code tensors."""
    from hwquant.export.graph import activation_shape, requantize_codes

    terms = [(name, g.peaks[name]) for name in node.inputs]
    mults = [np.array([m]) for m in node.mults]
    fix = "lower the add's requant_bits or its inputs' activation bits"
    shape = activation_shape(shapes[node.name])
    requantize_codes(g, node.name, terms, mults, node.shift, node.lo, node.hi, shape, style, fix)


def block(node: AddNode, inputs: list[FeatureMap], fold: Fold, module: str) -> Block:
    """The network accelerator's add block."""
    return add_block.emit(node, inputs, module)


register_op(
    OpHandler(
        "add",
        AddNode,
        lower=lower,
        execute=execute,
        export=export,
        block=block,
        fuse=fuse,
        build=build,
    )
)
