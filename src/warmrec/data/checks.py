"""Plausibility checks on the values a reader produced, each naming the line it refuses.

Run by :func:`warmrec.data.columns.finish` on every log read from a file, and by
:func:`~warmrec.data.columns.canonical_table` on a table given in Python:

- **Ids** (``session_id``, ``user_id``, ``item_id`` read as text) must hold no control character
  (NUL, tab, newline, ... U+0000-U+001F, U+007F) and at most :data:`MAX_ID_LENGTH` (256)
  characters (``max_id_length=`` of :func:`~warmrec.data.readers.load_interactions` changes the
  limit). A longer "id" is almost always a broken file: an unbalanced quote that swallowed the
  lines after it, or a text column mapped as an id.
- **Sessions** must belong to one user: when a log has both ``session_id`` and ``user_id``, a
  session id found under two users is refused (the session ids repeat per user, e.g. basket
  numbers, and would merge baskets of different users).
- **Timestamps** in seconds (not positions, see :data:`~warmrec.data.schema.ORDINAL`) must not be
  negative, and none may lie far outside the bulk of the log: with ``lo`` and ``hi`` the
  timestamps of rank ``k`` from either end (``k = max(1, n // 1000)``), a value more than
  ``max(10 x (hi - lo), 365 days)`` before ``lo`` or after ``hi`` is an outlier (one bogus
  ``0`` in a 2020 log made an 18,520-day "time span"). Outliers are refused by default
  (``time_outliers="error"``); ``time_outliers="warn"`` keeps them with a warning naming the
  line. Logs of fewer than :data:`OUTLIER_MIN_EVENTS` (50) events, or spanning at most 365 days,
  are never flagged (too few values to tell a bulk from an outlier).
"""

from __future__ import annotations

import warnings
from datetime import datetime, timezone

import numpy as np
import polars as pl

from warmrec.data.schema import ITEM, SESSION, TIME, USER
from warmrec.data.text import Source, clip
from warmrec.errors import DataWarning

MAX_ID_LENGTH = 256
"""Default longest id (characters) a reader accepts; ``max_id_length=`` changes it."""
TIME_OUTLIERS = ("error", "warn")
OUTLIER_MIN_GAP = 365 * 86400.0
OUTLIER_FACTOR = 10.0
OUTLIER_MIN_EVENTS = 50
_CONTROL = r"[\x00-\x1f\x7f]"


def check_ids(df: pl.DataFrame, src: Source, max_length: int = MAX_ID_LENGTH) -> None:
    """Refuse text ids that are empty or spaces only (a quoted empty field), hold control
    characters or are longer than ``max_length`` characters."""
    for col in (SESSION, USER, ITEM):
        if col not in df.columns or df[col].dtype != pl.Utf8:
            continue
        s = df[col]
        if (s.str.len_bytes().max() or 0) > max_length:  # cheap bound: bytes >= characters
            too_long = (s.str.len_chars() > max_length).fill_null(False)
        else:
            too_long = pl.Series([False])
        if too_long.any():
            row = int(too_long.arg_max())
            value = s[row]
            hint = (
                '; it spans several lines: is a quote (") unbalanced?'
                if "\n" in value
                else "; is a text column mapped as an id?"
            )
            raise src.row_error(
                f"id longer than {max_length} characters",
                row,
                col,
                expected=f"an id of at most {max_length} characters (max_id_length=...)",
                found=f"{len(value):,} characters {clip(value, 40)!r}{hint}",
            )
        blank = (s.str.strip_chars() == "").fill_null(False)
        if blank.any():  # a quoted empty field ("") is text, not null: one id for every such row
            row = int(blank.arg_max())
            raise src.row_error(
                "missing value",
                row,
                col,
                expected="an id",
                found=f"{'an empty text' if s[row] == '' else 'only spaces'} ({s[row]!r}; "
                f"{int(blank.sum()):,} such {col} values in all)",
            )
        bad = s.str.contains(_CONTROL)
        if bad.any():
            row = int(bad.fill_null(False).arg_max())
            raise src.row_error(
                "control character in an id",
                row,
                col,
                expected="an id without control characters (NUL, tab, newline, ...)",
                found=repr(clip(s[row], 60)),
            )
        _warn_padded_ids(s, src, col)
        _warn_missing_as_text(s, src, col)


MISSING_AS_TEXT = ("nan", "NaN", "NAN", "None", "none", "NULL", "null", "NA", "N/A", "<NA>")
"""How a missing value is written as text by pandas (``astype(str)``), SQL exports and R."""


def _warn_missing_as_text(s: pl.Series, src: Source, col: str) -> None:
    """Warn where ids read ``nan``, ``None``, ``NULL``, ...: a missing value written as text
    (pandas' ``astype(str)`` of a NaN) is one id for every event that lost its own."""
    missing = s.is_in(list(MISSING_AS_TEXT)).fill_null(False)
    if not missing.any():
        return
    row = int(missing.arg_max())
    where = src.where(row)
    n = int(missing.sum())
    warnings.warn(
        f"{where}: field '{col}': {n:,} {'id reads' if n == 1 else 'ids read'} {s[row]!r}, "
        "which is how a missing value is written as text (pandas' astype(str) of a NaN); "
        f"kept as one {col} for all of them: drop or fill those rows if they are missing",
        DataWarning,
        stacklevel=2,
    )


