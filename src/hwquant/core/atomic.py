"""Atomic file writes: a reader sees the old file or the new one, never half of either.

The bytes go to a temporary file in the target's directory, are flushed and fsynced, and the
file is renamed over the target (``os.replace`` is atomic on POSIX and Windows); the directory
is then synced so that the rename survives a power cut. A failure leaves the target untouched
(a file already moved to ``keep_previous`` is moved back) and removes the temporary file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomic(path: str | Path, data: bytes, *, keep_previous: Path | None = None) -> Path:
    """Write ``data`` to ``path`` atomically; first move an existing ``path`` to
    ``keep_previous`` when given (one earlier version kept as a fallback)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    rotated = False
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        if keep_previous is not None and path.exists():
            os.replace(path, keep_previous)
            rotated = True
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        if rotated and not path.exists():  # the final rename failed: put the old file back
            os.replace(keep_previous, path)
        raise
    _sync_directory(path.parent)
    return path


def remove_stale_temporaries(path: str | Path) -> int:
    """Delete the temporary files that writes of ``path`` killed mid-way left behind (they are
    never read); return how many. Call it only where no other process is writing ``path``."""
    path = Path(path)
    stale = list(path.parent.glob(f".{path.name}.*.tmp"))
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return len(stale)


def _umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _sync_directory(directory: Path) -> None:
    """Persist the renames in ``directory`` (POSIX; a no-op where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
