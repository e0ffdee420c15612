"""Brevitas A2Q+ on hwquant's models: the worker that runs in Brevitas's venv.

Started by ``benchmarks/brevitas_a2q_fashion_mnist.py`` (``--model small_cnn``) or
``benchmarks/brevitas_a2q_cifar10.py`` (``--model resnet20``) with the Python of a venv holding
Brevitas 0.13.4 and the pinned torch (no hwquant there): it reads the data and the FP32
state_dict that the driver wrote, builds the same network from Brevitas layers (every weight
layer with ``Int8AccumulatorAwareZeroCenterWeightQuant`` and a ``--acc-bits`` accumulator: the
inner layers at ``--weight-bits``, the first and last at ``--first-last-bits``; the input
quantized to 8 signed bits, ReLUs to ``--act-bits`` unsigned), applies A2Q+'s
Euclidean-projection init (EP-init), trains with Brevitas's A2Q recipe's norm penalty on top of
the driver's optimizer settings, and prints one JSON line: the test accuracy and, per layer, the
integer weights' accumulator bound.

The data is ``x_train.npy`` / ``x_test.npy`` (float32, normalised, NCHW) with ``y_*.npy``,
or, with ``--augment`` (CIFAR-10's ResNet-20 only), ``u8_train.npy`` / ``u8_test.npy`` (uint8
NHWC pixels) and ``norm.json`` (mean and std per channel): each training batch is then randomly
cropped from a copy padded with 4 black pixels and mirrored at random, as hwquant's loader
augments CIFAR-10, and normalised.

    python benchmarks/brevitas_a2q_worker.py --data DIR --acc-bits 12 ...
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from brevitas import nn as qnn
from brevitas.core.scaling import AccumulatorAwareParameterPreScaling
from brevitas.function.ops_ste import abs_binary_sign_grad
from brevitas.quant import Int8AccumulatorAwareZeroCenterWeightQuant
from brevitas.quant_tensor import QuantTensor
from brevitas_examples.imagenet_classification.a2q.ep_init import apply_ep_init
from torch import nn

REG_WEIGHT = 1e-3  # A2Q's norm penalty weight (brevitas_examples a2q utils.train_for_epoch)


class A2QPlusQuant(Int8AccumulatorAwareZeroCenterWeightQuant):
    """A2Q+ (zero-centred accumulator-aware weights) with the width set per layer."""

    bit_width = None
    scaling_min_val = 1e-8
    pre_scaling_min_val = 1e-8


def quant_small_cnn(weight_bits: int, act_bits: int, acc_bits: int) -> nn.Module:
    """hwquant's ``small_cnn`` (conv32-conv32-pool-conv64-pool-linear, BN+ReLU) in Brevitas
    layers, every weight layer accumulator-aware; module names match the float state_dict."""
    wq = A2QPlusQuant.let(accumulator_bit_width=acc_bits)

    def conv(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(
            qnn.QuantConv2d(
                cin, cout, 3, padding=1, bias=False, weight_quant=wq, weight_bit_width=weight_bits
            ),
            nn.BatchNorm2d(cout),
            qnn.QuantReLU(bit_width=act_bits, return_quant_tensor=True),
        )

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.quant_input = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
            self.features = nn.Sequential(
                conv(1, 32), conv(32, 32), nn.MaxPool2d(2), conv(32, 64), nn.MaxPool2d(2)
            )
            self.classifier = qnn.QuantLinear(
                3136, 10, bias=True, weight_quant=wq, weight_bit_width=weight_bits
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.features(self.quant_input(x))
            return self.classifier(torch.flatten(x, 1))

    return Net()


def quant_resnet20(weight_bits: int, act_bits: int, acc_bits: int, edge_bits: int) -> nn.Module:
    """hwquant's ResNet-20 (3x3 stem, three stages of three basic blocks with 16/32/64
    channels and option-B 1x1 projection shortcuts, average pool, linear) in Brevitas layers,
    every weight layer accumulator-aware at ``acc_bits``; the stem and the classifier take
    ``edge_bits`` weights and the classifier ``edge_bits`` unsigned inputs, as hwquant's
    ``first_layer_bits`` / ``last_layer_bits``. BatchNorm stays a float layer and the residual
    sum is quantized by the block's last ReLU. Module names match the float state_dict."""
    wq = A2QPlusQuant.let(accumulator_bit_width=acc_bits)

    def conv(cin: int, cout: int, kernel: int, stride: int, bits: int) -> qnn.QuantConv2d:
        return qnn.QuantConv2d(cin, cout, kernel, stride=stride, padding=kernel // 2,
                               bias=False, weight_quant=wq, weight_bit_width=bits)  # fmt: skip

    def relu(bits: int = act_bits) -> qnn.QuantReLU:
        return qnn.QuantReLU(bit_width=bits, return_quant_tensor=True)

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1, self.bn1 = conv(cin, cout, 3, stride, weight_bits), nn.BatchNorm2d(cout)
            self.relu1 = relu()
            self.conv2, self.bn2 = conv(cout, cout, 3, 1, weight_bits), nn.BatchNorm2d(cout)
            self.shortcut = None
            if stride != 1 or cin != cout:
                self.shortcut = nn.Sequential(
                    conv(cin, cout, 1, stride, weight_bits), nn.BatchNorm2d(cout)
                )
            self.relu2 = relu()

        def forward(self, x: QuantTensor) -> QuantTensor:  # x: the previous ReLU's
            out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
            shortcut = value(x) if self.shortcut is None else self.shortcut(x)
            return self.relu2(out + shortcut)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.quant_input = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
            self.stem = nn.Sequential(conv(3, 16, 3, 1, edge_bits), nn.BatchNorm2d(16), relu())
            stages, cin = [], 16
            for index, cout in enumerate((16, 32, 64)):
                blocks = [Block(cin, cout, 1 if index == 0 else 2)]
                blocks += [Block(cout, cout, 1) for _ in range(2)]
                stages.append(nn.Sequential(*blocks))
                cin = cout
            self.stages = nn.Sequential(*stages)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.quant_fc_input = relu(edge_bits)  # non-negative already: a quantizer only
            self.fc = qnn.QuantLinear(64, 10, bias=True, weight_quant=wq,
                                      weight_bit_width=edge_bits)  # fmt: skip

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.stages(self.stem(self.quant_input(x)))
            x = self.quant_fc_input(torch.flatten(self.pool(value(x)), 1))
            return self.fc(x)

    return Net()


