"""ConvTranspose2d as zero insertion (hwquant/ops/zero_insert.py) then a stride-1 conv2d by
the flipped kernel (hwquant/qat/conv_forms.py): prepare's fidelity check holds the rewrite
equal to the float model, each weight scheme's engine equals its QAT model, and the saved file
and the exported graphs (onnxruntime, qonnx) equal the engine, exactly; forms it would not
compute exactly are refused, naming the module and the option."""

from __future__ import annotations

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
