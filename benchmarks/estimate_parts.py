"""The whole-design estimate beside a synthesized netlist, block by block (issue 16).

For each ``--entry NAME DESIGN_DIR IMPL_DIR`` (a design built by :mod:`hwquant.rtl.network`
and its ECP5 implementation directory, as ``network_build`` leaves them: ``synth.json``, the
flattened ``synth_ecp5`` netlist, and ``stat.json``): the estimate of every block and edge
(:func:`hwquant.rtl.network.estimate.estimate_design`) beside the netlist's cells of that block
or edge. A flattened netlist keeps each cell's hierarchical name, ``u_b<k>.…`` for the k-th
block of design.json and ``e<k>_….…`` for the k-th edge (:mod:`hwquant.rtl.network.top`), so
the attribution is of the netlist that was measured, cross-module optimisation included; the
few cells Yosys names on its own are "(unattributed)". Counts are in the estimate's units
(:func:`hwquant.rtl.implement.synth_utilisation`: a CCU2C two LUT4s, a TRELLIS_DPR16X4 four).

``python -m benchmarks.estimate_parts --entry digits-msq-ecp5 runs/x/design runs/x/impl ...``
writes ``benchmarks/results/estimate_parts.json``. The design directory must hold the RTL
that was synthesized (its ``rtl_sha256`` where recorded); pass a rebuilt one only when its
Verilog is byte-identical (``--rebuilt`` records that it was checked so).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks.common import command_line, write_result
from hwquant.rtl.implement import parse_stat
from hwquant.rtl.network.estimate import estimate_design

NAME = "estimate_parts"
UNITS = {
    "LUT4": (1, 0, 0, 0),
    "CCU2C": (2, 0, 0, 0),
    "TRELLIS_DPR16X4": (4, 0, 0, 0),
    "MULT18X18D": (0, 1, 0, 0),
    "DP16KD": (0, 0, 1, 0),
    "TRELLIS_FF": (0, 0, 0, 1),
}
"""ECP5 cell -> (LUT4s, multipliers, block RAMs, flip-flops) it counts as."""
UNATTRIBUTED = "(unattributed)"


def attribute(record: dict, netlist: dict, top: str = "hwquant_top") -> dict[str, list[int]]:
    """``[luts, dsps, brams, ffs]`` of the flattened ``netlist``'s cells per block and edge
    of the design ``record`` (module docstring)."""
    blocks = [b["name"] for b in record["blocks"]]
    edges = [f"edge {e['from']} -> {e['to']}" for e in record["edges"]]
    parts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for name, cell in netlist["modules"][top]["cells"].items():
        units = UNITS.get(cell["type"])
        if units is None:
            continue
        head = name.lstrip("\\").split(".")[0] if "." in name else ""
        index = head[1:].split("_")[0]
        if head.startswith("u_b") and head[3:].isdigit():
            key = blocks[int(head[3:])]
        elif head.startswith("e") and index.isdigit():
            key = edges[int(index)]
        else:
            key = UNATTRIBUTED
        parts[key] = [a + b for a, b in zip(parts[key], units, strict=True)]
    return dict(parts)


def compare(design: Path, impl: Path) -> dict[str, Any]:
    """One entry: synthesized and estimated totals, their errors and the parts side by side
    (``[luts, dsps, brams, ffs]``)."""
    record = json.loads((design / "design.json").read_text())
    synth = parse_stat((impl / "stat.json").read_text(), "ecp5")
    est = estimate_design(record, "ecp5").to_dict()
    totals = {"luts": synth.luts, "dsps": synth.dsps, "brams": synth.brams, "ffs": synth.ffs}
    parts = attribute(record, json.loads((impl / "synth.json").read_text()))
    return {
        "synthesized": totals,
        "estimate": {k: est[k] for k in totals},
        "error_pct": {
            k: round(100 * (est[k] - v) / v, 1) if v else None for k, v in totals.items()
        },
        "parts": {
            key: {"synthesized": parts.get(key, [0, 0, 0, 0]), "estimate": est["parts"].get(key)}
            for key in dict.fromkeys([*est["parts"], *parts])
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--entry",
        nargs=3,
        action="append",
        required=True,
        metavar=("NAME", "DESIGN_DIR", "IMPL_DIR"),
        help="a design directory and its implementation directory (synth.json, stat.json)",
    )
    parser.add_argument(
        "--rebuilt",
        action="store_true",
        help="the design directories were rebuilt from the entries' models and their Verilog "
        "checked byte-identical to the synthesized one (recorded in the result)",
    )
    parser.add_argument(
        "--note",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "TEXT"),
        help="a note recorded with entry NAME (how its design or netlist was obtained)",
    )
    args = parser.parse_args(argv)
    results = {name: compare(Path(d), Path(i)) for name, d, i in args.entry}
    for name, text in args.note:
        results[name]["note"] = text
    for name, entry in results.items():
        print(name, entry["synthesized"], entry["estimate"], entry["error_pct"])
    write_result(
        NAME,
        command=command_line(),
        seed=0,  # nothing random: the seed field of every result
        config={"entries": args.entry, "rebuilt_designs_checked_identical": args.rebuilt},
        results=results,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
