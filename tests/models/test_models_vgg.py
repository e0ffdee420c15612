"""VGG-Small (LQ-Nets, ECCV 2018): parameter count, layout, input size and width."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hwquant.core.errors import ConfigError
from hwquant.models import VGGSmall


def test_param_count() -> None:
    # 6 convs (4,574,592) + 6 BNs (3,584) + linear 8192 -> 10 (81,930); the "4.6M" of LQ-Nets.
    assert sum(p.numel() for p in VGGSmall().parameters()) == 4_660_106


def test_layout() -> None:
    model = VGGSmall()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [128, 128, 256, 256, 512, 512]
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 3
    assert model.classifier.in_features == 512 * 4 * 4


def test_input_size_sets_classifier_features() -> None:
    model = VGGSmall(input_size=16, in_channels=1, width=0.25).eval()
    assert model.classifier.in_features == 128 * 2 * 2
    assert model(torch.randn(2, 1, 16, 16)).shape == (2, 10)


def test_width_scales_channels() -> None:
    convs = [m for m in VGGSmall(width=0.5).modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256]


def test_too_small_input_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"input_size=4 .*vgg_small.*at least 8"):
        VGGSmall(input_size=4)
