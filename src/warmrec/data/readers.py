"""Readers: the only code that knows file formats.

:func:`load_interactions` reads an interaction log from CSV/TSV/TXT, Parquet, RecBole atomic
files (``.inter``, with ``.item``/``.user`` feature files beside it) or a folder of split files
read as one log, maps its columns to the canonical schema (:mod:`warmrec.data.schema`) and
returns an :class:`Interactions`. Named public datasets live in :mod:`warmrec.data.datasets`.

The rules, in one place:

- **Columns.** ``columns`` maps canonical name -> column in the file; a key that is not a
  canonical name keeps that column as an extra column under the key's name. Unmapped canonical
  columns are recognised by common names, compared without case, ``_``, ``-`` and spaces
  (``session_id``/``SessionId``/``session``, ``user_id``/``UserId``/``user``,
  ``item_id``/``ItemId``/``item``, ``timestamp``/``Time``/``time``/``ts``, ``rating``). Other
  columns are not read at all (the benchmark reads 33M rows: only what is needed is parsed).
- **Separator.** Sniffed from the header line (tab, comma, semicolon, pipe, then space) unless
  ``sep`` is given; ``.tsv`` defaults to tab. Fields may be quoted with ``"``.
- **Ids.** Read as text; a column whose every value is a plain decimal integer (no sign, no
  leading zero) becomes Int64, otherwise it stays a string, so ``"007"`` and ``"7"`` never merge.
- **Timestamps.** Numbers are Unix seconds; if the largest is above 1e11 they are taken as
  milliseconds (above 1e14, microseconds). Text is parsed as ISO 8601 date-times in the
  layout of the column's first value (:data:`ISO_FORMATS`; without a zone: UTC). A log without timestamps is accepted only with ``order="column"`` (that numeric
  column becomes the timestamp) or ``no_timestamp=True`` (file order 0, 1, 2, ... becomes the
  timestamp, and any time column is ignored).
- **Order.** Rows keep file order; nothing is sorted here. A folder is read file by file in
  name order and concatenated; a folder of train/valid/test files is a split folder
  (:mod:`warmrec.data.splitdir`): its parts are kept in ``Interactions.parts``.

Every problem raises :class:`~warmrec.errors.DataError` naming the file, the line (counted from
1, header included; Parquet: the row) or the field, what was expected and what was found.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from warmrec.data.schema import ITEM, RATING, SESSION, TIME, USER, validate_interactions
from warmrec.errors import ConfigError, DataError

SEPARATORS = ("\t", ",", ";", "|", " ")
SEP_NAMES = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe", " ": "space"}
SUFFIX_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".inter": "recbole",
}
FORMATS = ("csv", "tsv", "parquet", "recbole", "folder")
ALIASES: dict[str, tuple[str, ...]] = {
    SESSION: ("sessionid", "session"),
    USER: ("userid", "user"),
    ITEM: ("itemid", "item"),
    TIME: ("timestamp", "time", "ts"),
    RATING: ("rating",),
}
ID_COLUMNS = (SESSION, USER, ITEM)
CANONICAL_ORDER = (SESSION, USER, ITEM, TIME, RATING)
RECBOLE_TYPES = ("token", "token_seq", "float", "float_seq")
TIME_EXPECTED = "Unix seconds or an ISO 8601 date-time"
ISO_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.fZ",
    "%Y-%m-%dT%H:%M:%S%.f%:z",
    "%Y-%m-%dT%H:%M:%S%.f%z",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.fZ",
    "%Y-%m-%d %H:%M:%S%.f%:z",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
)
_NOT_PLAIN_INT = r"^(\+|-0|0.)"
_MS_ABOVE, _US_ABOVE = 1e11, 1e14


@dataclass
class Interactions:
    """A validated canonical interaction table with optional item and user feature tables.

    ``parts`` is set when the source was a split folder (:mod:`warmrec.data.splitdir`):
    ``{"train": ..., "valid": ..., "test": ...}`` canonical tables (``valid`` may be absent) and
    ``interactions`` is their concatenation; ``split_info`` then says where the split came from
    (files, row counts, and the manifest's method and options when the folder has one).
    """

    interactions: pl.DataFrame
    item_features: pl.DataFrame | None = None
    user_features: pl.DataFrame | None = None
    source: str = ""
    parts: dict[str, pl.DataFrame] | None = None
    split_info: dict[str, Any] | None = None

    def __repr__(self) -> str:
        def shape(df: pl.DataFrame | None) -> str:
            return "None" if df is None else f"{df.height}x{df.width}"

        return (
            f"Interactions(source={self.source!r}, interactions={shape(self.interactions)}, "
            f"item_features={shape(self.item_features)}, "
            f"user_features={shape(self.user_features)})"
        )


@dataclass(frozen=True)
class ReadOptions:
    """How to map a file's columns: see :func:`load_interactions`."""

    columns: dict[str, str] | None = None
    sep: str | None = None
    order: str | None = None
    no_timestamp: bool = False


@dataclass(frozen=True)
class Source:
    """Where rows come from, to name the file and line in errors.

    ``first_line`` is the file line of data row 0 (2 with a header, 1 without); ``None`` for
    formats without lines (Parquet), whose errors name the row instead.
    """

    path: Path
    first_line: int | None = 2
    sep: str | None = field(default=None)

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
            line=self.first_line + row,
            field=column,
            expected=expected,
            found=found,
        )


