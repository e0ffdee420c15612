"""Mix and Match (MSQ): rows of sum-of-powers-of-two and fixed-point weights; shift-add kernel
and unit."""

from hwquant.ir.encodings import EncodingHandler, register_encoding
from hwquant.ir.intmodel import MSQEncoding
from hwquant.qat.recipe import MSQOptions
from hwquant.qat.registry import SchemeHandler, register_scheme
from hwquant.schemes.msq.engine import shift_add_accumulate
from hwquant.schemes.msq.onnx import msq_weight_op
from hwquant.schemes.msq.quantizer import msq_weight_quantizer
from hwquant.schemes.msq.rtl import msq_lane_groups

register_scheme(SchemeHandler("msq", MSQOptions, weight_quantizer=msq_weight_quantizer))
register_encoding(
    EncodingHandler(MSQEncoding, shift_add_accumulate, lanes=msq_lane_groups, onnx_op=msq_weight_op)
)
