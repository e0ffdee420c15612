"""``hwquant export``: an IntModel file as QONNX or QDQ ONNX, optionally checked by execution."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from hwquant.errors import ConfigError

FORMATS = ("qonnx", "qdq")


def add_command(commands: argparse._SubParsersAction) -> None:
    """Register ``hwquant export``."""
    from hwquant.cli import _parser

    export = _parser(
        commands.add_parser,
        "export",
        help="write an IntModel as QONNX or QDQ ONNX",
        description=(
            "Export an IntModel (.npz) as QONNX (Quant nodes; --custom-ops for MSQ/codebook "
            "layers) or as standard ONNX with QDQ pairs for onnxruntime. --check runs the graph "
            "on random inputs and compares it with the integer engine, bit for bit (exit 1 if "
            "they differ). See docs/export/custom_ops.md."
        ),
        examples=[
            "hwquant export runs/q/model.npz --input-shape 1,1,8,8 --out model.onnx",
            "hwquant export model.npz --format qdq --input-shape 1,3,32,32 --out m.onnx --check",
            "hwquant export model.npz --to hls4ml --input-shape 1,1,28,28 --out hls/ --io-type io_stream",
        ],
    )
    export.add_argument("model", type=Path, metavar="MODEL.npz")
    export.add_argument("--format", choices=FORMATS, default="qonnx")
    export.add_argument("--input-shape", required=True, metavar="N,C,H,W", help="input shape")
    export.add_argument("--out", required=True, type=Path, metavar="FILE.onnx")
    export.add_argument("--custom-ops", action="store_true", help="write hwquant's custom ops")
    export.add_argument("--check", action="store_true", help="execute and compare with the engine")
    export.add_argument("--json", action="store_true", help="print the figures as JSON")
    export.add_argument(
        "--to",
        choices=("hls4ml",),
        help="write for a consumer: hls4ml = --out DIR gets model.onnx + hls4ml_config.yml",
    )
    export.add_argument("--io-type", choices=("io_parallel", "io_stream"), default="io_parallel")
    export.set_defaults(run=_run)


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) < 2 or min(shape) < 1:
        raise ConfigError(
            f"--input-shape {text!r} is not a shape. Fix: give positive sizes such as 1,1,28,28."
        )
    return shape


def _run(args: argparse.Namespace) -> int:
    """Export; with ``--check`` the file is written only once the graph proved exact (exit 1,
    no file, otherwise). The write is atomic, so ``--out`` never holds half a graph."""
    import hwquant
    from hwquant.atomic import write_atomic
    from hwquant.engine import run
    from hwquant.export import export_qdq, export_qonnx, run_onnxruntime, run_qonnx

    model = hwquant.load(args.model)
    shape = _shape(args.input_shape)
    if args.to == "hls4ml":
        from hwquant.export.hls4ml import run_export_command

        return run_export_command(model, shape, args)
    if args.format == "qonnx":
        proto = export_qonnx(model, shape, custom_ops=args.custom_ops)
    else:
        proto = export_qdq(model, shape)
    figures: dict[str, object] = {
        "file": str(args.out),
        "format": args.format,
        "nodes": len(proto.graph.node),
    }
    if args.check:
        x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
        execute = run_qonnx if args.format == "qonnx" else run_onnxruntime
        out = execute(proto, x.numpy())
        expected = model.dequantize(run(model, model.quantize_input(x)).output).numpy()
        figures["exact"] = bool(np.array_equal(out, expected))
    figures["written"] = figures.get("exact") is not False
    if figures["written"]:
        write_atomic(args.out, proto.SerializeToString())
    print(json.dumps(figures) if args.json else "\n".join(f"{k}: {v}" for k, v in figures.items()))
    return 1 if figures.get("exact") is False else 0
