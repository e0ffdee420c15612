"""hwquant.app.report on a small hand-made results dict: tables, plots, Markdown, HTML, JSON."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from hwquant.app.report import load_results, print_tables, save_results, write_report
from hwquant.app.report.plots import weight_histogram_figure
from hwquant.app.report.tables import accuracy_table, layer_table, report_tables, verify_table
from hwquant.core.errors import FileFormatError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _layer(name: str, op: str, bits: int, worst: int, used: int, overflows: int) -> dict:
    return {
        "name": name,
        "op": op,
        "weight_bits": bits,
        "in_bits": bits,
        "weights": 100,
        "worst_case_bits": worst,
        "bits_used": used,
        "accumulations": 1000,
        "overflows_acc16": overflows,
    }


def _histogram(layer: str, bits: int) -> dict:
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return {
        "layer": layer,
        "bits": bits,
        "qmin": qmin,
        "qmax": qmax,
        "counts": [1, 4, 9, 4, 1],
        "edges": [qmin - 0.5 + i * (qmax - qmin + 1) / 5 for i in range(6)],
    }


def _variant(name: str, bits: int, accuracy: float, exact: bool) -> dict:
    return {
        "name": name,
        "weight_bits": bits,
        "act_bits": bits,
        "recipe": {"first_layer_bits": 8, "last_layer_bits": 8},
        "accuracy": {"fake_quant": accuracy, "integer": accuracy, "integer_acc16": 0.1},
        "integer_matches_qat": True,
        "verify": {"exact": exact, "compared": 12345, "mismatches": 0 if exact else 7},
        "layers": [
            _layer("features.0.0", "conv2d", 8, 18, 17, 5),
            _layer("<inner>", "conv2d", bits, 12, 9, 0),
            _layer("classifier", "linear", 8, 24, 21, 900),
        ],
        "size_bits": 40_000,
        "model_file": f"{name}.npz",
        "histograms": [_histogram("features.0.0", 8), _histogram("<inner>", bits)],
    }


@pytest.fixture
def results() -> dict[str, Any]:
    return {
        "seed": 0,
        "quick": True,
        "dataset": {
            "name": "digits",
            "train_examples": 1437,
            "test_examples": 360,
            "image_size": 8,
            "channels": 1,
            "num_classes": 10,
        },
        "model": "small_cnn",
        "fp32": {"accuracy": 0.975, "size_bits": 320_000},
        "variants": [_variant("w4a4", 4, 0.9712, True), _variant("w2a2", 2, 0.9, False)],
        "acc16_bits": 16,
        "timings": {"train_fp32": 1.25, "total": 3.5},
        "environment": {"python": "3.11", "torch": "2.13"},
    }


def test_accuracy_table_has_fp32_then_every_variant(results: dict[str, Any]) -> None:
    table = accuracy_table(results)
    assert [row[0] for row in table.rows] == ["FP32", "W4A4", "W2A2"]
    assert table.rows[0][2] == "97.50%"
    assert table.rows[1][1:6] == ("8/8", "—", "97.12%", "97.12%", "10.00%")
    assert table.rows[1][7] == "8.0x"


def test_verify_table_flags_a_mismatch(results: dict[str, Any]) -> None:
    rows = verify_table(results).rows
    assert rows[0][1:4] == ("yes", "12,345", "0")
    assert rows[1][1:4] == ("NO", "12,345", "7")


def test_layer_table_lists_bits_and_overflows(results: dict[str, Any]) -> None:
    table = layer_table(results["variants"][0], 16)
    assert table.title.startswith("W4A4")
    assert table.rows[2] == ("classifier", "linear", "linear", "8", "8", "24", "21", "900 of 1,000")
    assert "16 bits" in table.headers[-1]


def test_weight_histogram_figure_has_a_panel_per_layer(results: dict[str, Any]) -> None:
    figure = weight_histogram_figure(results["variants"][1])
    assert len(figure.axes) == 2
    assert figure.axes[1].get_title() == "<inner> (2-bit)"


def test_print_tables_shows_every_table(results: dict[str, Any]) -> None:
    console = Console(record=True, width=200)
    print_tables(results, console)
    text = console.export_text()
    for table in report_tables(results):
        assert table.title in text
    assert "97.12%" in text


def test_write_report_writes_pngs_and_both_reports(results: dict[str, Any], tmp_path: Path) -> None:
    files = write_report(results, tmp_path)
    assert len(files.plots) == 2 + len(results["variants"])
    for plot in files.plots:
        assert plot.read_bytes().startswith(PNG_SIGNATURE)
    markdown = files.markdown.read_text(encoding="utf-8")
    html = files.html.read_text(encoding="utf-8")
    for plot in files.plots:
        relative = plot.relative_to(tmp_path).as_posix()
        assert f"]({relative})" in markdown
        assert base64.b64encode(plot.read_bytes()).decode() in html
    for table in report_tables(results):
        assert f"### {table.title}" in markdown
    assert "&lt;inner&gt;" in html and "<inner>" not in html


def test_html_report_is_self_contained(results: dict[str, Any], tmp_path: Path) -> None:
    html = write_report(results, tmp_path).html.read_text(encoding="utf-8")
    sources = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert sources and all(src.startswith("data:image/png;base64,") for src in sources)


def test_results_round_trip_through_json(results: dict[str, Any], tmp_path: Path) -> None:
    path = save_results(results, tmp_path)
    assert path.name == "demo.json"
    assert load_results(tmp_path) == results


def test_load_results_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileFormatError, match=r"demo\.json' does not exist"):
        load_results(tmp_path)
