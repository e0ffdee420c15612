"""Non-uniform codebook weights: quantizer, codebook engine kernel and lookup-MAC unit."""

from hwquant.ir.encodings import EncodingHandler, register_encoding
from hwquant.ir.intmodel import CodebookEncoding
from hwquant.qat.recipe import NonUniformOptions
from hwquant.qat.registry import SchemeHandler, register_scheme
from hwquant.schemes.nonuniform.engine import codebook_accumulate
from hwquant.schemes.nonuniform.onnx import codebook_weight_op
from hwquant.schemes.nonuniform.quantizer import nonuniform_weight_quantizer, setup_schedule
from hwquant.schemes.nonuniform.rtl import codebook_lane_groups

register_scheme(
    SchemeHandler(
        "nonuniform",
        NonUniformOptions,
        weight_quantizer=nonuniform_weight_quantizer,
        setup=setup_schedule,
    )
)
register_encoding(
    EncodingHandler(
        CodebookEncoding,
        codebook_accumulate,
        lanes=codebook_lane_groups,
        onnx_op=codebook_weight_op,
    )
)
