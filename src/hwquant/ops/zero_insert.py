"""Zero insertion, the first half of a transposed convolution: codes spread ``s`` apart, zeros
between and around (:mod:`hwquant.qat.nn.zero_insert`; the second half is a stride-1
``conv2d`` by the flipped kernel, :mod:`hwquant.qat.conv_forms`).

* IR node: :class:`ZeroInsertNode` (``stride``, ``before``, ``after``);
* QAT: ``prepare`` puts a :class:`~hwquant.qat.nn.zero_insert.ZeroInsert` before the
  convolution a ``ConvTranspose2d`` becomes and keeps it as it is;
* lowering: the module's geometry;
* engine: :func:`~hwquant.qat.nn.zero_insert.zero_insert` on the codes (0 is the code of 0);
* export: ONNX ``ConvTranspose`` by a 1x1 kernel of ones per channel (``group = C``, stride
  ``s``: every output is one code times 1 or no term, exact in float32), then ``Pad``;
* hardware: no block (the network generator refuses it by name).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
from torch import fx, nn

from hwquant.engine.integer import RunContext
from hwquant.ir.intmodel import IntNode
from hwquant.ir.ops import OpHandler, register_op
from hwquant.qat.nn.zero_insert import ZeroInsert, zero_insert

if TYPE_CHECKING:  # the export needs the optional onnx package: imported on use
    from hwquant.export.graph import Graph, QuantStyle


@dataclass
class ZeroInsertNode(IntNode):
    """Codes ``stride`` apart, ``before``/``after`` zeros around, along height and width."""

    stride: tuple[int, int] = (1, 1)
    before: tuple[int, int] = (0, 0)
    after: tuple[int, int] = (0, 0)
    op: ClassVar[str] = "zero_insert"


def keeps(node: fx.Node, mod: nn.Module | None) -> bool:
    """Whether fx ``node`` is the zero insertion ``prepare`` put before a transposed conv."""
    return isinstance(mod, ZeroInsert)


def lower(
    node: fx.Node, mod: nn.Module | None, inputs: list[str], name: str
) -> ZeroInsertNode | None:
    """The ZeroInsertNode of a kept :class:`ZeroInsert`."""
    if not isinstance(mod, ZeroInsert):
        return None
    return ZeroInsertNode(name, inputs, tuple(mod.stride), tuple(mod.before), tuple(mod.after))


def execute(node: ZeroInsertNode, inputs: list[torch.Tensor], context: RunContext) -> torch.Tensor:
    """:func:`~hwquant.qat.nn.zero_insert.zero_insert` of the codes."""
    return zero_insert(inputs[0], node.stride, node.before, node.after)


def export(
    g: Graph, node: ZeroInsertNode, shapes: dict[str, tuple[int, ...]], style: QuantStyle
) -> None:
    """ONNX ``ConvTranspose`` (ones, one group per channel, the stride), then ``Pad``."""
    from hwquant.export.graph import activation_shape

    channels = shapes[node.name][1]
    ones = g.f32(f"{node.name}/ones", np.ones((channels, 1, 1, 1), np.float32))
    n, c, h, w = shapes[node.name]
    spread = (h - node.before[0] - node.after[0], w - node.before[1] - node.after[1])
    inner = g.op(
        "ConvTranspose",
        [node.inputs[0], ones],
        f"{node.name}/spread",
        activation_shape((n, c, *spread)),
        strides=list(node.stride),
        group=channels,
        kernel_shape=[1, 1],
    )
    pads = g.const(f"{node.name}/pads", np.array([0, 0, *node.before, 0, 0, *node.after], np.int64))
    g.op("Pad", [inner, pads], node.name, activation_shape(shapes[node.name]))


register_op(
    OpHandler(
        "zero_insert",
        ZeroInsertNode,
        lower=lower,
        execute=execute,
        export=export,
        keeps=keeps,
        passthrough=True,
    )
)
