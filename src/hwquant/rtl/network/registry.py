"""Which IntModel node kinds have a hardware block, and the function that emits each.

An emitter takes ``(node, input maps, fold, module name)`` and returns the node's
:class:`~hwquant.rtl.network.stream.Block`, or None for a node that only renames its input
(a flatten: the next fully connected block reads the ``[C, H, W]`` map itself). The op
registry of the plug-in layout can take these over one by one (each op owns its block).
"""

from __future__ import annotations

from collections.abc import Callable

from hwquant.errors import UnsupportedLayerError
from hwquant.hw.folding import Fold
from hwquant.intmodel import IntNode, ReshapeNode
from hwquant.rtl.network import add, pool, weight_layer
from hwquant.rtl.network.stream import Block, FeatureMap

BlockEmitter = Callable[[IntNode, list[FeatureMap], Fold, str], Block | None]


def _flatten(node: ReshapeNode, inputs: list[FeatureMap], fold: Fold, module: str) -> None:
    fmap = inputs[0]
    if tuple(node.shape) != (fmap.channels * fmap.pixels,):
        raise UnsupportedLayerError(
            f"reshape '{node.name}' to {tuple(node.shape)} is not a flatten of its "
            f"{fmap.shape()} input; the network generator builds flattens only. Fix: use "
            "torch.flatten(x, 1) before the fully connected layer."
        )
    return None


BLOCKS: dict[str, BlockEmitter] = {
    "conv2d": lambda node, maps, fold, module: weight_layer.emit(
        node, maps, fold.pe, fold.simd, module
    ),
    "linear": lambda node, maps, fold, module: weight_layer.emit(
        node, maps, fold.pe, fold.simd, module
    ),
    "maxpool": lambda node, maps, fold, module: pool.emit_max(node, maps, module),
    "avgpool": lambda node, maps, fold, module: pool.emit_avg(node, maps, module),
    "add": lambda node, maps, fold, module: add.emit(node, maps, module),
    "reshape": _flatten,
}
"""Node op -> block emitter."""

FOLDED_OPS = ("conv2d", "linear")
"""The ops whose blocks take a PE x SIMD folding."""


def emitter(node: IntNode) -> BlockEmitter:
    """The block emitter of ``node``; an op without one raises, listing those that have one."""
    if node.op not in BLOCKS:
        raise UnsupportedLayerError(
            f"node '{node.name}' is a '{node.op or type(node).__name__}' op, which has no "
            f"hardware block. Fix: use only ops with one: {', '.join(sorted(BLOCKS))}."
        )
    return BLOCKS[node.op]
