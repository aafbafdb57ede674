"""Reports as a list of blocks (headings, text, lines, tables, images) rendered to Markdown or
HTML.

The HTML is self-contained: styles inline, images embedded as ``data:image/png;base64`` URIs, so
one file can be mailed or attached to a CI run. The Markdown version links images by relative
path (images given as bytes are written beside it, in ``<name>_files/``).

    blocks = [Heading("Benchmark"), Text("ml-100k, leave-one-out"), Table(df), Image("ndcg.png")]
    write_html("report.html", "warmrec benchmark", blocks)
    write_markdown_report("report.md", "warmrec benchmark", blocks)
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from warmrec import io
from warmrec.errors import ConfigError, DataError
from warmrec.reports.tables import to_html_table, to_markdown, write_csv, write_markdown

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Text:
    """A paragraph of plain text (escaped in HTML; blank lines split paragraphs)."""

    text: str


@dataclass
class Lines:
    """Short lines shown one per line (a study's ``key: value`` settings): a bulleted list in
    both formats, where :class:`Text` would run them into one paragraph."""

    lines: Sequence[str]


@dataclass
class Table:
    df: pl.DataFrame
    caption: str | None = None
    digits: int = 4


@dataclass
class Image:
    """A PNG image: a file path or the PNG bytes."""

    source: str | Path | bytes
    alt: str = ""
    caption: str | None = None

    def png_bytes(self) -> bytes:
        if isinstance(self.source, bytes):
            data, where = self.source, "image bytes"
        else:
            p = Path(self.source)
            if not p.is_file():
                raise DataError("image not found", path=p, expected="a PNG file", found="nothing")
            data, where = p.read_bytes(), str(p)
        if not data.startswith(PNG_MAGIC):
            raise DataError("not a PNG image", path=where, expected="PNG data", found="other bytes")
        return data


Block = Heading | Text | Lines | Table | Image

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; line-height: 1.45; padding: 0 1em; }
table.wr-table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
table.wr-table th, table.wr-table td { border: 1px solid #ccc; padding: 0.3em 0.7em; }
table.wr-table th { background: #f3f3f3; }
table.wr-table td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.wr-table caption { caption-side: top; text-align: left; font-weight: 600; padding: 0.3em 0; }
figure { margin: 1em 0; } figure img { max-width: 100%; }
figcaption { color: #555; font-size: 0.9em; }
"""


def _check(blocks: Sequence[Block]) -> None:
    for i, b in enumerate(blocks):
        if not isinstance(b, Heading | Text | Lines | Table | Image):
            raise ConfigError(
                f"report block {i}: expected Heading, Text, Lines, Table or Image, found "
                f"{type(b).__name__}"
            )


def render_html(title: str, blocks: Sequence[Block]) -> str:
    """One self-contained HTML page."""
    _check(blocks)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for b in blocks:
        if isinstance(b, Heading):
            lv = min(max(b.level, 1), 6)
            parts.append(f"<h{lv}>{html.escape(b.text)}</h{lv}>")
        elif isinstance(b, Text):
            parts += [f"<p>{html.escape(p.strip())}</p>" for p in b.text.split("\n\n") if p.strip()]
        elif isinstance(b, Lines):
            items = "".join(f"<li>{html.escape(str(line))}</li>" for line in b.lines)
            parts.append(f'<ul class="wr-lines">{items}</ul>')
        elif isinstance(b, Table):
            parts.append(to_html_table(b.df, digits=b.digits, caption=b.caption))
        else:
            data = base64.b64encode(b.png_bytes()).decode("ascii")
            cap = f"<figcaption>{html.escape(b.caption)}</figcaption>" if b.caption else ""
            alt = html.escape(b.alt or b.caption or "", quote=True)
            parts.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">{cap}</figure>'
            )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_html(path: str | Path, title: str, blocks: Sequence[Block]) -> Path:
    """Write :func:`render_html` to ``path`` atomically."""
    io.atomic_write_text(path, render_html(title, blocks))
    return Path(path)


