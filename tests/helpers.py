"""Test helpers: calibrated QAT models and small random networks."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import hwquant
from hwquant.ir.intmodel import WeightNode
from hwquant.qat.recipe import Recipe


@torch.no_grad()
def calibrate_bn(model: nn.Module, x: torch.Tensor) -> None:
    """Set every BatchNorm's running statistics to those of batch ``x`` (random-weight nets)."""
    saved = {}
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            saved[m] = m.momentum
            m.momentum = 1.0
    model.train()
    model(x)
    for m, momentum in saved.items():
        m.momentum = momentum


def trained_qat_model(model: nn.Module, recipe: Recipe, x: torch.Tensor, steps: int = 2):
    """Prepare ``model`` and take a few SGD steps, crossing the BN freeze, on data ``x``."""
    calibrate_bn(model, x)
    qat = hwquant.prepare(model, recipe)
    qat.train()
    opt = torch.optim.SGD(qat.parameters(), lr=1e-3)
    for _ in range(steps):
        opt.zero_grad()
        qat(x).square().mean().backward()
        opt.step()
    return qat.eval()


def lowered_small_cnn(batch: int = 8) -> tuple[hwquant.IntModel, torch.Tensor]:
    """An 8x8 small CNN, trained two QAT steps and lowered, with its input batch."""
    from hwquant.models import build

    torch.manual_seed(0)
    x = torch.randn(batch, 1, 8, 8)
    model = build("small_cnn", in_channels=1, input_size=8)
    qat = trained_qat_model(model, Recipe(bn_freeze_step=1), x)
    return hwquant.lower(qat, x), x


def full_range_classifier(model: hwquant.IntModel) -> WeightNode:
    """The last layer (8-bit unsigned inputs) as accumulator-aware training leaves one at
    P = 16 (the budget ``⌊(2^15 − b⁻)/255⌋`` of docs/llsq.md §5 spent): row 0 reaches
    −255·128 = −32640 with a bias of +128 on its other side, row 1 reaches −32640 − 128 =
    −2^15, the two's-complement end. Interval [−32768, 32513]: 16 bits; the L1 rule
    ``Σ|w|·255 + |b|`` = 65153 asks for 17."""
    node = model.weight_nodes()[-1]
    assert (node.in_bits, node.in_signed, node.weight_bits) == (8, False, 8)
    node.weight = np.zeros_like(node.weight)
    node.weight[:2, 0] = -128
    node.weight[0, 1] = 127
    node.bias = np.zeros_like(node.bias)
    node.bias[:2] = (128, -128)
    return node


class Residual(nn.Module):
    """``act(body(x) + x)``, the body keeping the shape."""

    def __init__(self, channels: int, act: str | None) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )
        self.act = {"relu": nn.ReLU(), "relu6": nn.ReLU6(), None: nn.Identity()}[act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + x)


class RandomNet(nn.Module):
    """A small CNN assembled from a list of block descriptions (see test_lower)."""

    def __init__(
        self, in_channels: int, blocks: list[tuple], num_classes: int, global_pool: bool, size: int
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for block in blocks:
            kind = block[0]
            if kind == "conv":
                _, out, kernel, stride, depthwise, bn, act, bias = block
                groups = channels if depthwise else 1
                out = channels if depthwise else out
                layers.append(
                    nn.Conv2d(channels, out, kernel, stride, kernel // 2, groups=groups, bias=bias)
                )
                if bn:
                    layers.append(nn.BatchNorm2d(out))
                if act:
                    layers.append(nn.ReLU() if act == "relu" else nn.ReLU6())
                channels = out
                size = (size + 2 * (kernel // 2) - kernel) // stride + 1
            elif kind == "residual":
                layers.append(Residual(channels, block[1]))
            elif kind == "maxpool" and size >= 2:
                layers.append(nn.MaxPool2d(2))
                size //= 2
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1) if global_pool else nn.Identity()
        flat = channels if global_pool else channels * size * size
        self.fc = nn.Linear(flat, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))
