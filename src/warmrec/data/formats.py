"""File-format readers: delimited text, Parquet, a folder of split files, RecBole atomic files.

Each reader takes a path and :class:`~warmrec.data.columns.ReadOptions` and returns
:class:`~warmrec.data.interactions.Interactions`; :func:`read_file` dispatches on a format name
and :func:`detect_format` tells the format from a path. :func:`warmrec.data.readers.load_interactions`
is the public entry point (it also accepts dataset names).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from warmrec.data import splitdir
from warmrec.data.columns import (
    ReadOptions,
    align_keys,
    file_order,
    find_alias,
    integer_text,
    normalise_ids,
    resolve_columns,
    sample_dtypes,
    to_canonical,
    to_float,
)
from warmrec.data.interactions import Interactions
from warmrec.data.schema import ITEM, SESSION, USER, validate_interactions
from warmrec.data.text import (
    Source,
    clip,
    first_line,
    read_text,
    require_rows,
    sep_name,
    short_error,
    sniff_header,
)
from warmrec.errors import DataError

SUFFIX_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".inter": "recbole",
}
FORMATS = ("csv", "tsv", "parquet", "recbole", "folder")
RECBOLE_TYPES = ("token", "token_seq", "float", "float_seq")


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
    names = opts.names
    if names is not None and len(header) != len(names):
        raise DataError(
            f"--names gives {len(names)} columns",
            path=p,
            line=1,
            expected=f"{len(names)} fields separated by {sep_name(sep)} ({', '.join(names)})",
            found=f"{len(header)} field(s): {clip(first_line(p))!r}",
        )
    src = Source(p, first_line=2 if names is None else 1, sep=sep)
    mapping = resolve_columns(header if names is None else list(names), opts, src)
    select = sorted(set(mapping.values()))
    kw = {} if names is None else {"has_header": False, "names": list(names)}
    dtypes = sample_dtypes(p, mapping, sep=sep, **kw)
    raw = read_text(p, sep=sep, select=select, dtypes=dtypes, **kw)
    require_rows(raw, src)
    return Interactions(to_canonical(raw, mapping, src, opts), source=str(p))


def _read_parquet(p: Path, opts: ReadOptions) -> Interactions:
    src = Source(p, first_line=None)
    try:
        lf = pl.scan_parquet(p)
        names = lf.collect_schema().names()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(
            "not a readable Parquet file", path=p, expected="a Parquet file", found=short_error(exc)
        ) from exc
    mapping = resolve_columns(names, opts, src)
    raw = lf.select(sorted(set(mapping.values()))).collect()
    require_rows(raw, src)
    return Interactions(to_canonical(raw, mapping, src, opts), source=str(p))


def _read_folder(p: Path, opts: ReadOptions) -> Interactions:
    """A folder of files read as one log; a split folder (train/valid/test files) also keeps its
    parts (:mod:`warmrec.data.splitdir`). Overlapping files are refused."""
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
    if part_files is not None:  # train, valid, test: the order --no-timestamp numbers the rows in
        files = [part_files[k] for k in splitdir.PARTS if k in part_files]
    tables = [_READERS[SUFFIX_FORMATS[f.suffix.lower()]](f, opts).interactions for f in files]
    df = concat_logs(tables, opts, p, files)
    # the parts again, now with the merged table's types (and file-order timestamps)
    pieces = _pieces(df, tables, files)
    splitdir.check_no_overlap(pieces, p, split=part_files is not None)
    if part_files is None:
        return Interactions(df, source=str(p))
    parts, info = _given(pieces, part_files, p)
    if manifest is not None:
        info["manifest"] = {"method": manifest.get("method"), "options": manifest.get("options")}
    return Interactions(df, source=str(p), parts=parts, split_info=info)


def _pieces(
    df: pl.DataFrame, tables: Sequence[pl.DataFrame], files: Sequence[Path]
) -> dict[str, pl.DataFrame]:
    """Each file's rows of ``df``, the files' ``tables`` concatenated in order (consecutive row
    ranges), by file name."""
    bounds = np.cumsum([0] + [t.height for t in tables])
    return {f.name: df.slice(int(a), int(b - a)) for f, a, b in zip(files, bounds, bounds[1:])}


def _given(
    pieces: dict[str, pl.DataFrame], part_files: dict[str, Path], folder: Path
) -> tuple[dict[str, pl.DataFrame], dict[str, Any]]:
    """A split folder's parts (train, valid, test: those it has) and its ``split_info``."""
    parts = {k: pieces[part_files[k].name] for k in splitdir.PARTS if k in part_files}
    info: dict[str, Any] = {
        "method": "given",
        "folder": str(folder),
        "files": {k: f.name for k, f in part_files.items()},
        "rows": {k: v.height for k, v in parts.items()},
    }
    return parts, info