def render_markdown(title: str, blocks: Sequence[Block], base_dir: str | Path = ".") -> str:
    """Markdown text; image paths are made relative to ``base_dir`` (the report's folder).

    Images given as bytes cannot be linked: use :func:`write_markdown_report`, which saves them.
    """
    _check(blocks)
    out = [f"# {title}", ""]
    for b in blocks:
        if isinstance(b, Heading):
            out += ["#" * min(max(b.level, 1), 6) + " " + b.text, ""]
        elif isinstance(b, Text):
            out += [b.text.strip(), ""]
        elif isinstance(b, Lines):
            out += [*(f"- {line}" for line in b.lines), ""]
        elif isinstance(b, Table):
            if b.caption:
                out += [f"**{b.caption}**", ""]
            out += [to_markdown(b.df, digits=b.digits)]
        else:
            if isinstance(b.source, bytes):
                raise ConfigError("an image given as bytes needs write_markdown_report to save it")
            rel = Path(os.path.relpath(Path(b.source).resolve(), Path(base_dir).resolve()))
            out += [f"![{b.alt or b.caption or ''}]({rel.as_posix()})", ""]
            if b.caption:
                out += [f"*{b.caption}*", ""]
    return "\n".join(out).rstrip("\n") + "\n"


def write_markdown_report(path: str | Path, title: str, blocks: Sequence[Block]) -> Path:
    """Write a Markdown report atomically; byte images go to ``<stem>_files/figN.png``."""
    p = Path(path)
    _check(blocks)
    resolved: list[Block] = []
    n = 0
    for b in blocks:
        if isinstance(b, Image) and isinstance(b.source, bytes):
            n += 1
            img = p.parent / f"{p.stem}_files" / f"fig{n}.png"
            io.atomic_write_bytes(img, b.png_bytes())
            b = Image(img, b.alt, b.caption)
        resolved.append(b)
    io.atomic_write_text(p, render_markdown(title, resolved, p.parent))
    return p


def write_report(path: str | Path, title: str, blocks: Sequence[Block]) -> Path:
    """Write an ``.html`` or ``.md`` report, chosen by the suffix of ``path``."""
    suffix = Path(path).suffix.lower()
    if suffix in (".html", ".htm"):
        return write_html(path, title, blocks)
    if suffix == ".md":
        return write_markdown_report(path, title, blocks)
    raise ConfigError(f"{path}: unknown report format '{suffix}'; expected .html or .md")


def write_study_report(
    out: str | Path,
    title: str,
    setting: Mapping[str, Any],
    explain: str,
    table: pl.DataFrame,
    plot: Path,
    caption: str,
) -> dict[str, Path]:
    """A study's report in both formats, ``out/report.md`` and ``out/report.html``: its setting
    (one ``key: value`` line each), the results table after ``explain``, and its plot ->
    ``{"report_md": ..., "report_html": ...}``."""
    blocks = [
        Heading("Setting"),
        Lines([f"{k}: {v}" for k, v in setting.items()]),
        Heading("Results"),
        Text(explain),
        Table(table),
        Heading("Plot"),
        Image(plot, alt=caption.split(";")[0], caption=caption),
    ]
    return {
        f"report_{suffix}": write_report(Path(out) / f"report.{suffix}", title, blocks)
        for suffix in ("md", "html")
    }


def write_table(df: pl.DataFrame, path: str | Path, *, digits: int = 4) -> Path:
    """Write ``df`` in the format its suffix names: ``.md``, ``.csv``, ``.html`` or ``.parquet``.

    An ``.html`` table is a one-table report page (:func:`write_html`).
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".md":
        return write_markdown(df, p, digits=digits)
    if suffix == ".csv":
        return write_csv(df, p)
    if suffix in (".html", ".htm"):
        return write_html(p, p.stem, [Table(df, digits=digits)])
    if suffix == ".parquet":
        io.write_parquet(df, p)
        return p
    raise ConfigError(f"{p}: unknown table format '{suffix}'; expected .md, .csv, .html, .parquet")
