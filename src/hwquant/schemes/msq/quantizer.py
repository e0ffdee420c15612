"""MSQ: row-wise mixed SP2 / fixed-point weight quantizer (Mix and Match, Chang et al. HPCA 2021).

Each row ``r`` of the GEMM view of a weight (one output channel, ``w.reshape(C_out, -1)``) is
quantized with one scheme (methods.md §2.2, §7.2): the SP2 set of :mod:`~hwquant.schemes.msq.sp2`
(shift-add in LUTs) or the fixed-point set of :mod:`~hwquant.schemes.msq.fixed_point` (DSP
multiplies), both on ``[-α_r, α_r]`` at the same m bits::

    w_q[r] = u_r · P_r(w[r] / u_r),    u_r = α_r / D_r,
    D_r = I = 2^(2^m1 - 1) (SP2 row, m2 ≥ 1)  or  Q = 2^(m-1) - 1 (fixed-point row),

with ``P_r`` the nearest-level projection onto the row's integer levels (ties towards +∞).
``u_r`` is the value of one integer unit (:meth:`MixedSchemeQuantizer.scale_value`), so the
integer weights are ``P_r(w[r]/u_r)``: SP2 integers ``±(2^shift1 + 2^shift2)`` or fixed-point
integers ``-Q..Q``.

Scale gradient: α_r is learned with LSQ's rule (Esser et al. 2020, eq. 3) taken per row, with
the row's integer step ``u_r`` as the step size and ``D_r`` as the largest code::

    ∂w_q/∂u_r = P_r(v) − v   if |v| ≤ D_r,    P_r(v) = ±D_r   otherwise     (v = w/u_r),
    ∂L/∂u_r  = g_r · Σ_k ∂L/∂w_q[r,k] · ∂w_q[r,k]/∂u_r,    g_r = 1/√(n · D_r),

with ``n`` the weights per scale; ``u_r = α_r/D_r`` passes it on to α_r. The weights get the
straight-through estimator inside the clip range (``∂w_q/∂w = [|v| ≤ D_r]``, methods.md §2.3).
α is initialised to ``max|w_r|`` (methods.md §2.5). Recipe.scale_gradient (LLSQ's rule) applies
to the linear quantizers only; ``scale_constraint`` constrains ``u_r``.

Assignment (methods.md §2.2): every row is scored by a distribution test and the
``round_half_up(share · C_out)`` rows with the lowest scores get SP2, the others fixed-point
(a stable sort: equal scores go by row index):

* ``variance``: ``var(w_r / max|w_r|)``; a small variance means mass near 0 (Gaussian-like);
* ``kurtosis``: ``−E[(w_r − μ)^4] / σ^4``; a large kurtosis means a sharp peak;
* ``error``: ``e_SP2(r) − e_fixed(r)``, the squared error ``Σ_k (w_q[r,k] − w[r,k])²`` of the
  row on each scheme's levels at the row's current ``α_r``. With ``k`` rows to give SP2, the
  layer's total error ``Σ_r e_fixed(r) + Σ_{r ∈ S} (e_SP2(r) − e_fixed(r))`` is least for the
  ``k`` lowest scores, so this assignment minimises the weight error for the share (the two
  distribution tests only guess which rows SP2 fits; at 4 bits fixed-point is the closer fit
  for 740 of the 768 rows of a CIFAR-10 ResNet-20 as QAT starts, docs/msq.md §1). The
  minimum is at the current scales: once each ``α_r`` has trained on its row's scheme, the
  comparison leans towards the scheme the row already has.

The assignment is a buffer (``sp2_rows``, in the state dict, so checkpoints keep it and DDP
broadcasts it with the other buffers): it is set from the first weights seen, re-computed every
``refresh_steps`` training steps while ``step < freeze_step``, and frozen from then on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import get_args

import numpy as np
import torch
from torch import nn

from hwquant.core.errors import ConfigError, check_finite
from hwquant.core.intmath import bits_needed
from hwquant.ir.intmodel import MSQEncoding
from hwquant.qat.host_mirror import HostMirrored
from hwquant.qat.recipe import MSQAssignment, MSQOptions, Recipe
from hwquant.qat.scale import constrain_scale
from hwquant.schemes.msq.fixed_point import FixedPointLevels
from hwquant.schemes.msq.sp2 import SP2Levels

ASSIGNMENT_TESTS: tuple[str, ...] = get_args(MSQAssignment)
DISTRIBUTION_TESTS: tuple[str, ...] = ("variance", "kurtosis")
_TINY = 1e-12


def row_scores(w: torch.Tensor, test: str) -> torch.Tensor:
    """Distribution test (``variance`` or ``kurtosis``) of every row of ``w`` (``[C_out,
    ...]``): low score = SP2 first. The ``error`` test needs the quantizer's scales:
    :meth:`MixedSchemeQuantizer.error_scores`."""
    rows = w.detach().reshape(w.shape[0], -1).double()
    if test == "variance":
        peak = rows.abs().amax(dim=1, keepdim=True).clamp_min(_TINY)
        return (rows / peak).var(dim=1, unbiased=False)
    if test == "kurtosis":
        centred = rows - rows.mean(dim=1, keepdim=True)
        variance = centred.square().mean(dim=1)
        return -(centred.pow(4).mean(dim=1) / variance.square().clamp_min(_TINY))
    raise ConfigError(
        f"distribution test {test!r} is not allowed. Fix: use one of "
        f"{', '.join(DISTRIBUTION_TESTS)}."
    )


def sp2_row_count(rows: int, share: float) -> int:
    """Rows that get SP2: ``round_half_up(share · rows)``."""
    return math.floor(share * rows + 0.5)


def assign_sp2_rows(scores: torch.Tensor, share: float) -> torch.Tensor:
    """Bool mask of the ``sp2_row_count`` rows with the lowest ``scores`` (stable order)."""
    order = torch.sort(scores, stable=True).indices
    mask = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    mask[order[: sp2_row_count(scores.numel(), share)]] = True
    return mask


@dataclass(frozen=True)
class MSQSpec:
    """Integer export of an MSQ quantizer: row r's weights are ``scale[r] · integer``."""

    bits: int
    m1: int
    m2: int
    sp2_rows: np.ndarray  # bool [C_out]
    scale: np.ndarray  # float64 [C_out]: value of one integer unit u_r
    alpha: np.ndarray  # float64 [C_out]: the level ±α_r of each row


