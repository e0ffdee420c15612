"""Faults injected on purpose: killed training runs, failed checkpoint writes, damaged files.

Each trial returns what happened and what survived, and asserts nothing itself: the tests and
``make reliability`` (``benchmarks/reliability.py``) count the outcomes and require

* **kills**: after every SIGKILL the newest completed checkpoint (or a newer one) is still
  loadable (``resume_path`` + ``load_checkpoint``), and a run resumed after every kill ends with
  weights equal (``torch.equal``) to those of a run that was never interrupted;
* **failed writes**: :class:`~hwquant.core.checkpoint.CheckpointWriteError` naming the file and the
  fix, the previous checkpoint loadable and unchanged under its own name, no temporary file left;
* **damaged files**: :class:`~hwquant.core.errors.FileFormatError` naming the file, or (IntModel
  files, whose zip container has bytes nobody reads) a model equal to the one saved.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import queue
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch

from hwquant.app.reliability.killpoint import EVENTS
from hwquant.core.checkpoint import (
    CheckpointWriteError,
    load_checkpoint,
    resume_path,
    save_checkpoint,
)
from hwquant.core.errors import FileFormatError, HwquantError
from hwquant.ir.intmodel import IntModel, IntNode, WeightEncoding

CHILD_ENV = {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "MKL_NUM_THREADS": "1"}
"""Environment of the training processes: one thread each (deterministic and frugal)."""
KILL_POINTS = (*EVENTS, "delay")
"""Where a kill is aimed: an event of :mod:`~hwquant.app.reliability.killpoint`, or a random
delay."""
RUN_TIMEOUT = 300.0


class SilentWrongResult(AssertionError):
    """A loader or quantizer returned a result that differs from the reference, without error."""


# -- kills ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Attempt:
    """One training process: how it ended and the checkpoints it completed."""

    killed: bool
    aim: str  # the kill point aimed at ("none": run to the end)
    landed: str  # the last event the process reported before it ended
    saved: int | None  # global step of the newest completed checkpoint, if any
    returncode: int
    stderr: str


@dataclass(frozen=True)
class KillTrial:
    """A run killed ``len(kills)`` times and resumed after each kill."""

    kills: list[Attempt]
    lost: list[str]  # one line per kill after which the newest completed checkpoint was gone
    exact: bool  # final weights equal to the uninterrupted run's, tensor by tensor
    finished: bool


def train_command(config: Path, out_dir: Path, aim: str, target: int, resume: bool) -> list[str]:
    """The probed ``hwquant train`` command (see :mod:`hwquant.app.reliability.killpoint`)."""
    event = "none" if aim == "delay" else aim
    return [
        sys.executable,
        "-m",
        "hwquant.app.reliability.killpoint",
        event,
        str(target),
        "--",
        "train",
        "--config",
        str(config),
        "--out",
        str(out_dir),
        "--no-progress",
        *(["--resume"] if resume else []),
    ]


def run_training(
    config: Path,
    out_dir: Path,
    *,
    aim: str = "none",
    target: int = 0,
    delay: float | None = None,
    resume: bool = False,
) -> Attempt:
    """Run ``hwquant train`` and SIGKILL it at event ``aim`` (its ``target``-th occurrence) or
    after ``delay`` seconds; ``aim="none"`` lets it finish."""
    env = {**os.environ, **CHILD_ENV, "PYTHONPATH": _python_path()}
    command = train_command(config, out_dir, aim, target, resume)
    lines: queue.Queue[str | None] = queue.Queue()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
        deadline = time.monotonic() + (delay if delay is not None else RUN_TIMEOUT)
        killed, landed, saved = False, "start", None
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = "paused delay"
            if line is None:
                break
            word, _, value = line.partition(" ")
            if word == "saved":
                saved = int(value)
            elif word == "paused":
                proc.kill()
                killed = True
                break
            elif word in EVENTS:
                landed = word
        returncode = proc.wait(timeout=RUN_TIMEOUT)
        err.seek(0)
        stderr = err.read()
    return Attempt(killed, aim, landed, saved, returncode, stderr)


def _pump(stream: Any, lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def _python_path() -> str:
    """The child processes import the same hwquant as this one."""
    import hwquant

    source = str(Path(hwquant.__file__).resolve().parent.parent)
    return os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH")) if p)


def final_weights(out_dir: Path) -> dict[str, torch.Tensor]:
    """The model weights and buffers of ``out_dir/last.pt``."""
    return load_checkpoint(out_dir / "last.pt")["model"]


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Same names, and every tensor equal (``torch.equal``: same shape and values)."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def survivor_step(out_dir: Path) -> int | None:
    """Global step of the checkpoint a resumed run would start from (None: none there)."""
    path = resume_path(out_dir / "last.pt")
    return None if path is None else int(load_checkpoint(path)["global_step"])


def kill_trial(
    config: Path,
    out_dir: Path,
    reference: dict[str, torch.Tensor],
    rng: random.Random,
    kills: int,
    max_target: int = 12,
) -> KillTrial:
    """Kill a run ``kills`` times at random points, resuming after each, then let it finish.

    A kill aims at a random event (the ``1..max_target``-th occurrence after the process
    starts) or at a random delay; one that the process outlives (it finished first) ends the
    trial early. After every kill, the checkpoint a resume would load must be at least as new as
    the newest one the killed process completed.
    """
    done: list[Attempt] = []
    lost: list[str] = []
    newest = None  # newest checkpoint step completed by any process of this run
    for index in range(kills + 1):
        aim = rng.choice(KILL_POINTS) if index < kills else "none"
        attempt = run_training(
            config,
            out_dir,
            aim=aim,
            target=rng.randint(1, max_target),
            delay=rng.uniform(0.5, 4.0) if aim == "delay" else None,
            resume=index > 0,
        )
        if not attempt.killed:
            finished = attempt.returncode == 0
            exact = finished and same_weights(final_weights(out_dir), reference)
            if not finished:
                lost.append(f"run failed (exit {attempt.returncode}): {attempt.stderr[-500:]}")
            return KillTrial(done, lost, exact, finished)
        done.append(attempt)
        newest = attempt.saved if attempt.saved is not None else newest
        try:
            step = survivor_step(out_dir)
        except HwquantError as exc:
            step, why = None, str(exc)
        else:
            why = "no checkpoint left"
        if newest is not None and (step is None or step < newest):
            lost.append(f"killed at {attempt.landed} ({aim}): step {newest} saved, {why}")
    raise AssertionError("unreachable: the last attempt runs to the end")


# -- failed writes --------------------------------------------------------------------------------
FAILED_WRITES: dict[str, tuple[str, int, int]] = {
    "read-only file system": ("tempfile.mkstemp", 1, errno.EROFS),
    "permission denied": ("tempfile.mkstemp", 1, errno.EACCES),
    "disk full while writing": ("write", 1, errno.ENOSPC),
    "I/O error on fsync": ("os.fsync", 1, errno.EIO),
    "rename to .prev fails": ("os.replace", 1, errno.EIO),
    "rename into place fails": ("os.replace", 2, errno.ENOSPC),
}
"""Simulated failures: the call that fails, which call of it, and its errno."""


@dataclass(frozen=True)
class WriteOutcome:
    """What a failed checkpoint write left behind."""

    how: str
    error: str  # the message of the CheckpointWriteError ("" when none was raised)
    clear_error: bool  # CheckpointWriteError naming the file and the fix
    previous_intact: bool  # the last good checkpoint loads, unchanged, from its own name
    leftovers: list[str]  # temporary files left in the directory


class _FullDisk:
    """A file object whose ``write`` stores half of the data, then fails with ENOSPC."""

    def __init__(self, file: Any) -> None:
        self._file = file

    def __enter__(self) -> _FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()

    def write(self, data: bytes) -> int:
        self._file.write(data[: len(data) // 2])
        self._file.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


@contextlib.contextmanager
def failing(how: str) -> Iterator[None]:
    """Within the block, the call named by ``FAILED_WRITES[how]`` fails."""
    name, nth, code = FAILED_WRITES[how]
    if name == "write":
        real_fdopen = os.fdopen
        with mock.patch("os.fdopen", lambda *a, **k: _FullDisk(real_fdopen(*a, **k))):
            yield
        return
    real = _resolve(name)
    calls = 0

    def fail_nth(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == nth:
            raise OSError(code, os.strerror(code))
        return real(*args, **kwargs)

    with mock.patch(name, fail_nth):
        yield


def _resolve(dotted: str) -> Callable[..., Any]:
    module, attr = dotted.rsplit(".", 1)
    return getattr(sys.modules[module], attr)


def failed_write_trial(directory: Path, how: str, seed: int) -> WriteOutcome:
    """Save a checkpoint, then fail the next save of a different state as ``how`` says."""
    path = directory / "last.pt"
    generator = torch.Generator().manual_seed(seed)
    good = {"weights": torch.randn(64, 32, generator=generator), "global_step": seed}
    save_checkpoint(path, good)
    good_bytes = path.read_bytes()
    error, clear = "", False
    try:
        with failing(how):
            save_checkpoint(path, {"weights": torch.zeros(64, 32), "global_step": -1})
    except CheckpointWriteError as exc:
        error = str(exc)
        clear = f"'{path}'" in error and "Fix:" in error
    intact = path.read_bytes() == good_bytes and torch.equal(
        load_checkpoint(path)["weights"], good["weights"]
    )
    leftovers = sorted(p.name for p in directory.iterdir() if p.name.startswith("."))
    return WriteOutcome(how, error, clear, intact, leftovers)


# -- damaged files --------------------------------------------------------------------------------
MUTATIONS = ("truncate", "flip", "zero-span", "random-span", "append", "empty")
"""Ways of damaging a file's bytes."""


