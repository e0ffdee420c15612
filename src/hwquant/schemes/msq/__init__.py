"""Mix and Match (MSQ): rows of sum-of-powers-of-two and fixed-point weights; shift-add kernel
and unit."""

from hwquant.qat.recipe import MSQOptions
from hwquant.qat.registry import SchemeHandler, register_scheme
from hwquant.schemes.msq.quantizer import msq_weight_quantizer

register_scheme(SchemeHandler("msq", MSQOptions, weight_quantizer=msq_weight_quantizer))
