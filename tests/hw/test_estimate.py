"""Network estimates: a hand-computed 3-layer network, row balance, fit and no-fit, bad input."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwquant.core.errors import ConfigError
from hwquant.hw import estimate_layers as _estimate_layers
from hwquant.hw.estimate import DESIGN_KINDS, DESIGNS
from hwquant.hw.mac_cost import ANALYTIC_COSTS
from hwquant.hw.network import LayerWork


def estimate_layers(*args, **kwargs):
    """The estimate with the analytic unit costs, whose numbers these tests work out by hand
    (the synthesized default is checked in test_synthesized.py and test_folding.py)."""
    return _estimate_layers(*args, costs=ANALYTIC_COSTS, **kwargs)


def _layers(sp2_rows: int | None = None) -> list[LayerWork]:
    """first conv 8 rows x 27 x 64 positions (8-bit), inner 16 x 72 x 64 (W4A4), last 10 x 64."""
    return [
        LayerWork("conv1", "conv2d", "first", 8, 27, 64, 8, 8, True, 8 * 27 * 8),
        LayerWork("conv2", "conv2d", "inner", 16, 72, 64, 4, 4, False, 16 * 72 * 4, sp2_rows),
        LayerWork("fc", "linear", "last", 10, 64, 1, 8, 4, False, 10 * 64 * 8),
    ]


def test_fixed_and_msq_cycles_by_hand() -> None:
    est = estimate_layers(_layers(), "xc7z020")
    fixed = est.designs["fixed"]
    # 220 DSPs, one MAC each: ceil(13,824 / 220) = 63, ceil(73,728 / 220) = 336, ceil(640 / 220) = 3
    assert [lc.cycles for lc in fixed.layers] == [63, 336, 3]
    assert fixed.cycles == 402
    assert fixed.images_per_s == 100e6 / 402  # 100 MHz default clock
    msq = est.designs["msq"]
    # SP2 PE for w4 a4, fan-in 72: accumulator 5 + 4 + 7 = 16 bits -> 6 + 4 + 5 + 16 = 31 LUTs,
    # 16 + 7 = 23 FFs; 37,240 // 31 = 1,201 PEs; r = 1201 / 1421; rows round(16 r) = 14
    assert (msq.arrays.lut_pes, msq.arrays.lut_cost.luts, msq.arrays.lut_cost.ffs) == (1201, 31, 23)
    inner = msq.layers[1]
    assert (inner.lut_rows, inner.dsp_rows) == (14, 2)
    # LUT: ceil(14 * 4,608 / 1,201) = 54; DSP: ceil(2 * 4,608 / 220) = 42
    assert (inner.lut_cycles, inner.dsp_cycles, inner.cycles) == (54, 42, 54)
    assert msq.cycles == 63 + 54 + 3  # first and last layers stay on the DSPs
    assert est.speedup("msq") == 402 / 120
    assert msq.usage["luts"] == (1201 * 31, 53_200)
    assert msq.usage["dsps"] == (220, 220)
    assert msq.fits and msq.weights_on_chip and msq.problems() == []


def test_sp2_only_puts_every_inner_row_on_luts() -> None:
    sp2 = estimate_layers(_layers(), "xc7z020", designs=["sp2"]).designs["sp2"]
    inner = sp2.layers[1]
    assert (inner.lut_rows, inner.dsp_rows, inner.dsp_cycles) == (16, 0, 0)
    assert inner.lut_cycles == -(-16 * 4608 // 1201)  # 62
    assert sp2.layers[0].lut_rows == sp2.layers[2].lut_rows == 0


def test_msq_uses_the_encoded_rows_when_present() -> None:
    msq = estimate_layers(_layers(sp2_rows=4), "xc7z020", designs=["msq"]).designs["msq"]
    inner = msq.layers[1]
    assert (inner.lut_rows, inner.dsp_rows) == (4, 12)
    assert inner.dsp_cycles == -(-12 * 4608 // 220)  # the DSPs now take longer


def test_each_design_places_rows_by_its_kind_not_its_name() -> None:
    """DesignKind.lut_rows decides: "encoded" takes the encoding's SP2 rows, "share" and "all"
    ignore them, a design without a LUT unit puts every row on the DSPs."""
    assert DESIGNS == tuple(DESIGN_KINDS) == ("fixed", "sp2", "msq", "fixed_lut")
    est = estimate_layers(_layers(sp2_rows=4), "xc7z020").designs
    plain = estimate_layers(_layers(), "xc7z020").designs
    for name, kind in DESIGN_KINDS.items():
        inner, same = est[name].layers[1], plain[name].layers[1]
        if kind.lut_unit is None:
            assert inner.lut_rows == 0
        elif kind.lut_rows == "all":
            assert inner.lut_rows == 16
        elif kind.lut_rows == "encoded":
            assert inner.lut_rows == 4 != same.lut_rows
        if kind.lut_rows != "encoded":
            assert inner.lut_rows == same.lut_rows


def test_packing_and_clock_change_the_fixed_design() -> None:
    est = estimate_layers(_layers(), "xc7z020", designs=["fixed"], packing=2, clock_mhz=250)
    fixed = est.designs["fixed"]
    assert fixed.layers[1].cycles == -(-73_728 // 440)  # W4A4 packs two per DSP48E1
    assert fixed.layers[0].cycles == 63  # 8-bit does not pack
    assert fixed.latency_s == fixed.cycles / 250e6


@given(st.integers(1, 600), st.integers(1, 5000), st.integers(1, 1024), st.sampled_from([1, 2]))
def test_groups_finish_within_one_row(rows: int, fan_in: int, positions: int, packing: int) -> None:
    work = LayerWork("l", "conv2d", "inner", rows, fan_in, positions, 4, 4, False, 1)
    first = LayerWork("f", "conv2d", "first", 1, 1, 1, 8, 8, True, 1)
    for design in ("msq", "fixed_lut"):
        d = estimate_layers([first, work], "xc7z045", designs=[design], packing=packing)
        lc, arrays = d.designs[design].layers[1], d.designs[design].arrays
        one_row = max(work.row_macs / arrays.p_lut, work.row_macs / arrays.p_dsp)
        assert abs(lc.lut_cycles - lc.dsp_cycles) <= one_row + 1


def test_over_budget_design_does_not_fit() -> None:
    est = estimate_layers(_layers(), "xc7z020", lut_pes=100_000, dsp_slices=300)
    msq = est.designs["msq"]
    assert not msq.fits
    problems = " ".join(msq.problems())
    assert "LUTs: needs 3,100,000, xc7z020 has 53,200" in problems
    assert "DSP slices: needs 300" in problems
    assert est.baseline.fits  # the baseline keeps the solver's PEs


def test_weights_beyond_bram_are_reported() -> None:
    big = [dataclasses.replace(w, storage_bits=200 * 36_864) for w in _layers()]
    fixed = estimate_layers(big, "xc7z020", designs=["fixed"]).designs["fixed"]
    assert fixed.logic_fits and not fixed.weights_on_chip and not fixed.fits
    assert fixed.usage["bram36"] == (600, 140)
    # the first layer's 200 BRAM36 already exceed the 140, so all 600 x 36,864 bits stream
    # once per image: 2,764,800 bytes x images/s
    assert fixed.traffic.streamed_bits == 600 * 36_864
    assert fixed.dram_gbps == 600 * 36_864 / 8 * fixed.images_per_s / 1e9
    assert fixed.problems() == [
        f"weights: need 600 BRAM36, xc7z020 has 140; 2.76 MB of them must stream from DRAM at "
        f"{fixed.dram_gbps:,.2f} GB/s ({fixed.images_per_s:,.1f} images/s)"
    ]
    doc = fixed.to_dict()
    assert (doc["fits"], doc["logic_fits"], doc["weights_streamed_bits"]) == (
        False,
        True,
        600 * 36_864,
    )


def test_json_ready_output_has_the_arithmetic() -> None:
    data = estimate_layers(_layers(), "xc7z020").to_dict()
    assert set(data["designs"]) == set(DESIGNS)
    msq = data["designs"]["msq"]
    assert msq["pe_arrays"]["p_dsp_inner"] == 220 and msq["pe_arrays"]["lut_pes"] == 1201
    assert msq["inner_rows"] == {"lut": 14, "dsp": 2}
    assert msq["cycles"] == 120 and data["designs"]["fixed"]["speedup_over_fixed"] == 1.0
    assert data["total_macs"] == 13_824 + 73_728 + 640


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"designs": ["dsp_only"]}, "unknown design"),
        ({"designs": ["sp2"], "lut_pes": 0}, "has none"),
        ({"lut_pes": -1}, "lut_pes"),
        ({"clock_mhz": 0}, "clock"),
        ({"lut_fraction": 2.0}, "ceiling"),
    ],
)
def test_bad_input_is_named(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        estimate_layers(_layers(), "xc7z020", **kwargs)
