"""QAT twin of average pooling (global, or non-overlapping k×k windows).

Training: ``out = Q_out(mean over the window)``. Integer form: the window's codes are summed
exactly and requantized with ``M/2^s ≈ α_in / (n·α_out)`` for a window of ``n`` elements.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hwquant.core.intmath import requant_params, window_sum
from hwquant.qat.llsq import LinearQuantizer
from hwquant.qat.nn.base import QuantModule, Requant


class QAvgPool(QuantModule):
    """Quantized average pooling; ``kernel_size=None`` pools globally to 1×1."""

    def __init__(
        self, out_quant: LinearQuantizer, kernel_size: int | None, requant_bits: int
    ) -> None:
        super().__init__()
        self.out_quant = out_quant
        self.kernel_size = kernel_size
        self.requant_bits = requant_bits

    def extra_repr(self) -> str:
        return "global" if self.kernel_size is None else f"kernel_size={self.kernel_size}"

    def window(self, x: torch.Tensor) -> int:
        """Number of elements averaged per output for input ``x``."""
        return x.shape[-1] * x.shape[-2] if self.kernel_size is None else self.kernel_size**2

    @torch.no_grad()
    def integer_params(self, window: int) -> Requant:
        """Requantization of a window sum of ``window`` codes."""
        ratio = float(self._input_quants[0].scale_value()) / (
            window * float(self.out_quant.scale_value())
        )
        mult, shift = requant_params([ratio], self.requant_bits)
        lo, hi = self.out_range()
        return Requant(torch.from_numpy(mult), torch.from_numpy(shift), lo, hi)

    def float_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The float average over each window."""
        if self.kernel_size is None:
            return F.adaptive_avg_pool2d(x, 1)
        return F.avg_pool2d(x, self.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fake-quantized average in training, the integer form in eval."""
        if self.training:
            return self.out_quant(self.float_forward(x))
        requant = self.integer_params(self.window(x))
        return self.finish(
            requant.apply(window_sum(self.input_codes(x), self.kernel_size)), x.dtype
        )
