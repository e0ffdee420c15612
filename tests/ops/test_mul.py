"""The elementwise product (hwquant/ops/mul.py), end to end on squeeze-excitation blocks: the gate
``[N, C, 1, 1]`` scales each channel of ``x`` by an integer product and a requantization, exact
in the engine, the saved file, both exported forms and the hardware block."""

from __future__ import annotations

import re
import shutil

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
from tests.rtl.network.conftest import assert_verilog_2005, requires_verilator


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


@requires_verilator
def test_se_block_is_exact_in_simulation_and_a_broken_broadcast_fails(tmp_path):
    from hwquant.app.build_cli import dataset_codes
    from hwquant.ops.mul import cost
    from hwquant.rtl.network import build_design, simulate_design

    _, int_model, _ = _lowered(ConvSE(), RECIPES["llsq"])
    design = build_design(int_model, "lfe5u-85f", tmp_path / "d", input_size=8)
    assert_verilog_2005(design.directory, design.record)
    (mul,) = [n for n in int_model.nodes if isinstance(n, MulNode)]
    entry = next(b for b in design.record["blocks"] if b["name"] == mul.name)
    assert entry["broadcast"] == [8, 1, 1] and entry["depth"] == 6
    net = design.network
    maps = [net.block(i).output for i in mul.inputs]
    assert entry["cost"]["ecp5"]["dsps"] == cost(mul, *maps, "ecp5").dsps > 0
    banks = {(e.source, e.target): e for e in net.edges}
    # the feature map waits in its edge while its gate is computed: 2·L images, L = 5 edges on
    # the gate's path (pool, reduce, expand, hardsigmoid, product); the gate one word a bank
    assert banks[(mul.inputs[0], mul.name)].banks == 10
    assert banks[(mul.inputs[1], mul.name)].fmap.pixels == 1
    codes = dataset_codes(int_model, "digits", 4)
    gate = run(int_model, codes, trace=True).values[mul.inputs[1]]
    assert (gate != gate[:, :1]).any(), "every channel's gate equal: the mutation cannot fail"
    report = simulate_design(design.directory, codes)
    assert report.outputs == 4 and report.mismatches == [] and report.cycles_match

    # a broken broadcast: every channel scaled by channel 0's gate
    verilog = design.directory / "rtl" / f"{entry['module']}.v"
    text = verilog.read_text()
    mutant = re.sub(r"word_1\[\d+ \+: ", "word_1[0 +: ", text)
    assert mutant != text
    verilog.write_text(mutant)
    simulator = "iverilog" if shutil.which("iverilog") else "verilator"  # the faster build
    assert simulate_design(design.directory, codes, simulator=simulator).mismatches


def test_the_linear_se_form_builds_its_view_as_a_rename(tmp_path):
    from hwquant.rtl.network import build_design

    _, int_model, _ = _lowered(LinearSE(), RECIPES["llsq"])
    design = build_design(int_model, "lfe5u-85f", tmp_path / "d", input_size=8)
    ops = [b["op"] for b in design.record["blocks"]]
    assert "mul" in ops and "reshape" not in ops  # view(-1, 8, 1, 1) of the [8, 1, 1] map


def test_the_block_refuses_a_product_it_does_not_broadcast():
    from hwquant.hw.folding import Fold
    from hwquant.ops.mul import block
    from hwquant.rtl.network.stream import FeatureMap

    node = MulNode("mul", ["a", "b"], 3, 2, 0, 15)
    a = FeatureMap(4, 4, 4, 4, False)
    for b in (FeatureMap(4, 1, 4, 4, False), FeatureMap(2, 1, 1, 4, False)):
        with pytest.raises(UnsupportedLayerError, match=r"'mul' multiplies a \[4, 4, 4\] map"):
            block(node, [a, b], Fold(1, 1), "hq_mul")
    for b in (a, FeatureMap(1, 1, 1, 4, True), FeatureMap(1, 4, 4, 4, False)):
        assert "prod_3" in block(node, [a, b], Fold(1, 1), "hq_mul").verilog


@requires_verilator
def test_a_product_of_two_signed_maps_is_exact_in_simulation(tmp_path):
    from hwquant.app.build_cli import dataset_codes
    from hwquant.rtl.network import build_design, simulate_design

    _, int_model, _ = _lowered(Product(), RECIPES["llsq"])
    design = build_design(int_model, "lfe5u-85f", tmp_path / "d", input_size=8)
    (mul,) = [n for n in int_model.nodes if isinstance(n, MulNode)]
    entry = next(b for b in design.record["blocks"] if b["name"] == mul.name)
    assert entry["broadcast"] == [2, 6, 6]  # no broadcast: b is read at a's pixel
    codes = dataset_codes(int_model, "digits", 4)
    values = run(int_model, codes, trace=True).values
    assert all((values[name] < 0).any() for name in (*mul.inputs, mul.name)), "signed codes"
    report = simulate_design(design.directory, codes)
    assert report.outputs == 4 and report.mismatches == [] and report.cycles_match
