"""Run configuration: one TOML file maps one to one onto frozen dataclasses.

A run file has a top-level ``out_dir`` and the tables ``[model]``, ``[data]``, ``[train]``
and, for quantization-aware training, ``[recipe]`` (see :class:`hwquant.qat.recipe.Recipe`;
without it the run trains in float)::

    out_dir = "runs/mnist-llsq4"

    [model]
    name = "lenet5"

    [data]
    name = "mnist"

    [train]
    epochs = 10
    lr = 0.05

    [recipe]
    weight_bits = 4

Every field is checked against its dataclass annotation, so an unknown name, a wrong type
or a value outside its choices fails at load time with the table, the field and the fix.
TOML has no null: write ``"none"`` for a field that may be None (an omitted field takes its
default). Relative paths are relative to the working directory.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from hwquant.core.errors import ConfigError
from hwquant.qat.recipe import Recipe

Optimizer = Literal["sgd", "adam"]
Schedule = Literal["cosine", "onecycle", "constant"]

NONE = "none"
"""How TOML, which has no null, spells None for a field that may be None."""

T = TypeVar("T")


@dataclass(frozen=True)
class TrainConfig:
    """How to train: optimizer, schedule, regularisation, checkpoints (the ``[train]`` table)."""

    epochs: int = 10
    """Passes over the training set."""
    batch_size: int = 128
    """Training examples per step."""
    optimizer: Optimizer = "sgd"
    """"sgd" (with momentum) or "adam"."""
    lr: float = 0.1
    """Peak learning rate (reached after warm-up; one-cycle's maximum)."""
    momentum: float = 0.9
    """SGD momentum, or Adam's beta1."""
    nesterov: bool = True
    """Nesterov momentum (SGD only; needs momentum > 0)."""
    weight_decay: float = 5e-4
    """L2 penalty on the weight matrices/kernels of every layer; biases, norms and
    quantizer scales are not decayed."""
    schedule: Schedule = "cosine"
    """Learning-rate schedule, stepped per batch: cosine to 0, one-cycle, or constant."""
    warmup_epochs: float = 0.0
    """Linear warm-up length; for "onecycle" the rising phase (0: 30% of the run)."""
    label_smoothing: float = 0.0
    """Label smoothing of the cross-entropy loss, in [0, 1)."""
    amp: bool = True
    """bfloat16 autocast on CUDA (on the CPU only with ``cpu_amp``)."""
    cpu_amp: bool = False
    """Also autocast to bfloat16 when training on the CPU (with ``amp``). Off by default: it
    changes the trained weights. The CPU must have native bf16 kernels (oneDNN, e.g.
    avx512_bf16 or AMX); the Trainer refuses the option on one that has none."""
    seed: int = 0
    """Seed of Python, NumPy and torch generators and of the data order."""
    deterministic: bool = True
    """Use deterministic kernels (an op without one warns), so that a resumed run is bit-identical
    to an uninterrupted one."""
    checkpoint_every: int = 0
    """Also checkpoint every this many steps (0: only at the end of each epoch)."""
    grad_clip: float | None = None
    """Clip the global gradient norm to this value; None does not clip."""

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, "epochs", self.epochs, "an integer >= 1")
        _check(self.batch_size >= 1, "batch_size", self.batch_size, "an integer >= 1")
        _check(self.lr > 0, "lr", self.lr, "a float > 0")
        _check(0 <= self.momentum < 1, "momentum", self.momentum, "a float in [0, 1)")
        _check(self.weight_decay >= 0, "weight_decay", self.weight_decay, "a float >= 0")
        _check(
            0 <= self.warmup_epochs < self.epochs,
            "warmup_epochs",
            self.warmup_epochs,
            f"a float in [0, epochs={self.epochs})",
        )
        _check(
            0 <= self.label_smoothing < 1,
            "label_smoothing",
            self.label_smoothing,
            "a float in [0, 1)",
        )
        _check(0 <= self.seed < 2**32, "seed", self.seed, "an integer in 0..2^32-1 (NumPy's range)")
        _check(
            self.checkpoint_every >= 0, "checkpoint_every", self.checkpoint_every, "an integer >= 0"
        )
        _check(
            self.grad_clip is None or self.grad_clip > 0,
            "grad_clip",
            self.grad_clip,
            'a float > 0, or "none"',
        )
        _check(
            not (self.nesterov and self.optimizer == "sgd" and self.momentum == 0),
            "nesterov",
            self.nesterov,
            "false when momentum = 0 (Nesterov needs momentum)",
        )


