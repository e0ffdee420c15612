"""MobileNetV2 for 32x32 inputs (Sandler et al. 2018): parameter count, blocks, width."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hwquant.models import InvertedResidual, MobileNetV2


def test_param_count() -> None:
    # torchvision's ImageNet MobileNetV2 has 3,504,872 parameters; the stride changes do not alter
    # any weight, and the 10-class head saves 1280 * 990 + 990 of them.
    assert sum(p.numel() for p in MobileNetV2().parameters()) == 3_504_872 - 1_268_190


def test_blocks_and_residuals() -> None:
    blocks = [m for m in MobileNetV2().modules() if isinstance(m, InvertedResidual)]
    assert len(blocks) == 17
    assert sum(b.use_residual for b in blocks) == 10
    # t == 1: no expansion conv, so depthwise + projection only
    assert len(blocks[0].block) == 2 and len(blocks[1].block) == 3
    activations = {type(m) for m in MobileNetV2().modules() if isinstance(m, nn.ReLU | nn.ReLU6)}
    assert activations == {nn.ReLU6}


def test_overall_stride_is_8() -> None:
    model = MobileNetV2().eval()
    with torch.no_grad():
        features = model.head(model.blocks(model.stem(torch.randn(1, 3, 32, 32))))
    assert features.shape == (1, 1280, 4, 4)


@pytest.mark.parametrize(
    ("width", "stem", "last_block", "head"), [(0.5, 16, 160, 1280), (2.0, 64, 640, 2560)]
)
def test_width_scales_channels(width: float, stem: int, last_block: int, head: int) -> None:
    model = MobileNetV2(width=width)
    assert model.stem[0].out_channels == stem
    assert model.blocks[-1].block[-1][0].out_channels == last_block
    # the paper keeps 1280 channels in the last conv for multipliers below 1
    assert model.head[0].out_channels == head == model.fc.in_features


def test_channels_are_multiples_of_8() -> None:
    convs = [m for m in MobileNetV2(width=0.35).modules() if isinstance(m, nn.Conv2d)]
    assert all(c.out_channels % 8 == 0 for c in convs)
