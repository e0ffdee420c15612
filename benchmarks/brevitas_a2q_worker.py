"""Brevitas A2Q+ on hwquant's Fashion-MNIST ``small_cnn``: the worker that runs in Brevitas's venv.

Started by ``benchmarks/brevitas_a2q_fashion_mnist.py`` with the Python of a venv holding
Brevitas 0.13.4 and the pinned torch (no hwquant there): it reads the normalised data and the
FP32 state_dict that the driver wrote, builds the same network from Brevitas layers (every conv
and the linear layer with ``Int8AccumulatorAwareZeroCenterWeightQuant`` at ``--weight-bits``
and a ``--acc-bits`` accumulator, the input quantized to 8 signed bits, ReLUs to
``--act-bits`` unsigned), applies A2Q+'s Euclidean-projection init (EP-init), trains with
Brevitas's A2Q recipe's norm penalty on top of the driver's optimizer settings, and prints
one JSON line: the test accuracy and, per layer, the integer weights' accumulator bound.

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
    args = p.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    x_train = torch.from_numpy(np.load(args.data / "x_train.npy"))
    y_train = torch.from_numpy(np.load(args.data / "y_train.npy"))
    x_test = torch.from_numpy(np.load(args.data / "x_test.npy"))
    y_test = torch.from_numpy(np.load(args.data / "y_test.npy"))
    model = quant_small_cnn(args.weight_bits, args.act_bits, args.acc_bits)
    state = torch.load(args.data / "fp32.pt", weights_only=True)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if "quant" not in k]:  # only quantizers start afresh
        raise SystemExit(f"state_dict mismatch: missing {missing}, unexpected {unexpected}")
    apply_ep_init(model, x_train[: args.batch_size])  # A2Q+'s Euclidean-projection init
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
        momentum=0.9,
        nesterov=True,
    )
    steps = args.epochs * (len(x_train) // args.batch_size)
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
    generator = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    model.train()
    for _ in range(args.epochs):
        order = torch.randperm(len(x_train), generator=generator)
        for i in range(len(x_train) // args.batch_size):
            batch = order[i * args.batch_size : (i + 1) * args.batch_size]
            loss = F.cross_entropy(model(x_train[batch]), y_train[batch])
            loss = loss + REG_WEIGHT * sum(penalty)
            penalty.clear()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    train_seconds = time.perf_counter() - start
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
