"""Model files: one ``.npz`` of arrays plus a JSON header with a SHA-256 of every array.

The header is stored as the uint8 array ``__header__`` and holds, in this order, the format
name, the format version, the caller's fields and ``sha256``: the hex digest of every array's
bytes (C order). Reading checks the name, the version and every digest, so a truncated,
corrupted or foreign file is named with a fix instead of being misread. Used by
:class:`hwquant.ir.intmodel.IntModel` and :class:`hwquant.schemes.tables.model.TableModel`.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

from hwquant.core.atomic import write_atomic
from hwquant.core.errors import FileFormatError

HEADER_KEY = "__header__"


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _model_name(format_name: str) -> str:
    """``"hwquant.IntModel"`` -> ``"IntModel"``: the name used in error messages."""
    return format_name.rsplit(".", 1)[-1]


def write_npz_with_header(
    path: str | Path,
    format_name: str,
    version: int,
    header: dict[str, Any],
    arrays: dict[str, np.ndarray],
) -> Path:
    """Write ``arrays`` and the header ``{format, version, **header, sha256}`` to ``path``,
    atomically (creating its folder); returns the path."""
    path = Path(path)
    full = {"format": format_name, "version": version, **header}
    full["sha256"] = {key: _digest(value) for key, value in arrays.items()}
    blob = np.frombuffer(json.dumps(full).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **{HEADER_KEY: blob}, **arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, buffer.getvalue())


def file_format(path: str | Path) -> str | None:
    """The format name in the header of a file written by :func:`write_npz_with_header`, or
    None when ``path`` is not such a readable file (the readers then say why)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(bytes(data[HEADER_KEY]).decode())
    except Exception:  # any unreadable file: the format readers report it
        return None
    return header.get("format") if isinstance(header, dict) else None


def read_npz_with_header(
    path: str | Path, format_name: str, readable_versions: Collection[int], fix: str
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The header and arrays of a file written by :func:`write_npz_with_header`.

    Raises :class:`FileFormatError` (message ending in ``fix``) when the file is missing,
    unreadable, of another format, of a version outside ``readable_versions``, has no valid
    ``sha256`` table, or an array fails its checksum.
    """
    path = Path(path)
    name = _model_name(format_name)
    article = "an" if name[0] in "AEIOU" else "a"
    if not path.is_file():
        raise FileFormatError(f"{name} file '{path}' does not exist. Fix: check the path.")
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(bytes(data[HEADER_KEY]).decode())
            arrays = {k: data[k] for k in data.files if k != HEADER_KEY}
    except Exception as exc:  # damaged bytes raise many types: BadZipFile, ValueError, EOFError,
        # tokenize.TokenError (a damaged .npy header), NotImplementedError (compression id), ...
        raise FileFormatError(
            f"'{path}' is not a readable {name} file (truncated or corrupted: {exc}). {fix}"
        ) from exc
    if not isinstance(header, dict) or header.get("format") != format_name:
        raise FileFormatError(f"'{path}' is not {article} {name} file. {fix}")
    if header.get("version") not in readable_versions:
        raise FileFormatError(
            f"'{path}' has {name} format version {header.get('version')!r}; this hwquant reads "
            f"versions {', '.join(map(str, readable_versions))}. Fix: upgrade hwquant, or lower "
            "and save the model again."
        )
    try:
        for key, digest in header["sha256"].items():
            if key not in arrays or _digest(arrays[key]) != digest:
                raise FileFormatError(f"'{path}': array '{key}' fails its checksum. {fix}")
    except (KeyError, TypeError, AttributeError) as exc:
        raise FileFormatError(f"'{path}' has a malformed header ({exc!r}). {fix}") from exc
    return header, arrays
