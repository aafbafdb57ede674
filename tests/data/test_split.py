"""Splits: exact rows on hand-made tables, no leakage, and RecBole's ml-100k order."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
import warnings

import numpy as np
import polars as pl
import pytest

from warmrec.data.split import (
    Split,
    last_session_split,
    leave_last_new_out,
    leave_one_out,
    new_user_domains,
    split,
    temporal_split,
    user_split,
)
from warmrec.data.synthetic import SyntheticConfig, generate
from warmrec.data.vocab import ItemVocab
from warmrec.errors import ConfigError, DataError, DataWarning

DAY = 86400.0


def _rows(df: pl.DataFrame, *cols: str) -> list[tuple]:
    return list(zip(*(df[c].to_list() for c in cols)))


def _no_leak_per_key(sp: Split, key: str) -> None:
    """Per key, every train event is no later than every valid/test event."""
    tr = sp.train.group_by(key).agg(pl.col("timestamp").max().alias("tmax"))
    for part in (sp.valid, sp.test):
        if part.height == 0:
            continue
        ho = part.group_by(key).agg(pl.col("timestamp").min().alias("tmin"))
        j = tr.join(ho, on=key)
        assert (j["tmax"] <= j["tmin"]).all()
    v = sp.valid.group_by(key).agg(pl.col("timestamp").max().alias("vmax"))
    t = sp.test.group_by(key).agg(pl.col("timestamp").min().alias("tmin"))
    j = v.join(t, on=key)
    assert (j["vmax"] <= j["tmin"]).all()


def _no_leak_global(sp: Split) -> None:
    parts = [p for p in (sp.train, sp.valid, sp.test) if p.height]
    for a, b in zip(parts, parts[1:]):
        assert a["timestamp"].max() <= b["timestamp"].min()


# --- leave-one-out ---------------------------------------------------------------------------

LOO = pl.DataFrame(
    [
        (1, 10, 1.0),
        (3, 1, 5.0),
        (1, 11, 2.0),
        (2, 20, 1.0),
        (1, 12, 3.0),
        (3, 2, 1.0),
        (1, 13, 3.0),
        (2, 21, 2.0),
        (3, 3, 3.0),
        (3, 4, 4.0),
    ],
    schema=["user_id", "item_id", "timestamp"],
    orient="row",
)


def test_leave_one_out_exact_rows():
    sp = leave_one_out(LOO)
    assert sp.kind == "next_item" and sp.key == "user_id"
    # user 1: 12 and 13 tie at t=3 -> file order: 13 is last
    assert _rows(sp.test, "user_id", "item_id") == [(1, 13), (3, 1)]
    assert _rows(sp.valid, "user_id", "item_id") == [(1, 12), (3, 4)]
    assert _rows(sp.train, "user_id", "item_id") == [
        (1, 10),
        (1, 11),
        (2, 20),
        (2, 21),
        (3, 2),
        (3, 3),
    ]
    _no_leak_per_key(sp, "user_id")


# user 1: new items 10, 11, 12, 13 (13 then repeats 11); user 2: new 20, 21, repeat 20;
# user 3: one new item only
LOO_NEW = pl.DataFrame(
    {
        "user_id": [1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 3, 3],
        "item_id": [10, 11, 10, 12, 11, 13, 11, 20, 20, 21, 30, 30],
        "timestamp": [1.0, 2, 3, 4, 5, 6, 7, 1, 2, 3, 1, 2],
    }
)


def test_leave_last_new_out_exact_rows():
    sp = leave_last_new_out(LOO_NEW)
    # user 1: test = 13 (last new), valid = 12, the repeat 11 between them history only (the
    # valid example's future: never trained on), the repeat 11 after 13 dropped; users 2 and 3
    # have fewer than 3 new items: all train
    assert _rows(sp.test, "user_id", "item_id") == [(1, 13)]
    assert _rows(sp.valid, "user_id", "item_id") == [(1, 12)]
    assert _rows(sp.context, "user_id", "item_id") == [(1, 11)]
    assert _rows(sp.train, "user_id", "item_id") == [
        (1, 10),
        (1, 11),
        (1, 10),
        (2, 20),
        (2, 20),
        (2, 21),
        (3, 30),
        (3, 30),
    ]
    assert sp.info["events_after_test_dropped"] == 1
    assert sp.info["events_between_valid_and_test_history_only"] == 1
    vocab = ItemVocab.from_ids(LOO_NEW["item_id"])
    assert vocab.decode(sp.test_set(vocab).history(0)) == [10, 11, 10, 12, 11]
    assert vocab.decode(sp.valid_set(vocab).history(0)) == [10, 11, 10]


def test_leave_last_new_out_never_trains_on_the_valid_examples_future():
    """Events between a user's valid and test targets were trained on: the repeat of the valid
    item right after it taught the model the valid answer (1, 2 -> 3 in training, valid
    history 1, 2 with target 3). They are the test target's history only; a duplicate of the
    valid target at its very time (which ties put in its own history) is dropped."""
    from warmrec.data.prepared import prepare

    df = pl.DataFrame(
        {"user_id": ["a"] * 7, "item_id": [1, 2, 3, 3, 2, 4, 3], "timestamp": list(range(7))}
    )
    prep = prepare(df, split="loo_new")
    v = prep.vocab
    assert v.decode(prep.valid.history(0)) == [1, 2] and v.decode(prep.valid.targets) == [3]
    assert v.decode(prep.train.sequences[0]) == [1, 2]  # not 1, 2, 3, 2
    assert v.decode(prep.test.history(0)) == [1, 2, 3, 3, 2] and v.decode(prep.test.targets) == [4]
    tied = pl.DataFrame(
        {"user_id": ["a"] * 6, "item_id": [1, 2, 3, 4, 4, 5], "timestamp": [0, 1, 2, 3, 3, 4]}
    )
    prep = prepare(tied, split="loo_new")
    assert prep.split.info["valid_target_duplicates_dropped"] == 1
    assert not prep.valid.target_in_history().any()
    assert prep.vocab.decode(prep.valid.history(0)) == [1, 2, 3]
    assert prep.vocab.decode(prep.test.history(0)) == [1, 2, 3, 4]


def test_leave_last_new_out_context_tied_with_the_valid_target_stays_its_future():
    """v2 at t 4 follows the valid target v3 at t 4 in the log: it is the valid example's
    future (never in its history) and comes after v3 in the test history, in both encoders."""
    from warmrec.data.prepared import prepare

    df = pl.DataFrame(
        {
            "user_id": [1] * 7,
            "item_id": ["v1", "v2", "v1", "v3", "v2", "v4", "v3"],
            "timestamp": [1, 2, 3, 4, 4, 6, 7],
        }
    )
    prep = prepare(df, split="loo_new")
    v = prep.vocab
    assert _rows(prep.split.context, "item_id") == [("v2",)]
    assert v.decode(prep.valid.targets) == ["v3"] and v.decode(prep.test.targets) == ["v4"]
    assert v.decode(prep.valid.history(0)) == ["v1", "v2", "v1"]
    assert v.decode(prep.test.history(0)) == ["v1", "v2", "v1", "v3", "v2"]
    sp = prep.split
    assert v.decode(sp.valid_set(v).history(0)) == ["v1", "v2", "v1"]
    assert v.decode(sp.test_set(v).history(0)) == ["v1", "v2", "v1", "v3", "v2"]


def test_leave_last_new_out_min_new_two_tests_users_with_two_new_items():
    sp = leave_last_new_out(LOO_NEW, min_new=2)
    # user 2 (new items 20, 21) now has a test target and no valid one (its first new item
    # would have no history); user 1 as with the default; user 3 (one new item) all train
    assert _rows(sp.test, "user_id", "item_id") == [(1, 13), (2, 21)]
    assert _rows(sp.valid, "user_id", "item_id") == [(1, 12)]
    assert _rows(sp.train.filter(pl.col("user_id") == 2), "item_id") == [(20,), (20,)]
    assert split(LOO_NEW, "loo_new", min_new=2).test.height == 2
    with pytest.raises(ConfigError, match="min_new"):
        leave_last_new_out(LOO_NEW, min_new=1)


def test_leave_one_out_eval_sets():
    sp = leave_one_out(LOO)
    # test items 13 and 1 never occur in train: a train vocabulary drops both examples
    ts = sp.test_set(ItemVocab.from_ids(sp.train["item_id"]))
    assert len(ts) == 0 and ts.n_dropped == 2
    vocab_all = ItemVocab.from_ids(LOO["item_id"])
    ts = sp.test_set(vocab_all)
    assert vocab_all.decode(ts.targets.tolist()) == [13, 1] and ts.n_dropped == 0
    assert vocab_all.decode(ts.history(0)) == [10, 11, 12]
    assert vocab_all.decode(ts.history(1)) == [2, 3, 4]
    vs = sp.valid_set(vocab_all, user_vocab=ItemVocab.from_ids(LOO["user_id"]))
    assert vocab_all.decode(vs.history(0)) == [10, 11]
    assert vs.users.tolist() == [1, 3]


def test_leave_one_out_with_sessions_keys_on_user():
    df = LOO.with_columns(session_id=pl.col("user_id") * 100 + (pl.col("timestamp") > 2))
    sp = leave_one_out(df)
    vocab = ItemVocab.from_ids(df["item_id"])
    ts = sp.test_set(vocab)
    # history spans the user's sessions
    assert vocab.decode(ts.history(0)) == [10, 11, 12]


def test_leave_one_out_recbole_order_merges_close_seconds():
    # span 1e9 s: float32 near 1.0 cannot tell seconds 10 apart, so file order decides
    df = pl.DataFrame(
        {
            "user_id": [1, 1, 1, 2],
            "item_id": [5, 6, 7, 8],
            "timestamp": [0.0, 1e9 - 10, 1e9 - 20, 1e9],
        }
    )
    plain = leave_one_out(df)
    assert _rows(plain.test, "item_id") == [(6,)]
    rb = leave_one_out(df, time_order="recbole")
    assert _rows(rb.test, "item_id") == [(7,)]
    assert _rows(rb.valid, "item_id") == [(6,)]
    assert rb.test["timestamp_raw"].to_list() == [1e9 - 20]
    assert rb.train["timestamp"].to_list() == [0.0, 1.0]
    vocab = ItemVocab.from_ids(df["item_id"])
    assert vocab.decode(rb.test_set(vocab).history(0)) == [5, 6]
    with pytest.raises(ConfigError):
        leave_one_out(df, time_order="nope")


def test_leave_one_out_reproduces_recbole_on_ml100k(ml100k):
    df = pl.read_csv(ml100k / "ml-100k.inter", separator="\t")
    df = df.rename({c: c.split(":")[0] for c in df.columns}).select(
        "user_id", "item_id", "timestamp"
    )
    plain, rb = leave_one_out(df), leave_one_out(df, time_order="recbole")
    assert plain.test.height == rb.test.height == 943
    assert plain.train.height == 100_000 - 2 * 943
    # the shared README: 4 users get a different test item, 406 positions differ in all
    ta, tb = plain.test.sort("user_id"), rb.test.sort("user_id")
    assert int((ta["item_id"] != tb["item_id"]).sum()) == 4

    def order(sp: Split) -> pl.DataFrame:
        parts = [
            p.select("user_id", "item_id").with_columns(part=pl.lit(i))
            for i, p in enumerate((sp.train, sp.valid, sp.test))
        ]
        return pl.concat(parts).with_row_index().sort(["user_id", "part", "index"])

    assert int((order(plain)["item_id"] != order(rb)["item_id"]).sum()) == 406
    _no_leak_per_key(plain, "user_id")
    _no_leak_per_key(rb, "user_id")


# --- temporal ----------------------------------------------------------------------------------

SESS = pl.DataFrame(
    [  # session, item, time
        (1, "a", 0.0),
        (1, "b", 10.0),  # train
        (2, "a", 50.0),
        (2, "c", 105.0),  # starts in train, crosses valid_start=100
        (3, "b", 100.0),
        (3, "a", 120.0),
        (3, "x", 130.0),  # valid; x unseen in train
        (4, "c", 150.0),
        (4, "b", 210.0),  # starts in valid, crosses test_start=200
        (5, "a", 200.0),
        (5, "b", 220.0),  # test
        (6, "y", 230.0),
        (6, "a", 240.0),  # test; y unseen -> one event left -> dropped
        (7, "c", 20.0),
        (7, "a", 30.0),  # train
    ],
    schema=["session_id", "item_id", "timestamp"],
    orient="row",
)


def test_temporal_sessions_assign_start():
    sp = temporal_split(SESS, test_start=200, valid_start=100)
    assert sp.kind == "sessions"
    assert _rows(sp.train, "session_id", "item_id") == [(1, "a"), (1, "b"), (7, "c"), (7, "a")]
    assert _rows(sp.valid, "session_id", "item_id") == [(3, "b"), (3, "a")]
    assert _rows(sp.test, "session_id", "item_id") == [(5, "a"), (5, "b")]
    assert sp.info["crossing_sessions_dropped"] == 2
    assert sp.info["valid_unseen_events_removed"] == 1
    assert sp.info["test_short_sequences_dropped"] == 1
    assert sp.train["timestamp"].max() < 100 <= sp.valid["timestamp"].min()
    assert sp.valid["timestamp"].max() < 200 <= sp.test["timestamp"].min()
    _no_leak_global(sp)
    vocab = ItemVocab.from_ids(sp.train["item_id"])
    vs = sp.valid_set(vocab)
    assert len(vs) == 1 and vocab.decode(vs.targets.tolist()) == ["a"]


def test_temporal_without_valid_start_validates_on_the_latest_share_before_test_start():
    # session starts before 200: 0, 20, 50, 100, 150; the latest 40 % (2 of 5) start at 100
    shared = temporal_split(SESS, test_start=200, valid_share=0.4)
    given = temporal_split(SESS, test_start=200, valid_start=100)
    assert shared.info["valid_start"] == 100 and shared.info["valid_share"] == 0.4
    for x, y in ((shared.train, given.train), (shared.valid, given.valid)):
        assert x.equals(y)
    # default 10 %: at least one session, the latest start (150; it crosses 200: dropped)
    default = temporal_split(SESS, test_start=200)
    assert default.info["valid_start"] == 150 and default.info["valid_share"] == 0.1
    assert default.train["timestamp"].max() < 150
    off = temporal_split(SESS, test_start=200, valid_share=0)
    assert off.valid.height == 0 and off.info["valid_start"] == 200
    # a user log: the share counts events (times 0..9, test from 8: the latest 2 of 8 validate)
    users = pl.DataFrame(
        {"user_id": [1, 2] * 5, "item_id": ["a", "b"] * 5, "timestamp": list(range(10))}
    )
    sp = temporal_split(users, test_start=8, valid_share=0.25)
    assert sp.valid["timestamp"].to_list() == [6, 7] and sp.train["timestamp"].max() == 5


def test_temporal_refuses_a_test_start_outside_the_log_and_two_validation_rules():
    with pytest.raises(ConfigError, match="give valid_start or valid_share, not both"):
        temporal_split(SESS, test_start=200, valid_start=100, valid_share=0.2)
    with pytest.raises(ConfigError, match=r"valid_share: expected a number in \[0, 1\)"):
        temporal_split(SESS, test_start=200, valid_share=1.0)
    with pytest.raises(ConfigError) as e:
        temporal_split(SESS, test_start=0)
    assert str(e.value) == (
        "temporal split: test_start 0 is at or before the first event (0), so training would be "
        "empty; expected a time after 0 and at or before 240"
    )
    late = SESS.with_columns(pl.col("timestamp") + 1.6e9)  # 2020-09-13, seconds 0..240 on
    with pytest.raises(ConfigError) as e:
        temporal_split(late, test_start=1.6e9 + 200, valid_start=dt.date(2021, 1, 1))
    assert "valid_start 2021-01-01 is after test_start 1600000200.0" in str(e.value)
    with pytest.raises(ConfigError, match=r"test_start '2030-01-01' is after the last event"):
        temporal_split(SESS.with_columns(pl.col("timestamp") + 1.6e9), test_start="2030-01-01")


@pytest.mark.parametrize("assign", ["start", "end"])
def test_temporal_same_result_when_sessions_are_not_contiguous(assign):
    # interleaved rows take the window path, contiguous ones the per-run NumPy path
    shuffled = SESS.sample(fraction=1.0, shuffle=True, seed=1)
    a = temporal_split(SESS, test_start=200, valid_start=100, assign=assign)
    b = temporal_split(shuffled, test_start=200, valid_start=100, assign=assign)
    for x, y in ((a.train, b.train), (a.valid, b.valid), (a.test, b.test)):
        assert x.sort("session_id", "timestamp").equals(y.sort("session_id", "timestamp"))
    assert a.info == b.info


@pytest.mark.parametrize("assign", ["start", "end"])
def test_temporal_contiguous_sessions_out_of_time_order(assign):
    # rows of each session together but not time-ordered within: the per-run min/max path
    mixed = SESS.sort("session_id", "timestamp", descending=[False, True])
    a = temporal_split(SESS, test_start=200, valid_start=100, assign=assign)
    b = temporal_split(mixed, test_start=200, valid_start=100, assign=assign)
    for x, y in ((a.train, b.train), (a.valid, b.valid), (a.test, b.test)):
        assert x.sort("session_id", "timestamp").equals(y.sort("session_id", "timestamp"))
    assert a.info == b.info


def test_temporal_sessions_assign_end_is_grunrec_rule():
    sp = temporal_split(SESS, test_start=200, valid_start=100, assign="end")
    assert sorted(sp.train["session_id"].unique().to_list()) == [1, 7]
    assert sorted(sp.valid["session_id"].unique().to_list()) == [2, 3]
    assert sorted(sp.test["session_id"].unique().to_list()) == [4, 5]
    assert sp.train["timestamp"].max() < 100
    assert sp.valid["timestamp"].max() < 200


def test_temporal_without_valid_and_keep_unseen():
    sp = temporal_split(SESS, test_start=200, drop_unseen=False)
    assert sp.valid.height == 0
    assert sorted(sp.test["session_id"].unique().to_list()) == [5, 6]
    assert sorted(sp.train["session_id"].unique().to_list()) == [1, 2, 3, 7]
    with pytest.raises(ConfigError):
        temporal_split(SESS, test_start=100, valid_start=200)
    with pytest.raises(ConfigError):
        temporal_split(SESS, test_start=100, assign="middle")


def test_temporal_user_log_is_next_item():
    df = pl.DataFrame(
        [
            (1, 1, 0.0),
            (1, 2, 50.0),
            (2, 1, 60.0),
            (1, 2, 120.0),
            (2, 9, 130.0),
            (2, 2, 210.0),
            (1, 1, 220.0),
        ],
        schema=["user_id", "item_id", "timestamp"],
        orient="row",
    )
    sp = temporal_split(df, "1970-01-01T00:03:20", valid_start=100)  # 200 s and 100 s
    assert sp.kind == "next_item" and sp.key == "user_id"
    assert _rows(sp.train, "user_id", "item_id") == [(1, 1), (1, 2), (2, 1)]
    assert _rows(sp.valid, "user_id", "item_id") == [(1, 2)]  # item 9 unseen in train
    assert sp.info["valid_unseen_events_removed"] == 1
    assert _rows(sp.test, "user_id", "item_id") == [(2, 2), (1, 1)]
    _no_leak_global(sp)
    vocab = ItemVocab.from_ids(df["item_id"])
    ts = sp.test_set(vocab)
    # user 1's history holds its valid event too
    j = ts.keys.to_list().index(1)
    assert vocab.decode(ts.history(j)) == [1, 2, 2]


# --- last session ------------------------------------------------------------------------------


def test_last_session_per_user():
    df = pl.DataFrame(
        [  # user, session, item, time
            ("u", 1, "a", 0.0),
            ("u", 1, "b", 1.0),
            ("u", 2, "a", 100.0),
            ("u", 2, "c", 101.0),
            ("u", 3, "b", 200.0),
            ("u", 3, "c", 201.0),
            ("u", 4, "a", 300.0),
            ("u", 4, "b", 301.0),
            ("v", 5, "a", 0.0),
            ("v", 5, "c", 5.0),
            ("v", 6, "b", 50.0),
            ("v", 6, "a", 60.0),
        ],
        schema=["user_id", "session_id", "item_id", "timestamp"],
        orient="row",
    )
    sp = last_session_split(df.reverse())
    assert sp.kind == "sessions" and sp.key == "user_id"
    assert sorted(sp.test["session_id"].unique().to_list()) == [4]
    assert sorted(sp.valid["session_id"].unique().to_list()) == [3]
    assert sorted(sp.train["session_id"].unique().to_list()) == [1, 2, 5, 6]
    _no_leak_per_key(sp, "user_id")
    vocab = ItemVocab.from_ids(sp.train["item_id"])
    ts = sp.test_set(vocab)
    assert len(ts) == 1 and vocab.decode(ts.history(0)) == ["a"]
    # interleaved rows (window path) give the same parts as contiguous ones (NumPy path)
    mixed = last_session_split(df.sample(fraction=1.0, shuffle=True, seed=2))
    for x, y in ((sp.train, mixed.train), (sp.valid, mixed.valid), (sp.test, mixed.test)):
        assert x.sort("timestamp", "user_id").equals(y.sort("timestamp", "user_id"))
    bad = df.with_columns(
        pl.when(pl.col("item_id") == "c")
        .then(pl.lit("v"))
        .otherwise(pl.col("user_id"))
        .alias("user_id")
    )
    with pytest.raises(DataError, match="several users"):
        last_session_split(bad)
    with pytest.raises(DataError, match="several users"):
        last_session_split(bad.sample(fraction=1.0, shuffle=True, seed=0))


def test_last_session_by_days_is_grunrec_last_day():
    rows = []
    for s, start in enumerate([0.0, 1.0 * DAY, 2.7 * DAY, 3.2 * DAY, 3.6 * DAY, 4.5 * DAY]):
        rows += [(s, "a", start), (s, "b", start + 60), (s, "a", start + 120)]
    rows += [(9, "a", 3.4 * DAY), (9, "b", 3.6 * DAY)]  # crosses the test cut-off
    df = pl.DataFrame(rows, schema=["session_id", "item_id", "timestamp"], orient="row")
    tmax = 4.5 * DAY + 120
    sp = last_session_split(df, test_days=1.0, valid_days=1.0)
    assert sp.info["test_start"] == tmax - DAY and sp.info["valid_start"] == tmax - 2 * DAY
    assert sp.info["method"] == "last_session" and sp.info["crossing_sessions_dropped"] == 1
    assert sp.train["session_id"].unique().sort().to_list() == [0, 1]
    assert sp.valid["session_id"].unique().sort().to_list() == [2, 3]
    assert sp.test["session_id"].unique().sort().to_list() == [4, 5]
    _no_leak_global(sp)
    nov = last_session_split(df, test_days=1.0, valid_days=0)
    assert nov.valid.height == 0
    assert nov.train["session_id"].unique().sort().to_list() == [0, 1, 2, 3]
    with pytest.raises(DataError, match="sessionize"):
        last_session_split(df.rename({"session_id": "user_id"}))


# --- user split ---------------------------------------------------------------------------------


def test_user_split_is_user_disjoint_and_seeded():
    df = generate(SyntheticConfig(n_sessions=600, n_users=100, seed=2))
    sp = user_split(df, test_frac=0.2, valid_frac=0.1, seed=7)
    assert sp.kind == "sessions" and sp.key == "user_id"
    users = [set(p["user_id"].unique().to_list()) for p in (sp.train, sp.valid, sp.test)]
    assert not (users[0] & users[1] or users[0] & users[2] or users[1] & users[2])
    n = df["user_id"].n_unique()
    assert len(users[2]) <= round(0.2 * n) and len(users[2]) >= round(0.2 * n) - 3
    again = user_split(df, test_frac=0.2, valid_frac=0.1, seed=7)
    assert again.test.equals(sp.test)
    other = user_split(df, test_frac=0.2, valid_frac=0.1, seed=8)
    assert not other.test.equals(sp.test)
    gen = user_split(df, 0.2, 0.1, np.random.default_rng(7))
    assert gen.test.equals(sp.test)
    vocab = ItemVocab.from_ids(sp.train["item_id"])
    ts = sp.test_set(vocab)
    lens = sp.test.group_by("session_id").len()["len"]
    assert len(ts) == int((lens - 1).sum())
    with pytest.raises(ConfigError):
        user_split(df, 0.6, 0.5)


# --- dispatch, describe, leakage on synthetic data ----------------------------------------------


def test_split_dispatch_and_errors():
    assert split(LOO, "loo").test.height == 2
    with pytest.raises(ConfigError, match="unknown split method"):
        split(LOO, "random")
    with pytest.raises(
        ConfigError, match="unknown option 'test_frac'; its options: key, time_order"
    ):
        split(LOO, "loo", test_frac=0.1)
    with pytest.raises(ConfigError):
        Split(LOO, LOO, LOO, kind="ranking")
    with pytest.raises(DataError):
        leave_one_out(LOO.drop("timestamp"))


def test_describe():
    d = temporal_split(SESS, test_start=200, valid_start=100).describe()
    assert d["kind"] == "sessions" and d["key"] == "session_id"
    assert d["train"] == {"rows": 4, "keys": 2, "items": 3, "time": [0.0, 30.0]}
    assert d["valid"]["targets"] == 1 and d["test"]["targets"] == 1
    assert d["valid"]["items_not_in_train"] == 0
    assert d["info"]["method"] == "temporal"
    d = leave_one_out(LOO).describe()
    assert d["test"]["items_not_in_train"] == 2 and d["test"]["targets"] == 2
    # sessions without a user (guests) are no user of their own: 1 user, not 2
    guests = pl.DataFrame(
        {
            "session_id": [1, 1, 2, 2, 3, 3],
            "user_id": [None, None, None, None, 7, 7],
            "item_id": [1, 2, 1, 2, 1, 2],
            "timestamp": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
        }
    )
    d = temporal_split(guests, test_start=4.0, valid_share=0).describe()
    assert d["train"]["users"] == 0 and d["test"]["users"] == 1


@pytest.mark.parametrize(
    "method,kw",
    [
        ("loo", {}),
        (
            "temporal",
            {"test_start": 1_400_000_000.0 + 60 * DAY, "valid_start": 1_400_000_000.0 + 50 * DAY},
        ),
        ("last_session", {}),
        ("last_session", {"by_user": False, "test_days": 5, "valid_days": 5}),
        ("user", {"seed": 1}),
    ],
)
def test_no_leakage_on_synthetic(method, kw):
    df = generate(SyntheticConfig(n_sessions=2000, n_users=300, seed=4))
    sp = split(df, method, **kw)
    assert sp.test.height > 0 and sp.train.height > 0
    if method in ("loo", "last_session") and kw.get("by_user", True):
        _no_leak_per_key(sp, "user_id")
    elif method != "user":
        _no_leak_global(sp)
    vocab = ItemVocab.from_ids(sp.train["item_id"])
    assert len(sp.test_set(vocab)) > 0
    if sp.valid.height:
        assert len(sp.valid_set(vocab)) > 0
    total = sp.train.height + sp.valid.height + sp.test.height
    assert total <= df.height
    if method == "loo":
        assert total == df.height


def _new_user_log() -> pl.DataFrame:
    """u1 early (2 events before t=5, 2 after), u2 early, u3 first at t=5, u4 later; shuffled."""
    rows = [
        (4, 40, 9.0),
        (1, 10, 1.0),
        (3, 30, 6.0),
        (2, 20, 3.0),
        (1, 11, 5.0),
        (3, 99, 5.0),
        (1, 12, 2.0),
        (4, 10, 7.0),
        (2, 21, 4.0),
        (1, 13, 8.0),
    ]
    return pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")


def test_new_user_domains_cut_at_a_time():
    df = _new_user_log()
    pair = new_user_domains(df, 5)
    # source: early users' events before t=5, in input row order
    assert _rows(pair.source, "user_id", "item_id") == [(1, 10), (2, 20), (1, 12), (2, 21)]
    # target: every event of the users whose first event is at or after t=5
    assert _rows(pair.target, "user_id", "item_id") == [(4, 40), (3, 30), (3, 99), (4, 10)]
    assert pair.source["timestamp"].max() < pair.target["timestamp"].min()
    assert pair.cutoff == 5.0
    assert pair.info == {
        "cutoff": 5.0,
        "source_users": 2,
        "source_events": 4,
        "target_users": 2,
        "target_events": 4,
        "dropped_events": 2,  # u1 at t=5 and t=8
        "target_items": 4,
        "target_items_not_in_source": 3,  # 30, 40, 99 (10 is shared)
    }
    assert new_user_domains(df, "1970-01-01T00:00:05").info == pair.info


def test_new_user_domains_by_share_of_new_users():
    df = _new_user_log()
    half = new_user_domains(df, new_user_share=0.5)  # first events 1, 3, 5, 7 -> cut at 5
    assert half.cutoff == 5.0 and half.info["target_users"] == 2
    assert half.target.equals(new_user_domains(df, 5).target)
    quarter = new_user_domains(df, new_user_share=0.25)  # one new user: u4, cut at 7
    assert quarter.cutoff == 7.0
    assert set(quarter.target["user_id"]) == {4}
    assert sorted(quarter.source["timestamp"].to_list()) == [1, 2, 3, 4, 5, 5, 6]
    tied = df.with_columns(
        pl.when(pl.col("user_id") == 4).then(pl.col("timestamp") - 2).otherwise("timestamp")
    )  # u3 and u4 both start at t=5: both are new even for one new user's share
    assert set(new_user_domains(tied, new_user_share=0.25).target["user_id"]) == {3, 4}


def test_new_user_domains_bad_arguments():
    df = _new_user_log()
    with pytest.raises(ConfigError, match="exactly one"):
        new_user_domains(df)
    with pytest.raises(ConfigError, match="exactly one"):
        new_user_domains(df, 5, new_user_share=0.5)
    with pytest.raises(ConfigError, match="share"):
        new_user_domains(df, new_user_share=1.0)
    with pytest.raises(ConfigError, match="no early user"):
        new_user_domains(df, 1)
    with pytest.raises(ConfigError, match="no new user"):
        new_user_domains(df, 100)
    with pytest.raises(DataError, match="missing column"):
        new_user_domains(df.drop("timestamp"), 5)


# --- one default split policy ------------------------------------------------------------------


def _sessions_of_long_users() -> pl.DataFrame:
    """Users with 30 events each, cut into sessions of 3: a rating log sessionised by gaps."""
    rows = [
        (u, f"{u}-{k // 3}", 1 + (u + k) % 7, 1000.0 * u + k) for u in range(6) for k in range(30)
    ]
    return pl.DataFrame(
        rows, schema=["user_id", "session_id", "item_id", "timestamp"], orient="row"
    )


def test_one_default_split_policy_for_every_caller():
    from warmrec.data.readers import Interactions
    from warmrec.data.split import default_split
    from warmrec.experiments.demo import default_split as demo_default
    from warmrec.experiments.spec import AutoSplit, resolve_split
    from warmrec.experiments.transfer_study import choose_split

    long_users = _sessions_of_long_users()
    short = long_users.drop("user_id")
    users_only = long_users.drop("session_id")
    assert default_split(long_users) == "loo"  # demo said last_session here
    assert default_split(short) == "last_session"
    assert default_split(users_only) == "loo"
    for frame in (long_users, short, users_only):
        want = default_split(frame)
        assert demo_default(frame) == want
        assert choose_split(frame) == want
        assert resolve_split(AutoSplit(), Interactions(frame)).method == want


def test_prepare_uses_the_default_policy():
    from warmrec.data.prepared import prepare

    assert prepare(_sessions_of_long_users()).info["split"] == "loo"


# --- last_session by time: a share of sessions, stated, with a warning below a minimum ----------


def _basket_log(n_days: int = 400, per_day: int = 50, last_day: int = 3) -> pl.DataFrame:
    """Many sessions a day for ``n_days`` days, then a last day holding only ``last_day``."""
    rows = []
    s = 0
    for d in range(n_days + 1):
        for _ in range(per_day if d < n_days else last_day):
            t = d * DAY + (s % per_day) * 60.0 + (43200.0 if d == n_days else 0.0)
            rows += [(s, 1 + s % 9, t), (s, 1 + (s + 1) % 9, t + 10), (s, 1 + (s + 2) % 9, t + 20)]
            s += 1
    return pl.DataFrame(rows, schema=["session_id", "item_id", "timestamp"], orient="row")


def test_last_session_default_holds_out_a_share_of_sessions():
    df = _basket_log()
    n = df["session_id"].n_unique()
    sp = last_session_split(df)  # before: the last day only, 3 of 20,003 sessions
    share = sp.test["session_id"].n_unique() / n
    assert 0.08 <= share <= 0.12, share
    assert sp.info["test_share"] == 0.1 and abs(sp.info["test_session_share"] - share) < 1e-12
    assert sp.info["test_period_days"] > 30
    assert 0.08 <= sp.valid["session_id"].n_unique() / n <= 0.12
    assert sp.train["timestamp"].max() < sp.info["valid_start"] <= sp.valid["timestamp"].min()
    days = last_session_split(df, test_days=1.0)  # an explicit period still works
    assert days.test["session_id"].n_unique() == 3 and days.info["valid_days"] == 1.0


def test_last_session_warns_below_a_minimum_test_size():
    from warmrec.errors import DataWarning

    with pytest.warns(DataWarning, match="only 3 test sequences"):
        last_session_split(_basket_log(n_days=30), test_days=1.0)
    with pytest.warns(DataWarning):
        split(_basket_log(n_days=30), "last_session", test_share=0.001)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        last_session_split(_basket_log(n_days=30))  # 10 % of 1,503 sessions: no warning
        temporal_split(_basket_log(n_days=30), 25 * DAY)
    with pytest.warns(DataWarning, match="temporal split: only 3 test"):
        temporal_split(_basket_log(n_days=30), 30 * DAY)
    users = _basket_log(n_days=30).rename({"session_id": "user_id"})
    with pytest.warns(DataWarning, match="temporal split: only 9 test"):
        temporal_split(users, 30 * DAY)


def test_last_session_share_options_are_checked():
    with pytest.raises(ConfigError, match="test_share"):
        last_session_split(_basket_log(n_days=5), test_share=1.5)
    with pytest.raises(ConfigError, match="valid_days needs test_days"):
        last_session_split(_basket_log(n_days=5), valid_days=1.0)


def test_last_session_share_cut_on_tied_first_starts_names_the_share_not_valid_start():
    """Nine of ten sessions start at t=0: the valid cut derived from the shares landed on that
    first start, and the refusal spoke of a ``valid_start`` (and ``test_start``) never set."""
    rows = [(s, 1 + j % 2, (0 if s < 9 else 100) + j) for s in range(10) for j in range(3)]
    df = pl.DataFrame(rows, schema=["session_id", "item_id", "timestamp"], orient="row")
    with pytest.raises(ConfigError) as err:
        last_session_split(df)
    msg = str(err.value)
    assert "valid_start" not in msg and "test_start" not in msg
    assert "test_share=0.1 and valid_share=0.1 (the default: test_share)" in msg
    assert "9 of the 10 sessions share (a tie)" in msg
    assert "expected test_share + valid_share of at most 0.1 (1 of the 10 sessions" in msg
    with pytest.warns(DataWarning, match="only 1 test"):  # what the message offers works
        sp = last_session_split(df, valid_share=0)
    assert sp.test["session_id"].unique().to_list() == [9] and sp.valid.height == 0
    with pytest.raises(ConfigError, match=r"test_share=0\.1: all 9 sessions start at once \(0\)"):
        last_session_split(df.filter(pl.col("session_id") < 9))  # the test cut: no test_start
    with pytest.raises(ConfigError, match="the log holds 1 session") as err:
        last_session_split(df.filter(pl.col("session_id") == 0))
    assert "test_start" not in str(err.value)


# --- split folders written as one unit, with a manifest ------------------------------------------


def test_write_split_round_trips_with_a_manifest(tmp_path):
    from warmrec.data.prepared import prepare
    from warmrec.data.readers import load_interactions
    from warmrec.data.splitdir import read_manifest, write_split

    df = _basket_log(n_days=20)
    sp = last_session_split(df)
    doc = write_split(sp, tmp_path / "out", method="last_session", options={})
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "manifest.json",
        "test.parquet",
        "train.parquet",
        "valid.parquet",
    ]
    assert read_manifest(tmp_path / "out") == json.loads(json.dumps(doc, default=str))
    assert doc["files"]["test"]["rows"] == sp.test.height
    inter = load_interactions(tmp_path / "out")
    assert inter.split_info["manifest"]["method"] == "last_session"
    prep = prepare(inter)
    assert prep.info["split"] == "given" and prep.split.test.equals(sp.test)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dir left


def test_partial_or_mixed_split_folders_are_refused(tmp_path):
    from warmrec.data.readers import load_interactions
    from warmrec.data.splitdir import write_split

    df = _basket_log(n_days=20)
    out = tmp_path / "out"
    write_split(last_session_split(df), out, method="last_session")
    other = tmp_path / "other"
    write_split(last_session_split(df, test_share=0.2), other, method="last_session")
    (out / "test.parquet").unlink()  # a writer killed half-way (the old, file-by-file one)
    with pytest.raises(DataError, match="partial split folder") as e:
        load_interactions(out)
    assert "test.parquet" in str(e.value)
    shutil.copy(other / "test.parquet", out / "test.parquet")  # a part of another split
    with pytest.raises(DataError, match="does not match its manifest") as e:
        load_interactions(out)
    assert "test.parquet" in str(e.value)
    (out / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match="manifest"):
        load_interactions(out)


def test_a_split_folder_a_killed_writer_left_aside_reads_again(tmp_path):
    """A kill between atomic_dir's two renames left the previous split folder as ``.out.old``
    and nothing at ``out``: reading ``out`` said 'no such file or folder'."""
    from warmrec.data.readers import load_interactions
    from warmrec.data.splitdir import write_split

    sp = last_session_split(_basket_log(n_days=20))
    write_split(sp, tmp_path / "out", method="last_session")
    os.rename(tmp_path / "out", tmp_path / ".out.old")
    inter = load_interactions(tmp_path / "out")
    assert inter.parts is not None and inter.parts["test"].height == sp.test.height
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_write_split_refuses_parts_that_share_a_session_or_an_event(tmp_path):
    """A split whose parts share a session or an event was written, and no command could read
    the folder back ('a session appears in two parts of the split'): ``warmrec data split
    --method last_pair`` wrote one. Refused before anything is written."""
    from warmrec.data.readers import load_interactions
    from warmrec.data.split import last_pair_split
    from warmrec.data.splitdir import write_split

    df = _basket_log(n_days=20)
    with pytest.raises(ConfigError, match="last_pair split .* parts overlap"):
        write_split(last_pair_split(df, n_test=5, n_valid=5), tmp_path / "a", method="last_pair")
    with pytest.raises(DataError, match="a session appears in two parts"):
        write_split(leave_one_out(df), tmp_path / "b", method="loo")  # each session's last events
    users = df.rename({"session_id": "user_id"})  # a user log: the parts share no event
    write_split(leave_one_out(users), tmp_path / "c", method="loo")
    assert load_interactions(tmp_path / "c").parts["test"].height == users["user_id"].n_unique()
    dup = pl.concat([users, users.filter(pl.col("user_id") == 0)])  # user 0's events twice
    with pytest.raises(DataError, match="the same events are in two files"):
        write_split(leave_one_out(dup), tmp_path / "d", method="loo")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


def test_write_split_never_replaces_a_folder_of_other_files(tmp_path):
    from warmrec.data.splitdir import write_split

    sp = last_session_split(_basket_log(n_days=20))
    (tmp_path / "log.csv").write_text("keep me")
    with pytest.raises(DataError, match="refusing to replace it with a split folder"):
        write_split(sp, tmp_path, method="last_session")
    assert (tmp_path / "log.csv").read_text() == "keep me"
    write_split(sp, tmp_path / "out", method="last_session")
    write_split(sp, tmp_path / "out", method="last_session")  # an earlier split is replaced


def test_cli_data_split_writes_one_unit_that_train_reads_as_given(tmp_path):
    from click.testing import CliRunner

    from warmrec.cli.main import cli

    log = tmp_path / "log.parquet"
    _basket_log(n_days=20).write_parquet(log)
    out = tmp_path / "sp"
    r = CliRunner().invoke(
        cli, ["data", "split", str(log), "--method", "last_session", "--out", str(out), "--json"]
    )
    assert r.exit_code == 0, r.output
    assert json.loads((out / "manifest.json").read_text())["method"] == "last_session"
    r = CliRunner().invoke(
        cli, ["train", "--model", "pop", "--data", str(out), "--out", str(tmp_path / "m"), "--json"]
    )
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(
        cli,
        [
            "train",
            "--model",
            "pop",
            "--data",
            str(out),
            "--split",
            "loo",
            "--out",
            str(tmp_path / "m2"),
        ],
    )
    assert r.exit_code == 2 and "--resplit" in r.output
    r = CliRunner().invoke(
        cli,
        [
            "train",
            "--model",
            "pop",
            "--data",
            str(out),
            "--split",
            "loo",
            "--resplit",
            "--out",
            str(tmp_path / "m3"),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output


def test_atomic_dir_removes_temp_dirs_of_killed_writers(tmp_path):
    from warmrec.io import atomic_dir

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    old = time.time() - 3600
    stale = tmp_path / f".out.{dead.pid}.abc123.tmp"
    legacy = tmp_path / ".out.zz9_x.tmp"  # the older form, no process id: removed when a day old
    fresh_legacy = tmp_path / ".out.yy8_x.tmp"
    live = tmp_path / f".out.{os.getppid()}.def456.tmp"  # a live writer: kept
    for d in (stale, legacy, fresh_legacy, live):
        d.mkdir()
        (d / "train.parquet").write_bytes(b"x")
        os.utime(d, (old, old))
    os.utime(legacy, (old - 2 * 86400, old - 2 * 86400))
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "f").write_text("1")
    assert not stale.exists() and not legacy.exists()
    assert fresh_legacy.exists() and live.exists()
    assert (tmp_path / "out" / "f").read_text() == "1"


def test_last_pair_split_exact_rows_and_draw():
    from warmrec.data.prepared import prepare
    from warmrec.data.split import last_pair_split

    # sessions 0..4 with 2, 3, 4, 5, 3 events; items = 10 * session + position
    lens = [2, 3, 4, 5, 3]
    sess = np.repeat(np.arange(5), lens)
    pos = np.concatenate([np.arange(k) for k in lens])
    df = pl.DataFrame(
        {"session_id": sess, "item_id": sess * 10 + pos, "timestamp": pos * 60.0 + sess * 1e4}
    )
    # rows out of order: the split sorts by session and time
    sp = last_pair_split(df.reverse(), n_test=2, n_valid=1, seed=7)
    assert sp.kind == "sessions" and sp.info["short_sequences_dropped"] == 1
    drawn = np.random.default_rng(7).choice(4, 3, replace=False)  # over sessions 1, 2, 3, 4
    keys = np.array([1, 2, 3, 4])
    test_keys, valid_keys = set(keys[drawn[:2]]), set(keys[drawn[2:]])
    # train: every kept session minus its last event (session 0, too short, is left out)
    want_train = [s * 10 + p for s, k in zip(range(1, 5), lens[1:]) for p in range(k - 1)]
    assert sorted(sp.train["item_id"].to_list()) == sorted(want_train)
    for part, ks in ((sp.test, test_keys), (sp.valid, valid_keys)):
        assert set(part["session_id"].to_list()) == ks
        for k in ks:
            got = part.filter(pl.col("session_id") == k).sort("timestamp")["item_id"].to_list()
            assert got == [k * 10 + lens[k] - 2, k * 10 + lens[k] - 1]
    prep = prepare(df, split="last_pair", split_options={"n_test": 2, "n_valid": 1, "seed": 7})
    es = prep.test
    assert len(es) == 2 and ((es.ends - es.starts) == 1).all()  # the query is one item
    queries = prep.vocab.decode(es.items[es.starts])
    targets = prep.vocab.decode(es.targets)
    assert sorted(zip(queries, targets)) == sorted(
        (k * 10 + lens[k] - 2, k * 10 + lens[k] - 1) for k in test_keys
    )


def test_last_pair_split_refuses_too_few_sequences():
    from warmrec.data.split import last_pair_split

    df = pl.DataFrame({"session_id": [1, 1, 1], "item_id": [1, 2, 3], "timestamp": [1.0, 2, 3]})
    with pytest.raises(DataError, match="too few sequences"):
        last_pair_split(df, n_test=1, n_valid=1)
    with pytest.raises(ConfigError, match="min_session_length"):
        last_pair_split(df, n_test=1, n_valid=0, min_session_length=1)


def test_a_typo_or_a_date_on_positions_is_named():
    from warmrec.data.split import split

    with pytest.raises(
        ConfigError, match=r"unknown option 'test_strat' \(did you mean 'test_start'\?\)"
    ):
        split(SESS, "temporal", test_strat=200)
    positions = SESS.with_columns(pl.int_range(pl.len()).cast(pl.Float64).alias("timestamp"))
    with pytest.raises(ConfigError, match="is a date, but the log's times run from 0 to 14"):
        temporal_split(positions, test_start="2020-09-25")


def _log_with_anonymous_sessions() -> pl.DataFrame:
    """User 1 with three sessions (the middle one logged in half-way: its first row has no
    user), and three sessions without any user (guest checkouts, anonymous visits)."""
    rows = [  # session, user, item, time
        (1, 1, "a", 0.0),
        (1, 1, "b", 1.0),
        (2, None, "a", 10.0),
        (2, 1, "c", 11.0),
        (3, 1, "b", 20.0),
        (3, 1, "c", 21.0),
        (4, None, "a", 30.0),
        (4, None, "b", 31.0),
        (5, None, "b", 40.0),
        (5, None, "c", 41.0),
        (6, None, "c", 50.0),
        (6, None, "a", 51.0),
    ]
    return pl.DataFrame(
        rows,
        schema={
            "session_id": pl.Int64,
            "user_id": pl.Int64,
            "item_id": pl.Utf8,
            "timestamp": pl.Float64,
        },
        orient="row",
    )


@pytest.mark.parametrize("shuffle", [False, True])
def test_last_session_per_user_keeps_sessions_without_user_in_train(shuffle):
    # a null user_id (Online Retail, Diginetica) crashed the contiguous path with a TypeError,
    # and the window path made the anonymous sessions one user whose last session was a test
    df = _log_with_anonymous_sessions()
    if shuffle:  # interleaved sessions: the window path
        df = df.sample(fraction=1.0, shuffle=True, seed=3)
    with pytest.warns(DataWarning, match="3 of 6 sessions have no user_id"):
        sp = last_session_split(df, drop_unseen=False)
    assert sorted(sp.test["session_id"].unique().to_list()) == [3]
    assert sorted(sp.valid["session_id"].unique().to_list()) == [2]  # its user is 1
    assert sorted(sp.train["session_id"].unique().to_list()) == [1, 4, 5, 6]
    assert sp.info["sessions_without_user_in_train"] == 3
    assert sp.train.height + sp.valid.height + sp.test.height == df.height


def test_per_user_splits_keep_rows_without_user_in_train():
    df = _log_with_anonymous_sessions()
    n_anonymous = df["user_id"].null_count()
    # user_split: a null user joined no part and its rows vanished without a word
    with pytest.warns(DataWarning, match="have no user_id"):
        sp = user_split(df, test_frac=0.5, valid_frac=0.0, seed=0, drop_unseen=False)
    assert sp.train.height + sp.valid.height + sp.test.height == df.height
    assert sp.train["user_id"].null_count() == n_anonymous
    assert sp.info["events_without_user_in_train"] == n_anonymous
    # loo / loo_new: the rows without a user were one made-up user with a held-out last event
    for method in ("loo", "loo_new"):
        with pytest.warns(DataWarning, match="have no user_id"):
            sp = split(df, method)
        for part in (sp.valid, sp.test):
            assert part["user_id"].null_count() == 0, method
        assert sp.train["user_id"].null_count() == n_anonymous
    # time_new_learners: rows without a user are no learner arriving after the cut
    late = pl.DataFrame(
        [  # user, item, time: user 1 trains, user 7 arrives after the cut, guests throughout
            (1, "a", 0.0),
            (1, "b", 1.0),
            (None, "a", 2.0),
            (7, "a", 10.0),
            (7, "b", 11.0),
            (None, "b", 12.0),
            (None, "c", 13.0),
        ],
        schema={"user_id": pl.Int64, "item_id": pl.Utf8, "timestamp": pl.Float64},
        orient="row",
    )
    with pytest.warns(DataWarning, match="3 of 7 events have no user_id.*2 after the cut are"):
        sp = split(late, "time_new_learners", cut=10.0)
    assert _rows(sp.test, "user_id", "item_id") == [(7, "b")]
    assert sp.context is not None and _rows(sp.context, "user_id", "item_id") == [(7, "a")]
    assert _rows(sp.train, "user_id", "item_id") == [(None, "a"), (1, "a"), (1, "b")]


def test_temporal_refuses_a_valid_start_that_leaves_training_empty():
    # a valid_start at or before the first event gave an empty training part without a word;
    # the command line then blamed an empty validation part ("give valid_start")
    df = pl.DataFrame(
        {
            "session_id": [1, 1, 2, 2, 3, 3, 4, 4],
            "item_id": [1, 2, 1, 2, 1, 2, 1, 2],
            "timestamp": [0.0, 1, 10, 11, 20, 21, 30, 31],
        }
    )
    for vs in (0.0, -5.0):
        with pytest.raises(ConfigError, match="valid_start .* at or before the first event.*empty"):
            temporal_split(df, test_start=20.0, valid_start=vs, min_test_sessions=0)
    users = df.rename({"session_id": "user_id"})
    with pytest.raises(ConfigError, match="training would be empty"):
        temporal_split(users, test_start=20.0, valid_start=0.0, min_test_sessions=0)
    sp = temporal_split(df, test_start=20.0, valid_start=10.0, min_test_sessions=0)
    assert sp.train["session_id"].unique().to_list() == [1]


def test_last_session_by_days_refuses_holding_out_the_whole_log():
    df = pl.DataFrame(
        {
            "session_id": [1, 1, 2, 2, 3, 3],
            "item_id": [1, 2, 1, 2, 1, 2],
            "timestamp": [0.0, 60, DAY, DAY + 60, 2 * DAY, 2 * DAY + 60],
        }
    )
    with pytest.raises(ConfigError, match="hold out 3 days, but the log spans 2.001 days"):
        last_session_split(df, test_days=1.0, valid_days=2.0, drop_unseen=False)
    with pytest.raises(ConfigError, match="test_days=3 and valid_days=0"):
        last_session_split(df, test_days=3.0, valid_days=0.0, drop_unseen=False)
    sp = last_session_split(
        df, test_days=0.9, valid_days=0.9, drop_unseen=False, min_test_sessions=0
    )
    assert _rows(sp.train.unique("session_id"), "session_id") == [(1,)]


def test_temporal_valid_share_on_tied_first_starts_is_refused():
    """The share's validation cut on session starts tied at the first one left every part
    empty (train nothing, so valid and test lost every unseen item) with only a warning."""
    rows = []
    for s in range(9):
        rows += [(f"u{s}", f"s{s}", 1 + s % 3, 0.0), (f"u{s}", f"s{s}", 2 + s % 3, 1.0)]
    rows += [("u9", "s9", 1, 100.0), ("u9", "s9", 2, 101.0)]
    df = pl.DataFrame(rows, schema=["user_id", "session_id", "item_id", "timestamp"], orient="row")
    with pytest.raises(ConfigError, match=r"valid_share=0.1 puts the validation start at the"):
        split(df, "temporal", test_start=100.0)
    sp = split(df, "temporal", test_start=100.0, valid_share=0)  # what the message suggests
    assert sp.train.height == 18 and sp.valid.height == 0
