"""VGG-Small, the CIFAR-10 network of LQ-Nets (Zhang et al., "LQ-Nets: Learned Quantization for
Highly Accurate and Compact Deep Neural Networks", ECCV 2018), also used by LLSQ (Zhao et al.,
"Linear Symmetric Quantization of Neural Networks for Low-Precision Integer Hardware", ICLR 2020).

Six 3x3 conv-BN-ReLU layers of 128, 128, 256, 256, 512, 512 channels with a 2x2 max pool after every
second one, then one linear layer on the flattened ``512 x 4 x 4`` map (for 32x32 inputs).
"""

from __future__ import annotations

from hwquant.models.plain import PlainConvNet

_LAYOUT = ((128, False), (128, True), (256, False), (256, True), (512, False), (512, True))


class VGGSmall(PlainConvNet):
    """VGG-Small (LQ-Nets, ECCV 2018): 6 conv-BN-ReLU layers, 3 max pools, 1 linear layer."""

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int = 32,
        width: float = 1.0,
    ) -> None:
        super().__init__(
            _LAYOUT,
            "vgg_small",
            num_classes=num_classes,
            in_channels=in_channels,
            input_size=input_size,
            width=width,
        )
