"""Result tables and reports: Markdown, self-contained HTML and CSV, written atomically.

Plots live in :mod:`warmrec.reports.plots` (imported on demand: it loads matplotlib).
"""

from warmrec.reports.report import (
    Heading,
    Image,
    Lines,
    Table,
    Text,
    render_html,
    render_markdown,
    write_html,
    write_markdown_report,
    write_report,
    write_table,
)
from warmrec.reports.tables import (
    format_value,
    to_html_table,
    to_markdown,
    with_ci,
    write_csv,
    write_markdown,
)

__all__ = [
    "Heading",
    "Image",
    "Lines",
    "Table",
    "Text",
    "format_value",
    "render_html",
    "render_markdown",
    "to_html_table",
    "to_markdown",
    "with_ci",
    "write_csv",
    "write_html",
    "write_markdown",
    "write_markdown_report",
    "write_report",
    "write_table",
]
