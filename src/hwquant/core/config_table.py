"""Config tables (a parsed TOML table, a dict) checked into frozen dataclasses.

:func:`build_dataclass` makes a dataclass from a table, field by field against its annotations
(``Literal`` choices, numbers, strings, booleans, tables of names, nested dataclasses and
``X | None``): an unknown key, a missing required field, a wrong type or a value outside its
choices raises :class:`~hwquant.core.errors.ConfigError` naming the dotted path and the fix.
TOML has no null, so a field that may be None is written ``"none"`` (:data:`NONE`).

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Point:
...     x: int
...     y: int = 0
>>> build_dataclass(Point, {"x": 3}, "point")
Point(x=3, y=0)
>>> build_dataclass(Point, {"x": 3, "z": 1}, "point")
Traceback (most recent call last):
    ...
hwquant.core.errors.ConfigError: unknown field 'point.z' in [point]. Fix: use only x, y.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Any, Literal, TypeVar

from hwquant.core.errors import ConfigError

NONE = "none"
"""How TOML, which has no null, spells None for a field that may be None."""

T = TypeVar("T")


def build_dataclass(cls: type[T], table: object, where: str) -> T:
    """Make dataclass ``cls`` from the TOML table ``table`` found at ``where`` (a dotted path)."""
    if not isinstance(table, dict):
        raise ConfigError(
            f"{where} must be a table, not {_kind(table)}. Fix: write it as a [{where}] table."
        )
    hints = typing.get_type_hints(cls)
    _check_keys(cls, hints, table, where)
    values = {
        key: _convert(join_path(where, key), hints[key], value) for key, value in table.items()
    }
    try:
        return cls(**values)
    except ConfigError as exc:  # the range checks of __post_init__ name the bare field
        raise ConfigError(join_path(where, str(exc))) from None


def _check_keys(cls: type, hints: dict[str, Any], table: dict[str, Any], where: str) -> None:
    """Reject a key that is not a field of ``cls`` and a required field that is absent."""
    fields = dataclasses.fields(cls)
    names = [f.name for f in fields]
    context = f"[{where}]" if where else "the top level"
    for key in table:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"unknown field {join_path(where, key)!r} in {context}{hint}. "
                f"Fix: use only {', '.join(names)}."
            )
    for f in fields:
        if f.name not in table and _is_required(f):
            table_field = dataclasses.is_dataclass(hints[f.name])
            add = f"a [{f.name}] table" if table_field else f"{f.name} = ... to {context}"
            raise ConfigError(f"{join_path(where, f.name)} is required. Fix: add {add}.")


def _convert(name: str, annotation: Any, value: object) -> Any:
    """Check ``value`` against ``annotation`` and return it as that type."""
    optional = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    if optional:
        if value is None or value == NONE:  # None from to_dict(), "none" from TOML
            return None
        (annotation,) = (a for a in typing.get_args(annotation) if a is not type(None))
    if dataclasses.is_dataclass(annotation):
        return build_dataclass(annotation, value, name)
    if typing.get_origin(annotation) is Literal:
        choices = typing.get_args(annotation)
        ok, expected = value in choices, "one of " + ", ".join(repr(c) for c in choices)
    elif annotation is float:
        ok, expected = isinstance(value, int | float) and not isinstance(value, bool), "a number"
        if ok and not math.isfinite(value):
            ok, expected = False, "a finite number"
        value = float(value) if ok else value
    elif typing.get_origin(annotation) is dict:  # a table of names to values
        ok, expected = isinstance(value, dict), "a table"
        if ok:
            value_type = typing.get_args(annotation)[1]
            value = {k: _convert(f"{name}.{k}", value_type, v) for k, v in value.items()}
    else:
        ok = isinstance(value, annotation) and not (annotation is int and isinstance(value, bool))
        expected = _KINDS[annotation]
    if not ok:
        problem = "is not allowed" if expected.startswith("one of") else f"is {_kind(value)}"
        alternative = f' or "{NONE}"' if optional else ""
        raise ConfigError(f"{name}={value!r} {problem}. Fix: use {expected}{alternative}.")
    return value


_KINDS: dict[type, str] = {
    str: "a string",
    int: "an integer",
    float: "a float",
    bool: "true or false",
    dict: "a table",
    list: "an array",
}


def _kind(value: object) -> str:
    """How an error names the type of a TOML value."""
    if isinstance(value, bool):
        return "a boolean"
    return _KINDS.get(type(value), f"a {type(value).__name__}")


def _is_required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def join_path(where: str, name: str) -> str:
    """The dotted path of field ``name`` in the table at ``where`` (``""``: the top level).

    >>> join_path("recipe", "msq"), join_path("", "out_dir")
    ('recipe.msq', 'out_dir')
    """
    return f"{where}.{name}" if where else name
