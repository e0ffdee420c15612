"""``hwquant bench reproduce``: the CIFAR-10 table of the four methods in one command."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from hwquant.app.command import parser_with_examples, subcommands


def add_no_amp_argument(parser: argparse.ArgumentParser, recorded: str) -> None:
    """Add ``--no-amp`` (``args.amp`` false): float32 training instead of a tier's bf16
    autocast, for a CPU without native bf16 kernels. ``recorded`` ends the help: where the
    command keeps the setting, so that runs of the two settings are not mixed."""
    parser.add_argument(
        "--no-amp",
        dest="amp",
        action="store_false",
        help="train in float32 instead of the tier's bf16 autocast (a CPU without native bf16 "
        f"kernels); {recorded}",
    )


def add_command(commands: argparse._SubParsersAction) -> None:
    """Register ``bench`` and its ``reproduce`` subcommand."""
    from hwquant.app.bench.rows import ROW_KINDS
    from hwquant.app.bench.tiers import TIERS

    bench = parser_with_examples(
        commands.add_parser,
        "bench",
        help="benchmarks: reproduce the methods' table on CIFAR-10",
        description="Benchmark commands.",
        examples=["hwquant bench reproduce --tier smoke --out /tmp/smoke"],
    )
    sub = subcommands(bench)
    parser = parser_with_examples(
        sub.add_parser,
        "reproduce",
        help="FP32 baselines and every quantized row, fake-quant vs engine, step times",
        description="Train the FP32 baselines on CIFAR-10, QAT-train every row (LLSQ, "
        "non-uniform, MSQ with fixed-only and SP2-only, tables) from them, check that the "
        "fake-quant model and the integer (or table) engine agree on every test image, time "
        "FP32 against QAT steps, and write results.json and results.md to --out. Run it from "
        "the repository root as `python -m hwquant bench reproduce` (it uses benchmarks/).",
        examples=[
            "python -m hwquant bench reproduce --tier gpu --out runs/reproduce-gpu --compile",
            "python -m hwquant bench reproduce --tier cpu --out runs/reproduce-cpu --resume",
            "python -m hwquant bench reproduce --tier smoke --out /tmp/smoke",
        ],
    )
    parser.add_argument("--tier", required=True, choices=tuple(TIERS), help="schedule")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="output directory (default runs/reproduce-TIER)",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=None,
        metavar="MODEL",
        help="models to run (default: the tier's)",
    )
    kinds = ", ".join(ROW_KINDS)
    parser.add_argument(
        "--rows",
        nargs="+",
        default=None,
        metavar="ROW",
        help=f"row names or kinds ({kinds}); default the tier's rows (every row but for the "
        "tiers named in hwquant.app.bench.rows.TIER_ROWS)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="skip rows already in --out, and continue a baseline or row stopped part-way "
        "from its last finished epoch",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the models in the step-time comparison",
    )
    parser.add_argument("--epochs-fp32", type=int, default=None, help="override the tier's")
    parser.add_argument("--epochs-qat", type=int, default=None, help="override the tier's")
    parser.add_argument(
        "--qat-lr",
        type=float,
        default=None,
        help="the rows' peak learning rate, overriding the tier's (recorded in settings.json)",
    )
    parser.add_argument(
        "--qat-cutout",
        type=int,
        default=None,
        metavar="PIXELS",
        help="Cutout square of the rows' QAT batches (0: none, the tiers'; recorded in "
        "settings.json)",
    )
    parser.add_argument(
        "--qat-distill",
        type=float,
        default=None,
        metavar="WEIGHT",
        help="distil the rows from their FP32 baseline: the loss is (1 - WEIGHT)*CE + "
        "WEIGHT*T^2*KL (0: none, the tiers'; recorded in settings.json)",
    )
    parser.add_argument(
        "--qat-distill-temperature",
        type=float,
        default=None,
        metavar="T",
        help="temperature T of --qat-distill (default 1; recorded in settings.json)",
    )
    add_no_amp_argument(
        parser, "recorded in the run's settings, so a resume into a bf16 run is refused"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--row-seed",
        type=int,
        default=None,
        help="seed of the rows' QAT runs from the FP32 weights of --seed (default: --seed); a "
        "second sample of each row, in its own --out (with --fp32-from the first run's)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="CIFAR-10 JPEG tarball or folder (default $HWQUANT_DATA or "
        "../shared/data/cifar10/cifar10-jpeg-q75.tar.gz)",
    )
    parser.add_argument("--progress", action="store_true", help="progress bars and epoch lines")
    parser.add_argument(
        "--no-step-time",
        dest="step_time",
        action="store_false",
        help="skip the FP32-vs-QAT step-time comparison",
    )
    parser.add_argument(
        "--stop-after",
        type=float,
        default=None,
        metavar="SECONDS",
        help="start no model or row after this many seconds (continue the run "
        "later with --resume); for machines with a per-command time limit",
    )
    parser.add_argument(
        "--fp32-only",
        action="store_true",
        help="train (or, with --resume, continue) the FP32 baselines only; run the rows later "
        "with --resume into the same --out",
    )
    parser.add_argument(
        "--fp32-from",
        type=Path,
        default=None,
        metavar="DIR",
        help="start the rows from the finished baselines in DIR/fp32/ (another run's --out, or "
        "a benchmark run directory such as cifar10_fp32_average's) instead of training them; "
        "copied into --out, their sha256 recorded and checked on resume",
    )
    parser.set_defaults(run=_run)


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces this run, every option spelled out."""
    words = ["python", "-m", "hwquant", "bench", "reproduce", "--tier", args.tier]
    for flag, value in (
        ("--out", args.out),
        ("--models", args.models),
        ("--rows", args.rows),
        ("--epochs-fp32", args.epochs_fp32),
        ("--epochs-qat", args.epochs_qat),
        ("--qat-lr", args.qat_lr),
        ("--qat-cutout", args.qat_cutout),
        ("--qat-distill", args.qat_distill),
        ("--qat-distill-temperature", args.qat_distill_temperature),
        ("--seed", args.seed),
        ("--row-seed", args.row_seed),
        ("--threads", args.threads),
        ("--data-root", args.data_root),
        ("--stop-after", args.stop_after),
        ("--fp32-from", args.fp32_from),
    ):
        if value is not None:
            words += [flag, *map(str, value if isinstance(value, list) else [value])]
    switches = {
        "--resume": args.resume,
        "--compile": args.compile,
        "--no-step-time": not args.step_time,
        "--fp32-only": args.fp32_only,
        "--no-amp": not args.amp,
    }
    return shlex.join(words + [flag for flag, on in switches.items() if on])


