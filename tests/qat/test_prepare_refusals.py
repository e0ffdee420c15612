"""User-style models whose options ``prepare`` must honour exactly or refuse by name (issue 17).

Every refusal names the module (its qualified name), the option and a fix; every accepted form
is compared exactly against its plain twin.
"""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch
from torch import nn

import hwquant
from hwquant.core.errors import ConfigError, UnsupportedLayerError
from hwquant.core.intmath import qrange, round_half_up
from hwquant.qat.recipe import Recipe, TableOptions
from hwquant.schemes.tables import capture_indices, lower_tables, run_tables
from tests.helpers import trained_qat_model

LLSQ = Recipe(bn_freeze_step=1)
TABLES = Recipe(scheme="tables", tables=TableOptions(act_start=1, reestimate_every=2))


class Features(nn.Module):
    """``features`` (a Sequential the test fills), global pool, ``classifier``."""

    def __init__(self, *layers: nn.Module, channels: int = 4) -> None:
        super().__init__()
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def conv_net(**conv_options) -> Features:
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, **conv_options)
    return Features(nn.Conv2d(3, 3, 1), nn.ReLU(), conv, nn.BatchNorm2d(4), nn.ReLU())


def assert_refused(model: nn.Module, recipe: Recipe, *needles: str) -> str:
    """Prepare must refuse ``model``; the message holds every needle and a fix."""
    with pytest.raises(UnsupportedLayerError) as info:
        hwquant.prepare(model, recipe)
    message = str(info.value)
    for needle in (*needles, "Fix:"):
        assert needle in message, message
    return message


@pytest.mark.parametrize("recipe", [LLSQ, TABLES], ids=["llsq", "tables"])
@pytest.mark.parametrize("mode", ["reflect", "circular", "replicate"])
def test_padding_modes_other_than_zeros_are_refused(mode, recipe):
    assert_refused(conv_net(padding=1, padding_mode=mode), recipe, "'features.2'", f"'{mode}'")


def test_asymmetric_same_padding_is_refused():
    torch.manual_seed(0)
    model = Features(nn.Conv2d(3, 4, 2, padding="same"), nn.ReLU())
    assert_refused(model, LLSQ, "'features.0'", "padding='same'")


def _int_outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    qat = trained_qat_model(model, LLSQ, x)
    int_model = hwquant.lower(qat, x)
    assert hwquant.verify(qat, int_model, x).exact
    return int_model.run(int_model.quantize_input(x))


@pytest.mark.parametrize(
    ("string", "numeric"),
    [
        (dict(padding="same"), dict(padding=1)),
        (dict(padding="same", dilation=2), dict(padding=2, dilation=2)),
        (dict(padding="valid"), dict(padding=0)),
    ],
    ids=["same", "same-dilated", "valid"],
)
def test_string_padding_equals_its_numeric_twin(string, numeric):
    torch.manual_seed(0)
    x = torch.randn(6, 3, 8, 8)
    out = _int_outputs(conv_net(**string), x)
    assert torch.equal(out, _int_outputs(conv_net(**numeric), x))
    assert len(torch.unique(out)) > 1, "a degenerate test: every output is the same"


@pytest.mark.parametrize(
    ("pool", "option"),
    [
        (nn.AvgPool2d(2, ceil_mode=True), "ceil_mode=True"),
        (nn.AvgPool2d(2, divisor_override=3), "divisor_override=3"),
        (nn.AvgPool2d(2, padding=1, count_include_pad=False), "padding=1"),
        (nn.AvgPool2d(3, stride=1), "stride=1"),
        (nn.MaxPool2d(2, return_indices=True), "return_indices=True"),
    ],
)
def test_pooling_options_are_refused(pool, option):
    torch.manual_seed(0)
    assert_refused(Features(nn.Conv2d(3, 4, 3), nn.ReLU(), pool), LLSQ, "'features.2'", option)


class AddNet(nn.Module):
    """``conv_a(x) + alpha · conv_b(x)`` written with ``torch.add`` or ``Tensor.add``."""

    def __init__(self, alpha: float, method: bool) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 4, 3, padding=1)
        self.alpha, self.method = alpha, method
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.a(x), self.b(x)
        y = a.add(b, alpha=self.alpha) if self.method else torch.add(a, b, alpha=self.alpha)
        return self.fc(torch.flatten(torch.relu(y), 1))


@pytest.mark.parametrize("method", [False, True], ids=["torch.add", "Tensor.add"])
def test_add_with_alpha_is_refused(method):
    assert_refused(AddNet(0.5, method), LLSQ, "alpha=0.5")
    hwquant.prepare(AddNet(1, method), LLSQ)  # alpha 1 is the plain add


