"""The non-uniform codebook weight quantizer and its schedule inside prepared models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import hwquant
from hwquant.core.errors import ConfigError, FileFormatError
from hwquant.ir.intmodel import CodebookEncoding
from hwquant.qat.nn.bn_fold import fold_bn
from hwquant.qat.quantizer import WeightQuantizer
from hwquant.qat.recipe import NonUniformOptions, Recipe
from hwquant.schemes.nonuniform.quantizer import NonUniformQuantizer, nonuniform_layers
from tests.helpers import calibrate_bn


def three_conv_net() -> nn.Sequential:
    """Conv-BN-ReLU ×3 and a linear layer on 1×6×6 inputs: inner layers '3' and '6'."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3, padding=1, bias=False),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Conv2d(6, 6, 3, padding=1, bias=False),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * 6 * 6, 5),
    )


def nonuniform_recipe(bits: int = 3, **options) -> Recipe:
    return Recipe(
        scheme="nonuniform",
        weight_bits=bits,
        act_bits=4,
        scale_constraint="pow2",
        bn_freeze_step=1,
        nonuniform=NonUniformOptions(**options),
    )


def prepared(recipe: Recipe, x: torch.Tensor):
    torch.manual_seed(0)
    model = three_conv_net()
    calibrate_bn(model, x)
    return hwquant.prepare(model, recipe)


