"""LLSQ: learned linear symmetric quantizer (Zhao et al., ICLR 2020; methods.md §4).

Forward (methods.md §4.1), with a scale α > 0 and no zero point::

    x_int = clamp(round_half_up(x / α), Q_n, Q_p),    x_q = α · x_int

signed: ``Q_n = -2^(b-1), Q_p = 2^(b-1) - 1``; unsigned (after ReLU): ``Q_n = 0, Q_p = 2^b - 1``.

Gradients (methods.md §4.2):

* ∂x_q/∂x is the straight-through estimator; for activations it is zero outside
  ``(Q_n·α, Q_p·α)``, for weights it passes everywhere.
* ∂L/∂α is LLSQ's *simulated* gradient, not the task loss's: with the Lp quantization error
  ``E(a) = mean |x − Q_a(x)|^p`` compared at α/2, α and 2α (a1 = E(α) − E(α/2),
  a2 = E(2α) − E(α), g1 = [a1 ≥ 0], g2 = [a2 > 0], g3 = [a1 + a2 ≥ 0]) the scale should grow
  when ``(¬g1 ∧ ¬g2) ∨ (g1 ∧ ¬g2 ∧ ¬g3)`` and shrink when ``(g1 ∧ g2) ∨ (g1 ∧ ¬g2 ∧ g3)``;
  the gradient is ``−α²`` or ``+α²`` accordingly, 0 otherwise.
* LSQ's gradient (Esser et al. 2020) is an option: ``∂x_q/∂α = round(x/α) − x/α`` inside the
  range and ``Q_n`` or ``Q_p`` outside, scaled by ``g = 1/√(N·Q_p)``; ``x`` gets the STE
  masked outside the range (weights too, as in LSQ).

Initialisation, from the first batch seen (weights: the weights), by ``init``:

* ``"peak"``, as in the LLSQ code (methods.md §4.1): weights per channel ``max|W_c| / Q_p``,
  per tensor ``max|W| / (Q_p + 1)``; activations ``max|x| / (Q_p + 1)`` for b ≥ 4 and
  ``max|x| / (2·Q_p)`` for b ≤ 3. At 2-bit signed weights (``Q_p = 1``) the channel's
  largest weight is one step, so nearly every weight rounds to 0: a dead start.
* ``"min_error"``: the scale that minimises the error LLSQ's scale rule descends,
  ``α* = argmin_α mean |x − α·clamp(round_half_up(x/α), Q_n, Q_p)|^p`` (p = ``norm``; 2: the
  MSE), per scale, by :func:`min_error_scale` over a grid of candidates.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import get_args

import numpy as np
import torch
from torch import nn

from hwquant.core.errors import ConfigError, check_finite
from hwquant.core.intmath import qrange, round_half_up, to_codes
from hwquant.qat.host_mirror import HostMirrored
from hwquant.qat.recipe import ScaleInit, check_bits
from hwquant.qat.scale import constrain_scale

_TINY = 1e-12
SCALE_INITS: tuple[str, ...] = get_args(ScaleInit)
"""The initial-scale rules (``Recipe.scale_init``)."""
INIT_GRID = 128
"""Candidates of :func:`min_error_scale`: ``α_max·k/INIT_GRID``, k = 1..INIT_GRID."""
INIT_SAMPLES = 65_536
"""Activation elements (an even stride through the first batch) a "min_error" init reads."""


@dataclass(frozen=True)
class LinearQuantSpec:
    """Integer export of a linear quantizer: value = scale · code, code in [qmin, qmax]."""

    bits: int
    signed: bool
    scale: np.ndarray  # float64, one entry per tensor or per output channel

    @property
    def qmin(self) -> int:
        """Smallest code."""
        return qrange(self.bits, self.signed)[0]

    @property
    def qmax(self) -> int:
        """Largest code."""
        return qrange(self.bits, self.signed)[1]


class _LLSQFakeQuant(torch.autograd.Function):
    """Fake quantization with the STE for ``x`` and LLSQ's precomputed ±α² for ``α``.

    Written for few passes over the data: ``v = x/α`` is clamped, rounded and scaled in place
    (clamping first gives the same codes, the bounds being integers). The activation mask,
    ``Q_n·α < x < Q_p·α``, comes from one fused ``hardtanh_backward`` pass on the CPU; on other
    devices it is computed in the forward pass, which needs no host read of α.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        x: torch.Tensor,
        alpha: torch.Tensor,
        lo: int,
        hi: int,
        clip_grad: bool,
        alpha_grad: torch.Tensor,
    ) -> torch.Tensor:
        v = x / alpha
        ctx.bounds = None
        if clip_grad and x.device.type == "cpu":
            step = float(alpha)
            ctx.bounds = (lo * step, hi * step)
            ctx.save_for_backward(x, alpha_grad)
        elif clip_grad:
            ctx.save_for_backward((v > lo) & (v < hi), alpha_grad)
        else:
            ctx.save_for_backward(None, alpha_grad)
        return v.clamp_(lo, hi).add_(0.5).floor_().mul_(alpha)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        saved, alpha_grad = ctx.saved_tensors
        if ctx.bounds is not None:
            grad_x = torch.ops.aten.hardtanh_backward(grad, saved, *ctx.bounds)
        else:
            grad_x = grad if saved is None else grad * saved
        return grad_x, alpha_grad, None, None, None, None


