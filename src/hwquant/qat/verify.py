"""``verify(qat_model, int_model, x)``: does the integer engine equal the QAT model, bit for bit?

The QAT model runs in eval mode with its layers' integer outputs captured
(:func:`hwquant.qat.nn.capture_codes`); the engine runs the IntModel on the same input codes. Every
layer's output is compared with exact equality, and the first mismatch is located.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from hwquant.engine import run
from hwquant.ir.intmodel import IntModel
from hwquant.qat.nn import capture_codes


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

    @property
    def exact(self) -> bool:
        """True when every integer matched."""
        return self.mismatches == 0

    def __str__(self) -> str:
        if self.exact:
            return f"bit-exact: {self.compared} integers in {len(self.per_layer)} layers match"
        f = self.first
        text = (
            f"{self.mismatches} of {self.compared} integers differ; first in layer "
            f"'{f.layer}' at {f.index}: QAT {f.qat}, engine {f.engine}"
        )
        overflowing = {k: v for k, v in self.overflows.items() if v}
        if overflowing:
            text += (
                f". The engine's accumulators overflowed in {overflowing} (the QAT model has no "
                "accumulator width): widen them with set_accumulator()"
            )
        return text


@torch.no_grad()
def verify(qat_model: nn.Module, int_model: IntModel, x: torch.Tensor) -> VerifyReport:
    """Compare every layer of ``int_model`` with ``qat_model`` (eval mode) on input ``x``."""
    was_training = qat_model.training
    qat_model.eval()
    try:
        with capture_codes(qat_model) as qat_codes:
            qat_model(x)
    finally:
        qat_model.train(was_training)
    result = run(int_model, int_model.quantize_input(x), trace=True)
    compared = mismatches = 0
    per_layer: dict[str, int] = {}
    first: Mismatch | None = None
    for name, expected in qat_codes.items():
        got = result.values[name].to(expected.device)
        if got.shape != expected.shape:
            bad = expected.numel()
            if first is None:
                shapes = f"shape QAT {tuple(expected.shape)}, engine {tuple(got.shape)}"
                first = Mismatch(f"{name} ({shapes})", (), 0, 0)
        else:
            diff = got != expected
            bad = int(diff.sum())
            if bad and first is None:
                index = tuple(int(i) for i in diff.nonzero()[0])
                first = Mismatch(name, index, int(expected[index]), int(got[index]))
        per_layer[name] = bad
        compared += expected.numel()
        mismatches += bad
    overflows = {name: stats.overflows for name, stats in result.stats.items()}
    return VerifyReport(compared, mismatches, per_layer, first, overflows)
