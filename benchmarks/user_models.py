"""Acceptance of user-style models: each model of :data:`MODELS`, written the way users write
them (not the zoo), through every scheme: ``prepare`` → a few training steps on random data →
``lower`` → ``verify`` (the engine equals the QAT model, exactly) → the exported graph run by
onnxruntime against the engine (IntModels; a TableModel has no ONNX form).

Each (model, scheme) pair ends in one outcome:

* ``accepted``: ``verify`` found every integer equal, and the export equals the engine exactly
  or is refused with an error naming the layer (recorded under ``export``);
* ``refused``: a :class:`~hwquant.core.errors.HwquantError` at some stage (its class and first
  line recorded): the user learns what is unsupported and how to fix it;
* ``SILENT-WRONG``: ``verify`` found a difference, or the exported graph differs from the engine;
* ``CRASH``: any other exception (a bug: a user would see a raw traceback).

The targets (issue 17): at least 85 % accepted by llsq, msq and nonuniform, 70 % by tables, no
silent wrong result and no crash. Run from the repository root:
``python -m benchmarks.user_models`` (writes ``benchmarks/results/user_models_acceptance.json``).
"""

from __future__ import annotations

import argparse
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import hwquant
from benchmarks.common import command_line, write_result
from hwquant.core.errors import HwquantError
from hwquant.qat.recipe import Recipe, TableOptions

RECIPES = {
    "llsq": Recipe(bn_freeze_step=2, last_layer_bits=6),
    "msq": Recipe(scheme="msq", bn_freeze_step=2, last_layer_bits=6),
    "nonuniform": Recipe(
        scheme="nonuniform", scale_constraint="pow2", bn_freeze_step=2, last_layer_bits=6
    ),
    "tables": Recipe(scheme="tables", tables=TableOptions(act_start=1, reestimate_every=2)),
}
"""The recipes of tests/schemes/test_conformance.py (a 6-bit classifier keeps the exported
accumulator below 2^24), with the BN freeze inside the few training steps."""
TARGETS = {"llsq": 0.85, "msq": 0.85, "nonuniform": 0.85, "tables": 0.70}
STEPS, BATCH = 3, 16


# -- the models -------------------------------------------------------------------------------
def conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()
    )


class LeNet5(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 2 * 2, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.view(x.size(0), -1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class LeNetTanh(nn.Module):
    """The 1998 form: tanh and average pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 6, 5, padding=2), nn.Conv2d(6, 16, 5)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(16 * 2 * 2, 10)

    def forward(self, x):
        x = self.pool(torch.tanh(self.c1(x)))
        x = self.pool(torch.tanh(self.c2(x)))
        return self.fc(torch.flatten(x, 1))


class MLPFunctional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(256, 64), nn.Linear(64, 32), nn.Linear(32, 10)

    def forward(self, x):
        x = x.view(x.size(0), -1)
        x = F.dropout(F.relu(self.fc1(x)), 0.2, training=self.training)
        return self.fc3(F.relu(self.fc2(x)))


class VGGish(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_bn_relu(3, 8),
            conv_bn_relu(8, 8),
            nn.MaxPool2d(2),
            conv_bn_relu(8, 16),
            conv_bn_relu(16, 16),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 4 * 4, 32), nn.ReLU(True), nn.Dropout(), nn.Linear(32, 10)
        )

    def forward(self, x):
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return F.relu(out)


class PreActBlock(nn.Module):
    """Pre-activation ResNet: BN and ReLU before each convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(channels), nn.Conv2d(channels, channels, 3, 1, 1)
        self.bn2, self.conv2 = nn.BatchNorm2d(channels), nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x):
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return out + x


class ResNetish(nn.Module):
    def __init__(self, block: str = "basic") -> None:
        super().__init__()
        self.stem = conv_bn_relu(3, 8)
        if block == "basic":
            self.layers = nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 16, 2))
            width = 16
        else:
            self.layers = nn.Sequential(PreActBlock(8), PreActBlock(8))
            width = 8
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width, 10)

    def forward(self, x):
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


