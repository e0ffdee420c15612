"""The op registry: every op is registered with all its facets; bad names are refused."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest

import hwquant  # noqa: F401  (registers every op)
from hwquant.core.errors import ConfigError, UnsupportedLayerError
from hwquant.ir.intmodel import IntNode, MaxPoolNode
from hwquant.ir.ops import OpHandler, available_ops, get_op, register_op

BUILT_IN = (
    "add",
    "avgpool",
    "concat",
    "conv2d",
    "linear",
    "lut",
    "maxpool",
    "mul",
    "relu",
    "reshape",
    "softmax",
    "upsample",
    "zero_insert",
)
WITHOUT_BLOCK = ("softmax",)
"""Ops with no hardware block: a softmax is outside the integer graph (the design gives the
logits and their argmax)."""


def test_every_op_has_every_facet():
    assert available_ops() == BUILT_IN
    for name in BUILT_IN:
        handler = get_op(name)
        assert handler.node.op == name
        facets = (handler.lower, handler.execute, handler.export)
        assert all(callable(f) for f in facets), name
        assert callable(handler.block) is (name not in WITHOUT_BLOCK), name
    assert [n for n in BUILT_IN if get_op(n).folded] == ["conv2d", "linear"]


def test_unknown_op_lists_the_registered_ones():
    with pytest.raises(UnsupportedLayerError) as err:
        get_op("gelu")
    assert "'gelu'" in str(err.value) and all(op in str(err.value) for op in BUILT_IN)


def test_registering_twice_or_with_a_foreign_node_class_is_refused():
    with pytest.raises(ConfigError, match="registered twice"):
        register_op(OpHandler("maxpool", MaxPoolNode))

    @dataclass
    class Mismatched(IntNode):
        op: ClassVar[str] = "other"

    with pytest.raises(ConfigError, match="op = 'mismatched'"):
        register_op(OpHandler("mismatched", Mismatched))
    assert "mismatched" not in available_ops()
