"""Quantizers: one scheme per module, each an ``nn.Module`` with a fake-quant forward, its own
gradient rule, its level set and a small frozen dataclass for its integer export."""

from hwquant.quantizers.llsq import LinearQuantizer, LinearQuantSpec, llsq_scale_gradient
from hwquant.quantizers.protocol import Quantizer, WeightQuantizer
from hwquant.quantizers.scale import SCALE_CONSTRAINTS, constrain_scale

__all__ = [
    "SCALE_CONSTRAINTS",
    "LinearQuantSpec",
    "LinearQuantizer",
    "Quantizer",
    "WeightQuantizer",
    "constrain_scale",
    "llsq_scale_gradient",
]
