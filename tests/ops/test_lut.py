"""The lookup-table activations (hwquant/ops/lut.py), end to end: prepare installs a QActivation
for every sigmoid, tanh, SiLU, ... (module, function or method), lower makes a LutNode, and the
engine, the saved file and both exported forms compute the table exactly; the table itself is
held to the user's own float activation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hwquant
from hwquant.core.errors import FileFormatError, UnsupportedLayerError
from hwquant.engine import run
from hwquant.ops.lut import LutNode
from hwquant.qat.recipe import Recipe
from tests.helpers import trained_qat_model
from tests.rtl.network.conftest import assert_verilog_2005, requires_verilator

FORMS = {
    "Sigmoid": nn.Sigmoid(),
    "torch.sigmoid": torch.sigmoid,
    "x.sigmoid()": lambda x: x.sigmoid(),
    "Hardsigmoid": nn.Hardsigmoid(),
    "F.hardsigmoid": F.hardsigmoid,
    "Hardswish": nn.Hardswish(),
    "F.hardswish": F.hardswish,
    "SiLU": nn.SiLU(),
    "F.silu": F.silu,
    "LeakyReLU(0.3)": nn.LeakyReLU(0.3),
    "F.leaky_relu(x, 0.2)": lambda x: F.leaky_relu(x, 0.2),
    "F.leaky_relu(negative_slope=-0.5)": lambda x: F.leaky_relu(x, negative_slope=-0.5),
    "Hardtanh(-0.5, 0.7)": nn.Hardtanh(-0.5, 0.7),
    "F.hardtanh(x, max_val=0.4)": lambda x: F.hardtanh(x, max_val=0.4),
    "Tanh": nn.Tanh(),
    "torch.tanh": torch.tanh,
    "GELU": nn.GELU(),
    "GELU(tanh)": nn.GELU(approximate="tanh"),
    "F.relu6 (after a pool)": lambda x: F.relu6(F.max_pool2d(x, 1)),
}
"""Each form as the user writes it: the test holds the table to this very callable."""


class ConvAct(nn.Module):
    """``fc(flatten(pool(act(bn(conv(x))))))``: the activation reads the conv's signed codes."""

    def __init__(self, act) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.act = act
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.act(self.bn(self.conv(x))), 2)
        return self.fc(torch.flatten(x, 1))


class EveryForm(nn.Module):
    """Every form of :data:`FORMS` on the same conv codes, summed by residual adds."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.modules_ = nn.ModuleDict(
            {f"m{i}": f for i, f in enumerate(FORMS.values()) if isinstance(f, nn.Module)}
        )
        self.functions = [f for f in FORMS.values() if not isinstance(f, nn.Module)]
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forms(self) -> list:
        """The forms in :data:`FORMS` order, modules as this model holds them."""
        functions = iter(self.functions)
        return [
            self.modules_[f"m{i}"] if isinstance(f, nn.Module) else next(functions)
            for i, f in enumerate(FORMS.values())
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bn(self.conv(x))
        total = None
        for act in self.forms():
            total = act(h) if total is None else total + act(h)
        return self.fc(torch.flatten(total, 1))


class Mixed(nn.Module):
    """Several activations: after a conv, after a pool, as the model's output."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.SiLU()
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn(self.conv(x)))
        x = torch.tanh(F.max_pool2d(F.leaky_relu(self.conv2(x), 0.1), 2))
        return torch.sigmoid(self.fc(torch.flatten(x, 1)))


def _lowered(model: nn.Module, recipe: Recipe) -> tuple[nn.Module, hwquant.IntModel, torch.Tensor]:
    torch.manual_seed(0)
    x = torch.randn(16, 1, 8, 8)
    qat = trained_qat_model(model, recipe, x)
    return qat, hwquant.lower(qat, x), x


def test_every_form_is_a_table_of_the_users_function():
    qat, int_model, x = _lowered(EveryForm(), Recipe(bn_freeze_step=1))
    luts = [n for n in int_model.nodes if isinstance(n, LutNode)]
    assert len(luts) == len(FORMS)
    x_int = int_model.quantize_input(x)
    values = run(int_model, x_int, trace=True).values
    alpha_in = float(int_model.nodes[0].out_scale)  # every form reads the conv's codes
    for (form, act), lut in zip(FORMS.items(), luts, strict=True):
        codes_in, codes_out = values[lut.inputs[0]], values[lut.name]
        # the table against the user's own callable, in float64, on the codes of this run
        expected = torch.floor(act(codes_in.double() * alpha_in) / lut.out_scale + 0.5)
        assert torch.equal(codes_out, expected.clamp(lut.lo, lut.hi).long()), form
        assert codes_out.unique().numel() > 2, f"{form}: a degenerate test (nearly constant)"
    assert hwquant.verify(qat, int_model, x).exact
    assert torch.equal(int_model.run(x_int, backend="onnxruntime"), int_model.run(x_int))


@pytest.mark.parametrize("scheme", ["llsq", "msq", "nonuniform"])
def test_activations_are_exact_in_every_scheme(scheme, tmp_path):
    options = {"scale_constraint": "pow2"} if scheme == "nonuniform" else {}
    qat, int_model, x = _lowered(Mixed(), Recipe(scheme=scheme, bn_freeze_step=1, **options))
    luts = [n for n in int_model.nodes if isinstance(n, LutNode)]
    assert [n.function.split("(")[0] for n in luts] == ["silu", "leaky_relu", "tanh", "sigmoid"]
    assert int_model.output == luts[-1].name  # the sigmoid's codes are the output
    assert hwquant.verify(qat, int_model, x).exact
    x_int = int_model.quantize_input(x)
    expected = int_model.run(x_int)
    loaded = hwquant.load(int_model.save(tmp_path / "lut.npz"))
    assert torch.equal(loaded.run(x_int), expected)
    assert torch.equal(int_model.run(x_int, backend="onnxruntime"), expected)


