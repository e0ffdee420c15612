"""``hwquant hw MODEL --device DEV``: the FPGA cost estimate of a model, per layer and in total.

MODEL is a zoo model name (built, prepared and lowered untrained: shapes and widths are all the
estimate needs) or an IntModel file written by ``IntModel.save``. Exit code 0 when the estimate
is printed (a design that does not fit is part of the answer and is said so), 2 for a usage or
config error, 1 for any other error (``hwquant.app.command`` conventions).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hwquant.app.command import parser_with_examples
from hwquant.hw.estimate import DESIGNS
from hwquant.hw.folding import Fold, FoldedDesign
from hwquant.hw.mac_cost import DEFAULT_COSTS, CostTable
from hwquant.ir.intmodel import IntModel

DESIGN_CHOICES = (*DESIGNS, "all")


def add_command(commands: argparse._SubParsersAction) -> None:
    """Register ``hwquant hw`` on the ``hwquant`` subcommand parsers."""
    from hwquant.hw.devices import DEVICES
    from hwquant.hw.solver import DEFAULT_LUT_FRACTION

    hw = parser_with_examples(
        commands.add_parser,
        "hw",
        help="estimate FPGA resources, cycles and throughput of a model",
        description="Estimate LUT/FF/DSP/BRAM use, cycles and images/s of MODEL on an FPGA for "
        "the fixed-only, SP2-only, MSQ (Mix and Match) and fixed+LUT designs, with per-unit costs "
        "fitted to Yosys syntheses of the emitted Verilog (docs/hw.md, docs/rtl.md).",
        examples=[
            "hwquant hw resnet18 --device xc7z020",
            "hwquant hw resnet18 --device xc7z045 --bits 3 --design msq",
            "hwquant hw model.npz --device xczu9eg --input-size 28 --json",
            "hwquant hw resnet18 --device xc7z020 --fold --plot resnet18.png",
        ],
    )
    hw.add_argument("model", metavar="MODEL", help="zoo model name or IntModel file (.npz)")
    hw.add_argument("--device", required=True, help=f"FPGA part: {', '.join(DEVICES)}")
    hw.add_argument("--bits", type=int, default=4, help="inner weight bits of a zoo model (4)")
    hw.add_argument("--act-bits", type=int, help="activation bits of a zoo model (= --bits)")
    hw.add_argument("--design", choices=DESIGN_CHOICES, default="all", help="design(s) to show")
    hw.add_argument("--packing", type=int, default=1, choices=(1, 2), help="MACs per DSP slice")
    hw.add_argument(
        "--lut-fraction",
        type=float,
        default=DEFAULT_LUT_FRACTION,
        help=f"LUT/FF utilisation ceiling for the PEs ({DEFAULT_LUT_FRACTION})",
    )
    hw.add_argument("--clock-mhz", type=float, help="design clock (default: the device's)")
    hw.add_argument("--costs", type=Path, metavar="FILE.json", help="measured unit costs")
    hw.add_argument("--lut-pes", type=int, help="use this many LUT PEs instead of the solver's")
    hw.add_argument("--dsp-slices", type=int, help="use this many DSP slices (default: all)")
    hw.add_argument("--input-size", type=int, default=32, help="input height = width (32)")
    hw.add_argument("--in-channels", type=int, help="input channels (zoo: 3; file: inferred)")
    hw.add_argument("--num-classes", type=int, default=10, help="classes of a zoo model (10)")
    hw.add_argument("--json", action="store_true", help="print the estimate as JSON")
    hw.add_argument(
        "--fold",
        action="store_true",
        help="also estimate one PE x SIMD array per layer (dataflow, FINN-style folding)",
    )
    hw.add_argument(
        "--folding",
        type=Path,
        metavar="FILE.json",
        help='PE and SIMD per layer, {"layer": [pe, simd], ...} (others: solved); implies --fold',
    )
    hw.add_argument("--plot", type=Path, metavar="FILE.png", help="write a plot of the estimate")
    hw.set_defaults(run=run)


def _input_shape(model: IntModel, input_size: int, in_channels: int | None) -> tuple[int, ...]:
    """The input shape of an IntModel file: (C, H, W) when its first layer is a convolution
    (C from its weights unless given), else (features,)."""
    first = model.weight_nodes()[0]
    if first.spatial:
        channels = in_channels or first.weight.shape[1] * first.groups
        return (channels, input_size, input_size)
    return (first.fan_in(),)


def _model_and_shape(
    args: argparse.Namespace, costs: CostTable
) -> tuple[IntModel, tuple[int, ...]]:
    from hwquant import load
    from hwquant.app.zoo import lower_zoo_model
    from hwquant.core.errors import ConfigError
    from hwquant.hw.solver import sp2_share_for
    from hwquant.models import MODEL_NAMES

    if Path(args.model).is_file():
        model = load(args.model)
        return model, _input_shape(model, args.input_size, args.in_channels)
    if args.model not in MODEL_NAMES:
        raise ConfigError(
            f"MODEL {args.model!r} is neither a file nor a zoo model. Fix: give an IntModel "
            f"file or one of {', '.join(MODEL_NAMES)}."
        )
    channels, act_bits = args.in_channels or 3, args.act_bits or args.bits
    share = sp2_share_for(
        args.device,
        args.bits,
        act_bits,
        lut_fraction=args.lut_fraction,
        packing=args.packing,
        costs=costs,
    )
    model = lower_zoo_model(
        args.model,
        args.bits,
        act_bits,
        sp2_share=share,
        num_classes=args.num_classes,
        in_channels=channels,
        input_size=args.input_size,
    )
    return model, (channels, args.input_size, args.input_size)


def run(args: argparse.Namespace) -> int:
    """Handler of ``hwquant hw``."""
    from hwquant.hw.devices import get_device
    from hwquant.hw.estimate import estimate
    from hwquant.hw.render import print_estimate, print_folded

    device = get_device(args.device)  # fail fast, before building a model
    costs = CostTable.from_json(args.costs) if args.costs else DEFAULT_COSTS
    model, shape = _model_and_shape(args, costs)
    result = estimate(
        model,
        device,
        shape,
        designs=DESIGNS if args.design == "all" else (args.design,),
        clock_mhz=args.clock_mhz,
        lut_fraction=args.lut_fraction,
        packing=args.packing,
        costs=costs,
        lut_pes=args.lut_pes,
        dsp_slices=args.dsp_slices,
    )
    folded = None
    if args.fold or args.folding:
        folded = _folded(args, result, costs)
    if args.json:
        doc = result.to_dict()
        if folded:
            doc["folded"] = {name: fd.to_dict() for name, fd in folded.items()}
        print(json.dumps(doc, indent=2))
    else:
        print_estimate(result)
        if folded:
            print_folded(folded)
    if args.plot:
        from hwquant.hw.plot import plot_estimate

        print(f"plot: {plot_estimate(result, args.plot, folded)}")
    return 0


def read_folding(path: Path) -> dict[str, Fold]:
    """A ``{"layer": [pe, simd], ...}`` JSON file as folds.

    Raises:
        FileFormatError: the file is missing, not JSON, or an entry is not two integers.
    """
    from hwquant.core.errors import FileFormatError

    try:
        doc = json.loads(path.read_text())
        return {str(k): Fold(int(v[0]), int(v[1])) for k, v in doc.items() if len(v) == 2}
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise FileFormatError(
            f"folding file '{path}' is not usable ({exc}). Fix: write "
            '{"layer name": [PE, SIMD], ...} with the names of the per-layer table.'
        ) from exc


def _folded(args: argparse.Namespace, result, costs: CostTable) -> dict[str, FoldedDesign]:
    from hwquant.hw.folding import fold_network

    folding = read_folding(args.folding) if args.folding else None
    return {
        name: fold_network(
            result.layers,
            result.device,
            name,
            folding=folding,
            clock_mhz=args.clock_mhz,
            lut_fraction=args.lut_fraction,
            costs=costs,
        )
        for name in result.designs
    }
