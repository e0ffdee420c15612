"""Scale constraints: free, power-of-two, short fixed-point; straight-through gradient."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from hwquant.core.errors import ConfigError
from hwquant.qat.scale import constrain_scale

scales = st.floats(1e-6, 1e4, allow_nan=False, allow_infinity=False)


@given(alpha=scales)
def test_pow2_gives_a_power_of_two_within_a_factor_sqrt2(alpha):
    out = constrain_scale(torch.tensor(alpha, dtype=torch.float64), "pow2").item()
    exponent = math.log2(out)
    assert exponent == round(exponent)
    assert 2**-0.5 * (1 - 1e-9) <= out / alpha <= 2**0.5 * (1 + 1e-9)


@given(alpha=scales, bits=st.integers(2, 12))
def test_fixed_gives_a_short_mantissa(alpha, bits):
    out = constrain_scale(torch.tensor(alpha, dtype=torch.float64), "fixed", bits).item()
    exponent = bits - 1 - math.floor(math.log2(alpha))
    mantissa = out * 2**exponent
    assert mantissa == round(mantissa) and 2 ** (bits - 1) <= mantissa <= 2**bits
    assert abs(out - alpha) <= 2.0**-exponent / 2 * (1 + 1e-9)


def test_free_is_identity_and_gradients_pass_straight_through():
    for constraint in ("free", "pow2", "fixed"):
        alpha = torch.tensor([0.3], requires_grad=True)
        constrain_scale(alpha, constraint).sum().backward()
        assert alpha.grad.item() == 1.0


def test_unknown_constraint_lists_the_allowed():
    with pytest.raises(ConfigError, match="free, pow2, fixed"):
        constrain_scale(torch.tensor(1.0), "log")
