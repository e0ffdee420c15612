"""Shared helpers of the benchmark scripts: result paths, timing and printing.

Every benchmark writes ``benchmarks/results/<name>.json`` through :func:`write_result` (the
document and machine record of :mod:`hwquant.core.provenance`).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hwquant.core import provenance
from hwquant.core.provenance import RESULT_KEYS, command_line, git_state, machine_record

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"

__all__ = ["RESULT_KEYS", "command_line", "git_state", "machine_record"]


def write_result(name: str, *, path: str | Path | None = None, **fields: Any) -> Path:
    """:func:`hwquant.core.provenance.write_result` to ``path`` (default
    ``benchmarks/results/<name>.json``)."""
    return provenance.write_result(
        name, path=RESULTS_DIR / f"{name}.json" if path is None else path, **fields
    )


@dataclasses.dataclass
class ResultRecorder:
    """A long benchmark's result file, rewritten after every finished piece of work so that the
    file on disk always holds what has finished. The machine record and the start time are
    taken when the recorder is made (make it after ``torch.set_num_threads``)."""

    name: str
    command: str
    seed: int
    path: str | Path | None = None
    machine: dict[str, Any] = dataclasses.field(default_factory=machine_record)
    started: float = dataclasses.field(default_factory=time.perf_counter)

    def save(self, config: dict[str, Any], results: dict[str, Any]) -> Path:
        """Stamp ``results["total_wall_seconds"]`` (since the start) and :func:`write_result`."""
        results["total_wall_seconds"] = round(time.perf_counter() - self.started, 1)
        return write_result(
            self.name,
            command=self.command,
            seed=self.seed,
            config=config,
            results=results,
            machine=self.machine,
            path=self.path,
        )


def interleaved_median_seconds(
    variants: dict[str, Callable[[], object]], rounds: int
) -> dict[str, float]:
    """Median wall time of each variant over ``rounds`` rounds, under ``torch.inference_mode``.

    Every variant runs once as a warm-up; then each round runs every variant once, in turn, so
    that the load of a shared machine falls on all of them alike.
    """
    import torch

    times: dict[str, list[float]] = {name: [] for name in variants}
    with torch.inference_mode():
        for fn in variants.values():
            fn()  # warm-up
        for _ in range(rounds):
            for name, fn in variants.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def print_results(results: dict[str, Any]) -> None:
    """One ``key: value`` line per result, floats to three decimals."""
    for key, value in results.items():
        print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")
