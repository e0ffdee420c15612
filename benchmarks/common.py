"""Shared helpers of the benchmark scripts: result paths, resumable results, QAT training,
the throughput benchmarks' model, timing and printing.

Every benchmark writes ``benchmarks/results/<name>.json`` through :func:`write_result` (the
document and machine record of :mod:`hwquant.core.provenance`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hwquant.core import provenance
from hwquant.core.errors import ConfigError
from hwquant.core.lock import file_lock
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


def settings_differences(
    path: Path,
    settings: dict[str, Any],
    stored_as_now: Callable[[dict[str, Any]], dict[str, Any]] = lambda stored: stored,
) -> list[str]:
    """What a run directory's recorded settings (``path``, JSON) differ in from ``settings``:
    ``key: stored X, now Y`` for each, after ``stored_as_now`` (e.g. fields the record predates
    at their defaults); none on first use, when ``settings`` is written (atomically) as the
    record. The caller refuses a difference in its own words."""
    from hwquant.app.bench.reproduce import json_differences
    from hwquant.core.atomic import write_atomic

    if path.exists():
        return json_differences(stored_as_now(json.loads(path.read_text())), settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, (json.dumps(settings, indent=2) + "\n").encode())
    return []


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

    @property
    def file(self) -> Path:
        """The result file: ``path``, or ``benchmarks/results/<name>.json``."""
        return RESULTS_DIR / f"{self.name}.json" if self.path is None else Path(self.path)

    def stored(self, section: str) -> dict[str, Any]:
        """The entries under ``results[section]`` of the result file already written (none
        when there is no file): what a resumed run keeps."""
        if not self.file.is_file():
            return {}
        return json.loads(self.file.read_text())["results"].get(section, {})

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the result file for this process (:func:`hwquant.core.lock.file_lock` on
        ``<file>.lock``). Each save rewrites the whole file from what this process read at its
        start, so two processes on one file lose each other's entries.

        Raises:
            ConfigError: another process holds the file; the message names it and the fix.
        """
        lock = self.file.with_name(self.file.name + ".lock")
        lock.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(
            lock,
            self.command,
            unwritable=f"the lock file {lock} cannot be written ({{reason}}). Fix: give this "
            "run a writable output file.",
            busy=f"another process is writing {self.file} ({{other}}): two runs on one result "
            "file overwrite each other's entries. Fix: wait for it to finish, or give this run "
            "another output file.",
            busy_error=ConfigError,
        ):
            yield

    def run_stamp(self) -> dict[str, Any]:
        """The commit and date of this run, for each entry it adds to a resumed result."""
        return {"commit": self.machine["git"]["commit"], "date_utc": self.machine["date_utc"]}

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


def train_and_lower(qat: Any, splits: Any, steps: int, lr: float = 2e-3, batch: int = 64) -> Any:
    """The prepared model ``qat`` after ``steps`` Adam steps (``lr``) of cross-entropy on
    shuffled, unaugmented training batches of ``splits`` (:class:`hwquant.data.DataSplits`),
    lowered on one training batch."""
    import torch
    import torch.nn.functional as F

    import hwquant
    from hwquant.data import BatchLoader

    loader = BatchLoader(
        splits.train, batch, mean=splits.mean, std=splits.std, shuffle=True, augment=False
    )
    opt = torch.optim.Adam(qat.parameters(), lr=lr)
    qat.train()
    done = 0
    while done < steps:
        for x, y in loader:
            opt.zero_grad()
            F.cross_entropy(qat(x), y).backward()
            opt.step()
            done += 1
            if done == steps:
                break
    qat.eval()
    x, _ = next(iter(loader))
    return hwquant.lower(qat, x)


def first_test_images(splits: Any, count: int) -> tuple[Any, Any]:
    """The first ``count`` test images of ``splits``, normalised as in training, and their
    labels."""
    from hwquant.data import BatchLoader

    test = BatchLoader(
        splits.test, count, mean=splits.mean, std=splits.std, shuffle=False, augment=False
    )
    return next(iter(test))


def w4a4_resnet20(x: Any) -> Any:
    """ResNet-20 (fresh weights) lowered at W4A4, first and last layers 8-bit, after two QAT
    steps on ``x[:32]`` that set its BN statistics and scales: the integer model of the engine
    throughput benchmarks."""
    import torch

    import hwquant
    from hwquant.models import build

    qat = hwquant.prepare(build("resnet20"), hwquant.Recipe(bn_freeze_step=1)).train()
    opt = torch.optim.SGD(qat.parameters(), lr=1e-4)
    for _ in range(2):
        opt.zero_grad()
        qat(x[:32]).square().mean().backward()
        opt.step()
    return hwquant.lower(qat.eval(), x)


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


def images_per_second(
    variants: dict[str, Callable[[], object]], batch: int, rounds: int
) -> dict[str, float]:
    """Throughput of every variant, each running one batch of ``batch`` images: ``batch`` over
    its :func:`interleaved_median_seconds`."""
    median = interleaved_median_seconds(variants, rounds)
    return {name: batch / seconds for name, seconds in median.items()}


def print_results(results: dict[str, Any]) -> None:
    """One ``key: value`` line per result, floats to three decimals."""
    for key, value in results.items():
        print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")
