"""QAT twin of an elementwise product of two quantized tensors (squeeze-excitation ``x * gate``).

Training: ``out = Q_out(a_q · b_q)`` (``b`` broadcast, e.g. a per-channel gate ``[N, C, 1, 1]``).
Integer form: the codes multiply exactly, ``α_a·a · α_b·b = α_a·α_b · (a·b)``, and the product
is requantized to the output scale with ``M/2^s ≈ α_a·α_b / α_out``::

    code = clamp((a·b·M + 2^(s−1)) >> s, lo, hi)
"""

from __future__ import annotations

import operator

import torch
from torch import fx

from hwquant.core.intmath import requant_params
from hwquant.qat.llsq import LinearQuantizer
from hwquant.qat.nn.base import QuantModule, Requant

_MUL_FUNCTIONS = (operator.mul, torch.mul, operator.imul)


def is_product(node: fx.Node) -> bool:
    """``a * b``, ``torch.mul(a, b)``, ``a.mul(b)`` of two tensors (a constant factor is not:
    that is a scale, refused by ``prepare``)."""
    is_call = (node.op == "call_function" and node.target in _MUL_FUNCTIONS) or (
        node.op == "call_method" and node.target in ("mul", "__mul__")
    )
    return (
        is_call
        and len(node.args) == 2
        and not node.kwargs
        and all(isinstance(a, fx.Node) for a in node.args)
    )


class QMul(QuantModule):
    """Quantized elementwise product of two quantized tensors (broadcast as in PyTorch)."""

    def __init__(self, out_quant: LinearQuantizer, requant_bits: int) -> None:
        super().__init__()
        self.out_quant = out_quant
        self.requant_bits = requant_bits

    @torch.no_grad()
    def integer_params(self) -> Requant:
        """Requantization of the code product ``a·b`` to the output scale."""
        alpha_a, alpha_b = (float(q.scale_value()) for q in self.input_quants)
        ratio = alpha_a * alpha_b / float(self.out_quant.scale_value())
        mult, shift = requant_params([ratio], self.requant_bits)
        lo, hi = self.out_range()
        return Requant(torch.from_numpy(mult), torch.from_numpy(shift), lo, hi)

    def float_forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``a · b`` in float."""
        return a * b

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Fake-quantized product in training, the integer form in eval."""
        if self.training:
            return self.out_quant(a * b)
        product = self.input_codes(a, 0) * self.input_codes(b, 1)
        return self.finish(self.integer_params().apply(product), a.dtype)
