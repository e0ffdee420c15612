"""Integer-engine throughput over FP32 PyTorch eval throughput on the CPU (ResNet-20).

Issue target: at least 0.5x. The same batch goes through the FP32 model in eval mode and, as
integer codes, through the lowered W4A4 IntModel (plain and 4-bit-multiplier modes); the
variants alternate in rounds and the ratio is that of the median throughputs, measured in one
run. Run from the repository root: ``python -m benchmarks.engine_throughput``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.common import (
    command_line,
    images_per_second,
    print_results,
    w4a4_resnet20,
    write_result,
)
from hwquant.models import build


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    fp32 = build("resnet20").eval()
    x = torch.randn(args.batch, 3, 32, 32)
    int_model = w4a4_resnet20(x)
    x_int = int_model.quantize_input(x)
    variants: dict[str, Callable[[], object]] = {
        "fp32_eval": lambda: fp32(x),
        "int_engine": lambda: int_model.run(x_int),
        "int_engine_4bit_multipliers": lambda: int_model.run(x_int, four_bit=True),
    }
    throughput = images_per_second(variants, args.batch, args.rounds)
    results = {f"{name}_images_per_s": value for name, value in throughput.items()} | {
        "ratio_int_over_fp32": throughput["int_engine"] / throughput["fp32_eval"],
        "ratio_4bit_over_fp32": throughput["int_engine_4bit_multipliers"] / throughput["fp32_eval"],
        "target_ratio": 0.5,
    }
    results["target_met"] = results["ratio_int_over_fp32"] >= 0.5
    print_results(results)
    write_result(
        "engine_throughput",
        command=command_line(),
        seed=args.seed,
        results=results,
        config={
            "model": "resnet20",
            "recipe": "W4A4 (first/last 8-bit)",
            "batch": args.batch,
            "rounds": args.rounds,
            "threads": torch.get_num_threads(),
        },
        path=args.out,
    )


if __name__ == "__main__":
    main()
