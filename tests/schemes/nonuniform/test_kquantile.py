"""k-quantile thresholds and levels (UNIQ; methods.md §1.1): quantiles of the fitted CDF."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hwquant.core.errors import ConfigError
from hwquant.schemes.nonuniform.kquantile import (
    EmpiricalCDF,
    GaussianCDF,
    assign_bins,
    fit_cdf,
    interpolate,
    kquantile_levels,
    kquantile_thresholds,
)

bits = st.integers(1, 5)
means = st.floats(-1.0, 1.0)
stds = st.floats(0.01, 2.0)


@given(b=bits, mu=means, sigma=stds)
def test_gaussian_thresholds_and_levels_are_its_quantiles(b, mu, sigma):
    k = 2**b
    cdf = GaussianCDF(torch.tensor(mu), torch.tensor(sigma))
    t, q = kquantile_thresholds(cdf, k), kquantile_levels(cdf, k)
    assert t.shape == (k - 1,) and q.shape == (k,)
    # F(t_i) = i/k and F(q_i) = (i + 1/2)/k, checked against scipy-free closed forms
    u_t = 0.5 * (1 + torch.erf((t.double() - mu) / (sigma * np.sqrt(2))))
    u_q = 0.5 * (1 + torch.erf((q.double() - mu) / (sigma * np.sqrt(2))))
    assert torch.allclose(u_t, torch.arange(1, k, dtype=torch.float64) / k, atol=1e-5)
    assert torch.allclose(u_q, (torch.arange(k, dtype=torch.float64) + 0.5) / k, atol=1e-5)
    # sorted, distinct, and each level strictly inside its bin
    assert bool((q[1:] > q[:-1]).all())
    assert bool((t > q[:-1]).all()) and bool((t < q[1:]).all())


@settings(max_examples=50)
@given(b=bits, seed=st.integers(0, 2**16), n=st.integers(40, 400))
def test_empirical_thresholds_split_the_weights_into_equal_mass_bins(b, seed, n):
    k = 2**b
    w = torch.randn(n, generator=torch.Generator().manual_seed(seed))
    cdf = fit_cdf(w, "empirical")
    t = kquantile_thresholds(cdf, k)
    bins = assign_bins(w, t)
    counts = torch.bincount(bins, minlength=k)
    # every bin holds n/k weights up to the interpolation of one sample at each edge
    assert int((counts - n / k).abs().max()) <= 1
    q = kquantile_levels(cdf, k)
    assert bool((q[1:] > q[:-1]).all())


@given(b=bits, mu=means, sigma=stds, seed=st.integers(0, 2**16))
def test_assign_bins_puts_every_weight_between_its_thresholds(b, mu, sigma, seed):
    k = 2**b
    w = mu + sigma * torch.randn(64, generator=torch.Generator().manual_seed(seed))
    t = kquantile_thresholds(fit_cdf(w), k)
    j = assign_bins(w, t)
    edges = torch.cat([torch.tensor([-torch.inf]), t, torch.tensor([torch.inf])])
    assert bool((edges[j] <= w).all()) and bool((w < edges[j + 1]).all())
    assert int(j.min()) >= 0 and int(j.max()) <= k - 1


@given(seed=st.integers(0, 2**16), n=st.integers(2, 50))
def test_interpolate_matches_numpy_interp(seed, n):
    g = torch.Generator().manual_seed(seed)
    xp = torch.randn(n, dtype=torch.float64, generator=g).sort().values
    fp = torch.randn(n, dtype=torch.float64, generator=g)
    x = torch.randn(100, dtype=torch.float64, generator=g) * 2
    expected = np.interp(x.numpy(), xp.numpy(), fp.numpy())
    np.testing.assert_allclose(interpolate(x, xp, fp).numpy(), expected, rtol=1e-12, atol=1e-12)


def test_empirical_cdf_ranks_the_sample_and_inverts():
    w = torch.tensor([3.0, -1.0, 0.5, 2.0])
    cdf = fit_cdf(w, "empirical")
    assert isinstance(cdf, EmpiricalCDF)
    u = cdf.cdf(torch.tensor([-1.0, 0.5, 2.0, 3.0]))
    assert torch.allclose(u, torch.tensor([0.125, 0.375, 0.625, 0.875]))
    assert torch.allclose(cdf.inverse(u), torch.tensor([-1.0, 0.5, 2.0, 3.0]))


def test_the_fit_takes_no_gradient_but_the_cdf_passes_one():
    w = torch.randn(50, requires_grad=True)
    cdf = fit_cdf(w)
    assert not cdf.mu.requires_grad and not cdf.sigma.requires_grad
    cdf.cdf(w).sum().backward()
    assert w.grad is not None and bool((w.grad > 0).all())


@pytest.mark.parametrize("kind", ["gaussian", "empirical"])
def test_zero_variance_weights_are_an_error(kind):
    with pytest.raises(ConfigError, match=r"layer 'conv2'.*zero variance.*Fix:"):
        fit_cdf(torch.full((3, 3), 0.25), kind, layer="conv2")


def test_unknown_cdf_is_an_error():
    with pytest.raises(ConfigError, match=r"cdf='laplace'.*gaussian, empirical"):
        fit_cdf(torch.randn(10), "laplace")
