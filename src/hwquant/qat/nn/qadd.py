"""QAT twin of a residual add (with a following ReLU fused).

Training: ``out = Q_out(act(a_q + b_q))``. Integer form, with the operand scales aligned on one
shift (``M_a/2^s ≈ α_a/α_out``, ``M_b/2^s ≈ α_b/α_out``)::

    code = clamp((a·M_a + b·M_b + 2^(s−1)) >> s, lo, hi)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hwquant.core.intmath import aligned_requant_params, requantize
from hwquant.qat.llsq import LinearQuantizer
from hwquant.qat.nn.base import Activation, QuantModule, apply_activation


@dataclass(frozen=True)
class AddInts:
    """Integer form of an add: operand multipliers on a shared shift, output range."""

    mults: tuple[int, int]
    shift: int
    lo: int
    hi: int


class QAdd(QuantModule):
    """Quantized element-wise add of two quantized tensors."""

    def __init__(self, out_quant: LinearQuantizer, act: Activation, requant_bits: int) -> None:
        super().__init__(act)
        self.out_quant = out_quant
        self.requant_bits = requant_bits

    def extra_repr(self) -> str:
        return f"act={self.act}"

    @torch.no_grad()
    def integer_params(self) -> AddInts:
        """Multipliers and shift that align both operands on the output scale."""
        alpha_out = float(self.out_quant.scale_value())
        ratios = [float(q.scale_value()) / alpha_out for q in self._input_quants]
        mults, shift = aligned_requant_params(ratios, self.requant_bits)
        lo, hi = self.out_range()
        return AddInts((int(mults[0]), int(mults[1])), shift, lo, hi)

    def float_forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``act(a + b)`` in float."""
        return apply_activation(self.act, a + b)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Fake-quantized add in training, the integer form in eval."""
        if self.training:
            return self.out_quant(self.activation(a + b))
        p = self.integer_params()
        acc = self.input_codes(a, 0) * p.mults[0] + self.input_codes(b, 1) * p.mults[1]
        one = torch.ones((), dtype=torch.int64, device=acc.device)
        return self.finish(requantize(acc, one, one * p.shift, p.lo, p.hi), a.dtype)
