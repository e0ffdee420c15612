"""ConvTranspose2d as zero insertion (hwquant/ops/zero_insert.py) then a stride-1 conv2d by
the flipped kernel (hwquant/qat/conv_forms.py): prepare's fidelity check holds the rewrite
equal to the float model, each weight scheme's engine equals its QAT model, and the saved file
and the exported graphs (onnxruntime, qonnx) equal the engine, exactly; forms it would not
compute exactly are refused, naming the module and the option."""

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
from hwquant.ops.zero_insert import ZeroInsertNode
from hwquant.qat.recipe import Recipe
from tests.helpers import trained_qat_model
from tests.rtl.network.conftest import assert_verilog_2005, requires_verilator

RECIPES = {
    "llsq": Recipe(bn_freeze_step=1, last_layer_bits=6),
    "msq": Recipe(scheme="msq", bn_freeze_step=1, last_layer_bits=6),
    "nonuniform": Recipe(
        scheme="nonuniform", scale_constraint="pow2", bn_freeze_step=1, last_layer_bits=6
    ),
}


class Decoder(nn.Module):
    """Downsample, then two transposed convolutions back up (one with BN and output padding),
    a 1x1 head: a segmentation decoder's shape."""

    def __init__(self, up: nn.Module | None = None) -> None:
        super().__init__()
        self.down = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.up1 = up or nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1, output_padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.up2 = nn.ConvTranspose2d(4, 2, 2, stride=2)
        self.head = nn.Conv2d(2, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.down(x))
        x = F.relu(self.bn(self.up1(x)))
        return self.head(F.relu(self.up2(x)))


def _lowered(recipe: Recipe):
    torch.manual_seed(0)
    x = torch.randn(8, 1, 8, 8)
    qat = trained_qat_model(Decoder(), recipe, x)
    return qat, hwquant.lower(qat, x), x


@pytest.mark.parametrize("scheme", list(RECIPES))
def test_transposed_convolutions_are_exact(scheme, tmp_path):
    qat, int_model, x = _lowered(RECIPES[scheme])
    inserts = [n for n in int_model.nodes if isinstance(n, ZeroInsertNode)]
    assert [(n.stride, n.before, n.after) for n in inserts] == [
        ((2, 2), (1, 1), (2, 2)),
        ((2, 2), (1, 1), (1, 1)),
    ]
    x_int = int_model.quantize_input(x)
    values = run(int_model, x_int, trace=True).values
    spread = values[inserts[0].name]
    assert torch.equal(spread[..., 1:-2:2, 1:-2:2], values[inserts[0].inputs[0]])
    assert spread.sum() == values[inserts[0].inputs[0]].sum()  # the rest is zeros
    assert values[int_model.output].shape[-2:] == (16, 16)
    assert hwquant.verify(qat, int_model, x).exact
    out = int_model.run(x_int)
    assert torch.equal(int_model.run(x_int, backend="onnxruntime"), out)
    assert torch.equal(hwquant.load(int_model.save(tmp_path / "dec.npz")).run(x_int), out)


def test_transposed_convolution_exports_to_qonnx_exactly():
    pytest.importorskip("qonnx")
    _, int_model, x = _lowered(RECIPES["llsq"])
    proto = export_qonnx(int_model, tuple(x.shape))
    assert {"ConvTranspose", "Pad"} <= {n.op_type for n in proto.graph.node}
    want = int_model.run(int_model.quantize_input(x)).numpy()
    assert np.array_equal(run_qonnx(proto, x.numpy()), want)


@pytest.mark.parametrize(
    ("up", "option"),
    [
        (nn.ConvTranspose2d(4, 4, 3, stride=2, groups=2), "groups=2"),
        (nn.ConvTranspose2d(4, 4, 3, stride=2, dilation=2), r"dilation=\(2, 2\)"),
        (nn.ConvTranspose2d(4, 4, 2, stride=2, padding=2), "padding=.* beyond"),
    ],
)
def test_other_transposed_forms_are_refused(up, option):
    with pytest.raises(UnsupportedLayerError, match=rf"'up1' \(ConvTranspose2d\) has {option}"):
        hwquant.prepare(Decoder(up))


class DeconvClassifier(nn.Module):
    """A stride-2 convolution, a transposed one back up (zeros before and after differ: output
    padding) and a classifier: what the network generator builds."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1, output_padding=1)
        self.fc = nn.Linear(4 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.up(F.relu(self.down(x))))
        return self.fc(torch.flatten(F.max_pool2d(y, 2), 1))


@requires_verilator
def test_zero_insert_block_is_exact_in_simulation_and_a_shifted_grid_fails(tmp_path):
    from hwquant.app.build_cli import dataset_codes
    from hwquant.rtl.network import build_design, simulate_design

    torch.manual_seed(0)
    x = torch.randn(16, 1, 8, 8)
    int_model = hwquant.lower(trained_qat_model(DeconvClassifier(), RECIPES["llsq"], x), x)
    (node,) = [n for n in int_model.nodes if isinstance(n, ZeroInsertNode)]
    assert (node.stride, node.before, node.after) == ((2, 2), (1, 1), (2, 2))
    design = build_design(int_model, "lfe5u-85f", tmp_path / "d", input_size=8)
    assert_verilog_2005(design.directory, design.record)
    entry = next(b for b in design.record["blocks"] if b["op"] == "zero_insert")
    # the spread 4x4 map: 1 + 3·2 + 1 + 2 = 10 each way, one pixel per cycle
    assert entry["out_shape"] == [4, 10, 10] and entry["cycles"] == 100 + 3 + 1
    codes = dataset_codes(int_model, "digits", 4)
    assert run(int_model, codes, trace=True).values[node.inputs[0]].unique().numel() > 2
    report = simulate_design(design.directory, codes)
    assert report.outputs == 4 and report.mismatches == [] and report.cycles_match

    # the code grid one column to the right (before = 2 across)
    verilog = design.directory / "rtl" / f"{entry['module']}.v"
    text = verilog.read_text()
    cols = re.search(r"COLS = 10'h([0-9a-f]+);", text)
    assert cols is not None
    shifted = (int(cols.group(1), 16) << 1) & 0x3FF
    verilog.write_text(text.replace(cols.group(0), f"COLS = 10'h{shifted:x};"))
    simulator = "iverilog" if shutil.which("iverilog") else "verilator"  # the faster build
    assert simulate_design(design.directory, codes, simulator=simulator).mismatches
