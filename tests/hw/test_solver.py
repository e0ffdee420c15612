"""The ratio solver: PE counts by hand, exact balance, the MSQ entry point, bad input."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from hwquant.core.errors import ConfigError
from hwquant.hw import sp2_share_for
from hwquant.hw.devices import DEVICES
from hwquant.hw.mac_cost import ANALYTIC_COSTS, PACKED_MAX_BITS
from hwquant.hw.solver import solve, split_rows


def test_xc7z020_w4a4_by_hand() -> None:
    arrays = solve("xc7z020", 4, 4, costs=ANALYTIC_COSTS)
    # SP2 PE: 37 LUTs, 29 FFs at a 22-bit accumulator (4 + 5 + ceil(log2 4608)), see test_mac_cost
    assert (arrays.acc_bits, arrays.lut_cost.luts, arrays.lut_cost.ffs) == (22, 37, 29)
    # LUT budget 0.7 * 53,200 = 37,240 -> 1,006 PEs; FF budget 74,480 / 29 = 2,568 (not binding)
    assert arrays.lut_pes == 1006
    assert arrays.p_dsp == 220
    assert arrays.share == Fraction(1006, 1006 + 220)
    assert arrays.luts == 1006 * 37 <= 0.7 * 53_200


def test_packing_doubles_the_dsp_group() -> None:
    assert solve("xc7z020", 4, 4, packing=2).p_dsp == 440
    assert solve("xc7z020", 8, 8, packing=2).p_dsp == 220  # 8-bit does not pack on DSP48E1


@given(
    st.sampled_from(sorted(DEVICES)),
    st.integers(2, 8),
    st.integers(2, 8),
    st.sampled_from([1, 2]),
    st.sampled_from(["sp2_mac", "lut_mac"]),
    st.floats(0.05, 1.0),
)
def test_share_balances_both_groups_exactly(device, w, a, packing, unit, fraction) -> None:
    assume(packing == 1 or DEVICES[device].dsp.name in PACKED_MAX_BITS)  # else refused
    arrays = solve(device, w, a, lut_unit=unit, lut_fraction=fraction, packing=packing)
    r = arrays.share
    assert 0 <= r <= 1
    # time per row of the LUT group r / P_lut equals that of the DSP group (1 - r) / P_dsp
    assert r * arrays.p_dsp == (1 - r) * arrays.p_lut
    # LUT PEs only take what the ceiling leaves after the DSP MACs' own fabric
    assert arrays.lut_pes == 0 or arrays.luts <= fraction * DEVICES[device].luts
    assert arrays.lut_pes == 0 or arrays.ffs <= fraction * DEVICES[device].ffs


def test_msq_entry_point_keeps_its_defaults() -> None:
    share = sp2_share_for("xc7z020", 4)
    assert share == float(solve("xc7z020", 4, 4).share)  # the synthesized costs, by default
    assert 0.5 < share < 1  # the DSP-poor part gives most rows to SP2
    assert sp2_share_for("XC7Z045", 3, 3, packing=2) < sp2_share_for("xc7z045", 3, 3)


def test_split_rows_rounds_half_up() -> None:
    assert split_rows(16, Fraction(1201, 1421)) == 14  # 13.52 -> 14
    assert split_rows(4, Fraction(1, 8)) == 1  # 0.5 rounds up
    assert split_rows(10, 0) == 0 and split_rows(10, 1) == 10


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"device": "xc9000"}, "unknown FPGA device"),
        ({"lut_fraction": 1.5}, "ceiling"),
        ({"lut_fraction": 0}, "ceiling"),
        ({"lut_unit": "tables"}, "LUT unit"),
        ({"packing": 3}, "packing"),
    ],
)
def test_bad_input_is_named(kwargs: dict, match: str) -> None:
    args = {"device": "xc7z020"} | kwargs
    with pytest.raises(ConfigError, match=match):
        solve(args.pop("device"), 4, 4, **args)


def test_packing_two_is_refused_on_a_slice_without_a_packed_form() -> None:
    with pytest.raises(ConfigError, match="packing 2 is not defined for ice40up5k"):
        solve("ice40up5k", 4, 4, packing=2)
