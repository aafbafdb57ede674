"""Delimited text: the header line, separator sniffing, the Polars CSV scan, and diagnosis.

Every function here knows bytes and lines, not canonical columns (those are
:mod:`warmrec.data.columns`). :class:`Source` carries the file and the line of data row 0 so that
errors elsewhere can name the line; :func:`diagnose` turns a parser failure into a
:class:`~warmrec.errors.DataError` naming the first bad line (bad UTF-8, a wrong number of fields).
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from warmrec.errors import DataError

SEPARATORS = ("\t", ",", ";", "|", " ")
SEP_NAMES = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe", " ": "space"}


@dataclass(frozen=True)
class Source:
    """Where rows come from, to name the file and line in errors.

    ``first_line`` is the file line of data row 0 (2 with a header, 1 without); ``None`` for
    formats without lines (Parquet), whose errors name the row instead.
    """

    path: Path
    first_line: int | None = 2
    sep: str | None = field(default=None)

    def where(self, row: int) -> str:
        """The file and line of data row ``row`` (the file alone for formats without lines),
        for a warning's first words."""
        return str(self.path) if self.first_line is None else f"{self.path}, line {self.line(row)}"

    def line(self, row: int) -> int:
        """The file line data row ``row`` starts on: ``first_line + row``, unless a quoted
        field before it spans lines (then counted by reading the file up to the row, as a CSV
        reader does; only on the way to an error or warning)."""
        naive = (self.first_line or 1) + row
        if self.first_line is None or self.sep is None or len(self.sep) != 1:
            return naive
        import csv

        try:
            with open(self.path, encoding="utf-8", errors="replace", newline="") as f:
                reader = csv.reader(f, delimiter=self.sep, quotechar='"')
                if self.first_line == 2:
                    next(reader, None)
                start = reader.line_num + 1
                for i, _ in enumerate(reader):
                    if i == row:
                        return start
                    start = reader.line_num + 1
        except (OSError, csv.Error):
            return naive
        return naive

    def short_line(self, row: int) -> DataError | None:
        """A "wrong number of fields" error where data row ``row`` has fewer fields than the
        header (the reader fills the missing ones with nulls, which would read as empty
        cells); None where it has them all, or the file has no lines to count."""
        if self.first_line != 2 or self.sep is None:  # a header line, then the data rows
            return None
        record = self._record(row)
        if record is None:
            return None
        line_no, want, got, line = record
        if not line.strip():
            return None  # an empty line: named as such by the missing-value check
        if got >= want:
            return None
        other = [c for c in SEPARATORS if c not in (self.sep, " ") and c in line]
        hint = (
            f" (the line holds {sep_name(other[0])}s: is the separator {sep_name(self.sep)} right?)"
            if other
            else ""
        )
        return DataError(
            "wrong number of fields",
            path=self.path,
            line=line_no,
            expected=f"{want} fields separated by {sep_name(self.sep)}, as the header",
            found=f"{got} field(s): {clip(line)!r}{hint}",
        )

    def _record(self, row: int) -> tuple[int, int, int, str] | None:
        """``(line, header fields, fields, text)`` of data row ``row`` of a file with a header
        line; ``None`` past its end. Read line by line where no quote comes up to the row, else
        as a CSV reader does: a quoted field spanning lines (legal) does not shift the rows
        after it."""
        import csv
        import itertools

        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                want = len(header_cells(f.readline().rstrip("\r\n"), self.sep))
                quoted = any('"' in line for line in itertools.islice(f, row))
                line = None if quoted else next(f, None)
                if line is None and not quoted:
                    return None
                if line is not None and '"' not in line:  # line by line: first_line + row
                    line = line.rstrip("\r\n")
                    return self.first_line + row, want, len(header_cells(line, self.sep)), line
            records = csv_records(self.path, self.sep, skipinitialspace=True)
            for i, (line_no, cells) in enumerate(records):
                if i == row + 1:  # the header is record 0
                    return line_no, want, len(cells), self.sep.join(cells)
        except (OSError, csv.Error):
            return None
        return None

    def row_error(
        self, message: str, row: int, column: str | None, *, expected: str, found: str
    ) -> DataError:
        if self.first_line is None:
            return DataError(
                f"{message} at row {row + 1}",
                path=self.path,
                field=column,
                expected=expected,
                found=found,
            )
        return DataError(
            message,
            path=self.path,
            line=self.line(row),
            field=column,
            expected=expected,
            found=found,
        )


