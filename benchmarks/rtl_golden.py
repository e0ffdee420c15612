"""Golden-vector replay of the Fashion-MNIST small CNN's layers in iverilog (issue 6, item 2).

For each weight scheme (LLSQ fixed point, MSQ SP2/fixed rows, non-uniform codebooks) the FP32
checkpoint (``/work/fp32/fashion_small_cnn_seed0.pt``) is prepared, its quantizers calibrated by
a short QAT run (``--steps`` SGD steps on training images) and lowered; the integer model's
test accuracy is measured on ``--test`` images. Then :func:`hwquant.rtl.golden.export_golden`
writes every layer's engine vectors for real test images and a testbench per processing
array, and each testbench runs in iverilog: the record holds, per array, the folding, the
output values compared and the mismatches (which must be 0).

Run: ``python -m benchmarks.rtl_golden`` (``--quick``: one scheme, fewer pixels).
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import hwquant
from benchmarks.common import command_line, write_result
from hwquant.app.train import seed_everything
from hwquant.data import BatchLoader, load_dataset
from hwquant.models import build
from hwquant.qat.recipe import Recipe
from hwquant.rtl.golden import export_golden
from hwquant.rtl.simulate import run_directory
from hwquant.rtl.testbench import TESTBENCH_TOP

CHECKPOINT = Path("/work/fp32/fashion_small_cnn_seed0.pt")
SCHEMES = {
    "llsq": Recipe(scheme="llsq", bn_freeze_step=1),
    "msq": Recipe(scheme="msq", bn_freeze_step=1),
    "nonuniform": Recipe(scheme="nonuniform", scale_constraint="pow2", bn_freeze_step=1),
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, default=CHECKPOINT)
    p.add_argument("--steps", type=int, default=20, help="calibration QAT steps")
    p.add_argument("--test", type=int, default=1000, help="test images for the accuracy")
    p.add_argument("--pixels", type=int, default=64, help="output pixels each testbench replays")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="LLSQ only, 8 pixels")
    return p.parse_args(argv)


def lowered(recipe: Recipe, fp32: torch.nn.Module, train: BatchLoader, steps: int):
    """``fp32`` prepared with ``recipe``, trained ``steps`` SGD steps and lowered."""
    qat = hwquant.prepare(copy.deepcopy(fp32).train(), recipe)
    opt = torch.optim.SGD(qat.parameters(), lr=1e-3, momentum=0.9)
    batches = train.iter_from(0)
    for _ in range(steps):
        x, y = next(batches)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(qat(x), y).backward()
        opt.step()
    qat.eval()
    return hwquant.lower(qat, x[:8])


def replay(int_model: hwquant.IntModel, x: torch.Tensor, pixels: int) -> list[dict[str, Any]]:
    """Export golden vectors of ``x`` and run every testbench; one record per array."""
    records = []
    with tempfile.TemporaryDirectory(prefix="hwquant-golden-") as tmp:
        codes = int_model.quantize_input(x)
        export_golden(int_model, codes, tmp, pixels=pixels)
        for entry in json.loads((Path(tmp) / "manifest.json").read_text()):
            for bench in entry["testbenches"]:
                start = time.perf_counter()
                log = run_directory(Path(tmp) / bench["dir"], TESTBENCH_TOP)
                _, errors, checks = log.strip().splitlines()[-1].split()
                folds = -(-len(bench["rows"]) // bench["pe"])  # neuron folds per pixel
                records.append(
                    {
                        "layer": entry["layer"],
                        "lanes": bench["dir"].split(".")[-2],
                        "pe": bench["pe"],
                        "simd": bench["simd"],
                        "channels": len(bench["rows"]),
                        "checks": int(checks),
                        "values_compared": int(checks) // folds * len(bench["rows"]),
                        "mismatches": int(errors),
                        "sim_seconds": round(time.perf_counter() - start, 2),
                    }
                )
    return records


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(1)
    seed_everything(args.seed)
    splits = load_dataset("fashion-mnist")
    norm = {"mean": splits.mean, "std": splits.std}
    train = BatchLoader(splits.train, 64, shuffle=True, augment=False, seed=args.seed, **norm)
    test = BatchLoader(splits.test, args.test, shuffle=False, augment=False, **norm)
    x_test, y_test = next(test.iter_from(0))
    fp32 = build("small_cnn", num_classes=10, in_channels=1, input_size=28)
    fp32.load_state_dict(torch.load(args.checkpoint, map_location="cpu"))
    pixels = 8 if args.quick else args.pixels
    schemes = ["llsq"] if args.quick else list(SCHEMES)
    results: dict[str, Any] = {}
    for name in schemes:
        int_model = lowered(SCHEMES[name], fp32, train, args.steps)
        predictions = int_model.run(int_model.quantize_input(x_test)).argmax(1)
        arrays = replay(int_model, x_test[:1], pixels)
        results[name] = {
            "integer_test_acc": round(float((predictions == y_test).float().mean()), 4),
            "arrays": arrays,
            "values_compared": sum(a["values_compared"] for a in arrays),
            "mismatches": sum(a["mismatches"] for a in arrays),
        }
        summary = {k: v for k, v in results[name].items() if k != "arrays"}
        print(name, summary)
    config = {
        "checkpoint": str(args.checkpoint),
        "calibration_steps": args.steps,
        "test_images": args.test,
        "pixels_per_testbench": pixels,
        "replayed_image": "test image 0",
        "simulator": subprocess.run(
            ["iverilog", "-V"], capture_output=True, text=True
        ).stdout.splitlines()[0],
    }
    write_result(
        "rtl_golden", command=command_line(argv), seed=args.seed, config=config, results=results
    )
    return results


if __name__ == "__main__":
    main()
