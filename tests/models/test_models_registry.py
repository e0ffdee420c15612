"""hwquant.models.build and MODEL_NAMES: names, classes and argument errors."""

from __future__ import annotations

from typing import Any

import pytest
from torch import nn

from hwquant.core.errors import ConfigError
from hwquant.models import (
    MODEL_NAMES,
    MobileNetV2,
    ResNet18,
    ResNet20,
    SmallCNN,
    VGGSmall,
    build,
)


def test_names_and_classes() -> None:
    assert MODEL_NAMES == ("resnet20", "resnet18", "vgg_small", "mobilenetv2", "small_cnn")
    classes = (ResNet20, ResNet18, VGGSmall, MobileNetV2, SmallCNN)
    for name, cls in zip(MODEL_NAMES, classes, strict=True):
        assert type(build(name, width=0.25, input_size=8)) is cls


def test_each_call_builds_a_new_model() -> None:
    assert build("small_cnn") is not build("small_cnn")


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown model 'resnet50'.*resnet20, resnet18"):
        build("resnet50")


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"num_classes": 0}, r"num_classes must be an integer >= 1"),
        ({"in_channels": 2.0}, r"in_channels must be an integer"),
        ({"num_classes": True}, r"num_classes must be an integer"),
        ({"width": 0.0}, r"width must be a finite number > 0"),
        ({"width": float("nan")}, r"width must be a finite number > 0"),
        ({"input_size": 0}, r"input_size=0 is not valid"),
    ],
)
@pytest.mark.parametrize("name", ["resnet20", "small_cnn"])
def test_bad_arguments_raise_config_error(name: str, kwargs: dict[str, Any], pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        build(name, **kwargs)


def test_direct_construction_validates_too() -> None:
    with pytest.raises(ConfigError, match="width"):
        MobileNetV2(width=-1.0)


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="Fix:"):
        build("nope")


def test_models_are_modules() -> None:
    assert all(isinstance(build(name, width=0.25, input_size=8), nn.Module) for name in MODEL_NAMES)