def test_activations_are_exact_in_qonnx():
    pytest.importorskip("qonnx")
    from hwquant.export import export_qonnx, run_qonnx

    _, int_model, x = _lowered(Mixed(), Recipe(bn_freeze_step=1))
    x_int = int_model.quantize_input(x)
    proto = export_qonnx(int_model, tuple(x.shape), quantize_input=False)
    out = run_qonnx(proto, x_int.numpy().astype(np.float32))
    assert torch.equal(torch.from_numpy(out).long(), int_model.run(x_int))


class TablesNet(nn.Module):
    """Table units with activations between them: SiLU after a conv, sigmoid after a pool."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.act = nn.SiLU()
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.sigmoid(self.pool(self.act(self.conv(x))))
        return self.fc(torch.flatten(x, 1))


def test_tables_scheme_looks_activations_up_between_codebooks(tmp_path):
    from hwquant.schemes.tables import lower_tables, run_tables
    from hwquant.schemes.tables.model import ActivationNode, load_tables
    from tests.schemes.tables.conftest import trained_tables

    torch.manual_seed(0)
    x = torch.randn(8, 1, 8, 8)
    qat = trained_tables(TablesNet(), x)
    tables = lower_tables(qat)
    acts = [n for n in tables.nodes if isinstance(n, ActivationNode)]
    assert [a.function for a in acts] == ["silu()", "sigmoid()"]
    assert hwquant.verify(qat, tables, x, strict=True).exact
    x_idx = tables.quantize_input(x)
    values = run_tables(tables, x_idx, trace=True)
    for act in acts:  # each output level is the level nearest f(input level)
        levels = torch.from_numpy(qat.get_submodule(act.name).input_quants[0].codebook().numpy())
        out_levels = torch.from_numpy(act.out_levels)
        f = FORMS["SiLU"] if act.name == "act" else torch.sigmoid
        wanted = f(levels[values[act.inputs[0]]])
        got = out_levels[values[act.name]]
        best = (wanted.unsqueeze(-1) - out_levels).abs().amin(-1)
        assert torch.allclose((wanted - got).abs(), best), act.name
        assert values[act.name].unique().numel() > 1, f"{act.name}: a degenerate test"
    loaded = load_tables(tables.save(tmp_path / "tables.npz"))
    assert torch.equal(run_tables(loaded, x_idx), run_tables(tables, x_idx))


class SlopeParameter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.slope = nn.Parameter(torch.tensor(0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.conv(x), self.slope).sum((2, 3))


def test_options_it_cannot_tabulate_are_refused():
    with pytest.raises(UnsupportedLayerError, match=r"min_val 1\.0 >= max_val 1\.0"):
        hwquant.prepare(ConvAct(lambda x: F.hardtanh(x, 1.0, 1.0)))
    with pytest.raises(UnsupportedLayerError, match="negative_slope=slope, not a constant"):
        hwquant.prepare(SlopeParameter())


def test_a_table_outside_its_range_fails_at_load(tmp_path):
    _, int_model, _ = _lowered(ConvAct(nn.Sigmoid()), Recipe(bn_freeze_step=1))
    lut = next(n for n in int_model.nodes if isinstance(n, LutNode))
    path = int_model.save(tmp_path / "lut.npz")
    lut.table = lut.table.copy()
    lut.table[0] = lut.hi + 1
    bad = int_model.save(tmp_path / "bad.npz")
    hwquant.load(path)
    with pytest.raises(FileFormatError, match="outside"):
        hwquant.load(bad)


@requires_verilator
def test_lut_block_is_exact_in_simulation(tmp_path):
    from hwquant.app.build_cli import dataset_codes
    from hwquant.rtl.network import build_design, simulate_design

    _, int_model, _ = _lowered(ConvAct(nn.SiLU()), Recipe(bn_freeze_step=1))
    design = build_design(int_model, "lfe5u-85f", tmp_path / "d", input_size=8)
    assert_verilog_2005(design.directory, design.record)
    assert "lut" in [b["op"] for b in design.record["blocks"]]
    codes = dataset_codes(int_model, "digits", 4)
    lut = next(n for n in int_model.nodes if isinstance(n, LutNode))
    values = run(int_model, codes, trace=True).values
    assert values[lut.inputs[0]].unique().numel() > 4 and (values[lut.inputs[0]] < 0).any()
    report = simulate_design(design.directory, codes)
    assert report.outputs == 4 and report.mismatches == []


def test_the_block_refuses_a_rom_too_wide():
    from hwquant.hw.folding import Fold
    from hwquant.ops.lut import MAX_BLOCK_BITS, block
    from hwquant.rtl.network.stream import FeatureMap

    bits = MAX_BLOCK_BITS + 1
    node = LutNode("act", ["x"], np.zeros(2**bits, np.int64), "tanh()", -(2 ** (bits - 1)), 0, 0)
    wide = FeatureMap(2, 4, 4, bits, True)
    with pytest.raises(UnsupportedLayerError, match=f"'act' reads {bits}-bit codes"):
        block(node, [wide], Fold(1, 1), "act")
    assert "rom" in block(node, [FeatureMap(2, 4, 4, 4, True)], Fold(1, 1), "act").verilog
