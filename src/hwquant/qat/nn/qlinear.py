"""QAT twin of ``nn.Linear`` (with a following ReLU fused)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hwquant.core.intmath import int_linear
from hwquant.qat.nn.weight_layer import QuantWeightLayer


class QLinear(QuantWeightLayer):
    """Quantized fully connected layer; see :mod:`hwquant.qat.nn.weight_layer` for the maths."""

    def __init__(self, linear: nn.Linear, **kwargs) -> None:
        super().__init__(linear.weight, linear.bias, **kwargs)

    def extra_repr(self) -> str:
        c_out, c_in = self.weight.shape
        return f"{c_in}->{c_out}, act={self.act}"

    def float_op(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        return F.linear(x, weight, bias)

    def int_op(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        return int_linear(x, weight, bias, x_max=self.input_magnitude())
