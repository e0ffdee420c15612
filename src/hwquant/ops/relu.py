"""A standalone ReLU on codes: ``code = max(code, 0)``, the scale unchanged.

A ReLU right after a convolution, a fully connected layer or a residual add is fused into that
layer's output quantizer by ``prepare``. One elsewhere (the classic ``relu(max_pool2d(conv(x)))``
or a ReLU after a flatten) acts on codes that are already quantized: since the scale ``s`` is
positive, ``relu(s·c) = s·max(c, 0)``, so the op is exact on codes and keeps their scale.

* IR node: :class:`ReluNode` (declared here; the registry adds it to the IntModel file format);
* QAT: ``prepare`` keeps the float ReLU as it is (``nn.ReLU``, ``F.relu``, ``torch.relu``,
  ``x.relu()``);
* lowering: a :class:`ReluNode` for each such ReLU left in the QAT model;
* engine: ``clamp_min(0)`` (exact on codes in int64 and in float32 registers);
* export: ONNX ``Relu`` (exact on integer codes in float32);
* hardware: :func:`block`, one pixel per cycle, a sign test per channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from torch import fx, nn

from hwquant.engine.integer import RunContext
from hwquant.hw.folding import Fold
from hwquant.ir.intmodel import IntNode
from hwquant.ir.ops import OpHandler, register_op
from hwquant.rtl.network.stream import Block, FeatureMap, pixelwise_block

if TYPE_CHECKING:  # the export needs the optional onnx package: imported on use
    from hwquant.export.graph import Graph, QuantStyle


@dataclass
class ReluNode(IntNode):
    """``max(code, 0)`` elementwise."""

    op: ClassVar[str] = "relu"


def keeps(node: fx.Node, mod: nn.Module | None) -> bool:
    """Whether fx ``node`` is a ReLU (module, function or tensor method)."""
    return (
        isinstance(mod, nn.ReLU)
        or (node.op == "call_function" and node.target in (F.relu, torch.relu))
        or (node.op == "call_method" and node.target == "relu")
    )


def lower(node: fx.Node, mod: nn.Module | None, inputs: list[str], name: str) -> ReluNode | None:
    """The ReluNode of a ReLU that ``prepare`` did not fuse into a layer."""
    return ReluNode(name, inputs) if keeps(node, mod) else None


def execute(node: ReluNode, inputs: list[torch.Tensor], context: RunContext) -> torch.Tensor:
    """``max(code, 0)``."""
    return inputs[0].clamp_min(0)


def export(g: Graph, node: ReluNode, shapes: dict[str, tuple[int, ...]], style: QuantStyle) -> None:
    """ONNX ``Relu``."""
    from hwquant.export.graph import activation_shape

    g.op("Relu", node.inputs, node.name, activation_shape(shapes[node.name]))


def block(node: ReluNode, inputs: list[FeatureMap], fold: Fold, module: str) -> Block:
    """The ReLU block: per pixel, each channel's code or 0 when its sign bit is set.

    Pipeline (``depth = 3``): address → RAM read → the written word. Unsigned codes pass as
    they are; the output map has the input's format.
    """
    (fmap,) = inputs
    bits = fmap.bits

    def encode(_: int, word: str) -> str:
        return f"{word}[{bits - 1}] ? {bits}'d0 : {word}" if fmap.signed else word

    verilog, steps, depth = pixelwise_block(module, fmap, fmap, encode)
    return Block(node.name, node.op, module, verilog, list(node.inputs), fmap, steps, depth, {}, {})


register_op(
    OpHandler(
        "relu",
        ReluNode,
        lower=lower,
        execute=execute,
        export=export,
        block=block,
        keeps=keeps,
        passthrough=True,
    )
)
