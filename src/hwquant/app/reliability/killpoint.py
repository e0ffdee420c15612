"""Run ``hwquant train`` with probes that report progress and can stop at a chosen point.

``python -m hwquant.app.reliability.killpoint EVENT N -- train --config FILE ...`` runs the
``hwquant`` command line after installing probes that print one line per event to stdout:

* ``step``: the optimizer is about to update the weights (gradients are computed, the weights
  not yet changed: the middle of a training step);
* ``file-sync``: a checkpoint's temporary file is written, not yet synced or renamed;
* ``rotate``: the temporary file is synced; ``last.pt`` is about to become ``last.prev.pt``;
* ``install``: ``last.pt`` is now ``last.prev.pt``; the temporary file is about to be renamed
  to ``last.pt`` (the one moment with no ``last.pt``);
* ``dir-sync``: the renames are done, the directory is not yet synced;
* ``saved G``: the checkpoint of global step G is complete (``save_checkpoint`` returned).

At the N-th occurrence of EVENT (``none`` never stops) the probe prints ``paused EVENT`` and
sleeps, so that a parent that reads the line and sends SIGKILL kills the process exactly there.
The probes wrap calls; they change no result (the tests compare against unprobed runs too).
"""

from __future__ import annotations

import os
import stat
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

PAUSE_SECONDS = 60.0
"""How long a paused process waits for its SIGKILL before it gives up and carries on."""
EVENTS = ("step", "file-sync", "rotate", "install", "dir-sync")
"""The points a kill can target (see the module docstring)."""


class Probe:
    """Counts events, prints them, and pauses at the ``target``-th occurrence of ``event``."""

    def __init__(self, event: str, target: int) -> None:
        self.event, self.target = event, target
        self.seen: Counter[str] = Counter()

    def __call__(self, event: str, detail: object = "") -> None:
        self.seen[event] += 1
        self.emit(f"{event} {detail}".strip())
        if event == self.event and self.seen[event] == self.target:
            self.emit(f"paused {event}")
            time.sleep(PAUSE_SECONDS)

    @staticmethod
    def emit(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def install(probe: Probe) -> None:
    """Wrap the optimizer step, the checkpoint writer's OS calls and ``save_checkpoint``."""
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    import hwquant.app.train

    def before_step(optimizer: Any, args: Any, kwargs: Any) -> None:
        probe("step")

    register_optimizer_step_pre_hook(before_step)

    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        probe("dir-sync" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file-sync")
        real_fsync(fd)

    def replace(src: Any, dst: Any, **kwargs: Any) -> None:
        probe("rotate" if ".prev" in os.fspath(dst) else "install")
        real_replace(src, dst, **kwargs)

    os.fsync, os.replace = fsync, replace
    real_save: Callable[..., None] = hwquant.app.train.save_checkpoint

    def save(path: Any, state: dict[str, Any]) -> None:
        real_save(path, state)
        probe.emit(f"saved {state['global_step']}")

    hwquant.app.train.save_checkpoint = save


def main(argv: Sequence[str] | None = None) -> int:
    """``EVENT N -- hwquant-arguments``: install the probe, then run the ``hwquant`` command."""
    args = list(sys.argv[1:] if argv is None else argv)
    event, target, separator, *rest = args
    if separator != "--" or (event != "none" and event not in EVENTS):
        raise SystemExit(f"usage: EVENT N -- ARGS (EVENT: none or one of {', '.join(EVENTS)})")
    install(Probe(event, int(target)))
    from hwquant.app.cli import main as hwquant_main

    return hwquant_main(rest)


if __name__ == "__main__":
    raise SystemExit(main())
