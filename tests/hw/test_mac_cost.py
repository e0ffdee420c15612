"""Per-MAC costs: SP2 level structure, the LUT formulas by hand, DSP packing, JSON overrides."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwquant.core.errors import ConfigError, FileFormatError
from hwquant.core.intmath import accumulator_bits
from hwquant.hw.devices import get_device
from hwquant.hw.mac_cost import (
    ANALYTIC_COSTS,
    DEFAULT_COSTS,
    CostTable,
    lut_mac_luts,
    macs_per_dsp,
    sp2_int_bits,
    sp2_mac_ffs,
    sp2_mac_luts,
    sp2_shift_ranges,
    sp2_split,
)
from hwquant.hw.synthesized import mux_lut6s


def test_sp2_split_follows_the_paper() -> None:
    assert sp2_split(4) == (2, 1)
    assert sp2_split(3) == (1, 1)
    with pytest.raises(ConfigError, match="Fix:"):
        sp2_split(1)
    with pytest.raises(ConfigError, match="m1 >= m2"):
        sp2_shift_ranges(1, 2)


def _integer_magnitudes(m1: int, m2: int) -> set[int]:
    (lo1, hi1), second = sp2_shift_ranges(m1, m2)
    terms1 = {0} | {2**s for s in range(lo1, hi1 + 1)}
    terms2 = {0} | ({2**s for s in range(second[0], second[1] + 1)} if second else set())
    return {a + b for a in terms1 for b in terms2}


def test_shift_ranges_give_the_4_bit_sp2_magnitudes() -> None:
    # methods.md §2.1: {0, 1/8, 1/4, 1/2, 5/8, 3/4, 1}, in units of 1/8
    paper = {Fraction(0), Fraction(1, 8), Fraction(1, 4), Fraction(1, 2), Fraction(5, 8)}
    paper |= {Fraction(3, 4), Fraction(1)}
    assert _integer_magnitudes(2, 1) == {int(v * 8) for v in paper}
    assert sp2_int_bits(2, 1) == 5  # largest magnitude 8 needs 4 bits plus the sign


@given(st.integers(1, 4).flatmap(lambda m1: st.tuples(st.just(m1), st.integers(0, m1))))
def test_shift_ranges_match_the_definition(split: tuple[int, int]) -> None:
    m1, m2 = split
    unit = Fraction(1, 2 ** (2**m1 - 1))  # the finest level 2^-(2^m1 - 1)
    q1 = {Fraction(0)} | {Fraction(1, 2**i) for i in range(1, 2**m1)}
    q2 = {Fraction(0)} | {Fraction(1, 2**i) for i in range(1, 2**m2)}
    assert _integer_magnitudes(m1, m2) == {int((a + b) / unit) for a in q1 for b in q2}
    assert max(_integer_magnitudes(m1, m2)).bit_length() + 1 == sp2_int_bits(m1, m2)


def test_sp2_mac_luts_by_hand() -> None:
    # a = 4, m = 4 (m1 = 2, m2 = 1): shifts 0..2 and 2..2
    # shifter 1: (4 + 2) bits x 1 LUT (4:1 mux: 3 shifts + absent)     = 6
    # shifter 2: (4 + 2 - 2) bits x 1 LUT (2:1: one shift + absent)     = 4
    # term adder: 4 + 2 + 1 - 2 bits                                    = 5
    # accumulator: 22 bits                                              = 22
    assert sp2_mac_luts(4, 2, 1, 22) == 37
    assert sp2_mac_ffs(4, 2, 1, 22) == 22 + 7
    # m2 = 0 (plain power of two): one shifter and the accumulator only
    assert sp2_mac_luts(4, 1, 0, 16) == (4 + 0) * 1 + 16


def test_lut_multiplier_mac_by_hand() -> None:
    # FINN: (2*ceil(8/6) - 1) * 8 = 24 LUTs for a 4x4 multiplier, plus a 21-bit accumulator
    assert lut_mac_luts(4, 4, 21) == 24 + 21
    assert lut_mac_luts(8, 8, 32) == (2 * 3 - 1) * 16 + 32


def test_mux_and_accumulator_widths() -> None:
    assert [mux_lut6s(n) for n in (1, 2, 4, 5, 7, 8)] == [0, 1, 1, 2, 2, 3]
    assert accumulator_bits(4, 4, 3 * 3 * 512) == 4 + 4 + 13
    assert accumulator_bits(8, 8, 27, act_signed=True) == 8 + 8 - 1 + 5
    with pytest.raises(ConfigError):
        accumulator_bits(4, 4, 0)


def test_dsp_packing_rules() -> None:
    z020, zu9 = get_device("xc7z020"), get_device("xczu9eg")
    assert macs_per_dsp(z020, 4, 4) == 1
    assert macs_per_dsp(z020, 4, 4, packing=2) == 2
    assert macs_per_dsp(z020, 8, 8, packing=2) == 1  # too wide for two products on a DSP48E1
    assert macs_per_dsp(zu9, 8, 8, packing=2) == 2  # WP486 INT8 packing on a DSP48E2
    assert DEFAULT_COSTS.dsp_mac(z020, 4, 4, packing=2).dsps == 0.5
    with pytest.raises(ConfigError, match="1, 2"):
        macs_per_dsp(z020, 4, 4, packing=4)
    with pytest.raises(ConfigError, match="does not fit"):
        macs_per_dsp(z020, 16, 30)


def test_measured_costs_replace_the_formula(tmp_path: Path) -> None:
    path = tmp_path / "costs.json"
    entry = {"unit": "sp2_mac", "weight_bits": 4, "act_bits": 4, "acc_bits": 22}
    path.write_text(json.dumps({"source": "synth", "units": [entry | {"luts": 50, "ffs": 40}]}))
    costs = CostTable.from_json(path)
    assert costs.sp2_mac(4, 4, 22).luts == 50 and costs.sp2_mac(4, 4, 22).ffs == 40
    assert costs.sp2_mac(4, 4, 22).source == "synth"
    assert costs.sp2_mac(4, 4, 21) == DEFAULT_COSTS.sp2_mac(4, 4, 21)  # not measured: default
    assert costs.lut_mac(4, 4, 21).source == DEFAULT_COSTS.source
    assert ANALYTIC_COSTS.sp2_mac(4, 4, 21).luts == sp2_mac_luts(4, 2, 1, 21)
    assert ANALYTIC_COSTS.lut_mac(4, 4, 21).source == "analytic"


@pytest.mark.parametrize(
    "text", ["not json", '{"units": [{"unit": "mystery"}]}', '{"units": [{"unit": "sp2_mac"}]}']
)
def test_malformed_cost_file_is_named(tmp_path: Path, text: str) -> None:
    path = tmp_path / "costs.json"
    path.write_text(text)
    with pytest.raises(FileFormatError, match="Fix:"):
        CostTable.from_json(path)


def test_a_stale_sweep_file_falls_back_to_analytic_with_a_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hwquant.hw import mac_cost

    def stale():
        raise FileFormatError("synthesized cost file 'x' is not usable. Fix: regenerate it.")

    monkeypatch.setattr(mac_cost, "load_packaged", stale)
    with pytest.warns(UserWarning, match="analytic unit costs"):
        assert mac_cost._default_costs() is ANALYTIC_COSTS
    monkeypatch.setattr(mac_cost, "load_packaged", lambda: None)
    with pytest.warns(UserWarning, match="make synth-costs"):
        assert mac_cost._default_costs() is ANALYTIC_COSTS
