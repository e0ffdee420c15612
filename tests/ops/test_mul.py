"""The elementwise product (hwquant/ops/mul.py), end to end on squeeze-excitation blocks: the gate
``[N, C, 1, 1]`` scales each channel of ``x`` by an integer product and a requantization, exact
in the engine, the saved file and both exported forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hwquant
from hwquant.core.errors import UnsupportedLayerError
from hwquant.engine import run
from hwquant.ops.mul import MulNode
from hwquant.qat.recipe import Recipe
from tests.helpers import trained_qat_model


class ConvSE(nn.Module):
    """A squeeze-excitation block of 1x1 convolutions: ``y * hardsigmoid(conv(relu(conv(
    mean(y)))))``, the gate a module (MobileNetV3's form)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.squeeze = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(8, 4, 1)
        self.expand = nn.Conv2d(4, 8, 1)
        self.gate = nn.Hardsigmoid()
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn(self.conv(x)))
        g = self.gate(self.expand(F.relu(self.reduce(self.squeeze(y)))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(y * g, 1), 1))


class LinearSE(nn.Module):
    """The original squeeze-excitation form: a mean, two Linear layers, a sigmoid, a view to
    ``[N, C, 1, 1]`` and ``torch.mul``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.fc1 = nn.Linear(8, 4)
        self.fc2 = nn.Linear(4, 8)
        self.fc = nn.Linear(8 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.conv(x))
        g = torch.sigmoid(self.fc2(F.relu(self.fc1(y.mean((2, 3))))))
        y = torch.mul(y, g.view(-1, 8, 1, 1))
        return self.fc(torch.flatten(F.max_pool2d(y, 2), 1))


def _lowered(model: nn.Module, recipe: Recipe) -> tuple[nn.Module, hwquant.IntModel, torch.Tensor]:
    torch.manual_seed(0)
    x = torch.randn(16, 1, 8, 8)
    qat = trained_qat_model(model, recipe, x)
    return qat, hwquant.lower(qat, x), x


RECIPES = {
    "llsq": Recipe(bn_freeze_step=1),
    "msq": Recipe(scheme="msq", bn_freeze_step=1),
    "nonuniform": Recipe(scheme="nonuniform", scale_constraint="pow2", bn_freeze_step=1),
}


@pytest.mark.parametrize("scheme", sorted(RECIPES))
@pytest.mark.parametrize("block", [ConvSE, LinearSE])
def test_the_gate_product_is_exact(block, scheme, tmp_path):
    qat, int_model, x = _lowered(block(), RECIPES[scheme])
    (mul,) = [n for n in int_model.nodes if isinstance(n, MulNode)]
    x_int = int_model.quantize_input(x)
    values = run(int_model, x_int, trace=True).values
    a, gate, out = values[mul.inputs[0]], values[mul.inputs[1]], values[mul.name]
    assert gate.shape[2:] == (1, 1) and a.shape[2:] == (8, 8)  # a per-channel gate, broadcast
    assert gate.unique().numel() > 1 and out.unique().numel() > 2, "a degenerate test"
    # the codes' real values: out·α_out is a·α_a · g·α_g within half a step (or clamped)
    quants = qat.get_submodule(mul.name).input_quants
    alpha_a, alpha_g = (float(q.scale_value().detach()) for q in quants)
    real = a.double() * alpha_a * gate.double() * alpha_g
    step = mul.out_scale
    inside = (real > (mul.lo + 0.5) * step) & (real < (mul.hi - 0.5) * step)
    assert ((out.double() * step - real)[inside].abs() <= step * (0.5 + 2**-7)).all()
    assert hwquant.verify(qat, int_model, x).exact
    expected = int_model.run(x_int)
    assert torch.equal(hwquant.load(int_model.save(tmp_path / "se.npz")).run(x_int), expected)
    assert torch.equal(int_model.run(x_int, backend="onnxruntime"), expected)


def test_the_gate_product_is_exact_in_qonnx():
    pytest.importorskip("qonnx")
    from hwquant.export import export_qonnx, run_qonnx

    _, int_model, x = _lowered(ConvSE(), RECIPES["llsq"])
    x_int = int_model.quantize_input(x)
    proto = export_qonnx(int_model, tuple(x.shape), quantize_input=False)
    out = run_qonnx(proto, x_int.numpy().astype(np.float32))
    assert torch.equal(torch.from_numpy(out).long(), int_model.run(x_int))


class Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv(x) * 0.5).sum((2, 3))


class Product(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 2, 3), nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(72, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.a(x) * self.b(x), 1))


def test_a_constant_factor_is_refused():
    with pytest.raises(UnsupportedLayerError, match=r"'mul' \(function operator.mul\)"):
        hwquant.prepare(Scaled())
