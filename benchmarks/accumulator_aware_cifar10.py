"""CIFAR-10 ResNet-20: accuracy against the accumulator width P of accumulator-aware LLSQ.

Every row starts from issue 19's committed FP32 checkpoint of ``--tier`` (cpu-long, the
default: ``benchmarks/results/cifar10_cpu_long/fp32/resnet20.ckpt``; or cpu-full), its sha256
checked against the record beside it, and QAT-trains exactly like that tier's ``llsq_W4A4`` row
of ``hwquant bench reproduce`` (the tier's data, schedule, epochs and the row's recipe: 8-bit
first and last layers, 8-bit signed input), at ``--bits`` weight and activation bits (4: the
row's own; 8: the LLSQ row's rules at W8A8, which freeze BN late), with ``accumulator_bits = P`` and
``accumulator_digit_planes = true`` added: every partial sum of every weight layer, first and
last included, and every 4-bit digit plane, fits P signed bits for any input in range
(docs/llsq.md §5). At P = 32 the rule does not bind on this model, so that row is the
unconstrained one. A P too small for one weight of ±1 in some layer is recorded as refused, with
the error that names the layer and the smallest P.

Each row is lowered and compared, image by image over the 10,000 test images, with the integer
engine whose accumulators ``lower`` makes P bits wide under ``overflow="raise"`` (an overflow
stops the run); then the first ``--four-bit-examples`` test images again through 4-bit
multipliers (every digit plane at P bits, ``raise``), and every layer alone on its adversarial
inputs, whose sums must reach the proved extremes exactly (``layer_proofs`` of
``accumulator_aware_fashion_mnist.py``).

The rows run one after another; the result file (one per tier and bits, :func:`default_output`)
is rewritten
(atomically) after each, and a second invocation skips the rows it holds, so a stopped run
resumes; a stored row whose recipe is not the one its P has now is refused, not skipped, and
so is a file of other tier settings. ``--epochs-qat N`` trains every row N epochs instead of
the tier's 3 (a tier setting: into a result file of its own); with ``--work DIR`` a row stopped
mid-training resumes from its trainer checkpoint in ``DIR/<row>`` when the command is run
again, so that a long row can span sessions. On a CPU without native bf16 kernels the tier's
bf16 autocast is refused; ``--no-amp`` trains in float32, into a result file of its own::

    python -m benchmarks.accumulator_aware_cifar10 --acc-bits 16,14,12,32  # ~12 min a row, 1 core
    python -m benchmarks.accumulator_aware_cifar10 --acc-bits 20,10         # more rows, same file
    python -m benchmarks.accumulator_aware_cifar10 --bits 8 --acc-bits 32,20,16,14,12,10
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hwquant
from benchmarks.accumulator_aware_fashion_mnist import four_bit_run, layer_proofs
from benchmarks.common import RESULTS_DIR, ResultRecorder, command_line, settings_differences
from hwquant.app.bench.cli import add_no_amp_argument
from hwquant.app.bench.evaluate import compare
from hwquant.app.bench.reproduce import (
    Options,
    build_model,
    check_device,
    fit_model,
    json_differences,
    load_baseline,
    load_tier_data,
    tier_memory_format,
    tier_train_config,
)
from hwquant.app.bench.rows import RowSpec
from hwquant.app.bench.tiers import get_tier, settings_with_tier_defaults, with_tier_defaults
from hwquant.core.errors import AccumulatorBitsError, ConfigError
from hwquant.qat.recipe import changed_fields

NAME = "accumulator_aware_cifar10"
TIERS = ("cpu-long", "cpu-full")
OUTPUTS = {
    "cpu-full": RESULTS_DIR / f"{NAME}.json",
    "cpu-long": RESULTS_DIR / f"{NAME}_cpu_long.json",
}
"""The published W4A4 result file of each tier (the cpu-full one holds the rows of sessions
6-9); the curve at other bits has its own, :func:`default_output`."""
MODEL = "resnet20"
BASE_ROW = RowSpec("llsq", 4)
"""The tier's row every point of the curve trains like (W4A4, 8-bit first and last layers)."""
ACC_BITS = (32, 20, 16, 14, 12, 10)
BITS = (4, 8)
"""Weight and activation bits of the curves (``--bits``)."""


def default_output(tier: str, bits: int) -> Path:
    """The published result file of ``tier``'s curve at ``bits``: :data:`OUTPUTS` at 4 bits,
    ``<name>_<tier>_w<bits>a<bits>.json`` otherwise (one curve a file, so that the two curves
    run as two processes).

    >>> default_output("cpu-long", 8).name
    'accumulator_aware_cifar10_cpu_long_w8a8.json'
    """
    if bits == BASE_ROW.size:
        return OUTPUTS[tier]
    return RESULTS_DIR / f"{NAME}_{tier.replace('-', '_')}_w{bits}a{bits}.json"