# --------------------------------------------------------------------------- public entry


def load_interactions(
    path: str | Path,
    *,
    format: str | None = None,
    columns: dict[str, str] | None = None,
    sep: str | None = None,
    order: str | None = None,
    no_timestamp: bool = False,
) -> Interactions:
    """Read an interaction log into the canonical table (see the module docstring).

    ``format`` overrides detection: ``csv``, ``tsv``, ``parquet``, ``recbole``, ``folder`` or a
    dataset name from :func:`warmrec.data.datasets.list_datasets`.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(
            "no such file or folder",
            path=p,
            expected="an existing file or folder",
            found="nothing at that path",
        )
    if order is not None and no_timestamp:
        raise ConfigError("pass either order='<column>' or no_timestamp=True, not both")
    fmt = (format or detect_format(p)).lower()
    opts = ReadOptions(columns=columns, sep=sep, order=order, no_timestamp=no_timestamp)
    if fmt in _READERS:
        return _READERS[fmt](p, opts)
    from warmrec.data import datasets

    if datasets.has_dataset(fmt):
        return datasets.load_dataset(fmt, p, **({"columns": columns} if columns else {}))
    raise ConfigError(
        f"unknown format {format!r}: expected one of {', '.join(FORMATS)} "
        f"or a dataset name ({', '.join(datasets.list_datasets())})"
    )


def detect_format(path: str | Path) -> str:
    """The format of ``path`` from its suffix, or for a folder from the files it holds."""
    p = Path(path)
    if p.is_dir():
        if any(p.glob("*.inter")):
            return "recbole"
        if folder_files(p):
            return "folder"
        raise DataError(
            "the folder holds no interaction files",
            path=p,
            expected="*.inter, *.csv, *.tsv, *.txt or *.parquet files",
            found=_listing(p),
        )
    fmt = SUFFIX_FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise DataError(
            "cannot tell the file format from its name",
            path=p,
            expected=f"a suffix {', '.join(SUFFIX_FORMATS)} or format='...'",
            found=f"suffix '{p.suffix}'" if p.suffix else "no suffix",
        )
    return fmt


def folder_files(folder: Path) -> list[Path]:
    """Readable interaction files in ``folder`` (not recursive), in name order."""
    return sorted(
        f
        for f in folder.iterdir()
        if f.is_file()
        and not f.name.startswith(".")
        and SUFFIX_FORMATS.get(f.suffix.lower()) in ("csv", "tsv", "parquet")
    )


def _listing(folder: Path, limit: int = 8) -> str:
    names = sorted(f.name for f in folder.iterdir())
    if not names:
        return "an empty folder"
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


# --------------------------------------------------------------------------- format readers


def _read_delimited(p: Path, opts: ReadOptions, default_sep: str | None = None) -> Interactions:
    sep, header = sniff_header(p, opts.sep or default_sep)
    src = Source(p, first_line=2, sep=sep)
    mapping = resolve_columns(header, opts, src)
    select = sorted(set(mapping.values()))
    dtypes = sample_dtypes(p, mapping, sep=sep)
    raw = read_text(p, sep=sep, select=select, dtypes=dtypes)
    require_rows(raw, src)
    return Interactions(to_canonical(raw, mapping, src, opts), source=str(p))


def _read_parquet(p: Path, opts: ReadOptions) -> Interactions:
    src = Source(p, first_line=None)
    try:
        lf = pl.scan_parquet(p)
        names = lf.collect_schema().names()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(
            "not a readable Parquet file", path=p, expected="a Parquet file", found=_short(exc)
        ) from exc
    mapping = resolve_columns(names, opts, src)
    raw = lf.select(sorted(set(mapping.values()))).collect()
    require_rows(raw, src)
    return Interactions(to_canonical(raw, mapping, src, opts), source=str(p))


def _read_folder(p: Path, opts: ReadOptions) -> Interactions:
    """A folder of files read as one log; a split folder (train/valid/test files) also keeps its
    parts (:mod:`warmrec.data.splitdir`). Overlapping files are refused."""
    from warmrec.data import splitdir

    files = folder_files(p) if p.is_dir() else []
    if not files:
        raise DataError(
            "the folder holds no interaction files",
            path=p,
            expected="*.csv, *.tsv, *.txt or *.parquet files",
            found=_listing(p) if p.is_dir() else "a file",
        )
    named = {part: f for f in files if (part := splitdir.part_of(f)) is not None}
    manifest = splitdir.verify_manifest(p, named)
    part_files = splitdir.split_parts(files, p)
    tables = [_READERS[SUFFIX_FORMATS[f.suffix.lower()]](f, opts).interactions for f in files]
    df = concat_logs(tables, opts, p)
    # the parts again, now with the merged table's types (and file-order timestamps)
    bounds = np.cumsum([0] + [t.height for t in tables])
    pieces = {f.name: df.slice(int(a), int(b - a)) for f, a, b in zip(files, bounds, bounds[1:])}
    splitdir.check_no_overlap(pieces, p, split=part_files is not None)
    if part_files is None:
        return Interactions(df, source=str(p))
    parts = {k: pieces[part_files[k].name] for k in splitdir.PARTS if k in part_files}
    info: dict[str, Any] = {
        "method": "given",
        "folder": str(p),
        "files": {k: f.name for k, f in part_files.items()},
        "rows": {k: v.height for k, v in parts.items()},
    }
    if manifest is not None:
        info["manifest"] = {"method": manifest.get("method"), "options": manifest.get("options")}
    return Interactions(df, source=str(p), parts=parts, split_info=info)


def concat_logs(parts: Sequence[pl.DataFrame], opts: ReadOptions, path: Path) -> pl.DataFrame:
    """Concatenate canonical tables (ids of mixed types become strings) and re-validate.

    Rows keep their order (the parts are consecutive row ranges of the result)."""
    df = pl.concat(parts, how="diagonal_relaxed")
    if opts.no_timestamp:
        df = df.with_columns(file_order(df.height))
    return validate_interactions(df, source=str(path))


def file_order(n: int) -> pl.Expr:
    """The timestamp column for logs whose only time information is the row order."""
    return pl.int_range(0, n, dtype=pl.Int64).cast(pl.Float64).alias(TIME)


# --------------------------------------------------------------------------- RecBole


def _read_recbole(p: Path, opts: ReadOptions) -> Interactions:
    folder = p if p.is_dir() else p.parent
    inters = sorted(folder.glob("*.inter")) if p.is_dir() else [p]
    if not inters:
        raise DataError(
            "no RecBole .inter file in the folder",
            path=p,
            expected="a file NAME.inter",
            found=_listing(folder),
        )
    parts = [_read_inter(f, opts) for f in inters]
    df = parts[0] if len(parts) == 1 else concat_logs(parts, opts, folder)
    stem = inters[0].name.split(".")[0]
    items = _read_features(_feature_file(folder, stem, ".item"), ITEM, opts)
    users = _read_features(_feature_file(folder, stem, ".user"), USER, opts)
    df, items = align_keys(df, items, ITEM)
    df, users = align_keys(df, users, USER)
    return Interactions(df, item_features=items, user_features=users, source=str(p))


def recbole_header(path: Path) -> list[tuple[str, str]]:
    """The ``(name, type)`` pairs of a RecBole atomic file's header line."""
    line = first_line(path)
    fields = []
    for cell in line.split("\t"):
        name, colon, typ = cell.strip().rpartition(":")
        if not colon or not name or typ not in RECBOLE_TYPES:
            raise DataError(
                "bad RecBole header cell",
                path=path,
                line=1,
                field=cell.strip(),
                expected=f"'name:type' with type one of {', '.join(RECBOLE_TYPES)}, "
                "cells separated by tabs",
                found=repr(cell.strip()),
            )
        fields.append((name, typ))
    return fields


