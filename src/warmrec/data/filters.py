"""Interaction filters: minimum item support, minimum sequence length, k-core, time windows.

Every filter takes a canonical table and returns a new one (row order preserved). Filters that
count per sequence work on the *sequence key*: ``session_id`` when the table has one, else
``user_id`` (:func:`~warmrec.data.schema.sequence_key`); pass ``key=`` to choose another column,
e.g. ``key="user_id"`` for a per-user k-core of a session log. Counts are events (rows), so an
item clicked twice in one session counts twice.

Each filter is one or two window expressions (``.over``), so a 33M-event log filters in seconds.
"""

from __future__ import annotations

import datetime as dt
import warnings

import polars as pl

from warmrec.data.schema import ITEM, TIME, sequence_key
from warmrec.errors import ConfigError, DataError

TimeLike = float | int | str | dt.datetime | dt.date


def to_seconds(value: TimeLike, field: str = TIME) -> float:
    """A point in time as Unix seconds: a number is taken as seconds; a ``datetime``/``date`` or
    an ISO-8601 string (``"2014-09-01"``, ``"2014-09-01T12:00:00"``) without a zone is UTC."""
    if isinstance(value, bool):
        raise ConfigError(f"{field}: expected a time, found {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError as e:
            raise ConfigError(f"{field}: expected an ISO date or datetime, found {value!r}") from e
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.timestamp()
    raise ConfigError(
        f"{field}: expected seconds, a datetime or an ISO string, found {type(value).__name__}"
    )


def _filter(df: pl.DataFrame, cond: pl.Expr) -> pl.DataFrame:
    """``df.filter(cond)`` through the lazy engine (window expressions run ~2x faster there)."""
    return df.lazy().filter(cond).collect()


def _key(df: pl.DataFrame, key: str | None) -> str:
    key = key or sequence_key(df)
    if key not in df.columns:
        raise DataError(
            "missing sequence key column",
            field=key,
            expected=f"a column '{key}'",
            found=", ".join(df.columns),
        )
    return key


def _check_n(n: int, name: str) -> None:
    if n < 0:
        raise ConfigError(f"{name}: expected a count >= 0, found {n}")


def min_item_support(df: pl.DataFrame, n: int) -> pl.DataFrame:
    """Keep events of items that occur at least ``n`` times in ``df``."""
    _check_n(n, "min_item_support")
    if n <= 1:
        return df
    return _filter(df, pl.len().over(ITEM) >= n)


def min_sequence_length(df: pl.DataFrame, n: int, key: str | None = None) -> pl.DataFrame:
    """Keep sequences (sessions, or users) with at least ``n`` events."""
    _check_n(n, "min_sequence_length")
    key = _key(df, key)
    if n <= 1:
        return df
    return _filter(df, pl.len().over(key) >= n)


def k_core(
    df: pl.DataFrame, k_items: int, k_sequences: int, key: str | None = None, max_iter: int = 100
) -> pl.DataFrame:
    """Alternately drop items with fewer than ``k_items`` events and sequences with fewer than
    ``k_sequences`` events until neither drops anything (the k-core is unique: the order of the
    two steps does not change the result). Warns if ``max_iter`` rounds were not enough."""
    _check_n(k_items, "k_items")
    _check_n(k_sequences, "k_sequences")
    key = _key(df, key)
    cond = (pl.len().over(ITEM) >= k_items) & (pl.len().over(key) >= k_sequences)
    out = df
    for _ in range(max_iter):
        nxt = _filter(out, cond)
        if nxt.height == out.height:
            return nxt
        out = nxt
    if out.height and _filter(out, cond).height != out.height:
        warnings.warn(f"k_core did not converge in {max_iter} rounds", RuntimeWarning, stacklevel=2)
    return out


def time_window(
    df: pl.DataFrame,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    whole_sequences: bool = False,
    key: str | None = None,
) -> pl.DataFrame:
    """Events with ``start <= timestamp < end`` (either bound may be None).

    With ``whole_sequences=True`` the window selects sequences instead: a sequence is kept, with
    all its events, when it lies entirely inside the window (no sequence is cut in two).
    """
    lo = to_seconds(start, "start") if start is not None else None
    hi = to_seconds(end, "end") if end is not None else None
    if lo is not None and hi is not None and hi < lo:
        raise ConfigError(f"time_window: end {end!r} is before start {start!r}")
    if whole_sequences:
        key = _key(df, key)
        t0 = pl.col(TIME).min().over(key)
        t1 = pl.col(TIME).max().over(key)
    else:
        t0 = t1 = pl.col(TIME)
    cond = pl.lit(True)
    if lo is not None:
        cond = cond & (t0 >= lo)
    if hi is not None:
        cond = cond & (t1 < hi)
    return _filter(df, cond)
