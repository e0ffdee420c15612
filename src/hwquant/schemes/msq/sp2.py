"""Sum-of-power-of-two (SP2) level set (Mix and Match, Chang et al. HPCA 2021; methods.md §2.1).

An m-bit SP2 weight (one sign bit) is the sum of two power-of-two terms::

    Q_SP2(m) = ±α · (q1 + q2) / N,    m = m1 + m2 + 1,  m1 ≥ m2 ≥ 0,
    q1 ∈ {0} ∪ {2^-1, 2^-2, …, 2^-(2^m1 - 1)},   q2 ∈ {0} ∪ {2^-1, …, 2^-(2^m2 - 1)},

with ``N = max(q1 + q2)`` so that the largest level is α (N = 1 whenever m2 ≥ 1; the split
m2 = 0, plain powers of two, has N = 1/2; methods.md §2.1 [D]: normalise by the largest level).
At 4 bits (m1 = 2, m2 = 1) the magnitudes are exactly {0, 1/8, 1/4, 1/2, 5/8, 3/4, 1}: 13 signed
levels, dense near 0 and sparse near ±1, which suits Gaussian-like rows.

Integer form. With ``E = 2^m1 - 1`` every level is an integer on the grid of unit ``α / I``,
``I = 2^E · N`` (``α / 2^(2^m1 - 1)`` when m2 ≥ 1)::

    level = sign · (2^shift1 + 2^shift2),   shift1 ∈ {0..E-1},  shift2 ∈ {E-(2^m2-1)..E-1},

(``q = 2^-i`` is ``2^(E-i)`` units) with a shift of −1 marking an absent term. The hardware
multiplies an activation ``x`` by such a weight as ``±((x << shift1) + (x << shift2))``: two
shifters and an adder in LUTs, no DSP. The largest integer, ``2^E``, needs ``E + 2`` signed bits,
one more than m at 4 bits.

Projection onto the nearest level, on the integer grid (``v = w / (α/I)``): the signed levels
``l_0 < … < l_K`` split the line at the midpoints ``t_k = (l_k + l_(k+1))/2`` and ``v`` takes the
level of its cell, ``l_j`` with ``j = #{k : t_k ≤ v}``. A tie (``v`` on a midpoint) goes to the
upper level, towards +∞, like ``round_half_up`` in :mod:`hwquant.core.intmath`; ``|v| > I`` clips to
±I. The midpoints are half-integers, exact in float32 and float64, so the fake-quantized value
and the integer codes come from one comparison and always agree.

Shift pairs. A magnitude can have more than one (q1, q2) pair (1/2 = q1 alone or q2 alone);
:meth:`SP2Levels.decompose` stores the first pair found with q2 taken absent first, then from
the largest term down, and q1 likewise: 1/2 is ``(shift1, shift2) = (E-1, -1)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from hwquant.core.errors import ConfigError
from hwquant.ir.intmodel import default_sp2_split

MIN_SP2_BITS = 2
MAX_SP2_M1 = 4
"""m1 ≤ 4 keeps the SP2 integers within 2^15 (E = 15), so that 16-bit weight ports and int8
shift codes hold them and every accumulation stays well inside int64."""
ABSENT = -1
"""Shift code of an absent power-of-two term."""


def allowed_splits(bits: int) -> list[tuple[int, int]]:
    """Every ``(m1, m2)`` with ``m1 + m2 + 1 = bits``, ``m1 ≥ m2 ≥ 0`` and ``m1 ≤ MAX_SP2_M1``."""
    first = max(1, default_sp2_split(bits)[0])
    return [(m1, bits - 1 - m1) for m1 in range(first, min(bits - 1, MAX_SP2_M1) + 1)]


@dataclass(frozen=True)
class SP2Levels:
    """The m-bit SP2 level set on its integer grid (unit α/I), with shift-pair codes.

    ``m1`` defaults to ``ceil((m-1)/2)`` and ``m2`` to ``m - 1 - m1``.
    """

    bits: int
    m1: int | None = None
    m2: int | None = None

    def __post_init__(self) -> None:
        bits = self.bits
        if not isinstance(bits, int) or bits < MIN_SP2_BITS or not allowed_splits(bits):
            raise ConfigError(
                f"SP2 bits={bits!r} cannot form a sum-of-power-of-two set. Fix: use an integer "
                f"in {MIN_SP2_BITS}..{2 * MAX_SP2_M1 + 1} (a sign bit and m1 + m2 bits with "
                f"m2 ≤ m1 ≤ {MAX_SP2_M1})."
            )
        m1 = default_sp2_split(bits)[0] if self.m1 is None else self.m1
        m2 = bits - 1 - m1 if self.m2 is None else self.m2
        if (m1, m2) not in allowed_splits(bits):
            splits = ", ".join(f"(m1={a}, m2={b})" for a, b in allowed_splits(bits))
            raise ConfigError(
                f"SP2 split m1={m1}, m2={m2} is not allowed at {bits} bits: an SP2 set needs "
                f"m1 + m2 + 1 = {bits}, m1 ≥ m2 ≥ 0 and m1 ≤ {MAX_SP2_M1}. Fix: use one of "
                f"{splits}."
            )
        object.__setattr__(self, "m1", m1)
        object.__setattr__(self, "m2", m2)

    @property
    def exponent(self) -> int:
        """``E = 2^m1 - 1``: the smallest q1 term is ``2^-E``, one integer unit before scaling."""
        return 2**self.m1 - 1

    @property
    def shifts1(self) -> range:
        """Shifts of the q1 term, ``2^-1 … 2^-(2^m1-1)`` on the integer grid."""
        return range(0, self.exponent)

    @property
    def shifts2(self) -> range:
        """Shifts of the q2 term, ``2^-1 … 2^-(2^m2-1)`` on the integer grid."""
        return range(self.exponent - (2**self.m2 - 1), self.exponent)

    @property
    def max_int(self) -> int:
        """``I``: the largest integer, standing for the level ±α."""
        top = 2 ** (self.exponent - 1)
        return 2 * top if self.m2 >= 1 else top

    @cached_property
    def _pairs(self) -> dict[int, tuple[int, int]]:
        """Each integer magnitude and its canonical ``(shift1, shift2)`` (module docstring)."""
        pairs: dict[int, tuple[int, int]] = {}
        for s2 in (ABSENT, *reversed(self.shifts2)):
            for s1 in (ABSENT, *reversed(self.shifts1)):
                magnitude = (1 << s1 if s1 >= 0 else 0) + (1 << s2 if s2 >= 0 else 0)
                pairs.setdefault(magnitude, (s1, s2))
        return pairs

    def magnitudes(self) -> torch.Tensor:
        """The distinct integer magnitudes ``0..I`` of the set (int64, ascending)."""
        return torch.tensor(sorted(self._pairs), dtype=torch.int64)

    @cached_property
    def _integers(self) -> torch.Tensor:
        mags = self.magnitudes()
        return torch.cat([-mags.flip(0), mags[1:]])

    def integers(self) -> torch.Tensor:
        """The signed integer levels (int64, ascending)."""
        return self._integers.clone()

    def levels(self) -> torch.Tensor:
        """The levels for α = 1: ``integers() / I`` (float64, ascending)."""
        return self.integers().double() / self.max_int

    @cached_property
    def _midpoints(self) -> torch.Tensor:
        ints = self._integers.double()
        return (ints[1:] + ints[:-1]) / 2

    def project(self, v: torch.Tensor) -> torch.Tensor:
        """Nearest integer level of ``v`` (the weight in units of α/I); ties go towards +∞.

        Returns float integers of ``v``'s dtype.
        """
        cuts = self._midpoints.to(device=v.device, dtype=v.dtype)
        # contiguous: channels-last weights would make bucketize copy and warn
        index = torch.bucketize(v.contiguous(), cuts, right=True)
        return self._integers.to(device=v.device, dtype=v.dtype)[index]

    @cached_property
    def _shift_table(self) -> np.ndarray:
        """``[I + 1, 2]`` int8: the shift pair of each magnitude, −2 where none exists."""
        table = np.full((self.max_int + 1, 2), -2, dtype=np.int8)
        for magnitude, pair in self._pairs.items():
            table[magnitude] = pair
        return table

    def decompose(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(sign, shift1, shift2)`` int8 arrays with ``codes = sign·(2^shift1 + 2^shift2)``.

        Raises:
            ConfigError: a code is not a level of this set.
        """
        magnitude = np.abs(codes)
        inside = magnitude <= self.max_int
        pairs = self._shift_table[np.where(inside, magnitude, 0)]
        if not inside.all() or (pairs[..., 0] == -2).any():
            bad = codes[~inside | (pairs[..., 0] == -2)]
            raise ConfigError(
                f"value(s) {bad.ravel()[:4].tolist()} are not {self.bits}-bit SP2 integers "
                f"(m1={self.m1}, m2={self.m2}). Fix: project the weights with SP2Levels.project "
                "first."
            )
        sign = np.sign(codes).astype(np.int8)
        return sign, pairs[..., 0].copy(), pairs[..., 1].copy()