def read_atomic(path: Path) -> tuple[pl.DataFrame, dict[str, str]]:
    """A RecBole atomic file as text columns named without types, and the name -> type map."""
    fields = recbole_header(path)
    raw = read_text(path, sep="\t", quote_char=None)
    require_rows(raw, Source(path, sep="\t"))
    raw.columns = [name for name, _ in fields]
    return raw, dict(fields)


def _read_inter(path: Path, opts: ReadOptions) -> pl.DataFrame:
    names = [name for name, _ in recbole_header(path)]
    cells = dict(zip(names, first_line(path).split("\t")))  # the header as Polars names it
    src = Source(path, sep="\t")
    mapping = {canon: cells[col] for canon, col in resolve_columns(names, opts, src).items()}
    dtypes = sample_dtypes(path, mapping, sep="\t", quote_char=None)
    select = sorted(set(mapping.values()))
    raw = read_text(path, sep="\t", quote_char=None, select=select, dtypes=dtypes)
    require_rows(raw, src)
    return to_canonical(raw, mapping, src, opts)


def _feature_file(folder: Path, stem: str, suffix: str) -> Path | None:
    exact = folder / f"{stem}{suffix}"
    if exact.is_file():
        return exact
    found = sorted(folder.glob(f"*{suffix}"))
    return found[0] if len(found) == 1 else None


