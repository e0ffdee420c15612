"""The network input quantizer: float data in, integer codes (as ``α·code``) out."""

from __future__ import annotations

import torch

from hwquant.core.errors import check_finite
from hwquant.qat.llsq import LinearQuantizer
from hwquant.qat.nn.base import QuantModule


class QuantInput(QuantModule):
    """Quantize the network input: ``code = clamp(round_half_up(x/α), Q_n, Q_p)``."""

    def __init__(self, out_quant: LinearQuantizer) -> None:
        super().__init__()
        self.out_quant = out_quant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fake-quantize in training; in eval check the data and emit the codes."""
        if self.training:
            return self.out_quant(x)
        check_finite("input batch", x)
        if not self.out_quant.is_initialized():
            self.out_quant.initialize(x)
        return self.finish(self.out_quant.codes(x.float()), x.dtype)
