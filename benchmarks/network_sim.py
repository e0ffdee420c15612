"""Whole-network designs simulated on real test images (issue 16, deliverables 1-2).

For each data set and scheme (LLSQ, MSQ, non-uniform: IntModels; tables: a TableModel) the
small CNN is trained ``--steps`` QAT steps from scratch and lowered, built for ``--device``
with the folding chosen automatically (``hwquant.rtl.network.build_design``,
``hwquant.schemes.tables.network.build_table_design``), and Verilator runs the design on the
first ``--images`` test images:

* ``digits``: the 8x8 small CNN at half width (conv 16, conv 32, max pool, flatten, linear 10);
* ``mnist5k``: the model ``make demo`` trains, the 28x28 small CNN at full width (conv 32,
  conv 32, max pool, conv 64, max pool, flatten, linear 10), W4A4 with 8-bit first and last
  layers (the tables scheme: 16-entry activation and weight codebooks, 256 input levels).

Recorded per design: mismatching output fields (counted from the testbench's per-output lines
against the integer or table engine), the measured latency and intervals next to design.json's
prediction, the folding, the accumulator widths, the engine's accuracy on those images, the
build and simulation times, and the commit and date of the run. Entries already in the result
file are kept (a long run resumes; ``--rerun`` replaces them).

Run: ``python -m benchmarks.network_sim [--datasets digits mnist5k]`` (writes
benchmarks/results/network_sim.json).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

import hwquant
from benchmarks.common import (
    ResultRecorder,
    command_line,
    first_test_images,
    train_and_lower,
)
from hwquant.app.train import seed_everything
from hwquant.data import load_dataset
from hwquant.models import build
from hwquant.qat.recipe import Recipe, TableOptions
from hwquant.rtl.network import build_design, simulate_design
from hwquant.schemes.tables import TableModel
from hwquant.schemes.tables.network import TableCodeModel, build_table_design

DATASETS = {"digits": (8, 0.5), "mnist5k": (28, 1.0)}
"""Data set -> (input size, small CNN width)."""


def recipe(scheme: str, steps: int) -> Recipe:
    """W4A4 (first and last layers 8-bit) with BN frozen after 20 steps; the tables scheme
    with 16 x 16 tables, activations quantized from a third of the steps on."""
    if scheme == "tables":
        tables = TableOptions(
            act_entries=16,
            weight_entries=16,
            act_start=steps // 3,
            reestimate_every=max(1, steps // 10),
            freeze_step=steps - steps // 5,
        )
        return Recipe(scheme="tables", bn_freeze_step=20, tables=tables)
    extra = {"scale_constraint": "pow2"} if scheme == "nonuniform" else {}
    return Recipe(scheme=scheme, bn_freeze_step=20, **extra)


SCHEMES = ("llsq", "msq", "nonuniform", "tables")


def trained(dataset: str, scheme: str, steps: int, splits) -> hwquant.IntModel | TableModel:
    """The data set's small CNN after ``steps`` QAT steps, lowered."""
    size, width = DATASETS[dataset]
    model = build("small_cnn", in_channels=1, input_size=size, width=width)
    return train_and_lower(hwquant.prepare(model, recipe(scheme, steps)), splits, steps)


def measure(dataset: str, scheme: str, args: argparse.Namespace) -> dict:
    """Train, build and simulate one design; its result entry."""
    seed_everything(0)
    splits = load_dataset(dataset, progress=False)
    x_test, y_test = first_test_images(splits, args.images)
    start = time.perf_counter()
    model = trained(dataset, scheme, args.steps, splits)
    runner = TableCodeModel(model) if isinstance(model, TableModel) else model
    codes = runner.quantize_input(x_test)
    accuracy = float((runner.run(codes).argmax(1) == y_test).double().mean())
    size = DATASETS[dataset][0]
    build_fn = build_table_design if isinstance(model, TableModel) else build_design
    with tempfile.TemporaryDirectory() as tmp:
        lowered = time.perf_counter()
        design = build_fn(model, args.device, Path(tmp) / "design", input_size=size)
        built = time.perf_counter()
        report = simulate_design(design.directory, codes, model=runner, timeout=args.timeout)
        simulated = time.perf_counter()
    blocks = design.record["blocks"]
    return {
        **report.summary(),
        "engine_accuracy_on_images": accuracy,
        "folding": {b["name"]: [b["pe"], b["simd"]] for b in blocks if "pe" in b},
        "acc_bits": {b["name"]: b["acc_bits"] for b in blocks if "acc_bits" in b},
        "lanes": {b["name"]: sorted(set(b["lanes"])) for b in blocks if "lanes" in b},
        "products": sum(b.get("products", 0) for b in blocks),
        "train_seconds": round(lowered - start, 1),
        "build_seconds": round(built - lowered, 2),
        "simulate_seconds": round(simulated - built, 2),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--device", default="lfe5u-85f")
    parser.add_argument("--datasets", nargs="*", default=["digits"], choices=list(DATASETS))
    parser.add_argument("--schemes", nargs="*", default=list(SCHEMES), choices=SCHEMES)
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per Verilator step")
    parser.add_argument("--rerun", action="store_true", help="replace entries already there")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    recorder = ResultRecorder("network_sim", command_line(), seed=0)
    designs = recorder.stored("designs")
    config = {
        "images": args.images,
        "steps": args.steps,
        "device": args.device,
        "models": {
            "digits": "small_cnn width 0.5, 8x8 digits",
            "mnist5k": "small_cnn width 1, 28x28 MNIST-5k (the model of make demo)",
        },
    }
    for dataset in args.datasets:
        for scheme in args.schemes:
            key = f"{dataset}/{scheme}"
            if key in designs and not args.rerun:
                continue
            entry = measure(dataset, scheme, args)
            entry["run"] = {**recorder.run_stamp(), "config": config}
            designs[key] = entry
            print(key, entry)
            recorder.save(config, {"designs": designs})


if __name__ == "__main__":
    main()
