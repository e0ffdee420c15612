"""Run configs map one to one onto documented frozen dataclasses; bad names fail clearly."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import textwrap
import typing
from pathlib import Path

import pytest

from hwquant.app.config import RunConfig, load_config
from hwquant.core.errors import ConfigError
from hwquant.schemes import available

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def config_dataclasses(cls: type = RunConfig) -> list[type]:
    """``cls`` and every dataclass reachable through its field annotations."""
    found = [cls]
    for hint in typing.get_type_hints(cls).values():
        for arg in (hint, *typing.get_args(hint)):
            if dataclasses.is_dataclass(arg) and arg not in found:
                found += [c for c in config_dataclasses(arg) if c not in found]
    return found


def documented_fields(cls: type) -> set[str]:
    """Fields of ``cls`` whose annotated assignment is followed by a string (a field docstring)."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    return {
        stmt.target.id
        for stmt, after in itertools.pairwise(body)
        if isinstance(stmt, ast.AnnAssign)
        and isinstance(after, ast.Expr)
        and isinstance(after.value, ast.Constant)
        and isinstance(after.value.value, str)
    }


@pytest.mark.parametrize("cls", config_dataclasses(), ids=lambda c: c.__name__)
def test_every_config_field_has_a_docstring_and_the_class_is_frozen(cls):
    fields = {f.name for f in dataclasses.fields(cls)}
    assert fields - documented_fields(cls) == set()
    assert cls.__dataclass_params__.frozen
    assert cls.__doc__


def test_the_walk_reaches_the_scheme_options():
    names = {c.__name__ for c in config_dataclasses()}
    assert {"TrainConfig", "Recipe", "MSQOptions", "NonUniformOptions", "TableOptions"} <= names


@pytest.mark.parametrize("scheme", available())
def test_every_scheme_has_an_example_config(scheme):
    matches = [
        p for p in CONFIGS.glob("*.toml") if (r := load_config(p).recipe) and r.scheme == scheme
    ]
    assert matches, f"no example config in configs/ uses scheme {scheme!r}"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(
        'out_dir = "runs/x"\n[model]\nname = "small_cnn"\n[data]\nname = "digits"\n' + text
    )
    return path


def test_an_unknown_scheme_lists_the_allowed_ones(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"recipe\.scheme='lut'.*Fix: use one of 'llsq', 'msq', 'nonuniform', 'tables'",
    ):
        load_config(write(tmp_path, '[recipe]\nscheme = "lut"\n'))


def test_an_unknown_field_is_named_with_its_table(tmp_path):
    with pytest.raises(ConfigError, match=r"recipe\.msq.*sp2_fraction"):
        load_config(write(tmp_path, '[recipe]\nscheme = "msq"\n[recipe.msq]\nsp2_fraction = 0.5\n'))
    with pytest.raises(ConfigError, match=r"train.*epoch\b"):
        load_config(write(tmp_path, "[train]\nepoch = 3\n"))
