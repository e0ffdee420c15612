"""``hwquant rtl``: emit a unit's Verilog, export a model's golden vectors, replay testbenches.

* ``hwquant rtl emit UNIT --param NAME=VALUE ... -o DIR``: write ``<top>.v`` and ``<top>.json``
  (parameters and ports) of one registered unit (:func:`hwquant.rtl.unit.emitters`: the
  generic units and each scheme's MAC);
* ``hwquant rtl golden MODEL.npz -o DIR``: per weight layer the engine's vectors (``.npy``,
  ``.hex``) and a replay testbench of its processing array
  (:func:`hwquant.rtl.golden.export_golden`);
* ``hwquant rtl sim DIR ...``: run testbench directories (or every one a golden export's
  ``manifest.json`` lists) in iverilog; exit 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hwquant.app.cli_args import input_shape, positive_int
from hwquant.app.command import parser_with_examples, subcommands
from hwquant.core.errors import ConfigError, FileFormatError
from hwquant.rtl.unit import Unit, emitters, get_emitter


def parse_value(text: str) -> object:
    """A ``--param`` value: ``true``/``false``, an integer, a comma list of integers, rows of
    such lists separated by ``;`` (a table), or a plain string (``style=lut``)."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        if ";" in text:
            return [[int(v) for v in row.split(",")] for row in text.split(";")]
        if "," in text:
            return [int(v) for v in text.split(",")]
        return int(text)
    except ValueError:
        return text


def parse_params(items: list[str]) -> dict[str, object]:
    """``NAME=VALUE`` strings as keyword arguments."""
    params = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--param {item!r} is not NAME=VALUE. Fix: e.g. --param act_bits=4.")
        params[name] = parse_value(value)
    return params


def emit(name: str, params: dict[str, object]) -> Unit:
    """Build unit ``name`` from keyword ``params``, naming a wrong or missing parameter."""
    if name not in emitters():
        raise ConfigError(f"unknown unit {name!r}. Fix: use one of {', '.join(emitters())}.")
    try:
        return get_emitter(name)(**params)
    except TypeError as exc:
        import inspect

        signature = inspect.signature(get_emitter(name))
        raise ConfigError(
            f"{name} cannot take parameters {sorted(params)} ({exc}). Fix: pass "
            f"--param NAME=VALUE for each of {', '.join(signature.parameters)}."
        ) from exc


def add_command(commands: argparse._SubParsersAction) -> None:
    """Register the ``rtl`` subcommand and its ``emit``, ``golden`` and ``sim`` commands."""
    rtl = parser_with_examples(
        commands.add_parser,
        "rtl",
        help="emit Verilog units, export golden vectors, simulate testbenches",
        description="Generated Verilog of each scheme's processing element, checked bit for "
        "bit against the integer engine in iverilog.",
        examples=[
            "hwquant rtl emit fixed_mac --param act_bits=4 --param weight_bits=4 "
            "--param acc_bits=16 -o rtl/",
            "hwquant rtl golden model.npz --input-shape 1,28,28 -o golden/",
            "hwquant rtl sim golden/",
        ],
    )
    sub = subcommands(rtl)
    emit_parser = parser_with_examples(
        sub.add_parser,
        "emit",
        help="write one unit's Verilog",
        description=f"Write UNIT's Verilog and a JSON of its parameters and ports. Units: "
        f"{', '.join(emitters())}.",
        examples=[
            "hwquant rtl emit sp2_mac --param act_bits=4 --param m1=2 --param m2=1 "
            "--param acc_bits=16 -o rtl/",
            "hwquant rtl emit codebook_mac --param act_bits=4 --param codebook=-9,-2,3,8 "
            "--param grid_bits=5 --param acc_bits=16 --param style=lut -o rtl/",
        ],
    )
    emit_parser.add_argument("unit", metavar="UNIT", help=", ".join(emitters()))
    emit_parser.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE", help="an emitter argument"
    )
    emit_parser.add_argument("-o", "--out", type=Path, required=True, metavar="DIR")
    emit_parser.set_defaults(run=_emit)

    golden = parser_with_examples(
        sub.add_parser,
        "golden",
        help="export per-layer golden vectors and replay testbenches",
        description="Run a lowered IntModel on input codes and write, per weight layer, the "
        "engine's input, weight, accumulator and output (.npy and $readmemh .hex) and a "
        "testbench that replays them through the layer's PE x SIMD array.",
        examples=[
            "hwquant rtl golden model.npz --input-shape 1,28,28 --images 2 -o golden/",
            "hwquant rtl golden model.npz --inputs codes.npy --max-pe 4 --max-simd 8 -o golden/",
        ],
    )
    golden.add_argument("model", type=Path, metavar="MODEL.npz", help="a saved IntModel")
    golden.add_argument("-o", "--out", type=Path, required=True, metavar="DIR")
    source = golden.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--inputs", type=Path, metavar="CODES.npy", help="integer input codes [N, C, H, W]"
    )
    source.add_argument(
        "--input-shape",
        type=input_shape,
        metavar="C,H,W",
        help="random input codes of this per-image shape (seeded); N,C,H,W gives N images",
    )
    golden.add_argument(
        "--images", type=positive_int, help="random images (default 1, or the N of N,C,H,W)"
    )
    golden.add_argument("--seed", type=int, default=0, help="seed of the random codes")
    golden.add_argument(
        "--pixels", type=positive_int, default=16, help="output pixels each bench replays"
    )
    golden.add_argument(
        "--max-pe",
        type=positive_int,
        default=8,
        help="PEs per array: the largest divisor of C_out up to this",
    )
    golden.add_argument(
        "--max-simd",
        type=positive_int,
        default=16,
        help="SIMD lanes: the largest divisor of K up to this",
    )
    golden.set_defaults(run=_golden)

    sim = parser_with_examples(
        sub.add_parser,
        "sim",
        help="run testbench directories in iverilog",
        description="Compile and run each testbench directory (one holding tb.v) or every "
        "testbench a golden export's manifest.json lists; exit 1 on any mismatch.",
        examples=["hwquant rtl sim golden/", "hwquant rtl sim golden/classifier.fixed.tb"],
    )
    sim.add_argument("dirs", type=Path, nargs="+", metavar="DIR")
    sim.set_defaults(run=_sim)


