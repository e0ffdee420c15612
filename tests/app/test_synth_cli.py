"""``hwquant synth``: one unit's counts beside its fitted estimate, a failing unit, a sweep."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hwquant.cli import main
from hwquant.hw.mac_cost import DEFAULT_COSTS

pytestmark = pytest.mark.skipif(
    shutil.which("yosys") is None,
    reason="yosys is not installed (apt-get install -y yosys; 'make test' installs it)",
)


def test_unit_prints_yosys_and_the_estimate(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["synth", "unit", "threshold_unit", "--param", "acc_bits=12", "--param"]
    assert main([*argv, "thresholds=-5,0,7", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["yosys"]["ffs"] == 2 and data["yosys"]["dsps"] == 0  # a 2-bit registered code
    # the fitted formula at the unit's widths (it describes random constants, not these)
    assert data["estimate"] == DEFAULT_COSTS.fitted.cost(
        "threshold_unit", acc_bits=12, thresholds=3
    )


def test_bad_unit_parameters_are_config_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synth", "unit", "sp2_mac", "--param", "act_bits=4"]) == 2
    assert "Fix:" in capsys.readouterr().err


def test_sweep_of_one_kind_writes_a_usable_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from hwquant.hw.mac_cost import CostTable
    from hwquant.rtl import sweep

    kind = next(k for k in sweep.SWEEP if k.kind == "threshold_unit")
    small = type(kind)(kind.kind, kind.emitter, kind.args, kind.grid[:2])
    monkeypatch.setattr(sweep, "SWEEP", (small,))
    out = tmp_path / "costs.json"
    assert main(["synth", "sweep", "--kind", "threshold_unit", "--out", str(out)]) == 0
    assert "threshold_unit: worst relative error" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert len(doc["points"]) == 2 and doc["command"] == "hwquant synth sweep"
    table = CostTable.from_json(out)
    assert table.unit("threshold_unit", acc_bits=12, thresholds=3).ffs == 2
