"""Grouped and depthwise convolutions (``groups > 1``, MobileNet's depthwise-separable blocks)
in the conv2d op (hwquant/ops/conv2d.py): every weight scheme's engine equals its QAT model and
the exported graph equals the engine, exactly; the table scheme and the network generator,
which build dense convolutions only, refuse them by name."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hwquant
from hwquant.core.errors import UnsupportedLayerError
from hwquant.qat.recipe import Recipe
from tests.helpers import trained_qat_model

RECIPES = {
    "llsq": Recipe(bn_freeze_step=1, last_layer_bits=6),
    "msq": Recipe(scheme="msq", bn_freeze_step=1, last_layer_bits=6),
    "nonuniform": Recipe(
        scheme="nonuniform", scale_constraint="pow2", bn_freeze_step=1, last_layer_bits=6
    ),
}


class Separable(nn.Module):
    """Stem, depthwise 3x3 + BN + ReLU6, pointwise 1x1, a 4-group 3x3, pooled classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.pw = nn.Conv2d(8, 16, 1)
        self.grouped = nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=4)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        x = F.relu6(self.bn(self.dw(x)))
        x = F.relu(self.grouped(F.relu(self.pw(x))))
        return self.fc(x.mean((2, 3)))


def _lowered(recipe: Recipe):
    torch.manual_seed(0)
    x = torch.randn(16, 1, 8, 8)
    qat = trained_qat_model(Separable(), recipe, x)
    return qat, hwquant.lower(qat, x), x


@pytest.mark.parametrize("scheme", list(RECIPES))
def test_grouped_convolutions_are_exact(scheme):
    qat, int_model, x = _lowered(RECIPES[scheme])
    groups = {n.name: n.groups for n in int_model.weight_nodes() if hasattr(n, "groups")}
    assert groups["dw"] == 8 and groups["grouped"] == 4
    assert hwquant.verify(qat, int_model, x).exact
    x_int = int_model.quantize_input(x)
    assert torch.equal(int_model.run(x_int, backend="onnxruntime"), int_model.run(x_int))


def test_network_generator_refuses_grouped_convolutions_by_name(tmp_path):
    from hwquant.rtl.network import build_design

    _, int_model, _ = _lowered(RECIPES["llsq"])
    with pytest.raises(UnsupportedLayerError, match="'dw' is a grouped or dilated convolution"):
        build_design(int_model, "lfe5u-85f", tmp_path / "d", input_size=8)
