"""Fixtures of the table-unit tests: small trained table QAT models and their lowered forms."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hwquant
from hwquant.models import build
from hwquant.qat.recipe import Recipe, TableOptions
from hwquant.schemes.tables import lower_tables


class ResidualNet(nn.Module):
    """Conv-BN-ReLU, a residual block (conv-BN + identity, add, ReLU), global pool, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.conv = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.down = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.relu(self.bn(self.conv(x)) + x)
        x = self.pool(torch.relu(self.down(x)))
        return self.fc(torch.flatten(x, 1))


def trained_tables(model: nn.Module, x: torch.Tensor, steps: int = 3, **options):
    """Prepare with the tables scheme (activations on from step 1) and take SGD steps."""
    torch.manual_seed(0)
    with torch.no_grad():  # negative BN scales on some channels: the flipped comparison
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.linspace(-1.0, 1.5, m.num_features))
    opts = TableOptions(act_start=1, reestimate_every=2, **options)
    qat = hwquant.prepare(model, Recipe(scheme="tables", tables=opts)).train()
    opt = torch.optim.SGD(qat.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        qat(x).square().mean().backward()
        opt.step()
    return qat.eval()


@pytest.fixture(scope="session")
def small_cnn_tables():
    """(QAT model, TableModel, input batch) of the 8x8 small CNN with 8x5 tables."""
    torch.manual_seed(0)
    x = torch.randn(6, 1, 8, 8)
    qat = trained_tables(build("small_cnn", num_classes=10, in_channels=1, input_size=8), x)
    return qat, lower_tables(qat), x


@pytest.fixture(scope="session")
def residual_tables():
    """(QAT model, TableModel, input batch) of :class:`ResidualNet` with 4x10 tables."""
    torch.manual_seed(1)
    x = torch.randn(4, 3, 8, 8)
    qat = trained_tables(ResidualNet(), x, act_entries=4, weight_entries=10)
    return qat, lower_tables(qat), x
