"""prepare()'s fidelity check: models that prepare would get wrong are refused, naming the first
layer that differs; every zoo model and scheme passes; the check changes no state."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hwquant
from hwquant.core.errors import ConfigError, UnsupportedLayerError
from hwquant.models import build
from hwquant.qat import fidelity
from hwquant.qat.nn import QConv2d
from hwquant.qat.recipe import Recipe, TableOptions
from tests.helpers import calibrate_bn


class ConvNet(nn.Module):
    """Two Conv-BN-ReLU blocks, a residual add, global pooling and a classifier."""

    def __init__(self, dilation: int = 1) -> None:
        super().__init__()
        pad = dilation
        self.block1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.block2 = nn.Sequential(
            nn.Conv2d(8, 8, 3, padding=pad, dilation=dilation), nn.BatchNorm2d(8)
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block1(x)
        y = torch.relu(self.block2(y) + y)
        return self.fc(torch.flatten(self.pool(y), 1))


def _calibrated(model: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    calibrate_bn(model, torch.randn(4, 3, 12, 12))
    return model.eval()


@pytest.mark.parametrize("factor", [0.5, 1 + 10 * fidelity.RTOL], ids=["half", "10-rtol"])
def test_a_forward_hook_dropped_by_prepare_is_refused_naming_the_layer(factor):
    model = _calibrated(ConvNet())
    model.block2[0].register_forward_hook(lambda module, inputs, out: out * factor)
    with pytest.raises(UnsupportedLayerError) as info:
        hwquant.prepare(model, Recipe())
    message = str(info.value)
    # the first layer that differs is block2's conv (its chain ends at block2's BN), not block1
    assert "layer 'block2.0' (QConv2d)" in message and "'block2.1' (BatchNorm2d)" in message
    assert "forward hook" in message and "check_fidelity=False" in message


def test_a_replaced_forward_is_refused_in_the_tables_scheme_too():
    model = nn.Sequential(nn.Linear(10, 6), nn.ReLU(), nn.Linear(6, 3))
    model[2].forward = lambda x: nn.functional.linear(x, model[2].weight)  # drops the bias
    recipe = Recipe(scheme="tables", tables=TableOptions(act_start=1))
    with pytest.raises(UnsupportedLayerError, match=r"layer '2' \(TableUnit\)"):
        hwquant.prepare(model, recipe)
    with pytest.raises(UnsupportedLayerError, match=r"layer '2' \(QLinear\)"):
        hwquant.prepare(model, Recipe())


def test_a_layer_that_computes_another_function_is_located(monkeypatch):
    """A QAT layer that ignored dilation (as a layer missing an option would) is named."""
    model = _calibrated(ConvNet(dilation=2))
    hwquant.prepare(model, Recipe())  # the real layer takes dilation

    def no_dilation(self, x, weight, bias=None):
        return nn.functional.conv2d(x, weight, bias, self.stride, self.padding, 1, self.groups)

    monkeypatch.setattr(QConv2d, "float_op", no_dilation)
    with pytest.raises(UnsupportedLayerError, match=r"'block2.0' .* has shape"):
        hwquant.prepare(model, Recipe())


def test_the_check_can_be_skipped_and_example_input_needs_it():
    model = _calibrated(ConvNet())
    model.block2[0].register_forward_hook(lambda module, inputs, out: out * 0.5)
    qat = hwquant.prepare(model, Recipe(), check_fidelity=False)
    assert hasattr(qat, "hwquant_recipe")
    with pytest.raises(ConfigError, match="check_fidelity=False"):
        hwquant.prepare(
            model, Recipe(), example_input=torch.randn(1, 3, 8, 8), check_fidelity=False
        )


class FixedSizeNet(nn.Module):
    """A ``height`` x ``width`` input only (flatten into a Linear)."""

    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * (height - 2) * (width - 2), 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def test_the_probe_finds_a_fixed_input_size():
    assert hasattr(hwquant.prepare(FixedSizeNet(13, 13)), "hwquant_recipe")


def test_a_model_no_probe_fits_needs_example_input():
    model = FixedSizeNet(12, 20)  # no square size fits
    with pytest.raises(ConfigError, match="example_input=x"):
        hwquant.prepare(model)
    qat = hwquant.prepare(model, example_input=torch.randn(2, 1, 12, 20))
    assert hasattr(qat, "hwquant_recipe")
    with pytest.raises(ConfigError, match="does not run through"):
        hwquant.prepare(model, example_input=torch.randn(2, 1, 8, 8))


class ClassifierFirst(nn.Module):
    """Its Linear is defined before its Conv2d: the probe follows forward(), not __init__."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)
        self.conv = nn.Conv2d(3, 4, 3)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.conv(x)).flatten(1))


