"""The ReLU op (hwquant/ops/relu.py), end to end: prepare keeps a ReLU that follows no layer,
lower makes a ReluNode, and the engine, the exported graph and the hardware block compute
``max(code, 0)`` exactly."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import hwquant
from hwquant.engine import run
from hwquant.ops.relu import ReluNode
from hwquant.qat.nn.base import capture_codes
from hwquant.qat.recipe import Recipe
from tests.helpers import trained_qat_model
from tests.rtl.network.conftest import assert_verilog_2005, requires_verilator


class PoolThenRelu(nn.Module):
    """The classic ``relu(max_pool(conv(x)))``: the ReLU follows the pool, not the conv."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.pool(self.bn(self.conv(x))))
        return self.fc(torch.flatten(x, 1))


def _lowered() -> tuple[torch.nn.Module, hwquant.IntModel, torch.Tensor]:
    torch.manual_seed(0)
    x = torch.randn(16, 1, 8, 8)
    qat = trained_qat_model(PoolThenRelu(), Recipe(bn_freeze_step=1), x)
    return qat, hwquant.lower(qat, x), x


def test_relu_after_pooling_is_lowered_and_exact(tmp_path):
    qat, int_model, x = _lowered()
    relus = [n for n in int_model.nodes if isinstance(n, ReluNode)]
    assert len(relus) == 1
    x_int = int_model.quantize_input(x)
    values = run(int_model, x_int, trace=True).values
    pooled, rectified = values[relus[0].inputs[0]], values[relus[0].name]
    assert (pooled < 0).any(), "a degenerate test: the ReLU never clips"
    assert torch.equal(rectified, pooled.clamp_min(0))
    with capture_codes(qat) as codes:
        qat(x)
    assert torch.equal(values[int_model.output], codes[int_model.output])
    assert hwquant.verify(qat, int_model, x).exact
    loaded = hwquant.load(int_model.save(tmp_path / "relu.npz"))
    assert [type(n) for n in loaded.nodes] == [type(n) for n in int_model.nodes]
    assert torch.equal(loaded.run(x_int), int_model.run(x_int))


def test_relu_exports_exactly():
    _, int_model, x = _lowered()
    x_int = int_model.quantize_input(x)
    assert torch.equal(int_model.run(x_int, backend="onnxruntime"), int_model.run(x_int))


@requires_verilator
def test_relu_block_is_exact_in_simulation(tmp_path):
    from hwquant.app.build_cli import dataset_codes
    from hwquant.rtl.network import build_design, simulate_design

    _, int_model, _ = _lowered()
    design = build_design(int_model, "lfe5u-85f", tmp_path / "d", input_size=8)
    assert "relu" in [b["op"] for b in design.record["blocks"]]
    assert_verilog_2005(design.directory, design.record)  # the sign bit of each channel's code
    codes = dataset_codes(int_model, "digits", 4)
    relu = next(n for n in int_model.nodes if isinstance(n, ReluNode))
    assert (run(int_model, codes, trace=True).values[relu.inputs[0]] < 0).any()
    report = simulate_design(design.directory, codes)
    assert report.outputs == 4 and report.mismatches == []
    assert report.latency_cycles == design.latency_cycles
