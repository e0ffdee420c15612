"""Per-round-trip result files, shared by the drivers of every environment (stdlib only: the
hls4ml and FINN environments have no hwquant, so :mod:`hwquant.core.atomic` is loaded from its
file, which imports nothing else of hwquant).

Each driver writes one ``<model dir>/result_<consumer>.json`` per round trip, atomically, and
skips a round trip whose file exists, so a stopped ``make interop`` resumes where it stopped.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

_ATOMIC = Path(__file__).resolve().parents[2] / "src" / "hwquant" / "core" / "atomic.py"


def _write_atomic():
    spec = importlib.util.spec_from_file_location("_hwquant_atomic", _ATOMIC)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_atomic


def result_path(model_dir: Path, consumer: str) -> Path:
    """Where the round trip of ``consumer`` on the model of ``model_dir`` keeps its result."""
    return Path(model_dir) / f"result_{consumer}.json"


def done(model_dir: Path, consumer: str) -> bool:
    """Whether that round trip has finished (its result file exists)."""
    finished = result_path(model_dir, consumer).exists()
    if finished:
        print(f"{model_dir.name} {consumer}: done before, skipped", file=sys.stderr)
    return finished


def save(model_dir: Path, consumer: str, result: dict[str, Any]) -> None:
    """Write the result atomically and print it."""
    text = json.dumps(result, indent=2) + "\n"
    _write_atomic()(result_path(model_dir, consumer), text.encode())
    print(model_dir.name, consumer, json.dumps(result))
