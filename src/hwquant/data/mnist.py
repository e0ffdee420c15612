"""MNIST and Fashion-MNIST from their four IDX files.

A directory holds ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each optionally gzip-compressed
(``.gz``). Images become ``uint8 [N, 28, 28, 1]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hwquant.core.errors import DataError
from hwquant.data.arrays import ArrayDataset, DataSplits, make_splits
from hwquant.data.idx import read_idx
from hwquant.data.paths import require_dir

MNIST_CLASSES = tuple(str(digit) for digit in range(10))
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# Where Debian's ``dataset-fashion-mnist`` package installs the files.
FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

_MNIST_FIX = "pass root= to a directory holding the four MNIST IDX files (gzip or raw)."
_FASHION_FIX = (
    "run `apt-get install dataset-fashion-mnist` (it installs the files in "
    f"{FASHION_MNIST_DEBIAN_DIR}), or pass root= to a directory holding the four IDX files."
)


def load_mnist(root: Path) -> DataSplits:
    """Load MNIST (handwritten digits) from ``root``."""
    return _load("mnist", root, MNIST_CLASSES, _MNIST_FIX)


def load_fashion_mnist(root: Path | None) -> DataSplits:
    """Load Fashion-MNIST from ``root``, by default from the Debian package's directory."""
    root = FASHION_MNIST_DEBIAN_DIR if root is None else root
    return _load("fashion-mnist", root, FASHION_MNIST_CLASSES, _FASHION_FIX)


def _load(name: str, root: Path, classes: tuple[str, ...], fix: str) -> DataSplits:
    """Read both splits of an IDX data set; ``fix`` tells how to obtain missing files."""
    root = require_dir(root, f"the {name} directory", fix)
    train = _read_split(root, "train", fix)
    test = _read_split(root, "t10k", fix)
    return make_splits(name, train, test, classes)


def _read_split(root: Path, prefix: str, fix: str) -> ArrayDataset:
    """Images and labels of the split whose files start with ``prefix``."""
    images_path = _find(root, f"{prefix}-images-idx3-ubyte", fix)
    labels_path = _find(root, f"{prefix}-labels-idx1-ubyte", fix)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise DataError(
            f"{images_path} holds {images.dtype}{list(images.shape)}, expected uint8 "
            "[N, H, W] images. Fix: check that the images and labels files are not swapped."
        )
    if labels.ndim != 1:
        raise DataError(
            f"{labels_path} holds an array of shape {list(labels.shape)}, expected [N] labels. "
            "Fix: check that the images and labels files are not swapped."
        )
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} "
            "labels. Fix: both files must come from the same release; copy them again."
        )
    return ArrayDataset(images[..., np.newaxis], labels.astype(np.int64))


def _find(root: Path, stem: str, fix: str) -> Path:
    """``root/stem.gz`` if it exists, else ``root/stem``; :class:`DataError` if neither does."""
    candidates = (root / f"{stem}.gz", root / stem)
    for path in candidates:
        if path.is_file():
            return path
    raise DataError(f"neither {candidates[0]} nor {candidates[1]} exists. Fix: {fix}")
