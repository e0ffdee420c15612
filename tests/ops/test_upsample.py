"""Nearest upsampling (hwquant/ops/upsample.py), end to end in a small U-Net: the engine
equals the QAT model, and the saved file and the exported graphs (onnxruntime, qonnx) equal the
engine, exactly, as does the hardware block in a small classifier; other modes and a target
size are refused, naming the option."""

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
from hwquant.export import export_qonnx, run_qonnx
from hwquant.ops.upsample import UpsampleNode
from hwquant.qat.recipe import Recipe
from tests.helpers import trained_qat_model
from tests.rtl.network.conftest import assert_verilog_2005, requires_verilator


class TinyUNet(nn.Module):
    """Encoder, a pooled bottleneck upsampled back (``up``), the skip joined on channels."""

    def __init__(self, up: nn.Module | None = None, factor: int = 2) -> None:
        super().__init__()
        self.enc = nn.Conv2d(1, 4, 3, padding=1)
        self.mid = nn.Conv2d(4, 4, 3, padding=1)
        self.up = up
        self.factor = factor
        self.dec = nn.Conv2d(8, 4, 3, padding=1)
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = F.relu(self.enc(x))
        y = F.relu(self.mid(F.max_pool2d(skip, self.factor)))
        y = self.up(y) if self.up is not None else F.interpolate(y, scale_factor=self.factor)
        return self.head(F.relu(self.dec(torch.cat([y, skip], 1))))


def _lowered(model: nn.Module):
    torch.manual_seed(0)
    x = torch.randn(8, 1, 8, 8)
    qat = trained_qat_model(model, Recipe(bn_freeze_step=1, last_layer_bits=6), x)
    return qat, hwquant.lower(qat, x), x


@pytest.mark.parametrize(
    "up",
    [nn.Upsample(scale_factor=2), nn.UpsamplingNearest2d(scale_factor=2), None],
    ids=["Upsample", "UpsamplingNearest2d", "F.interpolate"],
)
def test_upsample_is_lowered_and_exact(up, tmp_path):
    qat, int_model, x = _lowered(TinyUNet(up))
    (node,) = [n for n in int_model.nodes if isinstance(n, UpsampleNode)]
    assert node.factor == (2, 2)
    x_int = int_model.quantize_input(x)
    values = run(int_model, x_int, trace=True).values
    small, big = values[node.inputs[0]], values[node.name]
    assert big.shape[-2:] == (8, 8) and small.any(), "a degenerate test"
    assert torch.equal(big[..., ::2, ::2], small) and torch.equal(big[..., 1::2, 1::2], small)
    assert hwquant.verify(qat, int_model, x).exact
    loaded = hwquant.load(int_model.save(tmp_path / "unet.npz"))
    assert torch.equal(loaded.run(x_int), int_model.run(x_int))


def test_upsample_exports_exactly():
    _, int_model, x = _lowered(TinyUNet(nn.Upsample(scale_factor=4), factor=4))
    x_int = int_model.quantize_input(x)
    want = int_model.run(x_int)
    assert torch.equal(int_model.run(x_int, backend="onnxruntime"), want)
    pytest.importorskip("qonnx")
    proto = export_qonnx(int_model, tuple(x.shape))
    assert "Resize" in {n.op_type for n in proto.graph.node}
    assert np.array_equal(run_qonnx(proto, x.numpy()), want.numpy())


@pytest.mark.parametrize(
    ("up", "option"),
    [
        (nn.Upsample(scale_factor=2, mode="bilinear"), "mode='bilinear'"),
        (nn.Upsample(size=(8, 8)), "size="),
        (nn.Upsample(scale_factor=1.5), "scale_factor=1.5"),
    ],
)
def test_other_upsampling_forms_are_refused(up, option):
    with pytest.raises(UnsupportedLayerError, match=f"'up'.*{option}"):
        hwquant.prepare(TinyUNet(up))


class UpClassifier(nn.Module):
    """A pooled map upsampled by 2 down and 3 across (a non-square factor), a convolution
    over it and a classifier: what the network generator builds."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Conv2d(1, 4, 3, padding=1)
        self.up = nn.Upsample(scale_factor=(2, 3))
        self.dec = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.max_pool2d(F.relu(self.enc(x)), 2)
        y = F.relu(self.dec(self.up(y)))
        return self.fc(torch.flatten(F.max_pool2d(y, 2), 1))


@requires_verilator
def test_upsample_block_is_exact_in_simulation_and_a_broken_walk_fails(tmp_path):
    from hwquant.app.build_cli import dataset_codes
    from hwquant.rtl.network import build_design, simulate_design

    _, int_model, _ = _lowered(UpClassifier())
    design = build_design(int_model, "lfe5u-85f", tmp_path / "d", input_size=8)
    assert_verilog_2005(design.directory, design.record)
    entry = next(b for b in design.record["blocks"] if b["op"] == "upsample")
    # one output pixel per cycle: 8 x 12 pixels, three pipeline stages, the final cycle
    assert entry["out_shape"] == [4, 8, 12] and entry["cycles"] == 96 + 3 + 1
    codes = dataset_codes(int_model, "digits", 4)
    small = run(int_model, codes, trace=True).values["max_pool2d"]
    assert small.unique().numel() > 2, "a degenerate test"
    report = simulate_design(design.directory, codes)
    assert report.outputs == 4 and report.mismatches == [] and report.cycles_match

    # a broken walk: each pixel copied twice across instead of three times
    verilog = design.directory / "rtl" / f"{entry['module']}.v"
    text = verilog.read_text()
    mutant = re.sub(r"fx <= \(fx == 2\)", "fx <= (fx == 1)", text)
    assert mutant != text
    verilog.write_text(mutant)
    simulator = "iverilog" if shutil.which("iverilog") else "verilator"  # the faster build
    assert simulate_design(design.directory, codes, simulator=simulator).mismatches
