"""Checkpoint files: atomic writes, the previous copy, and detection of damaged files."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import torch

from hwquant.app.train import capture_rng_state
from hwquant.core.checkpoint import (
    CheckpointWriteError,
    load_checkpoint,
    previous_path,
    resume_path,
    save_checkpoint,
)
from hwquant.core.errors import FileFormatError


def state(value: float) -> dict[str, object]:
    return {"weights": torch.full((4, 4), value), "step": int(value), "name": "x", "none": None}


def assert_holds(path: Path, value: float) -> None:
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["weights"], torch.full((4, 4), value))
    assert loaded["step"] == int(value)


def test_round_trip_and_rotation(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, state(1))
    save_checkpoint(path, state(2))
    assert_holds(path, 2)
    assert previous_path(path) == tmp_path / "last.prev.pt"
    assert_holds(previous_path(path), 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.prev.pt", "last.pt"]


def test_rng_states_load_with_weights_only(tmp_path: Path) -> None:
    rng = capture_rng_state()
    save_checkpoint(tmp_path / "rng.pt", {"rng": rng})
    loaded = load_checkpoint(tmp_path / "rng.pt")["rng"]
    assert torch.equal(loaded["torch"], rng["torch"])
    random.setstate(loaded["python"])
    assert loaded["numpy"] == rng["numpy"]


def test_failed_replace_keeps_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, state(1))

    def fail(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(CheckpointWriteError, match=r"cannot write checkpoint .*last.pt'"):
        save_checkpoint(path, state(2))
    monkeypatch.undo()
    assert_holds(path, 1)
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left


def test_failed_write_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, state(1))

    def fail(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(CheckpointWriteError, match="Input/output error"):
        save_checkpoint(path, state(2))
    monkeypatch.undo()
    assert_holds(path, 1)
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_directory(tmp_path: Path) -> None:
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(CheckpointWriteError, match=r"Fix: make .* writable"):
            save_checkpoint(tmp_path / "last.pt", state(1))
        assert list(tmp_path.iterdir()) == []
    finally:
        tmp_path.chmod(0o755)


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointWriteError, match=r"cannot write checkpoint .*Fix: make"):
        save_checkpoint(tmp_path / "absent" / "last.pt", state(1))


def damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncate":
        data = data[: len(data) // 2]
    elif how == "truncate-header":
        data = data[:20]
    else:
        data[-10] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("how", "match"),
    [
        ("truncate", r"is truncated \(\d+ of \d+ payload bytes\)"),
        ("truncate-header", r"is truncated \(20 bytes, shorter than its header\)"),
        ("flip", r"is corrupted \(SHA-256 checksum mismatch\)"),
    ],
)
def test_damaged_file_names_file_and_fallback(tmp_path: Path, how: str, match: str) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, state(1))
    save_checkpoint(path, state(2))
    damage(path, how)
    with pytest.raises(FileFormatError, match=match) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert f"'{path}'" in message
    assert f"delete '{path}' to restart from the previous checkpoint '{previous_path(path)}'" in (
        message
    )
    path.unlink()
    assert resume_path(path) == previous_path(path)
    assert_holds(resume_path(path), 1)


def test_damaged_file_without_previous(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, state(1))
    damage(path, "flip")
    with pytest.raises(FileFormatError, match="Fix: delete it and start the run again"):
        load_checkpoint(path)


def test_foreign_file_and_version(tmp_path: Path) -> None:
    foreign = tmp_path / "model.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(FileFormatError, match="is not an hwquant checkpoint"):
        load_checkpoint(foreign)
    path = tmp_path / "last.pt"
    save_checkpoint(path, state(1))
    data = bytearray(path.read_bytes())
    data[8] = 99  # the format version follows the 8-byte magic
    path.write_bytes(bytes(data))
    with pytest.raises(FileFormatError, match="format version 99; this hwquant reads version 1"):
        load_checkpoint(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileFormatError, match="does not exist"):
        load_checkpoint(tmp_path / "last.pt")
    assert resume_path(tmp_path / "last.pt") is None
