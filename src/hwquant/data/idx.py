"""Reader for the IDX format of MNIST and Fashion-MNIST, gzip-compressed or raw.

An IDX file starts with a 4-byte magic number: two zero bytes, a type code (``0x08`` unsigned
byte, ``0x09`` signed byte, ``0x0B`` int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64)
and the number of dimensions. Then come one big-endian uint32 per dimension and the data,
row-major and big-endian.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from hwquant.core.errors import DataError

IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
_FIX_COPY = "copy or download the file again."


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzip-compressed or not, told apart by content) into a native array.

    Raises :class:`DataError` if the file is not IDX, is truncated, or has trailing bytes.
    """
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise _truncated(path, "the 4-byte magic number", 4, len(raw))
    zero, type_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or type_code not in IDX_TYPES:
        raise DataError(
            f"{path} is not an IDX file (magic number 0x{raw[:4].hex()}; expected 0x0000 then a "
            f"type code among {', '.join(f'0x{code:02X}' for code in IDX_TYPES)}). "
            "Fix: point root= at the directory holding the *-idx?-ubyte(.gz) files."
        )
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise _truncated(path, "the header", header_size, len(raw))
    shape = struct.unpack(f">{ndim}I", raw[4:header_size])
    dtype = IDX_TYPES[type_code]
    expected = math.prod(shape) * dtype.itemsize
    got = len(raw) - header_size
    if got < expected:
        raise _truncated(path, f"the data of shape {list(shape)}", expected, got)
    if got > expected:
        raise DataError(
            f"{path} has {got - expected} bytes after the data of shape {list(shape)}. "
            f"Fix: the file is corrupt; {_FIX_COPY}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header_size).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed if it starts with the gzip magic number."""
    with path.open("rb") as file:
        compressed = file.read(2) == _GZIP_MAGIC
    if not compressed:
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as file:
            return file.read()
    except EOFError as err:
        raise DataError(
            f"{path} is truncated: the gzip stream ends early ({err}). Fix: {_FIX_COPY}"
        ) from err
    except (gzip.BadGzipFile, zlib.error) as err:
        raise DataError(f"{path} is a corrupt gzip file ({err}). Fix: {_FIX_COPY}") from err


def _truncated(path: Path, part: str, expected: int, got: int) -> DataError:
    """The error for a file that ends inside ``part``."""
    return DataError(
        f"{path} is truncated: {part} needs {expected} bytes, got {got}. Fix: {_FIX_COPY}"
    )
