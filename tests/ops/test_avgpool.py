"""The average-pooling op's prepare facets (hwquant/ops/avgpool.py): which float forms ``fuse``
takes (and with what window), the flatten after a spatial mean, and ``build``'s QAvgPool, whose
output is signed as its input is."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

from hwquant.core.errors import UnsupportedLayerError
from hwquant.ops import avgpool
from hwquant.qat import fidelity
from hwquant.qat.fusion import FusedSpec, Fusion, LayerContext, act_quantizer
from hwquant.qat.nn import QAvgPool
from hwquant.qat.recipe import Recipe


class Pool(nn.Module):
    def __init__(self, form) -> None:
        super().__init__()
        self.form = form
        self.pool = nn.AvgPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.big = nn.AdaptiveAvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.form(self, x)


FORMS = {  # form -> (kernel_size, whether a flatten follows)
    "AvgPool2d(2)": (lambda m, x: m.pool(x), 2, False),
    "F.avg_pool2d(x, 4)": (lambda m, x: F.avg_pool2d(x, 4), 4, False),
    "AdaptiveAvgPool2d(1)": (lambda m, x: m.gap(x), None, False),
    "F.adaptive_avg_pool2d(x, 1)": (lambda m, x: F.adaptive_avg_pool2d(x, 1), None, False),
    "x.mean((2, 3))": (lambda m, x: x.mean((2, 3)), None, True),
    "x.mean((-2, -1), keepdim=True)": (lambda m, x: x.mean((-2, -1), keepdim=True), None, False),
}


def _pool_node(gm: fx.GraphModule) -> fx.Node:
    return next(n for n in gm.graph.nodes if n.op not in ("placeholder", "output"))


@pytest.mark.parametrize(("form", "kernel", "flattens"), FORMS.values(), ids=FORMS.keys())
def test_fuse_takes_each_form_with_its_window(form, kernel, flattens):
    gm = fx.symbolic_trace(Pool(form))
    node = _pool_node(gm)
    new, spec = avgpool.fuse(Fusion(gm), node, Fusion(gm).module(node))
    assert spec == FusedSpec("avgpool", options={"kernel_size": kernel})
    assert new.target == "avgpool_1"
    out = next(iter(new.users))
    assert (out.target is torch.flatten) == flattens
    carrier = out if flattens else new
    assert carrier.meta[fidelity.FLOAT_NODE] == node.name
    gm.recompile()
    assert gm(torch.randn(2, 3, 8, 8)).dim() == (2 if flattens else 4)


@pytest.mark.parametrize(
    "form",
    [lambda m, x: m.big(x), lambda m, x: x.mean(1), lambda m, x: F.max_pool2d(x, 2)],
    ids=["AdaptiveAvgPool2d(2)", "mean(1)", "max_pool2d"],
)
def test_fuse_leaves_other_forms_alone(form):
    gm = fx.symbolic_trace(Pool(form))
    node = _pool_node(gm)
    assert avgpool.fuse(Fusion(gm), node, Fusion(gm).module(node)) is None


@pytest.mark.parametrize(
    ("form", "option"),
    [
        (lambda m, x: F.avg_pool2d(x, 2, padding=1), "padding"),
        (lambda m, x: x.mean((2, 3), dtype=torch.float64), "dtype"),
    ],
)
def test_fuse_refuses_options_naming_them(form, option):
    gm = fx.symbolic_trace(Pool(form))
    node = _pool_node(gm)
    with pytest.raises(UnsupportedLayerError, match=option):
        avgpool.fuse(Fusion(gm), node, None)


@pytest.mark.parametrize("signed", [True, False])
def test_build_keeps_the_inputs_sign(signed):
    recipe = Recipe(act_bits=3)
    inputs = (act_quantizer(recipe, 6, signed),)
    layer = LayerContext(recipe, "avgpool_1", inputs, first=False, last=False, out_bits=3)
    module = avgpool.build(FusedSpec("avgpool", options={"kernel_size": 2}), layer)
    assert isinstance(module, QAvgPool) and module.kernel_size == 2
    assert (module.out_quant.bits, module.out_quant.signed) == (3, signed)
