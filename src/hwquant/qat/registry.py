"""The scheme registry: each quantization scheme registers one :class:`SchemeHandler`.

The pattern is torchao's: a scheme is named in :class:`~hwquant.qat.recipe.Recipe` and carries
a frozen options dataclass (``Recipe.msq``, ``Recipe.nonuniform``, ``Recipe.tables``); its
handler, registered by ``hwquant.schemes.<name>``, says what ``prepare`` and ``lower`` do for
it. This module imports nothing of the schemes, so ``prepare`` and ``lower`` (this layer)
dispatch through it while the schemes (a higher layer) fill it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hwquant.core.npzfile import file_format
from hwquant.core.registry import Registry
from hwquant.ir.intmodel import IntModel


@dataclass(frozen=True)
class EngineTrace:
    """A lowered model run on a float batch: what :func:`hwquant.verify` compares and checks
    (``SchemeHandler.trace`` returns it)."""

    input_codes: torch.Tensor  # the engine's input (codes or codebook indices)
    input_range: tuple[int, int]  # the smallest and largest input code the quantizer makes
    values: dict[str, torch.Tensor]  # layer name -> its integer output
    overflows: dict[str, int] = field(default_factory=dict)  # layer -> accumulator overflows


@dataclass(frozen=True)
class SchemeHandler:
    """What a scheme adds to the pipeline; a field left None takes the common path.

    ``weight_quantizer(recipe, bits, weight, per_channel)`` makes the weight quantizer of an
    inner layer; ``setup(qat_model, recipe)`` runs once its QAT layers are built; ``prepare``
    and ``lower`` replace the common passes for a scheme whose activations change too (tables),
    and ``trace(lowered, x)`` then runs what its ``lower`` returns on a float batch for
    :func:`hwquant.verify` (an :class:`EngineTrace`). ``lowered`` is the class of what
    ``lower`` returns (:func:`hwquant.verify` refuses another; a report measures it as such;
    its ``format_name`` and ``load`` read its files back: :func:`load_lowered`).
    ``accumulator_aware``: its inner weight layers take an accumulator bound
    (``Recipe.accumulator_bits``: the A2Q-style bounded linear weights of LLSQ).

    >>> from hwquant.schemes import get
    >>> get("msq").lowered.__name__, get("tables").lowered.__name__
    ('IntModel', 'TableModel')
    >>> get("msq").lowers_to_intmodel, get("tables").lowers_to_intmodel
    (True, False)
    """

    name: str
    options: type | None = None
    weight_quantizer: Callable[..., Any] | None = None
    setup: Callable[..., None] | None = None
    prepare: Callable[..., Any] | None = None
    lower: Callable[..., Any] | None = None
    trace: Callable[..., Any] | None = None
    lowered: type = IntModel
    accumulator_aware: bool = False

    @property
    def lowers_to_intmodel(self) -> bool:
        """Whether ``lower`` returns an IntModel (what the integer engine runs and
        :mod:`hwquant.hw` estimates), not a model of the scheme's own kind."""
        return self.lowered is IntModel


_SCHEMES: Registry[SchemeHandler] = Registry("scheme")


def register_scheme(handler: SchemeHandler) -> SchemeHandler:
    """Register ``handler`` under its name (once)."""
    return _SCHEMES.add(handler.name, handler)


def available() -> tuple[str, ...]:
    """The registered scheme names, in registration order."""
    return _SCHEMES.names()


def get_scheme(name: str) -> SchemeHandler:
    """The handler of scheme ``name``.

    Raises:
        ConfigError: no scheme of that name is registered; the message lists those that are.
    """
    return _SCHEMES.get(name)


def load_lowered(path: str | Path) -> Any:
    """The lowered model saved in ``path``, of whichever registered kind it is: the ``lowered``
    class whose ``format_name`` the file's header names (``format``, docs/intmodel_format.md)
    reads it. A file of no registered format (unreadable, foreign) is read as an IntModel,
    whose reader names what is wrong and the fix."""
    kind = file_format(path)
    for handler in _SCHEMES.entries():
        if handler.lowered.format_name == kind:
            return handler.lowered.load(path)
    return IntModel.load(path)