def _emit(args: argparse.Namespace) -> int:
    unit = emit(args.unit, parse_params(args.param))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{unit.top}.v").write_text(unit.verilog)
    ports = [vars(p) for p in unit.ports]
    record = {"unit": unit.name, "top": unit.top, "params": dict(unit.params), "ports": ports}
    (args.out / f"{unit.top}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out / unit.top}.v")
    return 0


def _input_codes(args: argparse.Namespace, model):
    import numpy as np
    import torch

    from hwquant.core.intmath import qrange

    if args.inputs is not None:
        if args.images is not None:
            raise ConfigError(
                f"--images {args.images} sets the number of random images, but --inputs gives "
                "the codes themselves. Fix: drop --images, or use --input-shape."
            )
        codes = np.load(args.inputs)
        if not np.issubdtype(codes.dtype, np.integer):
            raise FileFormatError(
                f"'{args.inputs}' holds {codes.dtype} values, not integer codes. Fix: save "
                "int_model.quantize_input(images).numpy()."
            )
        return torch.from_numpy(codes.astype(np.int64))
    shape = args.input_shape
    if shape.batch is not None and args.images not in (None, shape.batch):
        raise ConfigError(
            f"--input-shape names {shape.batch} images and --images {args.images}. Fix: give "
            f"the per-image shape {','.join(map(str, shape.sample))} with --images, or drop "
            "--images."
        )
    images = args.images or shape.batch or 1
    lo, hi = qrange(model.input.bits, model.input.signed)
    generator = torch.Generator().manual_seed(args.seed)
    return torch.randint(lo, hi + 1, (images, *shape.sample), generator=generator)


def _golden(args: argparse.Namespace) -> int:
    from hwquant.ir.intmodel import load
    from hwquant.rtl.golden import export_golden

    model = load(args.model)
    codes = _input_codes(args, model)
    benches = export_golden(
        model, codes, args.out, pixels=args.pixels, max_pe=args.max_pe, max_simd=args.max_simd
    )
    print(
        f"wrote golden vectors of {len(model.weight_nodes())} layers and {len(benches)} "
        f"testbenches to {args.out}"
    )
    return 0


def _bench_dirs(paths: list[Path]) -> list[Path]:
    dirs = []
    for path in paths:
        manifest = path / "manifest.json"
        if manifest.is_file():
            entries = json.loads(manifest.read_text())
            dirs += [path / t["dir"] for e in entries for t in e["testbenches"]]
        elif (path / "tb.v").is_file():
            dirs.append(path)
        else:
            raise FileFormatError(
                f"'{path}' holds neither tb.v nor manifest.json. Fix: pass a directory written "
                "by `hwquant rtl golden`."
            )
    return dirs


def _sim(args: argparse.Namespace) -> int:
    from hwquant.rtl.simulate import run_directory
    from hwquant.rtl.testbench import TESTBENCH_TOP

    failed = 0
    for directory in _bench_dirs(args.dirs):
        log = run_directory(directory, TESTBENCH_TOP)
        _, errors, checks = log.strip().splitlines()[-1].split()
        for line in log.splitlines():
            if line.startswith("MISMATCH"):
                print(f"{directory.name}: {line}")
        status = "PASS" if errors == "0" else "FAIL"
        failed += status == "FAIL"
        print(f"{directory}: {status} ({checks} checks, {errors} mismatches)")
    return 1 if failed else 0
