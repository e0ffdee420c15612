"""Properties every model of the zoo must have for the fx-based quantizer.

Each model is built with a cheap configuration (small inputs for the wide networks) and checked
for output shape, fx-trace fidelity, the layer types it uses and how it uses them.
"""

from __future__ import annotations

import operator
from collections import Counter
from typing import Any

import pytest
import torch
from torch import fx, nn

from hwquant.models import MODEL_NAMES, build

ALLOWED_LEAVES = (
    nn.Conv2d,
    nn.BatchNorm2d,
    nn.ReLU,
    nn.ReLU6,
    nn.Linear,
    nn.MaxPool2d,
    nn.AdaptiveAvgPool2d,
)
ALLOWED_FUNCTIONS = {operator.add, torch.flatten}

# name -> (build kwargs, input size). ResNet-18 and MobileNetV2 run on 8x8 images to stay cheap.
CHEAP: dict[str, tuple[dict[str, Any], int]] = {
    "resnet20": ({}, 32),
    "resnet18": ({}, 8),
    "vgg_small": ({"input_size": 16}, 16),
    "mobilenetv2": ({}, 8),
    "small_cnn": ({"input_size": 28, "in_channels": 1}, 28),
}


def test_cheap_table_covers_every_model() -> None:
    assert set(CHEAP) == set(MODEL_NAMES)


def _model_and_input(name: str, num_classes: int = 7) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    kwargs, size = CHEAP[name]
    model = build(name, num_classes=num_classes, **kwargs)
    x = torch.randn(2, kwargs.get("in_channels", 3), size, size)
    return model, x


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_shape(name: str) -> None:
    model, x = _model_and_input(name)
    assert model.eval()(x).shape == (2, 7)


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_fx_trace_matches_eager(name: str, train: bool) -> None:
    model, x = _model_and_input(name)
    model.train(train)
    traced = fx.symbolic_trace(model)
    with torch.no_grad():
        assert torch.equal(traced(x), model(x))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_uses_only_allowed_layers(name: str) -> None:
    model, _ = _model_and_input(name)
    for module_name, module in model.named_modules():
        if next(module.children(), None) is None:
            assert isinstance(module, ALLOWED_LEAVES), f"{module_name}: {type(module).__name__}"
        else:  # containers are nn.Sequential or this package's own blocks
            assert type(module) is nn.Sequential or type(module).__module__.startswith(
                "hwquant.models"
            ), f"{module_name}: {type(module).__name__}"
        if isinstance(module, nn.Conv2d):
            assert module.bias is None, f"{module_name} has a bias although BN follows"
        if isinstance(module, nn.ReLU | nn.ReLU6):
            assert not module.inplace, module_name
        if isinstance(module, nn.AdaptiveAvgPool2d):
            assert module.output_size == 1, module_name


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_graph_has_only_modules_adds_and_flatten(name: str) -> None:
    graph = fx.symbolic_trace(_model_and_input(name)[0]).graph
    assert {node.op for node in graph.nodes} <= {
        "placeholder",
        "call_module",
        "call_function",
        "output",
    }
    functions = {node.target for node in graph.nodes if node.op == "call_function"}
    assert functions <= ALLOWED_FUNCTIONS
    assert torch.flatten in functions


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_module_instance_is_used_once(name: str) -> None:
    model, _ = _model_and_input(name)
    graph = fx.symbolic_trace(model).graph
    calls = Counter(node.target for node in graph.nodes if node.op == "call_module")
    assert max(calls.values()) == 1, calls.most_common(3)
    leaves = {n for n, m in model.named_modules() if next(m.children(), None) is None}
    assert set(calls) == leaves  # every leaf module is called, none is shared
    assert len(list(model.named_modules(remove_duplicate=False))) == len(
        list(model.named_modules())
    )


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_init_is_he_for_convs_and_identity_for_bn(name: str) -> None:
    model, _ = _model_and_input(name)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    # He "fan_out" init: std = sqrt(2 / (out_channels * k * k)); check the largest conv.
    conv = max(convs, key=lambda m: m.weight.numel())
    expected = (2.0 / (conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1])) ** 0.5
    assert conv.weight.std().item() == pytest.approx(expected, rel=0.1)
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        assert torch.equal(bn.weight, torch.ones_like(bn.weight))
        assert torch.equal(bn.bias, torch.zeros_like(bn.bias))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_backward_reaches_every_parameter(name: str) -> None:
    model, x = _model_and_input(name)
    model(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
