"""The whole-design estimate: memories mapped as Yosys maps them, multipliers counted per
product and requantizer lane, every block and edge costed, lanes priced by their kind."""

from __future__ import annotations

import copy
import functools
import operator
import re

import numpy as np
import pytest

from hwquant.core.errors import ConfigError
from hwquant.hw.folding import Fold
from hwquant.rtl.network import build_design, estimate, weight_layer
from hwquant.rtl.network.estimate import (
    Cost,
    edge_cost,
    estimate_design,
    memory,
    multipliers,
    mux_luts,
    pool_block_cost,
    table_luts,
    weight_block_cost,
)
from hwquant.rtl.resources import LaneShape, bits, lane_cost, lane_kinds
from hwquant.rtl.unit import index_bits


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
    assert table_luts(1, 18, "ecp5") == 0  # a constant
    # ECP5: a LUT4 per 16 entries, joined by the slice's PFUMX / L6MUX21 (no LUT) up to 64
    assert table_luts(16, 18, "ecp5") == 18 and table_luts(32, 18, "ecp5") == 36
    assert table_luts(64, 18, "ecp5") == 72
    assert table_luts(32, 18, "ice40") == 54  # iCE40: a LUT4 multiplexer joins the pair
    # a 2:1 multiplexer bit has three inputs: one LUT4 (the LUTRAM edge of two 16-word halves)
    assert mux_luts(1, 8) == 0 and mux_luts(2, 8) == 8 and mux_luts(4, 3) == 6


def test_lanes_are_priced_by_their_registered_kind():
    assert lane_kinds() == ["codebook", "fixed", "sp2", "table"]
    shape = LaneShape("sp2", 2, 4, 8, 4, "ecp5")
    assert lane_cost(shape) == Cost(2 * 4 * 8)  # shift-add LUTs, no multiplier
    assert lane_cost(LaneShape("fixed", 2, 4, 10, 5, "ecp5")) == Cost(dsps=2)
    with pytest.raises(ConfigError, match=r"no lane cost for product kind 'bogus'.*sp2"):
        lane_cost(LaneShape("bogus", 1, 4, 8, 4, "ecp5"))


def test_block_ram_edge_has_no_address_adders_when_a_bank_is_a_power_of_two():
    # bank, bank and 2-bit count registers, a next-state LUT4 each and avail / space
    assert edge_cost({"words": 128, "width": 256, "banks": 2}, "ecp5") == Cost(6, brams=8, ffs=4)
    # 784 words per bank (MNIST 28 x 28): bank * 784 + address is two real adders
    odd = edge_cost({"words": 1568, "width": 32, "banks": 2}, "ecp5")
    assert odd.luts == 6 + 2 * bits(1568) and odd.ffs == 4


def test_max_pool_costs_a_compare_and_a_select_per_bit_and_padding_where_reachable():
    block = {
        "op": "maxpool",
        "kernel": [2, 2],
        "stride": [2, 2],
        "padding": [0, 0],
        "out_shape": [64, 4, 4],
    }

    def grow(size):  # LUT4s of one more bit of the word
        return (
            pool_block_cost(block, 257, "ecp5", size).luts
            - pool_block_cost(block, 256, "ecp5", size).luts
        )

    # 8 x 8 -> 4 x 4: iy = 2 oy + ky <= 7 for every value of the 2-bit oy: no padding mux
    assert grow((8, 8)) == 2
    # a 2-bit oy reaches 7 also from a 7 x 7 input: the padding test stays, a LUT4 per bit
    assert grow((7, 7)) == 3
    assert grow(None) == 3


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


