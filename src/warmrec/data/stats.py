"""Descriptive statistics of an interaction log: sizes, lengths, sparsity, popularity, time span,
repeat consumption and events that share a time (baskets)."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from warmrec.data.filters import duplicate_events
from warmrec.data.schema import ITEM, ORDINAL, SECONDS, SESSION, TIME, USER, sequence_key


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of item popularity (0 = uniform, towards 1 = concentrated)."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n = len(x)
    if n == 0 or x.sum() == 0:
        return 0.0
    cum = np.cumsum(x)
    return float((n + 1 - 2 * (cum / cum[-1]).sum()) / n)


def describe(df: pl.DataFrame, time_unit: str = SECONDS) -> dict[str, Any]:
    """Summary of a canonical table (one pass of group-bys; fine for tens of millions of rows).

    On an ordinal log (``time_unit="ordinal"``: timestamps are event positions) ``time_min`` and
    ``time_max`` are positions and ``time_span_days`` is ``None``: there is no time to measure.
    """
    key = sequence_key(df)
    lengths = df.group_by(key).len()["len"].to_numpy()
    counts = df.group_by(ITEM).len()["len"].to_numpy()
    n_events, n_items, n_seq = df.height, len(counts), len(lengths)
    top = np.sort(counts)[::-1]
    k1 = max(1, int(np.ceil(0.01 * n_items)))
    k20 = max(1, int(np.ceil(0.2 * n_items)))
    tmin, tmax = df[TIME].min(), df[TIME].max()
    out: dict[str, Any] = {
        "sequence_key": key,
        "sequences": n_seq,
        "items": n_items,
        "events": n_events,
        # events without a user (a session log's anonymous sessions) are no user of their own
        "users": df[USER].drop_nulls().n_unique() if USER in df.columns else None,
        "sessions": df[SESSION].drop_nulls().n_unique() if SESSION in df.columns else None,
        "length_mean": float(lengths.mean()),
        "length_median": float(np.median(lengths)),
        "length_min": int(lengths.min()),
        "length_max": int(lengths.max()),
        "length_p90": float(np.quantile(lengths, 0.9)),
        "density": n_events / (n_seq * n_items),
        "sparsity": 1.0 - n_events / (n_seq * n_items),
        "item_events_top1pct_share": float(top[:k1].sum() / n_events),
        "item_events_top20pct_share": float(top[:k20].sum() / n_events),
        "item_gini": gini(counts),
        "items_seen_once": int((counts == 1).sum()),
        "time_min": float(tmin),
        "time_max": float(tmax),
        "time_span_days": None if time_unit == ORDINAL else float(tmax - tmin) / 86400.0,
        "time_unit": time_unit,
    }
    out.update(repeats_and_ties(df))
    out["duplicate_events"] = int(duplicate_events(df).sum())
    return out


def repeats_and_ties(df: pl.DataFrame) -> dict[str, float]:
    """How often a sequence comes back to an item, and how often events share a time.

    - ``repeat_share``: events whose item occurred earlier in the same sequence;
    - ``repeat_consecutive_share``: events repeating the item just before them;
    - ``tied_time_share``: events with the same timestamp as the event before them in the
      sequence (the items of a basket share one time; their order in the log is arbitrary);
    - ``events_per_time``: mean events per distinct (sequence, timestamp), 1 without ties.

    Events are taken in time order within each sequence (file order among ties).
    """
    if df.height == 0:
        return {
            "repeat_share": 0.0,
            "repeat_consecutive_share": 0.0,
            "tied_time_share": 0.0,
            "events_per_time": 1.0,
        }
    key = sequence_key(df)
    s = df.select(key, ITEM, TIME).with_row_index("_r").sort([key, TIME, "_r"])
    flags = s.select(
        (~pl.col(ITEM).is_first_distinct().over(key)).mean().alias("repeat"),
        ((pl.col(ITEM) == pl.col(ITEM).shift(1)) & (pl.col(key) == pl.col(key).shift(1)))
        .fill_null(False)
        .mean()
        .alias("consecutive"),
        ((pl.col(TIME) == pl.col(TIME).shift(1)) & (pl.col(key) == pl.col(key).shift(1)))
        .fill_null(False)
        .mean()
        .alias("tied"),
    ).row(0)
    groups = s.group_by([key, TIME]).len().height
    return {
        "repeat_share": float(flags[0]),
        "repeat_consecutive_share": float(flags[1]),
        "tied_time_share": float(flags[2]),
        "events_per_time": df.height / max(groups, 1),
    }


def length_counts(df: pl.DataFrame) -> np.ndarray:
    """Sequence lengths (one per session or user)."""
    return df.group_by(sequence_key(df)).len()["len"].to_numpy()


def item_counts(df: pl.DataFrame) -> np.ndarray:
    """Event count of every item, most popular first."""
    return np.sort(df.group_by(ITEM).len()["len"].to_numpy())[::-1]
