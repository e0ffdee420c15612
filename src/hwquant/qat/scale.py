"""Scale constraints: which real numbers a quantizer scale α may take.

* ``free``: any positive float;
* ``pow2``: α = 2^round(log2 α), so requantization is a pure shift (LLSQ's ``log_shift``);
* ``fixed``: α = m · 2^-e with an n-bit integer mantissa m (LLSQ's ``truncation``:
  e = n - 1 - floor(log2 α), m = round(α · 2^e) ∈ [2^(n-1), 2^n]), so requantization is a short
  multiply and a shift.

The constraint is applied in the forward pass with a straight-through gradient, so the learned
parameter stays free and the value used is always the constrained one.
"""

from __future__ import annotations

import torch

from hwquant.core.errors import ConfigError
from hwquant.core.intmath import round_half_up
from hwquant.qat.ste import replace_forward

SCALE_CONSTRAINTS: tuple[str, ...] = ("free", "pow2", "fixed")


def constrain_scale(alpha: torch.Tensor, constraint: str, mantissa_bits: int = 8) -> torch.Tensor:
    """Project positive scales onto the constraint's value set (straight-through gradient)."""
    if constraint == "free":
        return alpha
    if constraint == "pow2":
        return replace_forward(alpha, torch.exp2(round_half_up(torch.log2(alpha))))
    if constraint == "fixed":
        exponent = mantissa_bits - 1 - torch.floor(torch.log2(alpha))
        step = torch.exp2(-exponent)
        return replace_forward(alpha, round_half_up(alpha / step) * step)
    raise ConfigError(
        f"scale constraint {constraint!r} is not allowed. Fix: use one of "
        f"{', '.join(SCALE_CONSTRAINTS)}."
    )
