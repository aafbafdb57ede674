"""Descriptive statistics: repeat consumption and events that share a time (baskets)."""

from __future__ import annotations

import polars as pl

from warmrec.data.stats import describe, repeats_and_ties


def test_repeats_and_ties_on_a_hand_made_log():
    # user 1: a b a a (time 1 2 3 3): repeats at positions 3 and 4 (a), consecutive at 4,
    # tied at 4; user 2: c d (time 5 5): tied at 2
    df = pl.DataFrame(
        {
            "user_id": [1, 1, 1, 1, 2, 2],
            "item_id": ["a", "b", "a", "a", "c", "d"],
            "timestamp": [1.0, 2.0, 3.0, 3.0, 5.0, 5.0],
        }
    )
    got = repeats_and_ties(df)
    assert got["repeat_share"] == 2 / 6
    assert got["repeat_consecutive_share"] == 1 / 6
    assert got["tied_time_share"] == 2 / 6
    assert got["events_per_time"] == 6 / 4  # distinct (user, time): (1,1) (1,2) (1,3) (2,5)
    # the shift never crosses from one sequence into the next: user 2 starts at "c", time 5
    shifted = df.with_columns(
        pl.when(pl.col("user_id") == 2).then(3.0).otherwise(pl.col("timestamp")).alias("timestamp")
    )
    assert repeats_and_ties(shifted)["tied_time_share"] == 2 / 6
    assert describe(df)["repeat_share"] == 2 / 6


def test_repeats_and_ties_of_an_empty_log():
    df = pl.DataFrame(
        {"user_id": [], "item_id": [], "timestamp": []},
        schema={"user_id": pl.Int64, "item_id": pl.Int64, "timestamp": pl.Float64},
    )
    assert repeats_and_ties(df) == {
        "repeat_share": 0.0,
        "repeat_consecutive_share": 0.0,
        "tied_time_share": 0.0,
        "events_per_time": 1.0,
    }


def test_describe_does_not_count_anonymous_sessions_as_a_user():
    # a session log whose sessions 1 and 2 have no user (guests) and session 3 user 7: one user
    df = pl.DataFrame(
        {
            "session_id": [1, 1, 2, 3],
            "user_id": [None, None, None, 7],
            "item_id": [1, 2, 1, 3],
            "timestamp": [0.0, 1.0, 2.0, 3.0],
        },
        schema_overrides={"user_id": pl.Int64},
    )
    got = describe(df)
    assert (got["users"], got["sessions"], got["sequences"], got["events"]) == (1, 3, 3, 4)
    # a log of guests only has no user at all
    assert describe(df.with_columns(pl.lit(None, dtype=pl.Int64).alias("user_id")))["users"] == 0
