"""benchmarks/fashion_mnist_tables.py: the freeze step of ``--freeze-epochs`` and the rows."""

from __future__ import annotations

from benchmarks.fashion_mnist_tables import _rows, freeze_step, parse_args

INIT = ["--init-fp32", "fp32.pt"]


def test_freeze_epochs_become_the_first_frozen_step():
    args = parse_args([*INIT, "--epochs-qat", "3", "--freeze-epochs", "1"])
    assert freeze_step(args, 468) == 936
    assert freeze_step(parse_args([*INIT, "--epochs-qat", "2"]), 468) is None
    assert freeze_step(parse_args([*INIT, "--freeze-epochs", "5"]), 468) == 1


def test_rows_keep_the_requested_splits_of_each_budget():
    rows = _rows(parse_args([*INIT, "--splits", "16x20,8x5,20x16"]))
    assert rows == [(40, 8, 5), (320, 16, 20), (320, 20, 16)]
