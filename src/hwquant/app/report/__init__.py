"""Reports of a demo run, made from its results dict (the content of ``demo.json``).

Every function here reads only that dict, so a finished run can be reported again from its
``demo.json``: :func:`write_report` writes the plots, ``report.md`` and ``report.html``,
:func:`print_tables` prints the tables to a terminal.
"""

from hwquant.app.report.console import print_tables
from hwquant.app.report.writer import (
    HTML_FILE,
    MARKDOWN_FILE,
    RESULTS_FILE,
    ReportFiles,
    load_results,
    save_results,
    write_report,
)

__all__ = [
    "HTML_FILE",
    "MARKDOWN_FILE",
    "RESULTS_FILE",
    "ReportFiles",
    "load_results",
    "print_tables",
    "save_results",
    "write_report",
]
