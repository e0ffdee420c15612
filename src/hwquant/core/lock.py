"""An exclusive lock on a run directory, so that two processes never write one run.

The lock is ``fcntl.flock`` on ``DIR/.hwquant.lock``: the kernel drops it when its holder exits
in any way (killed included), so a crashed run never leaves a stale lock behind. The file holds
the holder's description (command, process id, host) for the message of the process refused.
Opening the file is also the first write into the directory, so a directory that cannot be
written is named here, before any work starts.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from hwquant.core.errors import ConfigError, HwquantError

LOCK_NAME = ".hwquant.lock"


class DirectoryLockedError(HwquantError):
    """Another process holds the lock of a run directory."""


def prepare_directory(directory: Path, what: str) -> None:
    """Make ``directory`` (and its parents) or raise :class:`ConfigError` naming ``what`` (the
    option that chose it) when it is a file or cannot be made."""
    if directory.exists() and not directory.is_dir():
        raise ConfigError(
            f"{what} '{directory}' is a file, not a directory. Fix: name a new or existing "
            "directory."
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"{what} '{directory}' cannot be made ({exc.strerror}). Fix: name a directory in a "
            "writable place whose parents are directories."
        ) from None


@contextlib.contextmanager
def directory_lock(directory: Path, what: str, holder: str) -> Iterator[None]:
    """Hold the lock of ``directory`` for the block; ``holder`` describes this process.

    Raises:
        ConfigError: ``directory`` cannot be written (``what`` names the option that chose it).
        DirectoryLockedError: another process holds the lock.
    """
    with file_lock(
        directory / LOCK_NAME,
        holder,
        unwritable=f"{what} '{directory}' cannot be written ({{reason}}). Fix: name a writable "
        "directory.",
        busy=f"{what} '{directory}' is in use by {{other}}; two runs writing one directory "
        "would overwrite each other's checkpoints. Fix: wait for that run to end, or name "
        "another directory.",
    ):
        yield


@contextlib.contextmanager
def file_lock(
    path: Path,
    holder: str,
    *,
    unwritable: str,
    busy: str,
    busy_error: type[HwquantError] = DirectoryLockedError,
) -> Iterator[None]:
    """Hold ``fcntl.flock`` on the file ``path`` (made if missing, never removed, so that every
    process locks the same file) for the block, with ``holder`` written into it for the message
    of a process refused. ``unwritable`` and ``busy`` are those messages, ``{reason}`` and
    ``{other}`` in them replaced by the OS error and the holder's description.

    Raises:
        ConfigError: ``path`` cannot be opened for writing.
        busy_error: another process holds the lock.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ConfigError(unwritable.replace("{reason}", str(exc.strerror))) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
            raise busy_error(busy.replace("{other}", other)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{holder} (pid {os.getpid()} on {socket.gethostname()})\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
