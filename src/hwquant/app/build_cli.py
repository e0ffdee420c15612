"""``hwquant build`` and ``hwquant sim``: a whole-network accelerator, and its check on images.

* ``hwquant build MODEL.npz --device DEV -o DIR [--folding F.json] [--simulate N]``: write the
  design of an IntModel (:func:`hwquant.rtl.network.build_design`) or a TableModel
  (:func:`hwquant.schemes.tables.network.build_table_design`); with ``--simulate N`` also run
  it on the first ``N`` test images of ``--dataset`` as ``hwquant sim`` does;
* ``hwquant sim DIR --images N --dataset NAME``: simulate a built design; exit 1 with the first
  differing output when any output differs from the integer engine, or when a measured cycle
  count differs from design.json's prediction.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from hwquant.app.command import parser_with_examples
from hwquant.app.hw_cli import read_folding
from hwquant.core.errors import ConfigError, HwquantError
from hwquant.ir.intmodel import IntModel
from hwquant.rtl.network.simulate import SIMULATORS, CodeModel
from hwquant.schemes import load_lowered


def add_command(commands: argparse._SubParsersAction) -> None:
    """Register ``build`` and ``sim`` on the ``hwquant`` subcommand parser."""
    build = parser_with_examples(
        commands.add_parser,
        "build",
        help="build a streaming Verilog accelerator of a whole IntModel",
        description="Write DIR/rtl/*.v (top module hwquant_top), the weight ROM images and "
        "DIR/design.json (folding, widths, predicted latency and interval in cycles).",
        examples=[
            "hwquant build runs/demo/llsq/int_model.npz --device lfe5u-85f -o build/llsq",
            "hwquant build model.npz --device ice40up5k -o build/up5k --folding fold.json",
            "hwquant build model.npz --device lfe5u-85f -o build/x --simulate 100 --dataset digits",
        ],
    )
    build.add_argument(
        "model", type=Path, metavar="MODEL.npz", help="a lowered IntModel or TableModel"
    )
    build.add_argument("--device", required=True, help="FPGA part (hwquant.hw.devices)")
    build.add_argument("-o", "--out", required=True, type=Path, metavar="DIR")
    build.add_argument(
        "--folding",
        type=Path,
        metavar="FILE.json",
        help='PE and SIMD per weight layer, {"layer": [pe, simd], ...}; others are chosen',
    )
    build.add_argument(
        "--target-ii",
        type=int,
        metavar="CYCLES",
        help="choose the cheapest folding whose interval is at most CYCLES per image "
        "(default: the fastest folding that fits the device)",
    )
    build.add_argument("--input-size", type=int, help="input height = width (default: inferred)")
    build.add_argument("--force", action="store_true", help="replace a design already in DIR")
    build.add_argument("--simulate", type=int, metavar="N", help="then simulate N test images")
    _sim_options(build)
    build.set_defaults(run=_build)

    sim = parser_with_examples(
        commands.add_parser,
        "sim",
        help="simulate a built design on test images against the integer engine",
        description="Run DIR's design on real test images; exit 1 on any output that differs "
        "from the integer engine or a cycle count that differs from design.json.",
        examples=["hwquant sim build/llsq --images 100 --dataset digits"],
    )
    sim.add_argument("design", type=Path, metavar="DIR")
    sim.add_argument("--images", type=int, default=10, metavar="N")
    _sim_options(sim)
    sim.set_defaults(run=_sim)


def _sim_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="digits", help="test images (default: digits)")
    parser.add_argument("--simulator", default="auto", choices=SIMULATORS)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _build(args: argparse.Namespace) -> int:
    from hwquant.rtl.network.design import build_design
    from hwquant.schemes.tables.model import TableModel
    from hwquant.schemes.tables.network import build_table_design

    folding = read_folding(args.folding) if args.folding else None
    model = load_lowered(args.model)
    options = {"folding": folding, "input_size": args.input_size, "overwrite": args.force}
    if not isinstance(model, TableModel):
        design = build_design(model, args.device, args.out, target_ii=args.target_ii, **options)
    elif args.target_ii is not None:
        raise ConfigError(
            "--target-ii: table models have no interval-driven folding yet. Fix: leave it out "
            "(the folding fills the device) or give the folding with --folding."
        )
    else:
        design = build_table_design(model, args.device, args.out, **options)
    if not args.json:
        print(
            f"design in {args.out}: {len(design.network.blocks)} blocks, predicted latency "
            f"{design.latency_cycles} cycles, interval {design.ii_cycles} cycles per image"
        )
    if args.simulate is None:
        if args.json:
            print(json.dumps(design.record, indent=2))
        return 0
    args.design, args.images = args.out, args.simulate
    return _sim(args)


def _sim(args: argparse.Namespace) -> int:
    from hwquant.rtl.network.simulate import simulate_design
    from hwquant.schemes.tables.model import TableModel
    from hwquant.schemes.tables.network import TableCodeModel

    if not (args.design / "design.json").is_file():
        raise HwquantError(
            f"'{args.design}' holds no design.json. Fix: build one with hwquant build -o DIR."
        )
    model = load_lowered(args.design / "model.npz")
    if isinstance(model, TableModel):
        model = TableCodeModel(model)
    codes = dataset_codes(model, args.dataset, args.images)
    report = simulate_design(args.design, codes, args.simulator, model)
    summary = report.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"{report.outputs}/{report.images} images simulated ({report.simulator}): "
            f"{len(report.mismatches)} mismatching output fields; latency "
            f"{report.latency_cycles} cycles (predicted {report.predicted_latency}), interval "
            f"{summary['ii_cycles']} (predicted {report.predicted_ii})"
        )
    if not report.exact:
        raise HwquantError(
            f"the design differs from the integer engine: first difference {report.mismatches[0]}"
            f" ({len(report.mismatches)} in all). Fix: report it with DIR/design.json."
        )
    if not report.cycles_match:
        raise HwquantError(
            f"measured latency {report.latency_cycles} / intervals {summary['ii_cycles']} "
            f"cycles differ from the predicted {report.predicted_latency} / "
            f"{report.predicted_ii}. Fix: report it with DIR/design.json."
        )
    return 0


def dataset_codes(model: IntModel | CodeModel, dataset: str, images: int) -> torch.Tensor:
    """Input codes ``[images, C, H, W]`` of the first ``images`` test images of ``dataset``
    (a :func:`hwquant.data.load_dataset` name), normalised with the training split's mean and
    standard deviation as training does, then quantized by the model's input quantizer."""
    from hwquant.data import load_dataset
    from hwquant.data.batches import BatchLoader

    splits = load_dataset(dataset, progress=False)
    if not 1 <= images <= len(splits.test):
        raise ConfigError(
            f"--images {images}: the {dataset} test split has {len(splits.test)} images. Fix: "
            f"use 1..{len(splits.test)}."
        )
    loader = BatchLoader(
        splits.test, images, mean=splits.mean, std=splits.std, shuffle=False, augment=False
    )
    x, _ = next(iter(loader))
    return model.quantize_input(x[:images])
