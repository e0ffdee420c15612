"""``hwquant tables MODEL_FILE [--json]``: the compactness measures of a saved table model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hwquant.app.command import parser_with_examples
from hwquant.schemes.tables.compactness import compactness
from hwquant.schemes.tables.model import load_tables

_COLUMNS = ("layer", "kind", "act_entries", "weight_entries", "entries", "distinct",
            "distinct_magnitudes", "entry_bits", "bits", "bits_sign_symmetric")  # fmt: skip


def add_command(commands: argparse._SubParsersAction) -> None:
    """Register the ``tables`` subcommand."""
    parser = parser_with_examples(
        commands.add_parser,
        "tables",
        help="table sizes of a lowered table-unit model",
        description="Print the per-layer and network compactness of a TableModel file "
        "(entries |A|·|W|, distinct entries, distinct magnitudes with sign symmetry, bits).",
        examples=["hwquant tables model_tables.npz", "hwquant tables model_tables.npz --json"],
    )
    parser.add_argument("file", type=Path, metavar="MODEL_FILE", help="a saved TableModel")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    measures = compactness(load_tables(args.file))
    if args.json:
        print(json.dumps(measures, indent=2))
        return 0
    rows = [[str(row[c]) for c in _COLUMNS] for row in measures["layers"]]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(_COLUMNS)]
    for line in [list(_COLUMNS), *rows]:
        print("  ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True)))
    for key, value in measures.items():
        if key != "layers":
            print(f"{key}: {value}")
    return 0