_COMPRESSED = (
    (b"\x1f\x8b", "gzip", "gunzip FILE"),
    (b"BZh", "bzip2", "bunzip2 FILE"),
    (b"\xfd7zXZ\x00", "xz", "unxz FILE"),
    (b"\x28\xb5\x2f\xfd", "zstd", "unzstd FILE"),
    (b"PK\x03\x04", "zip", "unzip FILE"),
)
"""Signatures of compressed files that a text reader would take for bad UTF-8."""


def first_line(path: Path) -> str:
    """The header line of a text file, decoded; raises on an empty file or bad bytes."""
    with open(path, "rb") as f:
        raw = f.readline(1 << 20)
    if not raw.strip():
        found = "0 bytes" if path.stat().st_size == 0 else "an empty first line"
        raise DataError(
            "empty file",
            path=path,
            line=1,
            expected="a header line followed by data rows",
            found=found,
        )
    for magic, kind, tool in _COMPRESSED:
        if raw.startswith(magic):
            raise DataError(
                f"a {kind}-compressed file",
                path=path,
                expected=f"uncompressed text (decompress it first: {tool}) or Parquet",
                found=f"the {kind} signature {magic!r} at its start",
            )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            "not valid UTF-8 text",
            path=path,
            line=1,
            expected="UTF-8 text",
            found=f"bytes {raw[exc.start : exc.start + 4]!r}",
        ) from exc
    return text.lstrip("\ufeff").rstrip("\r\n")


def sniff_header(path: Path, sep: str | None = None) -> tuple[str, list[str]]:
    """The separator (given or sniffed) and the header cells of a delimited text file."""
    line = first_line(path).rstrip("\r\n")
    if sep is None:
        # the separator that splits the header into the most cells (quotes honoured), a space
        # only where no other splits it: names may hold spaces ("User ID,Product ID")
        fields = {c: len(header_cells(line, c)) for c in SEPARATORS}
        others = [c for c in SEPARATORS if c != " " and fields[c] > 1]
        if others:
            sep = max(others, key=lambda c: (fields[c], -SEPARATORS.index(c)))
        else:
            sep = " " if fields[" "] > 1 else ","
    return sep, [cell.strip() for cell in header_cells(line, sep)]


def header_cells(line: str, sep: str) -> list[str]:
    """The cells of one header line split at ``sep``, double quotes honoured (``"a, b"`` is one
    cell, without its quotes); a line the csv module cannot split is split plainly."""
    import csv

    try:
        return next(csv.reader([line], delimiter=sep, quotechar='"', skipinitialspace=True))
    except (csv.Error, StopIteration):
        return [cell.strip('"') for cell in line.split(sep)]


def read_text(
    path: Path,
    *,
    sep: str,
    has_header: bool = True,
    names: Sequence[str] | None = None,
    select: Sequence[str] | None = None,
    quote_char: str | None = '"',
    encoding: str = "utf8",
    dtypes: dict[str, pl.DataType] | None = None,
    n_rows: int | None = None,
) -> pl.DataFrame:
    """Read a delimited text file; columns are text unless ``dtypes`` names a type.

    ``dtypes`` is a fast path (native parsing, see :func:`sample_dtypes`): if a value later in
    the file does not fit, the file is read again as text and the caller's checks name the
    line. Structural problems (bad bytes, a wrong number of fields) raise a
    :class:`DataError` with the line. ``encoding`` other than utf8 decodes in memory (for
    small files such as MovieLens' latin-1 ``u.item``). Blank last lines of the file (an
    editor's extra newline) give no rows (:func:`drop_trailing_blank_lines`; not with
    ``n_rows``, a sample of the head).
    """
    df = _read_text(path, sep, has_header, names, select, quote_char, encoding, dtypes, n_rows)
    return df if n_rows is not None else drop_trailing_blank_lines(df, path)


