"""What prepare()'s fidelity check costs: prepare with and without it, per zoo model, one run.

The two variants alternate in rounds (:func:`benchmarks.common.interleaved_median_seconds`) so
that a shared machine's load falls on both alike; the figure is the ratio of the medians.
Run from the repository root: ``python -m benchmarks.prepare_fidelity_cost``.
"""

from __future__ import annotations

import argparse

import torch

import hwquant
from benchmarks.common import command_line, interleaved_median_seconds, print_results, write_result
from hwquant.models import build

MODELS = ("small_cnn", "resnet20", "vgg_small", "mobilenetv2", "resnet18")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results: dict[str, float] = {}
    for name in MODELS:
        torch.manual_seed(args.seed)
        model = build(name).eval()
        times = interleaved_median_seconds(
            {
                "without": lambda m=model: hwquant.prepare(m, check_fidelity=False),
                "with": lambda m=model: hwquant.prepare(m),
            },
            args.rounds,
        )
        results[f"{name}_prepare_ms"] = times["without"] * 1e3
        results[f"{name}_prepare_with_check_ms"] = times["with"] * 1e3
        results[f"{name}_ratio"] = times["with"] / times["without"]
    print_results(results)
    path = write_result(
        "prepare_fidelity_cost",
        command=command_line(),
        seed=args.seed,
        config={"models": list(MODELS), "rounds": args.rounds, "threads": args.threads},
        results=results,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
