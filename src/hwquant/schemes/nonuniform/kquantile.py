"""k-quantile quantizer: equal-mass bins of a fitted CDF (UNIQ, Baskin et al.; methods.md §1.1).

For a weight tensor ``W`` with CDF ``F`` and ``k = 2^b`` levels (methods.md §1.1, step 1)::

    thresholds  t_i = F⁻¹(i / k),          i = 1 .. k−1      (every bin holds mass 1/k)
    levels      q_i = F⁻¹((i + ½) / k),    i = 0 .. k−1      (the bin medians)

and a weight is quantized to the level of the bin that holds it: ``Q(w) = q_j`` with
``t_j ≤ w < t_{j+1}`` (``t_0 = −∞``, ``t_k = +∞``). In the uniformised domain ``u = F(w)`` this
is the uniform quantizer ``Q_u(u) = (⌊k·u⌋ + ½)/k`` (methods.md §1.1, step 2).

``F`` is a Gaussian ``N(μ, σ²)`` fitted to the layer's weights (UNIQ's choice), with
``F(w) = ½(1 + erf((w − μ)/(σ√2)))`` and ``F⁻¹(u) = μ + σ·Φ⁻¹(u)`` (``torch.special.ndtri``), or
the empirical CDF (the ablation of methods.md §1.3): the piecewise-linear curve through
``(w_(j), (j + ½)/n)`` of the sorted weights, so that ``F⁻¹`` interpolates the order statistics.
The fit is taken without gradient: ``F`` is held fixed within a step (methods.md §1.2(b) [D]:
it is re-fitted to the current weights at every step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch

from hwquant.core.errors import ConfigError

CDF_KINDS: tuple[str, ...] = ("gaussian", "empirical")


class FittedCDF(Protocol):
    """A continuous, increasing CDF and its inverse on (0, 1)."""

    def cdf(self, w: torch.Tensor) -> torch.Tensor:
        """``u = F(w)`` (differentiable in ``w``)."""
        ...

    def inverse(self, u: torch.Tensor) -> torch.Tensor:
        """``w = F⁻¹(u)`` for ``u`` in (0, 1) (differentiable in ``u``)."""
        ...


@dataclass(frozen=True)
class GaussianCDF:
    """CDF of ``N(mu, sigma²)``."""

    mu: torch.Tensor
    sigma: torch.Tensor

    def cdf(self, w: torch.Tensor) -> torch.Tensor:
        """``½(1 + erf((w − μ)/(σ√2)))``."""
        return 0.5 * (1.0 + torch.erf((w - self.mu) / (self.sigma * math.sqrt(2.0))))

    def inverse(self, u: torch.Tensor) -> torch.Tensor:
        """``μ + σ·Φ⁻¹(u)``."""
        return self.mu + self.sigma * torch.special.ndtri(u)


@dataclass(frozen=True)
class EmpiricalCDF:
    """Piecewise-linear empirical CDF through ``(sorted[j], (j + ½)/n)``, constant beyond the
    sample (``F`` = ½/n below the smallest weight and 1 − ½/n above the largest)."""

    sorted_values: torch.Tensor

    def _knots(self) -> torch.Tensor:
        n = self.sorted_values.numel()
        return (torch.arange(n, dtype=self.sorted_values.dtype) + 0.5) / n

    def cdf(self, w: torch.Tensor) -> torch.Tensor:
        """Interpolated rank of ``w`` in the sample, over ``n``."""
        return interpolate(w, self.sorted_values, self._knots().to(w.device))

    def inverse(self, u: torch.Tensor) -> torch.Tensor:
        """Interpolated order statistic at ``u``."""
        return interpolate(u, self._knots().to(u.device), self.sorted_values)


def interpolate(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear ``f(x)`` through the points ``(xp, fp)`` (``xp`` ascending), held
    constant outside ``[xp[0], xp[-1]]``; differentiable in ``x`` (``np.interp`` in torch).

    A flat run of equal ``xp`` (tied weights) is a jump, and ``f`` takes its upper end there.
    """
    x_c = x.clamp(xp[0], xp[-1])
    right = torch.searchsorted(xp, x_c.detach(), right=True).clamp(1, xp.numel() - 1)
    left = right - 1
    x0, x1, f0, f1 = xp[left], xp[right], fp[left], fp[right]
    width = x1 - x0
    slope = torch.where(width > 0, (f1 - f0) / torch.where(width > 0, width, 1.0), 0.0)
    return torch.where(width > 0, f0 + slope * (x_c - x0), f1)


def fit_cdf(w: torch.Tensor, kind: str = "gaussian", layer: str = "") -> FittedCDF:
    """Fit ``F`` to the weights ``w`` (no gradient flows into the fit).

    Raises:
        ConfigError: ``kind`` is unknown, or the weights have zero variance (every k-quantile
            bin would collapse onto one value).
    """
    if kind not in CDF_KINDS:
        raise ConfigError(f"cdf={kind!r} is not allowed. Fix: use one of {', '.join(CDF_KINDS)}.")
    flat = w.detach().reshape(-1)
    if flat.numel() < 2 or bool(flat.min() == flat.max()):
        where = f" of layer '{layer}'" if layer else ""
        value = float(flat[0]) if flat.numel() else float("nan")
        raise ConfigError(
            f"the {flat.numel()} weight(s){where} have zero variance (all equal {value:g}), so "
            "the k-quantile bins of a fitted CDF collapse onto one value. Fix: initialise the "
            "layer's weights (load the trained float checkpoint before prepare()), or use "
            "scheme 'llsq' for a model with constant weights."
        )
    if kind == "gaussian":
        return GaussianCDF(flat.mean(), flat.std())
    return EmpiricalCDF(flat.sort().values)


def kquantile_thresholds(cdf: FittedCDF, k: int) -> torch.Tensor:
    """``t_i = F⁻¹(i/k)`` for ``i = 1 .. k−1``: the k−1 inner bin edges, ascending."""
    return cdf.inverse(torch.arange(1, k, dtype=torch.float64) / k).float()


def kquantile_levels(cdf: FittedCDF, k: int) -> torch.Tensor:
    """``q_i = F⁻¹((i + ½)/k)`` for ``i = 0 .. k−1``: the bin medians, ascending."""
    return cdf.inverse((torch.arange(k, dtype=torch.float64) + 0.5) / k).float()


def assign_bins(w: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Index ``j`` of the bin ``t_j ≤ w < t_{j+1}`` of every weight (int64, ``w``'s shape)."""
    # contiguous: channels-last weights (the CIFAR benchmarks) would make bucketize copy and warn
    return torch.bucketize(w.detach().contiguous(), thresholds.to(w.device, w.dtype), right=True)
