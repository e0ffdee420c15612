"""The report as one self-contained HTML file: figures embedded as base64 PNG data URIs.

Embedding makes ``report.html`` a single file that can be mailed or archived on its own; the
same PNGs also lie in ``plots/`` for the Markdown report and for reuse.
"""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path
from typing import Any

from hwquant.app.report.markdown import TITLE
from hwquant.app.report.plots import Plot
from hwquant.app.report.tables import Table, report_tables, summary

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 75em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f0f0f0; }
td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; }
"""


def html_table(table: Table) -> str:
    """``table`` as a titled HTML table."""
    head = "".join(f"<th>{escape(h)}</th>" for h in table.headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in table.rows
    )
    note = f"\n<p>{escape(table.note)}</p>" if table.note else ""
    return (
        f"<h3>{escape(table.title)}</h3>\n"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"
    )


def data_uri(png: bytes) -> str:
    """A ``data:`` URI holding ``png``."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def html_figure(plot: Plot, root: Path) -> str:
    """``plot`` (read from ``root/plot.path``) as an embedded figure with a caption."""
    src = data_uri((root / plot.path).read_bytes())
    title = escape(plot.title)
    return (
        f'<figure><img src="{src}" alt="{title}" title="{escape(plot.path)}">'
        f"<figcaption>{title}</figcaption></figure>"
    )


def render_html(results: dict[str, Any], plots: list[Plot], root: Path) -> str:
    """The whole report as HTML, with the PNGs of ``plots`` (under ``root``) embedded."""
    title = escape(results.get("title", TITLE))
    parts = [
        f"<h1>{title}</h1>",
        f"<p>{escape(summary(results))}</p>",
        "<h2>Tables</h2>",
        *(html_table(table) for table in report_tables(results)),
        "<h2>Figures</h2>",
        *(html_figure(plot, root) for plot in plots),
    ]
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n"
        "</html>\n"
    )
