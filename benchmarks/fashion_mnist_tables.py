"""Accuracy against table size: table-based units on Fashion-MNIST small_cnn (methods.md §3).

Every row starts from the same FP32 checkpoint, is prepared with ``Recipe(scheme="tables")``
at a split ``|A| x |W|`` of its table entries (40 and 320, several splits each), trained by QAT
and evaluated twice on the full test set: the QAT model in eval mode and the multiply-free
table engine on the lowered model (saved and loaded again). The two must agree exactly: the
benchmark checks that the integer outputs are equal on every test image. Reported: both
accuracies, the gap to FP32, and the compactness measures. ``--freeze-epochs F`` keeps the
codebooks fixed for the last F epochs (``TableOptions.freeze_step``).

    python -m benchmarks.fashion_mnist_tables --init-fp32 /work/fp32/fashion_small_cnn_seed0.pt \
        --epochs-qat 1 --freeze-epochs 0.25 --splits 16x20
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run as a script: make `benchmarks.common` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hwquant
from benchmarks.common import command_line, write_result
from benchmarks.fashion_mnist_llsq import load_splits, loaders, qat_config, train
from hwquant.app.bench.evaluate import fp32_accuracy
from hwquant.app.train import seed_everything
from hwquant.models import build
from hwquant.qat.recipe import TableOptions
from hwquant.schemes.tables import (
    capture_indices,
    compactness,
    load_tables,
    lower_tables,
    run_tables,
)

NAME = "fashion_mnist_tables"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / f"{NAME}.json"
SPLITS = {40: ((8, 5), (5, 8), (4, 10)), 320: ((16, 20), (20, 16), (32, 10))}
TARGET_GAP = {40: 1.6, 320: 0.3}  # points below FP32 (the paper's MobileNet figures)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--init-fp32", type=Path, required=True, help="FP32 small_cnn state_dict")
    p.add_argument("--epochs-qat", type=int, default=1, help="QAT epochs per row")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--quick", action="store_true", help="tiny subset: smoke run")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--data-root", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--qat-lr", type=float, default=0.005)
    p.add_argument("--weight-family", default="kmeans")
    p.add_argument("--act-family", default="empirical")
    p.add_argument("--reestimate-every", type=int, default=50)
    p.add_argument("--act-start", type=int, default=100)
    p.add_argument(
        "--freeze-epochs",
        type=float,
        default=0.0,
        help="final QAT epochs with frozen codebooks (TableOptions.freeze_step); 0: none",
    )
    p.add_argument("--splits", default="all", help="comma list like 8x5,16x20 (default: all)")
    args = p.parse_args(argv)
    # the settings fashion_mnist_llsq's loaders/qat_config read
    args.augment, args.qat_optimizer, args.qat_schedule = False, "sgd", "cosine"
    args.qat_weight_decay, args.qat_warmup_epochs = 5e-4, 0.0
    if args.quick:
        args.epochs_qat = 1
    return args


def _rows(args: argparse.Namespace) -> list[tuple[int, int, int]]:
    # interleaved (40, 320, 40, ...) so that a partial run already covers both sizes
    small, large = ([(total, a, w) for a, w in SPLITS[total]] for total in (40, 320))
    rows = [row for pair in zip(small, large, strict=True) for row in pair]
    if args.splits != "all":
        wanted = set(args.splits.split(","))
        rows = [r for r in rows if f"{r[1]}x{r[2]}" in wanted]
    return rows


def _timed_outputs(run, test) -> tuple[list[torch.Tensor], list[torch.Tensor], float]:
    """``run(x)`` on every test batch: the outputs, the labels and the seconds it took."""
    outputs, labels, seconds = [], [], 0.0
    for x, y in test.iter_from(0):
        start = time.perf_counter()
        outputs.append(run(x))
        seconds += time.perf_counter() - start
        labels.append(y)
    return outputs, labels, seconds


@torch.no_grad()
def evaluate(qat: torch.nn.Module, table_model, test) -> dict[str, Any]:
    """QAT-eval and engine accuracy over the test set, and whether their outputs are equal.

    One pass each (QAT eval first, then its compiled lookup plans are dropped), so that the two
    engines' plans are never in memory together: at 320 entries a plan takes gigabytes."""
    qat.eval()

    def qat_run(x: torch.Tensor) -> torch.Tensor:
        with capture_indices(qat) as sink:
            qat(x)
        return sink[table_model.output]

    qat_outs, labels, qat_seconds = _timed_outputs(qat_run, test)
    qat.eval()  # train(False) drops the layers' compiled plans
    engine_outs, _, engine_seconds = _timed_outputs(
        lambda x: run_tables(table_model, table_model.quantize_input(x)), test
    )
    qat_out, engine_out, y = (torch.cat(t) for t in (qat_outs, engine_outs, labels))
    mismatched = int((qat_out != engine_out).any(1).sum())
    n = y.numel()
    return {
        "qat_eval_acc": int((qat_out.argmax(1) == y).sum()) / n,
        "engine_acc": int((engine_out.argmax(1) == y).sum()) / n,
        "images": n,
        "images_with_unequal_outputs": mismatched,
        "bit_exact": mismatched == 0,
        "qat_eval_seconds": round(qat_seconds, 1),
        "engine_seconds": round(engine_seconds, 1),
    }


