"""``hwquant export``: an IntModel file as QONNX or QDQ ONNX, optionally checked by execution."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from hwquant.app.cli_args import input_shape, positive_int
from hwquant.app.command import parser_with_examples
from hwquant.core.errors import ConfigError

FORMATS = ("qonnx", "qdq")


def add_command(commands: argparse._SubParsersAction) -> None:
    """Register ``hwquant export``."""
    export = parser_with_examples(
        commands.add_parser,
        "export",
        help="write an IntModel as QONNX or QDQ ONNX",
        description=(
            "Export an IntModel (.npz) as QONNX (Quant nodes) or as standard ONNX with QDQ pairs "
            "for onnxruntime: float32 only, every step proved exact, batch size symbolic. "
            "--check runs the graph on a batch of real test images and compares it with the "
            "integer engine, bit for bit (exit 1, no file, if any output differs). See "
            "docs/export/custom_ops.md."
        ),
        examples=[
            "hwquant export runs/q/model.npz --data mnist5k --out model.onnx --check",
            "hwquant export model.npz --format qdq --input-shape 3,32,32 --out m.onnx",
            "hwquant export model.npz --input codes --data digits --out m.onnx --check",
            "hwquant export model.npz --to hls4ml --input-shape 1,28,28 --out hls/",
        ],
    )
    export.add_argument("model", type=Path, metavar="MODEL.npz")
    export.add_argument("--format", choices=FORMATS, default="qonnx")
    export.add_argument(
        "--input-shape",
        type=input_shape,
        metavar="C,H,W",
        help="per-sample input shape (default: the images of --data); a leading batch size is "
        "accepted and ignored: the batch dimension is symbolic",
    )
    export.add_argument(
        "--input",
        choices=("values", "codes"),
        help="graph input: real values (quantized in the graph; the default) or the integer "
        "input codes (always, with --to hls4ml)",
    )
    export.add_argument("--out", required=True, type=Path, metavar="FILE.onnx")
    export.add_argument("--custom-ops", action="store_true", help="write hwquant's custom ops")
    export.add_argument("--check", action="store_true", help="execute and compare with the engine")
    export.add_argument("--data", metavar="NAME", help="data set whose test images --check runs")
    export.add_argument("--data-root", type=Path, metavar="DIR", help="where --data lives")
    export.add_argument(
        "--check-images", type=positive_int, default=256, metavar="N", help="test images to check"
    )
    export.add_argument("--json", action="store_true", help="print the figures as JSON")
    export.add_argument(
        "--to",
        choices=("hls4ml",),
        help="write for a consumer: hls4ml = --out DIR gets model.onnx + hls4ml_config.yml "
        "(the design takes the integer input codes; see docs/deploy_hls4ml.md)",
    )
    export.add_argument(
        "--io-type",
        choices=("io_parallel", "io_stream"),
        help="with --to hls4ml: hls4ml's IOType (default io_parallel)",
    )
    export.add_argument(
        "--force",
        action="store_true",
        help="replace the file --out names (or, with --to hls4ml, its model.onnx and "
        "hls4ml_config.yml) if it exists",
    )
    export.set_defaults(run=_run)


def _images(args: argparse.Namespace) -> torch.Tensor:
    """The first ``--check-images`` test images of ``--data``, normalised as in training."""
    from hwquant.data import BatchLoader, load_dataset

    splits = load_dataset(args.data, args.data_root, progress=False)
    loader = BatchLoader(
        splits.test,
        min(args.check_images, len(splits.test)),
        mean=splits.mean,
        std=splits.std,
        shuffle=False,
        augment=False,
    )
    images, _ = next(iter(loader))
    return images


def _run(args: argparse.Namespace) -> int:
    """Export; with ``--check`` the file is written only once the graph proved exact on real
    images (exit 1, no file, otherwise). The write is atomic, so ``--out`` never holds half a
    graph."""
    import hwquant
    from hwquant.core.atomic import write_atomic
    from hwquant.engine import run
    from hwquant.export import export_qdq, export_qonnx, run_onnxruntime, run_qonnx

    if args.check and not args.data:
        raise ConfigError(
            "--check runs the graph on real test images. Fix: name their data set with --data "
            "(e.g. --data mnist5k)."
        )
    model = hwquant.load(args.model)
    images = _images(args) if args.data else None
    if args.input_shape:
        shape = args.input_shape.sample
        if images is not None and tuple(images.shape[1:]) != shape:
            raise ConfigError(
                f"--input-shape {shape} differs from the {args.data} images "
                f"{tuple(images.shape[1:])}. Fix: drop --input-shape or pick the data set the "
                "model was trained on."
            )
    elif images is not None:
        shape = tuple(images.shape[1:])
    else:
        raise ConfigError("the input shape is unknown. Fix: pass --input-shape or --data.")
    if args.to == "hls4ml":
        from hwquant.export.hls4ml import run_export_command

        return run_export_command(model, (1, *shape), args)
    if args.io_type is not None:
        raise ConfigError(
            f"--io-type {args.io_type} configures hls4ml and has no meaning for an ONNX file. "
            "Fix: add --to hls4ml, or drop --io-type."
        )
    if args.out.exists() and not args.force:
        raise ConfigError(
            f"'{args.out}' already exists. Fix: choose another --out, or pass --force to "
            "replace it."
        )
    quantize_input = args.input != "codes"
    if args.format == "qonnx":
        proto = export_qonnx(
            model, (1, *shape), custom_ops=args.custom_ops, quantize_input=quantize_input
        )
    elif args.custom_ops:
        raise ConfigError(
            "--custom-ops writes hwquant's QONNX decoder ops, which a QDQ graph has no place "
            "for (it holds every scheme's weights as plain integers). Fix: drop --custom-ops "
            "to write QDQ, or write QONNX with --format qonnx --custom-ops."
        )
    else:
        proto = export_qdq(model, (1, *shape), quantize_input=quantize_input)
    figures: dict[str, object] = {
        "file": str(args.out),
        "format": args.format,
        "input": args.input or "values",
        "nodes": len(proto.graph.node),
    }
    if args.check:
        codes = model.quantize_input(images)
        execute = run_qonnx if args.format == "qonnx" else run_onnxruntime
        out = execute(proto, (images if quantize_input else codes.float()).numpy())
        expected = run(model, codes).output.numpy()
        mismatches = int((out != expected).any(axis=tuple(range(1, out.ndim))).sum())
        figures |= {"images": len(images), "mismatches": mismatches, "exact": mismatches == 0}
    figures["written"] = figures.get("exact") is not False
    if figures["written"]:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(args.out, proto.SerializeToString())
    print(json.dumps(figures) if args.json else "\n".join(f"{k}: {v}" for k, v in figures.items()))
    return 1 if figures.get("exact") is False else 0
