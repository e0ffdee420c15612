"""Plain (non-residual) conv nets: conv-BN-ReLU layers with 2x2 max pools, flattened into a linear
classifier. The layout is the VGG pattern (Simonyan & Zisserman, "Very Deep Convolutional Networks
for Large-Scale Image Recognition", ICLR 2015) with BatchNorm after every conv (Ioffe & Szegedy,
"Batch Normalization", ICML 2015); :mod:`hwquant.models.vgg` and :mod:`hwquant.models.small_cnn`
instantiate it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hwquant.models.layers import (
    check_input_size,
    check_model_args,
    conv_bn_act,
    init_weights,
    scale_channels,
)

#: One entry per 3x3 conv-BN-ReLU layer: (output channels, whether a 2x2 max pool follows it).
Layout = Sequence[tuple[int, bool]]


class PlainConvNet(nn.Module):
    """3x3 conv-BN-ReLU layers (optionally max-pooled) -> ``torch.flatten`` -> ``nn.Linear``.

    ``input_size`` fixes the classifier's input features, ``C * (input_size // 2**pools) ** 2``;
    ``width`` multiplies every conv's channel count (rounded to a multiple of 8). ``name`` only
    appears in error messages.
    """

    def __init__(
        self,
        layout: Layout,
        name: str,
        *,
        num_classes: int,
        in_channels: int,
        input_size: int,
        width: float,
    ) -> None:
        super().__init__()
        check_model_args(num_classes=num_classes, in_channels=in_channels, width=width)
        pools = sum(pool for _, pool in layout)
        check_input_size(input_size, 2**pools, name)
        layers: list[nn.Module] = []
        previous = in_channels
        for channels, pool in layout:
            out_channels = scale_channels(channels, width)
            layers.append(conv_bn_act(previous, out_channels))
            if pool:
                layers.append(nn.MaxPool2d(2))
            previous = out_channels
        self.features = nn.Sequential(*layers)
        spatial = input_size // 2**pools
        self.classifier = nn.Linear(previous * spatial * spatial, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))
