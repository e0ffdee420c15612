"""The whole-design estimate: memories mapped as Yosys maps them, multipliers counted per
product and requantizer lane, every block and edge costed."""

from __future__ import annotations

import pytest

from hwquant.core.errors import ConfigError
from hwquant.hw.folding import Fold
from hwquant.rtl.network import build_design
from hwquant.rtl.network.estimate import (
    Cost,
    estimate_design,
    memory,
    multipliers,
    mux_luts,
    table_luts,
)


@pytest.mark.parametrize(
    ("depth", "width", "family", "cost"),
    [
        (128, 8, "ecp5", Cost(4 * 16 + mux_luts(8, 8))),  # 16 LUTRAMs cost less than a DP16KD
        (128, 128, "ecp5", Cost(brams=4)),  # 512 x 36: four blocks
        (128, 512, "ecp5", Cost(brams=15)),
        (10240, 8, "ecp5", Cost(brams=5)),  # 2048 x 9
        (2, 260, "ice40", Cost(mux_luts(2, 260))),  # two words: flip-flops
        (1024, 8, "ice40", Cost(brams=2)),  # 512 x 8
    ],
)
def test_memories_map_as_yosys_does(depth, width, family, cost):
    assert memory(depth, width, family) == cost


@pytest.mark.parametrize(
    ("a", "b", "family", "count"),
    [
        (9, 8, "ice40", 1),  # an 8-bit code times an 8-bit weight: one SB_MAC16
        (5, 4, "ice40", 0),  # a 9-bit product: Yosys keeps it in LUTs (Y_MINWIDTH 11)
        (17, 13, "ice40", 1),  # a 16-bit slice on a MAC16, the 1-bit remainder in LUTs
        (17, 17, "ice40", 1),
        (32, 16, "ice40", 2),
        (5, 4, "ecp5", 1),  # ECP5: every product on a MULT18X18D (digits-llsq-ecp5: exact)
    ],
)
def test_multipliers_as_yosys_maps_them(a, b, family, count):
    assert multipliers(a, b, family) == count


def test_tables_and_muxes():
    assert table_luts(1, 18) == 0  # a constant
    assert table_luts(16, 18) == 18 and table_luts(32, 18) == 54
    assert mux_luts(1, 8) == 0 and mux_luts(4, 3) == 6


def test_design_estimate_counts_every_part_and_multiplier(llsq_cnn, tmp_path):
    folding = {"features.0.0": Fold(2, 1), "features.1.0": Fold(2, 4), "classifier": Fold(1, 1)}
    design = build_design(llsq_cnn, "lfe5u-85f", tmp_path / "d", folding=folding, input_size=8)
    est = estimate_design(design.record, "ecp5")
    names = {b["name"] for b in design.record["blocks"]}
    assert names | {f"edge {e['from']} -> {e['to']}" for e in design.record["edges"]} == set(
        est.parts
    )
    # one multiplier per fixed-point product, one per requantizer lane (not the last layer)
    assert est.total.dsps == (2 + 2) + (2 * 4 + 2) + 1
    assert est.total.luts > 0
    with pytest.raises(ConfigError, match="no estimate for family 'xc7'"):
        estimate_design(design.record, "xc7")
