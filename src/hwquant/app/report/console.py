"""The report's tables in a terminal, with rich."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable

from hwquant.app.report.tables import Table, report_tables, summary


def rich_table(table: Table) -> RichTable:
    """``table`` as a rich table; its text is plain (``[...]`` is not rich markup)."""
    out = RichTable(
        title=escape(table.title),
        title_justify="left",
        caption=escape(table.note) or None,
        caption_justify="left",
    )
    for index, header in enumerate(table.headers):
        out.add_column(escape(header), no_wrap=index == 0, overflow="fold")
    for row in table.rows:
        out.add_row(*map(escape, row))
    return out


def print_tables(results: dict[str, Any], console: Console | None = None) -> None:
    """Print the summary and every table of the report of ``results``."""
    console = console or Console()
    console.print(summary(results))
    for table in report_tables(results):
        console.print(rich_table(table))
