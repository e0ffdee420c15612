"""The demo models the interop round trips run, trained here where ``make demo`` has none.

``make demo`` trains the small CNN on MNIST-5k in FP32 and LLSQ W4A4 / W2A2. The round trips
also need every scheme a consumer can express through decoded weights (MSQ and non-uniform) and
the MLP, so this script adds, on the same data set:

* ``small_cnn_msq_w4a4`` and ``small_cnn_nonuniform_w4a4``: QAT fine-tuned from the demo's FP32
  checkpoint (``runs/demo/checkpoints/fp32/last.pt``), as the demo fine-tunes its LLSQ models;
* ``mlp_fp32`` then ``mlp_{llsq,msq,nonuniform}_w4a4``: a 784-128-64-10 MLP (linear, BN, ReLU),
  trained in FP32 and fine-tuned with each scheme, and ``mlp_llsq_w4a4_acc16`` with the demo's
  16-bit accumulator bound (a layer whose proved interval, bias included, needs more bits gets
  that many, recorded in its ``.json``: the exports refuse an accumulator that can overflow;
  ``lower`` proves the trained bound, so none is widened).
  Without the bound, the MLP's first layer (784 8-bit inputs, 8-bit weights) sums beyond
  float32's exact 2^24, and its export computes that requantization in limbs, which hls4ml
  cannot read (``hwquant export --to hls4ml`` refuses it).

``python -m benchmarks.interop.models OUT`` writes ``OUT/<name>.npz`` (the lowered IntModel) and
``OUT/<name>.json`` (its test accuracy); a model whose ``.npz`` exists is skipped, so a stopped
run resumes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import nn

import hwquant
from hwquant.app.config import TrainConfig
from hwquant.app.demo import ACC16_RECIPE, DemoData, demo_settings, evaluate, load_data, train
from hwquant.app.train import seed_everything
from hwquant.core.atomic import write_atomic
from hwquant.core.checkpoint import load_checkpoint
from hwquant.models import build
from hwquant.qat.recipe import Recipe

FP32_CHECKPOINT = Path("runs/demo/checkpoints/fp32/last.pt")
"""The demo's FP32 small CNN (``make demo``)."""
QAT = TrainConfig(epochs=1, batch_size=64, optimizer="adam", lr=5e-4, weight_decay=0.0)
FP32 = TrainConfig(epochs=2, batch_size=64, optimizer="adam", lr=2e-3, weight_decay=0.0)
SCHEMES = {
    "llsq": Recipe(weight_bits=4, act_bits=4),
    "msq": Recipe(scheme="msq", weight_bits=4, act_bits=4),
    "nonuniform": Recipe(scheme="nonuniform", weight_bits=4, act_bits=4, scale_constraint="pow2"),
}
ACC16 = ("llsq_w4a4_acc16", ACC16_RECIPE)
"""The demo's third variant: every layer's sums bounded to 16 bits (docs/llsq.md §5)."""


def mlp(data: DemoData) -> nn.Sequential:
    """784-128-64-10 with BN and ReLU after each hidden layer."""
    pixels = data.channels * data.height * data.height
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(pixels, 128),
        nn.BatchNorm1d(128),
        nn.ReLU(),
        nn.Linear(128, 64),
        nn.BatchNorm1d(64),
        nn.ReLU(),
        nn.Linear(64, data.splits.num_classes),
    )


def small_cnn(data: DemoData) -> nn.Module:
    """The demo's FP32 small CNN, from its checkpoint."""
    model = build(
        "small_cnn",
        num_classes=data.splits.num_classes,
        in_channels=data.channels,
        input_size=data.height,
    )
    model.load_state_dict(load_checkpoint(FP32_CHECKPOINT)["model"])
    return model


def fine_tune(name: str, fp32: nn.Module, recipe: Recipe, data: DemoData, out: Path) -> None:
    """QAT-train a copy of ``fp32`` with ``recipe``, lower it and save it as ``out/name.npz``."""
    if (out / f"{name}.npz").exists():
        return
    seed_everything(QAT.seed)
    qat = hwquant.prepare(fp32, recipe)
    train(qat, QAT, data, out / "checkpoints" / name)
    model = hwquant.lower(qat, data.x_test[:1])
    exact = hwquant.verify(qat, model, data.x_test).exact
    info = {"name": name, "accuracy": evaluate(qat, data), "verified_exact": exact}
    widened = {
        n.name: n.proved_bits() for n in model.weight_nodes() if n.proved_bits() > n.acc_bits
    }
    for layer, bits in widened.items():  # the exports refuse an accumulator that can overflow
        model.set_accumulator(bits, layers=[layer])
    info["accumulators_widened_to_proved_bits"] = widened
    write_atomic(out / f"{name}.json", json.dumps(info, indent=2).encode())
    model.save(out / f"{name}.npz")
    print(info)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    out = parser.parse_args().out
    torch.set_num_threads(1)
    data = load_data(demo_settings(quick=False))
    cnn = small_cnn(data)
    for scheme in ("msq", "nonuniform"):
        fine_tune(f"small_cnn_{scheme}_w4a4", cnn, SCHEMES[scheme], data, out)
    variants = [(f"{scheme}_w4a4", recipe) for scheme, recipe in SCHEMES.items()] + [ACC16]
    if all((out / f"mlp_{name}.npz").exists() for name, _ in variants):
        return
    seed_everything(FP32.seed)
    fp32 = mlp(data)
    train(fp32, FP32, data, out / "checkpoints" / "mlp_fp32")
    for name, recipe in variants:
        fine_tune(f"mlp_{name}", fp32, recipe, data, out)


if __name__ == "__main__":
    main()
