"""The op registry: each IntModel operation registers one :class:`OpHandler`.

An op (``conv2d``, ``linear``, ``add``, ``maxpool``, ``avgpool``, ``reshape``, ``relu``, ...) is
declared in one module, ``hwquant.ops.<op>``: its IR node class, how ``lower`` recognises it
in a QAT model, how the integer engine executes it, how the exported ONNX graph computes it and
which hardware block the network accelerator builds for it. This module is the registry's
home. It sits in the ``ir`` layer and imports nothing above it, so that the engine, export,
``rtl`` and ``qat`` (lower layers) dispatch through it while the op modules (a higher layer,
they import those) fill it. ``import hwquant`` imports :mod:`hwquant.ops`, which registers
every op.

The facets are plain callables, typed loosely here because their argument types live in the
layers above (the engine's run context, the export graph, the RTL feature maps):

* ``lower(fx_node, module, inputs, name) -> node | None``: the IR node of a traced QAT-model
  node, or None when the node is not this op (``name``: the name ``lower`` gives a node that is
  no QAT layer; a QAT layer's node takes the layer's ``qname``);
* ``keeps(fx_node, module) -> bool``: whether ``prepare`` keeps this float op in the QAT twin
  unchanged (an op that passes integer codes and their scale through, e.g. max pooling);
* ``fuse(fusion, fx_node, module) -> (fx_node, FusedSpec) | None`` and
  ``build(spec, layer) -> QuantModule``: how ``prepare`` recognises the float form of an op
  that gets a QAT layer (absorbing a BatchNorm or an activation, rewriting the graph) and makes
  that layer (:mod:`hwquant.qat.fusion`);
* ``signed(spec, input_signed) -> bool``: whether that layer's output codes are signed, given
  ``input_signed(i)``, whether its ``i``-th input's are (default: signed unless the spec fuses
  an activation; :func:`hwquant.qat.fusion.output_signed`, asked by the layer's quantizer and
  by the quantizers that layers feeding one concatenation share);
* ``execute(node, inputs, context) -> tensor``: the integer engine's step
  (:class:`hwquant.engine.integer.RunContext`);
* ``export(graph, node, shapes, style)``: the exported graph's nodes
  (:mod:`hwquant.export.graph`);
* ``block(node, input maps, fold, module) -> Block | None``: the network accelerator's block
  (:mod:`hwquant.rtl.network`), None for an op that only renames its input (a flatten).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from hwquant.core.errors import ConfigError, UnsupportedLayerError
from hwquant.core.registry import Registry
from hwquant.ir.intmodel import NODE_TYPES, IntNode


@dataclass(frozen=True)
class OpHandler:
    """Everything the pipeline does with one op; a facet left None is not supported.

    ``node`` is the op's IR node class (``node.op == name``). ``passthrough``: the op moves
    integer codes without changing their scale or widening their range (max pooling, reshape,
    ReLU), so ``lower`` and the export take its input's scale and code bound. ``folded``: its
    hardware block takes a PE x SIMD folding (weight layers).
    """

    name: str
    node: type[IntNode]
    lower: Callable[..., IntNode | None] | None = None
    execute: Callable[..., Any] | None = None
    export: Callable[..., None] | None = None
    block: Callable[..., Any] | None = None
    keeps: Callable[..., bool] | None = None
    fuse: Callable[..., Any] | None = None
    build: Callable[..., Any] | None = None
    signed: Callable[..., bool] | None = None
    passthrough: bool = False
    folded: bool = False


_OPS: Registry[OpHandler] = Registry(
    "op",
    error=UnsupportedLayerError,
    fix="use one of the registered ops: {names} (an op is added as a module under hwquant/ops/).",
)


def register_op(handler: OpHandler) -> OpHandler:
    """Register ``handler`` under its name (once; the name must be its node class's op).

    A node class declared in the op's own module joins ``hwquant.ir.intmodel.NODE_TYPES`` here,
    so that :func:`hwquant.ir.intmodel.load` reads files holding it.
    """
    return _OPS.add(handler.name, handler, _check_node)


def _check_node(handler: OpHandler) -> None:
    """Refuse a handler whose node class is not its op's, or an op the IR has another node
    class for; else enter its node class in ``NODE_TYPES``."""
    if handler.node.op != handler.name:
        raise ConfigError(
            f"op {handler.name!r} declares node class {handler.node.__name__}, whose op is "
            f"{handler.node.op!r}. Fix: give the node class op = {handler.name!r}."
        )
    if NODE_TYPES.setdefault(handler.name, handler.node) is not handler.node:
        raise ConfigError(
            f"op {handler.name!r}: the IR already has node class "
            f"{NODE_TYPES[handler.name].__name__} for it. Fix: declare that class."
        )


def available_ops() -> tuple[str, ...]:
    """The registered op names, in registration order."""
    return _OPS.names()


def handlers() -> Iterator[OpHandler]:
    """The registered handlers, in registration order."""
    return iter(_OPS.entries())


def get_op(name: str) -> OpHandler:
    """The handler of op ``name``.

    Raises:
        UnsupportedLayerError: no op of that name is registered; the message lists those that are.
    """
    return _OPS.get(name)