def test_the_probe_is_shaped_for_the_first_layer_forward_calls():
    assert hasattr(hwquant.prepare(ClassifierFirst()), "hwquant_recipe")


@pytest.mark.parametrize("name", ["resnet20", "small_cnn"])  # all: tests/qat/test_lower.py
def test_every_zoo_model_passes_and_nothing_changes(name):
    torch.manual_seed(0)
    model = build(name)
    model.train()
    if name == "small_cnn":
        model.features.eval()  # a mixed mode is kept too
    modes = [m.training for m in model.modules()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    qat = hwquant.prepare(model, Recipe())
    assert torch.equal(torch.get_rng_state(), rng)  # the probe has its own generator
    assert [m.training for m in model.modules()] == modes
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert qat.training


@pytest.mark.parametrize(
    "recipe",
    [
        Recipe(scheme="msq"),
        Recipe(scheme="nonuniform", scale_constraint="pow2"),
        Recipe(scheme="tables"),
        Recipe(first_layer_bits=None, last_layer_bits=None),
    ],
    ids=["msq", "nonuniform", "tables", "float-ends"],
)
def test_every_scheme_passes(recipe, monkeypatch):
    compared = []

    def difference(expected, got):
        compared.append(original(expected, got))
        return compared[-1]

    original = fidelity._difference
    monkeypatch.setattr(fidelity, "_difference", difference)
    torch.manual_seed(0)
    model = build("small_cnn", in_channels=1, input_size=8)
    calibrate_bn(model, torch.randn(4, 1, 8, 8))
    hwquant.prepare(model.eval(), recipe)
    layers = sum(isinstance(m, nn.Conv2d | nn.Linear) for m in model.modules())
    assert len(compared) >= layers  # every weight layer was compared with its float twin
    assert compared == [None] * len(compared)  # and matched it


# -- values other than one tensor: compared item by item, or refused ----------------------------
def test_tuples_and_dicts_are_compared_item_by_item():
    a, b = torch.ones(2, 3), torch.zeros(2, 3)
    assert fidelity.compare((a, {"logits": a}), (a.clone(), {"logits": a.clone()})) is None
    assert fidelity.compare(torch.Size([2, 3]), torch.Size([2, 3])) is None
    assert "item 1: key 'logits': its output differs" in fidelity.compare(
        (a, {"logits": a}), (a, {"logits": b})
    )
    assert fidelity.compare((a, a), (a,)) == "its output has 1 items, not 2"
    assert "keys ['aux'], not ['logits']" in fidelity.compare({"logits": a}, {"aux": a})
    assert fidelity.compare((a, 3), (a, 4)) == "item 1: its output is 4, not 3"
    assert fidelity.compare(a, (a,)) == "its output is a tuple, not a Tensor"


def test_a_value_it_cannot_compare_is_refused_naming_its_type():
    class Box:
        pass

    with pytest.raises(UnsupportedLayerError, match="cannot compare a Box value"):
        fidelity.compare(Box(), Box())


def test_a_functional_dropout_is_compared_with_the_float_node_it_replaces():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.dropout(self.conv(x), 0.5, self.training).flatten(1)

    qat = hwquant.prepare(Net(), Recipe())
    dropout = next(n for n in qat.graph.nodes if n.op == "call_module" and "dropout" in n.target)
    assert dropout.meta[fidelity.FLOAT_NODE] == "dropout"
