"""The add op's prepare facets (hwquant/ops/add.py): ``fuse`` recognises every form of a
residual add and absorbs the activation after it; ``build`` makes a QAdd whose output is
unsigned after a ReLU."""

from __future__ import annotations

import operator

import pytest
import torch
from torch import fx, nn

from hwquant.core.errors import UnsupportedLayerError
from hwquant.ops import add
from hwquant.qat import fidelity
from hwquant.qat.fusion import FusedSpec, Fusion, LayerContext, act_quantizer
from hwquant.qat.nn import QAdd
from hwquant.qat.recipe import Recipe


class Residual(nn.Module):
    def __init__(self, form) -> None:
        super().__init__()
        self.form = form
        self.act = nn.ReLU6()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.form(x, x * 2))


FORMS = {
    "a + b": lambda a, b: a + b,
    "torch.add": torch.add,
    "a.add(b)": lambda a, b: a.add(b),
}


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS.keys())
def test_fuse_absorbs_the_activation_into_a_new_layer(form):
    gm = fx.symbolic_trace(Residual(form))
    node = next(n for n in gm.graph.nodes if add.is_add(n))
    new, spec = add.fuse(Fusion(gm), node, None)
    assert spec.op == "add" and spec.act == "relu6" and not spec.has_weights
    assert new.target == "add_1" and isinstance(gm.get_submodule("add_1"), nn.Identity)
    assert new.meta[fidelity.FLOAT_NODE] == "act"  # it stands for the activation's output
    assert [n.op for n in gm.graph.nodes].count("call_module") == 1  # the ReLU6 is gone
    assert next(iter(new.users)).op == "output"


def test_fuse_leaves_other_nodes_alone():
    gm = fx.symbolic_trace(Residual(operator.mul))
    mul = [n for n in gm.graph.nodes if n.target is operator.mul][-1]
    before = gm.code
    assert add.fuse(Fusion(gm), mul, None) is None and gm.code == before


def test_fuse_refuses_an_alpha():
    gm = fx.symbolic_trace(Residual(lambda a, b: torch.add(a, b, alpha=2)))
    node = next(n for n in gm.graph.nodes if add.is_add(n))
    with pytest.raises(UnsupportedLayerError, match="alpha=2"):
        add.fuse(Fusion(gm), node, None)


@pytest.mark.parametrize(("act", "signed"), [(None, True), ("relu", False)])
def test_build_makes_a_qadd_with_the_layers_output_bits(act, signed):
    recipe = Recipe(act_bits=5, requant_bits=12)
    inputs = (act_quantizer(recipe, 4, True), act_quantizer(recipe, 4, False))
    layer = LayerContext(recipe, "add_1", inputs, first=False, last=False, out_bits=5)
    module = add.build(FusedSpec("add", act=act), layer)
    assert isinstance(module, QAdd) and module.act == act
    assert (module.out_quant.bits, module.out_quant.signed) == (5, signed)
    assert module.requant_bits == 12
