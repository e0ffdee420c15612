"""Yosys synthesis: the stat parser on a captured log, live runs, cache, failures surfaced."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from hwquant.core.errors import ConfigError, FileFormatError, ToolError
from hwquant.rtl import synth
from hwquant.rtl.synth import Resources, parse_stat, synth_script, synthesize_verilog

needs_yosys = pytest.mark.skipif(
    shutil.which("yosys") is None,
    reason="yosys is not installed (apt-get install -y yosys; 'make test' installs it)",
)

CAPTURED = (
    '{"creator": "Yosys 0.23 (git sha1 7ce5011c24b)", "invocation": "stat -json ", "modules": '
    '{"\\\\t": {"num_cells": 158, "num_cells_by_type": {"CARRY4": 4, "FDRE": 16}}}, "design": '
    '{"num_wires": 77, "num_cells": 158, "num_cells_by_type": {"CARRY4": 4, "FDRE": 16, '
    '"LUT2": 16, "LUT3": 6, "LUT4": 13, "LUT5": 7, "LUT6": 72, "MUXF7": 23, "MUXF8": 1}}}'
)
"""``stat -json`` of an 8x8 registered multiplier, synthesized with -nodsp by Yosys 0.23."""

MULTIPLIER = """module t (input clk, input [7:0] a, input [7:0] b, output reg [15:0] p);
  always @(posedge clk) p <= a * b;
endmodule
"""


def test_parser_sums_a_captured_log() -> None:
    res = parse_stat(CAPTURED)
    assert (res.luts, res.ffs, res.carry4, res.dsps, res.brams) == (
        16 + 6 + 13 + 7 + 72,
        16,
        4,
        0,
        0,
    )
    assert res.cells["MUXF7"] == 23 and res.to_dict()["cells"]["LUT6"] == 72


def test_parser_counts_every_primitive_family() -> None:
    cells = {"LUT1": 1, "INV": 2, "FDSE": 3, "FDCE": 1, "FDPE": 1, "DSP48E1": 2}
    cells |= {"RAMB18E1": 1, "RAMB36E1": 2, "RAM64X1D": 3, "CARRY4": 5}
    res = Resources.from_cells(cells)
    assert (res.luts, res.ffs, res.dsps, res.brams, res.lutram, res.carry4) == (3, 5, 2, 5, 6, 5)
    with pytest.raises(TypeError):
        res.cells["LUT1"] = 2  # frozen


@pytest.mark.parametrize(
    "text", ["not json", '{"design": {}}', '{"design": {"num_cells_by_type": 3}}']
)
def test_parser_rejects_other_text(text: str) -> None:
    with pytest.raises(FileFormatError, match="Fix:"):
        parse_stat(text)


@pytest.fixture(scope="module")
def lut_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Resources]:
    """One live -nodsp synthesis of the multiplier, cached in a directory."""
    cache = tmp_path_factory.mktemp("synth-cache")
    return cache, synthesize_verilog(MULTIPLIER, "t", nodsp=True, cache_dir=cache)


@needs_yosys
def test_live_synthesis_of_a_tiny_multiplier(lut_run: tuple[Path, Resources]) -> None:
    cache, in_luts = lut_run
    assert in_luts == parse_stat(CAPTURED)  # the captured log is this run
    assert len(list(cache.glob("*.json"))) == 1
    on_dsp = synthesize_verilog(MULTIPLIER, "t")
    assert (on_dsp.dsps, on_dsp.luts) == (1, 0)  # the product and its register in one DSP48E1


@needs_yosys
def test_cache_answers_without_yosys(
    lut_run: tuple[Path, Resources], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, first = lut_run

    def refuse(*args, **kwargs):
        raise AssertionError("yosys ran although the result was cached")

    monkeypatch.setattr(subprocess, "run", refuse)
    assert synthesize_verilog(MULTIPLIER, "t", nodsp=True, cache_dir=cache) == first


@needs_yosys
def test_yosys_failure_carries_its_message() -> None:
    with pytest.raises(ToolError, match=r"failed.*syntax error.*Fix:"):
        synthesize_verilog("module m(input a, output b); assign b = a &; endmodule\n", "m")


def test_missing_yosys_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    synth.yosys_version.cache_clear()
    try:
        with pytest.raises(ToolError, match=r"yosys was not found.*apt-get install -y yosys"):
            synthesize_verilog(MULTIPLIER, "t")
    finally:
        synth.yosys_version.cache_clear()


def test_bad_family_and_top_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="xc7, xcu, xcup"):
        synth_script("t", "ice40")
    with pytest.raises(ConfigError, match="identifier"):
        synth_script("t; shell rm -rf /")
    assert "-nodsp" in synth_script("t", nodsp=True) and "-nodsp" not in synth_script("t")
