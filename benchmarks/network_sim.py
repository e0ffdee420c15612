"""Whole-network designs simulated on real digits test images (issue 16, deliverables 1-2).

For each weight scheme (LLSQ, MSQ, non-uniform) the 8x8 small CNN (half width: conv 16, conv
32, max pool, flatten, linear 10) is trained ``--steps`` QAT steps on the digits training split
and lowered; ``hwquant.rtl.network.build_design`` builds it for the LFE5U-85F with the folding
chosen automatically, and Verilator runs the design on the first ``--images`` test images.
Recorded per scheme: mismatching output fields (counted from the testbench's per-output lines
against the integer engine), the measured latency and intervals next to design.json's
prediction, the folding, the accumulator widths, and the integer model's accuracy on those
images.

Run: ``python -m benchmarks.network_sim`` (writes benchmarks/results/network_sim.json).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

import hwquant
from benchmarks.common import command_line, write_result
from hwquant.app.train import seed_everything
from hwquant.data import BatchLoader, load_dataset
from hwquant.models import build
from hwquant.qat.recipe import Recipe
from hwquant.rtl.network import build_design, simulate_design

SCHEMES = {
    "llsq": Recipe(scheme="llsq", bn_freeze_step=20),
    "msq": Recipe(scheme="msq", bn_freeze_step=20),
    "nonuniform": Recipe(scheme="nonuniform", bn_freeze_step=20, scale_constraint="pow2"),
}


def trained(scheme: str, steps: int, splits) -> hwquant.IntModel:
    """The half-width 8x8 small CNN after ``steps`` QAT steps on digits, lowered."""
    model = build("small_cnn", in_channels=1, input_size=8, width=0.5)
    qat = hwquant.prepare(model, SCHEMES[scheme])
    loader = BatchLoader(
        splits.train, 64, mean=splits.mean, std=splits.std, shuffle=True, augment=False
    )
    opt = torch.optim.Adam(qat.parameters(), lr=2e-3)
    qat.train()
    done = 0
    while done < steps:
        for x, y in loader:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(qat(x), y).backward()
            opt.step()
            done += 1
            if done == steps:
                break
    qat.eval()
    x, _ = next(iter(loader))
    return hwquant.lower(qat, x)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--device", default="lfe5u-85f")
    parser.add_argument("--schemes", nargs="*", default=list(SCHEMES))
    args = parser.parse_args(argv)
    seed_everything(0)
    torch.set_num_threads(1)
    splits = load_dataset("digits", progress=False)
    test = BatchLoader(
        splits.test, args.images, mean=splits.mean, std=splits.std, shuffle=False, augment=False
    )
    x_test, y_test = next(iter(test))
    results = {}
    for scheme in args.schemes:
        model = trained(scheme, args.steps, splits)
        codes = model.quantize_input(x_test)
        accuracy = float((model.run(codes).argmax(1) == y_test).double().mean())
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            design = build_design(model, args.device, Path(tmp) / "design", input_size=8)
            built = time.perf_counter()
            report = simulate_design(design.directory, codes, model=model)
            simulated = time.perf_counter()
        blocks = design.record["blocks"]
        results[scheme] = {
            **report.summary(),
            "integer_accuracy_on_images": accuracy,
            "folding": {b["name"]: [b["pe"], b["simd"]] for b in blocks if "pe" in b},
            "acc_bits": {b["name"]: b["acc_bits"] for b in blocks if "acc_bits" in b},
            "lanes": {b["name"]: b["lanes"] for b in blocks if "lanes" in b},
            "build_seconds": round(built - start, 2),
            "simulate_seconds": round(simulated - built, 2),
        }
        print(scheme, results[scheme])
    write_result(
        "network_sim",
        command=command_line(),
        seed=0,
        config={
            "images": args.images,
            "steps": args.steps,
            "device": args.device,
            "model": "small_cnn width 0.5, 8x8 digits",
        },
        results=results,
    )


if __name__ == "__main__":
    main()
