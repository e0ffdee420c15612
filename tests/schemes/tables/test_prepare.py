"""``hwquant.prepare`` with ``Recipe(scheme="tables")`` and the table options."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hwquant
from hwquant.core.errors import ConfigError, UnsupportedLayerError
from hwquant.qat.recipe import Recipe, TableOptions
from hwquant.schemes.tables.layers import TableUnit
from hwquant.schemes.tables.prepare import TableInput
from hwquant.schemes.tables.quantizer import CodebookQuantizer


def test_prepare_dispatches_to_table_units():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 4 * 4, 3))  # fmt: skip
    qat = hwquant.prepare(model, Recipe(scheme="tables"))
    units = [m for m in qat.modules() if isinstance(m, TableUnit)]
    assert len(units) == 2 and units[0].relu and units[1].out_quant is None
    assert isinstance(qat.get_submodule("quant_input"), TableInput)
    assert units[0].out_quant.unsigned and units[0].input_quants[0].entries == 256


def test_staged_enabling_quantizes_weights_then_activations():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    opts = TableOptions(weight_start=0, act_start=2)
    qat = hwquant.prepare(model, Recipe(scheme="tables", tables=opts)).train()
    unit, quant_input = qat.get_submodule("0"), qat.get_submodule("quant_input")
    x = torch.randn(8, 4)
    for step in range(4):
        y = unit(quant_input(x))
        on_levels = torch.isin(y, unit.out_quant.levels.float()).all()
        assert bool(on_levels) is (step >= opts.act_start)
        w = unit.weight_quant(unit.weight)
        assert torch.isin(w, unit.weight_quant.levels.float()).all()


@pytest.mark.parametrize(
    ("layer", "match"), [(nn.ReLU6(), "ReLU6"), (nn.BatchNorm1d(2), "output layer")]
)
def test_unsupported_layers(layer, match):
    model = nn.Sequential(nn.Linear(4, 2), layer)
    with pytest.raises(UnsupportedLayerError, match=match):
        hwquant.prepare(model, Recipe(scheme="tables"))


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"act_entries": 16, "weight_entries": 32, "max_entries": 320}, "exceed the budget"),
        ({"weight_family": "median"}, "fixed-uniform"),
        ({"entry_bits": 40}, "entry_bits"),
        ({"act_entries": 1}, "2..4096"),
        ({"freeze_step": 0}, "freeze_step=0 is out of range. Fix"),
        ({"act_start": -1}, "act_start=-1 is out of range. Fix"),
    ],
)
def test_bad_table_options(options, match):
    with pytest.raises(ConfigError, match=match):
        TableOptions(**options)


def test_options_from_a_recipe_table():
    recipe = Recipe.from_dict({"scheme": "tables", "tables": {"act_entries": 4}})
    assert recipe.tables.act_entries == 4 and recipe.tables.weight_entries == 5


def test_freeze_step_round_trips_and_reaches_every_quantizer():
    recipe = Recipe.from_dict({"scheme": "tables", "tables": {"freeze_step": 7}})
    assert recipe.tables.freeze_step == 7 and Recipe.from_dict(recipe.to_dict()) == recipe
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    qat = hwquant.prepare(model, recipe)
    quants = [m for m in qat.modules() if isinstance(m, CodebookQuantizer)]
    assert len(quants) == 4 and {q.freeze_step for q in quants} == {7}


class _Signs(nn.Module):
    """conv (no ReLU: signed) -> sigmoid (unsigned) -> avgpool (as its input) -> linear, and a
    ReLU conv -> add without ReLU (signed)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.a(x)
        y = torch.relu(self.b(torch.sigmoid(a))) + a
        return self.fc(torch.nn.functional.adaptive_avg_pool2d(torch.sigmoid(y), 1).flatten(1))


def test_codebooks_are_signed_as_the_ops_say():
    """Table layers take their output signedness from the op's ``signed`` facet (through
    hwquant.qat.fusion.output_signed), as the other schemes' layers do."""
    qat = hwquant.prepare(_Signs(), Recipe(scheme="tables"))
    unsigned = {
        name: m.out_quant.unsigned
        for name, m in qat.named_children()
        if isinstance(getattr(m, "out_quant", None), CodebookQuantizer)
    }
    assert unsigned == {
        "a": False,
        "sigmoid_1": True,
        "b": True,
        "add_1": False,
        "sigmoid_2": True,
        "avgpool_1": True,
    }