def _read_features(path: Path | None, key: str, opts: ReadOptions) -> pl.DataFrame | None:
    if path is None:
        return None
    raw, types = read_atomic(path)
    src = Source(path, sep="\t")
    wanted = (opts.columns or {}).get(key)
    col = wanted if wanted in raw.columns else _find_alias(raw.columns, key, set())
    if col is None:
        raise DataError(
            "feature file has no key column",
            path=path,
            field=key,
            expected=f"a column '{key}'",
            found=", ".join(raw.columns),
        )
    out = {name: _atomic_column(raw[name], typ, src) for name, typ in types.items()}
    out[col] = normalise_ids(raw[col])
    df = pl.DataFrame(out).rename({col: key})
    return df.select(key, pl.exclude(key))


def _atomic_column(s: pl.Series, typ: str, src: Source) -> pl.Series:
    if typ == "float":
        return to_float(s, src, s.name)
    if typ == "token_seq":
        return s.str.split(" ")
    if typ == "float_seq":
        return _float_seq(s, src)
    return s


def _float_seq(s: pl.Series, src: Source) -> pl.Series:
    out = s.str.split(" ").list.eval(pl.element().cast(pl.Float64, strict=False))
    bad = out.list.eval(pl.element().is_null()).list.any().fill_null(False)
    if bad.any():
        row = int(bad.arg_max())
        raise src.row_error(
            f"unparsable {s.name}",
            row,
            s.name,
            expected="numbers separated by spaces (float_seq)",
            found=repr(s[row]),
        )
    return out.alias(s.name)


