"""Gap analysis, sessionisation and repeat collapsing on tables with known answers."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from warmrec.data.sessionize import (
    DEFAULT_GAP,
    collapse_repeats,
    gap_analysis,
    sessionize,
)
from warmrec.data.synthetic import SyntheticConfig, generate
from warmrec.errors import DataError


def _log(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")


def test_gap_analysis_counts_and_quantiles():
    df = _log(
        [
            (1, 1, 0.0),
            (1, 2, 10.0),
            (1, 3, 40.0),
            (1, 4, 5000.0),
            (2, 1, 100.0),
            (2, 2, 100.0),
            (2, 3, 160.0),
        ]
    )
    # shuffled rows must not matter
    rep = gap_analysis(df.sample(fraction=1.0, shuffle=True, seed=3))
    assert (rep.n_events, rep.n_keys, rep.n_gaps, rep.n_zero) == (7, 2, 5, 1)
    # gaps: 10, 30, 4960, 0, 60 -> sorted 0 10 30 60 4960 (linear interpolation)
    assert rep.quantiles["50%"] == pytest.approx(30.0)
    assert rep.quantiles["75%"] == pytest.approx(60.0)
    assert rep.quantiles["90%"] == pytest.approx(60.0 + 0.6 * 4900.0)
    assert sum(rep.counts) == 4
    edges = np.array(rep.bin_edges)
    assert len(edges) == len(rep.counts) + 1
    np.testing.assert_allclose(edges[1:] / edges[:-1], 10**0.1)
    assert edges[0] <= 10.0 and edges[-1] >= 4960.0
    # the bin of the gap 30 holds one count
    i = int(np.searchsorted(edges, 30.0, side="right")) - 1
    assert rep.counts[i] == 1


def test_gap_report_to_dict_is_json():
    rep = gap_analysis(_log([(1, 1, 0.0), (1, 2, 5.0), (1, 3, 9.0)]))
    d = json.loads(json.dumps(rep.to_dict()))
    assert d["key"] == "user_id" and d["n_gaps"] == 2
    assert d["suggested_threshold"] == rep.suggested_threshold


def test_gap_analysis_finds_the_valley_of_a_bimodal_log():
    df = generate(SyntheticConfig(n_sessions=3000, seed=5))
    rep = gap_analysis(df.drop("session_id"))
    # within-session gaps <= 1200 s, between-session gaps >= 7200 s
    assert rep.rule.startswith("valley")
    assert 1200 < rep.suggested_threshold < 7200
    out = sessionize(df.drop("session_id"), rep.suggested_threshold)
    assert out["session_id"].n_unique() == 3000


def test_gap_analysis_falls_back_on_one_mode():
    rng = np.random.default_rng(0)
    n = 5000
    ts = np.cumsum(np.exp(rng.normal(np.log(60.0), 0.3, n)))
    rep = gap_analysis(
        pl.DataFrame(
            {
                "user_id": np.zeros(n, dtype=np.int64),
                "item_id": np.ones(n, dtype=np.int64),
                "timestamp": ts,
            }
        )
    )
    assert rep.suggested_threshold == DEFAULT_GAP
    assert rep.rule.startswith("fallback")


def test_gap_analysis_errors():
    with pytest.raises(DataError, match="user_id"):
        gap_analysis(pl.DataFrame({"session_id": [1], "item_id": [1], "timestamp": [0.0]}))
    rep = gap_analysis(_log([(1, 1, 0.0)]))
    assert rep.n_gaps == 0 and rep.suggested_threshold == DEFAULT_GAP


def test_sessionize_threshold_is_strict_and_ids_deterministic():
    df = _log(
        [
            ("b", 1, 0.0),
            ("b", 2, 1800.0),  # gap == threshold: same session
            ("b", 3, 3601.0),  # gap 1801: new session
            ("a", 7, 50.0),
            ("a", 8, 10_000.0),
        ]
    )
    out = sessionize(df, 1800)
    assert out.columns == ["user_id", "session_id", "item_id", "timestamp"]
    assert out["user_id"].to_list() == ["a", "a", "b", "b", "b"]
    assert out["session_id"].to_list() == [0, 1, 2, 2, 3]
    assert out["item_id"].to_list() == [7, 8, 1, 2, 3]
    # row order of the input does not change the numbering
    shuffled = sessionize(df.reverse(), 1800)
    assert shuffled.equals(out)


def test_sessionize_presorted_integer_keys_take_the_same_cuts():
    # sorted by (int key, time): the NumPy path; shuffled: the sort + window path
    df = pl.DataFrame(
        {
            "user_id": [1, 1, 1, 1, 2, 2, 5],
            "item_id": [1, 2, 3, 4, 5, 6, 7],
            "timestamp": [0.0, 1800.0, 3601.0, 3700.0, 10.0, 5000.0, 0.0],
        }
    )
    out = sessionize(df, 1800)
    assert out["session_id"].to_list() == [0, 0, 1, 1, 2, 3, 4]
    assert out["item_id"].to_list() == [1, 2, 3, 4, 5, 6, 7]
    assert sessionize(df.sample(fraction=1.0, shuffle=True, seed=0), 1800).equals(out)


def test_sessionize_keeps_ties_in_row_order_and_replaces_session_id():
    df = pl.DataFrame(
        {
            "user_id": [1, 1, 1],
            "session_id": [9, 9, 9],
            "item_id": [5, 6, 4],
            "timestamp": [10.0, 10.0, 0.0],
            "extra": ["x", "y", "z"],
        }
    )
    out = sessionize(df, 30)
    assert out["item_id"].to_list() == [4, 5, 6]
    assert out["session_id"].to_list() == [0, 0, 0]
    assert out["extra"].to_list() == ["z", "x", "y"]
    with pytest.raises(DataError):
        sessionize(df, -1)


def test_sessionize_recovers_synthetic_sessions_exactly():
    df = generate(SyntheticConfig(n_sessions=2000, seed=11))
    out = sessionize(df.drop("session_id"), 1800)
    assert out["session_id"].equals(df["session_id"])
    assert out["item_id"].equals(df["item_id"])


def test_collapse_repeats():
    df = pl.DataFrame(
        {
            "session_id": [1, 1, 1, 1, 2, 2, 2],
            "item_id": [10, 10, 11, 10, 10, 10, 10],
            "timestamp": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
        }
    )
    out = collapse_repeats(df.reverse())
    assert out["session_id"].to_list() == [1, 1, 1, 2]
    assert out["item_id"].to_list() == [10, 11, 10, 10]


def test_sessionize_collapse_keeps_repeats_across_sessions():
    df = _log([(1, 5, 0.0), (1, 5, 10.0), (1, 6, 20.0), (1, 6, 9000.0), (1, 6, 9010.0)])
    out = sessionize(df, 1800, collapse_repeats=True)
    assert out["item_id"].to_list() == [5, 6, 6]
    assert out["session_id"].to_list() == [0, 0, 1]


def test_stable_sort_fast_path_matches_the_generic_sort():
    from warmrec.data.schema import is_sorted_by_key_time
    from warmrec.data.sessionize import stable_sort

    df = pl.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 2],
            "item_id": [5, 6, 7, 8, 9],
            "timestamp": [1.0, 1.0, 3.0, 0.0, 2.0],
        }
    )
    assert is_sorted_by_key_time(df, "user_id")
    assert stable_sort(df, ["user_id", "timestamp"]).equals(df)
    shuffled = df[[3, 0, 4, 1, 2]]
    assert not is_sorted_by_key_time(shuffled, "user_id")
    assert stable_sort(shuffled, ["user_id", "timestamp"]).equals(df)
    unsorted_time = df.with_columns(pl.Series("timestamp", [1.0, 0.5, 3.0, 0.0, 2.0]))
    assert not is_sorted_by_key_time(unsorted_time, "user_id")


@pytest.mark.parametrize("gap", [float("nan"), float("inf"), -1.0])
def test_sessionize_refuses_a_gap_that_is_no_number_of_seconds(gap):
    df = pl.DataFrame({"user_id": [1, 1], "item_id": [1, 2], "timestamp": [0.0, 10.0]})
    with pytest.raises(DataError, match="gap_seconds"):
        sessionize(df, gap_seconds=gap)


def test_a_session_log_is_cut_again_by_its_own_sessions():
    """key=session_id crashed on a duplicate session_id column."""
    df = pl.DataFrame(
        {"session_id": [1, 1, 2], "item_id": ["a", "b", "a"], "timestamp": [0.0, 9000.0, 0.0]}
    )
    out = sessionize(df, gap_seconds=1800, key="session_id")
    assert out.columns == ["session_id", "item_id", "timestamp"]
    assert out["session_id"].to_list() == [0, 1, 2] and out["item_id"].to_list() == ["a", "b", "a"]


def test_sessionize_refuses_events_without_a_user():
    # guest invoices / anonymous sessions: each event without a user had become a session of
    # its own (the two-event session A came back as two one-event sessions) without a word
    df = pl.DataFrame(
        {
            "session_id": ["A", "A", "B", "B", "C"],
            "user_id": [None, None, None, None, 1],
            "item_id": [1, 2, 3, 4, 5],
            "timestamp": [0.0, 10.0, 5.0, 15.0, 0.0],
        }
    )
    with pytest.raises(DataError, match="4 of 5 events without one.*row 1") as err:
        sessionize(df)
    assert "key='session_id'" in str(err.value)
    # the gap report had counted each of them as a user of its own (n_keys 5 for one user)
    with pytest.raises(DataError, match="cannot be measured.*4 of 5 events without one"):
        gap_analysis(df)
    assert gap_analysis(df, key="session_id").n_keys == 3
    out = sessionize(df, key="session_id")  # the log's own sessions, cut at the gap
    assert out.group_by("session_id").len()["len"].sort().to_list() == [1, 2, 2]
