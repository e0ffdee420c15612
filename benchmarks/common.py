"""Shared helpers of the benchmark scripts: the machine record and the result file.

Every benchmark writes ``benchmarks/results/<name>.json`` through :func:`write_result`, holding
``{"benchmark", "command", "seed", "machine", "config", "results"}``; ``machine`` is
:func:`machine_record`: what ran it (no host name), on which commit of the repository, when.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hwquant.atomic import write_atomic

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
RESULT_KEYS = ("benchmark", "command", "seed", "machine", "config", "results")
MAX_UNTRACKED = 20


def cpu_model() -> str:
    """The CPU model name from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, sep, value = line.partition(":")
                if sep and key.strip() == "model name":
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(args: Sequence[str], repo: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout


def git_state(repo: Path = REPO_ROOT) -> dict[str, Any]:
    """Commit of ``repo`` (``git rev-parse HEAD``), whether tracked files differ from it, a
    SHA-256 of ``git diff HEAD`` (so that a run on a dirty tree still names what it ran) and the
    untracked files (not ignored) that the commit does not hold."""
    head = _git(["rev-parse", "HEAD"], repo)
    if head is None:
        return {"commit": None, "dirty": None, "diff_sha256": None, "untracked": None}
    diff = _git(["diff", "HEAD", "--no-ext-diff"], repo) or ""
    untracked = (_git(["ls-files", "--others", "--exclude-standard"], repo) or "").split()
    if len(untracked) > MAX_UNTRACKED:
        untracked = [*untracked[:MAX_UNTRACKED], "..."]
    return {
        "commit": head.strip(),
        "dirty": bool(diff),
        "diff_sha256": hashlib.sha256(diff.encode()).hexdigest() if diff else None,
        "untracked": untracked[:MAX_UNTRACKED]
        + (["..."] if len(untracked) > MAX_UNTRACKED else []),
    }


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


_THREAD_ENV = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS")
"""Environment variables that change timings, recorded when set."""


def machine_record(repo: Path = REPO_ROOT) -> dict[str, Any]:
    """What ran the benchmark: platform (no host name), CPU, cores, library versions, the
    repository's commit and the UTC date."""
    record: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "numpy": _version("numpy"),
        "git": git_state(repo),
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if hasattr(os, "sched_getaffinity"):
        record["cpus_usable"] = len(os.sched_getaffinity(0))
    if hasattr(os, "getloadavg"):
        record["load_average_at_start"] = [round(v, 2) for v in os.getloadavg()]
    torch = sys.modules.get("torch")
    if torch is not None:
        record["torch_threads"] = torch.get_num_threads()
    record["env"] = {k: os.environ[k] for k in _THREAD_ENV if k in os.environ}
    return record


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command that ran this process, shell-quoted (``python <script> <args>``)."""
    argv = sys.argv if argv is None else argv
    return shlex.join(["python", *argv])


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def write_result(
    name: str,
    *,
    command: str,
    seed: int,
    config: dict[str, Any],
    results: dict[str, Any],
    machine: dict[str, Any] | None = None,
    path: str | Path | None = None,
) -> Path:
    """Write ``{"benchmark", "command", "seed", "machine", "config", "results"}`` as JSON to
    ``path`` (default ``benchmarks/results/<name>.json``) atomically: a temporary file in the
    same directory, flushed and fsynced, then renamed over the target."""
    path = RESULTS_DIR / f"{name}.json" if path is None else Path(path)
    document = {
        "benchmark": name,
        "command": command,
        "seed": seed,
        "machine": machine_record() if machine is None else machine,
        "config": config,
        "results": results,
    }
    text = json.dumps(_finite(document), indent=2, allow_nan=False) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, text.encode("utf-8"))


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
