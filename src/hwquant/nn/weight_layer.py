"""The shared QAT form of layers with weights (Conv2d, Linear): LLSQ with BN folded in.

Training forward (methods.md §4; Jacob et al. 2018 §3.2 for the BN fold)::

    s   = γ / σ_run                       W' = s · W        (BN folded, running σ)
    y   = op(x_q, Q_w(W'))                                  (x_q arrives fake-quantized)
    before the freeze:  y ← y · σ_run/σ_B + (β − γ μ_B/σ_B)  (batch statistics, taken from y/s)
    after the freeze:   y ← y + Q_b(b')    with Q_b at scale α_w·α_in and ``bias_bits``
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

from hwquant.intmath import qrange, requant_params, round_half_up
from hwquant.nn.base import Activation, QuantModule, Requant
from hwquant.nn.bn_fold import bn_multiplier, fold_bn
from hwquant.quantizers.llsq import LinearQuantizer
from hwquant.quantizers.ste import replace_forward

_TINY = 1e-12


@dataclass(frozen=True)
class WeightLayerInts:
    """Integer form of a weight layer, as deployed."""

    weight: torch.Tensor  # int64 codes
    bias: torch.Tensor | None  # int64, at accumulator scale α_w·α_in
    acc_scale: torch.Tensor  # float64 [C_out]: value of one accumulator unit
    requant: Requant | None  # None for the last layer


class QuantWeightLayer(QuantModule):
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
        weight_quant: LinearQuantizer | None,
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

    # -- the operation ---------------------------------------------------------------------
    def float_op(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """The layer's float operation without bias."""
        raise NotImplementedError

    def int_op(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        """The layer's exact integer operation (int64 in, int64 accumulator out)."""
        raise NotImplementedError

    def channel_view(self, t: torch.Tensor, ndim: int) -> torch.Tensor:
        """Lay a per-output-channel vector along dimension 1 of an ``ndim`` output."""
        return t.view(1, -1, *([1] * (ndim - 2)))

    # -- training ----------------------------------------------------------------------------
    @property
    def bn_frozen(self) -> bool:
        """True once the BN statistics are frozen (or when there is no BN)."""
        if self.bn is None:
            return True
        freeze_at = int(self.bn_freeze_at)
        return freeze_at >= 0 and int(self.bn_step) >= freeze_at

    def freeze_bn(self) -> None:
        """Freeze the BN statistics from the next step on (kept in the state dict)."""
        if not self.bn_frozen:
            self.bn_freeze_at.fill_(int(self.bn_step))

    def _quant_bias(self, bias: torch.Tensor) -> torch.Tensor:
        """Fake-quantize the bias at accumulator scale α_w·α_in (straight-through)."""
        scale = (self.weight_quant.scale_value() * self._input_quants[0].scale_value()).detach()
        lo, hi = qrange(self.bias_bits, signed=True)
        return replace_forward(bias, round_half_up(bias / scale).clamp(lo, hi) * scale)

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
        y = self.float_op(x, w)
        return y if b is None else y + self.channel_view(b, y.dim())

    def _forward_train(self, x: torch.Tensor) -> torch.Tensor:
        if self.bn is None:
            y = self.float_op(x, self._quantized_weight(self.weight))
            if self.bias is not None:
                bias = self._quant_bias(self.bias) if self.weight_quant is not None else self.bias
                y = y + self.channel_view(bias, y.dim())
            return y
        frozen = self.bn_frozen
        self.bn_step += 1
        if frozen:
            w, b = fold_bn(self.weight, self.bias, self.bn)
            y = self.float_op(x, self._quantized_weight(w))
            bias = self._quant_bias(b) if self.weight_quant is not None else b
            return y + self.channel_view(bias, y.dim())
        return self._forward_batch_stats(x)

    def _forward_batch_stats(self, x: torch.Tensor) -> torch.Tensor:
        """Folded, quantized weights with the output corrected to batch statistics.

        The batch mean and variance of the unfolded output ``conv(x, W)`` are read from the
        folded output divided by ``s`` (no second convolution), and the running statistics are
        updated from them as BatchNorm would.
        """
        bn = self.bn
        s = bn_multiplier(bn)
        sigma_run = torch.sqrt(bn.running_var + bn.eps)  # the σ the weights were folded with
        w = self.weight * s.view(-1, *([1] * (self.weight.dim() - 1)))
        y = self.float_op(x, self._quantized_weight(w))
        s_safe = torch.where(s.abs() < _TINY, torch.full_like(s, _TINY), s)
        z = y / self.channel_view(s_safe, y.dim())
        dims = [d for d in range(y.dim()) if d != 1]
        mean = z.mean(dim=dims)
        var = z.var(dim=dims, unbiased=False)
        with torch.no_grad():
            n = y.numel() // y.shape[1]
            momentum = bn.momentum if bn.momentum is not None else 0.1
            layer_mean = mean if self.bias is None else mean + self.bias  # BN sees conv + bias
            bn.running_mean.lerp_(layer_mean.detach(), momentum)
            bn.running_var.lerp_(var.detach() * n / max(n - 1, 1), momentum)
            bn.num_batches_tracked += 1
        sigma_b = torch.sqrt(var + bn.eps)
        gamma = bn.weight if bn.weight is not None else torch.ones_like(s)
        beta = bn.bias if bn.bias is not None else torch.zeros_like(s)
        y = y * self.channel_view(sigma_run.detach() / sigma_b, y.dim())
        return y + self.channel_view(beta - gamma * mean / sigma_b, y.dim())

    # -- integer form ------------------------------------------------------------------------
    @torch.no_grad()
    def integer_params(self) -> WeightLayerInts:
        """Integer weights, bias and requantization of the layer as deployed."""
        if self.weight_quant is None:
            raise RuntimeError(f"layer '{self.qname}' keeps float weights and has no integer form")
        w, b = fold_bn(self.weight, self.bias, self.bn)
        w_int = self.weight_quant.codes(w)
        alpha_in = self._input_quants[0].scale_value().double()
        acc_scale = (self.weight_quant.scale_value().double() * alpha_in).expand(w.shape[0])
        b_int = None
        if b is not None:
            lo, hi = qrange(self.bias_bits, signed=True)
            b_int = round_half_up(b.double() / acc_scale).clamp(lo, hi).to(torch.int64)
        requant = None
        if self.out_quant is not None:
            ratio = acc_scale / self.out_quant.scale_value().double()
            mult, shift = requant_params(ratio.cpu().numpy(), self.requant_bits)
            lo, hi = self.out_range()
            requant = Requant(torch.from_numpy(mult), torch.from_numpy(shift), lo, hi)
        return WeightLayerInts(w_int, b_int, acc_scale.contiguous(), requant)

    def _forward_integer(self, x: torch.Tensor) -> torch.Tensor:
        p = self.integer_params()
        acc = self.int_op(self.input_codes(x), p.weight, p.bias)
        if p.requant is None:
            self.emit(acc)
            scale = self.channel_view(p.acc_scale.to(acc.device), acc.dim())
            return (acc.double() * scale).to(x.dtype)
        return self.finish(p.requant.apply(acc), x.dtype)