class _RowLSQ(torch.autograd.Function):
    """``u·c`` with the masked STE for ``w`` and LSQ's per-row step gradient for ``u``."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        w: torch.Tensor,
        unit: torch.Tensor,
        codes: torch.Tensor,
        bound: torch.Tensor,
        grad_factor: torch.Tensor,
    ) -> torch.Tensor:
        ctx.save_for_backward(w / unit, codes, bound, grad_factor)
        ctx.unit_shape = unit.shape
        return codes * unit

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        v, codes, bound, grad_factor = ctx.saved_tensors
        inside = v.abs() <= bound
        slope = torch.where(inside, codes - v, codes)  # codes hold ±D outside the range
        grad_unit = (grad * slope).sum_to_size(ctx.unit_shape) * grad_factor
        return grad * inside, grad_unit, None, None, None


class MixedSchemeQuantizer(HostMirrored):
    """Row-wise SP2 / fixed-point weight quantizer with learned per-row scales (module docstring).

    Args:
        bits: m, the bits of both schemes (sign included), 2..9.
        rows: output channels C_out of the weight.
        sp2_share: fraction of the rows that get SP2 (0: fixed-point only, 1: SP2 only).
        channels: learned scales α: ``rows`` (one per row) or 1 (one for the tensor).
        assignment: row test, "variance", "kurtosis" or "error".
        refresh_steps: training steps between re-assignments before the freeze.
        freeze_step: training step from which the assignment is frozen.
        sp2_m1: m1 of the SP2 split (None: ``ceil((m-1)/2)``).
        constraint, mantissa_bits: scale constraint of the units ``u_r``
            (:mod:`hwquant.qat.scale`).
    """

    def __init__(
        self,
        bits: int,
        rows: int,
        *,
        sp2_share: float,
        channels: int | None = None,
        assignment: str = "variance",
        refresh_steps: int = 100,
        freeze_step: int = 500,
        sp2_m1: int | None = None,
        constraint: str = "free",
        mantissa_bits: int = 8,
    ) -> None:
        super().__init__()
        if not 0 <= sp2_share <= 1:
            raise ConfigError(f"sp2_share={sp2_share!r} is outside [0, 1]. Fix: use 0..1.")
        if assignment not in ASSIGNMENT_TESTS:
            raise ConfigError(
                f"assignment {assignment!r} is not allowed. Fix: use one of "
                f"{', '.join(ASSIGNMENT_TESTS)}."
            )
        self.fixed = FixedPointLevels(bits)
        self.sp2 = SP2Levels(bits, sp2_m1)
        self.bits, self.signed = bits, True
        self.rows, self.sp2_share = rows, float(sp2_share)
        self.assignment, self.refresh_steps = assignment, refresh_steps
        self.constraint, self.mantissa_bits = constraint, mantissa_bits
        self.scale = nn.Parameter(torch.ones(rows if channels is None else channels))
        self.register_buffer("sp2_rows", torch.zeros(rows, dtype=torch.bool))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))
        self.register_buffer("freeze_at", torch.tensor(freeze_step, dtype=torch.int64))

    def extra_repr(self) -> str:
        return (
            f"bits={self.bits}, sp2 m1={self.sp2.m1} m2={self.sp2.m2}, rows={self.rows}, "
            f"sp2_share={self.sp2_share}, scales={self.scale.numel()}, {self.assignment}"
        )

    # -- assignment ----------------------------------------------------------------------------
    @property
    def assignment_frozen(self) -> bool:
        """True once the row assignment no longer changes."""
        return self.host("step") >= self.host("freeze_at")

    def freeze_assignment(self) -> None:
        """Freeze the row assignment from now on (kept in the state dict)."""
        self.set_host("freeze_at", self.host("step"))

    @torch.no_grad()
    def assign(self, w: torch.Tensor) -> None:
        """Re-assign the rows from the weights ``w`` with the row test."""
        if self.assignment == "error":
            scores = self.error_scores(w)
        else:
            scores = row_scores(w, self.assignment)
        self.sp2_rows.copy_(assign_sp2_rows(scores, self.sp2_share))

    @torch.no_grad()
    def error_scores(self, w: torch.Tensor) -> torch.Tensor:
        """``e_SP2(r) − e_fixed(r)`` for every row of ``w`` (float64): each row's squared error
        on the SP2 and on the fixed-point levels of its current ``α_r`` (module docstring)."""
        rows = w.detach().reshape(self.rows, -1).double()
        errors = []
        for scheme in (self.sp2, self.fixed):
            unit = self._unit(self.scale.new_tensor(float(scheme.max_int))).double().view(-1, 1)
            errors.append((scheme.project(rows / unit) * unit - rows).square().sum(dim=1))
        return errors[0] - errors[1]

    @torch.no_grad()
    def initialize(self, w: torch.Tensor) -> None:
        """α from ``max|w|`` (per row or per tensor) and the first row assignment (an empty
        ``w`` sets nothing; NaN or Inf raise :class:`~hwquant.core.errors.NonFiniteError`)."""
        if w.numel() == 0:
            return
        check_finite("the weights a quantizer scale is initialised from", w)
        if self.scale.numel() > 1:
            alpha = w.detach().abs().reshape(w.shape[0], -1).amax(dim=1)
        else:
            alpha = w.detach().abs().max().reshape(1)
        self.scale.copy_(torch.where(alpha > 0, alpha, torch.ones_like(alpha)))
        self.assign(w)
        self.set_host("initialized", True)

    def _advance(self, w: torch.Tensor) -> None:
        """One training step: refresh the assignment when due, then count the step."""
        step = self.host("step")
        if step < self.host("freeze_at") and step % self.refresh_steps == 0:
            self.assign(w)
        self.advance("step")

    # -- quantization --------------------------------------------------------------------------
    def divisors(self) -> torch.Tensor:
        """``D_r``: the largest integer of each row's scheme (I for SP2, Q for fixed-point)."""
        sp2, fixed = float(self.sp2.max_int), float(self.fixed.max_int)
        return torch.where(self.sp2_rows, sp2, fixed).to(self.scale.dtype)

    def scale_value(self) -> torch.Tensor:
        """``u_r = α_r / D_r`` ([C_out]): the value of one integer unit of each row."""
        return self._unit(self.divisors())

    def _unit(self, divisors: torch.Tensor) -> torch.Tensor:
        """``α_r / divisors`` under the scale constraint ([C_out])."""
        alpha = self.scale.abs().clamp_min(_TINY).expand(self.rows)
        return constrain_scale(alpha / divisors, self.constraint, self.mantissa_bits)

    def _rows(self, t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return t.view(-1, *([1] * (w.dim() - 1)))

    def _project(self, w: torch.Tensor, unit: torch.Tensor) -> torch.Tensor:
        """Float integer codes of ``w``: each row projected onto its scheme's levels."""
        v = w.detach() / self._rows(unit.detach(), w)
        return torch.where(self._rows(self.sp2_rows, w), self.sp2.project(v), self.fixed.project(v))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        """Fake-quantize ``w``: ``u_r · codes`` (training: STE and LSQ per row; see above)."""
        if not self.host_flag("initialized"):
            self.initialize(w)
        if not (self.training and torch.is_grad_enabled()):
            unit = self.scale_value()
            return self._project(w, unit) * self._rows(unit, w)
        self._advance(w)
        unit = self.scale_value()
        codes = self._project(w, unit)
        bound = self._rows(self.divisors(), w)
        grad_factor = torch.rsqrt(bound * (w.numel() // self.scale.numel()))
        return _RowLSQ.apply(w, self._rows(unit, w), codes, bound, grad_factor)

    @torch.no_grad()
    def codes(self, w: torch.Tensor) -> torch.Tensor:
        """Integer weights (int64): SP2 integers on SP2 rows, fixed-point integers elsewhere."""
        if not self.host_flag("initialized"):
            self.initialize(w)
        check_finite("quantizer input", w)
        unit = self.scale_value()
        check_finite("quantizer scale", unit)
        return self._project(w, unit).to(torch.int64)

    @property
    def int_bits(self) -> int:
        """Signed bits of the integer weights: SP2 rows reach ``I`` (E + 2 bits, m + 1 at
        4 bits), fixed-point rows ``Q`` (m bits)."""
        n_sp2 = sp2_row_count(self.rows, self.sp2_share)
        widths = [bits_needed(self.sp2.max_int)] if n_sp2 else []
        widths += [bits_needed(self.fixed.max_int)] if n_sp2 < self.rows else []
        return max(widths)

    @torch.no_grad()
    def encode(self, w: torch.Tensor) -> MSQEncoding:
        """The stored form: ``(sign, shift1, shift2)`` on SP2 rows, fixed-point codes elsewhere."""
        codes = self.codes(w).cpu().numpy()
        sp2_rows = self.sp2_rows.cpu().numpy()
        on_sp2 = sp2_rows.reshape(-1, *([1] * (codes.ndim - 1)))
        sign, shift1, shift2 = self.sp2.decompose(np.where(on_sp2, codes, 0))
        fixed = np.where(on_sp2, 0, codes).astype(np.int64)
        return MSQEncoding(
            sp2_rows, sign, shift1, shift2, fixed, self.bits, self.sp2.m1, self.sp2.m2
        )

    @torch.no_grad()
    def levels(self) -> torch.Tensor:
        """``[C_out, 2^m - 1]`` float64: each row's levels ``u_r · integers`` ascending, padded
        with NaN where the row's scheme has fewer levels (SP2: 13 of 15 at 4 bits)."""
        width = 2**self.bits - 1
        out = torch.full((self.rows, width), float("nan"), dtype=torch.float64)
        unit = self.scale_value().double().cpu()
        for scheme, rows in ((self.sp2, self.sp2_rows.cpu()), (self.fixed, ~self.sp2_rows.cpu())):
            ints = scheme.integers().double()
            out[rows, : ints.numel()] = unit[rows].view(-1, 1) * ints.view(1, -1)
        return out

    @torch.no_grad()
    def export(self) -> MSQSpec:
        """The integer export: bits, the SP2 split, the row assignment and the scales."""
        unit = self.scale_value().double()
        return MSQSpec(
            self.bits,
            self.sp2.m1,
            self.sp2.m2,
            self.sp2_rows.cpu().numpy().copy(),
            unit.cpu().numpy(),
            (unit * self.divisors().double()).cpu().numpy(),
        )


def resolve_sp2_share(options: MSQOptions, bits: int, act_bits: int = 4) -> float:
    """``options.sp2_share``, or with None the share solved from ``options.device``'s LUT and
    DSP budget at ``bits``-bit weights and ``act_bits``-bit activations
    (:func:`hwquant.hw.sp2_share_for`; the cost model uses the default SP2 split)."""
    if options.sp2_share is not None:
        return float(options.sp2_share)
    from hwquant.hw import sp2_share_for  # the cost model is needed only for this

    return float(sp2_share_for(options.device, bits, act_bits))


def msq_weight_quantizer(
    recipe: Recipe, bits: int, weight: torch.Tensor, per_channel: bool
) -> MixedSchemeQuantizer:
    """The MSQ quantizer of an inner layer under ``recipe.msq`` (registered by
    :mod:`hwquant.schemes.msq`)."""
    options = recipe.msq
    rows = weight.shape[0]
    return MixedSchemeQuantizer(
        bits,
        rows,
        sp2_share=resolve_sp2_share(options, bits, recipe.act_bits),
        channels=rows if per_channel and recipe.weight_granularity == "channel" else 1,
        assignment=options.assignment,
        refresh_steps=options.refresh_steps,
        freeze_step=options.freeze_step,
        sp2_m1=options.sp2_m1,
        constraint=recipe.scale_constraint,
        mantissa_bits=recipe.scale_mantissa_bits,
    )