def value(x: torch.Tensor | QuantTensor) -> torch.Tensor:
    """The float value of a quantized tensor (a plain tensor where quantization is off)."""
    return x.value if isinstance(x, QuantTensor) else x


class Augmented:
    """The training batches of ``--augment``: uint8 NHWC pixels cropped from a copy padded with
    4 black pixels, mirrored at random, scaled to [0, 1] and normalised per channel."""

    PAD = 4

    def __init__(self, data: Path, generator: torch.Generator) -> None:
        pixels = torch.from_numpy(np.load(data / "u8_train.npy")).permute(0, 3, 1, 2)
        self.padded = F.pad(pixels, (self.PAD,) * 4)
        norm = json.loads((data / "norm.json").read_text())
        self.mean = torch.tensor(norm["mean"]).reshape(1, -1, 1, 1)
        self.std = torch.tensor(norm["std"]).reshape(1, -1, 1, 1)
        self.size = pixels.shape[-1]
        self.generator = generator

    def batch(self, index: torch.Tensor) -> torch.Tensor:
        n, size = len(index), self.size
        dy, dx = torch.randint(0, 2 * self.PAD + 1, (2, n), generator=self.generator)
        flip = torch.rand(n, generator=self.generator) < 0.5
        images = torch.stack([
            self.padded[i, :, y : y + size, x : x + size]
            for i, y, x in zip(index.tolist(), dy.tolist(), dx.tolist(), strict=True)
        ])  # fmt: skip
        images = torch.where(flip.reshape(-1, 1, 1, 1), images.flip(-1), images)
        return normalised(images, self.mean, self.std)

    def first(self, count: int) -> torch.Tensor:
        """The first ``count`` training images as they are, normalised (EP-init's batch)."""
        pad, size = self.PAD, self.size
        return normalised(self.padded[:count, :, pad : pad + size, pad : pad + size],
                          self.mean, self.std)  # fmt: skip


