"""``hwquant report RUN_DIR`` on a real (tiny) table-unit run: the ``"tables"`` section."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hwquant.app.report.tables import report_tables
from hwquant.app.report_cli import report_run
from hwquant.app.train import train_from_config
from hwquant.cli import main
from hwquant.schemes.tables import load_tables
from tests.app.test_report_cli import run_config

TABLES = {"scheme": "tables", "bn_freeze_step": 10, "tables": {"act_entries": 8}}


@pytest.fixture(scope="module")
def tables_run(tmp_path_factory) -> Path:
    """A float run, then a table-unit run (8 activation x 5 weight entries) started from it."""
    root = tmp_path_factory.mktemp("runs")
    train_from_config(run_config(root / "fp32"), progress=False)
    init = {"name": "small_cnn", "init": str(root / "fp32" / "last.pt")}
    train_from_config(run_config(root / "tables", model=init, recipe=TABLES), progress=False)
    return root / "tables"


@pytest.fixture(scope="module")
def report(tables_run: Path) -> tuple[dict, Path]:
    return report_run(tables_run)


def test_engine_equals_fake_quant_and_runs_multiply_free(tables_run: Path, report) -> None:
    results, html = report
    assert html == tables_run / "report.html"
    for name in ("model_tables.npz", "results.json", "report.md", "plots/accuracy.png"):
        assert (tables_run / name).is_file(), name
    assert results["variants"] == [] and "tables" in results
    tables = results["tables"]
    compared = tables["compare"]
    assert compared["test_images"] == results["dataset"]["test_examples"]
    assert compared["images_with_unequal_outputs"] == 0 and compared["exact"]
    assert compared["engine_acc"] == compared["fake_quant_acc"]
    assert 0 < results["fp32"]["accuracy"] <= 1
    audit = tables["audit"]
    assert audit["violations"] == [] and audit["ops"] == sum(audit["op_counts"].values()) > 0
    assert json.loads((tables_run / "results.json").read_text())["tables"] == tables


def test_compactness_table_has_one_row_per_table_layer(tables_run: Path, report) -> None:
    results, html = report
    units = load_tables(tables_run / "model_tables.npz").units()
    layers = results["tables"]["compactness"]["layers"]
    assert [row["layer"] for row in layers] == [unit.name for unit in units]
    for row, unit in zip(layers, units, strict=True):
        assert (row["act_entries"], row["weight_entries"]) == unit.table.shape
        assert row["entries"] == row["act_entries"] * row["weight_entries"]
        assert row["distinct_magnitudes"] == np.unique(np.abs(unit.table)).size
    assert [(row["act_entries"], row["weight_entries"]) for row in layers[1:]] == [(8, 5)] * 2
    (table,) = [t for t in report_tables(results) if t.title == "Table compactness per layer"]
    assert [row[0] for row in table.rows] == [row["layer"] for row in layers]
    assert [row[4] for row in table.rows] == [f"{row['entries']:,}" for row in layers]
    page = html.read_text()
    assert "<h3>Table compactness per layer</h3>" in page
    assert "<h3>Table compactness of the network</h3>" in page
    assert f"<td>{layers[1]['layer']}</td><td>product</td><td>8</td><td>5</td><td>40</td>" in page


def test_cli_prints_table_figures(tables_run: Path, capsys) -> None:
    assert main(["report", str(tables_run), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["bit_exact"] is True and figures["audit_violations"] == 0
    assert figures["table_engine_accuracy"] == figures["fake_quant_accuracy"]
    assert figures["max_inner_entries"] == 40