class SharedConv(nn.Module):
    """One conv applied twice (weight sharing); one ReLU module used twice (stateless)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.stem(x))
        x = self.relu(self.conv(self.relu(self.conv(x))))
        return self.fc(x.mean((2, 3)))


def test_a_module_called_twice_is_refused():
    assert_refused(SharedConv(), LLSQ, "'conv'", "called at 2 places")


def test_a_prepared_model_is_not_prepared_again():
    qat = hwquant.prepare(conv_net(padding=1), LLSQ)
    for recipe in (LLSQ, TABLES):
        assert_refused(qat, recipe, "already made by hwquant.prepare()")


def test_tables_take_batchnorm_without_affine_exactly():
    torch.manual_seed(0)
    x = torch.randn(6, 3, 8, 8)
    model = Features(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4, affine=False), nn.ReLU())
    qat = hwquant.prepare(model, TABLES).train()
    opt = torch.optim.SGD(qat.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        qat(x).square().mean().backward()
        opt.step()
    qat.eval()
    table_model = lower_tables(qat)
    with torch.no_grad(), capture_indices(qat) as sink:
        qat_out = qat(x)
    trace = run_tables(table_model, table_model.quantize_input(x), trace=True)
    for name, indices in sink.items():
        assert torch.equal(indices, trace[name]), name
    assert torch.equal(qat_out, trace[table_model.output].double() * table_model.output_scale)
    assert len(torch.unique(trace[table_model.output])) > 1


def _biased_net() -> Features:
    torch.manual_seed(0)
    model = Features(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.ReLU())
    with torch.no_grad():
        model.classifier.bias.copy_(torch.tensor([40.0, -25.0, 3.0]))
    return model


def _assert_bias_error(recipe: Recipe, x: torch.Tensor) -> str:
    qat = trained_qat_model(_biased_net(), recipe, x)
    with pytest.raises(ConfigError) as info:
        hwquant.lower(qat, x)
    message = str(info.value)
    assert "'classifier'" in message and "bias_bits" in message and "Fix:" in message, message
    return message


def test_a_bias_that_does_not_fit_is_an_error_with_the_width_that_fits():
    torch.manual_seed(0)
    x = torch.randn(6, 3, 8, 8)
    message = _assert_bias_error(dataclasses.replace(LLSQ, bias_bits=8), x)
    needed = int(re.search(r"bias_bits=(\d+) or more", message).group(1))
    assert needed > 8
    _assert_bias_error(dataclasses.replace(LLSQ, bias_bits=needed - 1), x)  # the smallest that fits
    qat = trained_qat_model(_biased_net(), dataclasses.replace(LLSQ, bias_bits=needed), x)
    int_model = hwquant.lower(qat, x)
    assert hwquant.verify(qat, int_model, x).exact
    assert int(abs(int_model.nodes[-1].bias).max()) > 2 ** (needed - 2)  # the bias is not clipped


def test_w16a16_biases_do_not_clip_silently():
    torch.manual_seed(0)
    x = torch.randn(6, 3, 8, 8)
    bits = dict(weight_bits=16, act_bits=16, input_bits=16, first_layer_bits=16)
    _assert_bias_error(dataclasses.replace(LLSQ, last_layer_bits=16, **bits), x)


@pytest.mark.parametrize(
    ("model", "needles"),
    [
        (
            Features(nn.Conv2d(3, 4, 3), nn.BatchNorm1d(4)),
            ["BatchNorm1d 'features.1'", "follows Conv2d 'features.0', whose output is 4-D"],
        ),
        (
            Features(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4, track_running_stats=False)),
            ["BatchNorm2d 'features.2' cannot be folded: it keeps no running statistics"],
        ),
    ],
    ids=["wrong-kind", "no-running-statistics"],
)
def test_a_batchnorm_that_cannot_fold_is_named_with_the_rule(model, needles):
    rule = "Rule: a BatchNorm2d (on [N, C, H, W]) or BatchNorm1d (on [N, C]) with running"
    assert_refused(model, LLSQ, *needles, rule)


class Gated(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
        self.classifier = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.exp(self.features(x))
        return self.classifier(y.mean((2, 3)))


def test_refusals_name_functions_by_their_name():
    message = assert_refused(Gated(), LLSQ, "'exp' (function torch.exp)")
    assert "0x" not in message


def test_pass_through_nodes_keep_the_model_names():
    torch.manual_seed(0)
    pool = nn.MaxPool2d(2)
    model = Features(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), pool, nn.Conv2d(4, 4, 1), pool)
    x = torch.randn(4, 3, 8, 8)
    qat = trained_qat_model(model, LLSQ, x)
    int_model = hwquant.lower(qat, x)
    names = [node.name for node in int_model.nodes]
    expected = ["features.0", "features.2", "features.3", "features.2_2", "avgpool_1"]
    assert names == [*expected, "flatten", "classifier"]
    assert hwquant.verify(qat, int_model, x).exact


def test_training_never_clips_a_bias_and_the_integer_form_refuses_it():
    torch.manual_seed(0)
    x = torch.randn(6, 3, 8, 8)
    bits = dict(weight_bits=16, act_bits=16, input_bits=16, first_layer_bits=16)
    qat = trained_qat_model(_biased_net(), dataclasses.replace(LLSQ, last_layer_bits=16, **bits), x)
    layer = qat.classifier
    scale = layer.weight_quant.scale_value() * layer.input_quants[0].scale_value()
    with torch.no_grad():
        codes = layer._quant_bias(layer.bias) / scale
        assert torch.equal(codes, round_half_up(layer.bias / scale))
    _, hi = qrange(layer.bias_bits, signed=True)
    assert float(codes.abs().max()) > hi  # beyond 32 bits, kept as it is in training
    qat.eval()
    with pytest.raises(ConfigError, match=r"'classifier'.*outside the 32-bit bias range"):
        qat(x)  # the eval forward is the integer form: the same refusal as lower()