class ResNetAvgPool(nn.Module):
    """Residual add written as ``torch.add``, separate ReLU modules, AvgPool2d(2) head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x):
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(torch.add(self.bn2(self.conv2(x)), x))
        return self.fc(self.pool(x).flatten(1))


def depthwise_separable(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_in, 3, stride, 1, groups=c_in, bias=False),
        nn.BatchNorm2d(c_in),
        nn.ReLU6(inplace=True),
        nn.Conv2d(c_in, c_out, 1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU6(inplace=True),
    )


class MobileNetV1ish(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.model = nn.Sequential(
            conv_bn_relu(3, 8, 2),
            depthwise_separable(8, 16),
            depthwise_separable(16, 32, 2),
            nn.AdaptiveAvgPool2d(1),
        )
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc(self.model(x).view(-1, 32))


class InvertedResidual(nn.Module):
    def __init__(self, channels: int, expand: int = 4) -> None:
        super().__init__()
        hidden = channels * expand
        self.conv = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x):
        return x + self.conv(x)


class MobileNetV2ish(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(conv_bn_relu(3, 8, 2), InvertedResidual(8))
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(8, 10))

    def forward(self, x):
        return self.classifier(self.features(x).mean([2, 3]))


class MobileNetV3ish(nn.Module):
    """Hardswish activations and a squeeze-excitation gate with Hardsigmoid."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.Hardswish())
        self.dw = nn.Sequential(
            nn.Conv2d(8, 8, 3, 1, 1, groups=8), nn.BatchNorm2d(8), nn.Hardswish()
        )
        self.se_reduce, self.se_expand = nn.Conv2d(8, 4, 1), nn.Conv2d(4, 8, 1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.dw(self.stem(x))
        gate = F.hardsigmoid(self.se_expand(F.relu(self.se_reduce(x.mean((2, 3), keepdim=True)))))
        return self.fc((x * gate).mean((2, 3)))


class SEResNet(nn.Module):
    """A residual block with squeeze-excitation: ``x * sigmoid(fc(gap(x)))``."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn_relu(3, 8)
        self.conv = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8))
        self.fc1, self.fc2 = nn.Linear(8, 2), nn.Linear(2, 8)
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        x = self.stem(x)
        y = self.conv(x)
        w = torch.sigmoid(self.fc2(F.relu(self.fc1(y.mean((2, 3))))))
        y = y * w.view(-1, 8, 1, 1)
        return self.head(F.relu(y + x).mean((2, 3)))


class DenseNetish(nn.Module):
    """Dense layers ``Conv → BN → ReLU`` (post-activation), each concatenated to its input."""

    def __init__(self, growth: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.layers = nn.ModuleList(conv_bn_relu(8 + i * growth, growth) for i in range(3))
        self.transition = nn.Conv2d(8 + 3 * growth, 8, 1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.stem(x)
        for layer in self.layers:
            x = torch.cat([x, layer(x)], 1)
        x = F.avg_pool2d(F.relu(self.transition(x)), 2)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class DenseNetBC(nn.Module):
    """The torchvision dense layer: ``BN → ReLU → Conv`` (pre-activation) before the concat."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn, self.conv = nn.BatchNorm2d(8), nn.Conv2d(8, 4, 3, padding=1)
        self.fc = nn.Linear(12, 10)

    def forward(self, x):
        x = self.stem(x)
        x = torch.cat([x, self.conv(F.relu(self.bn(x)))], 1)
        return self.fc(x.mean((2, 3)))


class Inceptionish(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn_relu(3, 8)
        self.b1 = nn.Sequential(nn.Conv2d(8, 4, 1), nn.ReLU())
        self.b3 = nn.Sequential(nn.Conv2d(8, 4, 1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
        self.b5 = nn.Sequential(nn.Conv2d(8, 2, 1), nn.ReLU(), nn.Conv2d(2, 4, 5, padding=2))
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(8, 4, 1))
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.stem(x)
        x = torch.cat([self.b1(x), F.relu(self.b3(x)), F.relu(self.b5(x)), F.relu(self.bp(x))], 1)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class FireSqueezeNet(nn.Module):
    """SqueezeNet's fire module: squeeze 1x1, expand 1x1 and 3x3 concatenated; conv classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(inplace=True))
        self.squeeze = nn.Conv2d(16, 4, 1)
        self.expand1, self.expand3 = nn.Conv2d(4, 8, 1), nn.Conv2d(4, 8, 3, padding=1)
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(16, 10, 1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d((1, 1))

    def forward(self, x):
        x = F.relu(self.squeeze(self.stem(x)))
        x = torch.cat([F.relu(self.expand1(x)), F.relu(self.expand3(x))], 1)
        return torch.flatten(self.pool(self.classifier(x)), 1)


class UNetUpsample(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc1, self.enc2 = conv_bn_relu(3, 8), conv_bn_relu(8, 16)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.dec = conv_bn_relu(24, 8)
        self.out = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        return self.out(self.dec(torch.cat([self.up(e2), e1], dim=1)))


class UNetTransposed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc1, self.enc2 = conv_bn_relu(3, 8), conv_bn_relu(8, 16)
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ConvTranspose2d(16, 8, kernel_size=2, stride=2)
        self.dec = conv_bn_relu(16, 8)
        self.out = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        d = torch.cat((F.relu(self.up(e2)), e1), 1)
        return self.out(self.dec(d))


class UNetBilinear(nn.Module):
    """U-Net with bilinear upsampling (the other common decoder)."""

    def __init__(self) -> None:
        super().__init__()
        self.enc1, self.enc2 = conv_bn_relu(3, 8), conv_bn_relu(8, 8)
        self.dec, self.out = conv_bn_relu(16, 8), nn.Conv2d(8, 2, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        up = F.interpolate(e2, scale_factor=2, mode="bilinear", align_corners=False)
        return self.out(self.dec(torch.cat([up, e1], 1)))


class FCNDecoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Sequential(conv_bn_relu(3, 8, 2), conv_bn_relu(8, 16, 2))
        self.up = nn.Sequential(
            nn.ConvTranspose2d(16, 8, 4, 2, 1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.ConvTranspose2d(8, 3, 4, 2, 1),
        )

    def forward(self, x):
        return self.up(self.down(x))


class FPNish(nn.Module):
    """A top-down path: the coarse map upsampled by ``F.interpolate`` and added to a lateral."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = conv_bn_relu(3, 8), conv_bn_relu(8, 8, 2)
        self.lateral = nn.Conv2d(8, 8, 1)
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        c1 = self.c1(x)
        c2 = self.c2(c1)
        p = self.lateral(c1) + F.interpolate(c2, scale_factor=2, mode="nearest")
        return self.head(F.relu(p).mean((2, 3)))


class AudioConv1d(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, 8, 9, stride=2, padding=4),
            nn.BatchNorm1d(8),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Conv1d(8, 16, 5, padding=2),
            nn.BatchNorm1d(16),
            nn.ReLU(),
            nn.AdaptiveAvgPool1d(1),
        )
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(self.features(x).squeeze(-1))


class ECGConv1d(nn.Module):
    """A 12-lead ECG net with ``padding="same"`` and a global mean over time."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(12, 16, 7, padding="same")
        self.conv2 = nn.Conv1d(16, 16, 5, padding="same")
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        return self.fc(x.mean(dim=-1))


class ECGFlatten(nn.Module):
    """A 1-D net ending in a flatten and two fully connected layers."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv1d(1, 4, 5, padding=2), nn.ReLU(), nn.MaxPool1d(4), nn.Dropout(0.1)
        )
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(4 * 16, 16), nn.ReLU(), nn.Linear(16, 2))

    def forward(self, x):
        return self.fc(self.conv(x))


