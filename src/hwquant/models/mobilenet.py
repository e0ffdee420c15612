"""MobileNetV2 for 32x32 inputs (Sandler et al., "MobileNetV2: Inverted Residuals and Linear
Bottlenecks", CVPR 2018).

The CIFAR adaptation follows the widely used one (e.g. kuangliu/pytorch-cifar): the stem and the
24-channel stage, the first two places where the ImageNet network downsamples, run at stride 1,
so a 32x32 image leaves the last stage at 4x4 (overall stride 8 instead of 32). Everything else
is the paper's Table 2: inverted residual blocks with expansion ``t``, ReLU6, a linear
bottleneck, a residual add when stride is 1 and input and output channels agree, a final 1x1 conv
to 1280 channels, global average pooling and a linear classifier (here without dropout).
"""

from __future__ import annotations

import torch
from torch import nn

from hwquant.models.layers import (
    check_model_args,
    conv_bn,
    conv_bn_act,
    init_weights,
    make_divisible,
)

#: (expansion t, output channels c, repeats n, first stride s) per stage; Table 2 of the paper
#: with the 24-channel stage's stride changed from 2 to 1 for 32x32 inputs.
CIFAR_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
_STEM_CHANNELS = 32
_HEAD_CHANNELS = 1280


class InvertedResidual(nn.Module):
    """1x1 expansion (skipped when ``t == 1``), 3x3 depthwise, 1x1 linear projection.

    Expansion and depthwise layers end in ReLU6; the projection has no activation (linear
    bottleneck). When ``stride == 1`` and ``in_channels == out_channels`` the block input is added
    to the output, with no activation after the add.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(conv_bn_act(in_channels, hidden, 1, activation=nn.ReLU6))
        layers.append(conv_bn_act(hidden, hidden, 3, stride, groups=hidden, activation=nn.ReLU6))
        layers.append(conv_bn(hidden, out_channels, 1))
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if self.use_residual:
            out = out + x
        return out


class MobileNetV2(nn.Module):
    """MobileNetV2 (Sandler et al. 2018) adapted to 32x32 inputs; see the module docstring.

    ``width`` is the paper's width multiplier: it scales every channel count (rounded to a
    multiple of 8), except that the final 1x1 conv keeps 1280 channels for ``width < 1`` as in the
    paper.
    """

    def __init__(self, *, num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> None:
        super().__init__()
        check_model_args(num_classes=num_classes, in_channels=in_channels, width=width)
        previous = make_divisible(_STEM_CHANNELS * width)
        self.stem = conv_bn_act(in_channels, previous, 3, activation=nn.ReLU6)
        blocks: list[InvertedResidual] = []
        for expansion, channels, repeats, first_stride in CIFAR_SETTINGS:
            out_channels = make_divisible(channels * width)
            for index in range(repeats):
                stride = first_stride if index == 0 else 1
                blocks.append(InvertedResidual(previous, out_channels, stride, expansion))
                previous = out_channels
        self.blocks = nn.Sequential(*blocks)
        head_channels = make_divisible(_HEAD_CHANNELS * max(1.0, width))
        self.head = conv_bn_act(previous, head_channels, 1, activation=nn.ReLU6)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(head_channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))
