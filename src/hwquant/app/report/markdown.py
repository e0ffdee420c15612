"""The report as Markdown; figures are linked as relative PNG files (``plots/*.png``)."""

from __future__ import annotations

from typing import Any

from hwquant.app.report.plots import Plot
from hwquant.app.report.tables import Table, report_tables, summary

TITLE = "hwquant demo report"
"""The report's title unless the results name their own (``results["title"]``)."""


def markdown_table(table: Table) -> str:
    """``table`` as a titled GitHub-flavoured Markdown table."""
    lines = [
        f"### {table.title}",
        "",
        _row(table.headers),
        _row(("---",) * len(table.headers)),
        *(_row(row) for row in table.rows),
    ]
    if table.note:
        lines += ["", table.note]
    return "\n".join(lines)


def _row(cells: tuple[str, ...]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def render_markdown(results: dict[str, Any], plots: list[Plot]) -> str:
    """The whole report: summary, tables, then figures."""
    parts = [f"# {results.get('title', TITLE)}", summary(results), "## Tables"]
    parts += [markdown_table(table) for table in report_tables(results)]
    parts.append("## Figures")
    parts += [f"### {plot.title}\n\n![{plot.title}]({plot.path})" for plot in plots]
    return "\n\n".join(parts) + "\n"
