"""Which IntModel ops have a hardware block, and the function that emits each.

The emitters are facets of the op registry (:mod:`hwquant.ir.ops`): each op module under
:mod:`hwquant.ops` registers its block emitter, which takes ``(node, input maps, fold, module
name)`` and returns the node's :class:`~hwquant.rtl.network.stream.Block`, or None for a node
that only renames its input (a flatten: the next fully connected block reads the ``[C, H, W]``
map itself). The shared block generators stay in this package (``weight_layer``, ``pool``,
``add``).
"""

from __future__ import annotations

from collections.abc import Callable

from hwquant.core.errors import UnsupportedLayerError
from hwquant.hw.folding import Fold
from hwquant.ir.intmodel import IntNode
from hwquant.ir.ops import available_ops, get_op, handlers
from hwquant.rtl.network.stream import Block, FeatureMap

BlockEmitter = Callable[[IntNode, list[FeatureMap], Fold, str], Block | None]


def ops_with_blocks() -> list[str]:
    """The registered ops that have a hardware block, sorted."""
    return sorted(h.name for h in handlers() if h.block is not None)


def emitter(node: IntNode) -> BlockEmitter:
    """The block emitter of ``node``; an op without one raises, listing those that have one."""
    handler = get_op(node.op) if node.op in available_ops() else None
    if handler is None or handler.block is None:
        raise UnsupportedLayerError(
            f"node '{node.name}' is a '{node.op or type(node).__name__}' op, which has no "
            f"hardware block. Fix: use only ops with one: {', '.join(ops_with_blocks())}."
        )
    return handler.block


def is_folded(node: IntNode) -> bool:
    """Whether ``node``'s block takes a PE x SIMD folding (weight layers)."""
    return node.op in available_ops() and get_op(node.op).folded
