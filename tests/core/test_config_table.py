"""Config tables checked into frozen dataclasses (hwquant/core/config_table.py): every field
converted by its annotation, every bad key or value refused naming its dotted path and the fix."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from hwquant.core.config_table import NONE, build_dataclass
from hwquant.core.errors import ConfigError


@dataclass(frozen=True)
class Inner:
    bits: int
    mode: Literal["wrap", "raise"] = "wrap"


@dataclass(frozen=True)
class Outer:
    inner: Inner
    lr: float = 0.1
    name: str = "run"
    limit: int | None = 8
    per_layer: dict[str, int] = field(default_factory=dict)
    fast: bool = False


def test_a_full_table_is_converted_field_by_field():
    table = {
        "inner": {"bits": 4, "mode": "raise"},
        "lr": 1,
        "limit": NONE,
        "per_layer": {"fc": 6},
        "fast": True,
    }
    built = build_dataclass(Outer, table, "run")
    assert built == Outer(Inner(4, "raise"), 1.0, "run", None, {"fc": 6}, True)
    assert isinstance(built.lr, float)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"inner": {"bits": 4}, "lrr": 1}, r"unknown field 'run\.lrr' .*did you mean 'lr'"),
        ({}, r"run\.inner is required\. Fix: add a \[inner\] table"),
        ({"inner": {}}, r"run\.inner\.bits is required"),
        ({"inner": {"bits": True}}, r"run\.inner\.bits=True is a boolean\. Fix: use an integer"),
        ({"inner": {"bits": 4, "mode": "saturate"}}, r"mode='saturate' is not allowed"),
        ({"inner": {"bits": 4}, "lr": float("inf")}, r"run\.lr=inf .*a finite number"),
        ({"inner": {"bits": 4}, "limit": "8"}, r"run\.limit='8' is a string.*or \"none\""),
        ({"inner": {"bits": 4}, "per_layer": {"fc": 1.5}}, r"run\.per_layer\.fc=1\.5"),
        ({"inner": 3}, r"run\.inner must be a table, not an integer"),
    ],
)
def test_bad_tables_are_refused_naming_the_path(table, message):
    with pytest.raises(ConfigError, match=message):
        build_dataclass(Outer, table, "run")
