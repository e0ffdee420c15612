"""The shared .npz + JSON header file: round trip, header layout and every refusal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hwquant.core.errors import FileFormatError
from hwquant.core.npzfile import HEADER_KEY, read_npz_with_header, write_npz_with_header

FORMAT = "hwquant.IntModel"
FIX = "Fix: write it again."


def _write(path: Path, version: int = 2) -> dict[str, np.ndarray]:
    arrays = {"a/w": np.arange(12, dtype=np.int64).reshape(3, 4), "s": np.array([0.5])}
    write_npz_with_header(path / "m.npz", FORMAT, version, {"nodes": [1, 2]}, arrays)
    return arrays


def test_round_trip_is_exact_and_header_is_ordered(tmp_path: Path) -> None:
    arrays = _write(tmp_path)
    header, back = read_npz_with_header(tmp_path / "m.npz", FORMAT, (1, 2), FIX)
    assert list(header) == ["format", "version", "nodes", "sha256"]
    assert header["nodes"] == [1, 2]
    assert back.keys() == arrays.keys()
    assert all(np.array_equal(back[k], v) for k, v in arrays.items())


def test_corrupted_array_fails_its_checksum(tmp_path: Path) -> None:
    _write(tmp_path)
    with np.load(tmp_path / "m.npz") as data:
        header = bytes(data[HEADER_KEY])
        arrays = {k: data[k] for k in data.files if k != HEADER_KEY}
    arrays["a/w"][0, 0] += 1
    blob = np.frombuffer(header, dtype=np.uint8)
    np.savez(tmp_path / "m.npz", **{HEADER_KEY: blob}, **arrays)
    with pytest.raises(FileFormatError, match=r"array 'a/w' fails its checksum\. Fix: write"):
        read_npz_with_header(tmp_path / "m.npz", FORMAT, (2,), FIX)


@pytest.mark.parametrize(
    ("fmt", "versions", "match"),
    [
        ("hwquant.TableModel", (2,), r"is not a TableModel file\. Fix: write"),
        (FORMAT, (1,), r"IntModel format version 2; this hwquant reads versions 1\. Fix:"),
    ],
)
def test_other_format_or_version_is_named(
    tmp_path: Path, fmt: str, versions: tuple[int, ...], match: str
) -> None:
    _write(tmp_path)
    with pytest.raises(FileFormatError, match=match):
        read_npz_with_header(tmp_path / "m.npz", fmt, versions, FIX)


def test_missing_unreadable_and_headerless_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileFormatError, match=r"IntModel file .* does not exist\. Fix: check"):
        read_npz_with_header(tmp_path / "none.npz", FORMAT, (2,), FIX)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(FileFormatError, match=r"not a readable IntModel file .* Fix: write"):
        read_npz_with_header(tmp_path / "junk.npz", FORMAT, (2,), FIX)
    blob = np.frombuffer(json.dumps({"format": FORMAT, "version": 2}).encode(), dtype=np.uint8)
    np.savez(tmp_path / "nosum.npz", **{HEADER_KEY: blob})
    with pytest.raises(FileFormatError, match=r"malformed header \(KeyError\('sha256'\)\)"):
        read_npz_with_header(tmp_path / "nosum.npz", FORMAT, (2,), FIX)
