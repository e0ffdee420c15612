"""Fashion-MNIST benchmark: non-uniform k-quantile codebooks (Liss et al. 2018 / UNIQ) against
uniform LLSQ at the same bit-widths, both lowered to bit-exact integer models.

Issue targets: W4A8 and W3A8 within 0.5 points of FP32; at 2-bit weights higher accuracy than
uniform LLSQ at the same bits, or a measured explanation.

Every row starts from the same FP32 ``small_cnn`` weights (``--init-fp32``), QAT-trains the
inner layers' weights at 2, 3 or 4 bits with activations at 4 or 8 bits, lowers to an
:class:`hwquant.IntModel` and reports on the full test set (the row runner, training recipe and
evaluation are ``benchmarks/fashion_mnist_llsq.py``'s ``quantize_row``). The first and last
layers keep the default 8-bit LLSQ weights (and the activation feeding the last layer 8 bits) in
both schemes. Non-uniform rows use UNIQ's gradual schedule (one block per inner layer,
``--steps-per-stage`` noisy steps each, then a hard-quantized fine-tune), codebooks on an 8-bit
grid and power-of-two scales everywhere; the LLSQ rows use LLSQ's defaults (free, per-channel
weight scales).

Run from the repository root::

    python -m benchmarks.fashion_mnist_nonuniform --init-fp32 /work/fp32/fashion_small_cnn_seed0.pt
    python -m benchmarks.fashion_mnist_nonuniform --quick    # smoke run, trains its own FP32
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hwquant
from benchmarks import fashion_mnist_llsq as llsq_bench
from hwquant.hw.bops import model_costs
from hwquant.ir.intmodel import IntModel
from hwquant.qat.recipe import NonUniformOptions

NAME = "fashion_mnist_nonuniform"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / f"{NAME}.json"
TARGET_GAP_POINTS = 0.5


@dataclasses.dataclass(frozen=True)
class Row:
    """One configuration: scheme, weight bits of the inner layers, activation bits."""

    scheme: str
    weight_bits: int
    act_bits: int
    options: NonUniformOptions = dataclasses.field(default_factory=NonUniformOptions)
    all_layers: bool = False  # first and last layer stay at the default 8 bits

    @property
    def name(self) -> str:
        return f"{self.scheme}_W{self.weight_bits}A{self.act_bits}"

    def recipe(self, bn_freeze_step: int | None) -> hwquant.Recipe:
        nonuniform = self.scheme == "nonuniform"
        return hwquant.Recipe(
            scheme=self.scheme,
            weight_bits=self.weight_bits,
            act_bits=self.act_bits,
            input_bits=8,
            bn_freeze_step=bn_freeze_step,
            scale_constraint="pow2" if nonuniform else "free",
            nonuniform=self.options,
        )


# (weight bits, act bits) in the order they run: the targets' rows first
BITS = ((4, 8), (3, 8), (2, 8), (2, 4), (3, 4), (4, 4))


def rows(options: NonUniformOptions) -> list[Row]:
    """A non-uniform and an LLSQ row for every (weight, activation) bit pair."""
    return [Row(scheme, w, a, options) for w, a in BITS for scheme in ("nonuniform", "llsq")]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--init-fp32", type=Path, default=None, help="FP32 small_cnn state_dict")
    p.add_argument("--epochs-qat", type=int, default=2, help="QAT epochs per row")
    p.add_argument("--steps-per-stage", type=int, default=200, help="noisy steps per block")
    p.add_argument("--grid-bits", type=int, default=8, help="B: codebook integer grid bits")
    p.add_argument("--cdf", choices=("gaussian", "empirical"), default="gaussian")
    p.add_argument("--rows", default="", help="comma-separated row names (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--quick", action="store_true", help="tiny subset, one epoch: smoke run")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="result JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.steps_per_stage = min(args.steps_per_stage, 4)
    args.options = NonUniformOptions(
        grid_bits=args.grid_bits, cdf=args.cdf, steps_per_stage=args.steps_per_stage
    )
    names = [r.name for r in rows(args.options)]
    args.selected = llsq_bench.selected_rows(p, args.rows, names)
    args.base = llsq_bench.shared_settings(args.epochs_qat, args.seed, args.quick)
    return args


def costs(int_model: IntModel) -> dict[str, Any]:
    """The cost figures of :func:`hwquant.hw.bops.model_costs` on one 28x28 input (added to
    ``size_record``'s figures by ``quantize_row``)."""
    example = int_model.quantize_input(torch.zeros(1, 1, 28, 28))
    return {"costs": model_costs(int_model, example)}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    base = args.base
    recorder, splits, loaders_ = llsq_bench.start(NAME, argv, args, base)
    config = {
        **llsq_bench.comparison_config(splits, args, base),
        "nonuniform_options": dataclasses.asdict(args.options),
        "init_fp32": None if args.init_fp32 is None else str(args.init_fp32),
        "notes": [
            "Inner layers (conv2, conv3) take the row's weight bits; the first conv and the "
            "last linear layer keep 8-bit LLSQ weights and the activation feeding the last "
            "layer is 8-bit, in both schemes. The input quantizer is 8-bit.",
            "Non-uniform rows: k = 2^b Gaussian k-quantile levels per layer on an 8-bit "
            "integer grid with one power-of-two scale; every scale (weights of the first/last "
            "layer, activations) is a power of two. UNIQ gradual schedule: block 1 (conv2) "
            "noisy for steps_per_stage steps, then block 2 (conv3), then all hard-quantized.",
            "LLSQ rows: the LLSQ scheme's defaults (free scales, per-channel weight scales).",
            "Accuracies are of the final weights on the full test set (no best-epoch "
            "selection); the training recipe is fashion_mnist_llsq.py's, unchanged.",
        ],
    }
    results = llsq_bench.compare_rows(
        rows(args.options),
        args,
        base,
        (splits, loaders_),
        costs,
        summary,
        functools.partial(recorder.save, config),
    )
    print(f"wrote {args.out} in {results['total_wall_seconds']:.0f} s", file=sys.stderr)
    return results


def summary(records: dict[str, Any], fp32_acc: float) -> dict[str, Any]:
    """Integer accuracy per bit pair for both schemes, and the targets."""
    table = {}
    for w, a in BITS:
        pair = {s: records.get(f"{s}_W{w}A{a}") for s in ("nonuniform", "llsq")}
        table[f"W{w}A{a}"] = {
            s: None
            if r is None
            else {"integer_acc": r["integer_acc"], "exact": r["verify"]["exact"]}
            for s, r in pair.items()
        }
    targets = {}
    for w in (4, 3):
        record = records.get(f"nonuniform_W{w}A8")
        if record is not None:
            gap = record["gap_to_fp32_points"]
            targets[f"W{w}A8_within_{TARGET_GAP_POINTS}_of_fp32"] = {
                "gap_points": gap,
                "met": gap <= TARGET_GAP_POINTS,
            }
    for a in (8, 4):
        nu, ll = records.get(f"nonuniform_W2A{a}"), records.get(f"llsq_W2A{a}")
        if nu is not None and ll is not None:
            targets[f"W2A{a}_nonuniform_above_llsq"] = {
                "difference_points": round(100 * (nu["integer_acc"] - ll["integer_acc"]), 2),
                "met": nu["integer_acc"] > ll["integer_acc"],
            }
    return {"fp32_test_acc": fp32_acc, "integer_acc": table, "targets": targets}


if __name__ == "__main__":
    main()
