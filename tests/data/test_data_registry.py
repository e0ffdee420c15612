"""Tests of load_dataset's name dispatch and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwquant.core.errors import DataError
from hwquant.data import load_dataset
from hwquant.data.registry import DATASET_NAMES


def test_unknown_name_lists_allowed_names() -> None:
    with pytest.raises(DataError, match="unknown data set 'cifar11'") as info:
        load_dataset("cifar11")
    for name in DATASET_NAMES:
        assert name in str(info.value)


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "mnist"])
def test_sets_without_default_location_need_root(name: str) -> None:
    with pytest.raises(DataError, match=f"{name} has no default location. Fix: pass root="):
        load_dataset(name)


def test_missing_directory_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"the mnist directory .*gone does not exist\. Fix:"):
        load_dataset("mnist", tmp_path / "gone")


def test_digits_takes_no_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="takes no root"):
        load_dataset("digits", tmp_path)
