"""LLSQ: learned linear symmetric quantization; its fixed-point multiply-accumulate unit."""

from hwquant.qat.prepare import llsq_weight_quantizer
from hwquant.qat.registry import SchemeHandler, register_scheme

register_scheme(SchemeHandler("llsq", weight_quantizer=llsq_weight_quantizer))
