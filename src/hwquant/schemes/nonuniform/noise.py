"""UNIQ's noise injection in the uniformised domain (Baskin et al.; methods.md §1.1 step 3, §7.1).

The k-quantile quantizer is a uniform quantizer of step ``1/k`` in ``u = F(w)``; its error there
is (for a smooth ``F``) close to uniform on ``[−1/(2k), 1/(2k)]``. Training replaces it by that
noise and maps back::

    w̃ = F⁻¹( clip(F(w) + e, 1/(2k), 1 − 1/(2k)) ),    e ~ U[−1/(2k), 1/(2k)]

The path is differentiable (``dw̃/dw = f(w)/f(w̃)`` for a Gaussian ``F``), so no straight-through
estimator is needed. The clip is methods.md's ``ε`` [D] set to ``1/(2k)``: the noisy weight stays
within ``[q_0, q_{k−1}]``, the span of the levels, as the hard-quantized one does, and ``F⁻¹``
never meets 0 or 1. The noise comes from torch's global generator, which the trainer's
checkpoints save, so a resumed run draws the same noise.
"""

from __future__ import annotations

import torch

from hwquant.schemes.nonuniform.kquantile import FittedCDF


def uniformized_noise(w: torch.Tensor, cdf: FittedCDF, k: int) -> torch.Tensor:
    """``F⁻¹(clip(F(w) + e, 1/2k, 1 − 1/2k))`` with ``e ~ U[−1/2k, 1/2k]`` drawn per weight."""
    half_bin = 0.5 / k
    u = cdf.cdf(w)
    e = (torch.rand_like(u) * 2.0 - 1.0) * half_bin
    return cdf.inverse((u + e).clamp(half_bin, 1.0 - half_bin))
