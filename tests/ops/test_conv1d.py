"""Conv1d (with BatchNorm1d and ReLU), MaxPool1d and AdaptiveAvgPool1d(1), as their 2-D forms
over ``[N, C, 1, L]`` (hwquant/qat/conv_forms.py): prepare's fidelity check holds the rewrite
equal to the float model, each weight scheme's engine equals its QAT model and the exported
graphs equal the engine, exactly; what has no such form is refused by the user's name."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hwquant
from hwquant.core.errors import UnsupportedLayerError
from hwquant.export import export_qonnx, run_qonnx
from hwquant.qat.recipe import Recipe
from tests.helpers import trained_qat_model

RECIPES = {
    "llsq": Recipe(bn_freeze_step=1, last_layer_bits=6),
    "msq": Recipe(scheme="msq", bn_freeze_step=1, last_layer_bits=6),
    "nonuniform": Recipe(
        scheme="nonuniform", scale_constraint="pow2", bn_freeze_step=1, last_layer_bits=6
    ),
}


class ECGNet(nn.Module):
    """A small 1-D signal classifier as users write one (two leads, 32 samples)."""

    def __init__(self, padding_mode: str = "zeros") -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(2, 8, 5, padding="same", padding_mode=padding_mode)
        self.bn1 = nn.BatchNorm1d(8)
        self.pool = nn.MaxPool1d(2)
        self.conv2 = nn.Conv1d(8, 8, 3, stride=2, padding=1, groups=2)
        self.gap = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.bn1(self.conv1(x))))
        x = F.relu(self.conv2(x))
        return self.fc(torch.flatten(self.gap(x), 1))


def _lowered(recipe: Recipe):
    torch.manual_seed(0)
    x = torch.randn(16, 2, 32)
    qat = trained_qat_model(ECGNet(), recipe, x)
    return qat, hwquant.lower(qat, x), x


@pytest.mark.parametrize("scheme", list(RECIPES))
def test_conv1d_net_is_exact(scheme, tmp_path):
    qat, int_model, x = _lowered(RECIPES[scheme])
    kernels = [n.weight.shape[2:] for n in int_model.weight_nodes()[:2]]
    assert kernels == [(1, 5), (1, 3)]
    assert hwquant.verify(qat, int_model, x).exact
    x_int = int_model.quantize_input(x)
    out = int_model.run(x_int)
    assert torch.equal(int_model.run(x_int, backend="onnxruntime"), out)
    assert torch.equal(hwquant.load(int_model.save(tmp_path / "ecg.npz")).run(x_int), out)


def test_conv1d_exports_to_qonnx_exactly():
    pytest.importorskip("qonnx")
    _, int_model, x = _lowered(RECIPES["llsq"])
    want = int_model.run(int_model.quantize_input(x)).numpy()
    assert np.array_equal(run_qonnx(export_qonnx(int_model, tuple(x.shape)), x.numpy()), want)


def test_conv1d_options_are_checked_by_name():
    with pytest.raises(UnsupportedLayerError, match=r"'conv1'.*padding_mode='reflect'"):
        hwquant.prepare(ECGNet(padding_mode="reflect"))


class MeanOverTime(nn.Module):
    """A 12-lead net ending in ``x.mean(dim=-1)``: the mean over time of the last Conv1d."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(12, 8, 7, padding="same")
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.conv(x)).mean(dim=-1))


def test_mean_over_time_is_a_global_average_pool():
    torch.manual_seed(0)
    x = torch.randn(16, 12, 32)
    qat = trained_qat_model(MeanOverTime(), RECIPES["llsq"], x)
    int_model = hwquant.lower(qat, x)
    assert "avgpool" in [n.op for n in int_model.nodes]
    assert hwquant.verify(qat, int_model, x).exact
    x_int = int_model.quantize_input(x)
    assert torch.equal(int_model.run(x_int, backend="onnxruntime"), int_model.run(x_int))


class FunctionalPools(nn.Module):
    """``F.max_pool1d`` and ``F.adaptive_avg_pool1d``, the functional 1-D pools."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool1d(F.relu(self.conv(x)), 2, stride=2)
        return self.fc(F.adaptive_avg_pool1d(x, 1).flatten(1))


def test_functional_1d_pools_are_exact():
    torch.manual_seed(0)
    x = torch.randn(8, 1, 32)
    qat = trained_qat_model(FunctionalPools(), RECIPES["llsq"], x)
    int_model = hwquant.lower(qat, x)
    assert {"maxpool", "avgpool"} <= {n.op for n in int_model.nodes}
    assert hwquant.verify(qat, int_model, x).exact
    x_int = int_model.quantize_input(x)
    assert torch.equal(int_model.run(x_int, backend="onnxruntime"), int_model.run(x_int))


def test_a_batchnorm1d_after_the_relu_of_a_conv1d_normalises_the_channels():
    model = nn.Sequential(nn.Conv1d(2, 6, 3), nn.ReLU(), nn.BatchNorm1d(6), nn.Flatten())
    model.append(nn.Linear(6 * 6, 3))
    torch.manual_seed(0)
    x = torch.randn(16, 2, 8)
    qat = trained_qat_model(model, RECIPES["llsq"], x)  # prepare's fidelity check passes
    assert hwquant.verify(qat, hwquant.lower(qat, x), x).exact


def test_a_batchnorm1d_after_a_maxpool1d_is_refused_naming_it():
    model = nn.Sequential(nn.Conv1d(2, 6, 3), nn.ReLU(), nn.MaxPool1d(2), nn.BatchNorm1d(6))
    model.append(nn.Flatten())
    model.append(nn.Linear(18, 3))
    with pytest.raises(UnsupportedLayerError, match="BatchNorm1d '3'"):
        hwquant.prepare(model)
