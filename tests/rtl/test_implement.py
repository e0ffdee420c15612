"""The open-tool implementation flow: parsing of real Yosys/nextpnr outputs, missing tools, and
one real synthesis + place and route on iCE40 (seconds).

The files under ``data/implement`` are what the tools wrote for ``mac4.v`` (a registered MAC
over a 256 x 8 weight RAM): ``<family>.stat.json`` from ``stat -json`` after synthesis,
``<family>.report.json`` from nextpnr ``--report``, and ``<family>.implementation.json`` the
record :func:`implement` wrote, with the tools' versions and commands.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from hwquant.core.errors import ConfigError, FileFormatError, ToolError
from hwquant.rtl import implement as impl

DATA = Path(__file__).parent / "data" / "implement"


@pytest.mark.parametrize(
    ("family", "expected"),
    [
        # LUT4 + 2 per CCU2C carry cell; one DP16KD EBR; one MULT18X18D
        ("ecp5", (1 + 2 * 10, 32, 1, 1)),
        ("ice40", (35, 26 + 20, 1, 1)),
        # LUT2 + INV and 8 RAM256X1S of 4 LUTs each; the RAM went to LUTRAM, not RAMB18
        ("xc7", (12 + 1 + 8 * 4, 28, 1, 0)),
    ],
)
def test_parse_stat_of_real_synthesis(family: str, expected: tuple[int, int, int, int]) -> None:
    used = impl.parse_stat((DATA / f"{family}.stat.json").read_text(), family)
    assert (used.luts, used.ffs, used.dsps, used.brams) == expected
    recorded = json.loads((DATA / f"{family}.implementation.json").read_text())["synthesized"]
    assert [recorded[k] for k in ("luts", "ffs", "dsps", "brams")] == list(expected)


@pytest.mark.parametrize(
    ("family", "placed", "fmax"),
    [("ecp5", (31, 32, 1, 1), 79.891), ("ice40", (63, 46, 1, 1), 100.939)],
)
def test_parse_report_of_real_place_and_route(family: str, placed, fmax: float) -> None:
    report = impl.parse_report((DATA / f"{family}.report.json").read_text())
    synthesized = impl.parse_stat((DATA / f"{family}.stat.json").read_text(), family)
    used = report.utilisation(family, synthesized)
    assert (used.luts, used.ffs, used.dsps, used.brams) == placed
    assert report.fmax_mhz == pytest.approx(fmax, abs=1e-3)
    assert all(constraint > 0 for _, constraint in report.fmax.values())


def test_parse_rejects_other_files() -> None:
    with pytest.raises(FileFormatError, match="nextpnr --report"):
        impl.parse_report((DATA / "ecp5.stat.json").read_text())
    with pytest.raises(FileFormatError, match="stat -json"):
        impl.parse_stat((DATA / "ecp5.report.json").read_text(), "ecp5")


def test_report_without_clock_has_no_fmax() -> None:
    doc = json.loads((DATA / "ice40.report.json").read_text())
    doc["fmax"] = {}
    assert impl.parse_report(json.dumps(doc)).fmax_mhz is None


def test_missing_tool_names_the_install_command(tmp_path: Path) -> None:
    absent = impl.Tool("nextpnr-ecp5", ("hwquant-no-such-nextpnr",), "pip install 'hwquant[hw]'")
    with pytest.raises(ToolError, match=r"pip install 'hwquant\[hw\]'.*make hw-tools"):
        impl.tool_path(absent)
    target = dataclasses.replace(impl.TARGETS["lfe5u-85f"], pnr=absent)
    with pytest.raises(ToolError, match="hwquant-no-such-nextpnr"):
        impl.implement([DATA / "mac4.v"], "mac4", target, tmp_path)
    assert not (tmp_path / "yosys.log").exists()  # refused before a long synthesis


def test_bad_target_top_and_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="lfe5u-85f"):
        impl.get_target("xc9500")
    assert impl.get_target("XC7Z020").name == "xc7"
    with pytest.raises(ConfigError, match="not a Verilog identifier"):
        impl.yosys_script(impl.TARGETS["xc7"], ["a.v"], "top; shell")
    with pytest.raises(ConfigError, match="missing"):
        impl.implement([tmp_path / "none.v"], "mac4", "xc7", tmp_path)


@pytest.mark.skipif(
    not (impl.installed(impl.YOSYS) and impl.installed(impl.NEXTPNR_ICE40)),
    reason=f"yosys or nextpnr-ice40 not found: {impl.INSTALL}",
)
def test_implement_ice40_end_to_end(tmp_path: Path) -> None:
    result = impl.implement([DATA / "mac4.v"], "mac4", "ice40up5k", tmp_path / "run")
    assert (result.synthesized.dsps, result.synthesized.brams) == (1, 1)
    assert result.placed is not None and (result.placed.dsps, result.placed.brams) == (1, 1)
    assert result.fmax_mhz is not None and result.fmax_mhz > 0
    assert set(result.tool_versions) == {"yosys", "nextpnr"}
    assert "synth_ice40 -dsp -top mac4" in result.commands[0]
    assert "--up5k" in result.commands[1] and "--report report.json" in result.commands[1]
    written = json.loads((tmp_path / "run" / "implementation.json").read_text())
    assert written == json.loads(json.dumps(result.to_dict()))


def test_failed_tool_run_carries_its_error(tmp_path: Path) -> None:
    if not impl.installed(impl.YOSYS):
        pytest.skip(f"yosys not found: {impl.INSTALL}")
    bad = tmp_path / "bad.v"
    bad.write_text("module mac4(input wire a); assign b = ; endmodule\n")
    with pytest.raises(ToolError, match=r"yosys failed .*ERROR"):
        impl.implement([bad], "mac4", "xc7", tmp_path / "run")


def test_critical_path_of_real_place_and_route() -> None:
    path = impl.critical_path((DATA / "ecp5.report.json").read_text())
    assert path is not None
    assert (path["from"], path["to"]) == ("ram.0.0", "p_TRELLIS_FF_Q_9")  # ROM -> MULT18 -> FF
    assert path["delay_ns"] == pytest.approx(path["logic_ns"] + path["routing_ns"], abs=2e-3)
    assert any("MULT18X18D" in cell for cell in path["cells"])
    doc = json.loads((DATA / "ecp5.report.json").read_text())
    # a longer path from an I/O pad does not set the clock's Fmax: the clocked one is kept
    pad = json.loads(json.dumps(doc["critical_paths"][0]))
    pad["from"] = "<async>"
    for seg in pad["path"]:
        seg["delay"] = 10 * float(seg["delay"])
    doc["critical_paths"].append(pad)
    assert impl.critical_path(json.dumps(doc))["from"] == "ram.0.0"
    doc["critical_paths"] = [pad]  # only pad paths: the longest of them
    assert impl.critical_path(json.dumps(doc))["delay_ns"] > path["delay_ns"]
    doc["critical_paths"] = []
    assert impl.critical_path(json.dumps(doc)) is None
    with pytest.raises(FileFormatError, match="critical paths"):
        impl.critical_path("[]")