def tier_dir(tier: str) -> Path:
    """The tier's committed reproduce run: ``fp32/`` and ``rows/`` (issue 19)."""
    return RESULTS_DIR / f"cifar10_{tier.replace('-', '_')}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--acc-bits",
        default="16,14,12,32",
        help="comma-separated accumulator widths P to run, in this order (from "
        f"{', '.join(map(str, ACC_BITS))})",
    )
    p.add_argument(
        "--bits",
        type=int,
        choices=BITS,
        default=BITS[0],
        help="weight and activation bits of the inner layers (the recipe is the tier's LLSQ "
        "row's at these bits: llsq_W4A4 at 4; at 8 its BN freezes late)",
    )
    p.add_argument("--tier", choices=TIERS, default=TIERS[0], help="FP32 start and schedule")
    p.add_argument("--four-bit-examples", type=int, default=1000)
    p.add_argument("--data-root", type=Path, default=None, help="CIFAR-10 image-folder copy")
    p.add_argument(
        "--work",
        type=Path,
        default=None,
        help="trainer work directory (default: a temp dir); a row stopped mid-training resumes "
        "from its trainer checkpoint there",
    )
    p.add_argument(
        "--epochs-qat",
        type=int,
        default=None,
        help="QAT epochs of every row instead of the tier's (recorded in the tier; a result "
        "file of other epochs is refused)",
    )
    add_no_amp_argument(p, "a result file is one setting: give it its own --out")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="result JSON (default: the tier's)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 512 training images, one QAT epoch (give another --out)",
    )
    args = p.parse_args(argv)
    published = {default_output(tier, bits) for tier in TIERS for bits in BITS}
    if args.quick and args.epochs_qat is not None:
        p.error("--quick trains one QAT epoch: it takes no --epochs-qat")
    if args.epochs_qat is not None and (args.out is None or args.out in published):
        p.error("--epochs-qat makes rows of other settings: give them another --out")
    if args.quick and (args.out is None or args.out in published):
        p.error("--quick writes a smoke result: give it another --out")
    args.out = args.out or default_output(args.tier, args.bits)
    try:
        args.acc_bits = [int(b) for b in args.acc_bits.split(",")]
    except ValueError:
        p.error(f"--acc-bits {args.acc_bits!r} is not a comma-separated list of integers")
    unknown = sorted(set(args.acc_bits) - set(ACC_BITS))
    if unknown:
        p.error(f"--acc-bits: {unknown} not among {', '.join(map(str, ACC_BITS))}")
    return args


def recipe_at(acc_bits: int, qat_steps: int, bits: int = BASE_ROW.size) -> hwquant.Recipe:
    """The recipe of the table's LLSQ row at ``bits`` weight and activation bits (``llsq_W4A4``
    at 4; at 8 the same rules give BN its late freeze, ``rows.LATE_FREEZE_ACT_BITS``), with
    every layer's accumulator bounded to ``acc_bits``."""
    return dataclasses.replace(
        RowSpec(BASE_ROW.kind, bits).recipe(qat_steps),
        accumulator_bits=acc_bits,
        accumulator_digit_planes=True,
    )


def row_name(bits: int, acc_bits: int) -> str:
    """``W4A4_P16``, ``W8A8_P10``, ..."""
    return f"W{bits}A{bits}_P{acc_bits}"


def check_stored_row(
    name: str, stored: dict[str, Any], qat_steps: int, bits: int = BASE_ROW.size
) -> None:
    """Refuse to skip the stored row ``name`` when its recipe is not the one its P has now at
    ``bits`` (the curve's: a row of other bits differs in ``weight_bits``).

    Raises:
        SystemExit: names the row and every recipe field that differs.
    """
    differ = changed_fields(stored["recipe"], recipe_at(int(stored["acc_bits"]), qat_steps, bits))
    if differ:
        raise SystemExit(
            f"the stored row {name} was trained with another recipe than it has now (fields "
            f"{', '.join(differ)}). Fix: choose another --out, or remove the row to train it again."
        )


