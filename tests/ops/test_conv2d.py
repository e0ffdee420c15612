"""The convolution op's prepare facets (hwquant/ops/conv2d.py): ``fuse`` absorbs the
BatchNorm2d and the activation after it, in place; ``build`` (shared by the weight layers) gives
the first, inner and last layer their bits, weight quantizer and output."""

from __future__ import annotations

import pytest
import torch
from torch import fx, nn

from hwquant.ops import conv2d, linear
from hwquant.qat import fidelity
from hwquant.qat.fusion import FusedSpec, Fusion, LayerContext, act_quantizer
from hwquant.qat.llsq import LinearQuantizer
from hwquant.qat.nn import QConv2d
from hwquant.qat.recipe import Recipe


class Chain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.ReLU()
        self.fc = nn.Linear(4, 5)
        self.bn1 = nn.BatchNorm1d(5)  # folds into the Linear
        self.bn2 = nn.BatchNorm2d(4)  # after a Linear: not absorbed by it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn(self.conv(x))).mean((2, 3))
        return torch.relu(self.bn1(self.fc(y)))


def _fused(op, name: str):
    gm = fx.symbolic_trace(Chain())
    node = next(n for n in gm.graph.nodes if n.target == name)
    fusion = Fusion(gm)
    return gm, node, op.fuse(fusion, node, fusion.module(node))


def test_conv_fuse_absorbs_its_batchnorm_and_relu_in_place():
    gm, node, (new, spec) = _fused(conv2d, "conv")
    assert new is node and spec.op == "conv2d" and spec.has_weights
    assert spec.source is gm.conv and spec.bn is gm.bn and spec.act == "relu"
    assert node.meta[fidelity.FLOAT_NODE] == "act"
    assert {n.target for n in gm.graph.nodes} >= {"conv"}
    assert not {"bn", "act"} & {n.target for n in gm.graph.nodes}


def test_fuse_takes_only_its_own_layer():
    _, _, fused = _fused(conv2d, "fc")
    assert fused is None
    _, _, fused = _fused(linear, "conv")
    assert fused is None


def _layer(recipe: Recipe, first: bool, last: bool, signed: bool = True) -> LayerContext:
    inputs = (act_quantizer(recipe, 8 if first else 4, signed),)
    return LayerContext(recipe, "conv", inputs, first=first, last=last, out_bits=4)


@pytest.mark.parametrize(
    ("first", "last", "bits", "out"),
    [(True, False, 8, True), (False, False, 3, True), (False, True, 6, False)],
    ids=["first", "inner", "last"],
)
def test_build_gives_each_place_its_bits(first, last, bits, out):
    recipe = Recipe(weight_bits=3, first_layer_bits=8, last_layer_bits=6)
    spec = FusedSpec("conv2d", source=nn.Conv2d(3, 4, 3), act="relu")
    module = conv2d.build(spec, _layer(recipe, first, last))
    assert isinstance(module, QConv2d) and module.act == "relu"
    assert isinstance(module.weight_quant, LinearQuantizer)
    assert module.weight_quant.bits == bits
    assert (module.out_quant is not None) == out
    if out:  # unsigned after the ReLU
        assert (module.out_quant.bits, module.out_quant.signed) == (4, False)
