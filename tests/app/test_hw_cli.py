"""``hwquant hw``: zoo model and IntModel file, JSON output, the no-fit line, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwquant.cli import main
from tests.helpers import lowered_small_cnn

SMALL = ["small_cnn", "--input-size", "8", "--in-channels", "1"]


def test_zoo_model_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hw", *SMALL, "--device", "xc7z020", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["designs"]) == {"fixed", "sp2", "msq", "fixed_lut"}
    assert data["designs"]["fixed"]["speedup_over_fixed"] == 1.0
    assert data["designs"]["msq"]["speedup_over_fixed"] > 1.0
    roles = [layer["role"] for layer in data["layers"]]
    assert roles[0] == "first" and roles[-1] == "last"
    inner = [layer for layer in data["layers"] if layer["role"] == "inner"]
    msq_rows = {x["name"]: x["lut_rows"] for x in data["designs"]["msq"]["layers"]}
    for layer in inner:  # a zoo model is lowered with MSQ, so its encodings fix the SP2 rows
        assert layer["sp2_rows"] == msq_rows[layer["name"]]


def test_intmodel_file_table_and_no_fit_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, _ = lowered_small_cnn(batch=2)
    path = model.save(tmp_path / "model.npz")
    argv = ["hw", str(path), "--device", "XC7Z045", "--input-size", "8", "--design", "msq"]
    assert main([*argv, "--lut-pes", "1000000"]) == 0
    out = capsys.readouterr().out
    assert "Per-layer estimate on xc7z045" in out
    assert "design msq does NOT fit xc7z045: LUTs: needs" in out


def test_weights_beyond_the_block_rams_do_not_fit(capsys: pytest.CaptureFixture[str]) -> None:
    """resnet18's 4-bit weights need far more BRAM36 than the XC7Z020's 140: the table says
    so and names the DRAM bandwidth (it once printed "fits: yes" beside 879% of the BRAM)."""
    assert main(["hw", "resnet18", "--device", "xc7z020", "--design", "msq", "--json"]) == 0
    msq = json.loads(capsys.readouterr().out)["designs"]["msq"]
    assert msq["usage"]["bram36"]["used"] > 140 and msq["logic_fits"]
    assert not msq["fits"] and not msq["weights_on_chip"] and msq["dram_gb_per_s"] > 0
    assert main(["hw", "resnet18", "--device", "xc7z020", "--design", "msq"]) == 0
    out = capsys.readouterr().out
    assert "no: DRAM" in out and "must stream from DRAM at" in out and "GB/s" in out


def test_measured_costs_file_changes_the_pe_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, _ = lowered_small_cnn(batch=2)
    path = model.save(tmp_path / "model.npz")
    argv = ["hw", str(path), "--device", "xc7z020", "--input-size", "8", "--json"]
    assert main([*argv, "--design", "sp2"]) == 0
    pe = json.loads(capsys.readouterr().out)["designs"]["sp2"]["pe_arrays"]
    unit = {"unit": "sp2_mac", "weight_bits": 4, "act_bits": 4, "acc_bits": pe["lut_pe_acc_bits"]}
    costs = tmp_path / "costs.json"
    costs.write_text(json.dumps({"source": "test", "units": [unit | {"luts": 100, "ffs": 10}]}))
    assert main([*argv, "--design", "sp2", "--costs", str(costs)]) == 0
    measured = json.loads(capsys.readouterr().out)["designs"]["sp2"]["pe_arrays"]
    assert measured["luts_per_pe"] == 100 and measured["lut_cost_source"] == "test"
    budget = int(0.7 * 53_200) - measured["dsp_mac_fabric_luts"]  # after the DSP MACs' fabric
    assert measured["lut_pes"] == budget // 100


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["hw", "resnet18", "--device", "xc7a35t"], "xc7z020, xc7z045"),
        (["hw", "nonet", "--device", "xc7z020"], "neither a file nor a zoo model"),
    ],
)
def test_bad_input_exits_2(argv: list[str], message: str, capsys) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err
