"""Models every export test runs: LLSQ CNN and residual net, MSQ and non-uniform CNNs."""

from __future__ import annotations

import pytest
import torch

import hwquant
from hwquant.recipe import Recipe
from tests.helpers import RandomNet, lowered_small_cnn, trained_qat_model


def residual_net() -> tuple[hwquant.IntModel, torch.Tensor]:
    """Conv, residual add, max pool, depthwise conv, global average pool, linear (LLSQ)."""
    torch.manual_seed(1)
    blocks = [
        ("conv", 8, 3, 1, False, True, "relu", False),
        ("residual", "relu"),
        ("maxpool",),
        ("conv", 8, 3, 2, True, True, "relu6", True),
    ]
    x = torch.randn(4, 1, 8, 8)
    qat = trained_qat_model(RandomNet(1, blocks, 5, True, 8), Recipe(bn_freeze_step=1), x)
    return hwquant.lower(qat, x), x


def scheme_cnn(recipe: Recipe) -> tuple[hwquant.IntModel, torch.Tensor]:
    """The 8x8 small CNN trained two QAT steps with ``recipe`` and lowered."""
    from hwquant.models import build

    torch.manual_seed(0)
    x = torch.randn(6, 1, 8, 8)
    qat = trained_qat_model(build("small_cnn", in_channels=1, input_size=8), recipe, x)
    return hwquant.lower(qat, x), x


BUILDERS = {
    "llsq_cnn": lowered_small_cnn,
    "llsq_residual": residual_net,
    "msq_cnn": lambda: scheme_cnn(Recipe(scheme="msq", bn_freeze_step=1)),
    "nonuniform_cnn": lambda: scheme_cnn(
        Recipe(scheme="nonuniform", scale_constraint="pow2", bn_freeze_step=1)
    ),
}


@pytest.fixture(scope="session", params=sorted(BUILDERS))
def exported_model(request) -> tuple[str, hwquant.IntModel, torch.Tensor]:
    """``(name, model, input batch)`` for each scheme's model."""
    model, x = BUILDERS[request.param]()
    return request.param, model, x
