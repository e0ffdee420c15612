"""The blocks of the squeeze-excitation product, upsampling and zero insertion in whole
designs (issues 15 and 16): exact on real images, cycles as predicted, and what one block costs.

Three small digits classifiers (8x8 images), each holding one of the ops, trained ``--steps``
QAT steps (LLSQ, W4A4 with 8-bit first and last layers) and lowered:

* ``se``: conv 16 → a squeeze-excitation gate (global average pool, 1x1 conv 16→4, ReLU, 1x1
  conv 4→16, hardsigmoid) multiplying the conv's map (``mul``) → max pool → linear 10;
* ``upsample``: conv 8 → max pool 2 → nearest upsampling by 2 → conv 8 → max pool → linear 10;
* ``deconv``: conv 8 stride 2 → ConvTranspose2d 8 (3x3, stride 2, padding 1, output padding
  1: ``zero_insert`` then a conv) → max pool → linear 10.

Each is built for ``--device`` (``build_design``, the folding chosen to fill it), simulated in
Verilator on the first ``--images`` digits test images against the integer engine, and the
new block alone (its Verilog module as the top) is synthesized with Yosys's ``synth_ecp5``
(``hwquant.rtl.implement.implement``, no placement): its LUT4 / FF / MULT18X18D / DP16KD next
to the op module's estimate (the block's ``cost`` in design.json). The feature-map edges are
not in the block's figures (they are costed with the edges). Entries already in the result
file are kept (``--rerun`` replaces them).

Run: ``python -m benchmarks.network_blocks`` (writes benchmarks/results/network_blocks.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import hwquant
from benchmarks.common import (
    ResultRecorder,
    command_line,
    first_test_images,
    train_and_lower,
)
from hwquant.app.train import seed_everything
from hwquant.data import load_dataset
from hwquant.qat.recipe import Recipe
from hwquant.rtl.implement import implement
from hwquant.rtl.network import build_design, simulate_design


class SE(nn.Module):
    """Conv 16, a squeeze-excitation gate over it, max pool, linear 10."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.reduce = nn.Conv2d(16, 4, 1)
        self.expand = nn.Conv2d(4, 16, 1)
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn(self.conv(x)))
        g = F.hardsigmoid(self.expand(F.relu(self.reduce(F.adaptive_avg_pool2d(y, 1)))))
        return self.fc(torch.flatten(F.max_pool2d(y * g, 2), 1))


class Upsample(nn.Module):
    """Conv 8, max pool 2, nearest upsampling by 2, conv 8, max pool, linear 10."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Conv2d(1, 8, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2)
        self.dec = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.up(F.max_pool2d(F.relu(self.enc(x)), 2))
        return self.fc(torch.flatten(F.max_pool2d(F.relu(self.dec(y)), 2), 1))


class Deconv(nn.Module):
    """Conv 8 stride 2, a transposed conv 8 back to 8x8, max pool, linear 10."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Conv2d(1, 8, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(8, 8, 3, stride=2, padding=1, output_padding=1)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.up(F.relu(self.down(x))))
        return self.fc(torch.flatten(F.max_pool2d(y, 2), 1))


MODELS = {"se": (SE, "mul"), "upsample": (Upsample, "upsample"), "deconv": (Deconv, "zero_insert")}
"""Design name -> (model class, the op whose block it measures)."""


def trained(model: nn.Module, steps: int, splits) -> hwquant.IntModel:
    """``model`` after ``steps`` LLSQ QAT steps on the digits training split, lowered."""
    recipe = Recipe(bn_freeze_step=max(1, steps // 2), last_layer_bits=8)
    return train_and_lower(hwquant.prepare(model, recipe), splits, steps)


def measure(name: str, args: argparse.Namespace) -> dict:
    """Train, build, simulate one design and synthesize its new block; its result entry."""
    seed_everything(0)
    cls, op = MODELS[name]
    splits = load_dataset("digits", progress=False)
    x_test, y_test = first_test_images(splits, args.images)
    start = time.perf_counter()
    model = trained(cls(), args.steps, splits)
    codes = model.quantize_input(x_test)
    accuracy = float((model.run(codes).argmax(1) == y_test).double().mean())
    with tempfile.TemporaryDirectory() as tmp:
        lowered = time.perf_counter()
        design = build_design(model, args.device, Path(tmp) / "design", input_size=8)
        built = time.perf_counter()
        report = simulate_design(design.directory, codes, timeout=args.timeout)
        simulated = time.perf_counter()
        block = next(b for b in design.record["blocks"] if b["op"] == op)
        rtl = design.directory / "rtl"
        synth = implement(
            [rtl / f"{block['module']}.v"], block["module"], "lfe5u-85f", Path(tmp) / "synth",
            place=False,
        )  # fmt: skip
    synthesized = dataclasses.asdict(synth.synthesized)
    estimated = block["cost"]["ecp5"]
    edges = [e for e in design.record["edges"] if block["name"] in (e["from"], e["to"])]
    return {
        **report.summary(),
        "engine_accuracy_on_images": accuracy,
        "block": {k: v for k, v in block.items() if k != "cost"},
        "block_edges": edges,
        "block_synthesized_ecp5": synthesized,
        "block_estimate_ecp5": estimated,
        "synthesis": {"versions": synth.tool_versions, "commands": list(synth.commands)},
        "latency_cycles_design": design.latency_cycles,
        "train_seconds": round(lowered - start, 1),
        "build_seconds": round(built - lowered, 2),
        "simulate_seconds": round(simulated - built, 2),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--device", default="lfe5u-85f")
    parser.add_argument("--designs", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per tool step")
    parser.add_argument("--rerun", action="store_true", help="replace entries already there")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    recorder = ResultRecorder("network_blocks", command_line(), seed=0)
    designs = recorder.stored("designs")
    config = {
        "images": args.images,
        "steps": args.steps,
        "device": args.device,
        "models": {k: (cls.__doc__ or "").strip() for k, (cls, _) in MODELS.items()},
    }
    for name in args.designs:
        if name in designs and not args.rerun:
            continue
        entry = measure(name, args)
        entry["run"] = recorder.run_stamp()
        designs[name] = entry
        print(name, json.dumps(entry)[:400])
        recorder.save(config, {"designs": designs})


if __name__ == "__main__":
    main()
