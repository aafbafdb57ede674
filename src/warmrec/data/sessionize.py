"""Inactivity-gap analysis, sessionisation of user logs and collapsing of repeated items.

- :func:`gap_analysis` measures the gaps between consecutive events of each user (or any key) and
  suggests a session threshold from the shape of the log-gap histogram (:class:`GapReport`).
- :func:`sessionize` cuts each user's time-ordered events into sessions wherever the gap to the
  previous event exceeds a threshold, and numbers the sessions deterministically.
- :func:`collapse_repeats` drops an event when the same item was the previous event of the same
  sequence (e.g. page reloads).

Everything is a handful of Polars expressions over one sort: a 33M-event log takes seconds.
Ties (two events of a key with the same timestamp) keep the original row order (stable sorts).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import polars as pl

from warmrec.data.schema import ITEM, SESSION, TIME, USER, is_sorted_by_key_time, sequence_key
from warmrec.errors import DataError

DEFAULT_GAP = 1800.0
QUANTILES = (0.5, 0.75, 0.9, 0.95, 0.99)
BINS_PER_DECADE = 10
_SMOOTH = 5  # moving-average width of the log-gap histogram, in bins (half a decade)
_MIN_DEPTH = 0.5  # a valley must be at most this fraction of the lower of its two peaks
_MIN_SEPARATION = BINS_PER_DECADE  # the two peaks must be at least one decade apart
_VALLEY_RANGE = (60.0, 7 * 86400.0)  # a suggested threshold outside this range is not trusted


def _require(df: pl.DataFrame, cols: list[str]) -> None:
    for col in cols:
        if col not in df.columns:
            raise DataError(
                "missing column",
                field=col,
                expected=f"a column '{col}'",
                found=", ".join(df.columns) or "no columns",
            )


def _require_key_values(df: pl.DataFrame, key: str, what: str) -> None:
    """Refuse events without a ``key`` (a session log's anonymous users): they belong to no
    key's events, so there is nothing to measure or cut them with."""
    missing = df[key].null_count()
    if not missing:
        return
    row = int(df[key].is_null().arg_max())
    other = (
        "key='session_id' (--key session_id) takes the log's own sessions; "
        if SESSION in df.columns and key != SESSION
        else ""
    )
    raise DataError(
        f"events without a {key} cannot be {what}",
        field=key,
        expected=f"a {key} on every event ({other}or drop the events without one)",
        found=f"{missing:,} of {df.height:,} events without one, the first at data row {row + 1:,}",
    )


@dataclass
class GapReport:
    """Inactivity gaps between consecutive events of the same key, in seconds.

    Attributes:
        key: the column the gaps were measured within (``user_id`` by default).
        n_events, n_keys: size of the log.
        n_gaps: number of gaps (``n_events - n_keys``); ``n_zero`` of them are 0 (same timestamp).
        quantiles: gap quantiles (linear interpolation) over all gaps, keyed ``"50%"``, ...
        bin_edges: log-spaced histogram edges (``BINS_PER_DECADE`` bins per decade) covering
            every positive gap; ``counts[i]`` counts positive gaps in
            ``[bin_edges[i], bin_edges[i + 1])`` (the last bin includes its right edge).
        suggested_threshold: a session threshold in seconds (see :func:`gap_analysis`).
        rule: how the suggestion was found (``"valley"`` or ``"fallback"``) with the reason.
    """

    key: str
    n_events: int
    n_keys: int
    n_gaps: int
    n_zero: int
    quantiles: dict[str, float]
    bin_edges: list[float]
    counts: list[int]
    suggested_threshold: float
    rule: str

    def to_dict(self) -> dict:
        """A JSON-serialisable dict of the report."""
        return asdict(self)


def _smooth(counts: np.ndarray, width: int) -> np.ndarray:
    if len(counts) < width:
        return counts.astype(np.float64)
    kernel = np.ones(width) / width
    return np.convolve(counts.astype(np.float64), kernel, mode="same")


def suggest_threshold(log_edges: np.ndarray, counts: np.ndarray) -> tuple[float, str]:
    """The valley rule of :func:`gap_analysis` applied to a log10-gap histogram.

    Returns ``(threshold_seconds, rule)``.
    """
    s = _smooth(counts, _SMOOTH)
    n = len(s)
    if n < 3 or s.max() <= 0:
        return DEFAULT_GAP, "fallback: too few gaps for a histogram"
    left = np.r_[-np.inf, s[:-1]]
    right = np.r_[s[1:], -np.inf]
    peaks = np.nonzero((s >= left) & (s >= right) & (s > 0))[0]
    p1 = int(peaks[np.argmax(s[peaks])])
    far = peaks[np.abs(peaks - p1) >= _MIN_SEPARATION]
    if len(far) == 0:
        return DEFAULT_GAP, "fallback: one mode only (no second peak a decade away)"
    p2 = int(far[np.argmax(s[far])])
    lo, hi = sorted((p1, p2))
    seg = s[lo : hi + 1]
    low = seg.min()
    if low > _MIN_DEPTH * min(s[p1], s[p2]):
        return DEFAULT_GAP, "fallback: no valley deep enough between the two modes"
    # the middle of the longest run of equally low bins (a run of empty bins gives its centre)
    at = np.nonzero(seg <= low + 1e-9 * max(1.0, low))[0]
    runs = np.split(at, np.nonzero(np.diff(at) > 1)[0] + 1)
    run = max(runs, key=len)
    mid = lo + 0.5 * (run[0] + run[-1])
    width = log_edges[1] - log_edges[0]
    centre = log_edges[0] + (mid + 0.5) * width
    thr = float(np.round(10.0**centre))
    if not (_VALLEY_RANGE[0] <= thr <= _VALLEY_RANGE[1]):
        return DEFAULT_GAP, f"fallback: valley at {thr:.0f} s lies outside {_VALLEY_RANGE}"
    return thr, "valley: lowest point of the smoothed log-gap histogram between its two modes"


def stable_sort(df: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """Sort by ``by``; rows that tie keep their input order (a hidden row index breaks ties).

    Eager on purpose: with Polars 2 a lazy ``collect()`` runs the streaming engine, whose sort
    is ~4x slower than the in-memory one; window expressions are the other way round, so the
    filters and splits run those lazily.
    """
    if len(by) == 2 and by[1] == TIME and is_sorted_by_key_time(df, by[0]):
        return df  # already in that order (ties keep their order trivially)
    return df.with_row_index("_row").sort([*by, "_row"]).drop("_row")


def _sorted_with_gaps(df: pl.DataFrame, key: str) -> pl.DataFrame:
    """Events sorted by key then time (stable), with ``_gap`` (null at each key's first event)."""
    return stable_sort(df, [key, TIME]).with_columns(
        pl.when(pl.col(key) == pl.col(key).shift(1))
        .then(pl.col(TIME) - pl.col(TIME).shift(1))
        .otherwise(None)
        .alias("_gap")
    )


def gap_analysis(df: pl.DataFrame, key: str = USER) -> GapReport:
    """Measure inactivity gaps between consecutive events of each ``key`` and suggest a threshold.

    Suggestion rule: gaps of a session log are bimodal on a log scale -- seconds to minutes
    within a session, hours to days between sessions. The positive gaps are binned in log10 space
    (10 bins per decade) and smoothed with a 5-bin moving average. The highest peak and the
    highest other local peak at least one decade away bound a valley; the suggested threshold is
    the centre of the lowest bin between them (the middle of a run of equally low bins). If there
    is no second peak, the valley is not at most half as high as the lower peak, or it falls
    outside 1 minute .. 7 days, the suggestion falls back to 30 minutes (1800 s, the usual
    choice in the literature), and ``rule`` says why. Events without a ``key`` are refused (each
    had counted as a key of its own, with no gap).
    """
    _require(df, [key, TIME])
    _require_key_values(df, key, "measured as that key's gaps")  # each counted as a key
    if df.height == 0:
        raise DataError(
            "no events to analyse", field=key, expected="at least one row", found="an empty table"
        )
    g = _sorted_with_gaps(df.select(key, TIME), key)["_gap"].drop_nulls().to_numpy()
    n_keys = df.height - len(g)
    qs = {}
    if len(g):
        values = np.quantile(g, QUANTILES)  # linear interpolation, one selection pass
        qs = {f"{round(q * 100)}%": float(v) for q, v in zip(QUANTILES, values)}
    pos = g[g > 0]
    n_zero = int(len(g) - len(pos))
    if len(pos) == 0:
        return GapReport(
            key,
            df.height,
            n_keys,
            len(g),
            n_zero,
            qs,
            [],
            [],
            DEFAULT_GAP,
            "fallback: no positive gaps",
        )
    lg = np.log10(pos)
    lo = np.floor(lg.min())
    hi = max(np.ceil(lg.max()), lo + 1.0)
    n_bins = int(round((hi - lo) * BINS_PER_DECADE))
    log_edges = lo + np.arange(n_bins + 1) / BINS_PER_DECADE
    counts = np.bincount(
        np.clip(np.floor((lg - lo) * BINS_PER_DECADE).astype(np.int64), 0, n_bins - 1),
        minlength=n_bins,
    )
    thr, rule = suggest_threshold(log_edges, counts)
    return GapReport(
        key,
        df.height,
        n_keys,
        len(g),
        n_zero,
        qs,
        (10.0**log_edges).tolist(),
        counts.astype(int).tolist(),
        thr,
        rule,
    )


def sessionize(
    df: pl.DataFrame,
    gap_seconds: float = DEFAULT_GAP,
    key: str = USER,
    collapse_repeats: bool = False,
) -> pl.DataFrame:
    """Cut each ``key``'s events into sessions at gaps longer than ``gap_seconds``.

    A new session starts at a key's first event and at every event whose gap to the previous
    event of the same key is strictly greater than ``gap_seconds``. Adds (or replaces) an Int64
    ``session_id`` column and keeps ``key`` (``user_id``) and every other column. Session ids are
    ``0, 1, 2, ...`` in order of (key, start time): they depend only on the data, not on its row
    order. Rows come back sorted by key, then time (ties keep their original order). An event
    without a ``key`` (the user of an anonymous session) is refused: each had become a session
    of its own. With ``collapse_repeats=True`` consecutive repeats of an item within a session
    are dropped (:func:`collapse_repeats`).
    """
    _require(df, [key, TIME])
    if not gap_seconds >= 0 or gap_seconds == float("inf"):  # NaN compares false
        raise DataError(
            "negative session gap" if gap_seconds < 0 else "no session gap",
            field="gap_seconds",
            expected="a number of seconds >= 0",
            found=str(gap_seconds),
        )
    # an event without a key had become a session of its own, its real session lost
    _require_key_values(df, key, f"cut into that {key}'s sessions")
    if key == SESSION:  # sessions cut again at the gap: new session ids replace the old
        inner = df.rename({SESSION: "_outer_session"})
        out = sessionize(inner, gap_seconds, "_outer_session", collapse_repeats)
        return out.drop("_outer_session")
    base = df.drop(SESSION) if SESSION in df.columns else df
    ids = _presorted_session_ids(base, key, gap_seconds)
    if ids is not None:
        out = base.with_columns(pl.Series(SESSION, ids))
    else:
        out = _sorted_with_gaps(base, key)
        new = pl.col("_gap").is_null() | (pl.col("_gap") > gap_seconds)
        out = out.with_columns((new.cast(pl.Int64).cum_sum() - 1).alias(SESSION)).drop("_gap")
    cols = [c for c in base.columns if c != key]
    out = out.select(key, SESSION, *cols)
    if collapse_repeats:
        out = _collapse_sorted(out, SESSION)
    return out


def _presorted_session_ids(df: pl.DataFrame, key: str, gap_seconds: float) -> np.ndarray | None:
    """Session ids of a log already sorted by numeric ``key`` then time, else None.

    The sortedness check and the cut points share one NumPy pass over the two columns, so a
    log that arrives in order (as click logs usually do) is sessionised without any sort.
    """
    if df.height == 0 or not df[key].dtype.is_integer() or not df[TIME].dtype.is_numeric():
        return None
    if not df[key].is_sorted():
        return None
    k = df[key].to_numpy()
    t = df[TIME].to_numpy()
    new_key = k[1:] != k[:-1]
    dt = t[1:] - t[:-1]
    if not np.all(new_key | (dt >= 0)):
        return None
    new = np.empty(df.height, dtype=np.int64)
    new[0] = 1
    np.logical_or(new_key, dt > gap_seconds, out=new_key)
    new[1:] = new_key
    ids = np.cumsum(new, out=new)
    ids -= 1
    return ids


def _collapse_sorted(df: pl.DataFrame, key: str) -> pl.DataFrame:
    keep = (pl.col(key) != pl.col(key).shift(1)) | (pl.col(ITEM) != pl.col(ITEM).shift(1))
    return df.filter(keep.fill_null(True))


def collapse_repeats(df: pl.DataFrame, key: str | None = None) -> pl.DataFrame:
    """Drop events whose item equals the previous event's item in the same sequence.

    The sequence key defaults to :func:`~warmrec.data.schema.sequence_key` (``session_id`` if
    present, else ``user_id``). ``A A B A`` becomes ``A B A``: only *consecutive* repeats go.
    Rows come back sorted by key, then time (stable).
    """
    key = key or sequence_key(df)
    _require(df, [key, ITEM, TIME])
    return _collapse_sorted(stable_sort(df, [key, TIME]), key)
