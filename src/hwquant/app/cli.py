"""The ``hwquant`` command: train (one process or under torchrun), show a config, run the demo,
export (QONNX/QDQ), report a run, and the subcommands other modules add (``hw``, ...).

Exit codes: 0 success, 2 usage or config error, 1 any other hwquant error (and a failed
exactness check), 130 interrupted. Errors print their message (which names the fix) without a
traceback. Commands that print figures take ``--json``; every ``--help`` ends with examples.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from hwquant.app import build_cli, hw_cli, rtl_cli, synth_cli, tables_cli
from hwquant.app import export_cli as export_command
from hwquant.app import report_cli as report_run
from hwquant.app.bench import cli as bench_cli
from hwquant.app.command import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    parser_with_examples,
    subcommands,
)
from hwquant.app.config import load_config
from hwquant.core.errors import ConfigError, HwquantError


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``) and return its exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits after --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return args.run(args)
    except ConfigError as exc:
        print(f"hwquant: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except HwquantError as exc:
        print(f"hwquant: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"hwquant: interrupted.{_resume_hint(args)}", file=sys.stderr)
        return EXIT_INTERRUPTED


def _resume_hint(args: argparse.Namespace) -> str:
    """How to continue an interrupted ``train`` (other commands are simply run again)."""
    if args.run is not _train:
        return ""
    out = f" --out {args.out}" if args.out is not None else ""
    return f" Continue with `hwquant train --config {args.config}{out} --resume`."


def version() -> str:
    """The installed distribution's version, else the source tree's."""
    try:
        return metadata.version("hwquant")
    except metadata.PackageNotFoundError:
        from hwquant import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    """The ``hwquant`` parser; each subcommand stores its handler as ``args.run``."""
    parser = parser_with_examples(
        argparse.ArgumentParser,
        prog="hwquant",
        description="Quantization-aware training to bit-exact integer accelerator models.",
        examples=[
            "hwquant demo --quick",
            "hwquant train --config runs/mnist.toml",
            "hwquant config show runs/mnist.toml",
        ],
    )
    parser.add_argument("--version", action="version", version=f"hwquant {version()}")
    commands = subcommands(parser)

    train = parser_with_examples(
        commands.add_parser,
        "train",
        help="train a float or QAT model from a TOML config",
        description="Train the model of a run config; checkpoints go to OUT/last.pt.",
        examples=[
            "hwquant train --config mnist.toml",
            "hwquant train --config mnist.toml --resume   # continue after an interruption",
            "hwquant train --config mnist.toml --out runs/try2",
            "torchrun --nproc_per_node=2 -m hwquant train --config mnist.toml   # DDP",
        ],
    )
    train.add_argument("--config", required=True, type=Path, metavar="FILE.toml", help="run config")
    train.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    train.add_argument("--out", type=Path, metavar="DIR", help="override the config's out_dir")
    train.add_argument("--no-progress", action="store_true", help="no progress output")
    train.add_argument("--json", action="store_true", help="print the result as JSON")
    train.set_defaults(run=_train)

    config = parser_with_examples(
        commands.add_parser,
        "config",
        help="inspect run configs",
        description="Inspect run configs.",
        examples=["hwquant config show mnist.toml", "hwquant config show mnist.toml --json"],
    )
    config_commands = subcommands(config)
    show = parser_with_examples(
        config_commands.add_parser,
        "show",
        help="print the effective config, defaults filled in",
        description="Check a run config and print it with every default filled in.",
        examples=["hwquant config show mnist.toml"],
    )
    show.add_argument("file", type=Path, metavar="FILE.toml")
    show.add_argument("--json", action="store_true", help="print JSON instead of TOML")
    show.set_defaults(run=_config_show)

    demo = parser_with_examples(
        commands.add_parser,
        "demo",
        help="train, quantize, lower and verify a small model end to end",
        description="Run the end-to-end demo and write its report.",
        examples=["hwquant demo", "hwquant demo --quick --out /tmp/demo"],
    )
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), metavar="DIR")
    demo.add_argument("--quick", action="store_true", help="a fast, smaller run")
    demo.set_defaults(run=_demo)
    hw_cli.add_command(commands)
    export_command.add_command(commands)
    report_run.add_command(commands)
    tables_cli.add_command(commands)
    bench_cli.add_command(commands)
    rtl_cli.add_command(commands)
    build_cli.add_command(commands)
    synth_cli.add_command(commands)
    return parser


def _train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from hwquant.app.train import train_from_config

    config = load_config(args.config)
    if args.out is not None:
        config = replace(config, out_dir=str(args.out))
    result = train_from_config(config, progress=not args.no_progress, resume=args.resume)
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return EXIT_OK
    if args.json:
        figures = {
            "best_accuracy": result.best_accuracy,
            "best_epoch": result.best_epoch,
            "final_accuracy": result.final_accuracy,
            "checkpoint": str(result.checkpoint),
            "history": result.history,
        }
        print(json.dumps(figures, indent=2))
        return EXIT_OK
    print(
        f"best test accuracy {result.best_accuracy:.2%} (epoch {result.best_epoch}), "
        f"final {result.final_accuracy:.2%}; weights in {result.checkpoint}"
    )
    return EXIT_OK


def _config_show(args: argparse.Namespace) -> int:
    config = load_config(args.file)
    sys.stdout.write(
        json.dumps(config.to_dict(), indent=2) + "\n" if args.json else config.to_toml()
    )
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from hwquant.app.demo import run_demo
    from hwquant.core.lock import prepare_directory

    prepare_directory(args.out, "--out")  # a file or an unmakeable path: refused before training
    return run_demo(args.out, args.quick)
