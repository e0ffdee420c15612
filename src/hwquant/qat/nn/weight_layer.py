"""The shared QAT form of layers with weights (Conv2d, Linear): LLSQ with BN folded in.

Training forward (methods.md §4; Jacob et al. 2018 §3.2 for the BN fold)::

    s   = γ / σ_run                       W' = s · W        (BN folded, running σ)
    y   = op(x_q, Q_w(W'))                                  (x_q arrives fake-quantized)
    before the freeze:  y ← y · σ_run/σ_B + (β − γ μ_B/σ_B)  (batch statistics, taken from y/s)
    after the freeze:   y ← y + Q_b(b')    with Q_b at scale α_w·α_in (rounded; clipped to P
                                           bits where the accumulator bounds it, bias_bits = P;
                                           otherwise never clipped, and a bias beyond
                                           ``bias_bits`` fails in the integer form)
    out = Q_out(act(y))

Integer form (eval mode and :func:`hwquant.lower`)::

    acc  = op_int(x_int, W_int) + b_int          (exact integer accumulation)
    code = clamp((acc·M + 2^(s−1)) >> s, lo, hi)   with M/2^s ≈ α_w·α_in/α_out

so the eval output is ``α_out · code``, and the last layer (no output quantizer) returns
``α_w·α_in · acc``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hwquant.core.distributed import batch_norm_train
from hwquant.core.errors import ConfigError, UnsupportedLayerError
from hwquant.core.intmath import channel_view, qrange, requant_params, round_half_up
from hwquant.ir.intmodel import WeightEncoding
from hwquant.qat.host_mirror import HostMirrored
from hwquant.qat.llsq import LinearQuantizer
from hwquant.qat.nn.base import Activation, QuantModule, Requant, apply_activation
from hwquant.qat.nn.bn_fold import bn_multiplier, fold_bn
from hwquant.qat.quantizer import WeightQuantizer
from hwquant.qat.recipe import MAX_BIAS_BITS
from hwquant.qat.ste import replace_forward

_TINY = 1e-12


@dataclass(frozen=True)
class WeightLayerInts:
    """Integer form of a weight layer, as deployed."""

    weight: torch.Tensor  # int64 codes
    bias: torch.Tensor | None  # int64, at accumulator scale α_w·α_in
    acc_scale: torch.Tensor  # float64 [C_out]: value of one accumulator unit
    requant: Requant | None  # None for the last layer
    encoding: WeightEncoding | None = None  # the stored form of `weight` (SP2, codebook)


class QuantWeightLayer(HostMirrored, QuantModule):
    """Base class of :class:`QConv2d` and :class:`QLinear`.

    Subclasses define :meth:`float_op` and :meth:`int_op`; this class does the BN fold, the
    weight, bias and output quantization, and the integer form.
    """

    def __init__(
        self,
        weight: nn.Parameter,
        bias: nn.Parameter | None,
        bn: nn.modules.batchnorm._BatchNorm | None,
        act: Activation,
        weight_quant: WeightQuantizer | None,
        out_quant: LinearQuantizer | None,
        *,
        bias_bits: int,
        requant_bits: int,
        bn_freeze_step: int | None,
    ) -> None:
        super().__init__(act)
        self.weight = weight
        self.bias = bias
        self.bn = bn
        self.weight_quant = weight_quant
        self.out_quant = out_quant
        self.bias_bits = bias_bits
        self.requant_bits = requant_bits
        self.register_buffer("bn_step", torch.zeros((), dtype=torch.int64))
        never = -1 if bn_freeze_step is None else bn_freeze_step
        self.register_buffer("bn_freeze_at", torch.tensor(never, dtype=torch.int64))
        # bn_step and bn_freeze_at are read on the host (HostMirrored) on every forward

    # -- the operation ---------------------------------------------------------------------
    def float_op(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The layer's float operation (the bias added inside the convolution or matmul)."""
        raise NotImplementedError

    def int_op(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        """The layer's exact integer operation (int64 codes in; the accumulator out as exact
        integers, see :func:`hwquant.core.intmath.int_conv2d`)."""
        raise NotImplementedError

    # -- training ----------------------------------------------------------------------------
    @property
    def bn_frozen(self) -> bool:
        """True once the BN statistics are frozen (or when there is no BN)."""
        if self.bn is None:
            return True
        step, freeze_at = self.host("bn_step"), self.host("bn_freeze_at")
        return freeze_at >= 0 and step >= freeze_at

    def bn_steps_to_freeze(self) -> int | None:
        """Training steps (forwards in training mode) before the BN statistics freeze: 0 once
        frozen or without BN, None when they never freeze (``bn_freeze_step=None``)."""
        if self.bn_frozen:
            return 0
        freeze_at = self.host("bn_freeze_at")
        return None if freeze_at < 0 else freeze_at - self.host("bn_step")

    def freeze_bn(self) -> None:
        """Freeze the BN statistics from the next step on (kept in the state dict)."""
        if not self.bn_frozen:
            self.set_host("bn_freeze_at", self.host("bn_step"))

    def _quant_bias(self, bias: torch.Tensor) -> torch.Tensor:
        """Fake-quantize the bias at accumulator scale α_w·α_in (straight-through rounding).

        In an unbounded layer the codes are rounded, never clipped to ``bias_bits``: a clipped
        bias would train another function than the one written, so a bias that does not fit
        is an error, with the width that fits, wherever the integer form is made (the eval
        forward, hence the trainer's evaluation after the first epoch, and ``lower``).

        In a layer whose accumulator is bounded to P bits (``accumulator_bits``;
        ``bias_bits = min(bias_bits, P)``, here P) the bias lives in that accumulator, so the
        layer's function clips it there, ``b_q = clamp(round(b/α), −2^(P−1), 2^(P−1) − 1)·α`` (zero
        gradient outside the range, as any clamp), in training and in the integer form alike:
        the whole accumulation fits P bits by construction (docs/llsq.md §5).
        """
        scale = (self.weight_quant.scale_value() * self._input_quants[0].scale_value()).detach()
        codes = round_half_up(bias / scale)
        if not self.bias_clipped:
            return replace_forward(bias, codes * scale)
        lo, hi = qrange(self.bias_bits, signed=True)
        clipped = codes.clamp(lo, hi) * scale
        inside = (codes >= lo) & (codes <= hi)
        return torch.where(inside, replace_forward(bias, clipped), clipped.detach())

    @property
    def bias_clipped(self) -> bool:
        """Whether the bias is clipped to ``bias_bits``: where that is the layer's P-bit
        accumulator (its weight quantizer bounds the accumulator,
        :class:`hwquant.qat.accumulator_bound.BoundedLinearQuantizer`, and ``Recipe.bias_bits``
        is not narrower than P, which would be refused as in an unbounded layer)."""
        return getattr(self.weight_quant, "acc_bits", None) == self.bias_bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """QAT forward in training mode, the integer form in eval mode."""
        if not self.training and self.weight_quant is not None:
            return self._forward_integer(x)
        y = self._forward_train(x) if self.training else self._forward_float(x)
        y = self.activation(y)
        return self.out_quant(y) if self.out_quant is not None else y

    def _quantized_weight(self, w: torch.Tensor) -> torch.Tensor:
        return self.weight_quant(w) if self.weight_quant is not None else w

    def _forward_float(self, x: torch.Tensor) -> torch.Tensor:
        """Float-weight layer in eval mode (first/last layer kept float)."""
        w, b = fold_bn(self.weight, self.bias, self.bn)
        return self.float_op(x, w, b)

    def float_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Float weights, BN folded with its running statistics, the fused activation."""
        return apply_activation(self.act, self._forward_float(x))

    def _forward_train(self, x: torch.Tensor) -> torch.Tensor:
        # the weight is quantized first: that initialises the scale the bias is quantized with
        if self.bn is None:
            weight, bias = self._quantized_weight(self.weight), self.bias
            if bias is not None and self.weight_quant is not None:
                bias = self._quant_bias(bias)
            return self.float_op(x, weight, bias)
        frozen = self.bn_frozen
        self.advance("bn_step")
        if frozen:
            w, b = fold_bn(self.weight, self.bias, self.bn)
            weight = self._quantized_weight(w)
            bias = self._quant_bias(b) if self.weight_quant is not None else b
            return self.float_op(x, weight, bias)
        return self._forward_batch_stats(x)

    def _forward_batch_stats(self, x: torch.Tensor) -> torch.Tensor:
        """Folded, quantized weights with the output corrected to batch statistics.

        With ``y = op(x, Q(s·W))`` and ``z = y/s`` (≈ the unfolded ``op(x, W)``), Jacob et al.'s
        corrected output ``y·σ_run/σ_B + β − γ·μ_B/σ_B`` is exactly batch norm of ``z`` in
        training mode, with μ_B and σ_B the batch statistics of ``z``. So it runs as PyTorch's
        fused batch norm, which also updates the running statistics as BatchNorm does; no
        second convolution is needed.
        """
        bn = self.bn
        s = bn_multiplier(bn)
        w = self.weight * s.view(-1, *([1] * (self.weight.dim() - 1)))
        y = self.float_op(x, self._quantized_weight(w))
        s_safe = torch.where(s.abs() < _TINY, torch.full_like(s, _TINY), s)
        z = y / channel_view(s_safe, y.dim())
        if self.bias is not None:  # BN sees conv + bias (the bias cancels in the output)
            z = z + channel_view(self.bias, z.dim())
        bn.num_batches_tracked += 1
        return batch_norm_train(z, bn)  # global-batch statistics under DDP (SyncBN)

    def fold_gain(self) -> torch.Tensor:
        """``|s| = |γ/σ_run|`` per output channel (detached, at least 1e-12): the factor an
        accumulator-bounded weight scale is relative to
        (:class:`hwquant.qat.accumulator_bound.BoundedLinearQuantizer`)."""
        return bn_multiplier(self.bn).detach().abs().clamp_min(_TINY)

    # -- integer form ------------------------------------------------------------------------
    @torch.no_grad()
    def integer_params(self, encode: bool = False) -> WeightLayerInts:
        """Integer weights, bias and requantization of the layer as deployed; with ``encode``
        also the weights' stored form (the weight quantizer's ``encode``)."""
        if self.weight_quant is None:
            raise UnsupportedLayerError(
                f"layer '{self.qname}' keeps float weights and has no integer form. Fix: set "
                "first_layer_bits / last_layer_bits in the recipe (8 by default)."
            )
        w, b = fold_bn(self.weight, self.bias, self.bn)
        w_int = self.weight_quant.codes(w)
        alpha_in = self._input_quants[0].scale_value().double()
        acc_scale = (self.weight_quant.scale_value().double() * alpha_in).expand(w.shape[0])
        b_int = self.bias_codes(self.weight_quant.scale_value())
        if b_int is not None:
            if not self.bias_clipped:
                self._check_bias_fits(b, round_half_up(b.double() / acc_scale))
            b_int = b_int.to(torch.int64)
        requant = None
        if self.out_quant is not None:
            ratio = acc_scale / self.out_quant.scale_value().double()
            mult, shift = requant_params(ratio.cpu().numpy(), self.requant_bits)
            lo, hi = self.out_range()
            requant = Requant(torch.from_numpy(mult), torch.from_numpy(shift), lo, hi)
        encoding = self.weight_quant.encode(w) if encode else None
        return WeightLayerInts(w_int, b_int, acc_scale.contiguous(), requant, encoding)

    @torch.no_grad()
    def bias_codes(self, weight_scale: torch.Tensor) -> torch.Tensor | None:
        """The folded bias as ``bias_bits`` integers (float64) at accumulator scale
        ``weight_scale·α_in`` (``weight_scale`` broadcasting against ``[C_out]``); None when the
        layer has no bias."""
        _, b = fold_bn(self.weight, self.bias, self.bn)
        if b is None:
            return None
        acc_scale = weight_scale.double() * self._input_quants[0].scale_value().double()
        lo, hi = qrange(self.bias_bits, signed=True)
        return round_half_up(b.double() / acc_scale).clamp(lo, hi)

    def _check_bias_fits(self, bias: torch.Tensor, b_int: torch.Tensor) -> None:
        """Raise unless every integer bias fits ``bias_bits`` (a clipped bias would change the
        function). The smallest width that holds ``[min, max]`` is ``n`` with
        ``−2^(n−1) ≤ min`` and ``max ≤ 2^(n−1) − 1``."""
        lo, hi = qrange(self.bias_bits, signed=True)
        b_min, b_max = int(b_int.min()), int(b_int.max())
        if lo <= b_min and b_max <= hi:
            return
        needed = max(max(b_max, 0).bit_length(), max(-b_min - 1, 0).bit_length()) + 1
        worst = int(b_int.abs().argmax())
        acc_bits = getattr(self.weight_quant, "acc_bits", None)  # accumulator-aware weights
        if acc_bits is not None:  # bias_bits < P: the user's width, narrower than the accumulator
            fix = (
                f"set bias_bits={acc_bits} (or more) in the recipe, and the bias is clipped to "
                f"this layer's {acc_bits}-bit accumulator (docs/llsq.md §5.1), or use a "
                "smaller bias"
            )
        elif needed <= MAX_BIAS_BITS:
            fix = f"set bias_bits={needed} or more in the recipe"
        else:
            fix = f"use fewer weight/activation bits (it needs {needed} > {MAX_BIAS_BITS} bits)"
        raise ConfigError(
            f"layer '{self.qname}': bias {float(bias[worst]):.6g} of channel {worst} is "
            f"{int(b_int[worst])} accumulator units (scale "
            f"{float(bias[worst]) / int(b_int[worst]):.3g}), outside the {self.bias_bits}-bit "
            f"bias range [{lo}, {hi}]; clipping it would change the layer's output. Fix: {fix}."
        )

    def _forward_integer(self, x: torch.Tensor) -> torch.Tensor:
        p = self.integer_params()
        acc = self.int_op(self.input_codes(x), p.weight, p.bias).to(torch.int64)
        if p.requant is None:
            self.emit(acc)
            scale = channel_view(p.acc_scale.to(acc.device), acc.dim())
            return (acc.double() * scale).to(torch.promote_types(x.dtype, torch.float32))
        return self.finish(p.requant.apply(acc), x.dtype)