def align_keys(
    df: pl.DataFrame, feats: pl.DataFrame | None, key: str
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Give the key column the same type in the log and the feature table (strings if they differ)."""
    if feats is None or key not in df.columns or df[key].dtype == feats[key].dtype:
        return df, feats
    return df.with_columns(pl.col(key).cast(pl.Utf8)), feats.with_columns(pl.col(key).cast(pl.Utf8))


# --------------------------------------------------------------------------- text files


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
    line = first_line(path)
    if sep is None:
        counts = {c: line.count(c) for c in SEPARATORS}
        sep = max(SEPARATORS, key=lambda c: (counts[c], -SEPARATORS.index(c)))
        sep = sep if counts[sep] else ","
    return sep, [cell.strip().strip('"') for cell in line.split(sep)]


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
    small files such as MovieLens' latin-1 ``u.item``).
    """
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
        raise diagnose(path, sep, exc, n_fields=n_fields, has_header=has_header) from exc


def sample_dtypes(
    path: Path,
    mapping: dict[str, str],
    *,
    sep: str,
    has_header: bool = True,
    names: Sequence[str] | None = None,
    quote_char: str | None = '"',
    n: int = 10_000,
) -> dict[str, pl.DataType]:
    """Native types for the mapped columns, judged on the first ``n`` rows read as text.

    Ids become Int64 only if the sample holds plain integers (see :func:`normalise_ids`);
    timestamps and ratings Float64 if the sample holds numbers. Ids with leading zeros that
    first appear after the sample in an all-integer column would be read as integers: pass
    the file through :func:`read_text` without ``dtypes`` if that matters.
    """
    head = read_text(
        path,
        sep=sep,
        has_header=has_header,
        names=names,
        n_rows=n,
        quote_char=quote_char,
        select=sorted(set(mapping.values())),
    )
    out: dict[str, pl.DataType] = {}
    for canon, col in mapping.items():
        s = head[col]
        if canon in ID_COLUMNS and normalise_ids(s).dtype == pl.Int64:
            out[col] = pl.Int64
        elif canon in (TIME, RATING) and _all_numbers(s):
            out[col] = pl.Float64
    extras = {col for canon, col in mapping.items() if canon not in CANONICAL_ORDER}
    return {col: dtype for col, dtype in out.items() if col not in extras}


def _all_numbers(s: pl.Series) -> bool:
    return s.str.strip_chars().cast(pl.Float64, strict=False).null_count() == s.null_count()


def diagnose(
    path: Path, sep: str, exc: Exception, *, n_fields: int | None = None, has_header: bool = True
) -> DataError:
    """Turn a parser failure into a DataError naming the first bad line."""
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
        if ragged.any():
            row = int(ragged.arg_max())
            return DataError(
                "wrong number of fields",
                path=path,
                line=row + 1,
                expected=f"{want} fields separated by {_sep_name(sep)}",
                found=f"{counts[row]} field(s): {_clip(lines[row])!r}",
            )
    return DataError(
        "could not read the file",
        path=path,
        expected=f"{_sep_name(sep)}-separated text",
        found=_short(exc),
    )


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


def _sep_name(sep: str) -> str:
    return SEP_NAMES.get(sep, repr(sep))


def _clip(text: str | None, n: int = 80) -> str:
    text = text or ""
    return text if len(text) <= n else text[:n] + "..."


def _short(exc: Exception) -> str:
    return _clip(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, 160)


# --------------------------------------------------------------------------- columns


def resolve_columns(found: Sequence[str], opts: ReadOptions, src: Source) -> dict[str, str]:
    """Map canonical (and extra) names to file columns; raise naming what is missing."""
    found = list(found)
    mapping: dict[str, str] = {}
    for canon, col in (opts.columns or {}).items():
        if col not in found:
            raise DataError(
                "the column mapping names a column that is not in the file",
                path=src.path,
                field=canon,
                expected=f"a column '{col}'",
                found=describe_header(found, src.sep),
            )
        mapping[canon] = col
    if opts.order is not None:
        if opts.order not in found:
            raise DataError(
                "the order column is not in the file",
                path=src.path,
                field="order",
                expected=f"a column '{opts.order}'",
                found=describe_header(found, src.sep),
            )
        mapping[TIME] = opts.order
    for canon in ALIASES:
        if canon not in mapping:
            col = _find_alias(found, canon, set(mapping.values()))
            if col is not None:
                mapping[canon] = col
    if opts.no_timestamp:
        mapping.pop(TIME, None)
    _require_columns(mapping, found, opts, src)
    return mapping


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name).lower()


def _find_alias(found: Sequence[str], canon: str, taken: set[str]) -> str | None:
    if canon in found and canon not in taken:
        return canon
    return next((c for c in found if _norm(c) in ALIASES[canon] and c not in taken), None)


