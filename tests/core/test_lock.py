"""The run-directory lock (hwquant/core/lock.py): one holder at a time, named to the process
refused; released when the block ends; an unusable directory named before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwquant.core.errors import ConfigError
from hwquant.core.lock import LOCK_NAME, DirectoryLockedError, directory_lock, prepare_directory


def test_a_second_holder_is_refused_naming_the_first(tmp_path: Path):
    refused = pytest.raises(DirectoryLockedError, match=r"--out .* in use by hwquant train \(first")
    first = directory_lock(tmp_path, "--out", "hwquant train (first)")
    with first, refused, directory_lock(tmp_path, "--out", "hwquant train (second)"):
        pass
    assert "first" in (tmp_path / LOCK_NAME).read_text()


def test_the_lock_is_released_when_the_block_ends(tmp_path: Path):
    with directory_lock(tmp_path, "--out", "one"):
        pass
    with directory_lock(tmp_path, "--out", "two"):
        pass
    assert (tmp_path / LOCK_NAME).read_text().startswith("two (pid ")


def test_prepare_directory_makes_parents_and_refuses_a_file(tmp_path: Path):
    target = tmp_path / "a" / "b"
    prepare_directory(target, "--out")
    assert target.is_dir()
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(ConfigError, match=r"--out '.*file' is a file"):
        prepare_directory(file, "--out")
    with pytest.raises(ConfigError, match=r"--out '.*' cannot be made"):
        prepare_directory(file / "below", "--out")


def test_a_directory_that_cannot_be_written_is_named(tmp_path: Path):
    refused = pytest.raises(ConfigError, match=r"--out '.*missing' cannot be written")
    with refused, directory_lock(tmp_path / "missing", "--out", "me"):
        pass
