"""Provenance of a measurement: what machine, which commit, which command, and the result file.

Every benchmark and ``hwquant bench`` run writes one JSON document through :func:`write_result`,
``{"benchmark", "command", "seed", "machine", "config", "results"}``, where ``machine`` is
:func:`machine_record`: what ran it (no host name), on which commit of the repository, when.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hwquant.core.atomic import write_atomic

RESULT_KEYS = ("benchmark", "command", "seed", "machine", "config", "results")
MAX_UNTRACKED = 20


def file_sha256(path: Path) -> str:
    """Hex sha256 of the bytes of ``path``."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


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


def git_state(repo: Path) -> dict[str, Any]:
    """Commit of ``repo`` (``git rev-parse HEAD``); whether the tree differs from it (tracked
    changes or untracked files that are not ignored); a SHA-256 of ``git diff HEAD`` and of the
    untracked files' names and contents, so that a run on a dirty tree still names what it ran;
    and the untracked files (the first :data:`MAX_UNTRACKED`)."""
    head = _git(["rev-parse", "HEAD"], repo)
    if head is None:
        return {"commit": None, "dirty": None, "diff_sha256": None, "untracked": None}
    diff = _git(["diff", "HEAD", "--no-ext-diff"], repo) or ""
    untracked = (_git(["ls-files", "--others", "--exclude-standard"], repo) or "").splitlines()
    digest = hashlib.sha256(diff.encode())
    for name in untracked:
        digest.update(name.encode())
        with contextlib.suppress(OSError):
            digest.update((repo / name).read_bytes())
    dirty = bool(diff or untracked)
    return {
        "commit": head.strip(),
        "dirty": dirty,
        "diff_sha256": digest.hexdigest() if dirty else None,
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


def machine_record(repo: Path | None = None) -> dict[str, Any]:
    """What ran a measurement: platform (no host name), CPU, cores, library versions, the
    commit of the repository ``repo`` (default: the current directory) and the UTC date."""
    record: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "numpy": _version("numpy"),
        "git": git_state(Path.cwd() if repo is None else repo),
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


def finite(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def write_result(
    name: str,
    *,
    path: str | Path,
    command: str,
    seed: int,
    config: dict[str, Any],
    results: dict[str, Any],
    machine: dict[str, Any] | None = None,
) -> Path:
    """Write ``{"benchmark", "command", "seed", "machine", "config", "results"}`` as JSON to
    ``path`` atomically: a temporary file in the same directory, flushed and fsynced, then
    renamed over the target. NaN and infinities become null."""
    document = {
        "benchmark": name,
        "command": command,
        "seed": seed,
        "machine": machine_record() if machine is None else machine,
        "config": config,
        "results": results,
    }
    text = json.dumps(finite(document), indent=2, allow_nan=False) + "\n"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, text.encode("utf-8"))
