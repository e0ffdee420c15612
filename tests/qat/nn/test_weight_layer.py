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
