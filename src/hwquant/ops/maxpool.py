"""Max pooling on codes: the maximum code of each window (monotone, so the scale is unchanged).

* IR node: :class:`~hwquant.ir.intmodel.MaxPoolNode` (the table model uses it too, on indices);
* QAT: ``prepare`` keeps ``nn.MaxPool2d`` as it is (it passes codes and their scale through);
* lowering: its kernel, stride, padding, dilation and ceil mode;
* engine: ``max_pool2d`` on codes held exactly in float (comparisons only);
* export: ONNX ``MaxPool``;
* hardware: the pooling block of :mod:`hwquant.rtl.network.pool`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import fx, nn

from hwquant.engine.integer import RunContext
from hwquant.hw.folding import Fold
from hwquant.ir.intmodel import MaxPoolNode
from hwquant.ir.ops import OpHandler, register_op
from hwquant.qat.options import pair
from hwquant.rtl.network import pool
from hwquant.rtl.network.stream import Block, FeatureMap

if TYPE_CHECKING:  # the export needs the optional onnx package: imported on use
    from hwquant.export.graph import Graph, QuantStyle


def keeps(node: fx.Node, mod: nn.Module | None) -> bool:
    """``prepare`` keeps an ``nn.MaxPool2d`` in the QAT model unchanged."""
    return isinstance(mod, nn.MaxPool2d)


def lower(node: fx.Node, mod: nn.Module | None, inputs: list[str], name: str) -> MaxPoolNode | None:
    """The MaxPoolNode of an ``nn.MaxPool2d``."""
    if not isinstance(mod, nn.MaxPool2d):
        return None
    return MaxPoolNode(
        name,
        inputs,
        pair(mod.kernel_size),
        pair(mod.stride or mod.kernel_size),
        pair(mod.padding),
        pair(mod.dilation),
        mod.ceil_mode,
    )


def execute(node: MaxPoolNode, inputs: list[torch.Tensor], context: RunContext) -> torch.Tensor:
    """The engine's step: max pooling only compares; float64 holds every int64 code exactly."""
    (x,) = inputs
    work = x if x.is_floating_point() else x.to(torch.float64)
    out = F.max_pool2d(
        work, node.kernel_size, node.stride, node.padding, node.dilation, node.ceil_mode
    )
    return out.to(x.dtype)


def export(
    g: Graph, node: MaxPoolNode, shapes: dict[str, tuple[int, ...]], style: QuantStyle
) -> None:
    """ONNX ``MaxPool`` with the node's geometry."""
    from hwquant.export.graph import activation_shape

    g.op(
        "MaxPool",
        node.inputs,
        node.name,
        activation_shape(shapes[node.name]),
        kernel_shape=list(node.kernel_size),
        strides=list(node.stride),
        pads=[*node.padding, *node.padding],
        dilations=list(node.dilation),
        ceil_mode=int(node.ceil_mode),
    )


def block(node: MaxPoolNode, inputs: list[FeatureMap], fold: Fold, module: str) -> Block:
    """The network accelerator's max-pooling block."""
    return pool.emit_max(node, inputs, module)


register_op(
    OpHandler(
        "maxpool",
        MaxPoolNode,
        lower=lower,
        execute=execute,
        export=export,
        block=block,
        keeps=keeps,
        passthrough=True,
    )
)
