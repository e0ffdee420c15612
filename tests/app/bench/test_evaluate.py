"""Fake-quant against engine on a test set: exact agreement, and a broken engine is caught,
also for a model whose final softmax stays outside the integer graph."""

from __future__ import annotations

import torch
from torch import nn

import hwquant
from hwquant.app.bench.evaluate import compare
from hwquant.models import build
from tests.helpers import trained_qat_model


def test_compare_finds_equal_outputs_then_counts_every_image_a_wrong_bias_changes():
    torch.manual_seed(0)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    model = build("small_cnn", in_channels=1, input_size=8)
    qat = trained_qat_model(model, hwquant.Recipe(bn_freeze_step=1), x)
    int_model = hwquant.lower(qat, x)
    exact = compare(qat, int_model, [(x[:5], y[:5]), (x[5:], y[5:])])
    assert exact["test_images"] == 8
    assert exact["images_with_unequal_outputs"] == 0 and exact["exact"]
    assert exact["fake_quant_acc"] == exact["engine_acc"]
    layers = exact["accumulators"]["layers"]
    assert set(layers) == {node.name for node in int_model.weight_nodes()}
    for layer in layers.values():
        assert layer["observed_bits"] <= layer["worst_case_bits"]

    last = int_model.weight_nodes()[-1]
    last.bias = last.bias.copy()
    last.bias[0] += 1  # every image's first output moves by one unit
    broken = compare(qat, int_model, [(x, y)])
    assert broken["images_with_unequal_outputs"] == 8 and not broken["exact"]


def test_compare_of_a_model_ending_in_a_softmax_compares_the_integer_logits():
    """The IntModel ends in a SoftmaxNode outside the integer graph, which the QAT model
    captures no codes of: compare checks the logits its integer graph outputs."""
    torch.manual_seed(0)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    model = nn.Sequential(build("small_cnn", in_channels=1, input_size=8), nn.LogSoftmax(1))
    qat = trained_qat_model(model, hwquant.Recipe(bn_freeze_step=1), x)
    int_model = hwquant.lower(qat, x)
    last = int_model.weight_nodes()[-1]
    assert int_model.nodes[-1].op == "softmax" and int_model.integer_output == last.name
    exact = compare(qat, int_model, [(x, y)])
    assert exact["images_with_unequal_outputs"] == 0 and exact["exact"]
    assert exact["fake_quant_acc"] == exact["engine_acc"]

    last.bias = last.bias.copy()
    last.bias[0] += 1  # every image's first logit moves by one unit
    broken = compare(qat, int_model, [(x, y)])
    assert broken["images_with_unequal_outputs"] == 8 and not broken["exact"]
