"""The weight-encoding registry: how each stored weight form is run and built in hardware.

A scheme that stores a layer's weights in a form other than plain integer codes (an
:class:`~hwquant.ir.intmodel.WeightEncoding`: SP2 shift pairs, codebook indices) registers one
:class:`EncodingHandler` for it: the engine kernel that accumulates such a layer the way the
scheme's hardware does, the processing-array lanes that the RTL golden vectors replay it
through, and the custom ONNX op that decodes it. The engine (:mod:`hwquant.engine.integer`),
the RTL (:mod:`hwquant.rtl.golden`) and the QONNX export (:mod:`hwquant.export.custom_ops`)
look the encoding of a node up here, so they import no scheme: ``hwquant.schemes.<name>``
(a higher layer) fills the registry on import, and ``import hwquant`` imports every scheme.
A node without an encoding (plain integer weights, LLSQ) takes the layers' common path.

>>> import hwquant
>>> from hwquant.ir.intmodel import CodebookEncoding, MSQEncoding
>>> [handler.encoding.kind for handler in registered()]
['msq', 'codebook']
>>> find_encoding(MSQEncoding).accumulate.__name__
'shift_add_accumulate'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hwquant.core.errors import ConfigError
from hwquant.ir.intmodel import WeightEncoding


@dataclass(frozen=True)
class EncodingHandler:
    """What the lower layers do with weights stored as ``encoding``.

    ``accumulate(node, x_codes, bias, backend) -> acc`` is the engine kernel: exactly
    ``W_int ⋆ x + b``, computed the way the scheme's hardware does it (shift-add, lookup), in the
    dtype :func:`hwquant.core.intmath.int_conv2d` would return. ``lanes(node)`` gives the row
    groups of the node's processing array, ``[(label, rows, product, weight_words)]`` with
    ``product`` an :class:`hwquant.rtl.unit.Product` (None: the RTL has no array for it).
    ``onnx_op(graph, name, encoding, shape) -> name`` adds the custom op of
    :mod:`hwquant.export.custom_ops` that decodes the stored form into tensor ``name`` (None:
    the export writes decoded integer weights only).
    """

    encoding: type[WeightEncoding]
    accumulate: Callable[..., Any]
    lanes: Callable[..., list[tuple[str, Any, Any, Any]]] | None = None
    onnx_op: Callable[..., str] | None = None


_REGISTRY: dict[type[WeightEncoding], EncodingHandler] = {}


def register_encoding(handler: EncodingHandler) -> EncodingHandler:
    """Register ``handler`` for its encoding class (once)."""
    if handler.encoding in _REGISTRY:
        raise ConfigError(f"weight encoding {handler.encoding.__name__} is registered twice")
    _REGISTRY[handler.encoding] = handler
    return handler


def registered() -> tuple[EncodingHandler, ...]:
    """The registered handlers, in registration order."""
    return tuple(_REGISTRY.values())


def find_encoding(encoding: type[WeightEncoding]) -> EncodingHandler | None:
    """The handler of weights stored as ``encoding``; None for an unregistered class."""
    return _REGISTRY.get(encoding)
