"""SmallCNN: 28x28 and 8x8 variants, grey-scale input, width scaling."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hwquant.models import SmallCNN, build


def _conv_channels(model: nn.Module) -> list[int]:
    return [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize(
    ("input_size", "channels", "features", "params"),
    [(28, [32, 32, 64], 64 * 7 * 7, 59_562), (8, [32, 64], 64 * 4 * 4, 29_162)],
)
def test_variant_follows_input_size(
    input_size: int, channels: list[int], features: int, params: int
) -> None:
    model = build("small_cnn", in_channels=1, input_size=input_size).eval()
    assert isinstance(model, SmallCNN)
    assert _conv_channels(model) == channels
    assert model.classifier.in_features == features
    assert sum(p.numel() for p in model.parameters()) == params  # regression value
    assert model(torch.randn(2, 1, input_size, input_size)).shape == (2, 10)


def test_rgb_input() -> None:
    model = SmallCNN(in_channels=3, input_size=32).eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(("width", "expected"), [(0.5, [16, 16, 32]), (2.0, [64, 64, 128])])
def test_width_scales_channels(width: float, expected: list[int]) -> None:
    model = SmallCNN(width=width)
    assert _conv_channels(model) == expected
    assert model.classifier.in_features == expected[-1] * 7 * 7
