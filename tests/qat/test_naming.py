"""Names of traced nodes as the user's model spells them (hwquant/qat/naming.py)."""

from __future__ import annotations

import operator

import torch
from torch import fx, nn

from hwquant.qat.naming import describe, node_name


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.features(x)
        return torch.sigmoid(y + y).mean(1)


def test_modules_are_named_by_their_path_and_calls_by_what_they_are():
    gm = fx.symbolic_trace(Net())
    nodes = {n.name: n for n in gm.graph.nodes}
    bn = nodes["features_1"]
    assert node_name(bn) == "features.1" and node_name(nodes["sigmoid"]) == "sigmoid"
    assert describe(bn, gm.get_submodule("features.1")) == "BatchNorm2d 'features.1'"
    assert describe(bn) == "module 'features.1'"
    assert describe(nodes["sigmoid"]) == "function torch.sigmoid"
    assert describe(nodes["add"]) == "function operator.add"
    assert nodes["add"].target is operator.add
    assert describe(nodes["mean"]) == "method Tensor.mean"
    assert describe(nodes["x"]) == "placeholder 'x'"
