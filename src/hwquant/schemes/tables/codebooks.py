"""Codebook families of table-based neural units (Covell et al. 2019; methods.md §3.1, §7.3).

A codebook is a strictly increasing float64 vector of levels ``c_0 < … < c_{k-1}``; a value
``x`` is quantized to the nearest level, ties upwards: its index is the number of midpoints
``m_i = (c_i + c_{i+1})/2`` with ``x ≥ m_i`` (:func:`nearest_index`). The families, each a
function ``(samples, k, unsigned) -> levels``:

* fixed (not fitted to the shape of the data, only to its range ``r = max |x|``):
  ``"fixed-uniform"``: k evenly spaced levels on ``[-r, r]`` (``[0, r]`` when unsigned);
  ``"fixed-pow2"``: 0 and ``±r·2^-e`` for e = 0, 1, …;
* adaptive parametric (a density fitted to the samples' moments):
  ``"gaussian"`` / ``"laplacian"``: the density's quantiles at ``(i + ½)/k``;
  ``"lloyd-max"``: the Lloyd-Max (minimum squared error) levels of the fitted Gaussian;
* adaptive model-free: ``"empirical"``: sample quantiles at ``(i + ½)/k``;
  ``"kmeans"``: 1-D k-means (Lloyd's algorithm) on the samples.

Unsigned (post-ReLU) data hold a point mass at 0, so every family keeps level 0 there and fits
its other ``k − 1`` levels to the positive samples (the parametric ones then fit the
half-normal / exponential density of those samples).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from hwquant.core.errors import ConfigError

Family = Callable[[torch.Tensor, int, bool], torch.Tensor]
_QUANTILE_GRID = 2048  # points of the fitted density on which Lloyd-Max runs
_KMEANS_ITERATIONS = 25
_MIN_GAP = 1e-6  # relative spacing forced between estimated levels


def nearest_index(x: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Index of the nearest level of each element of ``x`` (ties go to the upper level)."""
    mids = ((levels[1:] + levels[:-1]) / 2).to(x.dtype)
    return torch.bucketize(x.contiguous(), mids, right=True)


def check_codebook(name: str, levels: torch.Tensor) -> None:
    """Raise :class:`ConfigError` unless ``levels`` are finite and strictly increasing."""
    if levels.dim() != 1 or levels.numel() < 2 or not bool(torch.isfinite(levels).all()):
        raise ConfigError(
            f"codebook {name} must be a finite 1-D vector of at least 2 levels, got shape "
            f"{tuple(levels.shape)}. Fix: use at least 2 entries."
        )
    repeated = levels[1:] <= levels[:-1]
    if bool(repeated.any()):
        at = int(repeated.nonzero()[0])
        raise ConfigError(
            f"codebook {name} repeats or disorders its levels (level {at + 1} = "
            f"{float(levels[at + 1])!r} after {float(levels[at])!r}); a table row would be "
            "wasted and indices ambiguous. Fix: give strictly increasing, distinct levels."
        )


def _distinct(levels: torch.Tensor) -> torch.Tensor:
    """Sort and space estimated levels by at least ``_MIN_GAP·range`` (estimators may collide)."""
    levels = torch.sort(levels.double()).values
    gap = _MIN_GAP * max(float(levels[-1] - levels[0]), 1.0)
    for i in range(1, levels.numel()):
        levels[i] = torch.maximum(levels[i], levels[i - 1] + gap)
    return levels


def _span(samples: torch.Tensor) -> float:
    return max(float(samples.abs().max()), 1e-8) if samples.numel() else 1.0


def _fit(samples: torch.Tensor, k: int, unsigned: bool, signed_fit: Family) -> torch.Tensor:
    """Apply a signed-data estimator, or 0 plus the estimator on the positive part."""
    samples = samples.double().flatten()
    if not unsigned:
        return _distinct(signed_fit(samples, k, False))
    positive = samples[samples > 0]
    if positive.numel() == 0:
        positive = torch.ones(1, dtype=torch.float64)
    rest = signed_fit(positive, k - 1, True) if k > 2 else positive.mean().view(1)
    return _distinct(torch.cat([torch.zeros(1, dtype=torch.float64), rest]))


def _probabilities(k: int) -> torch.Tensor:
    return (torch.arange(k, dtype=torch.float64) + 0.5) / k


def fixed_uniform(samples: torch.Tensor, k: int, unsigned: bool) -> torch.Tensor:
    """k evenly spaced levels on ``[-r, r]``, or on ``[0, r]`` when unsigned."""
    r = _span(samples)
    lo = 0.0 if unsigned else -r
    return _distinct(torch.linspace(lo, r, k, dtype=torch.float64))


