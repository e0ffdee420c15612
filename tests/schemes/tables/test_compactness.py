"""Compactness measures of a lowered table model."""

from __future__ import annotations

import numpy as np

from hwquant.schemes.tables import compactness


def test_measures_of_the_small_cnn(small_cnn_tables):
    _, table_model, _ = small_cnn_tables
    measures = compactness(table_model)
    first, *inner = measures["layers"]
    assert (first["act_entries"], first["weight_entries"], first["entries"]) == (256, 5, 1280)
    assert all(row["entries"] == 40 and row["bits"] == 40 * 16 for row in inner)
    assert measures["max_entries"] == 1280 and measures["max_inner_entries"] == 40
    assert measures["sum_entries"] == 1280 + 40 * len(inner)
    for row, unit in zip(measures["layers"], table_model.units(), strict=True):
        assert row["distinct"] == np.unique(unit.table).size
        assert row["distinct_magnitudes"] <= row["distinct"] <= row["entries"]


def test_add_tables_are_counted(residual_tables):
    _, table_model, _ = residual_tables
    rows = compactness(table_model)["layers"]
    add = next(row for row in rows if row["kind"] == "add")
    assert add["entries"] == 4 * 4 and add["entry_bits"] == 2
