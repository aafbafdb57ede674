"""Item and user feature tables given beside any log (``--items FILE``, ``--users FILE``).

A RecBole folder and the named datasets (MARS, MovieLens) bring their feature tables; a log of
one's own (CSV, TSV, Parquet) gets them from a second file with one row per item (or user): the
key column (``item_id`` or a common alias such as ``video_id``, ``course_id``; ``user_id``,
``learner_id``, ... for users) and any other columns -- titles, descriptions and tags for the
text-aware models and TF-IDF (``text_fields``), categories and numbers for BST's side features.
Columns whose every value is a number are read as numbers; the rest stay text.

Checked when read, each failure a :class:`~warmrec.errors.DataError` naming the file and the line:
the file exists and has data rows, the key column is there (one of its aliases, not two), no
key is empty and none repeats, and at least one key is an id of the log (a table of another
catalogue, or keyed by the wrong column, matches nothing). The key takes the log's id type
(ids of the table that cannot be ids of the log are dropped: they match no event).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from warmrec.data.columns import find_alias, infer_extra, normalise_ids
from warmrec.data.schema import ITEM, USER
from warmrec.data.text import (
    Source,
    read_text,
    require_rows,
    sniff_header,
)
from warmrec.data.vocab import as_int_ids
from warmrec.errors import DataError

KEYS = (ITEM, USER)


def check_keys(raw: pl.DataFrame, key: str, src: Source) -> None:
    """Refuse an empty key cell or a key that repeats, naming the line."""
    if raw[key].null_count():
        row = int(raw[key].is_null().arg_max())
        raise src.row_error("missing value", row, key, expected="an id", found="an empty cell")
    dup = raw[key].is_duplicated()
    if dup.any():
        row = int(dup.arg_max())
        # the second occurrence is the one to name
        first = raw[key][row]
        later = int((raw[key] == first).arg_true()[1])
        raise src.row_error(
            "duplicate id", later, key, expected="one row per id", found=repr(raw[key][later])
        )


def read_feature_table(path: str | Path, key: str, *, sep: str | None = None) -> pl.DataFrame:
    """One row per ``key`` (``"item_id"`` or ``"user_id"``) from a CSV, TSV or Parquet file,
    the key column first and named canonically (see the module docstring).

    Raises:
        DataError: the file is missing or empty, has no key column, or an empty or repeated key.
    """
    if key not in KEYS:
        raise ValueError(f"key: expected one of {KEYS}, found {key!r}")
    p = Path(path)
    what = "item" if key == ITEM else "user"
    if not p.is_file():
        raise DataError(
            f"no {what} feature file",
            path=p,
            expected=f"a CSV, TSV or Parquet file with one row per {what}",
            found="a folder" if p.is_dir() else "nothing at that path",
        )
    if p.suffix.lower() in (".parquet", ".pq"):
        try:
            raw = pl.read_parquet(p)
        except Exception as e:  # polars raises several types for a damaged file
            raise DataError(
                "not a readable Parquet file", path=p, expected="Parquet", found=str(e)[:200]
            ) from None
        header = raw.columns
        src = Source(p, first_line=None)
    else:
        sep, header = sniff_header(p, sep)
        raw = read_text(p, sep=sep)
        src = Source(p, first_line=2, sep=sep)
    column = find_alias(header, key, set(), path=p)
    if column is None:
        raise DataError(
            "missing key column",
            path=p,
            field=key,
            expected=f"a column '{key}' (or a common name for it)",
            found=", ".join(header) or "no columns",
        )
    require_rows(raw, src)
    check_keys(raw, column, src)
    df = raw.rename({column: key}) if column != key else raw
    df = df.with_columns(normalise_ids(df[key]))
    extra = [infer_extra(df[c]) for c in df.columns if c != key]
    return pl.DataFrame([df[key], *extra])


def key_as(
    table: pl.DataFrame, key: str, dtype: pl.DataType, path: str | Path, *, drop: bool
) -> pl.DataFrame:
    """``table`` with its ``key`` column cast to ``dtype`` (the id type of a log or of a
    model's vocabulary). Ids that cannot take that type (a text id where ids are integers)
    are dropped with ``drop`` (they match nothing), else refused.

    Raises:
        DataError: without ``drop``, an id that cannot take ``dtype`` (the first is named).
    """
    ids = table[key]
    if ids.dtype == dtype:
        return table
    # to integers as every outside id is read: "007" is no integer id (not item 7)
    cast = as_int_ids(ids) if dtype == pl.Int64 else ids.cast(dtype, strict=False)
    if cast.null_count() > ids.null_count():
        if not drop:
            raise DataError(
                f"{key.split('_')[0]} id of another type",
                path=path,
                field=key,
                expected=f"ids of type {dtype}",
                found=repr(ids.filter(cast.is_null() & ids.is_not_null())[0]),
            )
        return table.with_columns(cast).filter(pl.col(key).is_not_null())
    return table.with_columns(cast)


def attach(log: pl.DataFrame, table: pl.DataFrame, key: str, path: str | Path) -> pl.DataFrame:
    """``table`` with its key in the log's id type, keeping the ids that can be ids of the log.

    Raises:
        DataError: no id of the table is an id of the log.
    """
    ids = log[key]
    t = key_as(table, key, ids.dtype, path, drop=True)
    if not t[key].is_in(ids.unique().implode()).any():
        raise DataError(
            f"no {key} of the log is in this file",
            path=path,
            field=key,
            expected=f"{key}s of the log, e.g. {ids[0]!r}",
            found=f"e.g. {table[key][0]!r}",
        )
    return t
