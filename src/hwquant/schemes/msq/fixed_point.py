"""Symmetric m-bit fixed-point level set (Mix and Match's fixed-point rows; methods.md §2.1).

With ``Q = 2^(m-1) - 1`` the level set of an m-bit fixed-point weight (one sign bit) is::

    Q_FP(m) = α · {-Q, …, -1, 0, 1, …, Q} / Q          (2^m - 1 levels in [-α, α])

Its integer form is the grid of unit ``α/Q``: the integer of a weight is ``k ∈ {-Q..Q}`` and its
value ``(α/Q)·k``. A DSP multiplies activations by ``k``.

Projection onto the nearest level, on the integer grid (``v = w/(α/Q)``)::

    k = clamp(round_half_up(v), -Q, Q)

``round_half_up`` (ties towards +∞) is hwquant's one rounding rule (:mod:`hwquant.core.intmath`);
the SP2 set (:mod:`hwquant.schemes.msq.sp2`) breaks its ties the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hwquant.core.errors import ConfigError
from hwquant.core.intmath import round_half_up

MIN_FIXED_BITS, MAX_FIXED_BITS = 2, 16


@dataclass(frozen=True)
class FixedPointLevels:
    """The m-bit symmetric fixed-point level set on its integer grid (unit α/Q)."""

    bits: int

    def __post_init__(self) -> None:
        if not isinstance(self.bits, int) or not MIN_FIXED_BITS <= self.bits <= MAX_FIXED_BITS:
            raise ConfigError(
                f"fixed-point bits={self.bits!r} cannot form a symmetric level set (one sign bit "
                f"and at least one magnitude bit). Fix: use an integer in "
                f"{MIN_FIXED_BITS}..{MAX_FIXED_BITS}."
            )

    @property
    def max_int(self) -> int:
        """``Q = 2^(m-1) - 1``: the largest integer, standing for the level ±α."""
        return 2 ** (self.bits - 1) - 1

    def integers(self) -> torch.Tensor:
        """The signed integer levels ``-Q..Q`` (int64, ascending)."""
        return torch.arange(-self.max_int, self.max_int + 1, dtype=torch.int64)

    def levels(self) -> torch.Tensor:
        """The levels for α = 1: ``{-Q..Q}/Q`` (float64, ascending)."""
        return self.integers().double() / self.max_int

    def project(self, v: torch.Tensor) -> torch.Tensor:
        """Nearest integer level of ``v`` (the weight in units of α/Q); ties go towards +∞.

        Returns float integers of ``v``'s dtype.
        """
        return round_half_up(v).clamp_(-self.max_int, self.max_int)
