"""CIFAR-10 stored as an image folder: ``train/<class>/NNNN.jpg`` and ``test/<class>/NNNN.jpg``.

The source is either a tarball of that layout (read member by member with :mod:`tarfile`,
nothing is extracted) or an already-extracted directory. The label of an image is the position
of its class directory in :data:`CIFAR10_CLASSES`, and within a class the images are ordered by
the number in their file name, so the k-th file of a class is the k-th image of that class in
the official order. Decoding tens of thousands of JPEGs takes a while, so the result is cached
(see :mod:`hwquant.core.cache`).
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError
from rich.console import Console
from rich.progress import Progress

from hwquant.core.cache import (
    Arrays,
    cache_path,
    default_cache_dir,
    load_or_build,
    source_fingerprint,
)
from hwquant.core.errors import DataError
from hwquant.data.arrays import ArrayDataset, DataSplits, make_splits

NAME = "cifar10-folder"
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
SPLITS = ("train", "test")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
DATA_ENV = "HWQUANT_DATA"
DEFAULT_SOURCE = Path("../shared/data/cifar10/cifar10-jpeg-q75.tar.gz")

# (relative member name, file bytes, progress so far in the units of the reader's total)
Member = tuple[str, bytes, int]


def default_source() -> Path:
    """``$HWQUANT_DATA`` if set, else :data:`DEFAULT_SOURCE` (relative to the working directory)."""
    return Path(os.environ.get(DATA_ENV) or DEFAULT_SOURCE).expanduser()


def load_cifar10_folder(source: Path | None, cache_dir: Path | None, progress: bool) -> DataSplits:
    """Load CIFAR-10 from a tarball or extracted folder, decoding only on a cache miss.

    Args:
        source: the ``.tar.gz`` or the directory holding ``train/`` and ``test/``; None means
            :func:`default_source`.
        cache_dir: where decoded arrays are cached; None means the default cache directory.
        progress: show a progress bar while decoding.
    """
    source = default_source() if source is None else source.expanduser()
    if not source.exists():
        raise DataError(
            f"the CIFAR-10 image folder source {source} does not exist. Fix: pass root= (or set "
            f"{DATA_ENV}) to the cifar10-jpeg-q75.tar.gz tarball or to a directory holding "
            "train/<class>/*.jpg and test/<class>/*.jpg."
        )
    entry = cache_path(default_cache_dir() if cache_dir is None else cache_dir, NAME, source)
    arrays = load_or_build(
        entry, source_fingerprint(source), lambda: _decode_source(source, progress)
    )
    return make_splits(
        NAME,
        ArrayDataset(arrays["train_images"], arrays["train_labels"]),
        ArrayDataset(arrays["test_images"], arrays["test_labels"]),
        CIFAR10_CLASSES,
    )


def _decode_source(source: Path, progress: bool) -> Arrays:
    """Decode every image of ``source`` into ``{split}_images`` / ``{split}_labels`` arrays."""
    total, members = _read_folder(source) if source.is_dir() else _read_tar(source)
    found: dict[str, list[tuple[int, int, np.ndarray]]] = {split: [] for split in SPLITS}
    with Progress(console=Console(stderr=True), disable=not progress) as bar:
        task = bar.add_task(f"decoding {source.name}", total=total)
        for name, data, done in members:
            place = _parse_member(name)
            if place is not None:
                split, label, number = place
                found[split].append((label, number, _decode_image(data, name)))
            bar.update(task, completed=done)
    arrays: Arrays = {}
    for split, items in found.items():
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = _stack(source, split, items)
    return arrays


def _read_tar(path: Path) -> tuple[int, Iterator[Member]]:
    """Total compressed size of the tarball and a stream of its regular files."""

    def members() -> Iterator[Member]:
        try:
            with path.open("rb") as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
                for member in tar:
                    file = tar.extractfile(member) if member.isfile() else None
                    if file is not None:
                        yield member.name, file.read(), raw.tell()
        except (tarfile.TarError, EOFError, OSError) as err:
            raise DataError(
                f"cannot read the tarball {path}: {err}. Fix: the file is corrupt or truncated; "
                "copy it again, or pass root= to an extracted folder."
            ) from err

    return path.stat().st_size, members()


def _read_folder(root: Path) -> tuple[int, Iterator[Member]]:
    """Number of files under ``root/<split>/<class>/`` and a stream of them."""
    files = sorted(p for split in SPLITS for p in (root / split).glob("*/*") if p.is_file())
    members = (
        (path.relative_to(root).as_posix(), path.read_bytes(), done)
        for done, path in enumerate(files, start=1)
    )
    return len(files), members


def _parse_member(name: str) -> tuple[str, int, int] | None:
    """``(split, label, number)`` of an image path ``split/class/NNNN.jpg``; None for other files.

    Raises :class:`DataError` for an image under an unknown class or with a non-numeric name.
    """
    parts = PurePosixPath(name).parts
    if parts and parts[0] == ".":
        parts = parts[1:]
    if len(parts) != 3 or parts[0] not in SPLITS:
        return None
    split, class_name, file_name = parts
    stem, suffix = os.path.splitext(file_name)
    if suffix.lower() not in IMAGE_SUFFIXES:
        return None
    if class_name not in CIFAR10_CLASSES:
        raise DataError(
            f"{name}: unknown class directory {class_name!r}. Fix: class directories must be "
            f"named after the CIFAR-10 classes {', '.join(CIFAR10_CLASSES)}."
        )
    if not stem.isdigit():
        raise DataError(
            f"{name}: file name {file_name!r} is not a number. Fix: name the images of each "
            "class 0000.jpg, 0001.jpg, ... in the official order."
        )
    return split, CIFAR10_CLASSES.index(class_name), int(stem)


def _decode_image(data: bytes, name: str) -> np.ndarray:
    """Decode one encoded image into a ``uint8`` ``[H, W, 3]`` RGB array."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(
            f"cannot decode the image {name}: {err}. Fix: the file is corrupt; re-create the "
            "archive from the original images."
        ) from err


def _stack(
    source: Path, split: str, items: list[tuple[int, int, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of one split, ordered by (label, file number)."""
    if not items:
        raise DataError(
            f"{source} holds no images under {split}/<class>/. Fix: the source must contain "
            "train/<class>/NNNN.jpg and test/<class>/NNNN.jpg at its top level."
        )
    items.sort(key=lambda item: item[:2])
    shapes = sorted({image.shape for _, _, image in items})
    if len(shapes) > 1:
        raise DataError(
            f"{source}: the {split} images have different sizes {shapes}. "
            "Fix: resize all images to one size before packing them."
        )
    images = np.stack([image for _, _, image in items])
    labels = np.array([label for label, _, _ in items], dtype=np.int64)
    return images, labels
