"""``benchmarks.estimate_parts``: a flattened netlist's cells go to the block or edge whose
instance their hierarchical name starts with, in the estimate's units."""

from __future__ import annotations

from benchmarks.estimate_parts import UNATTRIBUTED, attribute


def test_cells_are_attributed_by_their_hierarchical_names():
    record = {
        "blocks": [{"name": "input"}, {"name": "features.0.0"}],
        "edges": [{"from": "input", "to": "features.0.0"}],
    }
    cells = {
        "u_b1.acc_TRELLIS_FF_Q": "TRELLIS_FF",
        "u_b1.mul_0_0.entries.0.0": "DP16KD",
        "\\u_b1.add.ccu": "CCU2C",  # a carry cell: two LUT4s
        "u_b0.cnt_LUT4": "LUT4",
        "e0_0_1.mem.0.0": "TRELLIS_DPR16X4",  # a 16x4 LUTRAM: four LUT4s
        "$abc$123$auto": "LUT4",  # named by Yosys alone
        "u_b1.pfumx": "PFUMX",  # not a unit of the estimate
    }
    netlist = {"modules": {"hwquant_top": {"cells": {k: {"type": v} for k, v in cells.items()}}}}
    assert attribute(record, netlist) == {
        "features.0.0": [2, 0, 1, 1],
        "input": [1, 0, 0, 0],
        "edge input -> features.0.0": [4, 0, 0, 0],
        UNATTRIBUTED: [1, 0, 0, 0],
    }