def _require_columns(
    mapping: dict[str, str], found: list[str], opts: ReadOptions, src: Source
) -> None:
    head = describe_header(found, src.sep)
    if ITEM not in mapping:
        raise DataError(
            "no item column",
            path=src.path,
            field=ITEM,
            expected="a column item_id/ItemId/item or columns={'item_id': '<name>'}",
            found=head,
        )
    if SESSION not in mapping and USER not in mapping:
        raise DataError(
            "no session or user column",
            path=src.path,
            field=SESSION,
            expected="a column session_id/SessionId/session or user_id/UserId/user, "
            "or columns={'session_id': '<name>'}",
            found=head,
        )
    if TIME not in mapping and not opts.no_timestamp:
        raise DataError(
            "no timestamp column",
            path=src.path,
            field=TIME,
            expected="a column timestamp/Time/time/ts, or columns={'timestamp': "
            "'<name>'}; for a log without time pass order='<column>' "
            "(an order column becomes the timestamp) or no_timestamp=True "
            "(file order becomes the timestamp)",
            found=head,
        )


def describe_header(found: Sequence[str], sep: str | None) -> str:
    """The columns found, with a hint when the separator looks wrong."""
    text = f"columns {', '.join(repr(c) for c in found)}" if found else "no columns"
    if sep is not None and len(found) == 1:
        other = [c for c in SEPARATORS if c != sep and c != " " and c in found[0]]
        if other:
            text += (
                f" (one column when split on {_sep_name(sep)}: the header looks "
                f"{_sep_name(other[0])}-separated; pass sep={other[0]!r})"
            )
    return text


# --------------------------------------------------------------------------- values


def to_canonical(
    raw: pl.DataFrame,
    mapping: dict[str, str],
    src: Source,
    opts: ReadOptions | None = None,
    *,
    time_format: str | None = None,
) -> pl.DataFrame:
    """Rename mapped columns, convert ids/timestamps/ratings by the rules above, validate."""
    opts = opts or ReadOptions()
    df = raw.select([pl.col(col).alias(canon) for canon, col in mapping.items()])
    converted = {c: _convert(df[c], c, src, opts, time_format) for c in df.columns}
    df = pl.DataFrame(converted)
    if opts.no_timestamp:
        df = df.with_columns(file_order(df.height))
    return finish(df, src)


def _convert(
    s: pl.Series, name: str, src: Source, opts: ReadOptions, time_format: str | None
) -> pl.Series:
    if name in ID_COLUMNS:
        return normalise_ids(s)
    if name == TIME:
        if opts.order is not None:
            return to_float(s, src, TIME, expected="a number (the order column)")
        return to_seconds(s, src, fmt=time_format)
    if name == RATING:
        return to_float(s, src, RATING)
    return infer_extra(s)


def finish(df: pl.DataFrame, src: Source) -> pl.DataFrame:
    """Check required values (naming the line), order the columns and validate."""
    key = SESSION if SESSION in df.columns else USER
    for col in (key, ITEM, TIME):
        if col in df.columns and df[col].null_count():
            row = int(df[col].is_null().arg_max())
            raise src.row_error(
                "missing value",
                row,
                col,
                expected="a value",
                found="an empty cell" + _sep_hint(df, row, src),
            )
    front = [c for c in CANONICAL_ORDER if c in df.columns]
    df = df.select(front + [c for c in df.columns if c not in front])
    return validate_interactions(df, source=str(src.path))


def _sep_hint(df: pl.DataFrame, row: int, src: Source) -> str:
    if src.sep is None:
        return ""
    cells = [str(v) for v in df.row(row) if isinstance(v, str)]
    other = [c for c in SEPARATORS if c not in (src.sep, " ") and any(c in v for v in cells)]
    return (
        (f" (the line holds {_sep_name(other[0])}s: is the separator {_sep_name(src.sep)} right?)")
        if other
        else ""
    )


def normalise_ids(s: pl.Series) -> pl.Series:
    """Text ids that are all plain decimal integers become Int64; other ids are unchanged."""
    if s.dtype != pl.Utf8:
        return s
    as_int = s.cast(pl.Int64, strict=False)
    if as_int.null_count() != s.null_count() or s.str.contains(_NOT_PLAIN_INT).any():
        return s
    return as_int


