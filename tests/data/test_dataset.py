"""EvalSet construction: histories never see the future; users; dropped unknown targets."""

import numpy as np
import polars as pl
import pytest

from warmrec.data.dataset import EvalSet, SequenceDataset
from warmrec.data.vocab import ItemVocab
from warmrec.errors import DataError, DataWarning


def test_from_frames_history_is_strictly_earlier():
    hist = pl.DataFrame({"user_id": [1, 1, 2], "item_id": [1, 2, 3], "timestamp": [1.0, 2.0, 1.0]})
    tgt = pl.DataFrame({"user_id": [1, 2, 2], "item_id": [3, 1, 2], "timestamp": [3.0, 5.0, 6.0]})
    v = ItemVocab.from_ids([1, 2, 3])
    es = EvalSet.from_frames(hist, tgt, v)
    assert len(es) == 3
    got = {
        (k, tuple(v.decode(es.history(j))), v.decode([es.targets[j]])[0])
        for j, k in enumerate(es.keys.to_list())
    }
    assert got == {(1, (1, 2), 3), (2, (3,), 1), (2, (3, 1), 2)}
    b = es.batch(np.arange(3), 2)
    assert b.items.shape == (3, 2)


def test_from_frames_drops_unknown_targets_and_skips_unknown_history():
    hist = pl.DataFrame({"user_id": [1, 1], "item_id": [9, 2], "timestamp": [1.0, 2.0]})
    tgt = pl.DataFrame({"user_id": [1, 1], "item_id": [7, 3], "timestamp": [3.0, 4.0]})
    v = ItemVocab.from_ids([2, 3])
    es = EvalSet.from_frames(hist, tgt, v)
    assert es.n_dropped == 1 and len(es) == 1
    assert v.decode(es.history(0)) == [2]


def test_from_sessions_all_and_last():
    df = pl.DataFrame(
        {
            "session_id": [1, 1, 1, 2, 2, 3],
            "item_id": [1, 2, 3, 2, 1, 3],
            "timestamp": [1.0, 2, 3, 4, 5, 6],
        }
    )
    v = ItemVocab.from_ids([1, 2, 3])
    es = EvalSet.from_sessions(df, v)
    assert v.decode(es.targets) == [2, 3, 1]
    assert [v.decode(es.history(j)) for j in range(3)] == [[1], [1, 2], [2]]
    last = EvalSet.from_sessions(df, v, last_only=True)
    assert v.decode(last.targets) == [3, 1]


def test_dataset_users_and_counts():
    df = pl.DataFrame(
        {
            "user_id": ["a", "a", "b"],
            "session_id": [1, 1, 2],
            "item_id": [1, 2, 2],
            "timestamp": [1.0, 2, 3],
        }
    )
    ds = SequenceDataset.from_frame(df)
    assert ds.key == "session_id" and ds.user_vocab.decode(ds.users) == ["a", "b"]
    assert ds.item_counts().tolist() == [0, 1, 2]


def test_target_in_history_marks_the_repeats():
    # histories [1 2], [], [3 2 3], [4]; targets 2 (a repeat), 5, 3 (a repeat), 1
    items = np.array([1, 2, 3, 2, 3, 4])
    es = EvalSet(
        items,
        np.array([0, 2, 2, 5]),
        np.array([2, 2, 5, 6]),
        np.array([2, 5, 3, 1]),
        6,
        pl.Series("k", [0, 1, 2, 3]),
    )
    assert es.target_in_history().tolist() == [True, False, True, False]
    assert es.subset(np.array([1])).target_in_history().tolist() == [False]
    none = EvalSet(items, np.array([0]), np.array([0]), np.array([1]), 6, pl.Series("k", [0]))
    assert none.target_in_history().tolist() == [False]


def test_from_frames_never_reads_a_session_id_as_a_user_id():
    # session-keyed frames without a user column: session 1 is no user 1 of the user vocabulary
    hist = pl.DataFrame({"session_id": [1], "item_id": [10], "timestamp": [0.0]})
    tgt = pl.DataFrame({"session_id": [1], "item_id": [11], "timestamp": [1.0]})
    vocab, users = ItemVocab.from_ids([10, 11]), ItemVocab.from_ids([1, 2])
    es = EvalSet.from_frames(hist, tgt, vocab, user_vocab=users)
    assert es.history(0).tolist() == [1] and es.targets.tolist() == [2]
    # as from_sessions of the same events: no user where the log has none
    both = pl.concat([hist, tgt])
    assert es.users is None and EvalSet.from_sessions(both, vocab, user_vocab=users).users is None
    # with the user column, its user is read
    with_user = EvalSet.from_frames(
        hist, tgt.with_columns(user_id=pl.lit(2)), vocab, user_vocab=users
    )
    assert with_user.users.tolist() == [2]


