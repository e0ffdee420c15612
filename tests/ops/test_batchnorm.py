"""BatchNorm that follows no Conv2d/Linear (pre-activation blocks, BN after ReLU, a BN on a
branch, ``affine=False``, BatchNorm1d on features): ``prepare`` folds it into an identity layer
of its own (:func:`hwquant.qat.nn.bn_fold.identity_layer`), so it lowers to an integer
per-channel affine -- a depthwise 1x1 ``conv2d`` (a diagonal ``linear`` for BatchNorm1d) with
a bias and a requantization -- exact in the engine, the saved file and both exported forms,
and close to the user's float BatchNorm."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hwquant
from hwquant.core.errors import UnsupportedLayerError
from hwquant.engine import run
from hwquant.ir.intmodel import ConvNode, LinearNode
from hwquant.qat.recipe import Recipe
from tests.helpers import trained_qat_model


class PreActivation(nn.Module):
    """A pre-activation residual block (BN -> ReLU -> Conv on a branch of the conv's output),
    a BatchNorm2d(affine=False) after a ReLU, and a BatchNorm1d after a ReLU on features."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(4, affine=False)
        self.fc = nn.Linear(4 * 4 * 4, 8)
        self.bn3 = nn.BatchNorm1d(8)
        self.out = nn.Linear(8, 3)
        for bn in (self.bn1, self.bn2, self.bn3):  # statistics that move the codes
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        y = self.conv2(F.relu(self.bn1(y))) + y
        y = F.max_pool2d(self.bn2(F.relu(y)), 2)
        return self.out(self.bn3(F.relu(self.fc(torch.flatten(y, 1)))))


RECIPES = {
    "llsq": Recipe(bn_freeze_step=1),
    "msq": Recipe(scheme="msq", bn_freeze_step=1),
    "nonuniform": Recipe(scheme="nonuniform", scale_constraint="pow2", bn_freeze_step=1),
}


def _lowered(
    recipe: Recipe, steps: int = 2
) -> tuple[nn.Module, nn.Module, hwquant.IntModel, torch.Tensor]:
    torch.manual_seed(0)
    x = torch.randn(16, 1, 8, 8)
    model = PreActivation()
    qat = trained_qat_model(model, recipe, x, steps)
    if steps == 0:  # one training forward initialises every quantizer, with no SGD step
        qat.train()(x)
        qat.eval()
    return model, qat, hwquant.lower(qat, x), x


@pytest.mark.parametrize("scheme", sorted(RECIPES))
def test_batchnorms_after_no_layer_are_exact_integer_affines(scheme, tmp_path):
    _, qat, int_model, x = _lowered(RECIPES[scheme])
    nodes = {n.name: n for n in int_model.nodes}
    for name in ("bn1", "bn2"):  # one integer multiplier per channel: a depthwise 1x1 conv
        node = nodes[name]
        assert isinstance(node, ConvNode) and node.groups == 4 and node.weight.shape == (4, 1, 1, 1)
        assert node.encoding is None  # LLSQ multipliers in every scheme
    assert isinstance(nodes["bn3"], LinearNode)  # diagonal: off-diagonal weights stay 0
    weight = nodes["bn3"].weight
    assert (weight == np.diag(np.diag(weight))).all() and (np.diag(weight) != 0).all()
    assert nodes["bn1"].lo == 0  # the ReLU after bn1 is fused into its requantization
    assert hwquant.verify(qat, int_model, x).exact
    x_int = int_model.quantize_input(x)
    expected = int_model.run(x_int)
    assert torch.equal(hwquant.load(int_model.save(tmp_path / "bn.npz")).run(x_int), expected)
    assert torch.equal(int_model.run(x_int, backend="onnxruntime"), expected)


def test_the_affine_is_the_users_batchnorm():
    # statistics frozen and no SGD step: the multipliers' scales keep their initial fit (a
    # moving statistic or a trained scale may clip a multiplier: QAT's error, not the op's)
    model, qat, int_model, x = _lowered(Recipe(bn_freeze_step=0), steps=0)
    values = run(int_model, int_model.quantize_input(x), trace=True).values
    for name, relu in (("bn1", True), ("bn2", False), ("bn3", False)):
        node = next(n for n in int_model.nodes if n.name == name)
        layer = qat.get_submodule(name)
        alpha_in = float(layer.input_quants[0].scale_value().detach())
        codes_in, codes_out = values[node.inputs[0]].double(), values[name].double()
        bn = getattr(model, name).eval().double()  # the user's BatchNorm, trained by QAT
        bn.load_state_dict(layer.bn.state_dict())
        with torch.no_grad():
            real = bn(codes_in * alpha_in)
        real = real.clamp_min(0) if relu else real
        step = node.out_scale
        inside = (real > (node.lo + 0.5) * step) & (real < (node.hi - 0.5) * step)
        # half an output step, plus the 16-bit multipliers' rounding on the input's magnitude
        slack = 0.5 * step + 2**-12 * (real.abs() + codes_in.abs() * alpha_in)
        assert ((codes_out * step - real).abs() <= slack)[inside].all(), name
        assert inside.float().mean() > 0.25 and codes_out.unique().numel() > 4, name


def test_the_affines_are_exact_in_qonnx():
    pytest.importorskip("qonnx")
    from hwquant.export import export_qonnx, run_qonnx

    _, _, int_model, x = _lowered(RECIPES["llsq"])
    x_int = int_model.quantize_input(x)
    proto = export_qonnx(int_model, tuple(x.shape), quantize_input=False)
    out = run_qonnx(proto, x_int.numpy().astype(np.float32))
    assert torch.equal(torch.from_numpy(out).long(), int_model.run(x_int))


def test_a_first_batchnorm_with_first_layer_bits_none_is_refused_naming_the_option():
    model = nn.Sequential(nn.BatchNorm2d(1), nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 3))
    with pytest.raises(UnsupportedLayerError, match="first_layer_bits=None"):
        hwquant.prepare(model, Recipe(first_layer_bits=None))
