"""Accumulator-aware weights: every partial sum of a layer fits ``P`` signed bits, by construction.

A weight layer accumulates ``acc = Σ_k q_k·x_k + b`` (integer weights ``q``, input codes ``x`` in
``[x_lo, x_hi]`` with ``x_lo ≤ 0 ≤ x_hi``, integer bias ``b``) in a ``P``-bit two's-complement
register, ``[−2^(P−1), 2^(P−1) − 1]``. Per output channel, with ``S⁺ = Σ max(q_k, 0)`` and
``S⁻ = Σ max(−q_k, 0)``::

    high = x_hi·S⁺ + |x_lo|·S⁻ + max(b, 0)          low = −(|x_lo|·S⁺ + x_hi·S⁻) + min(b, 0)

**Theorem** (docs/llsq.md §5). Every partial sum of the accumulation, in any order, with the
bias added at any point or not yet, lies in ``[low, high]`` for every input in range; and the
full sum reaches ``high`` (``low``) at the input ``x_k = x_hi`` where ``q_k > 0`` and ``x_lo``
where ``q_k < 0`` (the reverse), with ``b`` of the matching sign. So ``low ≥ −2^(P−1)`` and
``high ≤ 2^(P−1) − 1`` is exactly the condition for no overflow on any input in range: the
tightest rule there is. For unsigned inputs (``x_lo = 0``) it splits into two budgets,
``S⁺ ≤ (2^(P−1) − 1 − b⁺)/x_hi`` and ``S⁻ ≤ (2^(P−1) − b⁻)/x_hi``: A2Q's L1 rule
``‖q‖₁·x_hi ≤ 2^(P−1) − 1`` asks for their sum, A2Q+'s zero-centred rule for both with
``S⁺ = S⁻``; this one asks for neither.

**The projection** (:meth:`AccumulatorBound.project`). The codes of a channel are the codes of
LLSQ, ``round_half_up(clamp(w/α))``, soft-thresholded before rounding,
``q = round_half_up(sign(v)·max(|v| − τ, 0))`` with ``v = clamp(w/α, Q_n, Q_p)``: the Euclidean
projection onto an L1 ball (Duchi et al. 2008), then rounding. ``τ = 0`` where the channel fits
already; otherwise the smallest ``τ`` (by bisection, one per sign for unsigned inputs, shared for
signed inputs) whose *rounded* codes satisfy the rule. The rule is checked on the integers that
deploy, so rounding cannot break it, and ``τ`` large enough gives ``q = 0``, which fits whenever
the bias does (the layer clamps its bias to ``P`` bits), so the bisection always ends feasible.

**Corollary: what ``lower`` proves fits P, by construction.** ``lower`` records
``WeightNode.proved_interval()``, the interval above computed by the same
:func:`hwquant.core.intmath.accumulator_interval` from the same integers: the weight codes are
this projection's output (training, eval and ``integer_params`` all call
:meth:`BoundedLinearQuantizer.code_rule`), and the bias it budgets is the layer's
``bias_codes`` at the same weight scale, the integer bias ``lower`` stores (clamped to
``bias_bits ≤ P``; where that is P, the layer's training forward clips the bias there too,
:meth:`hwquant.qat.nn.weight_layer.QuantWeightLayer._quant_bias`, so the trained function is the
deployed one). Every consumer checks that interval and no other: the
engine's accumulator holds ``Σ q·x + b`` and nothing else (the requantizer's rounding term
``2^(s−1)`` is added to ``acc·M`` in the requantizer's wider register, in the engine, the RTL
and the exports alike), so ``proved_bits() ≤ P`` on every bounded layer, with the bias at
either end of its range (``b = 2^(P−1) − 1`` leaves ``B⁺ = 0``, ``b = −2^(P−1)`` leaves
``B⁻ = 0``: the budgets stay non-negative and ``q = 0`` fits).

**4-bit multipliers** (``digit_planes``; :func:`hwquant.core.intmath.split_nibbles`). The engine's
``four_bit`` mode sums each digit plane ``Σ_k w_{j,k}·x_{i,k}`` on its own: with ``digit_planes``
the rule also bounds every plane (weight digits against the input digits' ranges), by a second
bisection that raises both thresholds together until every plane fits as well.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from hwquant.core.errors import AccumulatorBitsError, ConfigError, HwquantError, check_finite
from hwquant.core.intmath import (
    ACC_MAX_BITS,
    ACC_MIN_BITS,
    accumulator_interval,
    check_accumulator_bits,
    interval_bits,
    qrange,
    round_half_up,
    split_nibbles,
)
from hwquant.qat.llsq import (
    LinearQuantizer,
    _LLSQFakeQuant,
    _LSQFakeQuant,
    llsq_scale_gradient,
)
from hwquant.qat.nn.bn_fold import FoldGain, load_fold_marker
from hwquant.qat.ste import replace_forward

if TYPE_CHECKING:
    from hwquant.ir.intmodel import WeightNode
    from hwquant.qat.nn.weight_layer import QuantWeightLayer
    from hwquant.qat.recipe import Recipe

BISECTION_STEPS = 24
"""Halvings of the digit-plane search (every step keeps the upper end feasible, so the result
fits whatever the number; more steps only threshold less)."""
INIT_FACTORS = 17
"""Candidate initial scales ``α·2^(k/2)``, k = 0..16 (up to 256x LLSQ's initial scale)."""

Interval = tuple[torch.Tensor, torch.Tensor]
"""``(low, high)`` per row (output channel), float64 holding exact integers."""


def digit_ranges(bits: int, signed: bool) -> list[tuple[int, int]]:
    """Range of each 4-bit digit of a ``bits``-bit code, low digit first, as
    `hwquant.core.intmath.split_nibbles` splits it (low digits 0..15, the top one the rest)."""
    count = max(1, math.ceil(bits / 4))
    return [(0, 15)] * (count - 1) + [qrange(bits - 4 * (count - 1), signed)]


@dataclass(frozen=True)
class AccumulatorBound:
    """The accumulator rule of one layer: ``bits`` (P) and the input codes' range; with
    ``weight_bits`` set, every 4-bit digit plane of ``weight_bits``-bit weights is bounded too."""

    bits: int
    in_bits: int
    in_signed: bool
    weight_bits: int | None = None

    @property
    def x_range(self) -> tuple[int, int]:
        """``(x_lo, x_hi)`` of the input codes."""
        return qrange(self.in_bits, self.in_signed)

    def interval(self, codes: torch.Tensor, bias: torch.Tensor | None) -> Interval:
        """The accumulator's ``(low, high)`` per row of ``codes`` (partial sums included)."""
        return accumulator_interval(codes, bias, *self.x_range)

    def plane_interval(self, codes: torch.Tensor) -> Interval:
        """``(low, high)`` per row over every digit plane ``Σ_k w_{j,k}·x_{i,k}`` (no bias: the
        engine adds it to the combined sum)."""
        assert self.weight_bits is not None
        digits = split_nibbles(codes.to(torch.int64), self.weight_bits)
        lows, highs = [], []
        for x_lo, x_hi in digit_ranges(self.in_bits, self.in_signed):
            for w in digits:
                low, high = accumulator_interval(w, None, x_lo, x_hi)
                lows.append(low)
                highs.append(high)
        return torch.stack(lows).amin(0), torch.stack(highs).amax(0)

    def _fits(self, interval: Interval) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = qrange(self.bits, signed=True)
        return interval[0] >= lo, interval[1] <= hi

    def holds(self, codes: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """Per row: no partial sum (nor digit plane, with ``weight_bits``) leaves ``bits``."""
        low_ok, high_ok = self._fits(self.interval(codes, bias))
        ok = low_ok & high_ok
        if self.weight_bits is not None:
            ok &= torch.stack(self._fits(self.plane_interval(codes))).all(0)
        return ok

    def smallest_bits(self) -> int:
        """The smallest P at which a single weight of +1 or −1 fits (any non-zero weight)."""
        units = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)
        for bits in range(ACC_MIN_BITS, ACC_MAX_BITS + 1):
            bound = AccumulatorBound(bits, self.in_bits, self.in_signed, self.weight_bits)
            if bool(bound.holds(units, None).any()):
                return bits
        return ACC_MAX_BITS + 1

    def budgets(self, bias: torch.Tensor | None, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Integer budgets ``(B⁺, B⁻)`` (int64 per row) on ``S⁺`` and ``S⁻``: unsigned inputs
        ``B⁺ = ⌊(2^(P−1) − 1 − b⁺)/x_hi⌋``, ``B⁻ = ⌊(2^(P−1) − b⁻)/x_hi⌋`` (exact); signed
        inputs one budget on ``S⁺ + S⁻`` (returned twice), ``⌊min(2^(P−1) − 1 − b⁺,
        2^(P−1) − b⁻) / max|x|⌋`` (sufficient: ``high ≤ max|x|·(S⁺ + S⁻) + b⁺``).

        A bias at an end of the P-bit range leaves its own side no budget, never a negative
        one (16 bits, unsigned 8-bit inputs; biases 0, ``2^15 − 1``, ``−2^15``):

        >>> bound = AccumulatorBound(16, 8, False)
        >>> [b.tolist() for b in bound.budgets(torch.tensor([0, 2**15 - 1, -(2**15)]), 3)]
        [[128, 0, 128], [128, 128, 0]]
        """
        b = torch.zeros(rows, dtype=torch.int64) if bias is None else bias.to(torch.int64)
        b_pos, b_neg = b.clamp_min(0), (-b).clamp_min(0)
        limit = 2 ** (self.bits - 1) - 1
        x_lo, x_hi = self.x_range
        if x_lo == 0:
            return (limit - b_pos).div(x_hi, rounding_mode="floor"), (limit + 1 - b_neg).div(
                x_hi, rounding_mode="floor"
            )
        shared = torch.minimum(limit - b_pos, limit + 1 - b_neg)
        shared = shared.div(max(x_hi, -x_lo), rounding_mode="floor")
        return shared, shared

    def project(self, v: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """Integer codes (float64) of the rows of ``v = clamp(w/α, Q_n, Q_p)`` that satisfy the
        rule (module docstring); ``bias`` (one integer per row, within ``bits``) is part of the
        sum. Rows (for unsigned inputs: signs of a row) that fit keep LLSQ's codes
        ``round_half_up(v)``; the others keep the ``B`` largest of their rounding *units*.

        A weight ``v`` rounds to ``|q|`` units; unit ``j = 1, 2, …`` has priority
        ``|v| + ½ − j`` (≥ 0 where rounding half up gives it), and soft-thresholding by ``τ``
        before rounding keeps the units of priority above ``τ``: ``⌈|v| + ½ − τ⌉ − 1`` of them.
        The smallest ``τ`` that keeps at most ``B`` units (the ``(B+1)``-th largest priority) is
        found by bisection on these counts, which never leaves the feasible side.

        Raises:
            HwquantError: ``bias`` alone does not fit ``bits`` (the layer clamps it first).
        """
        v = v.double()
        rows = v.shape[0]
        lazy = round_half_up(v)
        low_ok, high_ok = self._fits(self.interval(lazy, bias))
        if bool(self.holds(lazy, bias).all()):
            return lazy
        unsigned = self.x_range[0] == 0
        fit_pos, fit_neg = (high_ok, low_ok) if unsigned else (low_ok & high_ok,) * 2
        budget_pos, budget_neg = self.budgets(bias, rows)
        if bool((budget_pos < 0).any() or (budget_neg < 0).any()):
            raise HwquantError(
                f"no weights fit a {self.bits}-bit accumulator with this bias: the bias alone "
                f"needs more. Fix: clamp the bias to {self.bits} bits (bias_bits <= {self.bits})."
            )
        u_pos = torch.where(v > 0, v.abs() + 0.5, 0.0)  # a weight's units: j < u (priority
        u_neg = torch.where(v < 0, v.abs() + 0.5, 0.0)  # u − j > τ ≥ 0), so ⌈u − τ⌉ − 1 of them
        top = torch.maximum(u_pos, u_neg).amax(1) if v.numel() else torch.zeros(rows)
        top = top.double()

        def kept(u: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
            return (u - tau[:, None]).ceil_().sub_(1).clamp_min_(0)

        def codes_at(t_pos: torch.Tensor, t_neg: torch.Tensor) -> torch.Tensor:
            return kept(u_pos, t_pos) - kept(u_neg, t_neg)

        # τ by bisection on the unit counts: the upper end always keeps within the budget
        low_p, high_p = torch.zeros(rows, dtype=torch.float64), top.clone()
        low_n, high_n = low_p.clone(), top.clone()
        for _ in range(BISECTION_STEPS):
            mid_p, mid_n = (low_p + high_p) / 2, (low_n + high_n) / 2
            count_p, count_n = kept(u_pos, mid_p).sum(1), kept(u_neg, mid_n).sum(1)
            if unsigned:
                ok_p, ok_n = count_p <= budget_pos, count_n <= budget_neg
            else:
                ok_p = ok_n = count_p + count_n <= budget_pos
            high_p, low_p = torch.where(ok_p, mid_p, high_p), torch.where(ok_p, low_p, mid_p)
            high_n, low_n = torch.where(ok_n, mid_n, high_n), torch.where(ok_n, low_n, mid_n)
        tau_pos, tau_neg = high_p, high_n
        # ties (many weights clamped at Q_p share a priority): the units just below τ fill the
        # budget that is left, in index order
        kept_pos, kept_neg = kept(u_pos, tau_pos), kept(u_neg, tau_neg)
        tie_pos = u_pos - kept_pos - 1 > low_p[:, None]
        tie_neg = u_neg - kept_neg - 1 > low_n[:, None]
        spare_pos = budget_pos - kept_pos.sum(1)
        spare_neg = budget_neg - kept_neg.sum(1)
        if unsigned:
            kept_pos += tie_pos & (tie_pos.cumsum(1) <= spare_pos[:, None])
            kept_neg += tie_neg & (tie_neg.cumsum(1) <= spare_neg[:, None])
        else:
            spare = budget_pos - kept_pos.sum(1) - kept_neg.sum(1)
            order = torch.cat([tie_pos, tie_neg], 1).cumsum(1) <= spare[:, None]
            kept_pos += tie_pos & order[:, : v.shape[1]]
            kept_neg += tie_neg & order[:, v.shape[1] :]
        keep_lazy = (v > 0) & fit_pos[:, None] | (v < 0) & fit_neg[:, None]
        codes = torch.where(keep_lazy, lazy, kept_pos - kept_neg)
        ok = self.holds(codes, bias)
        if self.weight_bits is not None and not bool(ok.all()):
            # digit planes: raise both thresholds together towards `top` (no unit kept) until
            # the planes fit too; the upper end of the search always fits
            lam_low = torch.zeros(rows, dtype=torch.float64)
            lam_high = torch.ones(rows, dtype=torch.float64)

            def planes_at(lam: torch.Tensor) -> torch.Tensor:
                return codes_at(tau_pos + lam * (top - tau_pos), tau_neg + lam * (top - tau_neg))

            for _ in range(BISECTION_STEPS):
                lam = (lam_low + lam_high) / 2
                fit = self.holds(planes_at(lam), bias) | ok
                lam_high, lam_low = torch.where(fit, lam, lam_high), torch.where(fit, lam_low, lam)
            codes = torch.where(ok[:, None], codes, planes_at(lam_high))
            ok = self.holds(codes, bias)
        if not bool(ok.all()):
            raise HwquantError(
                f"the accumulator projection left a row outside {self.bits} bits (internal "
                "error). Fix: report this with the layer's weights."
            )
        return codes


BiasCodes = Callable[[torch.Tensor], torch.Tensor | None]
"""``weight_scale -> bias codes``: the layer's integer bias at accumulator scale
``weight_scale·α_in`` (``weight_scale`` shaped ``[..., C_out]``), or None without a bias."""


class BoundedLinearQuantizer(LinearQuantizer):
    """LLSQ weight quantizer whose codes satisfy an :class:`AccumulatorBound`.

    The codes are :meth:`AccumulatorBound.project` of ``clamp(w/α)`` with the layer's bias,
    in training (straight-through gradient to ``w``), in eval and in :meth:`codes`, so what
    trains is what deploys. LLSQ's scale rule compares the errors of the *projected* codes at
    ``α/2, α, 2α``: a scale that rounds finer but must threshold harder loses to a coarser one
    that fits, so ``α`` learns the trade-off. (With ``gradient="lsq"`` the scale gradient is
    LSQ's of the unprojected codes.) The layer binds itself with :meth:`bind_layer` (its input
    quantizer and :data:`BiasCodes`), done by ``prepare``.

    **Scales relative to the BN fold** (bound with a :data:`~hwquant.qat.nn.bn_fold.FoldGain`;
    docs/llsq.md §5.2). A layer with BN folded in quantizes ``s·W`` with ``s = γ/σ_run`` per
    channel. With an absolute
    scale ``α``, the codes ``project(clamp(s·W/α))`` depend on ``s``; before the BN freeze the
    layer normalises ``z = op(x, Q(s·W))/s`` with ``z``'s batch statistics, so where the
    projection thresholds, ``z`` shrinks, ``σ_run`` follows it, ``s`` grows and ``s·W/α`` must
    be thresholded harder: a loop (ResNet-20 at P = 12-14 reached ``s`` of 1e2-1e4 with most
    channels dead). Bound to a gain, the learned parameter is ``a`` and the scale in use is

        ``α_c = |s_c|·a_c``  (``scale_value()``; ``|s|`` held constant: no gradient reaches it)

    so the codes ``project(clamp(s·W/α)) = project(clamp(sign(s)·W/a))`` and
    ``z = sign(s)·op(x, a·q)`` do not depend on ``|s|``: the loop is gone by construction, and
    BN keeps normalising the projected output with its own statistics (its gain and mean
    compensated). Only the bias's share of the budget still sees ``s``: the folded bias
    ``β − s·μ`` is ``(β/|s| − sign(s)·μ)/(a·α_in)`` accumulator units, at most
    ``(|β|/|s| + |μ|)/(a·α_in)``, which does not grow with ``|s|``. ``α`` is a per-channel
    scale like any other for every consumer (the bias at ``α·α_in``, the requantizer,
    ``lower``). LLSQ's rule acts on ``a``: the errors of
    ``s·W`` at ``α/2, α, 2α`` are ``|s|^p`` times those of ``sign(s)·W`` at ``a/2, a, 2a`` (the
    same codes), so the comparison gives the direction LLSQ would give ``a``, and ``a`` gets
    LLSQ's step ``∂L/∂a = ∓a²``; through ``α = |s|·a`` that is ``∂L/∂α = ∓a²/|s| =
    ∓α²/|s|³``. LSQ's gradient reaches ``a`` by the chain rule (``∂L/∂a = |s|·∂L/∂α``).
    """

    def __init__(self, bits: int, *, acc_bits: int, digit_planes: bool, weight_dim: int, **kwargs):
        super().__init__(bits, True, is_activation=False, **kwargs)
        check_accumulator_bits("accumulator_bits", acc_bits)
        self.acc_bits, self.digit_planes, self.weight_dim = acc_bits, digit_planes, weight_dim
        object.__setattr__(self, "_input_quant", None)
        object.__setattr__(self, "_bias_codes", None)
        object.__setattr__(self, "_fold_gain", None)
        # saved with the scale: what the stored parameter means (``a`` or ``α``)
        self.register_buffer("relative_scale", torch.zeros((), dtype=torch.bool))

    def extra_repr(self) -> str:
        planes = ", digit planes" if self.digit_planes else ""
        relative = ", scale relative to the BN fold" if self.relative else ""
        return f"{super().extra_repr()}, accumulator {self.acc_bits} bits{planes}{relative}"

    def bind_layer(
        self, input_quant: LinearQuantizer, bias_codes: BiasCodes, fold_gain: FoldGain | None = None
    ) -> None:
        """Record the quantizer of the layer's input, its bias and, for a layer with BN folded
        in, the fold's gain ``|s|`` that the scale is relative to (plain attributes)."""
        object.__setattr__(self, "_input_quant", input_quant)
        object.__setattr__(self, "_bias_codes", bias_codes)
        object.__setattr__(self, "_fold_gain", fold_gain)
        self.relative_scale.fill_(fold_gain is not None)

    def _load_from_state_dict(
        self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        """Refuse a stored scale of the other kind (relative ``a`` against absolute ``α``); a
        state dict without this layer's scale (a partial load, ``strict=False``) is not
        checked. A checkpoint with no ``relative_scale`` (written before the marker existed)
        is taken as absolute: it loads into an absolute layer only."""
        kinds = {True: "relative to the BN fold (a, α = |s|·a)", False: "absolute (α)"}

        def refusal(layer: str, stored: bool, has_marker: bool) -> str:
            kind = (
                f"as {kinds[stored]}"
                if has_marker
                else "with no relative_scale marker, so its kind is not recorded (taken as "
                "absolute)"
            )
            return (
                f"layer '{layer}': the checkpoint stores its accumulator-bounded weight "
                f"scale {kind}; this model's is {kinds[self.relative]} (docs/llsq.md "
                "§5.2). Fix: train the model again from its float or FP32 checkpoint "
                "instead of resuming this one."
            )

        load_fold_marker(
            state_dict,
            prefix,
            marker="relative_scale",
            checked="scale",
            bound=self.relative,
            refusal=refusal,
        )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def relative(self) -> bool:
        """True when the learned parameter is ``a`` and the scale ``α = |s|·a`` (class doc)."""
        return self._fold_gain is not None

    def scale_value(self) -> torch.Tensor:
        """The scale in use: LLSQ's, times the BN fold's ``|s|`` for a relative scale."""
        alpha = super().scale_value()
        return alpha if self._fold_gain is None else alpha * self._fold_gain().to(alpha.dtype)

    def bound(self) -> AccumulatorBound:
        """The layer's accumulator rule."""
        if self._input_quant is None:
            raise HwquantError(
                "an accumulator-bounded quantizer is used before prepare() bound it to its "
                "layer. Fix: build the model with hwquant.prepare()."
            )
        quant = self._input_quant
        return AccumulatorBound(
            self.acc_bits, quant.bits, quant.signed, self.bits if self.digit_planes else None
        )

    def code_rule(self, v: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        """Projected codes of ``v = clamp(w/scales)``, shaped ``[..., C_out, *kernel]`` with
        ``scales`` broadcasting against it (a :data:`~hwquant.qat.llsq.CodeRule`)."""
        lead = v.dim() - self.weight_dim
        rows = v.reshape(-1, math.prod(v.shape[lead + 1 :]))
        row_scale = scales.expand(v.shape).reshape(rows.shape)[:, 0]
        bias = self._bias_codes(row_scale.view(v.shape[: lead + 1]))
        bias = None if bias is None else bias.reshape(-1)
        return self.bound().project(rows, bias).reshape(v.shape)

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """LLSQ's initial scale, then, per scale, the factor ``2^(k/2)`` (k = 0..16) whose
        *projected* codes fit ``x`` best (least squared error), for scales whose LLSQ codes do
        not fit the accumulator already: where the budget binds, a
        coarser grid that needs less thresholding usually wins, and LLSQ's ``±α²`` steps would
        take many steps to get there."""
        super().initialize(x)
        if x.numel() == 0:
            return
        if self._fold_gain is not None:  # LLSQ's α, held as a = α/|s|
            self.scale.div_(self._fold_gain().to(self.scale.dtype))
        alpha = self._broadcast(self.scale_value(), x)
        factors = torch.exp2(torch.arange(INIT_FACTORS, dtype=x.dtype) / 2)
        scales = factors.view(-1, *([1] * x.dim())) * alpha.unsqueeze(0)
        codes = self.code_rule((x.unsqueeze(0) / scales).clamp(self.qmin, self.qmax), scales)
        error = (x.unsqueeze(0) - codes.to(x.dtype) * scales).square()
        lazy = (x / alpha).clamp(self.qmin, self.qmax).add(0.5).floor()
        if self.per_channel:  # one factor per channel; a channel that fits keeps LLSQ's scale
            best = error.flatten(2).sum(2).argmin(0)
            fits = (codes[0] == lazy).flatten(1).all(1)
        else:
            best = error.flatten(1).sum(1).argmin().reshape(1)
            fits = (codes[0] == lazy).all().reshape(1)
        best = torch.where(fits, torch.zeros_like(best), best)
        self.scale.mul_(factors[best].to(self.scale.dtype))

    def _codes(self, x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        return self.code_rule((x / alpha).clamp(self.qmin, self.qmax), alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fake-quantize ``x`` with projected codes (initialising the scale on the first call)."""
        if not self.is_initialized():
            self.initialize(x)
        alpha = self._broadcast(self.scale_value(), x)
        if not (self.training and torch.is_grad_enabled()):
            return self._codes(x, alpha).to(x.dtype) * alpha
        with torch.no_grad():
            codes = self._codes(x.detach(), alpha.detach()).to(x.dtype)
        if self.gradient == "lsq":
            grad_factor = 1.0 / math.sqrt(x.numel() // self.scale.numel() * max(self.qmax, 1))
            out = _LSQFakeQuant.apply(x, alpha, self.qmin, self.qmax, grad_factor)
        else:
            with torch.no_grad():
                alpha_grad = llsq_scale_gradient(
                    x.detach(), alpha.detach(), self.qmin, self.qmax, self.norm, self.code_rule
                ).reshape(alpha.shape)
                if self._fold_gain is not None:  # ∓a² on a = α/|s| (class docstring)
                    alpha_grad /= self._broadcast(self._fold_gain(), x).to(x.dtype).pow(3)
            out = _LLSQFakeQuant.apply(x, alpha, self.qmin, self.qmax, False, alpha_grad)
        return replace_forward(out, codes * alpha)

    @torch.no_grad()
    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """Projected integer codes of ``x`` (int64), as deployed."""
        check_finite("quantizer input", x)
        check_finite("quantizer scale", self.scale_value())
        return self._codes(x, self._broadcast(self.scale_value(), x)).to(torch.int64)


# -- prepare(): which layers are bounded, and their quantizers ---------------------------------
def layer_accumulator_bits(recipe: Recipe, layer: str, weight_bits: int | None) -> int | None:
    """P of ``layer`` under ``recipe`` (its ``layer_accumulator_bits`` entry, else
    ``accumulator_bits``); None when unbounded.

    Raises:
        ConfigError: the layer keeps float weights, so there is no integer sum to bound.
    """
    bits = recipe.layer_accumulator_bits.get(layer, recipe.accumulator_bits)
    if bits is not None and weight_bits is None:
        raise ConfigError(
            f"layer '{layer}' keeps float weights (first_layer_bits/last_layer_bits = none), so "
            f"accumulator_bits={bits} has no integer accumulator to bound there. Fix: give the "
            "layer integer weights, or bound only other layers with layer_accumulator_bits."
        )
    return bits


def check_layer_names(recipe: Recipe, layers: list[str]) -> None:
    """Raise :class:`ConfigError` for a ``layer_accumulator_bits`` name that is no weight layer."""
    unknown = sorted(set(recipe.layer_accumulator_bits) - set(layers))
    if unknown:
        raise ConfigError(
            f"layer_accumulator_bits names {', '.join(map(repr, unknown))}, which the model has "
            f"no weight layer of. Fix: use layer names among {', '.join(layers)}."
        )


def bounded_weight_quantizer(
    recipe: Recipe, bits: int, weight: torch.Tensor, per_channel: bool, acc_bits: int
) -> BoundedLinearQuantizer:
    """LLSQ's weight quantizer (as :func:`hwquant.qat.prepare.llsq_weight_quantizer`) with codes
    bounded for a ``acc_bits``-bit accumulator."""
    channel_scales = per_channel and recipe.weight_granularity == "channel"
    return BoundedLinearQuantizer(
        bits,
        acc_bits=acc_bits,
        digit_planes=recipe.accumulator_digit_planes,
        weight_dim=weight.dim(),
        channels=weight.shape[0] if channel_scales else 1,
        gradient=recipe.scale_gradient,
        norm=recipe.llsq_norm,
        init=recipe.scale_init,
        constraint=recipe.scale_constraint,
        mantissa_bits=recipe.scale_mantissa_bits,
    )


def bind_accumulator_bound(layer: QuantWeightLayer) -> None:
    """Bind a bounded weight quantizer to its layer's input and bias (a no-op for others);
    a layer with BN folded in and free per-channel scales gets its scale relative to the fold
    (:class:`BoundedLinearQuantizer`). Power-of-two or fixed-point scales, or one scale for the
    tensor, cannot be ``|s_c|·a_c``: those layers keep absolute scales (and, before the BN
    freeze, the fold's feedback where the projection binds; docs/llsq.md §5.2).

    Raises:
        AccumulatorBitsError: P is too small for any non-zero weight with this layer's inputs;
            the message names the layer and the smallest P that works.
    """
    quant = layer.weight_quant
    if not isinstance(quant, BoundedLinearQuantizer):
        return
    relative = layer.bn is not None and quant.constraint == "free"
    relative &= quant.scale.numel() == layer.weight.shape[0]  # one scale per output channel
    quant.bind_layer(layer.input_quants[0], layer.bias_codes, layer.fold_gain if relative else None)
    bound = quant.bound()
    smallest = bound.smallest_bits()
    if quant.acc_bits < smallest:
        kind = "signed" if bound.in_signed else "unsigned"
        planes = " and 4-bit digit planes" if bound.weight_bits is not None else ""
        raise AccumulatorBitsError(
            f"layer '{layer.qname}': a {quant.acc_bits}-bit accumulator cannot hold even one "
            f"weight of ±1 times its {bound.in_bits}-bit {kind} inputs{planes}; the smallest "
            f"accumulator_bits that works for this layer is {smallest}. Fix: use "
            f"accumulator_bits >= {smallest}, or layer_accumulator_bits = "
            f"{{'{layer.qname}' = {smallest}}} for this layer."
        )


# -- lower(): the proof recorded on the integer model ------------------------------------------
def record_proved_bound(node: WeightNode, acc_bits: int | None, digit_planes: bool = False) -> None:
    """Set ``node.acc_interval`` and ``node.plane_interval`` from its integers (the theorem of
    the module docstring: every partial sum, and every 4-bit digit plane, for any input in
    range); with ``acc_bits`` (a layer trained for a P-bit accumulator) check that P holds
    the accumulator, and its digit planes where the layer was trained to bound them, and give
    the node that accumulator: ``acc_bits = P`` with ``overflow = "raise"`` (an overflow would
    contradict the proof, so it stops the run; ``set_accumulator`` changes it).

    Raises:
        HwquantError: the integers do not fit P (cannot happen for a model made by prepare()).
    """
    weight = torch.from_numpy(node.weight).reshape(node.weight.shape[0], -1)
    bound = AccumulatorBound(ACC_MAX_BITS, node.in_bits, node.in_signed, node.weight_bits)
    if weight.shape[0] == 0:
        return
    node.acc_interval = node.proved_interval()
    low, high = bound.plane_interval(weight)
    node.plane_interval = (int(low.min()), int(high.max()))
    if acc_bits is None:
        return
    needed = interval_bits(*node.acc_interval)
    if digit_planes:
        needed = max(needed, interval_bits(*node.plane_interval))
    if needed > acc_bits:
        raise HwquantError(
            f"layer '{node.name}' was trained for a {acc_bits}-bit accumulator but its integers "
            f"need {needed} bits for some input in range. Fix: report this; prepare() the model "
            "again with this hwquant version."
        )
    node.acc_bits, node.overflow = acc_bits, "raise"