def fp32_state(tier: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tier's committed FP32 weights and their record (sha256 checked:
    :func:`~hwquant.app.bench.reproduce.load_baseline`)."""
    path = tier_dir(tier) / "fp32" / f"{MODEL}.ckpt"
    if not path.with_suffix(".json").exists():
        raise SystemExit(
            f"{path.with_suffix('.json')} does not exist: the {tier} FP32 baseline is not "
            f"committed yet. Fix: finish it (`hwquant bench reproduce --tier {tier} --fp32-only "
            f"--resume --out {tier_dir(tier)}`), or choose another --tier."
        )
    return load_baseline(path)


def run_row(
    acc_bits: int,
    bits: int,
    state: dict[str, torch.Tensor],
    data: Any,
    options: Options,
    four_bit_examples: int,
    start_sha256: str,
    resume: bool = False,
) -> dict[str, Any]:
    """QAT-train, lower and check one point of the curve; a P that ``prepare`` refuses (too
    small for one weight of ±1 in some layer) is recorded as refused, with its error. With
    ``resume`` the training continues from the trainer checkpoint in ``options.out/<row>``
    where there is one (bit-exactly), if that directory trains this row (:func:`check_work`).
    ``training.wall_seconds`` is this invocation's; ``seconds_sum_of_epochs`` all of them."""
    start = time.perf_counter()
    config = tier_train_config(options, False)
    recipe = recipe_at(acc_bits, config.epochs * len(data.qat_train), bits)
    model = build_model(MODEL, options)
    model.load_state_dict(state)
    name = row_name(bits, acc_bits)
    try:
        qat = hwquant.prepare(model.train(), recipe)
    except AccumulatorBitsError as error:
        print(f"[{name}] refused: {error}", file=sys.stderr)
        return {
            "acc_bits": acc_bits,
            "recipe": recipe.to_dict(),
            "status": "refused",
            "error": str(error),
        }
    qat = qat.to(memory_format=tier_memory_format(options.tier))
    work = options.out / name
    identity = {"tier": dataclasses.asdict(options.tier), "seed": options.seed,
                "fp32_checkpoint_sha256": start_sha256, "recipe": recipe.to_dict()}  # fmt: skip
    check_work(work, json.loads(json.dumps(identity)))
    print(f"[{name}] QAT {config.epochs} epochs", file=sys.stderr)
    training = fit_model(qat, config, data.qat_train, data, work, options, resume=resume)
    training["seconds_sum_of_epochs"] = round(sum(h["seconds"] for h in training["history"]), 1)
    qat.eval()
    int_model = hwquant.lower(qat, next(data.test.iter_from(0))[0][:8])
    evaluation = compare(qat, int_model, data.test.iter_from(0))
    print(
        f"[{name}] fake-quant {evaluation['fake_quant_acc']:.4f} engine "
        f"{evaluation['engine_acc']:.4f} exact {evaluation['exact']}",
        file=sys.stderr,
    )
    return {
        "acc_bits": acc_bits,
        "recipe": recipe.to_dict(),
        "status": "done",
        "engine_policies": sorted({n.overflow for n in int_model.weight_nodes()}),
        "engine_acc_bits": sorted({n.acc_bits for n in int_model.weight_nodes()}),
        **evaluation,
        "layer_proofs": layer_proofs(int_model),
        "four_bit_run": four_bit_run(int_model, data.test, four_bit_examples),
        "training": training,
        "wall_seconds": round(time.perf_counter() - start, 1),
    }


def check_work(work: Path, identity: dict[str, Any]) -> None:
    """Record what the row's trainer directory ``work`` trains (``row.json``: tier, seed, FP32
    start, recipe) on its first use, and refuse one that trains another row: its checkpoint
    would be continued as this one (a directory from before ``row.json`` is taken as the row's).

    Raises:
        ConfigError: names every difference and the fix (another ``--work``).
    """
    differ = settings_differences(work / "row.json", identity, settings_with_tier_defaults)
    if differ:
        raise ConfigError(
            f"--work: {work} trains another row ({'; '.join(differ)}); its checkpoint would be "
            f"continued as this one. Fix: give another --work, or delete {work} to train the row "
            "anew."
        )


def summary(rows: dict[str, Any], fp32_acc: float) -> dict[str, Any]:
    """Engine accuracy by P, the loss from FP32 and from the P = 32 row; the refused P's."""
    done = [r for r in rows.values() if r.get("status", "done") == "done"]
    curve = {int(r["acc_bits"]): r["engine_acc"] for r in done}
    curve = dict(sorted(curve.items(), reverse=True))
    out: dict[str, Any] = {
        "engine_acc_by_acc_bits": curve,
        "loss_from_fp32_points": {p: round(100 * (fp32_acc - a), 2) for p, a in curve.items()},
        "all_exact": all(r["exact"] for r in done),
    }
    refused = [r for r in rows.values() if r.get("status") == "refused"]
    if refused:
        out["refused"] = {int(r["acc_bits"]): r["error"] for r in refused}
    if 32 in curve:
        out["loss_from_unconstrained_points"] = {
            p: round(100 * (curve[32] - a), 2) for p, a in curve.items()
        }
    return out


