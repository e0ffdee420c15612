"""QAT step time over FP32 step time, same model, batch and device, measured in one run.

Issue target: at most 1.2x on the CPU (ResNet-20, batch 128) and 1.5x on a GPU (ResNet-18,
batch 256, bf16 autocast). FP32 and QAT steps alternate in rounds so that both see the same
machine load; the ratio is that of the medians.
Run from the repository root: ``python -m benchmarks.qat_step_time``.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

import hwquant
from benchmarks.common import command_line, write_result
from hwquant.app.bench.steptime import timed_step
from hwquant.models import build


def measure(
    model_name: str,
    batch: int,
    device: str,
    rounds: int,
    steps: int,
    amp: bool,
    recipe: hwquant.Recipe,
    seed: int,
) -> dict[str, float]:
    """Median step times of the FP32 and QAT twins of one model, alternating rounds."""
    torch.manual_seed(seed)
    fp32 = build(model_name).to(device)
    qat = hwquant.prepare(fp32, recipe).to(device)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    runs = {"fp32": timed_step(fp32, x, y, amp), "qat": timed_step(qat, x, y, amp)}
    for step in runs.values():  # warm-up: allocator, kernels, quantizer initialisation
        for _ in range(3):
            step()
    times: dict[str, list[float]] = {"fp32": [], "qat": []}
    for _ in range(rounds):
        for name, step in runs.items():
            times[name].extend(step() for _ in range(steps))
    fp32_ms = statistics.median(times["fp32"]) * 1e3
    qat_ms = statistics.median(times["qat"]) * 1e3
    return {
        "fp32_step_ms": fp32_ms,
        "qat_step_ms": qat_ms,
        "ratio": qat_ms / fp32_ms,
        "samples_per_variant": len(times["fp32"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=3, help="steps per variant per round")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    recipe = hwquant.Recipe(weight_bits=4, act_bits=4, bn_freeze_step=None)
    frozen = hwquant.Recipe(weight_bits=4, act_bits=4, bn_freeze_step=0)
    results = {}
    cases = [("cpu", "resnet20", 128, False, 1.2)]
    if torch.cuda.is_available():
        cases.append(("cuda", "resnet18", 256, True, 1.5))
    for device, model_name, batch, amp, target in cases:
        for phase, rec in (("bn_batch_stats", recipe), ("bn_frozen", frozen)):
            row = measure(model_name, batch, device, args.rounds, args.steps, amp, rec, args.seed)
            row.update(
                model=model_name,
                batch=batch,
                amp_bf16=amp,
                target_ratio=target,
                target_met=row["ratio"] <= target,
            )
            results[f"{device}/{model_name}/{phase}"] = row
            print(
                f"{device} {model_name} b{batch} {phase}: FP32 {row['fp32_step_ms']:.1f} ms, "
                f"QAT {row['qat_step_ms']:.1f} ms, ratio {row['ratio']:.2f} (target {target})"
            )
    write_result(
        "qat_step_time",
        command=command_line(),
        seed=args.seed,
        results=results,
        config={
            "recipe_w4a4": recipe.to_dict(),
            "rounds": args.rounds,
            "steps": args.steps,
            "threads": torch.get_num_threads(),
        },
        path=args.out,
    )


if __name__ == "__main__":
    main()