class _LSQFakeQuant(torch.autograd.Function):
    """LSQ (Esser et al. 2020, eq. 3): masked STE for ``x``; for ``α`` the sum of
    ``round(v) − v`` inside the range and ``Q_n``/``Q_p`` outside (``v = x/α``), times
    ``grad_factor``."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        x: torch.Tensor,
        alpha: torch.Tensor,
        lo: int,
        hi: int,
        grad_factor: float,
    ) -> torch.Tensor:
        v = x / alpha
        codes = round_half_up(v).clamp_(lo, hi)
        ctx.save_for_backward(v, codes)
        ctx.shape, ctx.lo, ctx.hi, ctx.grad_factor = alpha.shape, lo, hi, grad_factor
        return codes * alpha

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        v, codes = ctx.saved_tensors
        inside = (v >= ctx.lo) & (v <= ctx.hi)
        slope = torch.where(inside, codes - v, codes)  # codes hold lo/hi outside the range
        grad_alpha = (grad * slope).sum_to_size(ctx.shape) * ctx.grad_factor
        return grad * inside, grad_alpha, None, None, None


CodeRule = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``(v, scales) -> codes``: the integer codes of ``v = clamp(x / scales, Q_n, Q_p)``, where
``scales`` broadcasts against ``v`` (plain LLSQ rounds half up; an accumulator-bounded
quantizer projects, :mod:`hwquant.qat.accumulator_bound`)."""


def llsq_scale_gradient(
    x: torch.Tensor,
    alpha: torch.Tensor,
    lo: int,
    hi: int,
    p: int,
    code_rule: CodeRule | None = None,
) -> torch.Tensor:
    """LLSQ's simulated ∂L/∂α: −α² (grow), +α² (shrink) or 0, per scale (methods.md §4.2).

    ``alpha`` broadcasts against ``x``; the errors ``mean |x − Q_a(x)|^p`` at a = α/2, α, 2α
    are averaged over the broadcast dimensions, all three in one batched computation.
    ``code_rule`` replaces rounding half up as the map from ``clamp(x/a)`` to codes.
    """
    if alpha.numel() == 1:
        dims = list(range(1, x.dim() + 1))
    else:
        dims = [d + 1 for d, n in enumerate(alpha.shape) if n == 1]
    pad = [1] * (x.dim() - alpha.dim())
    scales = torch.stack([alpha / 2, alpha, alpha * 2]).reshape(3, *pad, *alpha.shape)
    v = (x.unsqueeze(0) / scales).clamp_(lo, hi)
    codes = round_half_up(v) if code_rule is None else code_rule(v, scales)
    err = x.unsqueeze(0) - codes.to(x.dtype).mul_(scales)
    err = err.abs_() if p == 1 else err.square_()
    e_small, e_mid, e_big = err.mean(dim=dims, keepdim=True)
    a1, a2 = e_mid - e_small, e_big - e_mid
    g1, g2, g3 = a1 >= 0, a2 > 0, (a1 + a2) >= 0
    grow = (~g1 & ~g2) | (g1 & ~g2 & ~g3)
    shrink = (g1 & g2) | (g1 & ~g2 & g3)
    direction = shrink.to(alpha.dtype) - grow.to(alpha.dtype)
    return (direction * alpha * alpha).reshape(alpha.shape)


