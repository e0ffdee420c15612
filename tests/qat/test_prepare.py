"""prepare(): fusion, bit assignment, bad input."""

from __future__ import annotations

import copy
import dataclasses
import io

import pytest
import torch
from torch import nn

import hwquant
from hwquant.core.errors import NonFiniteError, UnsupportedLayerError
from hwquant.models import build
from hwquant.qat.llsq import LinearQuantizer
from hwquant.qat.nn import QAdd, QAvgPool, QConv2d, QLinear, QuantInput
from hwquant.qat.recipe import Recipe


def _layers(qat):
    return {
        n: m
        for n, m in qat.named_modules()
        if isinstance(m, QConv2d | QLinear | QAdd | QAvgPool | QuantInput)
    }


def test_resnet20_structure_and_bits():
    qat = hwquant.prepare(build("resnet20"), Recipe(weight_bits=3, act_bits=2))
    layers = _layers(qat)
    convs = [m for m in layers.values() if isinstance(m, QConv2d)]
    assert len(convs) == 21 and all(m.bn is not None for m in convs)
    assert sum(isinstance(m, QAdd) for m in layers.values()) == 9
    first, fc = convs[0], layers["fc"]
    assert first.weight_quant.bits == 8 and first.input_quants[0].bits == 8
    assert fc.weight_quant.bits == 8 and fc.out_quant is None
    assert fc.input_quants[0].bits == 8  # the pooled activation feeding the last layer
    inner = convs[1]
    assert inner.weight_quant.bits == 3 and inner.out_quant.bits == 2
    assert not inner.out_quant.signed  # conv-bn-relu: unsigned output
    no_relu = [m for m in convs if m.act is None]
    assert no_relu and all(m.out_quant.signed for m in no_relu)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in qat.children())


@pytest.mark.parametrize("scheme", ["llsq", "msq", "nonuniform"])
def test_calibrated_act_scales_hold_every_activation_scale(scheme):
    """act_scales="calibrated" holds every activation scale, the network input's and the pooled
    one feeding the last layer included; every weight scale still trains."""
    constraint = "pow2" if scheme == "nonuniform" else "free"
    recipe = Recipe(scheme=scheme, scale_constraint=constraint, act_scales="calibrated")
    qat = hwquant.prepare(build("resnet20"), recipe)
    quantizers = [m for m in qat.modules() if isinstance(m, LinearQuantizer)]
    acts = [q for q in quantizers if q.is_activation]
    assert len(acts) == 32 and not any(q.trained or q.scale.requires_grad for q in acts)
    weights = [q for q in quantizers if not q.is_activation]
    assert weights and all(q.trained and q.scale.requires_grad for q in weights)
    default = hwquant.prepare(build("resnet20"), dataclasses.replace(recipe, act_scales="trained"))
    assert all(m.trained for m in default.modules() if isinstance(m, LinearQuantizer))


def test_prepare_leaves_the_float_model_alone():
    model = build("small_cnn", in_channels=1, input_size=8)
    before = copy.deepcopy(model.state_dict())
    hwquant.prepare(model)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_mobilenet_relu6_and_depthwise():
    qat = hwquant.prepare(build("mobilenetv2", width=0.5))
    convs = [m for m in qat.modules() if isinstance(m, QConv2d)]
    assert any(m.act == "relu6" for m in convs)
    assert any(m.groups > 1 for m in convs)


def test_qat_model_pickles_and_deepcopies():
    torch.manual_seed(0)
    qat = hwquant.prepare(build("small_cnn", in_channels=1, input_size=8))
    x = torch.randn(2, 1, 8, 8)
    qat.eval()
    y = qat(x)
    clone = copy.deepcopy(qat)
    buffer = io.BytesIO()
    torch.save(qat, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    for other in (clone, loaded):
        assert torch.equal(other(x), y)
        conv = next(m for m in other.modules() if isinstance(m, QConv2d) and m.act)
        # the input references point into the copy, not into the original
        own = {id(m) for m in other.modules()}
        assert all(id(q) in own for q in conv.input_quants)


def test_state_dict_round_trip_restores_outputs():
    torch.manual_seed(0)
    x = torch.randn(4, 1, 8, 8)
    a = hwquant.prepare(build("small_cnn", in_channels=1, input_size=8))
    a.train()
    a(x).sum().backward()
    b = hwquant.prepare(build("small_cnn", in_channels=1, input_size=8))
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.eval()(x), b.eval()(x))


class _WithLayerNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.norm = nn.LayerNorm([2, 2, 2])

    def forward(self, x):
        return self.norm(self.conv(x))


def test_unsupported_layer_is_named():
    with pytest.raises(UnsupportedLayerError, match=r"'norm' \(LayerNorm\).*Supported: Conv2d"):
        hwquant.prepare(_WithLayerNorm())


class _Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)

    def forward(self, x):
        if x.sum() > 0:
            return self.conv(x)
        return x


def test_untraceable_model_is_explained():
    with pytest.raises(UnsupportedLayerError, match=r"torch\.fx could not trace _Branchy"):
        hwquant.prepare(_Branchy())


def test_nan_weight_is_reported():
    model = build("small_cnn", in_channels=1, input_size=8)
    with torch.no_grad():
        model.classifier.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match=r"'classifier.weight' holds 1 NaN/Inf"):
        hwquant.prepare(model)


def test_nan_input_is_reported_in_eval():
    qat = hwquant.prepare(build("small_cnn", in_channels=1, input_size=8)).eval()
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 0, 0] = float("inf")
    with pytest.raises(NonFiniteError, match="input batch"):
        qat(x)


def test_freeze_bn_stops_statistics():
    torch.manual_seed(0)
    qat = hwquant.prepare(
        build("small_cnn", in_channels=1, input_size=8), Recipe(bn_freeze_step=None)
    ).train()
    x = torch.randn(4, 1, 8, 8)
    qat(x)
    hwquant.freeze_bn(qat)
    conv = next(m for m in qat.modules() if isinstance(m, QConv2d))
    mean = conv.bn.running_mean.clone()
    qat(x + 1)
    assert conv.bn_frozen and torch.equal(conv.bn.running_mean, mean)
    assert int(conv.bn_freeze_at) >= 0  # kept in the state dict


class _FunctionalLpPool(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x):
        return torch.nn.functional.lp_pool2d(self.conv(x), 2, 2)


def test_an_unsupported_function_is_named_by_its_name():
    # F.max_pool2d and F.avg_pool2d are supported (tests/ops/test_functional_forms.py)
    pattern = r"'lp_pool2d' \(function torch\.nn\.functional\.lp_pool2d\).*Supported: Conv2d"
    with pytest.raises(UnsupportedLayerError, match=pattern):
        hwquant.prepare(_FunctionalLpPool())


def test_batchnorm_without_running_statistics_is_refused():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, track_running_stats=False))
    with pytest.raises(UnsupportedLayerError, match="track_running_stats=True"):
        hwquant.prepare(model)
