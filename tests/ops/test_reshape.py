"""The reshape op's prepare facet (hwquant/ops/reshape.py): every flatten/view/reshape/squeeze
form is kept as it is, a squeeze that could drop the batch dimension is refused, and lowering
records the traced per-sample shape."""

from __future__ import annotations

import pytest
import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from hwquant.core.errors import UnsupportedLayerError
from hwquant.ops import reshape


class Shapes(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.flat = nn.Flatten()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.flat(x).view(-1, 4, 3).unsqueeze(1).squeeze(1)
        return torch.reshape(y, (-1, 12)).relu()


def _kept(gm: fx.GraphModule) -> list[str]:
    modules = dict(gm.named_modules())
    return [
        n.name
        for n in gm.graph.nodes
        if n.op != "placeholder" and reshape.keeps(n, modules.get(str(n.target)))
    ]


def test_every_form_is_kept_and_lowered_to_its_traced_shape():
    gm = fx.symbolic_trace(Shapes())
    assert _kept(gm) == ["flat", "view", "unsqueeze", "squeeze", "reshape"]
    ShapeProp(gm).propagate(torch.zeros(2, 3, 2, 2))
    nodes = {n.name: n for n in gm.graph.nodes}
    assert reshape.lower(nodes["view"], None, ["flat"], "view").shape == (4, 3)
    assert reshape.lower(nodes["unsqueeze"], None, ["view"], "u").shape == (1, 4, 3)
    assert reshape.lower(nodes["relu"], None, ["reshape"], "relu") is None


@pytest.mark.parametrize("body", [lambda x: x.squeeze(), lambda x: x.unsqueeze(0)])
def test_a_squeeze_that_could_drop_the_batch_is_refused(body):
    class Net(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return body(x)

    gm = fx.symbolic_trace(Net())
    with pytest.raises(UnsupportedLayerError, match="batch dimension"):
        _kept(gm)