def concat_logs(
    parts: Sequence[pl.DataFrame],
    opts: ReadOptions,
    path: Path,
    files: Sequence[Path] | None = None,
) -> pl.DataFrame:
    """Concatenate canonical tables (ids of mixed types become strings) and re-validate.

    Rows keep their order (the parts are consecutive row ranges of the result). Where one
    file's ids read as integers and another's do not, the text ids that are integers (``15``,
    ``15.0``) are written as the integer is: each file's ``15.0`` had become the integer 15
    alone, and would otherwise not meet another file's ``"15.0"``. Every part must have the
    sequence key column another has (``files``, the parts' files, name both in the error)."""
    _same_id_columns(parts, path, files)
    parts = [_ids_as_integer_text(p, parts) for p in parts]
    df = pl.concat(parts, how="diagonal_relaxed")
    if opts.no_timestamp:
        df = df.with_columns(file_order(df.height))
    return validate_interactions(df, source=str(path))


def _same_id_columns(
    parts: Sequence[pl.DataFrame], path: Path, files: Sequence[Path] | None
) -> None:
    """Refuse parts that disagree on the sequence key column: the rows of a file without the
    ``session_id`` another file has (or, in user logs, without ``user_id``) would be events
    without a key, refused as nulls at a row of the merged table that names no file. (A
    ``user_id`` only some files of a session log have is a user unknown for the others.)"""
    names = (
        [f.name for f in files]
        if files is not None
        else [f"part {i + 1}" for i in range(len(parts))]
    )
    col = SESSION if any(SESSION in p.columns for p in parts) else USER
    has = [col in p.columns for p in parts]
    if not all(has):
        with_it = names[has.index(True)] if any(has) else None
        raise DataError(
            f"the files disagree on the {col} column",
            path=path,
            field=col,
            expected=f"a {col} column in every file",
            found=f"{names[has.index(False)]} has none"
            + (f", {with_it} has one" if with_it else ""),
        )


def _ids_as_integer_text(df: pl.DataFrame, parts: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """``df`` with the text ids of a column that other parts read as integers written as
    integers (``"15.0"`` -> ``"15"``; :func:`concat_logs`)."""
    fix = []
    for col in (SESSION, USER, ITEM):
        types = {p[col].dtype for p in parts if col in p.columns}
        if col in df.columns and df[col].dtype == pl.Utf8 and any(t.is_integer() for t in types):
            fix.append(integer_text(df[col]))
    return df.with_columns(fix) if fix else df


# --------------------------------------------------------------------------- RecBole


def _read_recbole(p: Path, opts: ReadOptions) -> Interactions:
    """A RecBole ``.inter`` file, or a folder of them read as one log (with ``NAME.item`` /
    ``NAME.user``); RecBole's benchmark files ``NAME.train/valid/test.inter`` are a split folder
    (:func:`~warmrec.data.splitdir.recbole_part_of`): their parts are kept, as RecBole's
    ``benchmark_filename`` keeps them, and no other ``.inter`` file may sit beside them."""
    folder = p if p.is_dir() else p.parent
    inters = sorted(folder.glob("*.inter")) if p.is_dir() else [p]
    if not inters:
        raise DataError(
            "no RecBole .inter file in the folder",
            path=p,
            expected="a file NAME.inter",
            found=_listing(folder),
        )
    part_files = splitdir.split_parts(inters, p, splitdir.recbole_part_of) if p.is_dir() else None
    if part_files is not None:  # RecBole's benchmark files: a split folder, train/valid/test
        inters = [part_files[k] for k in splitdir.PARTS if k in part_files]
    inters.sort(key=_inter_order)
    tables = [_read_inter(f, opts) for f in inters]
    df = tables[0] if len(tables) == 1 else concat_logs(tables, opts, folder, inters)
    stem = inters[0].name.split(".")[0]
    items = _read_features(_feature_file(folder, stem, ".item"), ITEM, opts)
    users = _read_features(_feature_file(folder, stem, ".user"), USER, opts)
    df, items = align_keys(df, items, ITEM)
    df, users = align_keys(df, users, USER)
    if part_files is None:
        return Interactions(df, item_features=items, user_features=users, source=str(p))
    pieces = _pieces(df, tables, inters)
    splitdir.check_no_overlap(pieces, p, split=True)
    parts, info = _given(pieces, part_files, p)
    return Interactions(
        df,
        item_features=items,
        user_features=users,
        source=str(p),
        parts=parts,
        split_info=info,
    )


def _inter_order(f: Path) -> tuple[int, str]:
    """Where a RecBole ``.inter`` file goes when a folder's files are read as one table: RecBole's
    benchmark files (``NAME.train.inter``, ``NAME.valid.inter``, ``NAME.test.inter``, a split
    folder) in the order train, valid, test (by name, test came first: with ``--no-timestamp``
    the test rows were the oldest events), any other file by name."""
    part = splitdir.recbole_part_of(f)
    return (-1 if part is None else splitdir.PARTS.index(part), f.name)


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
    col = wanted if wanted in raw.columns else find_alias(raw.columns, key, set())
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


_READERS: dict[str, Callable[[Path, ReadOptions], Interactions]] = {
    "csv": _read_delimited,
    "tsv": lambda p, o: _read_delimited(p, o, default_sep="\t"),
    "parquet": _read_parquet,
    "recbole": _read_recbole,
    "folder": _read_folder,
}


def read_file(path: Path, fmt: str, opts: ReadOptions) -> Interactions:
    """Read ``path`` as format ``fmt`` (one of :data:`FORMATS`)."""
    return _READERS[fmt](path, opts)
