"""QAT twin of ``nn.Conv2d`` (with its BatchNorm and ReLU/ReLU6 fused)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hwquant.core.intmath import int_conv2d
from hwquant.qat.nn.weight_layer import QuantWeightLayer


class QConv2d(QuantWeightLayer):
    """Quantized 2-D convolution; see :mod:`hwquant.qat.nn.weight_layer` for the maths."""

    def __init__(self, conv: nn.Conv2d, **kwargs) -> None:
        super().__init__(conv.weight, conv.bias, **kwargs)
        self.stride = tuple(conv.stride)
        self.padding = tuple(conv.padding)
        self.dilation = tuple(conv.dilation)
        self.groups = conv.groups

    def extra_repr(self) -> str:
        c_out, c_in, kh, kw = self.weight.shape
        return (
            f"{c_in * self.groups}->{c_out}, kernel=({kh}, {kw}), stride={self.stride}, "
            f"padding={self.padding}, groups={self.groups}, act={self.act}"
        )

    def float_op(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def int_op(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        return int_conv2d(
            x,
            weight,
            bias,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
            x_max=self.input_magnitude(),
        )
