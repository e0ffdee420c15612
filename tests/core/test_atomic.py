"""Atomic writes: content, permissions, the previous version kept, nothing left on failure."""

from __future__ import annotations

import os
import stat

import pytest

from hwquant.core.atomic import remove_stale_temporaries, write_atomic


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


def test_stale_temporaries_of_killed_writes_are_removed(tmp_path):
    target = write_atomic(tmp_path / "last.pt", b"new")
    killed = [tmp_path / ".last.pt.abc123.tmp", tmp_path / ".last.pt.def456.tmp"]
    for tmp in killed:
        tmp.write_bytes(b"half a checkpoint")
    other = tmp_path / ".model.npz.xyz.tmp"  # another file's write is not touched
    other.write_bytes(b"x")
    assert remove_stale_temporaries(target) == 2
    assert not any(tmp.exists() for tmp in killed) and other.exists()
    assert target.read_bytes() == b"new"