def _run(args: argparse.Namespace) -> int:
    import torch

    from hwquant.app.bench.reproduce import Options, reproduce, select_models
    from hwquant.app.bench.rows import select_rows
    from hwquant.app.bench.tiers import get_tier

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    tier = get_tier(
        args.tier,
        args.epochs_fp32,
        args.epochs_qat,
        amp=None if args.amp else False,
        qat_lr=args.qat_lr,
        qat_cutout=args.qat_cutout,
        qat_distill=args.qat_distill,
        qat_distill_temperature=args.qat_distill_temperature,
    )
    options = Options(
        tier=tier,
        out=args.out or Path("runs") / f"reproduce-{tier.name}",
        models=select_models(args.models, tier),
        rows=select_rows(args.rows, tier.name),
        resume=args.resume,
        compile=args.compile,
        seed=args.seed,
        row_seed=args.row_seed,
        data_root=args.data_root,
        progress=args.progress,
        step_time=args.step_time,
        stop_after=args.stop_after,
        fp32_only=args.fp32_only,
        fp32_from=args.fp32_from,
        command=_command(args),
    )
    outcome = reproduce(options)
    results = outcome["results"]
    print(
        f"wrote {options.out / 'results.json'} and results.md: {len(outcome['ran'])} row(s) "
        f"run, {len(outcome['skipped'])} skipped (resume)"
    )
    if options.fp32_only:
        print(f"FP32 only: run the rows with --resume into {options.out} (without --fp32-only)")
    if outcome["stopped"]:
        print("stopped at the --stop-after budget: run the same command with --resume to go on")
    if not (options.fp32_only or results["all_exact"]):
        print("hwquant: fake-quant and engine outputs differ on some row", file=sys.stderr)
        return 1
    return 0
