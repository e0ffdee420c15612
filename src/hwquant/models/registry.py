"""Build a model of the zoo by name: :func:`build` and :data:`MODEL_NAMES`."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from hwquant.core.errors import ConfigError
from hwquant.models.layers import check_input_size
from hwquant.models.mobilenet import MobileNetV2
from hwquant.models.resnet import ResNet18, ResNet20
from hwquant.models.small_cnn import SmallCNN
from hwquant.models.vgg import VGGSmall

#: name -> factory(num_classes, in_channels, input_size, width). ResNets and MobileNetV2 end in
#: global average pooling, so they accept any input size and ignore ``input_size``.
_FACTORIES: dict[str, Callable[[int, int, int, float], nn.Module]] = {
    "resnet20": lambda n, c, s, w: ResNet20(num_classes=n, in_channels=c, width=w),
    "resnet18": lambda n, c, s, w: ResNet18(num_classes=n, in_channels=c, width=w),
    "vgg_small": lambda n, c, s, w: VGGSmall(num_classes=n, in_channels=c, input_size=s, width=w),
    "mobilenetv2": lambda n, c, s, w: MobileNetV2(num_classes=n, in_channels=c, width=w),
    "small_cnn": lambda n, c, s, w: SmallCNN(num_classes=n, in_channels=c, input_size=s, width=w),
}

#: Names accepted by :func:`build`.
MODEL_NAMES: tuple[str, ...] = tuple(_FACTORIES)


def build(
    name: str,
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int = 32,
    width: float = 1.0,
) -> nn.Module:
    """Build a freshly initialised float model.

    Args:
        name: one of :data:`MODEL_NAMES`.
        num_classes: outputs of the final linear layer.
        in_channels: channels of the input image (1 for grey-scale, 3 for RGB).
        input_size: height = width of the input image in pixels; it sizes the flattened classifier
            of ``vgg_small`` and ``small_cnn`` and picks the ``small_cnn`` variant (28x28 vs 8x8).
        width: channel multiplier; channel counts are rounded to multiples of 8.

    Raises:
        ConfigError: ``name`` is unknown or an argument is out of range.
    """
    if name not in _FACTORIES:
        raise ConfigError(f"unknown model {name!r}. Fix: use one of {', '.join(MODEL_NAMES)}.")
    check_input_size(input_size, 1, name)
    return _FACTORIES[name](num_classes, in_channels, input_size, width)
