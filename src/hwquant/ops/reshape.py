"""Reshape (flatten, view, reshape, squeeze, unsqueeze): codes keep their values and scale, the
shape changes to ``[batch, *shape]``.

* IR node: :class:`~hwquant.ir.intmodel.ReshapeNode`;
* QAT: ``prepare`` keeps ``nn.Flatten``, ``torch.flatten``/``squeeze``/``unsqueeze``/``reshape``
  and the tensor methods ``flatten``, ``view``, ``reshape``, ``squeeze`` (with a dim) and
  ``unsqueeze`` as they are;
* lowering: the traced per-sample output shape;
* engine: ``reshape``, refusing an input of another size;
* export: ONNX ``Reshape`` to ``[0, *shape]`` (0: the batch dimension as it is);
* hardware: no block (a flatten only renames; the next fully connected block reads the
  ``[C, H, W]`` map itself); the network generator builds flattens and reshapes to the
  input map's own shape only (:func:`block`).
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
from hwquant.qat.naming import describe
from hwquant.rtl.network.stream import FeatureMap

if TYPE_CHECKING:  # the export needs the optional onnx package: imported on use
    from hwquant.export.graph import Graph, QuantStyle

METHODS = ("flatten", "view", "reshape", "squeeze", "unsqueeze")
"""The tensor methods lowered to a reshape."""
FUNCTIONS = (torch.flatten, torch.squeeze, torch.unsqueeze, torch.reshape)
"""The functions lowered to a reshape."""


def keeps(node: fx.Node, mod: nn.Module | None) -> bool:
    """Whether fx ``node`` is a flatten/view/reshape/squeeze/unsqueeze (module, function or
    tensor method); a squeeze of every size-1 dim (no ``dim``) or a (un)squeeze of the batch
    dim is refused."""
    if isinstance(mod, nn.Flatten):
        return True
    is_call = (node.op == "call_function" and node.target in FUNCTIONS) or (
        node.op == "call_method" and node.target in METHODS
    )
    squeezes = ("squeeze", torch.squeeze, "unsqueeze", torch.unsqueeze)
    if is_call and node.target in squeezes:
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        if dim is None or dim == 0:
            raise UnsupportedLayerError(
                f"'{node.name}' ({describe(node)}) has {'no dim' if dim is None else 'dim=0'}; it "
                "would change the batch dimension (a batch of one loses it). Fix: name a dim "
                "after the batch, e.g. x.squeeze(-1), or use torch.flatten(x, 1)."
            )
    return is_call


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
    """No block: a flatten of the input map, or a reshape to the map's own ``[C, H, W]`` (the
    squeeze-excitation gate's ``view(-1, C, 1, 1)`` of a fully connected layer's output,
    which travels as a ``[C, 1, 1]`` map), only renames it; any other reshape is refused."""
    fmap = inputs[0]
    if tuple(node.shape) not in {(fmap.channels * fmap.pixels,), tuple(fmap.shape())}:
        raise UnsupportedLayerError(
            f"reshape '{node.name}' to {tuple(node.shape)} is not a flatten of its "
            f"{fmap.shape()} input; the network generator builds flattens (and reshapes to "
            "the map's own shape) only. Fix: use torch.flatten(x, 1) before the fully "
            "connected layer."
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
