"""In-memory data sets: uint8 image arrays with integer labels, and their train/test splits.

Every loader in :mod:`hwquant.data` returns a :class:`DataSplits`; both classes validate
shapes and dtypes when they are made, so a malformed source fails at load time with a
:class:`~hwquant.core.errors.DataError` rather than deep inside training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwquant.core.errors import DataError

PIXEL_MAX = 255
_STATS_CHUNK = 1 << 20  # pixels per histogram update: bounds the int64 temporaries to 8 MB


@dataclass(frozen=True, eq=False)
class ArrayDataset:
    """Images and labels held as NumPy arrays.

    Attributes:
        images: ``uint8`` array of shape ``[N, H, W, C]`` (channels last, as decoded).
        labels: ``int64`` array of shape ``[N]``.

    Equality is identity (``eq=False``): element-wise array comparison has no single truth value.
    """

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        """Raise :class:`DataError` unless the arrays have the documented shapes and dtypes."""
        images, labels = self.images, self.labels
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
            raise DataError(
                f"images must be a uint8 array of shape [N, H, W, C], got {_describe(images)}. "
                "Fix: convert with np.asarray(images, dtype=np.uint8) and add a channel axis."
            )
        if not isinstance(labels, np.ndarray) or labels.dtype != np.int64 or labels.ndim != 1:
            raise DataError(
                f"labels must be an int64 array of shape [N], got {_describe(labels)}. "
                "Fix: convert with np.asarray(labels, dtype=np.int64).ravel()."
            )
        if len(images) != len(labels):
            raise DataError(
                f"{len(images)} images but {len(labels)} labels. "
                "Fix: the source is inconsistent; give one label per image."
            )

    def __len__(self) -> int:
        """Number of examples."""
        return len(self.labels)


@dataclass(frozen=True)
class DataSplits:
    """A named data set: train and test splits plus what a model needs to know about them.

    Attributes:
        name: registry name the splits were loaded under.
        train, test: the two splits; images share ``H, W, C``.
        num_classes: labels lie in ``0 .. num_classes - 1``.
        mean, std: per-channel statistics of the train images, in ``[0, 1]`` pixel units.
        classes: human-readable class names, indexed by label.
    """

    name: str
    train: ArrayDataset
    test: ArrayDataset
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        """Raise :class:`DataError` if the splits disagree with each other or with the classes."""
        if self.train.images.shape[1:] != self.test.images.shape[1:]:
            raise DataError(
                f"{self.name}: train images are {self.train.images.shape[1:]} but test images "
                f"are {self.test.images.shape[1:]} (H, W, C). Fix: both splits must share one size."
            )
        if self.num_classes != len(self.classes):
            raise DataError(
                f"{self.name}: num_classes={self.num_classes} but {len(self.classes)} class names. "
                "Fix: give one name per class."
            )
        channels = self.train.images.shape[3]
        if len(self.mean) != channels or len(self.std) != channels:
            raise DataError(
                f"{self.name}: mean/std have {len(self.mean)}/{len(self.std)} entries for "
                f"{channels} channel(s). Fix: compute them with channel_stats(train.images)."
            )
        for split_name, split in (("train", self.train), ("test", self.test)):
            labels = split.labels
            if len(labels) == 0:
                raise DataError(
                    f"{self.name}: the {split_name} split is empty. "
                    "Fix: check that the source holds images for this split."
                )
            if labels.min() < 0 or labels.max() >= self.num_classes:
                raise DataError(
                    f"{self.name}: {split_name} labels span {labels.min()}..{labels.max()}, "
                    f"outside 0..{self.num_classes - 1}. Fix: the label file does not match "
                    "the class list; check that it belongs to this data set."
                )


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) standard deviation of uint8 images, in ``[0, 1]`` units.

    Built from a 256-bin histogram per channel, filled chunk by chunk, so the result is exact
    and needs no float copy of the images (CIFAR-10's train split would take 1.2 GB as float64).
    """
    channels = images.shape[-1]
    pixels = images.reshape(-1, channels)
    counts = np.zeros((channels, PIXEL_MAX + 1), dtype=np.int64)
    for start in range(0, len(pixels), _STATS_CHUNK):
        chunk = pixels[start : start + _STATS_CHUNK]
        for channel in range(channels):
            counts[channel] += np.bincount(chunk[:, channel], minlength=PIXEL_MAX + 1)
    values = np.arange(PIXEL_MAX + 1, dtype=np.float64) / PIXEL_MAX
    total = len(pixels)
    means = counts @ values / total
    variances = (counts * (values - means[:, None]) ** 2).sum(axis=1) / total
    return tuple(means.tolist()), tuple(np.sqrt(variances).tolist())


def make_splits(
    name: str, train: ArrayDataset, test: ArrayDataset, classes: tuple[str, ...]
) -> DataSplits:
    """Bundle ``train`` and ``test`` into :class:`DataSplits`, with statistics from ``train``."""
    mean, std = channel_stats(train.images)
    return DataSplits(
        name=name,
        train=train,
        test=test,
        num_classes=len(classes),
        mean=mean,
        std=std,
        classes=classes,
    )


def _describe(value: object) -> str:
    """Short ``dtype[shape]`` description of an array, or the type name of anything else."""
    if isinstance(value, np.ndarray):
        return f"{value.dtype}{list(value.shape)}"
    return type(value).__name__