class DCGANDiscriminator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(3, 8, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(8, 16, 4, 2, 1, bias=False),
            nn.BatchNorm2d(16),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(16, 1, 4, 1, 0, bias=False),
        )

    def forward(self, x):
        return self.main(x).view(-1, 1)


class AllConvNet(nn.Module):
    """Strided convolutions instead of pooling; global mean; 1x1 conv classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 10, 1),
        )

    def forward(self, x):
        return self.net(x).mean((2, 3))


class SameDilated(nn.Module):
    """``padding="same"``, a dilated (atrous) convolution and ReLU6."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding="same")
        self.c2 = nn.Conv2d(8, 8, 3, padding=2, dilation=2)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = F.relu6(self.c2(F.relu6(self.c1(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).squeeze(-1).squeeze(-1))


class Dropout2dNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 10, 5), nn.Conv2d(10, 20, 5)
        self.conv2_drop = nn.Dropout2d()
        self.fc1, self.fc2 = nn.Linear(20 * 1 * 1, 50), nn.Linear(50, 10)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = x.view(-1, 20)
        x = F.dropout(F.relu(self.fc1(x)), training=self.training)
        return self.fc2(x)


class SoftmaxOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(256, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x):
        return F.log_softmax(self.body(x), dim=1)


class SigmoidOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = conv_bn_relu(3, 8, 2)
        self.fc = nn.Linear(8, 1)

    def forward(self, x):
        return torch.sigmoid(self.fc(self.conv(x).mean((2, 3))))


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle (view, transpose, view)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, groups=1)
        self.conv2 = nn.Conv2d(8, 8, 1, groups=2)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        n, c, h, w = x.shape
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)
        return self.fc(F.relu(self.conv2(x)).mean((2, 3)))


