"""Canonical interaction table and its validation.

Everything downstream of the readers sees one Polars table with these columns:

- ``session_id`` or ``user_id`` (the sequence key; raw ids, integer or string),
- ``item_id`` (raw ids, integer or string),
- ``timestamp`` (Float64, Unix seconds; for logs without time, the event order: such logs are
  *ordinal*, :data:`ORDINAL`, and anything that reads the timestamps as seconds (time spans,
  inactivity gaps, splits by days) refuses them, see :func:`require_seconds`),
- optional ``rating`` (Float64), and any feature columns.

:func:`validate_interactions` casts to these types and raises :class:`~warmrec.errors.DataError`
naming the source, the field, what was found and what was expected.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from warmrec.errors import DataError

SESSION = "session_id"
USER = "user_id"
ITEM = "item_id"
TIME = "timestamp"
RATING = "rating"

ID_TYPES = (pl.Int64, pl.Utf8)

SECONDS = "s"
ORDINAL = "ordinal"
"""``time_unit`` of a log whose timestamps are event positions (0, 1, 2, ...), not seconds."""


def require_seconds(time_unit: str, what: str, *, source: str | None = None) -> None:
    """Raise :class:`DataError` when ``what`` needs seconds and the log's timestamps are positions."""
    if time_unit == ORDINAL:
        raise DataError(
            f"{what} needs timestamps in seconds",
            path=source,
            field=TIME,
            expected="a log with times (if the ordering column holds Unix seconds, read it "
            "as the time: --col timestamp=COLUMN, with --time-unit s where the unit was "
            "given as ordinal)",
            found="event positions (an ordinal log: --time-unit ordinal, --order, "
            "--no-timestamp or a format without times such as sasrec)",
        )


def whole_seconds(df: pl.DataFrame) -> pl.DataFrame:
    """``df`` with its float timestamps as integers where every one is a whole number (logs
    are read with float seconds; a log written back then keeps ``1600000000``, not
    ``1600000000.0``)."""
    if TIME not in df.columns or not df.schema[TIME].is_float() or df.height == 0:
        return df
    t = df[TIME]
    if t.is_null().any() or not bool(((t % 1) == 0).all()) or t.abs().max() >= 2**53:
        return df
    return df.with_columns(t.cast(pl.Int64))


def sequence_key(df: pl.DataFrame) -> str:
    """The column that groups events into sequences: ``session_id`` if present, else ``user_id``."""
    if SESSION in df.columns:
        return SESSION
    if USER in df.columns:
        return USER
    raise DataError(
        "no sequence key column",
        field=SESSION,
        expected="'session_id' or 'user_id'",
        found=", ".join(df.columns) or "no columns",
    )


COMPACT_SLACK = 8  # integer ids count as compact when max - min < 8 x the number of values


def compact_offsets(ids: pl.Series) -> np.ndarray | None:
    """``ids - min(ids)`` as int64 NumPy when ``ids`` are non-null integers in a compact range
    (span below ``COMPACT_SLACK`` x their count), so that ``bincount`` or a lookup table can
    replace a hash; None otherwise."""
    if not ids.dtype.is_integer() or ids.len() == 0 or ids.null_count():
        return None
    lo, hi = int(ids.min()), int(ids.max())
    if hi - lo >= COMPACT_SLACK * ids.len():
        return None
    return ids.cast(pl.Int64).to_numpy() - lo


def is_sorted_by_key_time(df: pl.DataFrame, key: str) -> bool:
    """Whether rows already come grouped by ``key`` in ascending order, time-ordered within.

    Such a table needs no (stable) sort by key and time: real click logs usually arrive so.
    """
    if df.height < 2:
        return True
    if not df[key].is_sorted():
        return False
    k = df[key].to_numpy()
    t = df[TIME].to_numpy()
    return bool(np.all((k[1:] != k[:-1]) | (t[1:] >= t[:-1])))


