"""Files of a demo run: the results as ``demo.json``, the report as plots, Markdown and HTML."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwquant.app.report.html import render_html
from hwquant.app.report.markdown import render_markdown
from hwquant.app.report.plots import write_plots
from hwquant.core.errors import FileFormatError

RESULTS_FILE = "demo.json"
MARKDOWN_FILE = "report.md"
HTML_FILE = "report.html"


@dataclass(frozen=True)
class ReportFiles:
    """What :func:`write_report` wrote."""

    markdown: Path
    html: Path
    plots: list[Path]


def write_report(results: dict[str, Any], out_dir: str | Path) -> ReportFiles:
    """Write the plots, ``report.md`` and ``report.html`` of ``results`` into ``out_dir``."""
    out_dir = Path(out_dir)
    plots = write_plots(results, out_dir)
    markdown = out_dir / MARKDOWN_FILE
    markdown.write_text(render_markdown(results, plots), encoding="utf-8")
    html = out_dir / HTML_FILE
    html.write_text(render_html(results, plots, out_dir), encoding="utf-8")
    return ReportFiles(markdown, html, [out_dir / plot.path for plot in plots])


def save_results(results: dict[str, Any], out_dir: str | Path, name: str = RESULTS_FILE) -> Path:
    """Write ``results`` as indented JSON to ``out_dir/name`` (default ``demo.json``)."""
    path = Path(out_dir) / name
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return path


def load_results(run_dir: str | Path) -> dict[str, Any]:
    """Read the results of the run in ``run_dir`` (its ``demo.json``)."""
    path = Path(run_dir) / RESULTS_FILE
    if not path.is_file():
        raise FileFormatError(
            f"'{path}' does not exist. Fix: pass the --out directory of a `hwquant demo` run."
        )
    return json.loads(path.read_text(encoding="utf-8"))