def test_requantizer_is_costed_on_the_bits_above_its_smallest_shift(llsq_cnn, tmp_path):
    folding = {"features.0.0": Fold(2, 1), "features.1.0": Fold(2, 4), "classifier": Fold(1, 1)}
    design = build_design(llsq_cnn, "lfe5u-85f", tmp_path / "d", folding=folding, input_size=8)
    block = next(b for b in design.record["blocks"] if b["name"] == "features.1.0")
    rq = block["requantizer"]
    # the recorded floor per lane is the bits common to every arm of the lane's shift case
    text = (tmp_path / "d" / "rtl" / f"{block['module']}.v").read_text()
    for p, low in enumerate(rq["min_shifts"]):
        arms = [int(s) for s in re.findall(rf"shift_{p} = \d+'d(\d+);", text)]
        arms += [0] if 1 << index_bits(len(arms)) > len(arms) else []
        assert low == functools.reduce(operator.and_, arms) <= min(arms)
    # every bit below the smallest shift is one a rounding adder, a shift and a clamp fewer
    # (this tiny model's shifts share no bit: a floor of 9 is set by hand)
    lanes = len(rq["min_shifts"])
    full, floor = copy.deepcopy(block), copy.deepcopy(block)
    full["requantizer"]["min_shifts"] = [0] * lanes
    floor["requantizer"]["min_shifts"] = [9] * lanes
    shifts = rq["distinct_shifts"]
    per_bit = 2.5 + bits(shifts) / 2 * (shifts > 1)
    dropped = 8 * lanes
    live, wide = weight_block_cost(floor, "ecp5"), weight_block_cost(full, "ecp5")
    assert np.isclose(wide.luts - live.luts, per_bit * dropped)
    assert rq["multiplies"] == lanes  # LLSQ multipliers: every lane multiplies on a DSP
    # the product's copy, rounded, shifted: the product itself is the MULT18X18D's output
    # register on ECP5 (hwquant.rtl.network.multiplier), flip-flops on iCE40
    assert wide.ffs - live.ffs == 3 * dropped
    on_ice40 = weight_block_cost(full, "ice40").ffs - weight_block_cost(floor, "ice40").ffs
    assert on_ice40 == 4 * dropped


def test_a_block_that_records_its_own_cost_is_taken_at_its_word(llsq_cnn, tmp_path):
    folding = {"features.0.0": Fold(2, 1), "features.1.0": Fold(2, 4), "classifier": Fold(1, 1)}
    design = build_design(llsq_cnn, "lfe5u-85f", tmp_path / "d", folding=folding, input_size=8)
    record = copy.deepcopy(design.record)
    pool = next(b for b in record["blocks"] if b["op"] == "maxpool")
    pool["op"] = "some_new_op"  # an op this module has no formula for
    with pytest.raises(ConfigError, match="no cost for block"):
        estimate_design(record, "ecp5")
    pool["cost"] = {"ecp5": {"luts": 7.0, "dsps": 1, "brams": 0, "ffs": 9}}
    assert estimate_design(record, "ecp5").parts[pool["name"]] == Cost(7.0, 1, 0, 9)


def test_a_design_json_without_the_newer_fields_is_costed_as_its_generator_built_it(
    llsq_cnn, tmp_path, monkeypatch
):
    # records written before a ROM's bank size (session 8) and the multiplying lanes (session
    # 9) were recorded: banks of the default size, and every requantizer register in the fabric
    folding = {"features.0.0": Fold(1, 1), "features.1.0": Fold(2, 4), "classifier": Fold(1, 1)}
    for module in (weight_layer, estimate):  # the classifier's 256-word ROM in banks of 64
        monkeypatch.setattr(module, "ROM_BANK_WORDS", 64)
    monkeypatch.setattr(weight_layer, "ROM_CASCADE_BANKS", 1)
    design = build_design(llsq_cnn, "lfe5u-85f", tmp_path / "d", folding=folding, input_size=8)
    block = next(b for b in design.record["blocks"] if b["name"] == "classifier")
    assert block["weight_rom"]["banks"] > 1
    old = copy.deepcopy(block)
    del old["weight_rom"]["bank_words"]
    assert weight_block_cost(old, "ecp5") == weight_block_cost(block, "ecp5")
    conv = next(b for b in design.record["blocks"] if b["name"] == "features.1.0")
    unrecorded = copy.deepcopy(conv)
    del unrecorded["requantizer"]["multiply_lanes"]
    fabric = weight_block_cost(unrecorded, "ecp5").ffs - weight_block_cost(conv, "ecp5").ffs
    rq = conv["requantizer"]
    live = [rq["wide"] - max(low - 1, 0) for low in rq["min_shifts"]]
    assert fabric == sum(conv["acc_bits"] + live[p] for p in rq["multiply_lanes"]) > 0
