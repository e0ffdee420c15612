"""``hwquant report RUN_DIR`` on a real (tiny) QAT run, rendered by headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from hwquant.app.config import RunConfig
from hwquant.app.report_cli import report_run
from hwquant.app.train import train_from_config
from hwquant.cli import main
from hwquant.core.errors import FileFormatError

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
IMAGE_PROBE = (
    "<script>window.addEventListener('load', () => document.body.setAttribute('data-images', "
    "Array.from(document.images).map(i => i.complete ? i.naturalWidth : -1).join(',')));"
    "</script>"
)


def run_config(out_dir: Path, **extra) -> RunConfig:
    table = {
        "out_dir": str(out_dir),
        "model": {"name": "small_cnn"},
        "data": {"name": "digits", "augment": False},
        "train": {"epochs": 1, "batch_size": 64, "lr": 0.05, "amp": False},
    }
    return RunConfig.from_dict(table | extra)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A float run, then a W4A4 QAT run started from it (one epoch each on digits)."""
    root = tmp_path_factory.mktemp("runs")
    train_from_config(run_config(root / "fp32"), progress=False)
    init = {"name": "small_cnn", "init": str(root / "fp32" / "last.pt")}
    train_from_config(run_config(root / "qat", model=init, recipe={}), progress=False)
    return root


@pytest.fixture(scope="module")
def report(run_dir: Path) -> tuple[dict, Path]:
    return report_run(run_dir / "qat")


def test_run_dir_gets_model_results_and_report(run_dir: Path, report) -> None:
    results, html = report
    qat = run_dir / "qat"
    assert html == qat / "report.html"
    for name in ("model.npz", "results.json", "report.md", "plots/resources.png"):
        assert (qat / name).is_file(), name
    variant = results["variants"][0]
    assert variant["verify"]["exact"] and variant["verify"]["mismatches"] == 0
    assert variant["accuracy"]["integer"] == variant["accuracy"]["fake_quant"]
    assert 0 < results["fp32"]["accuracy"] <= 1
    assert [la["scheme"] for la in variant["layers"]] == ["linear"] * 3
    assert json.loads((qat / "results.json").read_text())["variants"][0]["name"] == "model"
    assert {"designs", "layers"} <= results["resources"].keys()


def test_cli_report_prints_json_figures(run_dir: Path, capsys) -> None:
    assert main(["report", str(run_dir / "qat"), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["bit_exact"] is True
    assert figures["integer_accuracy"] == figures["fake_quant_accuracy"]


def test_a_float_run_or_a_plain_directory_is_refused(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(FileFormatError, match=r"float run.*Fix"):
        report_run(run_dir / "fp32")
    with pytest.raises(FileFormatError, match=r"not a run directory.*Fix"):
        report_run(tmp_path)


def test_chromium_renders_tables_and_images(report, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (make test installs it with apt-get)")
    _, html = report
    page = tmp_path / "page.html"
    page.write_text(html.read_text().replace("</body>", IMAGE_PROBE + "</body>"))
    dom = subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    tables = re.findall(r"<table>.*?</table>", dom, flags=re.S)
    assert len(tables) >= 6  # accuracy, bit-exactness, layers, 2 resource tables, timing, ...
    assert all("<td>" in table for table in tables)
    widths = re.search(r'data-images="([^"]*)"', dom).group(1).split(",")
    assert len(widths) == 4  # accuracy, accumulators, resources, weight histograms
    assert all(int(w) > 100 for w in widths)  # every embedded PNG decoded
    assert "<h1>hwquant run report: qat</h1>" in dom


def test_unknown_device_exits_2_before_any_work(tmp_path, capsys):
    assert main(["report", str(tmp_path / "no-run"), "--device", "xc9z999"]) == 2
    err = capsys.readouterr().err
    assert "unknown FPGA device 'xc9z999'. Fix: use one of xc7z020, xc7z045" in err
    assert not (tmp_path / "no-run").exists()
