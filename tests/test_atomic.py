"""Atomic writes: content, permissions, the previous version kept, nothing left on failure."""

from __future__ import annotations

import os
import stat

import pytest

from hwquant.atomic import write_atomic


def test_writes_with_umask_permissions(tmp_path):
    path = write_atomic(tmp_path / "a.bin", b"hello")
    assert path.read_bytes() == b"hello"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_keeps_the_previous_version(tmp_path):
    path, prev = tmp_path / "a.bin", tmp_path / "a.prev"
    write_atomic(path, b"one", keep_previous=prev)
    write_atomic(path, b"two", keep_previous=prev)
    assert path.read_bytes() == b"two" and prev.read_bytes() == b"one"


def test_failure_leaves_target_and_no_temporary(tmp_path, monkeypatch):
    path = write_atomic(tmp_path / "a.bin", b"old")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space"):
        write_atomic(path, b"new")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]
