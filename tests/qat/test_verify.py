"""verify(): exact reports, and a located mismatch when the IntModel is tampered with."""

from __future__ import annotations

import torch

import hwquant
from hwquant.models import build
from hwquant.qat.recipe import Recipe
from tests.helpers import trained_qat_model


def test_verify_locates_the_first_mismatch():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 32, 32)
    qat = trained_qat_model(build("resnet20"), Recipe(bn_freeze_step=1), x)
    int_model = hwquant.lower(qat, x)
    good = hwquant.verify(qat, int_model, x)
    assert good.exact and good.compared > 0 and "bit-exact" in str(good)
    target = int_model.weight_nodes()[3]
    target.weight = target.weight.copy()
    target.weight[:] = 0
    bad = hwquant.verify(qat, int_model, x)
    assert not bad.exact and bad.first is not None
    assert bad.first.layer == target.name
    assert bad.per_layer[target.name] > 0
    earlier = [n.name for n in int_model.weight_nodes()[:3]]
    assert all(bad.per_layer[name] == 0 for name in earlier)
    assert target.name in str(bad)
