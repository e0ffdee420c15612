"""``verify(qat_model, lowered, x)``: does the lowered model's engine equal the QAT model, bit for
bit, and does the comparison prove anything?

The QAT model runs in eval mode with every layer's integer output captured
(:func:`hwquant.qat.nn.base.capture_outputs`: the codes of the QAT layers, the codebook indices
of the table layers); the lowered model runs on the same input through its engine: the integer
engine for an :class:`~hwquant.ir.intmodel.IntModel`, the scheme's own for what its ``lower``
returns (the table engine for a ``TableModel``, through ``SchemeHandler.trace``). Every layer's
output is compared with exact equality, and the first mismatch is located.

An op the lowered model keeps outside the integer graph (a final softmax: the IntModel outputs
the logits) is named in the report's ``notes``; it is not a warning (the logits are compared).

Equality proves little when the integers compared carry no information, so the report warns:

* a quantizer still at its initial scale (its ``initialized`` flag never set: it has never seen
  data in training or calibration, so weights round to a handful of codes, often all zero);
* a layer whose output codes are all zero, or all one value, on ``x`` (also the input's codes);
* an input ``x`` that never reaches the calibrated range: its codes span less than
  :data:`INPUT_SPAN` of the input quantizer's code range (most of every layer's range is then
  untested).

``strict=True`` raises :class:`~hwquant.core.errors.VerificationError` on any warning or
mismatch instead of returning the report. A comparison of no integers at all (no layer
captured, or an empty batch) could not fail, so it is refused whatever ``strict`` says.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from hwquant.core.errors import HwquantError, VerificationError
from hwquant.core.intmath import qrange
from hwquant.engine import run
from hwquant.ir.intmodel import IntModel
from hwquant.qat.nn.base import BoundModule, capture_outputs
from hwquant.qat.registry import EngineTrace, get_scheme

INPUT_SPAN = 0.25
"""Smallest share of the input code range the verification batch must span."""
_LISTED = 4  # names listed in one warning


@dataclass(frozen=True)
class Mismatch:
    """Where the first differing integer is: layer, index, QAT value, engine value."""

    layer: str
    index: tuple[int, ...]
    qat: int
    engine: int


@dataclass(frozen=True)
class VerifyReport:
    """Result of :func:`verify`."""

    compared: int  # integers compared, over every layer
    mismatches: int
    per_layer: dict[str, int] = field(default_factory=dict)  # layer -> mismatching integers
    first: Mismatch | None = None
    overflows: dict[str, int] = field(default_factory=dict)  # layer -> engine overflows
    warnings: tuple[str, ...] = ()  # why an exact result proves little (see the module doc)
    notes: tuple[str, ...] = ()  # ops of the lowered model outside the integer graph

    @property
    def exact(self) -> bool:
        """True when every integer matched."""
        return self.mismatches == 0

    def __str__(self) -> str:
        if self.exact:
            text = f"bit-exact: {self.compared} integers in {len(self.per_layer)} layers match"
        else:
            f = self.first
            text = (
                f"{self.mismatches} of {self.compared} integers differ; first in layer "
                f"'{f.layer}' at {f.index}: QAT {f.qat}, engine {f.engine}"
            )
        overflowing = {k: v for k, v in self.overflows.items() if v}
        if overflowing and not self.exact:
            text += (
                f". The engine's accumulators overflowed in {overflowing} (the QAT model has no "
                "accumulator width): widen them with set_accumulator()"
            )
        if self.warnings:
            text += ", but this proves little:\n" + "\n".join(f"  - {w}" for w in self.warnings)
        if self.notes:
            text += "\nnot compared:\n" + "\n".join(f"  - {n}" for n in self.notes)
        return text


def _names(names: list[str]) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:_LISTED])
    return shown + (f" and {len(names) - _LISTED} more" if len(names) > _LISTED else "")


def untrained_quantizers(model: nn.Module) -> list[str]:
    """Names of the quantizers of ``model`` whose ``initialized`` flag is still False."""
    return [
        name
        for name, m in model.named_modules()
        if isinstance(getattr(m, "initialized", None), torch.Tensor) and not bool(m.initialized)
    ]


def _warnings(untrained: list[str], codes: dict[str, torch.Tensor], trace: EngineTrace) -> list:
    found = []
    if untrained:
        found.append(
            f"{len(untrained)} quantizers still have their initial scale (they never saw "
            f"data): {_names(untrained)}. Fix: train the prepared model, or calibrate it "
            "(model.train(); with torch.no_grad(): model(batch)), then lower it again."
        )
    zero = [name for name, c in codes.items() if c.numel() > 1 and not c.any()]
    constant = [
        f"{name}={int(c.flatten()[0])}"
        for name, c in codes.items()
        if c.numel() > 1 and c.any() and bool((c == c.flatten()[0]).all())
    ]
    if zero:
        found.append(f"every output code is 0 in {_names(zero)}")
    if constant:
        found.append(f"every output code is one value in {_names(constant)}")
    lo, hi = trace.input_range
    x = trace.input_codes
    if x.numel() and hi > lo:
        a, b = int(x.min()), int(x.max())
        if b - a < INPUT_SPAN * (hi - lo):
            found.append(
                f"the input's codes span only [{a}, {b}] of the calibrated [{lo}, {hi}], so "
                "most of every layer's range is untested. Fix: verify on a batch of real data "
                "(the data the model was trained on, normalised the same way)."
            )
    return found


def _refuse_nothing_compared(what: str, fix: str) -> VerificationError:
    """A comparison of no integers would report "bit-exact" whatever the engine did."""
    return VerificationError(
        f"verify() would compare no integers: {what}, so its equality would prove nothing. "
        f"Fix: {fix}"
    )


def intmodel_trace(int_model: IntModel, x: torch.Tensor) -> EngineTrace:
    """Every node of ``int_model`` run by the integer engine on float batch ``x``."""
    codes = int_model.quantize_input(x)
    result = run(int_model, codes, trace=True)
    overflows = {name: stats.overflows for name, stats in result.stats.items()}
    span = qrange(int_model.input.bits, int_model.input.signed)
    return EngineTrace(codes, span, result.values, overflows)


def _engine_trace(qat_model: nn.Module, lowered: object, x: torch.Tensor) -> EngineTrace:
    recipe = getattr(qat_model, "hwquant_recipe", None)
    if recipe is None:
        raise HwquantError(
            f"verify() takes the QAT model returned by hwquant.prepare(), got "
            f"{type(qat_model).__name__}. Fix: verify(qat, hwquant.lower(qat, x), x)."
        )
    handler = get_scheme(recipe.scheme)
    if not isinstance(lowered, handler.lowered):
        kind = handler.lowered.__name__
        raise HwquantError(
            f"verify() got a {type(lowered).__name__}, but a {recipe.scheme!r} QAT model lowers "
            f"to {'an' if kind[0] in 'AEIOU' else 'a'} {kind}. Fix: verify(qat, "
            "hwquant.lower(qat, x), x)."
        )
    if handler.trace is not None:
        return handler.trace(lowered, x)
    return intmodel_trace(lowered, x)


@torch.no_grad()
def verify(
    qat_model: nn.Module, lowered: object, x: torch.Tensor, *, strict: bool = False
) -> VerifyReport:
    """Compare every layer of ``lowered`` (an IntModel, or a TableModel for the tables scheme)
    with ``qat_model`` (eval mode) on input ``x``; see the module docstring for the warnings.

    Raises:
        VerificationError: with ``strict``, the report is not exact or has warnings; always,
            when no integer was compared (no layer output captured, or ``x`` holds no sample).
        HwquantError: ``qat_model`` is not a prepared model, or ``lowered`` is not of the kind
            its scheme lowers to.
    """
    if x.numel() == 0:
        raise _refuse_nothing_compared(
            f"x of shape {tuple(x.shape)} holds no sample", "verify on a batch of samples."
        )
    untrained = untrained_quantizers(qat_model)  # before the forward, which may initialise
    was_training = qat_model.training
    qat_model.eval()
    try:
        with capture_outputs(qat_model, BoundModule) as qat_codes:
            qat_model(x)
    finally:
        qat_model.train(was_training)
    trace = _engine_trace(qat_model, lowered, x)
    if not any(codes.numel() for codes in qat_codes.values()):
        raise _refuse_nothing_compared(
            f"the QAT model emitted no layer output on x ({len(qat_codes)} captured, all empty)",
            "pass the model hwquant.prepare() returned, and an input that runs through it.",
        )
    compared = mismatches = 0
    per_layer: dict[str, int] = {}
    first: Mismatch | None = None
    for name, expected in qat_codes.items():
        got = trace.values.get(name)
        if got is None or got.shape != expected.shape:
            bad = expected.numel()
            if first is None:
                where = "missing" if got is None else f"shape {tuple(got.shape)}"
                shapes = f"shape QAT {tuple(expected.shape)}, engine {where}"
                first = Mismatch(f"{name} ({shapes})", (), 0, 0)
        else:
            diff = got.to(expected.device) != expected
            bad = int(diff.sum())
            if bad and first is None:
                index = tuple(int(i) for i in diff.nonzero()[0])
                first = Mismatch(name, index, int(expected[index]), int(got[index]))
        per_layer[name] = bad
        compared += expected.numel()
        mismatches += bad
    codes = {"network input": trace.input_codes, **qat_codes}
    warnings = tuple(_warnings(untrained, codes, trace))
    nodes = lowered.nodes if isinstance(lowered, IntModel) else []
    notes = tuple(f"'{n.name}' ({n.op}) {n.outside}" for n in nodes if n.outside)
    report = VerifyReport(compared, mismatches, per_layer, first, trace.overflows, warnings, notes)
    if strict and (warnings or not report.exact):
        raise VerificationError(
            f"verify(strict=True): {report}\nFix: see each item above; strict=False returns "
            "the report instead."
        )
    return report
