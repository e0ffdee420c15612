"""Table-engine throughput against the integer engine and FP32 PyTorch eval (ResNet-20, CPU).

Issue target: the multiply-free table engine at least 0.25x FP32 eval, bit-exact. One batch
goes through the FP32 model in eval mode, the lowered W4A4 IntModel (integer engine) and the
lowered table model (|A| x |W| per layer); the variants alternate in rounds and the ratios
are those of the median throughputs in one run. Before timing, the table engine's output is
checked equal to the QAT model's eval output, and one image is run under the multiply-free
audit. Run from the repository root: ``python -m benchmarks.table_engine_throughput``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch

import hwquant
from benchmarks.common import (
    command_line,
    interleaved_median_seconds,
    print_results,
    write_result,
)
from benchmarks.engine_throughput import _calibrated_qat
from hwquant.models import build
from hwquant.recipe import TableOptions
from hwquant.tables import capture_indices, lower_tables, run_tables
from hwquant.tables.audit import MultiplyFreeAudit
from hwquant.tables.kernels import ROW_BUDGET

TARGET = 0.25


def _table_model(x: torch.Tensor, acts: int, weights: int):
    """A ResNet-20 table QAT model with codebooks estimated on ``x`` (one step), lowered."""
    opts = TableOptions(act_entries=acts, weight_entries=weights, act_start=0)
    qat = hwquant.prepare(build("resnet20"), hwquant.Recipe(scheme="tables", tables=opts))
    with torch.no_grad():
        qat.train()(x[:32])
    return qat.eval(), lower_tables(qat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--act-entries", type=int, default=8)
    parser.add_argument("--weight-entries", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    x = torch.randn(args.batch, 3, 32, 32)
    fp32 = build("resnet20").eval()
    int_model = hwquant.lower(_calibrated_qat(build("resnet20"), x), x)
    x_int = int_model.quantize_input(x)
    qat, table_model = _table_model(x, args.act_entries, args.weight_entries)
    x_idx = table_model.quantize_input(x)
    with torch.no_grad(), capture_indices(qat) as sink:
        qat(x)
    bit_exact = torch.equal(sink[table_model.output], run_tables(table_model, x_idx))
    with MultiplyFreeAudit() as audit:
        run_tables(table_model, x_idx[:1])
    variants: dict[str, Callable[[], object]] = {
        "fp32_eval": lambda: fp32(x),
        "int_engine": lambda: int_model.run(x_int),
        "table_engine": lambda: run_tables(table_model, x_idx),
    }
    median = interleaved_median_seconds(variants, args.rounds)
    speed = {name: args.batch / seconds for name, seconds in median.items()}
    ratio = speed["table_engine"] / speed["fp32_eval"]
    results = {f"{name}_images_per_s": value for name, value in speed.items()} | {
        "ratio_table_over_fp32": ratio,
        "ratio_table_over_int_engine": speed["table_engine"] / speed["int_engine"],
        "ratio_int_over_fp32": speed["int_engine"] / speed["fp32_eval"],
        "target_ratio": TARGET,
        "target_met": ratio >= TARGET and bit_exact,
        "bit_exact_vs_qat_eval": bit_exact,
        "audit_ops": sorted(set(audit.ops)),
        "audit_violations": audit.violations,
    }
    print_results(results)
    write_result(
        "table_engine_throughput",
        command=command_line(),
        seed=args.seed,
        results=results,
        config={
            "model": "resnet20",
            "tables": f"{args.act_entries}x{args.weight_entries} per layer, 256 input levels",
            "int_engine_recipe": "W4A4 (first/last 8-bit)",
            "batch": args.batch,
            "rounds": args.rounds,
            "threads": torch.get_num_threads(),
            "row_budget": ROW_BUDGET,
        },
        path=args.out,
    )


if __name__ == "__main__":
    main()