@torch.no_grad()
def min_error_scale(
    x: torch.Tensor,
    start: torch.Tensor,
    lo: int,
    hi: int,
    p: int,
    project: Callable[[torch.Tensor], torch.Tensor] = lambda a: a,
) -> torch.Tensor:
    """Per row of ``x`` (``[S, N]``: S scales, N values each) the scale of least Lp error.

    The error of a scale ``a`` on a row is ``E(a) = mean_n |x_n − a·clamp(round_half_up(x_n/a),
    lo, hi)|^p``. ``E`` is not convex in ``a`` (it jumps where a value crosses a rounding
    threshold), so the minimum is taken over a grid: ``a_k = a_max·k/K``, k = 1..K
    (K = :data:`INIT_GRID`), with ``a_max = max_n |x_n| / max(hi, 1)``, the smallest scale
    that clips no value on the positive side (|lo| ≥ hi, so none on the negative side either),
    together with ``start`` (so the result's error is never above the start's). ``project``
    maps candidates onto the scale constraint first (:func:`hwquant.qat.scale.constrain_scale`),
    so the error compared is that of the scale in use. Rows of zeros keep ``start``.

    2-bit signed codes {−2, −1, 0, 1}: the peak rule's scale 1.0 has a mean squared error of
    0.085 on this row; the grid point 73/128 has 0.037:

    >>> x = torch.tensor([[-1.0, -0.5, 0.0, 0.1, 0.5, 1.0]])
    >>> min_error_scale(x, torch.tensor([1.0]), -2, 1, 2)
    tensor([0.5703])
    """
    peak = x.abs().amax(dim=1)
    fractions = torch.arange(1, INIT_GRID + 1, dtype=x.dtype, device=x.device) / INIT_GRID
    grid = (peak / max(hi, 1)).unsqueeze(1) * fractions  # [S, K]
    candidates = project(torch.cat([start.to(x.dtype).unsqueeze(1), grid], dim=1).clamp_min(_TINY))
    errors = torch.stack(
        [
            (x - (x / a.unsqueeze(1)).clamp(lo, hi).add(0.5).floor().mul(a.unsqueeze(1)))
            .abs()
            .pow(p)
            .mean(dim=1)
            for a in candidates.T  # one candidate per scale at a time: memory S·N
        ],
        dim=1,
    )
    best = candidates.gather(1, errors.argmin(dim=1, keepdim=True)).squeeze(1)
    return torch.where(peak > 0, best, start.to(x.dtype))