def freeze_step(args: argparse.Namespace, steps_per_epoch: int) -> int | None:
    """The step from which the codebooks stay fixed: the last ``--freeze-epochs`` epochs."""
    if args.freeze_epochs <= 0:
        return None
    return max(1, round((args.epochs_qat - args.freeze_epochs) * steps_per_epoch))


def run_row(args, splits, fp32_state, total: int, acts: int, weights: int, fp32: float):
    train_loader, monitor, test = loaders(splits, args)
    opts = TableOptions(
        act_entries=acts,
        weight_entries=weights,
        weight_family=args.weight_family,
        act_family=args.act_family,
        reestimate_every=args.reestimate_every,
        act_start=args.act_start,
        max_entries=total,
        freeze_step=freeze_step(args, len(train_loader)),
    )
    seed_everything(args.seed)
    model = build("small_cnn", num_classes=10, in_channels=1, input_size=28)
    model.load_state_dict(fp32_state)
    qat = hwquant.prepare(model, hwquant.Recipe(scheme="tables", tables=opts))
    training = train(qat, qat_config(args), train_loader, monitor)
    with tempfile.TemporaryDirectory() as tmp:
        table_model = load_tables(lower_tables(qat).save(Path(tmp) / "tables.npz"))
    result = evaluate(qat, table_model, test)
    measures = compactness(table_model)
    gap = round(100 * (fp32 - result["engine_acc"]), 2)
    print(f"{acts}x{weights}: engine {result['engine_acc']:.4f} (gap {gap} points)", flush=True)
    return {
        "entries": total,
        "act_entries": acts,
        "weight_entries": weights,
        "freeze_step": opts.freeze_step,
        **result,
        "gap_points": gap,
        "target_gap_points": TARGET_GAP[total],
        "meets_target": gap <= TARGET_GAP[total],
        "compactness": {k: v for k, v in measures.items() if k != "layers"},
        "layers": measures["layers"],
        "training": training,
    }


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    splits = load_splits(args)
    fp32_state = torch.load(args.init_fp32, map_location="cpu", weights_only=True)
    model = build("small_cnn", num_classes=10, in_channels=1, input_size=28)
    model.load_state_dict(fp32_state)
    fp32 = fp32_accuracy(model, loaders(splits, args)[2])
    print(f"FP32 test accuracy {fp32:.4f}", flush=True)
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    for total, acts, weights in _rows(args):
        rows.append(run_row(args, splits, fp32_state, total, acts, weights, fp32))
        results = {
            "fp32_acc": fp32,
            "rows": rows,
            "complete": len(rows) == len(_rows(args)),
            "total_wall_seconds": round(time.perf_counter() - start, 1),
        }
        write_result(
            NAME,
            command=command_line(),
            seed=args.seed,
            config=config,
            results=results,
            path=args.out,
        )


if __name__ == "__main__":
    main()
