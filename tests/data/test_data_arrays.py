"""Tests of hwquant.data.arrays: validation of ArrayDataset / DataSplits and channel_stats."""

from __future__ import annotations

import numpy as np
import pytest

from hwquant.core.errors import DataError
from hwquant.data import ArrayDataset, DataSplits
from hwquant.data.arrays import channel_stats, make_splits


def _dataset(n: int = 4, labels: list[int] | None = None, side: int = 2) -> ArrayDataset:
    images = np.arange(n * side * side * 3, dtype=np.int64).reshape(n, side, side, 3) % 256
    label_array = np.array(labels if labels is not None else [i % 2 for i in range(n)])
    return ArrayDataset(images.astype(np.uint8), label_array.astype(np.int64))


def test_array_dataset_len_and_fields() -> None:
    data = _dataset(5)
    assert len(data) == 5
    assert data.images.shape == (5, 2, 2, 3)


@pytest.mark.parametrize(
    ("images", "labels", "match"),
    [
        (np.zeros((2, 4, 4, 1), np.float32), np.zeros(2, np.int64), "uint8 array"),
        (np.zeros((2, 4, 4), np.uint8), np.zeros(2, np.int64), r"\[N, H, W, C\]"),
        (np.zeros((2, 4, 4, 1), np.uint8), np.zeros(2, np.int32), "int64 array"),
        (np.zeros((2, 4, 4, 1), np.uint8), np.zeros(3, np.int64), "2 images but 3 labels"),
    ],
)
def test_array_dataset_rejects_bad_arrays(
    images: np.ndarray, labels: np.ndarray, match: str
) -> None:
    with pytest.raises(DataError, match=match):
        ArrayDataset(images, labels)


def test_channel_stats_match_float64_reference() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 5, 3, 2), dtype=np.uint8)
    mean, std = channel_stats(images)
    pixels = images.reshape(-1, 2).astype(np.float64) / 255
    np.testing.assert_allclose(mean, pixels.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(std, pixels.std(axis=0), rtol=1e-12)
    assert all(type(value) is float for value in mean + std)


def test_make_splits_uses_train_statistics() -> None:
    train, test = (
        _dataset(4),
        ArrayDataset(np.full((2, 2, 2, 3), 255, np.uint8), np.zeros(2, np.int64)),
    )
    splits = make_splits("toy", train, test, ("a", "b"))
    assert splits.num_classes == 2
    assert splits.mean == channel_stats(train.images)[0]


@pytest.mark.parametrize(
    ("test", "classes", "match"),
    [
        (_dataset(2, side=3), ("a", "b"), "share one size"),
        (_dataset(2, labels=[0, 2]), ("a", "b"), "outside 0..1"),
        (_dataset(0), ("a", "b"), "test split is empty"),
    ],
)
def test_data_splits_rejects_inconsistent_splits(
    test: ArrayDataset, classes: tuple[str, ...], match: str
) -> None:
    with pytest.raises(DataError, match=match):
        make_splits("toy", _dataset(4), test, classes)


def test_data_splits_rejects_wrong_class_count_and_stats() -> None:
    train = _dataset(4)
    with pytest.raises(DataError, match="num_classes=3 but 2 class names"):
        DataSplits("toy", train, train, 3, (0.5,) * 3, (0.2,) * 3, ("a", "b"))
    with pytest.raises(DataError, match="1/1 entries for 3 channel"):
        DataSplits("toy", train, train, 2, (0.5,), (0.2,), ("a", "b"))
