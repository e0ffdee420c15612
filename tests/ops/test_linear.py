"""The fully connected op's prepare facets (hwquant/ops/linear.py): ``fuse`` absorbs a
BatchNorm1d and the activation after it; ``build`` makes a QLinear, with one weight scale when
it is the last layer (its outputs share one scale)."""

from __future__ import annotations

from torch import nn

from hwquant.ops import linear
from hwquant.qat import fidelity
from hwquant.qat.fusion import FusedSpec
from hwquant.qat.nn import QLinear
from hwquant.qat.recipe import Recipe
from tests.ops.test_conv2d import _fused, _layer


def test_linear_fuse_absorbs_a_batchnorm1d_and_a_functional_relu():
    gm, node, (new, spec) = _fused(linear, "fc")
    assert new is node and spec.op == "linear"
    assert spec.source is gm.fc and spec.bn is gm.bn1 and spec.act == "relu"
    assert node.meta[fidelity.FLOAT_NODE] == "relu"


def test_build_linear_makes_a_qlinear_with_one_scale_when_last():
    recipe = Recipe(weight_bits=4, last_layer_bits=8, weight_granularity="channel")
    spec = FusedSpec("linear", source=nn.Linear(6, 5))
    inner = linear.build(spec, _layer(recipe, first=False, last=False))
    last = linear.build(spec, _layer(recipe, first=False, last=True))
    assert isinstance(inner, QLinear) and isinstance(last, QLinear)
    assert inner.weight_quant.scale.numel() == 5 and last.weight_quant.scale.numel() == 1