def _read_text(
    path: Path,
    sep: str,
    has_header: bool,
    names: Sequence[str] | None,
    select: Sequence[str] | None,
    quote_char: str | None,
    encoding: str,
    dtypes: dict[str, pl.DataType] | None,
    n_rows: int | None,
) -> pl.DataFrame:
    kw = dict(
        separator=sep,
        has_header=has_header,
        new_columns=names,
        quote_char=quote_char,
        infer_schema=False,
        n_rows=n_rows,
    )
    try:
        if encoding != "utf8":
            df = pl.read_csv(path, encoding=encoding, **kw)
            return df.select(select) if select else df
        padded = _padded_header(path, kw) if has_header and names is None else {}
        if padded:  # "user_id, item_id": names and values are read without the spaces
            return _read_padded(path, kw, padded, select)
        if dtypes:
            try:
                lf = pl.scan_csv(path, schema_overrides=dtypes, raise_if_empty=False, **kw)
                return (lf.select(select) if select else lf).collect()
            except pl.exceptions.ComputeError:
                pass  # a value that does not fit the sampled type: read as text below
        lf = pl.scan_csv(path, raise_if_empty=False, **kw)
        return (lf.select(select) if select else lf).collect()
    except (pl.exceptions.PolarsError, OSError) as exc:
        n_fields = len(names) if names is not None else None
        raise diagnose(
            path, sep, exc, n_fields=n_fields, has_header=has_header, quote_char=quote_char
        ) from exc


def _padded_header(path: Path, kw: dict) -> dict[str, str]:
    """``{name as read: name stripped}`` where the header's names carry spaces around them
    (``user_id, item_id, timestamp``); empty for a plain header."""
    names = pl.scan_csv(path, raise_if_empty=False, **kw).collect_schema().names()
    return {n: n.strip() for n in names if n != n.strip()}


def _read_padded(
    path: Path, kw: dict, renamed: dict[str, str], select: Sequence[str] | None
) -> pl.DataFrame:
    """A file written with a space after each separator: its names stripped, and its text
    cells too (``u1, a, 1600000000``: the item is ``a``, not `` a``)."""
    lf = pl.scan_csv(path, raise_if_empty=False, **kw).rename(renamed)
    if select:
        lf = lf.select(select)
    return lf.with_columns(pl.all().str.strip_chars()).collect()


def diagnose(
    path: Path,
    sep: str,
    exc: Exception,
    *,
    n_fields: int | None = None,
    has_header: bool = True,
    quote_char: str | None = '"',
) -> DataError:
    """Turn a parser failure into a DataError naming the first bad line (fields counted as
    the reader counts them: a separator inside quotes splits nothing)."""
    bad = first_bad_utf8(path)
    if bad is not None:
        line, data = bad
        return DataError(
            "not valid UTF-8 text",
            path=path,
            line=line,
            expected="UTF-8 text",
            found=f"bytes {data!r}",
        )
    lines = pl.scan_csv(
        path,
        has_header=False,
        separator="\x00",
        quote_char=None,
        infer_schema=False,
        new_columns=["line"],
        truncate_ragged_lines=True,
        raise_if_empty=False,
    ).collect()["line"]
    counts = lines.str.count_matches(sep, literal=True) + 1
    want = (
        n_fields
        if n_fields is not None
        else (int(counts[0]) if has_header and len(counts) else None)
    )
    if want is not None:
        ragged = (counts != want) & lines.is_not_null()
        row = int(ragged.arg_max()) if ragged.any() else None
        if (
            row is not None
            and quote_char is not None
            and lines.head(row + 1).str.contains(quote_char, literal=True).any()
        ):  # quoted fields up to that line: counted as a CSV reader counts them
            row, got, want = _ragged_record(path, sep, quote_char, n_fields, has_header)
        else:
            got = None if row is None else int(counts[row])
        if row is not None:
            return DataError(
                "wrong number of fields",
                path=path,
                line=row + 1,
                expected=f"{want} fields separated by {sep_name(sep)}",
                found=f"{got} field(s): {clip(lines[row])!r}",
            )
    odd = (lines.str.count_matches('"', literal=True) % 2 == 1) & lines.is_not_null()
    if odd.any():
        row = int(odd.arg_max())
        return DataError(
            "a quote opened and not closed",
            path=path,
            line=row + 1,
            expected='a closing " on the same line (a " inside a quoted value is written "")',
            found=clip(lines[row]),
        )
    return DataError(
        "could not read the file",
        path=path,
        expected=f"{sep_name(sep)}-separated text",
        found=short_error(exc),
    )