class SharedConv(nn.Module):
    """One conv module applied twice (weight sharing)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = F.relu(self.conv(F.relu(self.conv(x))))
        return self.fc(x.mean((2, 3)))


class GELUMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(256, 64), nn.GELU(), nn.Linear(64, 10))

    def forward(self, x):
        return self.net(x)


class NiN(nn.Module):
    """Network in network: mlpconv blocks of 1x1 convolutions, global average as the output."""

    def __init__(self) -> None:
        super().__init__()

        def block(c_in: int, c_out: int, k: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, k, padding=k // 2),
                nn.ReLU(),
                nn.Conv2d(c_out, c_out, 1),
                nn.ReLU(),
            )

        self.net = nn.Sequential(
            block(3, 8, 3), nn.MaxPool2d(3, 2, 1), block(8, 10, 3), nn.AdaptiveAvgPool2d(1)
        )
        self.flatten = nn.Flatten()

    def forward(self, x):
        return self.flatten(self.net(x))


@dataclass(frozen=True)
class UserModel:
    """A user-style model: its constructor, one sample's shape and what it stands for."""

    build: Callable[[], nn.Module]
    sample: tuple[int, ...]
    kind: str


IMAGE, GRAY, SIGNAL = (3, 16, 16), (1, 16, 16), (1, 64)
MODELS: dict[str, UserModel] = {
    "mlp_sequential": UserModel(
        lambda: nn.Sequential(
            nn.Flatten(),
            nn.Linear(256, 64),
            nn.ReLU(),
            nn.Linear(64, 32),
            nn.ReLU(),
            nn.Linear(32, 10),
        ),
        GRAY,
        "MLP",
    ),
    "mlp_bn_dropout": UserModel(
        lambda: nn.Sequential(
            nn.Flatten(),
            nn.Linear(256, 64),
            nn.BatchNorm1d(64),
            nn.ReLU(),
            nn.Dropout(0.3),
            nn.Linear(64, 10),
        ),
        GRAY,
        "MLP",
    ),
    "mlp_functional": UserModel(MLPFunctional, GRAY, "MLP"),
    "mlp_gelu": UserModel(GELUMLP, GRAY, "MLP"),
    "lenet5": UserModel(LeNet5, GRAY, "CNN"),
    "lenet_tanh_avgpool": UserModel(LeNetTanh, GRAY, "CNN"),
    "vgg_bn": UserModel(VGGish, IMAGE, "VGG"),
    "resnet_basic": UserModel(ResNetish, IMAGE, "ResNet"),
    "resnet_preact": UserModel(lambda: ResNetish("preact"), IMAGE, "ResNet"),
    "resnet_torch_add_avgpool": UserModel(ResNetAvgPool, IMAGE, "ResNet"),
    "mobilenet_v1_depthwise": UserModel(MobileNetV1ish, IMAGE, "MobileNet"),
    "mobilenet_v2_inverted": UserModel(MobileNetV2ish, IMAGE, "MobileNet"),
    "mobilenet_v3_hardswish_se": UserModel(MobileNetV3ish, IMAGE, "MobileNet"),
    "se_resnet": UserModel(SEResNet, IMAGE, "SE"),
    "densenet_post_activation": UserModel(DenseNetish, IMAGE, "DenseNet"),
    "densenet_bc_pre_activation": UserModel(DenseNetBC, IMAGE, "DenseNet"),
    "inception_branches": UserModel(Inceptionish, IMAGE, "Inception"),
    "squeezenet_fire": UserModel(FireSqueezeNet, IMAGE, "SqueezeNet"),
    "unet_upsample_cat": UserModel(UNetUpsample, IMAGE, "U-Net"),
    "unet_convtranspose_cat": UserModel(UNetTransposed, IMAGE, "U-Net"),
    "unet_bilinear": UserModel(UNetBilinear, IMAGE, "U-Net"),
    "fcn_convtranspose": UserModel(FCNDecoder, IMAGE, "segmentation"),
    "fpn_interpolate_add": UserModel(FPNish, IMAGE, "FPN"),
    "audio_conv1d": UserModel(AudioConv1d, SIGNAL, "Conv1d"),
    "ecg_conv1d_same_mean": UserModel(ECGConv1d, (12, 64), "Conv1d"),
    "ecg_conv1d_flatten": UserModel(ECGFlatten, SIGNAL, "Conv1d"),
    "dcgan_discriminator_leakyrelu": UserModel(DCGANDiscriminator, IMAGE, "GAN"),
    "all_conv_net": UserModel(AllConvNet, IMAGE, "CNN"),
    "nin_global_pool_output": UserModel(NiN, IMAGE, "CNN"),
    "same_padding_dilated_relu6": UserModel(SameDilated, IMAGE, "CNN"),
    "mnist_example_dropout2d": UserModel(Dropout2dNet, GRAY, "CNN"),
    "log_softmax_output": UserModel(SoftmaxOutput, GRAY, "MLP"),
    "sigmoid_output": UserModel(SigmoidOutput, IMAGE, "CNN"),
    "shufflenet_channel_shuffle": UserModel(ChannelShuffle, IMAGE, "ShuffleNet"),
    "shared_module_twice": UserModel(SharedConv, IMAGE, "CNN"),
}