def check_stored_tier(path: Path, stored: dict[str, Any], now: dict[str, Any]) -> None:
    """Refuse to add rows to the result file ``path`` whose rows were trained under other tier
    settings (``--no-amp`` against bf16, another schedule): one file is one setting.
    ``stored`` is the file's ``config["tier"]`` (JSON: lists), ``now`` the tier as a dict.

    Raises:
        SystemExit: names every tier field that differs.
    """
    differ = json_differences(with_tier_defaults(stored), now, "tier.")
    if differ:
        raise SystemExit(
            f"{path} holds rows trained with other tier settings ({'; '.join(differ)}); "
            "choose another --out"
        )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    command = command_line([sys.argv[0], *(sys.argv[1:] if argv is None else argv)])
    recorder = ResultRecorder(NAME, command, args.seed, args.out)
    tier = get_tier(args.tier, epochs_qat=args.epochs_qat, amp=None if args.amp else False)
    if args.quick:
        tier = dataclasses.replace(tier, train_examples=512, qat_train_examples=512, epochs_qat=1)
    check_device(tier)  # a bf16 tier on a CPU without native bf16 names --no-amp
    work = args.work or Path(tempfile.mkdtemp(prefix="a2q_cifar10_"))
    options = Options(
        tier=tier,
        out=work,
        models=(MODEL,),
        rows=(),
        seed=args.seed,
        data_root=args.data_root,
        command=command,
    )
    state, fp32_record = fp32_state(args.tier)
    fp32_path = tier_dir(args.tier) / "fp32" / f"{MODEL}.ckpt"
    config = {
        "tier": dataclasses.asdict(tier),
        "model": MODEL,
        "base_row": RowSpec(BASE_ROW.kind, args.bits).name,
        "bits": args.bits,
        "fp32_checkpoint": str(fp32_path.relative_to(RESULTS_DIR.parent.parent)),
        "fp32_checkpoint_sha256": fp32_record["checkpoint_sha256"],
        "four_bit_examples": args.four_bit_examples,
        "threads": args.threads,
        "notes": [
            f"Each row is the {args.tier} LLSQ row at W{args.bits}A{args.bits} (same FP32 "
            "weights, data, QAT epochs, optimizer, schedule; the row's recipe: 8-bit first and "
            "last layers, BN frozen where rows.py freezes it, late at 8-bit activations) with "
            "accumulator_bits=P and accumulator_digit_planes=true on every weight layer.",
            "engine_acc: the integer engine over the 10,000 test images with every accumulator "
            "P bits wide under overflow='raise'; images_with_unequal_outputs compares its "
            "output integers with the fake-quant model's, image by image.",
            "Rows were run in separate invocations (one per command in 'commands'), appended "
            "to this file.",
        ],
    }
    results: dict[str, Any] = {"fp32_test_acc": fp32_record["test_acc"], "rows": {}}
    commands: list[str] = []
    if args.out.exists():  # resume: keep the rows that are there
        old = json.loads(args.out.read_text())
        if old["config"]["fp32_checkpoint_sha256"] != config["fp32_checkpoint_sha256"]:
            raise SystemExit(f"{args.out} was made from other FP32 weights; choose another --out")
        check_stored_tier(args.out, old["config"]["tier"], config["tier"])
        results["rows"] = old["results"]["rows"]
        commands = old["config"].get("commands", [old["command"]])
    config["commands"] = [*commands, command]
    unconstrained = tier_dir(args.tier) / "rows" / MODEL / f"{BASE_ROW.name}.json"
    if unconstrained.exists() and args.bits == BASE_ROW.size:
        row = json.loads(unconstrained.read_text())
        results[f"{args.tier.replace('-', '_')}_{BASE_ROW.name}"] = {
            k: row[k] for k in ("engine_acc", "fake_quant_acc", "exact", "command")
        }
    data = load_tier_data(options)
    qat_steps = tier.epochs_qat * len(data.qat_train)
    for name, row in results["rows"].items():
        check_stored_row(name, row, qat_steps, args.bits)
    for acc_bits in args.acc_bits:
        name = row_name(args.bits, acc_bits)
        if name in results["rows"]:
            print(f"[{name}] in {args.out} already: skipped", file=sys.stderr)
            continue
        results["rows"][name] = run_row(
            acc_bits, args.bits, state, data, options, args.four_bit_examples,
            fp32_record["checkpoint_sha256"], resume=args.work is not None,
        )  # fmt: skip
        results["summary"] = summary(results["rows"], fp32_record["test_acc"])
        recorder.save(config, results)
    results["summary"] = summary(results["rows"], fp32_record["test_acc"])
    recorder.save(config, results)
    print(f"wrote {args.out}: {results['summary']}", file=sys.stderr)
    return results


if __name__ == "__main__":
    main()
