"""Quantized layers for QAT: twins of Conv2d, Linear, residual add, average pooling and the
input quantizer, each with its integer form (see :mod:`hwquant.nn.base`)."""

from hwquant.nn.base import QuantModule, Requant, capture_codes, quant_modules
from hwquant.nn.qadd import QAdd
from hwquant.nn.qconv import QConv2d
from hwquant.nn.qinput import QuantInput
from hwquant.nn.qlinear import QLinear
from hwquant.nn.qpool import QAvgPool
from hwquant.nn.weight_layer import QuantWeightLayer, WeightLayerInts

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