def infer_extra(s: pl.Series) -> pl.Series:
    """An extra text column as Int64 or Float64 when every value is one, else unchanged."""
    if s.dtype != pl.Utf8:
        return s
    as_int = normalise_ids(s)
    if as_int.dtype != pl.Utf8:
        return as_int
    as_float = s.cast(pl.Float64, strict=False)
    return as_float if as_float.null_count() == s.null_count() else s


def to_float(
    s: pl.Series, src: Source, column: str, *, expected: str = "a number", rows: bool = True
) -> pl.Series:
    """Cast to Float64, raising on the first value that is not a number."""
    if s.dtype.is_numeric():
        return s.cast(pl.Float64)
    text = s.cast(pl.Utf8).str.strip_chars()
    out = text.cast(pl.Float64, strict=False)
    _raise_unparsed(out, text, src, column, expected, rows=rows)
    return out


def to_seconds(
    s: pl.Series, src: Source, *, fmt: str | None = None, column: str = TIME
) -> pl.Series:
    """Unix seconds (Float64) from numbers, datetimes or ISO 8601 text (see module docstring)."""
    if isinstance(s.dtype, pl.Datetime) or s.dtype == pl.Date:
        return datetime_seconds(s)
    if s.dtype.is_numeric():
        return scale_epoch(s.cast(pl.Float64))
    if s.dtype != pl.Utf8:
        raise DataError(
            "timestamps must be numbers or date-times",
            path=src.path,
            field=column,
            expected=TIME_EXPECTED,
            found=str(s.dtype),
        )
    text = s.str.strip_chars()
    present = text.drop_nulls()
    if present.len() == 0:
        return text.cast(pl.Float64, strict=False)
    if fmt is None and _is_number(present[0]):
        return scale_epoch(to_float(text, src, column, expected=TIME_EXPECTED))
    fmt = fmt or iso_format(present[0])
    try:
        if fmt is None:
            raise ValueError("not ISO 8601")
        dt = text.str.to_datetime(format=fmt, strict=False, time_unit="us")
    except (ValueError, pl.exceptions.PolarsError) as exc:
        row = int(text.is_not_null().arg_max())
        raise src.row_error(
            "unparsable timestamp", row, column, expected=TIME_EXPECTED, found=repr(present[0])
        ) from exc
    _raise_unparsed(dt, text, src, column, TIME_EXPECTED)
    return datetime_seconds(dt)


def iso_format(value: str) -> str | None:
    """The first layout of :data:`ISO_FORMATS` that parses ``value``; ``None`` if none does.

    A column is parsed with the layout of its first value, so a value in another layout is
    reported with its line.
    """
    probe = pl.Series([value])
    for fmt in ISO_FORMATS:
        if probe.str.to_datetime(fmt, strict=False, time_unit="us").null_count() == 0:
            return fmt
    return None


def datetime_seconds(s: pl.Series) -> pl.Series:
    """Unix seconds of a Date/Datetime column (naive values are taken as UTC)."""
    if s.dtype == pl.Date:
        s = s.cast(pl.Datetime("us"))
    return s.dt.epoch("us").cast(pl.Float64) / 1e6


def scale_epoch(s: pl.Series) -> pl.Series:
    """Numbers that look like milliseconds (or microseconds) since the epoch, as seconds."""
    hi, lo = s.max(), s.min()
    if hi is None or lo is None:
        return s
    top = max(abs(hi), abs(lo))
    if top > _US_ABOVE:
        return s / 1e6
    if top > _MS_ABOVE:
        return s / 1e3
    return s


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _raise_unparsed(
    parsed: pl.Series,
    text: pl.Series,
    src: Source,
    column: str,
    expected: str,
    *,
    rows: bool = True,
) -> None:
    bad = parsed.is_null() & text.is_not_null()
    if bad.any():
        row = int(bad.arg_max())
        value = repr(text[row])
        if not rows:
            raise DataError(
                "unparsable value", path=src.path, field=column, expected=expected, found=value
            )
        raise src.row_error(f"unparsable {column}", row, column, expected=expected, found=value)


_READERS: dict[str, Callable[[Path, ReadOptions], Interactions]] = {
    "csv": _read_delimited,
    "tsv": lambda p, o: _read_delimited(p, o, default_sep="\t"),
    "parquet": _read_parquet,
    "recbole": _read_recbole,
    "folder": _read_folder,
}
