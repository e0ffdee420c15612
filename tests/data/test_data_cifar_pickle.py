"""Tests of the CIFAR-10 / CIFAR-100 pickle loaders on tiny batch files written here."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from hwquant.core.errors import DataError
from hwquant.data import load_dataset

ROW = 3 * 32 * 32


def _planes(first: int, count: int) -> np.ndarray:
    """``count`` distinct images as uint8 [N, 3, 32, 32] (channel-first, as CIFAR stores them)."""
    values = np.arange(first * ROW, (first + count) * ROW, dtype=np.int64) * 7 % 251
    return values.astype(np.uint8).reshape(count, 3, 32, 32)


def _dump(path: Path, batch: dict) -> None:
    with path.open("wb") as file:
        pickle.dump(batch, file)


def write_cifar10(root: Path) -> tuple[np.ndarray, list[int]]:
    """Five train batches of 2 images each, a test batch of 3; returns the train planes/labels."""
    root.mkdir()
    planes, labels = _planes(0, 10), [(3 * i) % 10 for i in range(10)]
    for b in range(5):
        rows = planes[2 * b : 2 * b + 2].reshape(2, ROW)
        _dump(root / f"data_batch_{b + 1}", {b"data": rows, b"labels": labels[2 * b : 2 * b + 2]})
    _dump(root / "test_batch", {b"data": _planes(10, 3).reshape(3, ROW), b"labels": [9, 0, 4]})
    names = [name.encode() for name in ("airplane", "automobile", "bird", "cat", "deer")]
    _dump(root / "batches.meta", {b"label_names": [*names, b"dog", b"frog", b"h", b"s", b"t"]})
    return planes, labels


def test_cifar10_batches_are_concatenated_and_transposed(tmp_path: Path) -> None:
    planes, labels = write_cifar10(tmp_path / "cifar-10-batches-py")
    splits = load_dataset("cifar10", tmp_path / "cifar-10-batches-py")
    assert splits.train.images.shape == (10, 32, 32, 3)
    assert splits.train.images.dtype == np.uint8
    assert splits.train.images.flags.c_contiguous
    np.testing.assert_array_equal(splits.train.images, planes.transpose(0, 2, 3, 1))
    assert splits.train.labels.tolist() == labels
    assert splits.train.labels.dtype == np.int64
    assert splits.test.labels.tolist() == [9, 0, 4]
    assert splits.classes[:3] == ("airplane", "automobile", "bird")
    assert splits.num_classes == 10


def test_cifar100_uses_fine_labels(tmp_path: Path) -> None:
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    fine, coarse = [57, 3, 99], [1, 2, 3]
    _dump(
        root / "train",
        {b"data": _planes(0, 3).reshape(3, ROW), b"fine_labels": fine, b"coarse_labels": coarse},
    )
    _dump(
        root / "test",
        {b"data": _planes(3, 1).reshape(1, ROW), b"fine_labels": [0], b"coarse_labels": [0]},
    )
    names = [f"class{i}".encode() for i in range(100)]
    _dump(root / "meta", {b"fine_label_names": names, b"coarse_label_names": names[:20]})
    splits = load_dataset("cifar100", root)
    assert splits.train.labels.tolist() == fine
    assert splits.num_classes == 100
    assert splits.classes[57] == "class57"
    assert splits.test.images.shape == (1, 32, 32, 3)


def test_missing_batch_file_is_named(tmp_path: Path) -> None:
    root = tmp_path / "cifar-10-batches-py"
    write_cifar10(root)
    (root / "test_batch").unlink()
    with pytest.raises(DataError, match=r"test_batch does not exist\. Fix: .*extract"):
        load_dataset("cifar10", root)


def test_wrong_directory_kind_is_explained(tmp_path: Path) -> None:
    root = tmp_path / "cifar-10-batches-py"
    write_cifar10(root)
    _dump(root / "data_batch_3", {b"data": _planes(0, 1).reshape(1, ROW), b"fine_labels": [0]})
    with pytest.raises(DataError, match=r"data_batch_3 has no b'labels' entry.*CIFAR-100"):
        load_dataset("cifar10", root)


def test_malformed_rows_and_corrupt_pickle(tmp_path: Path) -> None:
    root = tmp_path / "cifar-10-batches-py"
    write_cifar10(root)
    _dump(root / "data_batch_1", {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})
    with pytest.raises(DataError, match=r"expected uint8\[N, 3072\]"):
        load_dataset("cifar10", root)
    (root / "data_batch_1").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataError, match="not a readable CIFAR pickle"):
        load_dataset("cifar10", root)


def test_missing_directory_names_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"absent does not exist\. Fix: pass root="):
        load_dataset("cifar100", tmp_path / "absent")
