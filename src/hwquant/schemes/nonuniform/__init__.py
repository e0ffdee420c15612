"""Non-uniform codebook weights: quantizer, codebook engine kernel and lookup-MAC unit."""

from hwquant.qat.recipe import NonUniformOptions
from hwquant.qat.registry import SchemeHandler, register_scheme
from hwquant.schemes.nonuniform.quantizer import nonuniform_weight_quantizer, setup_schedule

register_scheme(
    SchemeHandler(
        "nonuniform",
        NonUniformOptions,
        weight_quantizer=nonuniform_weight_quantizer,
        setup=setup_schedule,
    )
)
