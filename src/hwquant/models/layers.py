"""Building blocks shared by every architecture in :mod:`hwquant.models`.

Everything here produces only the layer types the quantizer understands: ``nn.Conv2d`` (without
bias, since a BatchNorm always follows), ``nn.BatchNorm2d`` and a fresh activation module per use.
"""

from __future__ import annotations

import math

from torch import nn

from hwquant.core.errors import ConfigError

#: The activation modules a conv-BN stack may end with.
Activation = type[nn.ReLU] | type[nn.ReLU6]


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` (at least ``divisor``).

    The result never falls more than 10% below ``value``. This is ``_make_divisible`` from the
    reference MobileNetV2 code (Sandler et al., "MobileNetV2: Inverted Residuals and Linear
    Bottlenecks", CVPR 2018); multiples of 8 also map well onto accelerator lanes.
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def scale_channels(channels: int, width: float) -> int:
    """Channel count ``channels * width``, rounded by :func:`make_divisible`."""
    return make_divisible(channels * width)


def conv2d(
    in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, groups: int = 1
) -> nn.Conv2d:
    """A bias-free "same"-padded convolution (odd ``kernel_size``), meant to feed a BatchNorm."""
    return nn.Conv2d(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=kernel_size // 2,
        groups=groups,
        bias=False,
    )


def conv_bn(
    in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    """``Conv2d -> BatchNorm2d`` with no activation (projection shortcuts, linear bottlenecks)."""
    return nn.Sequential(
        conv2d(in_channels, out_channels, kernel_size, stride, groups),
        nn.BatchNorm2d(out_channels),
    )


def conv_bn_act(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    stride: int = 1,
    groups: int = 1,
    activation: Activation = nn.ReLU,
) -> nn.Sequential:
    """``Conv2d -> BatchNorm2d -> activation`` with a new activation instance."""
    return nn.Sequential(
        *conv_bn(in_channels, out_channels, kernel_size, stride, groups), activation()
    )


def init_weights(model: nn.Module) -> None:
    """He initialisation for convolutions, identity affine transform for BatchNorm.

    Convolutions use ``kaiming_normal_(mode="fan_out", nonlinearity="relu")`` (He et al., "Delving
    Deep into Rectifiers", ICCV 2015). Every BatchNorm starts at weight 1 and bias 0, including the
    last BN of residual blocks (no zero-gamma trick), so that a quantizer calibrating on a freshly
    built model sees non-degenerate statistics. ``nn.Linear`` keeps PyTorch's default init.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def _check_positive_int(name: str, value: object, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(
            f"{name} must be an integer >= {minimum}, got {value!r}. "
            f"Fix: pass a whole number of at least {minimum}."
        )


def check_model_args(*, num_classes: int, in_channels: int, width: float) -> None:
    """Raise :class:`~hwquant.core.errors.ConfigError` unless the arguments all models take are
    valid."""
    _check_positive_int("num_classes", num_classes)
    _check_positive_int("in_channels", in_channels)
    if (
        isinstance(width, bool)
        or not isinstance(width, int | float)
        or not math.isfinite(width)
        or width <= 0
    ):
        raise ConfigError(
            f"width must be a finite number > 0, got {width!r}. "
            "Fix: pass a channel multiplier such as 0.5, 1.0 or 2.0."
        )


def check_input_size(input_size: int, minimum: int, model: str) -> None:
    """Raise :class:`~hwquant.core.errors.ConfigError` unless ``input_size`` is an int >=
    ``minimum``."""
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < minimum:
        raise ConfigError(
            f"input_size={input_size!r} is not valid for {model}: it needs an integer of at least "
            f"{minimum} pixels per side (it downsamples the image). "
            f"Fix: pass input_size >= {minimum}."
        )