def mutate(data: bytes, how: str, rng: random.Random) -> bytes:
    """``data`` damaged in the way ``how`` names, at a random place."""
    out = bytearray(data)
    at = rng.randrange(len(out))
    span = rng.randint(1, 64)
    if how == "truncate":
        return bytes(out[:at])
    if how == "flip":
        out[at] ^= 1 << rng.randrange(8)
    elif how == "zero-span":
        out[at : at + span] = bytes(len(out[at : at + span]))
    elif how == "random-span":
        out[at : at + span] = rng.randbytes(len(out[at : at + span]))
    elif how == "append":
        out += rng.randbytes(span)
    elif how == "empty":
        return b""
    else:
        raise ValueError(f"unknown mutation {how!r}; use one of {', '.join(MUTATIONS)}")
    return bytes(out)


@dataclass(frozen=True)
class DamageOutcome:
    """How a loader met a damaged file."""

    how: str
    verdict: str  # "detected" (named FileFormatError), "unchanged" (loads equal), "unread" (no-op)
    message: str


def damage_trial(
    path: Path,
    original: bytes,
    how: str,
    rng: random.Random,
    load: Callable[[Path], Any],
    equal: Callable[[Any], bool],
) -> DamageOutcome:
    """Write ``original`` damaged as ``how`` to ``path`` and load it.

    A loader may raise :class:`FileFormatError` naming ``path`` ("detected") or return what
    ``equal`` accepts as the original ("unchanged"). Anything else, another exception or a
    different result, propagates as an ``AssertionError`` naming the mutation.
    """
    data = mutate(original, how, rng)
    if data == original:
        return DamageOutcome(how, "unread", "mutation left the bytes as they were")
    path.write_bytes(data)
    try:
        loaded = load(path)
    except FileFormatError as exc:
        if f"'{path}'" not in str(exc):
            raise AssertionError(f"{how}: the error does not name the file: {exc}") from exc
        return DamageOutcome(how, "detected", str(exc))
    except Exception as exc:
        raise AssertionError(f"{how}: {type(exc).__name__} instead of FileFormatError") from exc
    if not equal(loaded):
        raise SilentWrongResult(f"{how}: a damaged file loaded as a different model or state")
    return DamageOutcome(how, "unchanged", "")


