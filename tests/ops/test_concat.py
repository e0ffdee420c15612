"""The concatenation op (hwquant/ops/concat.py), end to end: ``prepare`` gives the producers of
a ``torch.cat``'s inputs one activation quantizer, so that the integer concatenation moves codes
of one scale; the engine equals the QAT model, and the saved file, the exported graphs
(onnxruntime and qonnx) and the hardware block equal the engine, exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hwquant
from hwquant.core.errors import ConfigError, UnsupportedLayerError
from hwquant.engine import run
from hwquant.export import export_qonnx, run_qonnx
from hwquant.ops.concat import ConcatNode
from hwquant.qat.recipe import Recipe, TableOptions
from tests.helpers import trained_qat_model
from tests.rtl.network.conftest import requires_verilator


class DenseBlock(nn.Module):
    """A stem, two dense layers (each reads the concatenation of all maps before it) and a
    classifier. The stem has no ReLU (signed codes), the dense layers have one (codes >= 0):
    the shared quantizer is signed and the ReLU layers still clip at code 0."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.conv1 = nn.Conv2d(4, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(8, 4, 3, padding=1)
        self.fc = nn.Linear(12, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.cat([x, F.relu(self.bn1(self.conv1(x)))], 1)
        x = torch.cat((x, F.relu(self.conv2(x))), dim=1)
        return self.fc(x.mean((2, 3)))


class TwoBranches(nn.Module):
    """Inception-style: two ReLU branches of one map joined on channels, then pooled."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.a = nn.Conv2d(4, 3, 1)
        self.b = nn.Conv2d(4, 5, 3, padding=1)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        x = torch.cat([F.relu(self.a(x)), F.relu(self.b(x))], dim=1)
        return self.fc(torch.flatten(F.max_pool2d(x, 2), 1))


def _lowered(model: nn.Module, recipe: Recipe | None = None):
    torch.manual_seed(0)
    x = torch.randn(16, 1, 8, 8)
    qat = trained_qat_model(model, recipe or Recipe(bn_freeze_step=1, last_layer_bits=6), x)
    return qat, hwquant.lower(qat, x), x


def test_concat_inputs_share_one_quantizer_and_the_engine_is_exact(tmp_path):
    qat, int_model, x = _lowered(DenseBlock())
    quants = {qat.get_submodule(n).out_quant for n in ("stem", "conv1", "conv2")}
    assert len(quants) == 1 and next(iter(quants)).signed
    concats = [n for n in int_model.nodes if isinstance(n, ConcatNode)]
    assert [c.axis for c in concats] == [1, 1]
    x_int = int_model.quantize_input(x)
    values = run(int_model, x_int, trace=True).values
    stem, dense = values["stem"], values["conv1"]
    assert (stem < 0).any() and (dense > 0).any() and dense.min() == 0, "a degenerate test"
    assert torch.equal(values[concats[0].name], torch.cat([stem, dense], 1))
    assert hwquant.verify(qat, int_model, x).exact
    loaded = hwquant.load(int_model.save(tmp_path / "dense.npz"))
    assert [type(n) for n in loaded.nodes] == [type(n) for n in int_model.nodes]
    assert torch.equal(loaded.run(x_int), int_model.run(x_int))


@pytest.mark.parametrize("scheme", ["msq", "nonuniform"])
def test_concat_is_exact_in_the_other_schemes(scheme):
    extra = {"scale_constraint": "pow2"} if scheme == "nonuniform" else {}
    recipe = Recipe(scheme=scheme, bn_freeze_step=1, last_layer_bits=6, **extra)
    qat, int_model, x = _lowered(DenseBlock(), recipe)
    assert hwquant.verify(qat, int_model, x).exact


@pytest.mark.parametrize("model", [DenseBlock, TwoBranches])
def test_concat_exports_exactly(model):
    _, int_model, x = _lowered(model())
    x_int = int_model.quantize_input(x)
    want = int_model.run(x_int)
    assert torch.equal(int_model.run(x_int, backend="onnxruntime"), want)
    pytest.importorskip("qonnx")
    proto = export_qonnx(int_model, tuple(x.shape))
    assert "Concat" in {n.op_type for n in proto.graph.node}
    assert np.array_equal(run_qonnx(proto, x.numpy()), want.numpy())


def test_concat_of_inputs_wanting_different_bits_is_refused():
    class InputAndConv(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 3, 3, padding=1)
            self.fc = nn.Linear(4, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.cat([x, self.conv(x)], 1).mean((2, 3)))

    with pytest.raises(ConfigError, match=r"'cat'.*input_bits"):
        hwquant.prepare(InputAndConv(), Recipe(input_bits=8, act_bits=4))
    qat, int_model, x = _lowered(InputAndConv(), Recipe(input_bits=8, act_bits=8))
    assert hwquant.verify(qat, int_model, x).exact


def test_concat_on_the_batch_dimension_is_refused_when_lowered():
    class BatchCat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = F.relu(self.fc(x))
            return torch.cat([y, y], 0).sum(0, keepdim=True)

    with pytest.raises(UnsupportedLayerError):
        hwquant.prepare(BatchCat())  # the sum has no quantized form: refused first
    gm = torch.fx.symbolic_trace(BatchCat())
    node = next(n for n in gm.graph.nodes if n.target is torch.cat)
    node.meta["tensor_meta"] = type("Meta", (), {"shape": (4, 2)})()
    from hwquant.ops.concat import lower

    with pytest.raises(UnsupportedLayerError, match="batch dimension"):
        lower(node, None, ["a", "a"], "cat")


def test_tables_refuses_concat_naming_it():
    recipe = Recipe(scheme="tables", tables=TableOptions(act_start=1))
    with pytest.raises(UnsupportedLayerError, match=r"'cat'.*no table-unit form"):
        hwquant.prepare(TwoBranches(), recipe)


@requires_verilator
def test_concat_block_is_exact_in_simulation(tmp_path):
    from hwquant.app.build_cli import dataset_codes
    from hwquant.rtl.network import build_design, simulate_design

    _, int_model, _ = _lowered(TwoBranches())
    design = build_design(int_model, "lfe5u-85f", tmp_path / "d", input_size=8)
    assert "concat" in [b["op"] for b in design.record["blocks"]]
    codes = dataset_codes(int_model, "digits", 4)
    report = simulate_design(design.directory, codes)
    assert report.outputs == 4 and report.mismatches == []


def test_concat_reads_the_axis_keyword_as_torch_does():
    gm = torch.fx.symbolic_trace(lambda a, b: torch.cat([a, b], axis=1))
    node = next(n for n in gm.graph.nodes if n.target is torch.cat)
    node.meta["tensor_meta"] = type("Meta", (), {"shape": (2, 6, 4, 4)})()
    from hwquant.ops.concat import lower

    assert lower(node, None, ["a", "b"], "cat").axis == 1


class NonNegativeBranches(nn.Module):
    """A concatenation of a ReLU branch, a sigmoid branch and a product of two ReLU maps: none
    makes negative codes, so their shared quantizer is unsigned."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.a = nn.Conv2d(4, 4, 1)
        self.b = nn.Conv2d(4, 2, 1)
        self.fc = nn.Linear(10 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        a = F.relu(self.a(x))
        x = torch.cat([a, torch.sigmoid(self.b(x)), a * x], dim=1)
        return self.fc(torch.flatten(F.max_pool2d(x, 2), 1))


def test_the_shared_quantizer_is_signed_as_the_ops_say():
    """One decision (the op's ``signed`` facet, hwquant.qat.fusion.output_signed) makes both a
    layer's own quantizer and the one a concatenation's inputs share: a sigmoid and a product
    of unsigned codes are unsigned, so the group is (it was signed, one code bit lost, while the
    layers asked for unsigned codes)."""
    qat, int_model, x = _lowered(NonNegativeBranches())
    shared = {qat.get_submodule(n).out_quant for n in ("a", "sigmoid_1", "mul_1")}
    assert len(shared) == 1 and not next(iter(shared)).signed
    assert hwquant.verify(qat, int_model, x, strict=True).exact
