"""CIFAR-style residual networks (He et al., "Deep Residual Learning for Image Recognition",
CVPR 2016).

* :class:`ResNet20` is the paper's CIFAR-10 network (Section 4.2, n=3): a 3x3 stem and three stages
  of 16/32/64 channels with three :class:`BasicBlock` each. It uses the paper's *option B*
  shortcut (a 1x1 conv + BN projection where the shape changes) rather than option A's zero
  padding, so that every layer is a conv or a BN.
* :class:`ResNet18` is the common CIFAR adaptation of the ImageNet ResNet-18: a 3x3 stride-1 stem
  of 64 channels, no max pool, and four stages of 64/128/256/512 channels with two blocks each.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hwquant.models.layers import (
    check_model_args,
    conv2d,
    conv_bn,
    conv_bn_act,
    init_weights,
    scale_channels,
)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus a shortcut, then ``out = out + shortcut`` and a ReLU.

    The shortcut is the identity when input and output shapes match, otherwise a 1x1 conv + BN
    projection (option B of He et al. 2016).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv2d(in_channels, out_channels, 3, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = conv2d(out_channels, out_channels, 3)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Sequential | None = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = conv_bn(in_channels, out_channels, kernel_size=1, stride=stride)
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.shortcut is None else self.shortcut(x)
        out = out + shortcut
        return self.relu2(out)


class ResNet(nn.Module):
    """A CIFAR-style ResNet of :class:`BasicBlock` stages.

    Layout: 3x3 stride-1 conv-BN-ReLU stem with ``stage_channels[0]`` channels, then one stage per
    entry of ``stage_channels`` (the first at stride 1, each later one halving the resolution in
    its first block), global average pooling and a linear classifier. ``width`` multiplies every
    channel count (rounded to a multiple of 8).
    """

    def __init__(
        self,
        stage_channels: Sequence[int],
        blocks_per_stage: int,
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        check_model_args(num_classes=num_classes, in_channels=in_channels, width=width)
        channels = [scale_channels(c, width) for c in stage_channels]
        self.stem = conv_bn_act(in_channels, channels[0])
        stages: list[nn.Sequential] = []
        previous = channels[0]
        for index, out_channels in enumerate(channels):
            first_stride = 1 if index == 0 else 2
            blocks = [BasicBlock(previous, out_channels, first_stride)]
            blocks += [BasicBlock(out_channels, out_channels) for _ in range(blocks_per_stage - 1)]
            stages.append(nn.Sequential(*blocks))
            previous = out_channels
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(previous, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


class ResNet20(ResNet):
    """ResNet-20 for CIFAR (He et al. 2016, Sec. 4.2, n=3) with option-B projection shortcuts."""

    def __init__(self, *, num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> None:
        super().__init__(
            (16, 32, 64), 3, num_classes=num_classes, in_channels=in_channels, width=width
        )


class ResNet18(ResNet):
    """ResNet-18 (He et al. 2016, Table 1) in its usual CIFAR form: 3x3 stem, no max pool."""

    def __init__(self, *, num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> None:
        super().__init__(
            (64, 128, 256, 512), 2, num_classes=num_classes, in_channels=in_channels, width=width
        )