def same_state(a: Any, b: Any) -> bool:
    """Deep equality of checkpoint states (tensors by ``torch.equal``)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return (
            isinstance(b, dict) and a.keys() == b.keys() and all(same_state(a[k], b[k]) for k in a)
        )
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(map(same_state, a, b))
    return type(a) is type(b) and a == b


def same_int_model(a: IntModel, b: IntModel) -> bool:
    """Every field of the two models equal (arrays: same dtype, shape and values)."""
    return (
        a.input == b.input
        and a.output == b.output
        and a.recipe == b.recipe
        and _same_array(a.output_scale, b.output_scale)
        and len(a.nodes) == len(b.nodes)
        and all(map(_same_fields, a.nodes, b.nodes))
    )


def _same_fields(a: IntNode | WeightEncoding, b: IntNode | WeightEncoding) -> bool:
    if type(a) is not type(b):
        return False
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if not _same_array(x, y):
                return False
        elif isinstance(x, WeightEncoding):
            if not _same_fields(x, y):
                return False
        elif type(x) is not type(y) or x != y:
            return False
    return True


def _same_array(a: Any, b: Any) -> bool:
    return (
        isinstance(a, np.ndarray)
        and isinstance(b, np.ndarray)
        and a.dtype == b.dtype
        and np.array_equal(a, b)
    )


def sample_int_model(seed: int = 0) -> IntModel:
    """A small lowered network (8x8 small CNN, a few QAT forward passes, LLSQ W4A4)."""
    import hwquant
    from hwquant.models import build
    from hwquant.qat.recipe import Recipe

    torch.manual_seed(seed)
    x = torch.randn(4, 1, 8, 8)
    qat = hwquant.prepare(build("small_cnn", in_channels=1, input_size=8), Recipe(bn_freeze_step=1))
    qat.train()
    with torch.no_grad():
        for _ in range(2):
            qat(x)
    return hwquant.lower(qat.eval(), x)
