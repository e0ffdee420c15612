"""On-disk cache of decoded arrays, kept outside the repository.

A source that is slow to decode (thousands of JPEGs) is decoded once and saved as an
uncompressed ``.npz``. The entry's file name is derived from the source's resolved path, and
the entry stores a *fingerprint* of the source (size and modification time of every file it
reads, plus :data:`CACHE_VERSION`); a source that changed no longer matches and is decoded
again, overwriting the stale entry. Entries are written to a temporary file and moved into
place with :func:`os.replace`, so a crash or a concurrent reader never sees half an entry.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hwquant.core.atomic import write_atomic
from hwquant.core.errors import DataError

CACHE_ENV = "HWQUANT_CACHE"
CACHE_VERSION = 1
_FINGERPRINT_KEY = "__fingerprint__"

Arrays = dict[str, np.ndarray]


def default_cache_dir() -> Path:
    """The cache directory: ``$HWQUANT_CACHE`` if set, else ``~/.cache/hwquant``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "hwquant").expanduser()


def source_fingerprint(source: Path) -> str:
    """A string that changes whenever ``source`` (a file, or a directory tree) changes.

    It covers size and ``mtime_ns`` of the file, or of every file under the directory.
    """
    source = source.resolve()
    files = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]
    digest = hashlib.sha256(f"v{CACHE_VERSION}".encode())
    for path in files:
        stat = path.stat()
        name = path.relative_to(source.parent)
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cache_path(cache_dir: Path, name: str, source: Path) -> Path:
    """Where the entry for data set ``name`` decoded from ``source`` lives."""
    path_hash = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:16]
    return cache_dir / f"{name}-{path_hash}.npz"


def load_or_build(entry: Path, fingerprint: str, build: Callable[[], Arrays]) -> Arrays:
    """Return the arrays cached at ``entry`` if its fingerprint matches, else ``build()`` them.

    Freshly built arrays are written to ``entry`` before they are returned. An unreadable or
    stale entry counts as a miss and is overwritten.
    """
    cached = _read(entry, fingerprint)
    if cached is not None:
        return cached
    arrays = build()
    _write_atomic(entry, fingerprint, arrays)
    return arrays


def _read(entry: Path, fingerprint: str) -> Arrays | None:
    """The arrays in ``entry``, or None if it is missing, corrupt or made from another source."""
    try:
        with np.load(entry, allow_pickle=False) as npz:
            if str(npz[_FINGERPRINT_KEY]) != fingerprint:
                return None
            return {key: npz[key] for key in npz.files if key != _FINGERPRINT_KEY}
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None


def _write_atomic(entry: Path, fingerprint: str, arrays: Arrays) -> None:
    """Save ``arrays`` and ``fingerprint`` to ``entry`` via a temporary file and a rename."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays, **{_FINGERPRINT_KEY: np.array(fingerprint)})
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(entry, buffer.getvalue())
    except OSError as err:
        raise DataError(
            f"cannot write the data cache {entry}: {err}. Fix: set {CACHE_ENV} or pass "
            "cache_dir= to a writable directory with enough free space."
        ) from err
