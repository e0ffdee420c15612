"""CIFAR-10 and CIFAR-100 in their official "python version" pickle format.

``cifar-10-batches-py`` holds ``data_batch_1`` .. ``data_batch_5``, ``test_batch`` and
``batches.meta``; ``cifar-100-python`` holds ``train``, ``test`` and ``meta`` and is loaded with
its 100 fine labels. Each batch is a pickled dict with ``bytes`` keys: ``b"data"`` is a uint8
``[N, 3072]`` array whose rows are the red, green and blue 32x32 planes one after another.

Unpickling can run arbitrary code: only load directories from a source you trust.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from hwquant.core.errors import DataError
from hwquant.data.arrays import ArrayDataset, DataSplits, make_splits
from hwquant.data.paths import require_dir, require_file

CIFAR_SIDE = 32
CIFAR_CHANNELS = 3
_FIX = "pass root= to the extracted directory of the official python-version tarball ({})."


def load_cifar10(root: Path) -> DataSplits:
    """Load ``cifar-10-batches-py``: 50000 train and 10000 test images, 10 classes."""
    root = require_dir(root, "the CIFAR-10 directory", _FIX.format("cifar-10-python.tar.gz"))
    train = _concat([_read_split(root / f"data_batch_{i}", b"labels") for i in range(1, 6)])
    test = _read_split(root / "test_batch", b"labels")
    return make_splits("cifar10", train, test, _class_names(root / "batches.meta", b"label_names"))


def load_cifar100(root: Path) -> DataSplits:
    """Load ``cifar-100-python`` with its fine labels: 50000 train, 10000 test, 100 classes."""
    root = require_dir(root, "the CIFAR-100 directory", _FIX.format("cifar-100-python.tar.gz"))
    train = _read_split(root / "train", b"fine_labels")
    test = _read_split(root / "test", b"fine_labels")
    return make_splits("cifar100", train, test, _class_names(root / "meta", b"fine_label_names"))


def _read_batch(path: Path) -> dict[bytes, Any]:
    """Unpickle one batch file (``encoding="bytes"``, as the files were written by Python 2)."""
    fix = "the directory is incomplete; extract the official tarball again."
    path = require_file(path, "the CIFAR batch file", fix)
    try:
        with path.open("rb") as file:
            batch = pickle.load(file, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise DataError(
            f"{path} is not a readable CIFAR pickle ({err}). Fix: the file is corrupt or "
            "truncated; extract the official tarball again."
        ) from err
    if not isinstance(batch, dict):
        raise DataError(
            f"{path} holds a {type(batch).__name__}, not a CIFAR batch dict. "
            "Fix: point root= at the official python-version directory."
        )
    return batch


def _field(batch: dict[bytes, Any], key: bytes, path: Path) -> Any:
    """``batch[key]``, or a :class:`DataError` naming the missing key and the file."""
    if key not in batch:
        raise DataError(
            f"{path} has no {key!r} entry (it has {sorted(batch)}). "
            "Fix: point root= at the matching official directory (CIFAR-10 vs CIFAR-100)."
        )
    return batch[key]


def _read_split(path: Path, label_key: bytes) -> ArrayDataset:
    """Images (converted to ``[N, 32, 32, 3]``) and labels of one batch file."""
    batch = _read_batch(path)
    rows = np.asarray(_field(batch, b"data", path))
    labels = np.asarray(_field(batch, label_key, path), dtype=np.int64)
    row_size = CIFAR_CHANNELS * CIFAR_SIDE * CIFAR_SIDE
    if rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[1] != row_size:
        raise DataError(
            f"{path}: data is {rows.dtype}{list(rows.shape)}, expected uint8[N, {row_size}]. "
            "Fix: the file is not an official CIFAR batch; extract the tarball again."
        )
    images = rows.reshape(-1, CIFAR_CHANNELS, CIFAR_SIDE, CIFAR_SIDE).transpose(0, 2, 3, 1)
    return ArrayDataset(np.ascontiguousarray(images), labels)


def _concat(parts: list[ArrayDataset]) -> ArrayDataset:
    """Join several batches in order."""
    return ArrayDataset(
        np.concatenate([part.images for part in parts]),
        np.concatenate([part.labels for part in parts]),
    )


def _class_names(path: Path, key: bytes) -> tuple[str, ...]:
    """Class names stored under ``key`` in the meta file ``path``, decoded from bytes."""
    return tuple(name.decode() for name in _field(_read_batch(path), key, path))