def _warn_padded_ids(s: pl.Series, src: Source, col: str) -> None:
    """Warn where spaces around some ids make them other ids than the same text without
    (``"i15 "`` and ``"i15"``: one item counted as two). Ids are kept as written."""
    padded = s.str.contains(r"^\s|\s$").fill_null(False)
    if not padded.any():
        return
    stripped = s.str.strip_chars()
    n_twice = s.n_unique() - stripped.n_unique()
    if n_twice == 0:
        return  # every padded id is padded alike: no two ids merge when read as text
    row = int(padded.arg_max())
    where = src.where(row)
    n_padded = int(padded.sum())
    warnings.warn(
        f"{where}: field '{col}': {n_padded:,} {'id has' if n_padded == 1 else 'ids have'} "
        f"spaces around {'it' if n_padded == 1 else 'them'} (e.g. {s[row]!r}) and differ"
        f"{'s' if n_padded == 1 else ''} from the same id without ({stripped[row]!r}): "
        f"{n_twice:,} {col} value{'' if n_twice == 1 else 's'} count{'s' if n_twice == 1 else ''} "
        "twice; strip the spaces in the file if they are one",
        DataWarning,
        stacklevel=2,
    )


def check_sessions(df: pl.DataFrame, src: Source) -> None:
    """Refuse a session id that appears under more than one user."""
    if SESSION not in df.columns or USER not in df.columns:
        return
    pairs = df.select(SESSION, USER).with_row_index("_row").filter(pl.col(USER).is_not_null())
    n_pairs = pairs.select(pl.struct(SESSION, USER).n_unique()).item()
    if n_pairs == pairs[SESSION].n_unique():
        return
    first = pairs.group_by(SESSION, maintain_order=True).agg(
        pl.col(USER).first().alias("_u0"), pl.col("_row").first().alias("_r0")
    )
    clash = (
        pairs.join(first, on=SESSION, how="inner")
        .filter(pl.col(USER) != pl.col("_u0"))
        .sort("_row")
        .row(0, named=True)
    )
    line0 = "" if src.first_line is None else f" (line {src.line(clash['_r0'])})"
    raise src.row_error(
        "a session id is shared by several users",
        clash["_row"],
        SESSION,
        expected="session ids unique across users (one user per session); if they repeat "
        "per user (basket or visit numbers), they are not session ids on their own: map a "
        "globally unique column with --col session_id=..., or leave session_id unmapped and "
        "sessionize the user log",
        found=f"session {clash[SESSION]!r} under user {clash[USER]!r} here and user "
        f"{clash['_u0']!r}{line0}",
    )


def utc_date(seconds: float) -> str:
    """Unix seconds as ``2019-07-01 00:00:00 UTC`` (for messages)."""
    try:
        return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return "out of the calendar's range"


LAST_CALENDAR_SECOND = 253_402_300_799.0
"""9999-12-31 23:59:59 UTC in Unix seconds: the last time a date can be written for."""


def check_times(df: pl.DataFrame, src: Source, outliers: str = "error") -> None:
    """Refuse negative timestamps (seconds), times past the calendar (year 9999) and far
    outliers (see the module docstring)."""
    if TIME not in df.columns or df.height == 0:
        return
    t = df[TIME].cast(pl.Float64).to_numpy()
    neg = t < 0
    if neg.any():
        row = int(neg.argmax())
        raise src.row_error(
            "negative timestamp",
            row,
            TIME,
            expected="Unix time >= 0 (1970 or later); for positions, not times, "
            "--time-unit ordinal",
            found=f"{t[row]:g} s ({utc_date(float(t[row]))})",
        )
    _check_outliers(t, src, outliers)  # first: it names the bulk of the log a value is far from
    late = t > LAST_CALENDAR_SECOND
    if late.any():
        row = int(late.argmax())
        raise src.row_error(
            "timestamp out of the calendar",
            row,
            TIME,
            expected="Unix time up to the year 9999 (another unit? --time-unit s/ms/us/ns)",
            found=f"{t[row]:g} s",
        )


def _check_outliers(t: np.ndarray, src: Source, outliers: str) -> None:
    n = len(t)
    if n < OUTLIER_MIN_EVENTS or float(t.max() - t.min()) <= OUTLIER_MIN_GAP:
        return
    k = max(1, n // 1000)
    part = np.partition(t, [k, n - 1 - k])
    lo, hi = float(part[k]), float(part[n - 1 - k])
    margin = max(OUTLIER_FACTOR * (hi - lo), OUTLIER_MIN_GAP)
    far = (t < lo - margin) | (t > hi + margin)
    if not far.any():
        return
    row = int(far.argmax())
    v = float(t[row])
    days = (lo - v if v < lo else v - hi) / 86400.0
    side = "before" if v < lo else "after"
    found = (
        f"{v:g} s ({utc_date(v)}), {days:,.0f} days {side} the bulk of the log "
        f"({utc_date(lo)} .. {utc_date(hi)}); {int(far.sum())} such value(s)"
    )
    expected = "timestamps near the others (a bogus value, or another unit: --time-unit s/ms/us/ns)"
    if outliers == "warn":
        where = src.where(row)
        warnings.warn(
            f"{where}: field '{TIME}': far outlier timestamp kept (found {found})",
            DataWarning,
            stacklevel=2,
        )
        return
    raise src.row_error("far outlier timestamp", row, TIME, expected=expected, found=found)
