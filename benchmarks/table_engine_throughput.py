"""Table-engine throughput against the integer engine and FP32 PyTorch eval (ResNet-20, CPU).

Issue target: the multiply-free table engine at least 0.25x FP32 eval, bit-exact. One batch
goes through the FP32 model in eval mode, the lowered W4A4 IntModel (integer engine) and the
lowered table model (|A| x |W| per layer) with the native kernel and with the PyTorch kernel
(the reference); the variants alternate in rounds at equal torch/OpenMP thread counts, and the
ratios are those of the median throughputs in one run. Before timing, the native engine's
output is checked equal to the PyTorch kernel's and to the QAT model's eval output, and one
image is run under the multiply-free audit with each kernel. Run from the repository root:
``python -m benchmarks.table_engine_throughput``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

import hwquant
from benchmarks.common import (
    command_line,
    images_per_second,
    interleaved_median_seconds,
    print_results,
    w4a4_resnet20,
    write_result,
)
from hwquant.models import build
from hwquant.qat.recipe import TableOptions
from hwquant.schemes.tables import capture_indices, engine, lower_tables, native, run_tables
from hwquant.schemes.tables.audit import MultiplyFreeAudit
from hwquant.schemes.tables.engine import resolve_kernel
from hwquant.schemes.tables.kernels import ROW_BUDGET
from hwquant.schemes.tables.model import LookupAddNode, UnitNode
from hwquant.schemes.tables.native import FLAGS, GROUP_BUDGET

TARGET = 0.25


def _table_model(x: torch.Tensor, acts: int, weights: int):
    """A ResNet-20 table QAT model with codebooks estimated on ``x`` (one step), lowered."""
    opts = TableOptions(act_entries=acts, weight_entries=weights, act_start=0)
    qat = hwquant.prepare(build("resnet20"), hwquant.Recipe(scheme="tables", tables=opts))
    with torch.no_grad():
        qat.train()(x[:32])
    return qat.eval(), lower_tables(qat)


def _audit(table_model, x_idx: torch.Tensor, engine: str) -> dict[str, list[str]]:
    """Ops and violations of one image through the engine (its compilation included)."""
    object.__setattr__(table_model, "_compiled", None)
    with MultiplyFreeAudit() as audit:
        run_tables(table_model, x_idx[:1], engine=engine)
    return {"ops": sorted(set(audit.ops)), "violations": audit.violations}


def _timings(variants: dict[str, Callable[[], object]], batch: int, rounds: int) -> dict:
    """Images/s of every variant (medians of alternating rounds) and the ratios."""
    speed = images_per_second(variants, batch, rounds)
    return {f"{name}_images_per_s": value for name, value in speed.items()} | {
        "ratio_table_native_over_fp32": speed["table_native"] / speed["fp32_eval"],
        "ratio_table_torch_over_fp32": speed["table_torch"] / speed["fp32_eval"],
        "ratio_table_native_over_int_engine": speed["table_native"] / speed["int_engine"],
        "ratio_int_over_fp32": speed["int_engine"] / speed["fp32_eval"],
        "load_average": list(os.getloadavg()),
    }


def _median_ms(fn: Callable[[], object], rounds: int) -> float:
    """Median wall time of ``fn`` in milliseconds (after one warm-up run)."""
    return 1000 * interleaved_median_seconds({"fn": fn}, rounds)["fn"]


def _group_profile(table_model, x_idx: torch.Tensor, rounds: int) -> dict:
    """Milliseconds per batch of the inner units (all but the first, whose 256-level input
    allows only g = 1), summed by output width O, with the native kernel at g = 1, 2, 3 and at
    the groups ``native.choose_group`` picks: the measurements behind that rule."""
    values = run_tables(table_model, x_idx, trace=True, engine="native")
    by_width: dict[int, list[UnitNode]] = {}
    for node in table_model.units()[1:]:
        by_width.setdefault(node.weight_index.shape[0], []).append(node)

    def run_units(compiled) -> None:
        for node, unit in compiled:
            engine.run_unit(unit, values[node.inputs[0]])

    profile: dict[str, dict[str, float]] = {}
    for label, group in (("g1", 1), ("g2", 2), ("g3", 3), ("chosen", None)):
        profile[f"{label}_ms"] = {
            f"O{width}": _median_ms(
                partial(run_units, [(n, engine.compile_unit(n, group, "native")) for n in nodes]),
                rounds,
            )
            for width, nodes in by_width.items()
        }
    profile["chosen_groups"] = {
        f"O{width}": native.choose_group(n[0].table.shape[0] + 1, n[0].weight_index[0].size, width)
        for width, n in by_width.items()
    }
    return profile


def _add_profile(table_model, x_idx: torch.Tensor, rounds: int) -> dict[str, float]:
    """Milliseconds per batch of the residual adds with each kernel."""
    values = run_tables(table_model, x_idx, trace=True, engine="native")
    adds = [n for n in table_model.nodes if isinstance(n, LookupAddNode)]

    def run_adds(compiled) -> None:
        for node, add in compiled:
            engine.run_add(add, *(values[name] for name in node.inputs))

    return {
        f"adds_{kernel}_ms": _median_ms(
            partial(run_adds, [(n, engine.compile_add(n, kernel)) for n in adds]), rounds
        )
        for kernel in ("native", "torch")
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--act-entries", type=int, default=8)
    parser.add_argument("--weight-entries", type=int, default=5)
    parser.add_argument("--threads", type=str, default="1,2", help="comma-separated counts")
    parser.add_argument(
        "--profile-tables", default="8x5,4x10,16x20", help="|A|x|W| sizes of the group profile"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    torch.set_num_threads(threads[0])
    torch.manual_seed(args.seed)
    x = torch.randn(args.batch, 3, 32, 32)
    fp32 = build("resnet20").eval()
    int_model = w4a4_resnet20(x)
    x_int = int_model.quantize_input(x)
    qat, table_model = _table_model(x, args.act_entries, args.weight_entries)
    x_idx = table_model.quantize_input(x)
    native_out = run_tables(table_model, x_idx, engine="native")
    with torch.no_grad(), capture_indices(qat) as sink:
        qat(x)
    bit_exact = {
        "native_vs_qat_eval": torch.equal(sink[table_model.output], native_out),
        "native_vs_torch_kernel": torch.equal(
            run_tables(table_model, x_idx, engine="torch"), native_out
        ),
    }
    audits = {engine: _audit(table_model, x_idx, engine) for engine in ("native", "torch")}
    variants: dict[str, Callable[[], object]] = {
        "fp32_eval": lambda: fp32(x),
        "int_engine": lambda: int_model.run(x_int),
        "table_native": lambda: run_tables(table_model, x_idx, engine="native"),
        "table_torch": lambda: run_tables(table_model, x_idx, engine="torch"),
    }
    per_threads = {}
    for count in threads:
        torch.set_num_threads(count)
        per_threads[str(count)] = _timings(variants, args.batch, args.rounds)
    torch.set_num_threads(threads[0])
    groups = {}
    with torch.inference_mode():
        for size in args.profile_tables.split(","):
            _, sized = _table_model(x, *(int(n) for n in size.split("x")))
            groups[size] = _group_profile(sized, sized.quantize_input(x), args.rounds)
        profile = _add_profile(table_model, x_idx, args.rounds) | {"groups": groups}
    worst = min(r["ratio_table_native_over_fp32"] for r in per_threads.values())
    clean = all(not a["violations"] for a in audits.values())
    results = {
        "threads": per_threads,
        "min_ratio_table_native_over_fp32": worst,
        "target_ratio": TARGET,
        "target_met": worst >= TARGET and all(bit_exact.values()) and clean,
        "bit_exact": bit_exact,
        "auto_kernel": resolve_kernel("auto"),
        "audit": audits,
        f"native_profile_{threads[0]}_thread": profile,
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
            "threads": threads,
            "row_budget": ROW_BUDGET,
            "native_group_budget": GROUP_BUDGET,
            "native_flags": " ".join(FLAGS),
        },
        path=args.out,
    )


if __name__ == "__main__":
    main()