class LinearQuantizer(HostMirrored):
    """Symmetric linear quantizer with a learned scale (LLSQ; LSQ gradient as an option).

    Args:
        bits: code width, 1..16.
        signed: signed codes (weights, pre-add activations) or unsigned (after ReLU).
        channels: number of scales: 1 (per tensor) or the output-channel count (per channel,
            along dimension 0 of the quantized tensor).
        is_activation: activations clip the gradient outside the range and initialise from the
            first batch with the activation rule; weights use the weight rule.
        gradient: "llsq" (simulated ±α²) or "lsq".
        norm: p of LLSQ's Lp error (1 or 2).
        error_samples: activation elements sampled for LLSQ's error comparison (0 = all).
        constraint: "free", "pow2" or "fixed" scales (:mod:`hwquant.qat.scale`).
        mantissa_bits: mantissa width of "fixed" scales.
        init: the initial scale's rule, "peak" (LLSQ's) or "min_error" (module docstring).
        trained: False holds the scale where ``init`` set it on the first batch ("calibrated"):
            no gradient reaches it, and ``x`` keeps its straight-through estimator.
    """

    def __init__(
        self,
        bits: int,
        signed: bool,
        *,
        channels: int = 1,
        is_activation: bool,
        gradient: str = "llsq",
        norm: int = 2,
        error_samples: int = 0,
        constraint: str = "free",
        mantissa_bits: int = 8,
        init: str = "peak",
        trained: bool = True,
    ) -> None:
        super().__init__()
        check_bits("bits", bits)
        if gradient not in ("llsq", "lsq"):
            raise ConfigError(f"gradient {gradient!r} is not allowed. Fix: use llsq or lsq.")
        if init not in SCALE_INITS:
            raise ConfigError(
                f"scale init {init!r} is not allowed. Fix: use one of {', '.join(SCALE_INITS)}."
            )
        self.init = init
        self.bits, self.signed = bits, signed
        self.qmin, self.qmax = qrange(bits, signed)
        self.is_activation = is_activation
        self.gradient, self.norm, self.error_samples = gradient, norm, error_samples
        self.constraint, self.mantissa_bits = constraint, mantissa_bits
        self.trained = trained
        self.scale = nn.Parameter(torch.ones(channels), requires_grad=trained)
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    def is_initialized(self) -> bool:
        """True once the scale has been set from data (read from the device at most once)."""
        return self.host_flag("initialized")

    @property
    def per_channel(self) -> bool:
        """True when there is one scale per output channel."""
        return self.scale.numel() > 1

    def extra_repr(self) -> str:
        kind = "act" if self.is_activation else "weight"
        sign = "signed" if self.signed else "unsigned"
        rule = self.gradient if self.trained else "calibrated"
        return f"{kind}, bits={self.bits}, {sign}, scales={self.scale.numel()}, {rule}"

    def scale_value(self) -> torch.Tensor:
        """The scale in use: |parameter| projected onto the scale constraint."""
        return self._project(self.scale.abs().clamp_min(_TINY))

    def _project(self, alpha: torch.Tensor) -> torch.Tensor:
        return constrain_scale(alpha, self.constraint, self.mantissa_bits)

    def _broadcast(self, alpha: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.per_channel:
            return alpha.view(-1, *([1] * (x.dim() - 1)))
        return alpha.reshape(())

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """Set the scale from ``x`` by the ``init`` rule (LLSQ's peak rule, methods.md §4.1, or
        the least Lp error, :func:`min_error_scale`).

        An empty ``x`` sets nothing (the first non-empty batch does); NaN or Inf in ``x``
        raises :class:`~hwquant.core.errors.NonFiniteError`.
        """
        if x.numel() == 0:
            return
        check_finite("the tensor a quantizer scale is initialised from", x)
        q_p = max(self.qmax, 1)
        if self.per_channel:
            peak = x.detach().abs().reshape(x.shape[0], -1).amax(dim=1)
            alpha = peak / q_p
        else:
            peak = x.detach().abs().max()
            divisor = 2 * q_p if self.is_activation and self.bits <= 3 else q_p + 1
            alpha = (peak / divisor).reshape(1)
        alpha = torch.where(alpha > 0, alpha, torch.ones_like(alpha))
        if self.init == "min_error":
            rows = x.detach().reshape(alpha.numel(), -1)
            if not self.per_channel and rows.numel() > INIT_SAMPLES:
                rows = rows[:, :: rows.numel() // INIT_SAMPLES][:, :INIT_SAMPLES]
            alpha = min_error_scale(
                rows.float(), alpha.float(), self.qmin, self.qmax, self.norm, self._project
            )
        self.scale.copy_(alpha.to(self.scale.dtype))
        self.set_host("initialized", True)

    def _error_sample(self, x: torch.Tensor) -> torch.Tensor:
        """The activation elements LLSQ compares errors on: an even stride through ``x``."""
        flat = x.detach().reshape(-1)
        if self.error_samples and flat.numel() > self.error_samples:
            step = flat.numel() // self.error_samples
            flat = flat[::step][: self.error_samples]
        return flat

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fake-quantize ``x`` (initialising the scale on the first call)."""
        if not self.is_initialized():
            self.initialize(x)
        alpha = self._broadcast(self.scale_value(), x)
        if not (self.training and torch.is_grad_enabled()):
            return round_half_up(x / alpha).clamp(self.qmin, self.qmax) * alpha
        if not self.trained:  # the STE for x alone: α is a constant
            held = alpha.detach()
            return _LLSQFakeQuant.apply(
                x, held, self.qmin, self.qmax, self.is_activation, torch.zeros_like(held)
            )
        if self.gradient == "lsq":
            grad_factor = 1.0 / math.sqrt(x.numel() // self.scale.numel() * max(self.qmax, 1))
            return _LSQFakeQuant.apply(x, alpha, self.qmin, self.qmax, grad_factor)
        with torch.no_grad():
            if self.per_channel:
                sample, a = x.detach(), alpha.detach()
            else:
                sample, a = self._error_sample(x), alpha.detach()
            alpha_grad = llsq_scale_gradient(sample, a, self.qmin, self.qmax, self.norm)
            alpha_grad = alpha_grad.reshape(alpha.shape)
        return _LLSQFakeQuant.apply(x, alpha, self.qmin, self.qmax, self.is_activation, alpha_grad)

    @torch.no_grad()
    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """Integer codes of ``x`` (int64), as deployed; finite values beyond the range
        saturate, NaN or Inf in ``x`` or in the scale raise :class:`NonFiniteError`."""
        check_finite("quantizer input", x)
        scale = self.scale_value()
        check_finite("quantizer scale", scale)
        return to_codes(x, self._broadcast(scale, x), self.qmin, self.qmax)

    @property
    def int_bits(self) -> int:
        """Signed bits of the codes: ``bits`` (plus one for unsigned codes)."""
        return self.bits if self.signed else self.bits + 1

    def encode(self, w: torch.Tensor) -> None:
        """Linear codes are stored as they are: no separate encoding."""
        return None

    @torch.no_grad()
    def levels(self) -> torch.Tensor:
        """The representable values: ``[channels, 2^bits]`` rows of α·{Q_n..Q_p}."""
        grid = torch.arange(self.qmin, self.qmax + 1, dtype=torch.float64)
        return self.scale_value().double().view(-1, 1) * grid.view(1, -1)

    @torch.no_grad()
    def export(self) -> LinearQuantSpec:
        """The integer export: bits, signedness and the scale(s) as float64."""
        return LinearQuantSpec(self.bits, self.signed, self.scale_value().double().cpu().numpy())