def fixed_pow2(samples: torch.Tensor, k: int, unsigned: bool) -> torch.Tensor:
    """0 and powers of two of the range: ``r·2^-e`` (unsigned) or ``±r·2^-e`` alternately."""
    r = _span(samples)
    values = [0.0]
    e = 0
    while len(values) < k:
        values.append(r * 2.0**-e)
        if not unsigned and len(values) < k:
            values.append(-r * 2.0**-e)
        e += 1
    return _distinct(torch.tensor(values, dtype=torch.float64))


def _gaussian_quantiles(samples: torch.Tensor, k: int, positive: bool) -> torch.Tensor:
    p = _probabilities(k)
    if positive:  # half-normal with σ² = E[x²]
        return samples.pow(2).mean().sqrt() * torch.special.ndtri((1 + p) / 2)
    return samples.mean() + samples.std().clamp_min(1e-12) * torch.special.ndtri(p)


def _laplacian_quantiles(samples: torch.Tensor, k: int, positive: bool) -> torch.Tensor:
    p = _probabilities(k)
    if positive:  # exponential with mean b
        return -samples.mean() * torch.log1p(-p)
    mu = samples.median()
    b = (samples - mu).abs().mean().clamp_min(1e-12)
    return mu - b * torch.sign(p - 0.5) * torch.log1p(-2 * (p - 0.5).abs())


def gaussian(samples: torch.Tensor, k: int, unsigned: bool) -> torch.Tensor:
    """Quantiles of the fitted Gaussian (half-normal on the positive part when unsigned)."""
    return _fit(samples, k, unsigned, _gaussian_quantiles)


def laplacian(samples: torch.Tensor, k: int, unsigned: bool) -> torch.Tensor:
    """Quantiles of the fitted Laplacian (exponential on the positive part when unsigned)."""
    return _fit(samples, k, unsigned, _laplacian_quantiles)


def _lloyd(points: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Lloyd's iterations: each level moves to the mean of the points nearest to it."""
    for _ in range(_KMEANS_ITERATIONS):
        index = nearest_index(points, levels)
        sums = torch.zeros_like(levels).index_add_(0, index, points)
        counts = torch.zeros_like(levels).index_add_(0, index, torch.ones_like(points))
        levels = torch.where(counts > 0, sums / counts.clamp_min(1), levels)
        levels = torch.sort(levels).values
    return levels


def lloyd_max(samples: torch.Tensor, k: int, unsigned: bool) -> torch.Tensor:
    """Lloyd-Max levels of the fitted Gaussian: Lloyd's algorithm on a fine quantile grid of
    the density (equal-mass points, so the grid's means are the density's centroids)."""

    def fit(s: torch.Tensor, n: int, positive: bool) -> torch.Tensor:
        grid = _gaussian_quantiles(s, _QUANTILE_GRID, positive)
        return _lloyd(grid, _gaussian_quantiles(s, n, positive))

    return _fit(samples, k, unsigned, fit)


def _sample_quantiles(samples: torch.Tensor, k: int, positive: bool) -> torch.Tensor:
    return torch.quantile(samples, _probabilities(k))


def empirical(samples: torch.Tensor, k: int, unsigned: bool) -> torch.Tensor:
    """Sample quantiles at ``(i + ½)/k`` (equal-mass bins)."""
    return _fit(samples, k, unsigned, _sample_quantiles)


def kmeans(samples: torch.Tensor, k: int, unsigned: bool) -> torch.Tensor:
    """1-D k-means (Lloyd's algorithm) on the samples, started at the sample quantiles."""

    def fit(s: torch.Tensor, n: int, positive: bool) -> torch.Tensor:
        return _lloyd(s, _sample_quantiles(s, n, positive))

    return _fit(samples, k, unsigned, fit)


FAMILIES: dict[str, Family] = {
    "fixed-uniform": fixed_uniform,
    "fixed-pow2": fixed_pow2,
    "gaussian": gaussian,
    "laplacian": laplacian,
    "lloyd-max": lloyd_max,
    "empirical": empirical,
    "kmeans": kmeans,
}
"""Codebook family name -> estimator ``(samples, k, unsigned) -> levels``."""


def estimate(family: str, samples: torch.Tensor, k: int, unsigned: bool) -> torch.Tensor:
    """Levels of ``family`` with ``k`` entries fitted to ``samples`` (checked distinct)."""
    if family not in FAMILIES:
        raise ConfigError(
            f"codebook family {family!r} is unknown. Fix: use one of {', '.join(FAMILIES)}."
        )
    levels = FAMILIES[family](samples.detach().double().flatten(), k, unsigned)
    check_codebook(family, levels)
    return levels


def pixel_levels(samples: torch.Tensor, k: int) -> torch.Tensor:
    """k evenly spaced levels on ``[min, max]`` of the samples: for normalised 8-bit images
    with k = 256 these are the 256 pixel values, so the first table is 256·|W| entries and the
    network input index is the pixel itself (methods.md §3.3, "First layer input")."""
    samples = samples.double().flatten()
    return _distinct(
        torch.linspace(float(samples.min()), float(samples.max()), k, dtype=torch.float64)
    )
