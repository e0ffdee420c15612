"""Quantized layers for QAT: twins of Conv2d, Linear, residual add, average pooling and the
input quantizer, each with its integer form (see :mod:`hwquant.qat.nn.base`)."""

from hwquant.qat.nn.base import QuantModule, Requant, capture_codes, quant_modules
from hwquant.qat.nn.qadd import QAdd
from hwquant.qat.nn.qconv import QConv2d
from hwquant.qat.nn.qinput import QuantInput
from hwquant.qat.nn.qlinear import QLinear
from hwquant.qat.nn.qpool import QAvgPool
from hwquant.qat.nn.weight_layer import QuantWeightLayer, WeightLayerInts

__all__ = [
    "QAdd",
    "QAvgPool",
    "QConv2d",
    "QLinear",
    "QuantInput",
    "QuantModule",
    "QuantWeightLayer",
    "Requant",
    "WeightLayerInts",
    "capture_codes",
    "quant_modules",
]