# -- the run ----------------------------------------------------------------------------------
def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]


def run_one(name: str, scheme: str, seed: int = 0) -> dict[str, object]:
    """The outcome of model ``name`` under ``scheme`` (module docstring)."""
    user = MODELS[name]
    torch.manual_seed(seed)
    model = user.build()
    x = torch.randn(BATCH, *user.sample)
    stage = "prepare"
    record: dict[str, object] = {}
    try:
        qat = hwquant.prepare(model, RECIPES[scheme])
        stage = "train"
        qat.train()
        opt = torch.optim.Adam(qat.parameters(), lr=1e-3)
        for _ in range(STEPS):
            opt.zero_grad()
            out = qat(x)
            target = torch.randn_like(out)
            F.mse_loss(out, target).backward()
            opt.step()
        qat.eval()
        stage = "lower"
        lowered = hwquant.lower(qat, x)
        stage = "verify"
        report = hwquant.verify(qat, lowered, x)
        record["verify_warnings"] = len(report.warnings)
        if not report.exact:
            return record | {"outcome": "SILENT-WRONG", "stage": stage, "detail": str(report)}
        stage = "export"
        record["export"] = _export(lowered, x)
        if record["export"] == "MISMATCH":
            return record | {"outcome": "SILENT-WRONG", "stage": stage}
        return record | {"outcome": "accepted"}
    except HwquantError as exc:
        return record | {
            "outcome": "refused",
            "stage": stage,
            "error": type(exc).__name__,
            "message": _first_line(exc),
        }
    except Exception as exc:  # a crash is what this benchmark looks for
        return record | {
            "outcome": "CRASH",
            "stage": stage,
            "error": type(exc).__name__,
            "message": _first_line(exc),
            "where": traceback.format_exc().strip().splitlines()[-3][:300],
        }


