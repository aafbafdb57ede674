"""Result tables (Polars) as Markdown, HTML and CSV text, and written atomically to files.

Numbers are formatted in one place (:func:`format_value`): floats with ``digits`` decimals, and in
scientific notation when fixed decimals would hide them (p-values like ``3.2e-05``). A table
written in any format chosen by suffix, HTML pages included, is :func:`warmrec.reports.write_table`
(in :mod:`warmrec.reports.report`, which builds on this module).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from warmrec import io
from warmrec.errors import ConfigError


def format_value(v: Any, digits: int = 4) -> str:
    """One cell as text: ``None`` -> ``""``, floats to ``digits`` decimals (or ``1.2e-05``)."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if v != 0.0 and (abs(v) < 0.5 * 10.0**-digits or abs(v) >= 1e9):
            return f"{v:.{max(digits - 2, 1)}e}"
        return f"{v:.{digits}f}"
    if isinstance(v, list | tuple):
        return ", ".join(format_value(x, digits) for x in v)
    return str(v)


def _is_numeric(dtype: pl.DataType) -> bool:
    return dtype.is_numeric()


def _cells(df: pl.DataFrame, digits: int) -> list[list[str]]:
    return [[format_value(v, digits) for v in row] for row in df.iter_rows()]


def _require(df: pl.DataFrame, cols: Sequence[str]) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ConfigError(
            f"column(s) {', '.join(missing)} not in the table; it has: {', '.join(df.columns)}"
        )


def with_ci(
    df: pl.DataFrame,
    value: str = "mean",
    lo: str = "lo",
    hi: str = "hi",
    *,
    name: str | None = None,
    digits: int = 4,
) -> pl.DataFrame:
    """Add a text column ``"0.1234 [0.1200, 0.1270]"`` (named ``name``, default ``value``+``_ci``);
    an interval that is not known (one seed: NaN or missing bounds) shows as ``[-]``."""
    _require(df, [value, lo, hi])

    def known(x: Any) -> bool:
        return x is not None and not (isinstance(x, float) and math.isnan(x))

    text = [
        f"{format_value(v, digits)} [{format_value(a, digits)}, {format_value(b, digits)}]"
        if known(a) and known(b)
        else f"{format_value(v, digits)} [-]"
        for v, a, b in zip(df[value].to_list(), df[lo].to_list(), df[hi].to_list())
    ]
    return df.with_columns(pl.Series(name or f"{value}_ci", text, dtype=pl.String))


def _md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def to_markdown(df: pl.DataFrame, *, digits: int = 4, title: str | None = None) -> str:
    """A GitHub-flavoured Markdown table (numeric columns right-aligned), optional ``## title``."""
    header = "| " + " | ".join(_md_escape(c) for c in df.columns) + " |"
    align = "|" + "|".join("---:" if _is_numeric(t) else "---" for t in df.dtypes) + "|"
    body = ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in _cells(df, digits)]
    lines = ([f"## {title}", ""] if title else []) + [header, align, *body]
    return "\n".join(lines) + "\n"


def to_html_table(df: pl.DataFrame, *, digits: int = 4, caption: str | None = None) -> str:
    """An HTML ``<table>`` (escaped; numeric cells carry ``class="num"``)."""
    num = [_is_numeric(t) for t in df.dtypes]
    cls = [' class="num"' if k else "" for k in num]
    head = "".join(f"<th{c}>{html.escape(col)}</th>" for col, c in zip(df.columns, cls))
    rows = [
        "<tr>" + "".join(f"<td{c}>{html.escape(v)}</td>" for v, c in zip(row, cls)) + "</tr>"
        for row in _cells(df, digits)
    ]
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return (
        f'<table class="wr-table">{cap}<thead><tr>{head}</tr></thead>\n<tbody>\n'
        + "\n".join(rows)
        + "\n</tbody></table>\n"
    )


def write_markdown(
    df: pl.DataFrame, path: str | Path, *, digits: int = 4, title: str | None = None
) -> Path:
    """Write :func:`to_markdown` to ``path`` atomically."""
    io.atomic_write_text(path, to_markdown(df, digits=digits, title=title))
    return Path(path)


def write_csv(df: pl.DataFrame, path: str | Path) -> Path:
    """Write ``df`` as CSV (full precision) atomically."""
    io.write_csv(df, path)
    return Path(path)