def test_a_sequence_belongs_to_the_user_of_its_events_whatever_their_order():
    """The user of a sequence was the user of its first row in file order: a session whose
    first row had no user (or whose rows came out of time order with the user-less one first)
    was user 0 (unknown), although the splits give it the user of its other events."""
    df = pl.DataFrame(
        {
            "session_id": [1, 1, 1, 2, 2],
            "user_id": [None, "a", "a", "b", None],
            "item_id": [3, 1, 2, 2, 1],
            "timestamp": [9.0, 1, 2, 4, 5],  # session 1's first row is its latest
        }
    )
    ds = SequenceDataset.from_frame(df)
    assert ds.sequences.keys.to_list() == [1, 2]
    assert ds.user_vocab.decode(ds.users) == ["a", "b"]
    uv, v = ItemVocab.from_ids(["a", "b"]), ItemVocab.from_ids([1, 2, 3])
    for frame in (df, df.reverse()):
        es = EvalSet.from_sessions(frame, v, user_vocab=uv)
        assert es.keys.to_list() == [1, 1, 2] and uv.decode(es.users) == ["a", "a", "b"]
    anonymous = df.with_columns(pl.lit(None, dtype=pl.Utf8).alias("user_id"))
    assert EvalSet.from_sessions(anonymous, v, user_vocab=uv).users.tolist() == [0, 0, 0]


def test_a_sequence_under_several_users_is_refused_naming_them():
    # the user was whichever came first in the file: b here, a in the reversed file
    df = pl.DataFrame(
        {
            "session_id": [7, 7, 7],
            "user_id": ["b", None, "a"],
            "item_id": [1, 2, 3],
            "timestamp": [2.0, 3, 1],
        }
    )
    for frame in (df, df.reverse()):
        with pytest.raises(DataError, match=r"session_id 7 under users '[ab]', '[ab]'"):
            SequenceDataset.from_frame(frame)
        with pytest.raises(DataError, match="several users"):
            EvalSet.from_sessions(
                frame, ItemVocab.from_ids([1, 2, 3]), user_vocab=ItemVocab.from_ids(["a", "b"])
            )


def test_targets_tied_in_time_are_ordered_by_their_rows():
    """The documented order (time, then history before targets, then row order): of two targets
    of one key at one time, the second in row order has the first in its history, never the
    reverse; reversing the rows reverses who sees whom. ``prepare`` cuts the same examples."""
    from warmrec.data.prepared import prepare

    hist = pl.DataFrame({"user_id": [1, 1], "item_id": [1, 4], "timestamp": [1.0, 10.0]})
    tgt = pl.DataFrame({"user_id": [1, 1], "item_id": [2, 3], "timestamp": [10.0, 10.0]})
    v = ItemVocab.from_ids([1, 2, 3, 4])
    es = EvalSet.from_frames(hist, tgt, v)
    got = [(v.decode(es.history(j)), v.decode([es.targets[j]])[0]) for j in range(len(es))]
    assert got == [([1, 4], 2), ([1, 4, 2], 3)]  # a history row tied with both comes first
    es = EvalSet.from_frames(hist, tgt.reverse(), v)
    got = [(v.decode(es.history(j)), v.decode([es.targets[j]])[0]) for j in range(len(es))]
    assert got == [([1, 4], 3), ([1, 4, 3], 2)]
    log = pl.DataFrame(
        {"user_id": [1] * 5, "item_id": [1, 4, 2, 3, 5], "timestamp": [1.0, 2, 10, 10, 20]}
    )
    opts = {"test_start": 10.0, "valid_start": 2.0, "drop_unseen": False}
    with pytest.warns(DataWarning, match="only 3 test events"):
        prep = prepare(log, split="temporal", split_options=opts)
    assert prep.split.kind == "next_item"
    w, te = prep.vocab, prep.test
    got = [(w.decode(te.history(j)), w.decode([te.targets[j]])[0]) for j in range(len(te))]
    assert got == [([1, 4], 2), ([1, 4, 2], 3), ([1, 4, 2, 3], 5)]


def test_from_frames_without_history_reads_the_targets_alone():
    """An empty history table without columns (``pl.DataFrame()``) raised Polars'
    ColumnNotFoundError; one with the columns and no rows worked."""
    tgt = pl.DataFrame({"user_id": [1, 1, 2], "item_id": [2, 3, 1], "timestamp": [1.0, 2, 1]})
    v = ItemVocab.from_ids([1, 2, 3])
    for hist in (pl.DataFrame(), tgt.head(0), tgt.head(0).drop("user_id").drop("timestamp")):
        es = EvalSet.from_frames(hist, tgt, v)
        assert [v.decode(es.history(j)) for j in range(3)] == [[], [2], []]
    with pytest.raises(DataError, match="different sequence keys"):
        EvalSet.from_frames(tgt.rename({"user_id": "session_id"}), tgt, v)


def test_from_sessions_of_user_keyed_sequences_reads_their_users():
    """Sequences keyed by ``user_id`` (a ``user`` split of a user log) raised Polars'
    DuplicateError when given a user vocabulary (``Split.valid_set(vocab, user_vocab)``)."""
    df = pl.DataFrame(
        {"user_id": ["b", "b", "a", "a"], "item_id": [1, 2, 2, 3], "timestamp": [1.0, 2, 3, 4]}
    )
    uv, v = ItemVocab.from_ids(["a", "b"]), ItemVocab.from_ids([1, 2, 3])
    es = EvalSet.from_sessions(df, v, user_vocab=uv)
    assert es.keys.to_list() == ["b", "a"] and uv.decode(es.users) == ["b", "a"]
