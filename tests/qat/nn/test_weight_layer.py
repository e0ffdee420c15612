"""BN folding during QAT (Jacob et al. 2018) and the weight layers' integer form."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hwquant
from hwquant.qat.nn import QConv2d
from hwquant.qat.nn.bn_fold import fold_bn
from hwquant.qat.recipe import Recipe


class _ConvBn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=True)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn(self.conv(x))


def _bn_with_stats(bn: nn.BatchNorm2d) -> None:
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)


def test_fold_bn_equals_conv_then_bn():
    torch.manual_seed(0)
    model = _ConvBn().eval()
    _bn_with_stats(model.bn)
    w, b = fold_bn(model.conv.weight, model.conv.bias, model.bn)
    x = torch.randn(2, 3, 5, 5)
    folded = nn.functional.conv2d(x, w, b, padding=1)
    assert torch.allclose(folded, model(x), atol=1e-5)


def _high_precision_recipe(freeze: int | None) -> Recipe:
    return Recipe(
        weight_bits=16,
        act_bits=16,
        first_layer_bits=16,
        last_layer_bits=16,
        input_bits=16,
        bn_freeze_step=freeze,
    )


def test_before_freeze_the_output_is_batch_normalised():
    """At 16 bits the folded QAT layer reproduces Conv+BN in training mode."""
    torch.manual_seed(0)
    model = _ConvBn().train()
    _bn_with_stats(model.bn)
    qat = hwquant.prepare(model, _high_precision_recipe(None)).train()
    x = torch.randn(8, 3, 6, 6)
    expected = model(x)  # float conv + BN with batch statistics (updates model.bn too)
    got = qat(x)
    assert torch.allclose(got, expected, atol=2e-3)
    conv = next(m for m in qat.modules() if isinstance(m, QConv2d))
    assert torch.allclose(conv.bn.running_mean, model.bn.running_mean, atol=1e-3)
    assert torch.allclose(conv.bn.running_var, model.bn.running_var, atol=1e-3)


def test_after_freeze_the_output_uses_running_statistics():
    torch.manual_seed(0)
    model = _ConvBn()
    _bn_with_stats(model.bn)
    qat = hwquant.prepare(model, _high_precision_recipe(0)).train()
    x = torch.randn(8, 3, 6, 6)
    assert torch.allclose(qat(x), model.eval()(x), atol=2e-3)


def test_training_and_eval_paths_agree_after_freeze():
    torch.manual_seed(0)
    model = _ConvBn()
    _bn_with_stats(model.bn)
    qat = hwquant.prepare(model, Recipe(bn_freeze_step=0)).train()
    x = torch.randn(4, 3, 6, 6)
    with torch.no_grad():
        train_out = qat(x)
    eval_out = qat.eval()(x)
    # identical up to the requantization multiplier's rounding (16-bit mantissa)
    assert torch.allclose(train_out, eval_out, rtol=1e-3, atol=1e-3)


def test_gradients_reach_weights_bn_and_scales():
    torch.manual_seed(0)
    qat = hwquant.prepare(_ConvBn(), Recipe(bn_freeze_step=None, scale_gradient="lsq")).train()
    qat(torch.randn(4, 3, 6, 6)).sum().backward()
    conv = next(m for m in qat.modules() if isinstance(m, QConv2d))
    for p in (conv.weight, conv.bn.weight, conv.bn.bias, conv.weight_quant.scale):
        assert p.grad is not None and bool(p.grad.abs().sum() > 0)


@pytest.mark.parametrize("freeze", [None, 0])
def test_integer_params_bias_at_accumulator_scale(freeze):
    torch.manual_seed(0)
    model = _ConvBn()
    _bn_with_stats(model.bn)
    qat = hwquant.prepare(model, Recipe(bn_freeze_step=freeze)).train()
    qat(torch.randn(2, 3, 6, 6))
    conv = next(m for m in qat.modules() if isinstance(m, QConv2d))
    p = conv.integer_params()
    _, b = fold_bn(conv.weight, conv.bias, conv.bn)
    assert torch.allclose(p.bias.double() * p.acc_scale, b.double(), atol=p.acc_scale.max())


def _integer_form(layer: QConv2d) -> tuple[torch.Tensor, torch.Tensor]:
    p = layer.integer_params()
    return p.weight, p.bias


@pytest.mark.parametrize("freeze", [None, 1])
def test_forwards_without_a_step_move_the_deployed_layer_only_before_the_freeze(freeze):
    """The demo's W2A2 drop (docs/llsq.md §1, "The end of a run"): before the freeze a training
    forward updates the running statistics, which scale the weights before they are quantized,
    so the deployed integers change with no optimizer step (at learning rate 0); after it they
    stay exactly as they are."""
    torch.manual_seed(0)
    model = _ConvBn()
    _bn_with_stats(model.bn)
    qat = hwquant.prepare(model, Recipe(weight_bits=2, act_bits=2, bn_freeze_step=freeze)).train()
    conv = next(m for m in qat.modules() if isinstance(m, QConv2d))
    with torch.no_grad():
        qat(torch.randn(16, 3, 6, 6))  # step 0: initialises the scales (and freezes after it)
        before = _integer_form(conv)
        for _ in range(3):
            qat(torch.randn(16, 3, 6, 6))
    after = _integer_form(conv)
    same = torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
    assert conv.bn_steps_to_freeze() == (None if freeze is None else 0)
    assert same == (freeze is not None)


def test_steps_to_freeze_count_down_to_zero():
    qat = hwquant.prepare(_ConvBn(), Recipe(bn_freeze_step=2)).train()
    conv = next(m for m in qat.modules() if isinstance(m, QConv2d))
    counts = []
    for _ in range(3):
        counts.append(conv.bn_steps_to_freeze())
        qat(torch.randn(2, 3, 6, 6))
    assert counts == [2, 1, 0] and conv.bn_frozen
