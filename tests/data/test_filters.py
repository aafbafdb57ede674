"""Filters on hand-made tables with known answers."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from warmrec.data.filters import (
    contiguous_runs,
    k_core,
    min_item_support,
    min_sequence_length,
    time_window,
    to_seconds,
)
from warmrec.errors import ConfigError, DataError


def _sessions(seqs: dict[int, str]) -> pl.DataFrame:
    """``{session: "abc"}`` -> one event per letter, timestamps in order."""
    rows, t = [], 0.0
    for s, items in seqs.items():
        for it in items:
            rows.append((s, it, t))
            t += 1.0
    return pl.DataFrame(rows, schema=["session_id", "item_id", "timestamp"], orient="row")


def test_min_item_support_counts_events_and_keeps_order():
    df = _sessions({1: "aab", 2: "cba"})
    out = min_item_support(df, 2)
    assert out["item_id"].to_list() == ["a", "a", "b", "b", "a"]
    assert min_item_support(df, 4).height == 0
    assert min_item_support(df, 0).equals(df)


def test_min_sequence_length_uses_the_sequence_key():
    df = _sessions({1: "ab", 2: "c", 3: "def"}).with_columns(user_id=pl.Series([7, 7, 7, 8, 8, 8]))
    assert min_sequence_length(df, 2)["session_id"].unique().sort().to_list() == [1, 3]
    # per user: user 7 has 3 events (sessions 1 and 2), user 8 has 3
    assert min_sequence_length(df, 3, key="user_id").height == 6
    assert min_sequence_length(df.drop("session_id"), 4).height == 0
    with pytest.raises(DataError):
        min_sequence_length(df, 2, key="nope")


def test_k_core_iterates_to_a_fixed_point():
    # a3 b3 c1 d1 e2 f1 -> drop c d f -> sessions 3 and 5 have one event -> e has one -> s2 has
    # one -> only sessions 1 and 4 survive (four rounds)
    df = _sessions({1: "ab", 2: "ace", 3: "bd", 4: "ab", 5: "ef"})
    out = k_core(df, 2, 2)
    assert out["session_id"].to_list() == [1, 1, 4, 4]
    assert out["item_id"].to_list() == ["a", "b", "a", "b"]
    with pytest.warns(RuntimeWarning, match="converge"):
        k_core(df, 2, 2, max_iter=2)


def _reference_k_core(df: pl.DataFrame, k_i: int, k_s: int) -> set:
    rows = set(zip(df["session_id"], df["item_id"], df["timestamp"]))
    while True:
        items, seqs = {}, {}
        for s, i, _ in rows:
            items[i] = items.get(i, 0) + 1
            seqs[s] = seqs.get(s, 0) + 1
        keep = {r for r in rows if items[r[1]] >= k_i and seqs[r[0]] >= k_s}
        if keep == rows:
            return rows
        rows = keep


def test_filters_agree_on_contiguous_and_interleaved_rows():
    df = _sessions({1: "ab", 2: "ace", 3: "bd", 4: "ab", 5: "ef", 6: "a"})
    mixed = df.sample(fraction=1.0, shuffle=True, seed=0)
    assert contiguous_runs(df["session_id"]).tolist() == [2, 3, 2, 2, 2, 1]
    assert contiguous_runs(mixed["session_id"]) is None
    for f in (lambda d: k_core(d, 2, 2), lambda d: min_sequence_length(d, 3)):
        a, b = f(df), f(mixed)
        assert a.sort("timestamp").equals(b.sort("timestamp"))
        assert b.equals(mixed.filter(pl.col("timestamp").is_in(a["timestamp"].implode())))


def test_k_core_matches_a_reference_on_random_data():
    rng = np.random.default_rng(0)
    n = 600
    df = pl.DataFrame(
        {
            "session_id": rng.integers(0, 120, n),
            "item_id": rng.zipf(1.6, n) % 60,
            "timestamp": np.arange(n, dtype=float),
        }
    )
    out = k_core(df, 3, 4)
    assert 0 < out.height < n
    assert set(zip(out["session_id"], out["item_id"], out["timestamp"])) == _reference_k_core(
        df, 3, 4
    )
    assert (out.group_by("item_id").len()["len"] >= 3).all()
    assert (out.group_by("session_id").len()["len"] >= 4).all()


def test_time_window_events_and_whole_sequences():
    df = _sessions({1: "abc", 2: "de", 3: "fg"})  # times 0..6
    assert time_window(df, 2, 5)["timestamp"].to_list() == [2.0, 3.0, 4.0]
    assert time_window(df, start=5)["item_id"].to_list() == ["f", "g"]
    assert time_window(df, end=1)["item_id"].to_list() == ["a"]
    whole = time_window(df, 2, 5, whole_sequences=True)
    assert whole["session_id"].to_list() == [2, 2]
    assert time_window(df, 0, 7, whole_sequences=True).height == 7
    with pytest.raises(ConfigError):
        time_window(df, 5, 2)


def test_to_seconds():
    assert to_seconds(12) == 12.0
    assert to_seconds("1970-01-02") == 86400.0
    assert to_seconds("1970-01-01T00:01:00") == 60.0
    assert to_seconds(dt.date(1970, 1, 3)) == 2 * 86400.0
    aware = dt.datetime(1970, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert to_seconds(aware) == 0.0
    with pytest.raises(ConfigError):
        to_seconds("yesterday")
    with pytest.raises(ConfigError):
        to_seconds(True)


def test_item_support_same_on_dense_ints_sparse_ints_and_strings():
    rng = np.random.default_rng(3)
    items = rng.zipf(1.6, 3_000) % 400
    df = pl.DataFrame(
        {"session_id": np.arange(3_000) // 4, "item_id": items, "timestamp": np.arange(3_000.0)}
    )
    dense = min_item_support(df, 5)  # bincount path
    sparse = min_item_support(df.with_columns(pl.col("item_id") * 10**12), 5)  # window path
    text = min_item_support(df.with_columns(pl.col("item_id").cast(pl.Utf8)), 5)
    counts = df["item_id"].value_counts()
    kept = set(counts.filter(pl.col("count") >= 5)["item_id"].to_list())
    assert set(dense["item_id"].to_list()) == kept
    assert dense.height == df.filter(pl.col("item_id").is_in(list(kept))).height
    assert sparse["item_id"].to_list() == [i * 10**12 for i in dense["item_id"].to_list()]
    assert text["item_id"].to_list() == [str(i) for i in dense["item_id"].to_list()]


def test_duplicate_events_marks_every_copy_after_the_first():
    from warmrec.data.filters import drop_duplicate_events, duplicate_events

    df = pl.DataFrame(
        {
            "user_id": [1, 1, 1, 1, 2, 2],
            "item_id": [5, 6, 5, 5, 5, 5],
            "timestamp": [10.0, 10.0, 10.0, 11.0, 10.0, 10.0],
        }
    )
    # row 2 repeats row 0 (a copy, not adjacent); row 3 is the same item later: a repeat, kept;
    # user 2's rows are another sequence's (row 4 kept), row 5 repeats row 4
    assert duplicate_events(df).to_list() == [False, False, True, False, False, True]
    out = drop_duplicate_events(df)
    assert out.rows() == [(1, 5, 10.0), (1, 6, 10.0), (1, 5, 11.0), (2, 5, 10.0)]
    assert duplicate_events(df.head(0)).to_list() == []


def test_duplicate_share_is_estimated_on_whole_sequences_of_a_large_log():
    from warmrec.data.filters import duplicate_events, duplicate_share

    rng = np.random.default_rng(0)
    n_seq = 20_000
    base = pl.DataFrame(
        {
            "session_id": np.repeat(np.arange(n_seq), 4),
            "item_id": rng.integers(0, 500, 4 * n_seq),
            "timestamp": np.arange(4 * n_seq, dtype=np.float64),
        }
    )
    # every third sequence written twice: a third of the sequences, 1/4 of the events repeat
    twice = base.filter(pl.col("session_id") % 3 == 0)
    df = pl.concat([base, twice])
    exact = float(duplicate_events(df).mean())
    assert exact == pytest.approx(twice.height / df.height)
    est = duplicate_share(df, exact_below=1_000)  # sampled: about 1/64 of the sequences
    assert est == pytest.approx(exact, abs=0.03) and est != exact
    assert duplicate_share(df) == exact  # below the default bound: exact
    assert duplicate_share(base, exact_below=1_000) == 0.0
