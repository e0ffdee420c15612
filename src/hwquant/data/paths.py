"""Checks that a data source exists, failing with a message that names the path and the fix."""

from __future__ import annotations

from pathlib import Path

from hwquant.core.errors import DataError


def require_dir(path: str | Path, what: str, fix: str) -> Path:
    """Return ``path`` as a :class:`Path` if it is a directory, else raise :class:`DataError`.

    ``what`` says what the directory should hold ("the cifar-10-batches-py directory"), ``fix``
    how to get it; both go into the message.
    """
    path = Path(path).expanduser()
    if not path.is_dir():
        state = "is not a directory" if path.exists() else "does not exist"
        raise DataError(f"{what} {path} {state}. Fix: {fix}")
    return path


def require_file(path: str | Path, what: str, fix: str) -> Path:
    """Return ``path`` as a :class:`Path` if it is a regular file, else raise :class:`DataError`."""
    path = Path(path).expanduser()
    if not path.is_file():
        state = "is not a file" if path.exists() else "does not exist"
        raise DataError(f"{what} {path} {state}. Fix: {fix}")
    return path
