"""ResNet-20 / ResNet-18 (He et al. 2016): parameter counts, shortcuts, width scaling."""

from __future__ import annotations

import operator

import pytest
import torch
from torch import fx, nn

from hwquant.models import BasicBlock, ResNet18, ResNet20


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_resnet20_param_count() -> None:
    # Regression value computed from this implementation. The paper's ResNet-20 (option A,
    # zero-padding shortcuts) has 269,722 parameters ("0.27M"); option B adds two 1x1 conv + BN
    # projections: 16*32 + 2*32 + 32*64 + 2*64 = 2,752 more.
    assert _params(ResNet20()) == 269_722 + 2_752 == 272_474


def test_resnet18_param_count() -> None:
    # The well-known CIFAR ResNet-18 figure (11.17M, e.g. kuangliu/pytorch-cifar).
    assert _params(ResNet18()) == 11_173_962


@pytest.mark.parametrize(
    ("cls", "blocks", "widths"), [(ResNet20, 9, (16, 32, 64)), (ResNet18, 8, (64, 128, 256, 512))]
)
def test_stage_layout(cls: type[nn.Module], blocks: int, widths: tuple[int, ...]) -> None:
    model = cls()
    all_blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(all_blocks) == blocks
    assert sorted({b.conv2.out_channels for b in all_blocks}) == list(widths)
    # a projection exactly where the shape changes: once per stage after the first
    projected = [b for b in all_blocks if b.shortcut is not None]
    assert len(projected) == len(widths) - 1
    for block in projected:
        conv, bn = block.shortcut
        assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
        assert conv.kernel_size == (1, 1) and conv.stride == (2, 2)


def test_residual_add_feeds_a_relu() -> None:
    traced = fx.symbolic_trace(ResNet20())
    modules = dict(traced.named_modules())
    adds = [n for n in traced.graph.nodes if n.target is operator.add]
    assert len(adds) == 9
    for add in adds:
        (user,) = add.users
        assert user.op == "call_module" and isinstance(modules[user.target], nn.ReLU)


def test_output_resolution_and_input_channels() -> None:
    model = ResNet20(in_channels=1, num_classes=4).eval()
    features = model.stages(model.stem(torch.randn(2, 1, 32, 32)))
    assert features.shape == (2, 64, 8, 8)
    assert model.fc.out_features == 4


@pytest.mark.parametrize(("width", "expected"), [(0.5, (8, 16, 32)), (2.0, (32, 64, 128))])
def test_width_scales_channels(width: float, expected: tuple[int, ...]) -> None:
    model = ResNet20(width=width)
    assert model.stem[0].out_channels == expected[0]
    assert [stage[-1].conv2.out_channels for stage in model.stages] == list(expected)
    assert model.fc.in_features == expected[-1]
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 10)
