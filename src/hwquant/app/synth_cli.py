"""``hwquant synth``: synthesize emitted units with Yosys and regenerate the cost constants.

* ``hwquant synth unit UNIT --param NAME=VALUE ...``: synthesize one unit (the emitters of
  ``hwquant rtl emit``) and print its LUT / FF / CARRY4 / DSP / BRAM counts, and the fitted
  estimate where the unit is one of the swept kinds.
* ``hwquant synth sweep [--out FILE] [--kind KIND ...]``: the whole sweep of
  :mod:`hwquant.rtl.sweep` (a few minutes on one core), fitted and written as JSON; without
  ``--out`` it replaces the shipped ``hwquant/hw/data/synth_costs.json`` (``make synth-costs``).

Exit codes follow ``hwquant.app.command``: 0 done, 2 usage or config error, 1 any other error (a
missing Yosys or a failed synthesis, with Yosys's message).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hwquant.app.command import parser_with_examples, subcommands
from hwquant.hw.synthesized import PARAMS, UNIT_KINDS


def add_command(commands: argparse._SubParsersAction) -> None:
    """Register ``hwquant synth`` with its ``unit`` and ``sweep`` commands."""
    from hwquant.rtl.synth import FAMILIES

    synth = parser_with_examples(
        commands.add_parser,
        "synth",
        help="synthesize units with Yosys; regenerate the cost model's constants",
        description="Synthesize emitted Verilog units with Yosys synth_xilinx and fit the "
        "cost model's per-unit formulas (docs/rtl.md, 'Synthesis and the cost model').",
        examples=[
            "hwquant synth unit sp2_mac --param act_bits=4 --param m1=2 --param m2=1 "
            "--param acc_bits=22",
            "hwquant synth sweep --out synth_costs.json",
        ],
    )
    sub = subcommands(synth)
    unit = parser_with_examples(
        sub.add_parser,
        "unit",
        help="synthesize one unit and print its resources",
        description="Emit UNIT with the given parameters, synthesize it and print its counts.",
        examples=[
            "hwquant synth unit fixed_mac --param act_bits=4 --param weight_bits=4 "
            "--param acc_bits=22 --param style=lut",
        ],
    )
    unit.add_argument("unit", metavar="UNIT", help="an emitter of 'hwquant rtl emit'")
    unit.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE", help="an emitter argument"
    )
    unit.add_argument("--family", default="xc7", choices=FAMILIES, help="synth_xilinx family")
    unit.add_argument("--json", action="store_true", help="print JSON")
    unit.set_defaults(run=_unit)
    sweep = parser_with_examples(
        sub.add_parser,
        "sweep",
        help="synthesize the sweep, fit the formulas, write the cost JSON",
        description="Synthesize every unit of the sweep over its grid of widths, fit the "
        "per-unit cost formulas and write them with every point's counts.",
        examples=["hwquant synth sweep", "hwquant synth sweep --kind sp2_mac --out sp2.json"],
    )
    sweep.add_argument("--out", type=Path, metavar="FILE", help="(default: the shipped file)")
    sweep.add_argument("--kind", action="append", choices=UNIT_KINDS, help="only these kinds")
    sweep.add_argument("--cache", type=Path, metavar="DIR", help="reuse syntheses from DIR")
    sweep.add_argument("--jobs", type=int, default=1, help="Yosys runs at a time (1)")
    sweep.set_defaults(run=_sweep)


def _swept_kind(unit) -> str | None:
    """The sweep kind of an emitted unit, when its fitted formula applies."""
    style = unit.params.get("style")
    kind = f"{unit.name}_{style}" if style else unit.name
    return kind if kind in PARAMS else None


def _kind_params(kind: str, unit, params: dict[str, object]) -> dict[str, int] | None:
    """The widths of ``kind``'s formula, from the unit's emitter arguments."""
    given = dict(unit.params) | params
    if "codebook" in params:
        given["codebook_size"] = len(params["codebook"])
    if "thresholds" in params:
        given["thresholds"] = len(params["thresholds"])
    if "table" in params:
        given["act_levels"] = len(params["table"])
        given["weight_levels"] = len(params["table"][0])
    if "multiplier" in params:
        given["multiplier_bits"] = int(params["multiplier"]).bit_length()
    widths = {name: given.get(name) for name in PARAMS[kind]}
    return widths if all(isinstance(v, int) for v in widths.values()) else None


def _unit(args: argparse.Namespace) -> int:
    from hwquant.app.rtl_cli import emit, parse_params
    from hwquant.hw.mac_cost import DEFAULT_COSTS
    from hwquant.rtl.synth import synthesize

    params = parse_params(args.param)
    unit = emit(args.unit, params)
    res = synthesize(unit, args.family)
    kind = _swept_kind(unit)
    widths = _kind_params(kind, unit, params) if kind else None
    estimate = None
    if widths is not None and DEFAULT_COSTS.fitted is not None:
        estimate = DEFAULT_COSTS.fitted.cost(kind, **widths)
    if args.json:
        print(json.dumps({"top": unit.top, "yosys": res.to_dict(), "estimate": estimate}))
        return 0
    print(f"{unit.top} ({args.family}):")
    for name in ("luts", "ffs", "carry4", "dsps", "brams", "lutram"):
        fitted = f"   (fitted estimate {estimate[name]})" if estimate and name in estimate else ""
        print(f"  {name:7s} {getattr(res, name):6d}{fitted}")
    print("  cells   " + ", ".join(f"{k} {v}" for k, v in sorted(res.cells.items())))
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from hwquant.core.atomic import write_atomic
    from hwquant.hw.synthesized import packaged_path
    from hwquant.rtl.sweep import run_sweep

    doc = run_sweep(args.kind, cache_dir=args.cache, jobs=args.jobs)
    out = args.out or packaged_path()
    write_atomic(out, (json.dumps(doc, indent=1) + "\n").encode())
    for kind, fits in doc["fits"].items():
        worst = ", ".join(f"{res} {fit['max_rel_err']:.1%}" for res, fit in fits.items())
        print(f"{kind}: worst relative error {worst}")
    print(f"wrote {out}")
    return 0
