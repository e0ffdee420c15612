"""Reshape (flatten, view, reshape): codes keep their values and scale, the shape changes to
``[batch, *shape]``.

* IR node: :class:`~hwquant.ir.intmodel.ReshapeNode`;
* QAT: ``prepare`` keeps ``nn.Flatten``, ``torch.flatten`` and the tensor methods ``flatten``,
  ``view`` and ``reshape`` as they are;
* lowering: the traced per-sample output shape;
* engine: ``reshape``, refusing an input of another size;
* export: ONNX ``Reshape`` to ``[0, *shape]`` (0: the batch dimension as it is);
* hardware: no block (a flatten only renames; the next fully connected block reads the
  ``[C, H, W]`` map itself); the network generator builds flattens only.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import fx, nn

from hwquant.core.errors import HwquantError, UnsupportedLayerError
from hwquant.engine.integer import RunContext
from hwquant.hw.folding import Fold
from hwquant.ir.intmodel import ReshapeNode
from hwquant.ir.ops import OpHandler, register_op
from hwquant.rtl.network.stream import FeatureMap

if TYPE_CHECKING:  # the export needs the optional onnx package: imported on use
    from hwquant.export.graph import Graph, QuantStyle

METHODS = ("flatten", "view", "reshape")
"""The tensor methods lowered to a reshape."""


def keeps(node: fx.Node, mod: nn.Module | None) -> bool:
    """Whether fx ``node`` is a flatten/view/reshape (module, function or tensor method)."""
    return (
        isinstance(mod, nn.Flatten)
        or (node.op == "call_function" and node.target is torch.flatten)
        or (node.op == "call_method" and node.target in METHODS)
    )


def lower(node: fx.Node, mod: nn.Module | None, inputs: list[str], name: str) -> ReshapeNode | None:
    """The ReshapeNode of a flatten/view/reshape, to its traced per-sample shape."""
    if not keeps(node, mod):
        return None
    shape = tuple(int(d) for d in node.meta["tensor_meta"].shape[1:])
    return ReshapeNode(name, inputs, shape)


def execute(node: ReshapeNode, inputs: list[torch.Tensor], context: RunContext) -> torch.Tensor:
    """The engine's step: reshape each sample, refusing one of another size."""
    x = inputs[0]
    if x[0].numel() != math.prod(node.shape):
        raise HwquantError(
            f"node '{node.name}' reshapes {math.prod(node.shape)} values per sample into "
            f"{node.shape}, got {tuple(x.shape[1:])}. Fix: give the model input of the shape "
            "it was lowered with (channels and image size)."
        )
    return x.reshape(x.shape[0], *node.shape)


def export(
    g: Graph, node: ReshapeNode, shapes: dict[str, tuple[int, ...]], style: QuantStyle
) -> None:
    """ONNX ``Reshape`` to ``[0, *shape]``."""
    from hwquant.export.graph import activation_shape

    target = g.const(f"{node.name}/shape", np.array([0, *node.shape], np.int64))
    g.op("Reshape", [node.inputs[0], target], node.name, activation_shape(shapes[node.name]))


def block(node: ReshapeNode, inputs: list[FeatureMap], fold: Fold, module: str) -> None:
    """No block: a flatten of the input map only renames it; any other reshape is refused."""
    fmap = inputs[0]
    if tuple(node.shape) != (fmap.channels * fmap.pixels,):
        raise UnsupportedLayerError(
            f"reshape '{node.name}' to {tuple(node.shape)} is not a flatten of its "
            f"{fmap.shape()} input; the network generator builds flattens only. Fix: use "
            "torch.flatten(x, 1) before the fully connected layer."
        )
    return None


register_op(
    OpHandler(
        "reshape",
        ReshapeNode,
        lower=lower,
        execute=execute,
        export=export,
        block=block,
        keeps=keeps,
        passthrough=True,
    )
)