def normalised(pixels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW pixels as float32 in [0, 1], normalised per channel."""
    return (pixels.float() / 255 - mean) / std


def accumulator_bounds(model: nn.Module, x: torch.Tensor) -> list[dict]:
    """Per weight layer: the exact worst-case accumulator interval of its integer weights over
    inputs in the range of its (quantized) input, as hwquant proves it, and its width."""
    records, inputs = [], {}

    def hook(module, args, _output):
        inputs[module] = args[0]

    layers = [m for m in model.modules() if isinstance(m, qnn.QuantConv2d | qnn.QuantLinear)]
    handles = [m.register_forward_hook(hook) for m in layers]
    model.eval()
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    for index, layer in enumerate(layers):
        q = layer.quant_weight(quant_input=inputs[layer])
        w = q.int().reshape(q.value.shape[0], -1).double()
        xin = inputs[layer]
        bits, signed = int(xin.bit_width), bool(xin.signed)
        x_lo, x_hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
        pos, neg = w.clamp_min(0).sum(1), (-w).clamp_min(0).sum(1)
        high, low = x_hi * pos - x_lo * neg, x_lo * pos - x_hi * neg
        peak_low, peak_high = int(low.min()), int(high.max())
        width = 1
        while not (-(2 ** (width - 1)) <= peak_low and peak_high <= 2 ** (width - 1) - 1):
            width += 1
        records.append(
            {
                "layer": index,
                "in_bits": bits,
                "in_signed": signed,
                "interval": [peak_low, peak_high],
                "bits": width,
                "l1_norm_max": int(w.abs().sum(1).max()),
            }
        )
    return records


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="driver's directory of .npy files")
    p.add_argument("--acc-bits", type=int, required=True)
    p.add_argument("--weight-bits", type=int, default=4)
    p.add_argument("--act-bits", type=int, default=4)
    p.add_argument("--lr", type=float, default=0.0025)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", choices=("small_cnn", "resnet20"), default="small_cnn")
    p.add_argument(
        "--first-last-bits",
        type=int,
        default=None,
        help="resnet20: weight bits of the stem and the classifier, and the classifier's input "
        "bits (default --weight-bits)",
    )
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument(
        "--augment", action="store_true", help="resnet20: uint8 data, CIFAR's crop and flip"
    )
    args = p.parse_args()
    if args.model != "resnet20" and (args.augment or args.first_last_bits is not None):
        p.error("--augment (CIFAR-10's crop and mirror) and --first-last-bits are for --model "
                "resnet20 only: small_cnn quantizes every layer at --weight-bits")  # fmt: skip
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(args.seed)
    y_train = torch.from_numpy(np.load(args.data / "y_train.npy"))
    y_test = torch.from_numpy(np.load(args.data / "y_test.npy"))
    if args.augment:
        augmented = Augmented(args.data, generator)
        train_batch = augmented.batch
        test_pixels = torch.from_numpy(np.load(args.data / "u8_test.npy")).permute(0, 3, 1, 2)
        x_test = normalised(test_pixels, augmented.mean, augmented.std)
        start = augmented.first(args.batch_size)
    else:
        x_train = torch.from_numpy(np.load(args.data / "x_train.npy"))
        x_test = torch.from_numpy(np.load(args.data / "x_test.npy"))
        train_batch = x_train.__getitem__
        start = x_train[: args.batch_size]
    if args.model == "resnet20":
        edge_bits = args.first_last_bits or args.weight_bits
        model = quant_resnet20(args.weight_bits, args.act_bits, args.acc_bits, edge_bits)
    else:
        model = quant_small_cnn(args.weight_bits, args.act_bits, args.acc_bits)
    state = torch.load(args.data / "fp32.pt", weights_only=True)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if "quant" not in k]:  # only quantizers start afresh
        raise SystemExit(f"state_dict mismatch: missing {missing}, unexpected {unexpected}")
    apply_ep_init(model, start)  # A2Q+'s Euclidean-projection init
    decay = [p_ for n, p_ in model.named_parameters() if n.endswith("weight") and p_.dim() > 1]
    other = [
        p_ for n, p_ in model.named_parameters() if not (n.endswith("weight") and p_.dim() > 1)
    ]
    optimizer = torch.optim.SGD(
        [
            {"params": decay, "weight_decay": args.weight_decay},
            {"params": other, "weight_decay": 0},
        ],
        lr=args.lr,
        momentum=args.momentum,
        nesterov=True,
    )
    steps = args.epochs * (len(y_train) // args.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    penalty: list[torch.Tensor] = []

    def norm_penalty(module, inp, output):
        weights, input_bit_width, input_is_signed = inp
        s = module.scaling_impl(weights)
        g = abs_binary_sign_grad(module.restrict_clamp_scaling(module.value))
        limit = module.calc_max_l1_norm(input_bit_width, input_is_signed)
        penalty.append(torch.relu(g - limit * s).sum())
        return output

    hooks = [
        m.register_forward_hook(norm_penalty)
        for m in model.modules()
        if isinstance(m, AccumulatorAwareParameterPreScaling)
    ]
    began = time.perf_counter()
    model.train()
    for _ in range(args.epochs):
        order = torch.randperm(len(y_train), generator=generator)
        for i in range(len(y_train) // args.batch_size):
            batch = order[i * args.batch_size : (i + 1) * args.batch_size]
            loss = F.cross_entropy(model(train_batch(batch)), y_train[batch])
            loss = loss + REG_WEIGHT * sum(penalty)
            penalty.clear()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    train_seconds = time.perf_counter() - began
    for h in hooks:
        h.remove()
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x_test), 500):
            correct += int((model(x_test[i : i + 500]).argmax(1) == y_test[i : i + 500]).sum())
    print(
        json.dumps(
            {
                "acc_bits": args.acc_bits,
                "test_acc": correct / len(x_test),
                "train_steps": steps,
                "train_seconds": round(train_seconds, 1),
                "layers": accumulator_bounds(model, x_test[:500]),
            }
        )
    )


if __name__ == "__main__":
    main()