def _ragged_record(
    path: Path, sep: str, quote_char: str, n_fields: int | None, has_header: bool
) -> tuple[int | None, int | None, int | None]:
    """``(line index, fields, fields expected)`` of the first record whose number of fields
    differs from the header's (or ``n_fields``), quotes honoured; ``row`` ``None`` if none
    does."""
    import csv

    want = n_fields
    try:
        for i, (line, cells) in enumerate(csv_records(path, sep, quote_char)):
            if i == 0 and has_header and want is None:
                want = len(cells)
            elif cells and want is not None and len(cells) != want:
                return line - 1, len(cells), want
    except (OSError, csv.Error):
        pass
    return None, None, n_fields


def csv_records(
    path: Path, sep: str, quote_char: str = '"', *, skipinitialspace: bool = False
) -> Iterator[tuple[int, list[str]]]:
    """Each record of a delimited file as Python's CSV reader reads it (a quoted field may
    span lines), with the 1-based line it starts on; raises ``OSError`` and ``csv.Error``."""
    import csv

    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        reader = csv.reader(
            f, delimiter=sep, quotechar=quote_char, skipinitialspace=skipinitialspace
        )
        start = 1
        for cells in reader:
            yield start, cells
            start = reader.line_num + 1


def first_bad_utf8(path: Path, chunk: int = 1 << 24) -> tuple[int, bytes] | None:
    """``(line, bytes)`` of the first invalid UTF-8 sequence in a file, or ``None``."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    newlines = 0
    with open(path, "rb") as f:
        while block := f.read(chunk):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                start = max(exc.start, 0)
                return newlines + block.count(b"\n", 0, start) + 1, block[start : start + 4]
            newlines += block.count(b"\n")
    return None


def require_rows(raw: pl.DataFrame, src: Source) -> None:
    """Raise if a file holds a header but no data rows."""
    if raw.height == 0:
        what = "the file has a header but no data rows" if src.first_line == 2 else "no data rows"
        raise DataError(
            what,
            path=src.path,
            line=src.first_line,
            expected="at least one data row",
            found="end of file",
        )


def drop_trailing_blank_lines(raw: pl.DataFrame, path: Path) -> pl.DataFrame:
    """``raw`` without the rows the file's blank last lines became (an editor's or a script's
    extra newline at the end, or a line of spaces; pandas skips them too). Only rows of
    nothing at the very end, and only as many as the file has blank last lines: a line of
    empty fields (``,,``) stays, to be refused with its line."""
    if raw.height == 0 or raw.width == 0:
        return raw
    nothing = [  # a blank line's row: nulls, or text of spaces (a line of spaces)
        pl.col(c).is_null() | (pl.col(c).str.strip_chars(" \t\r") == "").fill_null(True)
        if t == pl.Utf8
        else pl.col(c).is_null()
        for c, t in raw.schema.items()
    ]
    empty = raw.select(pl.all_horizontal(nothing)).to_series().to_numpy()
    if not empty[-1]:
        return raw
    k = len(empty) - int(np.flatnonzero(~empty)[-1]) - 1 if (~empty).any() else len(empty)
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - 65_536))
            tail = fh.read()
    except OSError:
        return raw
    lines = tail.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the last line's own newline
    blank = 0
    for line in reversed(lines):
        if line.strip(b"\r\t ") != b"":
            break
        blank += 1
    return raw.head(raw.height - k) if blank >= k else raw


def sep_name(sep: str) -> str:
    return SEP_NAMES.get(sep, repr(sep))


def clip(text: str | None, n: int = 80) -> str:
    text = text or ""
    return text if len(text) <= n else text[:n] + "..."


def short_error(exc: Exception) -> str:
    return clip(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, 160)
