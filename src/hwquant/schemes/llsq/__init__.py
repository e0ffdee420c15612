"""LLSQ: learned linear symmetric quantization. Its weights are plain integer codes, so the
engine's common path, the fixed-point MAC (:mod:`hwquant.rtl.fixed_mac`) and the plain ONNX
graph serve it; it registers no weight encoding."""

from hwquant.qat.prepare import llsq_weight_quantizer
from hwquant.qat.registry import SchemeHandler, register_scheme

register_scheme(
    SchemeHandler("llsq", weight_quantizer=llsq_weight_quantizer, accumulator_aware=True)
)