def _cast_id(df: pl.DataFrame, col: str, source: str | None) -> pl.Series:
    s = df[col]
    if s.dtype in (pl.Utf8, pl.String, pl.Categorical):
        return s.cast(pl.Utf8)
    if s.dtype.is_integer():
        if s.dtype == pl.UInt64 and (s.max() or 0) > np.iinfo(np.int64).max:
            return s.cast(pl.Utf8)  # ids past Int64: text, as a reader keeps 20-digit ids
        return s.cast(pl.Int64)
    if s.dtype.is_float():
        # NaN == NaN for Polars: a NaN id passed the integer check and failed the cast
        ok = s.is_not_null().all() and not s.is_nan().any() and not s.is_infinite().any()
        if ok and (s == s.round(0)).all() and s.abs().max() < 2.0**63:
            return s.cast(pl.Int64)
        bad = s.is_nan() | s.is_infinite() | (s != s.round(0)) | (s.abs() >= 2.0**63)
        bad = bad.fill_null(True)
        if bad.any():
            row = int(bad.arg_max())
            raise DataError(
                "not an integer id",
                path=source,
                field=col,
                expected="integer ids below 2^63 (a float column may hold only whole numbers)",
                found=f"{s[row]!r} in a {s.dtype} column (row {row + 1:,})",
            )
    raise DataError(
        "unsupported id type",
        path=source,
        field=col,
        expected="integer or string ids",
        found=str(s.dtype),
    )


def validate_interactions(df: pl.DataFrame, *, source: str | None = None) -> pl.DataFrame:
    """Check and cast a table to the canonical schema; return the cast table.

    Raises :class:`DataError` when a required column is missing, a value is null (or a time
    NaN), or a column has a type that cannot be cast.
    """
    if df.width == 0 or df.height == 0:
        raise DataError(
            "no interactions", path=source, expected="at least one row", found="an empty table"
        )
    key = sequence_key(df)
    for col in (ITEM, TIME):
        if col not in df.columns:
            raise DataError(
                "missing column",
                path=source,
                field=col,
                expected=f"a column '{col}'",
                found=", ".join(df.columns),
            )
    out = {}
    for col in (SESSION, USER, ITEM):
        if col in df.columns:
            out[col] = _cast_id(df, col, source)
    ts = df[TIME]
    if ts.dtype.is_numeric():
        out[TIME] = ts.cast(pl.Float64)
    elif ts.dtype in (pl.Datetime, pl.Date):
        out[TIME] = ts.cast(pl.Datetime("us")).dt.epoch("us").cast(pl.Float64) / 1e6
    else:
        raise DataError(
            "timestamps must be numbers or datetimes",
            path=source,
            field=TIME,
            expected="Unix seconds or a datetime",
            found=str(ts.dtype),
        )
    if RATING in df.columns:
        if not df[RATING].dtype.is_numeric():
            raise DataError(
                "ratings must be numeric",
                path=source,
                field=RATING,
                expected="a number",
                found=str(df[RATING].dtype),
            )
        out[RATING] = df[RATING].cast(pl.Float64)
    for col in (key, ITEM, TIME):
        nulls = out[col].null_count()
        if nulls:
            row = int(out[col].is_null().arg_max())
            raise DataError(
                f"{nulls} missing value(s), first at data row {row + 1}",
                path=source,
                field=col,
                expected="a value",
                found="null",
            )
    # NaN is not null and sorts after every time (the newest event); inf is no time either
    for bad, what, expected, shown in (
        (out[TIME].is_nan(), "missing value (NaN)", "a time", "NaN"),
        (out[TIME].is_infinite(), "not a finite number", "a finite time", None),
    ):
        if bad.any():
            row = int(bad.arg_max())
            raise DataError(
                f"{what} at data row {row + 1}",
                path=source,
                field=TIME,
                expected=expected,
                found=shown or str(out[TIME][row]),
            )
    # one contiguous chunk per column: later NumPy views are zero-copy and column appends
    # need no realignment (a many-file Parquet read can arrive in hundreds of chunks)
    return df.with_columns(**{k: v for k, v in out.items()}).rechunk()
