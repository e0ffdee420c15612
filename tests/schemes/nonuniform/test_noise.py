"""UNIQ noise injection in the uniformised domain (methods.md §1.1 step 3)."""

from __future__ import annotations

import math

import torch
from hypothesis import given
from hypothesis import strategies as st

from hwquant.schemes.nonuniform.kquantile import fit_cdf, kquantile_levels
from hwquant.schemes.nonuniform.noise import uniformized_noise


@given(
    b=st.integers(1, 5), seed=st.integers(0, 2**16), kind=st.sampled_from(["gaussian", "empirical"])
)
def test_noise_moves_a_weight_by_at_most_half_a_bin_in_u(b, seed, kind):
    k = 2**b
    torch.manual_seed(seed)
    w = torch.randn(256, dtype=torch.float64) * 0.3 + 0.1
    cdf = fit_cdf(w, kind)
    noisy = uniformized_noise(w, cdf, k)
    u, u_noisy = cdf.cdf(w), cdf.cdf(noisy)
    tol = 1e-9
    assert bool(((u_noisy - u).abs() <= 0.5 / k + tol).all())
    assert bool((u_noisy >= 0.5 / k - tol).all()) and bool((u_noisy <= 1 - 0.5 / k + tol).all())
    # so the noisy weights stay within the span of the levels, as hard-quantized ones do
    levels = kquantile_levels(cdf, k).double()
    assert bool((noisy >= levels[0] - 1e-6).all()) and bool((noisy <= levels[-1] + 1e-6).all())


def test_noise_is_differentiable_without_ste():
    """For a Gaussian F, dw̃/dw = f(w)/f(w̃) (inside the clip): the chain rule, not an STE."""
    torch.manual_seed(0)
    w = (torch.randn(500, dtype=torch.float64) * 0.1).requires_grad_()
    cdf = fit_cdf(w)
    noisy = uniformized_noise(w, cdf, 4)
    noisy.sum().backward()

    def density(x: torch.Tensor) -> torch.Tensor:
        z = (x - cdf.mu) / cdf.sigma
        return torch.exp(-0.5 * z * z) / (cdf.sigma * math.sqrt(2 * math.pi))

    u_noisy = cdf.cdf(noisy.detach())
    inside = (u_noisy > 0.125 + 1e-9) & (u_noisy < 0.875 - 1e-9)  # k = 4: the clip is 1/8
    ratio = density(w.detach()) / density(noisy.detach())
    assert bool(inside.any()) and bool((~inside).any())
    assert torch.allclose(w.grad[inside], ratio[inside], rtol=1e-6)
    assert bool((w.grad[~inside] == 0).all())


def test_the_same_generator_state_draws_the_same_noise():
    w = torch.randn(100)
    cdf = fit_cdf(w)
    torch.manual_seed(7)
    first = uniformized_noise(w, cdf, 8)
    torch.manual_seed(7)
    assert torch.equal(uniformized_noise(w, cdf, 8), first)
    assert not torch.equal(uniformized_noise(w, cdf, 8), first)
