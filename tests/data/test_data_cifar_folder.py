"""Tests of the CIFAR-10 image-folder loader on tiny tarballs and folders written here."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hwquant.core.errors import DataError
from hwquant.data import cifar_folder, load_dataset

SIDE = 8
# split -> class -> file number -> grey level. File numbers are deliberately not zero-padded,
# so that numeric order (1, 2, 10) differs from name order (1, 10, 2).
LAYOUT = {
    "train": {"bird": {10: 200, 1: 40, 2: 80}, "airplane": {2: 160, 10: 240, 1: 120}},
    "test": {"airplane": {7: 30, 3: 60}, "bird": {5: 90, 4: 220}},
}


def _jpeg(level: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (SIDE, SIDE), (level, level, level)).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def _members(layout: dict) -> list[tuple[str, bytes]]:
    """(path, JPEG bytes) of every image, in reversed name order to defeat any reliance on it."""
    files = [
        (f"{split}/{name}/{number}.jpg", _jpeg(level))
        for split, classes in layout.items()
        for name, images in classes.items()
        for number, level in images.items()
    ]
    return sorted(files, reverse=True)


def write_tar(path: Path, layout: dict = LAYOUT) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in _members(layout):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def write_folder(root: Path, layout: dict = LAYOUT) -> Path:
    for name, data in _members(layout):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def _levels(images: np.ndarray) -> list[int]:
    return [round(float(image.mean())) for image in images]


def test_tarball_shapes_labels_and_order(tmp_path: Path) -> None:
    splits = load_dataset(
        "cifar10-folder", write_tar(tmp_path / "c.tar.gz"), cache_dir=tmp_path / "cache"
    )
    assert splits.name == "cifar10-folder"
    assert splits.classes == cifar_folder.CIFAR10_CLASSES
    assert splits.num_classes == 10
    assert splits.train.images.shape == (6, SIDE, SIDE, 3)
    assert splits.train.images.dtype == np.uint8
    assert splits.train.labels.dtype == np.int64
    # airplane (label 0) before bird (label 2); within a class by file number 1, 2, 10.
    assert splits.train.labels.tolist() == [0, 0, 0, 2, 2, 2]
    assert _levels(splits.train.images) == pytest.approx([120, 160, 240, 40, 80, 200], abs=2)
    assert splits.test.labels.tolist() == [0, 0, 2, 2]
    assert _levels(splits.test.images) == pytest.approx([60, 30, 220, 90], abs=2)
    assert splits.mean == pytest.approx((140 / 255,) * 3, abs=0.01)


def test_extracted_folder_equals_tarball(tmp_path: Path) -> None:
    from_tar = load_dataset(
        "cifar10-folder", write_tar(tmp_path / "c.tar.gz"), cache_dir=tmp_path / "cache"
    )
    from_dir = load_dataset(
        "cifar10-folder", write_folder(tmp_path / "dir"), cache_dir=tmp_path / "cache"
    )
    for split in ("train", "test"):
        np.testing.assert_array_equal(
            getattr(from_tar, split).images, getattr(from_dir, split).images
        )
        np.testing.assert_array_equal(
            getattr(from_tar, split).labels, getattr(from_dir, split).labels
        )


def test_second_load_reads_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source, cache = write_tar(tmp_path / "c.tar.gz"), tmp_path / "cache"
    first = load_dataset("cifar10-folder", source, cache_dir=cache, progress=True)
    assert [p.suffix for p in cache.iterdir()] == [".npz"]  # no temporary file left behind

    def refuse(data: bytes, name: str) -> np.ndarray:
        raise AssertionError(f"decoded {name} although the cache is valid")

    monkeypatch.setattr(cifar_folder, "_decode_image", refuse)
    second = load_dataset("cifar10-folder", source, cache_dir=cache)
    np.testing.assert_array_equal(first.train.images, second.train.images)
    np.testing.assert_array_equal(first.test.labels, second.test.labels)
    assert first.mean == second.mean


def test_changed_source_is_decoded_again(tmp_path: Path) -> None:
    source, cache = write_tar(tmp_path / "c.tar.gz"), tmp_path / "cache"
    load_dataset("cifar10-folder", source, cache_dir=cache)
    changed = {"train": {"cat": {0: 10}}, "test": {"dog": {0: 250}}}
    write_tar(source, changed)
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    splits = load_dataset("cifar10-folder", source, cache_dir=cache)
    assert splits.train.labels.tolist() == [3]
    assert splits.test.labels.tolist() == [5]
    assert _levels(splits.test.images) == pytest.approx([250], abs=2)
    assert len(list(cache.iterdir())) == 1  # the stale entry was replaced, not kept


def test_environment_variables_set_source_and_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HWQUANT_DATA", str(write_tar(tmp_path / "c.tar.gz")))
    monkeypatch.setenv("HWQUANT_CACHE", str(tmp_path / "env-cache"))
    splits = load_dataset("cifar10-folder", progress=False)
    assert len(splits.train) == 6
    assert len(list((tmp_path / "env-cache").glob("cifar10-folder-*.npz"))) == 1


def test_missing_source_names_path_and_fix(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.tar.gz"
    with pytest.raises(DataError, match=r"nowhere\.tar\.gz does not exist\. Fix: pass root="):
        load_dataset("cifar10-folder", missing, cache_dir=tmp_path)


@pytest.mark.parametrize(
    ("layout", "match"),
    [
        ({"train": {"cats": {0: 1}}, "test": {"cat": {0: 1}}}, "unknown class directory 'cats'"),
        ({"train": {"cat": {0: 1}}, "test": {}}, r"no images under test/<class>/"),
    ],
)
def test_malformed_layout_is_rejected(tmp_path: Path, layout: dict, match: str) -> None:
    with pytest.raises(DataError, match=match):
        load_dataset("cifar10-folder", write_tar(tmp_path / "c.tar.gz", layout), cache_dir=tmp_path)


def test_non_numeric_file_name_is_rejected(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "dir")
    (root / "train" / "cat").mkdir()
    (root / "train" / "cat" / "first.jpg").write_bytes(_jpeg(5))
    with pytest.raises(DataError, match=r"'first\.jpg' is not a number"):
        load_dataset("cifar10-folder", root, cache_dir=tmp_path / "cache")


def test_truncated_tarball_is_rejected(tmp_path: Path) -> None:
    source = write_tar(tmp_path / "c.tar.gz")
    source.write_bytes(source.read_bytes()[:-40])
    with pytest.raises(DataError, match="corrupt or truncated"):
        load_dataset("cifar10-folder", source, cache_dir=tmp_path / "cache")
