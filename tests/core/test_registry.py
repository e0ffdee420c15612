"""core/registry.py: entries registered once by name, listed in order (or sorted), an unknown
name refused with the error class and fix the registry was made with."""

from __future__ import annotations

import pytest

from hwquant.core.errors import ConfigError, UnsupportedLayerError
from hwquant.core.registry import Registry


def test_entries_come_back_by_name_and_in_registration_order():
    shapes = Registry("shape")
    assert shapes.add("square", 4) == 4 and shapes.add("circle", 0) == 0
    assert shapes.names() == ("square", "circle") and shapes.entries() == (4, 0)
    assert shapes.get("circle") == 0
    sorted_shapes = Registry("shape", sort=True)
    sorted_shapes.add("square", 4), sorted_shapes.add("circle", 0)
    assert sorted_shapes.names() == ("circle", "square")


def test_a_name_is_registered_once_and_the_check_runs_before_storing():
    shapes = Registry("shape")
    shapes.add("square", 4)
    with pytest.raises(ConfigError, match="shape 'square' is registered twice"):
        shapes.add("square", 5)

    def refuse(entry: int) -> None:
        raise ConfigError(f"{entry} sides")

    with pytest.raises(ConfigError, match="3 sides"):
        shapes.add("triangle", 3, refuse)
    assert shapes.names() == ("square",)


def test_an_unknown_name_raises_the_registry_error_with_its_fix():
    ops = Registry("op", error=UnsupportedLayerError, fix="use one of {names} ({kind}s).")
    ops.add("add", 1), ops.add("mul", 2)
    with pytest.raises(
        UnsupportedLayerError, match=r"^unknown op 'gelu'\. Fix: use one of add, mul \(ops\)\.$"
    ):
        ops.get("gelu")
