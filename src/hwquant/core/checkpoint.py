"""Checkpoint files that are written atomically and checked when read.

A file is a fixed header followed by a ``torch.save`` payload::

    magic b"HWQCKPT\\0" | format version (uint32) | payload length (uint64)
    | SHA-256 of the payload (32 bytes) | payload

:func:`save_checkpoint` writes a temporary file in the same directory, syncs it to disk, keeps
the file it replaces as ``<name>.prev<suffix>`` and renames the new one into place, so a crash
at any moment leaves the old checkpoint, the new one, or both. :func:`load_checkpoint` refuses a
truncated or corrupted file with :class:`~hwquant.core.errors.FileFormatError` and points at the
previous one. The state may hold tensors and Python primitives only: it is read back with
``torch.load(weights_only=True)``, which executes no code.
"""

from __future__ import annotations

import hashlib
import io
import struct
from pathlib import Path
from typing import Any

import torch

from hwquant.core.atomic import remove_stale_temporaries, write_atomic
from hwquant.core.errors import FileFormatError, HwquantError

MAGIC = b"HWQCKPT\0"
FORMAT_VERSION = 1
_HEADER = struct.Struct(f"<{len(MAGIC)}sIQ32s")


class CheckpointWriteError(HwquantError, OSError):
    """A checkpoint could not be written (read-only directory, disk full, ...)."""


def previous_path(path: str | Path) -> Path:
    """Where :func:`save_checkpoint` keeps the checkpoint that ``path`` replaced."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def resume_path(path: str | Path) -> Path | None:
    """The checkpoint to resume from: ``path``, else its previous one, else None."""
    return next((p for p in (Path(path), previous_path(path)) if p.exists()), None)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically, keeping the replaced file as the previous one
    (and clearing the temporary files of earlier writes that were killed: one writer per run)."""
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, len(payload), hashlib.sha256(payload).digest())
    try:
        remove_stale_temporaries(path)
        write_atomic(path, header + payload, keep_previous=previous_path(path))
    except OSError as exc:
        raise CheckpointWriteError(
            f"cannot write checkpoint '{path}': {exc.strerror or exc}. Fix: make "
            f"'{path.parent}' writable and free some disk space; the previous checkpoint there "
            "is untouched."
        ) from exc


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, verifying its checksum."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FileFormatError(f"checkpoint '{path}' does not exist. Fix: check the path.") from None
    payload = _verified_payload(path, data)
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as exc:  # the unpickler raises many types on a bad payload
        raise FileFormatError(
            f"checkpoint '{path}' passed its checksum but cannot be unpickled ({exc}); it was "
            f"written by an incompatible version.{_fallback(path)}"
        ) from exc
    if not isinstance(state, dict):
        raise FileFormatError(f"checkpoint '{path}' holds a {type(state).__name__}, not a dict.")
    return state


def _verified_payload(path: Path, data: bytes) -> bytes:
    """The payload of file contents ``data``, after checking header, length and checksum."""
    if not data.startswith(MAGIC[: len(data)]):
        raise FileFormatError(
            f"'{path}' is not an hwquant checkpoint (no {MAGIC[:-1].decode()} header). Fix: pass "
            "a checkpoint written by hwquant."
        )
    if len(data) < _HEADER.size:
        raise FileFormatError(
            f"checkpoint '{path}' is truncated ({len(data)} bytes, shorter than its header)."
            f"{_fallback(path)}"
        )
    _, version, length, digest = _HEADER.unpack_from(data)
    if version != FORMAT_VERSION:
        raise FileFormatError(
            f"checkpoint '{path}' has format version {version}; this hwquant reads version "
            f"{FORMAT_VERSION}. Fix: use the hwquant version that wrote it."
        )
    payload = data[_HEADER.size :]
    if len(payload) != length:
        raise FileFormatError(
            f"checkpoint '{path}' is truncated ({len(payload)} of {length} payload bytes)."
            f"{_fallback(path)}"
        )
    if hashlib.sha256(payload).digest() != digest:
        raise FileFormatError(
            f"checkpoint '{path}' is corrupted (SHA-256 checksum mismatch).{_fallback(path)}"
        )
    return payload


def _fallback(path: Path) -> str:
    """The fix for a missing or damaged ``path``: name the previous checkpoint when it exists."""
    prev = previous_path(path)
    if prev.exists():
        return (
            f" Fix: delete '{path}' to restart from the previous checkpoint '{prev}' (a resumed "
            "run falls back to it)."
        )
    return " Fix: delete it and start the run again."