def _export(lowered: object, x: torch.Tensor) -> str:
    """'exact' (onnxruntime equals the engine), 'refused: ...', 'MISMATCH', or 'n/a' (a
    TableModel has no ONNX form)."""
    if not isinstance(lowered, hwquant.IntModel):
        return "n/a"
    x_int = lowered.quantize_input(x)
    try:
        got = lowered.run(x_int, backend="onnxruntime")
    except HwquantError as exc:
        return f"refused: {type(exc).__name__}: {_first_line(exc)}"
    return "exact" if torch.equal(got, lowered.run(x_int)) else "MISMATCH"


def summarize(outcomes: dict[str, dict[str, dict[str, object]]]) -> dict[str, object]:
    """Per scheme: accepted / total (accepted: prepared, trained, lowered and verified exact),
    the rate, how many accepted models the ONNX export then refused, the silent-wrong and crash
    counts, the target."""
    summary: dict[str, object] = {}
    for scheme in RECIPES:
        records = [outcomes[m][scheme] for m in outcomes if scheme in outcomes[m]]
        kinds = [r["outcome"] for r in records]
        accepted = kinds.count("accepted")
        exports = [str(r.get("export", "")) for r in records if r["outcome"] == "accepted"]
        summary[scheme] = {
            "models": len(kinds),
            "accepted": accepted,
            "refused": kinds.count("refused"),
            "accepted_but_export_refused": sum(e.startswith("refused") for e in exports),
            "silent_wrong": kinds.count("SILENT-WRONG"),
            "crash": kinds.count("CRASH"),
            "acceptance_rate": round(accepted / max(len(kinds), 1), 3),
            "target": TARGETS[scheme],
            "meets_target": accepted / max(len(kinds), 1) >= TARGETS[scheme]
            and kinds.count("SILENT-WRONG") == 0
            and kinds.count("CRASH") == 0,
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--schemes", nargs="*", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="result path (default: benchmarks/results)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    outcomes: dict[str, dict[str, dict[str, object]]] = {}
    for name in args.models:
        outcomes[name] = {"kind": MODELS[name].kind} | {
            scheme: run_one(name, scheme, args.seed) for scheme in args.schemes
        }
        print(name, {s: outcomes[name][s]["outcome"] for s in args.schemes}, flush=True)
    kinds_only = {m: {s: o for s, o in v.items() if s in RECIPES} for m, v in outcomes.items()}
    results = {
        "summary": summarize(kinds_only),
        "models": outcomes,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    config = {
        "recipes": {s: RECIPES[s].to_dict() for s in args.schemes},
        "training": f"{STEPS} Adam steps (lr 1e-3) on one random batch of {BATCH}, MSE loss",
        "export": "onnxruntime run of the exported graph vs the engine (IntModels)",
    }
    path = write_result(
        "user_models_acceptance",
        command=command_line(),
        seed=args.seed,
        config=config,
        results=results,
        path=args.out,
    )
    for scheme, line in results["summary"].items():
        print(scheme, line)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