def sgd_steps(qat, x: torch.Tensor, steps: int) -> None:
    qat.train()
    opt = torch.optim.SGD(qat.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        qat(x).square().mean().backward()
        opt.step()


def test_implements_the_weight_quantizer_protocol():
    q = NonUniformQuantizer(3, grid_bits=8)
    assert isinstance(q, WeightQuantizer)
    assert (q.bits, q.signed, q.int_bits) == (3, True, 8)


@settings(max_examples=30, deadline=None)
@given(
    b=st.integers(1, 4),
    grid_bits=st.integers(6, 12),
    cdf=st.sampled_from(["gaussian", "empirical"]),
    seed=st.integers(0, 2**16),
)
def test_quantized_forward_is_scale_times_codes_exactly(b, grid_bits, cdf, seed):
    w = (
        torch.randn(8, 4, 3, 3, generator=torch.Generator().manual_seed(seed)) * 0.1
    ).requires_grad_()
    q = NonUniformQuantizer(b, grid_bits=grid_bits, cdf=cdf)
    q.train()  # steps_per_stage = 0: hard-quantized from the first step
    out = q(w)
    codes = q.codes(w)
    assert torch.equal(out, codes.float() * q.scale_value())
    assert set(codes.unique().tolist()) <= set(q.codebook.tolist())
    assert q.levels().shape == (1, 2**b)
    out.sum().backward()  # the straight-through gradient
    assert torch.equal(w.grad, torch.ones_like(w))
    q.eval()
    assert torch.equal(q(w.detach()), out.detach())
    enc = q.encode(w)
    assert isinstance(enc, CodebookEncoding)
    assert (enc.index_bits, enc.grid_bits, enc.codebook.shape) == (b, grid_bits, (1, 2**b))
    assert np.array_equal(enc.decode(), codes.numpy())
    spec = q.export()
    assert spec.scale == float(q.scale_value()) and np.array_equal(spec.codebook, enc.codebook[0])


def test_stages_float_noisy_quantized_and_the_step_counter():
    torch.manual_seed(0)
    w = torch.randn(6, 4, 3, 3) * 0.1
    q = NonUniformQuantizer(2, grid_bits=8, steps_per_stage=2)
    q.block = 1  # float for 2 steps, noisy for 2, then quantized
    q.train()
    assert torch.equal(q(w), w) and torch.equal(q(w), w)
    noisy = [q(w), q(w)]
    hard = q(w)
    assert not torch.equal(noisy[0], w) and not torch.equal(noisy[0], noisy[1])
    assert set(noisy[0].unique().tolist()).isdisjoint(set(hard.unique().tolist()))
    assert torch.equal(hard, q.codes(w).float() * q.scale_value())
    assert int(q.step) == 5
    q.eval()
    q(w)
    assert int(q.step) == 5  # evaluation is no training step


def test_step_counter_is_saved_so_a_resumed_model_is_in_the_same_stage():
    q = NonUniformQuantizer(2, grid_bits=8, steps_per_stage=3)
    q.train()
    w = torch.randn(4, 4)
    for _ in range(4):
        q(w)
    resumed = NonUniformQuantizer(2, grid_bits=8, steps_per_stage=3)
    resumed.train()
    assert resumed.stage() == "noisy"
    resumed.load_state_dict(q.state_dict())
    assert resumed.stage() == q.stage() == "quantized"


def test_freeze_quantized_stops_the_gradient():
    w = torch.randn(4, 4, requires_grad=True)
    q = NonUniformQuantizer(2, grid_bits=8, freeze_quantized=True)
    q.train()
    assert not q(w).requires_grad


def test_prepare_places_the_inner_layers_in_the_schedule():
    x = torch.randn(4, 1, 6, 6)
    qat = prepared(nonuniform_recipe(steps_per_stage=2), x)
    layers = nonuniform_layers(qat)
    assert [name for name, _ in layers] == ["3", "6"]
    assert [m.weight_quant.block for _, m in layers] == [0, 1]
    assert [m.weight_quant.layer_name for _, m in layers] == ["3", "6"]
    quants = [m.weight_quant for _, m in layers]
    seen = []
    qat.train()
    for _ in range(5):
        seen.append(tuple(q.stage() for q in quants))
        sgd_steps(qat, x, 1)
    assert seen == [
        ("noisy", "float"),
        ("noisy", "float"),
        ("quantized", "noisy"),
        ("quantized", "noisy"),
        ("quantized", "quantized"),
    ]


def test_explicit_blocks_and_all_at_once_through_prepare():
    x = torch.randn(4, 1, 6, 6)
    qat = prepared(nonuniform_recipe(blocks="6;3"), x)
    assert [m.weight_quant.block for _, m in nonuniform_layers(qat)] == [1, 0]
    qat = prepared(nonuniform_recipe(schedule="all_at_once"), x)
    assert [m.weight_quant.block for _, m in nonuniform_layers(qat)] == [0, 0]


def test_a_schedule_naming_unknown_layers_is_an_error_listing_the_layers():
    x = torch.randn(4, 1, 6, 6)
    with pytest.raises(ConfigError, match=r"no such inner layer: conv9.*inner layers are: 3, 6"):
        prepared(nonuniform_recipe(blocks="3;6;conv9"), x)


def test_the_single_scale_form_needs_power_of_two_scales():
    with pytest.raises(
        ConfigError,
        match=r"in_codebook.*scale_constraint='free'.*Fix: set scale_constraint.*"
        r"per_channel",
    ):
        hwquant.prepare(three_conv_net(), Recipe(scheme="nonuniform"))
    per_channel = NonUniformOptions(bn_gain="per_channel")  # multiplies anyway: any constraint
    hwquant.prepare(three_conv_net(), Recipe(scheme="nonuniform", nonuniform=per_channel))


def test_zero_variance_weights_are_an_error_naming_the_layer():
    model = three_conv_net()
    with torch.no_grad():
        model[3].weight.fill_(0.5)
    with pytest.raises(ConfigError, match=r"layer '3'.*zero variance"):
        hwquant.prepare(model, nonuniform_recipe())


def test_levels_collapsing_on_the_grid_are_an_error_at_prepare():
    model = three_conv_net()
    with torch.no_grad():
        model[6].weight.copy_(5.0 + 0.001 * torch.randn_like(model[6].weight))
    with pytest.raises(ConfigError, match=r"layer '6'.*collapse.*grid_bits"):
        hwquant.prepare(model, nonuniform_recipe(bits=4))


def test_a_grid_too_small_for_the_codebook_is_an_error_at_prepare():
    with pytest.raises(ConfigError, match=r"b = 4.*B = 4.*grid_bits >= 5"):
        hwquant.prepare(three_conv_net(), nonuniform_recipe(bits=4, grid_bits=4))


def _folded_codes_and_scales(qat) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per inner layer: the integer codes of the folded weights and the per-channel scale."""
    out = []
    for _, layer in nonuniform_layers(qat):
        ints = layer.integer_params()
        out.append((ints.weight, layer.weight_quant.scale_value().detach().clone()))
    return out


@pytest.mark.parametrize("bits", [2, 3])
def test_a_folded_bn_gain_stays_per_channel_and_leaves_the_codes_alone(bits):
    """``bn_gain = "per_channel"``: the codebook is of ``sign(s)·W``, one per layer, and the
    deployed weight of channel c is ``|s_c|·s_grid·code``. Scaling γ (hence ``s``) by 8 in one
    channel leaves every code unchanged and multiplies that channel's scale by 8, exactly;
    the quantized training forward is the codes times those scales."""
    x = torch.randn(8, 1, 6, 6)
    qat = prepared(nonuniform_recipe(bits, steps_per_stage=0, bn_gain="per_channel"), x).eval()
    before = _folded_codes_and_scales(qat)
    for _, layer in nonuniform_layers(qat):
        assert layer.weight_quant.gain_per_channel
        gain = layer.fold_gain()
        assert torch.equal(layer.weight_quant.scale_value(), layer.weight_quant.grid_scale * gain)
        assert layer.weight_quant.levels().shape == (layer.weight.shape[0], 2**bits)
        with torch.no_grad():
            layer.bn.weight[0] *= 8.0
    after = _folded_codes_and_scales(qat)
    for (codes0, scale0), (codes1, scale1) in zip(before, after, strict=True):
        assert torch.equal(codes0, codes1)
        assert torch.equal(scale1[1:], scale0[1:])
        assert torch.equal(scale1[0], 8.0 * scale0[0])  # x8 commutes with the rounding
    for _, layer in nonuniform_layers(qat):
        quant = layer.weight_quant.train()
        folded = fold_bn(layer.weight, layer.bias, layer.bn)[0]
        hard = quant(folded)
        gain = layer.fold_gain().view(-1, 1, 1, 1)
        assert torch.equal(hard, quant.codes(folded).to(hard.dtype) * quant.grid_scale * gain)


def test_in_codebook_quantizes_the_folded_weights_with_one_scale():
    x = torch.randn(8, 1, 6, 6)
    qat = prepared(nonuniform_recipe(2, steps_per_stage=0), x)  # the default form
    for _, layer in nonuniform_layers(qat):
        quant = layer.weight_quant
        assert not quant.gain_per_channel and quant.scale_value().shape == (1,)
        folded = fold_bn(layer.weight, layer.bias, layer.bn)[0]
        assert set(quant.codes(folded).unique().tolist()) <= set(quant.codebook.tolist())


def test_a_checkpoint_of_the_other_bn_gain_form_is_refused_naming_the_option():
    x = torch.randn(8, 1, 6, 6)
    old = prepared(nonuniform_recipe(2, bn_gain="in_codebook"), x).state_dict()
    new = prepared(nonuniform_recipe(2, bn_gain="per_channel"), x)
    with pytest.raises(FileFormatError, match=r"layer '3'.*bn_gain = \"in_codebook\".*Fix"):
        new.load_state_dict(old)
    unmarked = {k: v for k, v in old.items() if not k.endswith("gain_per_channel")}
    with pytest.raises(FileFormatError, match="no gain_per_channel marker"):
        new.load_state_dict(unmarked)
    prepared(nonuniform_recipe(2), x).load_state_dict(unmarked)  # written before the marker
    with pytest.raises(FileFormatError, match=r"bn_gain = \"per_channel\".*Fix"):
        prepared(nonuniform_recipe(2), x).load_state_dict(new.state_dict())
    new.load_state_dict(prepared(nonuniform_recipe(2, bn_gain="per_channel"), x).state_dict())


def four_conv_net() -> nn.Sequential:
    """:func:`three_conv_net` with an inner conv without BN ('6'): inner layers '3', '6', '8'."""
    layers = list(three_conv_net())
    layers[6:6] = [nn.Conv2d(6, 6, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*layers)


def test_a_layer_without_bn_keeps_one_scale_under_the_per_channel_form():
    torch.manual_seed(0)
    model = four_conv_net()
    calibrate_bn(model, torch.randn(8, 1, 6, 6))
    qat = hwquant.prepare(model, nonuniform_recipe(2, bn_gain="per_channel"))
    forms = {
        name: bool(layer.weight_quant.gain_per_channel) for name, layer in nonuniform_layers(qat)
    }
    assert forms == {"3": True, "6": False, "8": True}
    scales = {
        name: layer.weight_quant.scale_value().shape for name, layer in nonuniform_layers(qat)
    }
    assert scales == {"3": (6,), "6": (1,), "8": (6,)}


def test_the_noisy_stage_scales_its_noise_by_the_gain():
    """In the noisy stage the per-channel form draws UNIQ's noise around ``sign(s)·W`` and
    scales it by ``g``: the same draw as the unit weights', times the gain."""
    x = torch.randn(8, 1, 6, 6)
    qat = prepared(nonuniform_recipe(2, steps_per_stage=5, bn_gain="per_channel"), x).train()
    _, layer = nonuniform_layers(qat)[0]  # block 0: noisy from the first step
    quant = layer.weight_quant
    folded = fold_bn(layer.weight, layer.bias, layer.bn)[0].detach()
    gain = layer.fold_gain().view(-1, 1, 1, 1)
    torch.manual_seed(3)
    noisy = quant(folded)
    quant.step.zero_()  # the same stage and draw again, unbound from the gain
    quant.bind_fold_gain(None)
    torch.manual_seed(3)
    unit = quant(folded / gain)
    assert torch.equal(noisy, unit * gain)
    assert not torch.equal(
        noisy, quant.codes(folded / gain).to(noisy.dtype) * quant.grid_scale * gain
    )


def test_a_partial_load_keeps_the_models_own_marker():
    """A state dict without the quantizer's step is not checked, and its marker is not taken:
    the marker follows the model's binding, so the next save records the right form."""
    x = torch.randn(8, 1, 6, 6)
    new = prepared(nonuniform_recipe(2, bn_gain="per_channel"), x)
    old = prepared(nonuniform_recipe(2), x).state_dict()
    partial = {k: v for k, v in old.items() if k.endswith("gain_per_channel")}
    new.load_state_dict(partial, strict=False)
    assert all(layer.weight_quant.gain_per_channel for _, layer in nonuniform_layers(new))
