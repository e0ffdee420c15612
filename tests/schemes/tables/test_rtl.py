"""The table-lookup accumulator, simulated on a table model's real windows (padding included)."""

from __future__ import annotations

import numpy as np
import pytest

from hwquant.core.errors import ConfigError
from hwquant.rtl import mac_stimulus, simulate
from hwquant.schemes.tables.rtl import table_accumulator
from tests.goldens import requires_iverilog


@requires_iverilog
def test_sums_equal_the_table_engine(table_goldens):
    for golden in table_goldens:
        node = golden["node"]
        rng = np.random.default_rng(0)
        n, p, o = golden["acc"].shape
        image, pixel, channel = (
            rng.integers(0, n, 16),
            rng.integers(0, p, 16),
            rng.integers(0, o, 16),
        )
        x = golden["patches"][image, pixel]
        w = golden["weight_index"][channel]
        expected = golden["acc"][image, pixel, channel]
        assert (x == node.table.shape[0]).any()  # padding taps read the zero row
        unit = table_accumulator(node.table.tolist(), node.entry_bits, 32)
        result = simulate(unit, mac_stimulus({"x": x, "w": w}, expected))
        assert result.errors == 0 and np.array_equal(result.outputs["acc"], expected)


def test_ports_hold_the_padding_index():
    unit = table_accumulator([[1, -2, 3]] * 8, 4, 12)  # |A| = 8 and the padding index 8
    assert unit.port("x").width == 4 and unit.port("w").width == 2


@pytest.mark.parametrize(
    ("table", "entry_bits", "acc_bits", "match"),
    [
        ([[1, 8]], 4, 16, "outside -8..7"),
        ([1, 2], 4, 16, "2-D"),
        ([[1, 2]], 0, 16, "entry_bits=0"),
        ([[1, 127]], 8, 7, "acc_bits=7 is too narrow"),
    ],
)
def test_bad_tables_are_refused(table, entry_bits, acc_bits, match):
    with pytest.raises(ConfigError, match=match):
        table_accumulator(table, entry_bits, acc_bits)