@dataclass(frozen=True)
class DataConfig:
    """Which data set to train on (the ``[data]`` table)."""

    name: str
    """Data set name known to :func:`hwquant.data.load_dataset`."""
    root: str | None = None
    """Directory holding the data set files; None uses the loader's default."""
    batch_size_eval: int = 512
    """Examples per evaluation batch."""
    augment: bool = True
    """Random training-set augmentation (the test set is never augmented)."""

    def __post_init__(self) -> None:
        _check(
            self.batch_size_eval >= 1, "batch_size_eval", self.batch_size_eval, "an integer >= 1"
        )


@dataclass(frozen=True)
class ModelConfig:
    """Which network to train (the ``[model]`` table)."""

    name: str
    """Model name known to :func:`hwquant.models.build`."""
    width: float = 1.0
    """Channel-width multiplier."""
    init: str | None = None
    """Checkpoint of a float run whose weights start this run (QAT from a trained FP32 model)."""

    def __post_init__(self) -> None:
        _check(self.width > 0, "width", self.width, "a float > 0")


@dataclass(frozen=True)
class RunConfig:
    """A whole training run: where it writes, what it trains, how, and how it quantizes."""

    model: ModelConfig
    """The ``[model]`` table."""
    data: DataConfig
    """The ``[data]`` table."""
    out_dir: str = "runs/train"
    """Directory of checkpoints and the effective config."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """The ``[train]`` table."""
    recipe: Recipe | None = None
    """The ``[recipe]`` table; None (no table) trains in float."""

    @classmethod
    def from_dict(cls, table: dict[str, Any]) -> RunConfig:
        """Build a run config from a parsed TOML document, checking every field."""
        return build_dataclass(cls, table, "")

    def to_dict(self) -> dict[str, Any]:
        """The config as plain nested dicts (None stays None)."""
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        """The config as TOML text that :func:`load_config` reads back to an equal config."""
        return "\n".join(_toml_lines(self.to_dict(), "")).strip() + "\n"


def load_config(path: str | Path) -> RunConfig:
    """Read and check a run config; every problem raises :class:`ConfigError` naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"config file '{path}' does not exist. Fix: check the path "
            f"(relative paths start at {Path.cwd()})."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file '{path}': {exc}") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}. Fix: correct the syntax there.") from None
    try:
        return RunConfig.from_dict(document)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _check(ok: bool, name: str, value: object, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{name}={value!r} is out of range. Fix: use {expected}.")


def build_dataclass(cls: type[T], table: object, where: str) -> T:
    """Make dataclass ``cls`` from the TOML table ``table`` found at ``where`` (a dotted path)."""
    if not isinstance(table, dict):
        raise ConfigError(
            f"{where} must be a table, not {_kind(table)}. Fix: write it as a [{where}] table."
        )
    hints = typing.get_type_hints(cls)
    _check_keys(cls, hints, table, where)
    values = {key: _convert(_join(where, key), hints[key], value) for key, value in table.items()}
    try:
        return cls(**values)
    except ConfigError as exc:  # the range checks of __post_init__ name the bare field
        raise ConfigError(_join(where, str(exc))) from None


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
                f"unknown field {_join(where, key)!r} in {context}{hint}. "
                f"Fix: use only {', '.join(names)}."
            )
    for f in fields:
        if f.name not in table and _is_required(f):
            table_field = dataclasses.is_dataclass(hints[f.name])
            add = f"a [{f.name}] table" if table_field else f"{f.name} = ... to {context}"
            raise ConfigError(f"{_join(where, f.name)} is required. Fix: add {add}.")


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


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _toml_lines(table: dict[str, Any], where: str) -> list[str]:
    """``table`` as TOML: its values, then each sub-table under its dotted header."""
    lines = [f"[{where}]"] if where else []
    lines += [
        f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items() if not isinstance(v, dict)
    ]
    for name, sub in table.items():
        if isinstance(sub, dict):
            lines += ["", *_toml_lines(sub, _join(where, name))]
    return lines


def _toml_key(key: str) -> str:
    """A bare TOML key, or a quoted one where the name needs it (a layer name with dots)."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_value(key)


def _toml_value(value: object) -> str:
    if value is None:
        return f'"{NONE}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # raw UTF-8 (JSON's surrogate-pair escapes are not TOML); DEL must be escaped in TOML
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    return repr(value)
