"""Fashion-MNIST: accuracy against the accumulator width P of accumulator-aware LLSQ (issue 20).

For W4A4 and W8A8 with *every* weight layer and activation quantized (first and last layers
included, input 8-bit), ``small_cnn`` is QAT-trained from one FP32 model with
``Recipe(accumulator_bits=P, accumulator_digit_planes=True)`` for each P in
(32, 20, 16, 14, 12, 10), with ``fashion_mnist_llsq.py``'s training settings, lowered, and
evaluated on the full test set by the integer engine with every accumulator P bits wide. At
P = 32 the rule never binds here (the widest layer needs 25 bits), so that row is the
unconstrained model.

Each row also records the proof and its checks: per layer the proved interval of every partial
sum (and of every 4-bit digit plane) from ``lower``; the whole test set run again with every
accumulator at P bits under ``overflow="raise"``, plainly and with 4-bit multipliers
(``four_bit``); and every layer run alone on its adversarial inputs (every input code at the end
of its range that its weight's sign favours, `engine.accumulators.adversarial_run`), at P
bits under ``raise``, whose extremes must equal the proved ones exactly.

Every row starts from the FP32 weights committed beside the results
(:data:`FP32_START`, checked against :data:`FP32_START_SHA256`): the end of the first epoch of a
two-epoch one-cycle FP32 run of ``fashion_mnist_llsq.py``'s FP32 settings (seed 0, test 89.21%),
the run stopped there to fit the CPU budget. ``--train-fp32`` trains the FP32 model here instead.

Run from the repository root::

    python -m benchmarks.accumulator_aware_fashion_mnist            # ~40 min on 2 cores
    python -m benchmarks.accumulator_aware_fashion_mnist --quick    # smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hwquant
from benchmarks import fashion_mnist_llsq as llsq_bench
from benchmarks.common import REPO_ROOT, command_line, write_result
from hwquant.core.intmath import interval_bits, qrange
from hwquant.core.provenance import file_sha256
from hwquant.data import BatchLoader
from hwquant.engine import run as engine_run
from hwquant.engine.accumulators import adversarial_run
from hwquant.ir.intmodel import IntModel, WeightNode
from hwquant.qat.accumulator_bound import AccumulatorBound, accumulator_interval

NAME = "accumulator_aware_fashion_mnist"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / f"{NAME}.json"
BITS = (4, 8)
ACC_BITS = (32, 20, 16, 14, 12, 10)
A2Q_PLUS_PUBLISHED_LOSS = {14: 0.9, 12: 4.4}
"""Points lost from float by Brevitas A2Q+ (CIFAR-10 ResNet-18 W4A4, float 95.0: int14 94.1,
int12 90.6; its repository's a2q README), the issue's targets."""
A2Q_PLUS_RESULTS = tuple(
    DEFAULT_OUT.parent / f"accumulator_aware_brevitas_fashion_mnist{tail}.json"
    for tail in ("", "_p32")
)
"""Brevitas A2Q+ on this model and data (``brevitas_a2q_fashion_mnist.py``), W4A4 rows."""
TARGET_P16_POINTS = 0.5
FP32_START = DEFAULT_OUT.parent / f"{NAME}_fp32" / "fp32_small_cnn_epoch1.pt"
"""The FP32 ``small_cnn`` state_dict every published row starts from (module docstring)."""
FP32_START_SHA256 = "8bb415c49b43aaf4294b6028319367b647453762d34cd4a273db3d827099d442"


@dataclasses.dataclass(frozen=True)
class AccRow:
    """One point of the curve (duck-typed for ``fashion_mnist_llsq.quantize_row``)."""

    name: str
    bits: int
    acc_bits: int
    all_layers: bool = True

    def recipe(self, bn_freeze_step: int | None) -> hwquant.Recipe:
        return hwquant.Recipe(
            weight_bits=self.bits,
            act_bits=self.bits,
            first_layer_bits=self.bits,
            last_layer_bits=self.bits,
            input_bits=8,
            bn_freeze_step=bn_freeze_step,
            accumulator_bits=self.acc_bits,
            accumulator_digit_planes=True,
        )


ROWS = tuple(
    AccRow(f"W{b}A{b}_P{p}", b, p)
    for group in ((32, 16, 14, 12), (20, 10))  # the targets land first
    for b in BITS
    for p in group
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", default="", help="comma-separated subset of rows (default: all)")
    p.add_argument(
        "--init-fp32",
        type=Path,
        default=FP32_START,
        help="FP32 small_cnn state_dict (default: the committed start, its sha256 checked)",
    )
    p.add_argument(
        "--train-fp32", action="store_true", help="train the FP32 model here (no --init-fp32)"
    )
    p.add_argument("--save-fp32", type=Path, default=None, help="save the FP32 state_dict here")
    p.add_argument("--epochs-fp32", type=int, default=5, help="FP32 baseline epochs")
    p.add_argument("--epochs-qat", type=int, default=2, help="QAT epochs per row")
    p.add_argument(
        "--qat-train-examples",
        type=int,
        default=None,
        help="QAT on the first N training images only (default: all 60k)",
    )
    p.add_argument("--bn-freeze-step", type=int, default=200, help="QAT steps before BN freezes")
    p.add_argument(
        "--four-bit-examples",
        type=int,
        default=None,
        help="test images of the 4-bit-multiplier strict run (default: all)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--quick", action="store_true", help="tiny subset, one epoch: smoke run")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="result JSON")
    p.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        default=None,
        help="combine the rows of these result files (runs of this script from one FP32 model, "
        "e.g. run in parallel) into --out, with the summary; nothing is trained",
    )
    args = p.parse_args(argv)
    if args.train_fp32:
        args.init_fp32 = None
    elif args.init_fp32 == FP32_START and file_sha256(FP32_START) != FP32_START_SHA256:
        p.error(f"{FP32_START} is not the committed FP32 start (sha256 {FP32_START_SHA256})")
    args.selected = llsq_bench.selected_rows(p, args.rows, [r.name for r in ROWS])
    args.base = llsq_bench.shared_settings(args.epochs_qat, args.seed, args.quick)
    args.base.epochs_fp32 = min(args.epochs_fp32, args.base.epochs_fp32)
    args.base.bn_freeze_step = args.bn_freeze_step
    return args


def layer_proofs(int_model: IntModel) -> list[dict[str, Any]]:
    """Per weight layer: P, the proved intervals and their widths, and the adversarial run at P
    bits under ``raise`` (plain and with 4-bit multipliers) against the proved extremes."""
    out = []
    for node in int_model.weight_nodes():
        strict = dataclasses.replace(node, overflow="raise")
        extremes, exact = {}, True
        lowest, highest = _full_sum_extremes(node)
        for four_bit in (False, True):
            acc = adversarial_run(strict, four_bit=four_bit).output
            acc = acc.reshape(acc.shape[0], acc.shape[1])
            channels = torch.arange(node.weight.shape[0])
            high = acc[channels, channels]
            low = acc[channels + len(channels), channels]
            extremes["four_bit" if four_bit else "plain"] = (int(low.min()), int(high.max()))
            exact &= torch.equal(high, highest) and torch.equal(low, lowest)
        out.append(
            {
                "layer": node.name,
                "acc_bits": node.acc_bits,
                "proved_interval": list(node.acc_interval),
                "proved_bits": interval_bits(*node.acc_interval),
                "proved_digit_plane_interval": list(node.plane_interval),
                "proved_digit_plane_bits": interval_bits(*node.plane_interval),
                "l1_rule_bits": node.worst_case_bits(),
                "adversarial_extremes": extremes["plain"],
                "adversarial_extremes_four_bit": extremes["four_bit"],
                "adversarial_reaches_proved_full_sums": exact,
                "adversarial_overflows": 0,  # a raise would have stopped the run
                "budget_use": budget_use(node),
            }
        )
    return out


def budget_use(node: WeightNode) -> dict[str, Any]:
    """How much of its P-bit budget a layer's integers use (the diagnosis of a collapsed row):
    per channel the units ``S⁺ = Σ max(q, 0)`` and ``S⁻ = Σ max(−q, 0)`` against the budgets
    ``B⁺``, ``B⁻`` of `AccumulatorBound.budgets` (for signed inputs one budget on ``S⁺ + S⁻``),
    the channels that reach their budget, the channels left all zero, and the accumulator
    scale (weight scale times input scale) of the channels."""
    weight = torch.from_numpy(node.weight).reshape(node.weight.shape[0], -1).to(torch.int64)
    bias = None if node.bias is None else torch.from_numpy(node.bias)
    bound = AccumulatorBound(node.acc_bits, node.in_bits, node.in_signed)
    budget_pos, budget_neg = bound.budgets(bias, weight.shape[0])
    units_pos, units_neg = weight.clamp_min(0).sum(1), (-weight).clamp_min(0).sum(1)
    if node.in_signed:
        at_budget = units_pos + units_neg >= budget_pos
        budget = {"shared_min": int(budget_pos.min())}
    else:
        at_budget = (units_pos >= budget_pos) | (units_neg >= budget_neg)
        budget = {"pos_min": int(budget_pos.min()), "neg_min": int(budget_neg.min())}
    scale = torch.from_numpy(node.acc_scale).double()
    return {
        "channels": weight.shape[0],
        "budget_units": budget,
        "units_pos_max": int(units_pos.max()),
        "units_neg_max": int(units_neg.max()),
        "l1_units_mean": round(float((units_pos + units_neg).double().mean()), 1),
        "channels_at_budget": int(at_budget.sum()),
        "channels_all_zero": int((weight == 0).all(1).sum()),
        "acc_scale_median": float(scale.median()),
        "acc_scale_max": float(scale.max()),
    }


def _full_sum_extremes(node: WeightNode) -> tuple[torch.Tensor, torch.Tensor]:
    """Per channel, the smallest and largest full sum (bias included) the proof predicts: the
    interval of the products alone, shifted by the bias."""
    weight = torch.from_numpy(node.weight).reshape(node.weight.shape[0], -1)
    low, high = accumulator_interval(weight, None, *qrange(node.in_bits, node.in_signed))
    bias = 0 if node.bias is None else torch.from_numpy(node.bias).double()
    return (low + bias).to(torch.int64), (high + bias).to(torch.int64)


@torch.no_grad()
def four_bit_run(int_model: IntModel, test: BatchLoader, limit: int | None) -> dict[str, Any]:
    """The test set (its first ``limit`` images) through 4-bit multipliers, every accumulator
    and digit plane at P bits under ``raise`` (as ``lower`` sets them): an overflow would stop
    the benchmark. (The plain run at P bits under ``raise`` is ``quantize_row``'s evaluation.)"""
    peak: dict[str, int] = {}
    images = 0
    for x, _ in test.iter_from(0):
        if limit is not None and images >= limit:
            break
        stats = engine_run(int_model, int_model.quantize_input(x), four_bit=True).stats
        for name, st in stats.items():
            peak[name] = max(peak.get(name, 0), st.max_abs_acc)
        images += len(x)
    policies = sorted({n.overflow for n in int_model.weight_nodes()})
    return {"images": images, "policies": policies, "overflows": 0, "peak_abs_acc": peak}


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it."""
    path = path.resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def start_name(init_fp32: str | None) -> str | None:
    """The FP32 start of a result file by its file name: the published parts name the same
    weights by a scratch path (``/tmp/a2q/fp32_small_cnn_epoch1.pt``, sha256
    :data:`FP32_START_SHA256`) and, from the P = 20 rows on, by :data:`FP32_START`."""
    return None if init_fp32 is None else Path(init_fp32).name


def a2q_plus_curve(paths: Sequence[Path], init_fp32: str | None) -> dict[str, Any] | None:
    """Brevitas A2Q+'s W4A4 accuracy by P from ``paths`` (the runs that exist and start from
    ``init_fp32``, the FP32 weights of this benchmark's rows), or None without one."""
    curve: dict[int, float] = {}
    files = []
    for path in paths:
        if not path.exists():
            continue
        doc = json.loads(path.read_text())
        if init_fp32 is None or start_name(doc["config"]["init_fp32"]) != start_name(init_fp32):
            continue
        files.append(path.name)
        for row in doc["results"]["rows"].values():
            curve[int(row["acc_bits"])] = row["test_acc"]
    if not curve:
        return None
    return {"files": files, "acc_by_acc_bits": dict(sorted(curve.items(), reverse=True))}


def _vs_a2q_plus(
    p: int, curve: dict[int, float], fp32_acc: float, peer: dict[str, Any]
) -> dict[str, Any]:
    """Our loss at P against A2Q+'s on this model: from FP32 and from each one's P = 32 row."""
    theirs = peer["acc_by_acc_bits"]
    entry: dict[str, Any] = {
        "statement": f"loss at P={p} below Brevitas A2Q+'s on the same model and data",
        "loss_from_fp32_points": round(100 * (fp32_acc - curve[p]), 2),
        "a2q_plus_loss_from_fp32_points": round(100 * (fp32_acc - theirs[p]), 2),
    }
    met = entry["loss_from_fp32_points"] < entry["a2q_plus_loss_from_fp32_points"]
    if 32 in curve and 32 in theirs:
        entry["loss_from_own_p32_points"] = round(100 * (curve[32] - curve[p]), 2)
        entry["a2q_plus_loss_from_own_p32_points"] = round(100 * (theirs[32] - theirs[p]), 2)
        met &= entry["loss_from_own_p32_points"] < entry["a2q_plus_loss_from_own_p32_points"]
    entry["target_met"] = met
    return entry


def summary(
    records: dict[str, Any], fp32_acc: float, peer: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The curve per bit-width, the losses against the unconstrained row and FP32, and the
    issue's targets; ``peer`` (:func:`a2q_plus_curve`) adds A2Q+ on this model beside W4A4."""
    out: dict[str, Any] = {}
    for bits in BITS:
        curve = {
            p: records[f"W{bits}A{bits}_P{p}"]["integer_acc"]
            for p in sorted(ACC_BITS, reverse=True)
            if f"W{bits}A{bits}_P{p}" in records
        }
        if not curve:
            continue
        free = curve.get(32)
        entry: dict[str, Any] = {
            "integer_acc_by_acc_bits": curve,
            "loss_from_fp32_points": {p: round(100 * (fp32_acc - a), 2) for p, a in curve.items()},
        }
        if free is not None:
            entry["loss_from_unconstrained_points"] = {
                p: round(100 * (free - a), 2) for p, a in curve.items()
            }
        if bits == 4:
            if free is not None and 16 in curve:
                loss = round(100 * (free - curve[16]), 2)
                entry["target_p16"] = {
                    "statement": "every layer on 16-bit accumulators within "
                    f"{TARGET_P16_POINTS} points of the unconstrained W4A4 model",
                    "loss_points": loss,
                    "target_met": loss <= TARGET_P16_POINTS,
                }
            for p, published in A2Q_PLUS_PUBLISHED_LOSS.items():
                if p in curve:
                    loss = round(100 * (fp32_acc - curve[p]), 2)
                    entry[f"target_p{p}_vs_a2q_plus"] = {
                        "statement": f"loss from float at P={p} below A2Q+'s published "
                        f"{published} points",
                        "loss_points": loss,
                        "target_met": loss < published,
                    }
            if peer is not None:
                entry["a2q_plus_same_model"] = peer
                for p in A2Q_PLUS_PUBLISHED_LOSS:
                    if p in curve and p in peer["acc_by_acc_bits"]:
                        entry[f"target_p{p}_vs_a2q_plus_same_model"] = _vs_a2q_plus(
                            p, curve, fp32_acc, peer
                        )
        out[f"W{bits}A{bits}"] = entry
    return out


def merge(parts: list[Path], out: Path, command: str) -> dict[str, Any]:
    """One result file from several runs of this benchmark from the same FP32 weights: their
    rows (in :data:`ROWS` order), the summary, and each part's command, machine and config."""
    docs = [json.loads(part.read_text()) for part in parts]
    fp32 = {doc["results"]["fp32_test_acc"] for doc in docs}
    init = {start_name(doc["config"]["init_fp32"]) for doc in docs}
    if len(fp32) != 1 or len(init) != 1:
        raise SystemExit(f"the parts start from different FP32 models: {fp32}, {init}")
    found = {name: rec for doc in docs for name, rec in doc["results"]["rows"].items()}
    rows = {row.name: found[row.name] for row in ROWS if row.name in found}
    fp32_acc = fp32.pop()
    results = {
        "complete": all(doc["results"]["complete"] for doc in docs),
        "fp32_test_acc": fp32_acc,
        "rows": rows,
        "summary": summary(rows, fp32_acc, a2q_plus_curve(A2Q_PLUS_RESULTS, init.pop())),
        "parts": [
            {"file": part.name, "command": doc["command"], "rows": list(doc["results"]["rows"])}
            for part, doc in zip(parts, docs, strict=True)
        ],
    }
    config = docs[0]["config"] | {"merged_from": [part.name for part in parts]}
    write_result(
        NAME,
        command=command,
        seed=docs[0]["seed"],
        config=config,
        results=results,
        machine=docs[0]["machine"],
        path=out,
    )
    return results


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.merge:
        command = command_line([sys.argv[0], *(sys.argv[1:] if argv is None else argv)])
        return merge(args.merge, args.out, command)
    base = args.base
    recorder, splits, loaders_ = llsq_bench.start(NAME, argv, args, base)
    fp32_loaders = loaders_
    if args.qat_train_examples is not None:
        head = llsq_bench._head(splits.train, args.qat_train_examples)
        loaders_ = llsq_bench.loaders(dataclasses.replace(splits, train=head), base)
    config = {
        **llsq_bench.comparison_config(splits, args, base),
        "bits": list(BITS),
        "acc_bits": sorted(ACC_BITS, reverse=True),
        "qat_train_examples": args.qat_train_examples or len(splits.train),
        "epochs_fp32": base.epochs_fp32,
        "four_bit_examples": args.four_bit_examples,
        "init_fp32": None if args.init_fp32 is None else _shown(args.init_fp32),
        "init_fp32_sha256": None if args.init_fp32 is None else file_sha256(args.init_fp32),
        "notes": [
            "Every row quantizes every weight layer (first and last included) and every "
            "activation to the row's bits; the input quantizer is 8-bit signed. The recipe is "
            "Recipe(accumulator_bits=P, accumulator_digit_planes=True): every partial sum of "
            "every layer, and every 4-bit digit plane, fits P signed bits for any input in "
            "range (docs/llsq.md section 5). P = 32 never binds on this model: it is the "
            "unconstrained model.",
            "integer_acc is the integer engine on the whole test set with every accumulator P "
            "bits wide under overflow='raise' (lower sets acc_bits = P, policy 'raise', on "
            "bounded layers); four_bit_run repeats the test set with 4-bit multipliers (every "
            "digit plane at P bits, 'raise'); layer_proofs runs every layer alone on its "
            "adversarial inputs at P bits under 'raise'.",
            "Training settings are fashion_mnist_llsq.py's unchanged (SGD-Nesterov lr 0.0025, "
            "cosine, BN frozen after 200 steps), no setting tuned for this benchmark; "
            "accuracies are of the final weights on the full test set.",
            "A2Q+'s published losses (CIFAR-10 ResNet-18 W4A4: -0.9 points at 14 bits, -4.4 "
            "at 12) are on another model and data set; the Brevitas side-by-side on this model "
            "is benchmarks/brevitas_a2q_fashion_mnist.py.",
        ],
    }
    results: dict[str, Any] = {"complete": False, "rows": {}}
    baseline = llsq_bench.fp32_baseline(args.init_fp32, base, splits, fp32_loaders)
    if args.save_fp32 is not None:
        torch.save(baseline.model.state_dict(), args.save_fp32)
    results["fp32_test_acc"] = baseline.test_acc
    recorder.save(config, results)
    peer = a2q_plus_curve(A2Q_PLUS_RESULTS, config["init_fp32"])
    lowered: dict[str, IntModel] = {}

    def keep(int_model: IntModel) -> dict[str, Any]:
        lowered["model"] = int_model
        return {}

    for row in ROWS:
        if row.name not in args.selected:
            continue
        record = llsq_bench.quantize_row(
            row, baseline.model, base, loaders_, baseline.test_acc, keep
        )
        int_model = lowered.pop("model")
        record["layer_proofs"] = layer_proofs(int_model)
        record["four_bit_run"] = four_bit_run(int_model, loaders_[2], args.four_bit_examples)
        results["rows"][row.name] = record
        results["summary"] = summary(results["rows"], baseline.test_acc, peer)
        recorder.save(config, results)
        print(f"[{row.name}] proofs and strict runs: 0 overflows", file=sys.stderr)
    results["complete"] = True
    recorder.save(config, results)
    print(f"wrote {args.out}: {results['summary']}", file=sys.stderr)
    return results


if __name__ == "__main__":
    main()
