"""Tests of the IDX reader and the MNIST / Fashion-MNIST loaders on files written here."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from hwquant.core.errors import DataError
from hwquant.data import load_dataset, mnist
from hwquant.data.idx import IDX_TYPES, read_idx

CODES = {dtype.newbyteorder("="): code for code, dtype in IDX_TYPES.items()}


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode ``array`` as IDX: magic number, big-endian dimensions, big-endian data."""
    header = struct.pack(">HBB", 0, CODES[array.dtype], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def write_mnist(root: Path, train: int = 5, test: int = 3) -> dict[str, np.ndarray]:
    """Train files gzip-compressed, test files raw, as both forms occur in the wild."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(test, dtype=np.uint8),
    }
    for name, array in arrays.items():
        write_idx(root / name, array)
    return arrays


@pytest.mark.parametrize(
    "array",
    [
        np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
        np.array([-5, 70000, 3], dtype=np.int32),
        np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2),
        np.array([-300, 2], dtype=np.int16),
    ],
)
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_round_trips(tmp_path: Path, array: np.ndarray, suffix: str) -> None:
    got = read_idx(write_idx(tmp_path / f"a-idx{suffix}", array))
    assert got.dtype.isnative
    assert got.shape == array.shape
    np.testing.assert_array_equal(got, array)


def test_truncated_raw_file_reports_expected_and_got(tmp_path: Path) -> None:
    path = tmp_path / "t-idx3-ubyte"
    path.write_bytes(idx_bytes(np.zeros((2, 4, 5), np.uint8))[:-10])
    with pytest.raises(DataError, match=r"is truncated: .*needs 40 bytes, got 30"):
        read_idx(path)


def test_truncated_header_and_gzip_stream(tmp_path: Path) -> None:
    path = tmp_path / "h-idx3-ubyte"
    path.write_bytes(idx_bytes(np.zeros((2, 4, 5), np.uint8))[:9])
    with pytest.raises(DataError, match="truncated: the header needs 16 bytes, got 9"):
        read_idx(path)
    gz = tmp_path / "g-idx3-ubyte.gz"
    gz.write_bytes(gzip.compress(idx_bytes(np.zeros((50, 28, 28), np.uint8)))[:-30])
    with pytest.raises(DataError, match="truncated: the gzip stream ends early"):
        read_idx(gz)


def test_bad_magic_and_trailing_bytes(tmp_path: Path) -> None:
    path = tmp_path / "bad"
    path.write_bytes(b"\x00\x00\x07\x01" + bytes(8))
    with pytest.raises(DataError, match=r"not an IDX file .*0x00000701"):
        read_idx(path)
    path.write_bytes(idx_bytes(np.zeros(3, np.uint8)) + b"xx")
    with pytest.raises(DataError, match="has 2 bytes after the data"):
        read_idx(path)


def test_mnist_loader_reads_gz_and_raw(tmp_path: Path) -> None:
    arrays = write_mnist(tmp_path / "mnist")
    splits = load_dataset("mnist", tmp_path / "mnist")
    assert splits.train.images.shape == (5, 28, 28, 1)
    assert splits.test.images.shape == (3, 28, 28, 1)
    assert splits.train.images.dtype == np.uint8
    assert splits.train.labels.dtype == np.int64
    np.testing.assert_array_equal(splits.train.images[..., 0], arrays["train-images-idx3-ubyte.gz"])
    assert splits.train.labels.tolist() == arrays["train-labels-idx1-ubyte.gz"].tolist()
    assert splits.test.labels.tolist() == [0, 1, 2]
    assert splits.classes == tuple("0123456789")


def test_mnist_count_mismatch_and_missing_file(tmp_path: Path) -> None:
    root = tmp_path / "mnist"
    write_mnist(root)
    write_idx(root / "t10k-labels-idx1-ubyte", np.zeros(4, np.uint8))
    with pytest.raises(DataError, match=r"holds 3 images but .* holds 4 labels"):
        load_dataset("mnist", root)
    (root / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=r"neither .*t10k-labels-idx1-ubyte\.gz nor"):
        load_dataset("mnist", root)


def test_fashion_mnist_default_dir_and_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mnist, "FASHION_MNIST_DEBIAN_DIR", tmp_path / "not-installed")
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist")
    write_mnist(tmp_path / "not-installed")
    splits = load_dataset("fashion-mnist")
    assert splits.classes[0] == "T-shirt/top"
    assert splits.num_classes == 10
