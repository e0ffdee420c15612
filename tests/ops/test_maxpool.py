"""The max-pooling op's prepare facet (hwquant/ops/maxpool.py): ``prepare`` keeps the module and
the function as they are (codes and scale pass through), and lowering reads their options."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import fx, nn

from hwquant.ops import maxpool


class Pools(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.avg = nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.avg(F.max_pool2d(self.pool(x), 2)).relu()


def test_keeps_max_pooling_and_nothing_else():
    gm = fx.symbolic_trace(Pools())
    kept = {
        n.name
        for n in gm.graph.nodes
        if maxpool.keeps(n, gm.get_submodule(n.target) if n.op == "call_module" else None)
    }
    assert kept == {"pool", "max_pool2d"}


def test_lower_reads_the_options_of_both_forms():
    gm = fx.symbolic_trace(Pools())
    nodes = {n.name: n for n in gm.graph.nodes}
    module = maxpool.lower(nodes["pool"], gm.pool, ["x"], "pool")
    function = maxpool.lower(nodes["max_pool2d"], None, ["pool"], "max_pool2d")
    assert (module.kernel_size, module.stride, module.padding) == ((3, 3), (2, 2), (1, 1))
    assert (function.kernel_size, function.stride, function.padding) == ((2, 2), (2, 2), (0, 0))
    assert maxpool.lower(nodes["avg"], gm.avg, ["max_pool2d"], "avg") is None
