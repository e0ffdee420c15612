"""``hwquant rtl emit | golden | sim``."""

from __future__ import annotations

import json

import pytest

from hwquant.app.rtl_cli import parse_value
from hwquant.cli import main
from tests.goldens import lowered, requires_iverilog


def test_emit_writes_verilog_and_ports(tmp_path, capsys):
    code = main(
        [
            "rtl",
            "emit",
            "sp2_mac",
            "--param",
            "act_bits=4",
            "--param",
            "m1=2",
            "--param",
            "m2=1",
            "--param",
            "acc_bits=16",
            "-o",
            str(tmp_path),
        ]
    )
    assert code == 0
    record = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert record["unit"] == "sp2_mac" and record["params"]["m1"] == 2
    assert "module " + record["top"] in (tmp_path / f"{record['top']}.v").read_text()
    assert [p["name"] for p in record["ports"]] == ["clk", "rst", "clear", "en", "x", "w", "acc"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["rtl", "emit", "alu", "-o", "x"], "codebook_mac, fixed_mac, requantizer, sp2_mac"),
        (["rtl", "emit", "fixed_mac", "--param", "act_bits=4", "-o", "x"], "act_bits, weight_bits"),
        (["rtl", "emit", "fixed_mac", "--param", "bits", "-o", "x"], "NAME=VALUE"),
    ],
)
def test_emit_errors_name_the_fix(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_param_values():
    assert parse_value("true") is True and parse_value("-3") == -3
    assert parse_value("1,-2") == [1, -2] and parse_value("1,2;3,4") == [[1, 2], [3, 4]]
    assert parse_value("lut") == "lut"


@requires_iverilog
def test_golden_then_sim_passes_and_a_corrupted_bench_fails(tmp_path, capsys):
    model, _ = lowered("llsq")
    model.save(tmp_path / "model.npz")
    out = tmp_path / "golden"
    argv = [
        "rtl",
        "golden",
        str(tmp_path / "model.npz"),
        "--input-shape",
        "1,8,8",
        "--pixels",
        "2",
        "--max-pe",
        "2",
        "--max-simd",
        "8",
        "-o",
        str(out),
    ]
    assert main(argv) == 0
    assert main(["rtl", "sim", str(out)]) == 0
    assert capsys.readouterr().out.count("PASS") == 3
    expect = out / "classifier.fixed.tb" / "expect_acc.mem"
    lines = expect.read_text().splitlines()
    lines[0] = "f" * len(lines[0])
    expect.write_text("\n".join(lines) + "\n")
    assert main(["rtl", "sim", str(out / "classifier.fixed.tb")]) == 1
    assert "MISMATCH" in capsys.readouterr().out


def test_sim_of_a_wrong_directory_is_an_error(tmp_path, capsys):
    assert main(["rtl", "sim", str(tmp_path)]) == 1
    assert "neither tb.v nor manifest.json" in capsys.readouterr().err
