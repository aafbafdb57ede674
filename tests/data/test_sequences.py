"""Compact sequences: grouping order, padding windows, prefix/target expansion."""

import numpy as np
import polars as pl

from warmrec.data.sequences import SequenceData, pad_windows
from warmrec.data.vocab import ItemVocab


def _frame():
    return pl.DataFrame(
        {
            "session_id": [2, 1, 1, 2, 1, 3],
            "item_id": [10, 20, 30, 40, 10, 50],
            "timestamp": [5.0, 1.0, 2.0, 6.0, 2.0, 9.0],
        }
    )


def test_from_frame_orders_by_time_and_keeps_ties_in_row_order():
    v = ItemVocab.from_ids([10, 20, 30, 40, 50])
    s = SequenceData.from_frame(_frame(), v)
    assert s.keys.to_list() == [1, 2, 3]
    assert s.offsets.tolist() == [0, 3, 5, 6]
    # session 1: 20 @1, then 30 and 10 tie @2 -> row order 30, 10
    assert v.decode(s[0]) == [20, 30, 10]
    assert v.decode(s[1]) == [10, 40]
    assert s.lengths.tolist() == [3, 2, 1]


def test_unknown_items_dropped():
    v = ItemVocab.from_ids([10, 20])
    s = SequenceData.from_frame(_frame(), v)
    assert s.n_events == 3 and v.decode(s.items) == [20, 10, 10]


def test_pad_windows_left_pads_and_keeps_most_recent():
    items = np.array([1, 2, 3, 4, 5])
    out = pad_windows(items, np.array([0, 3, 2]), np.array([3, 5, 2]), 2)
    assert out.tolist() == [[2, 3], [4, 5], [0, 0]]
    out = pad_windows(items, np.array([3]), np.array([5]), 4)
    assert out.tolist() == [[0, 0, 4, 5]]


def test_prefix_targets_and_subset():
    v = ItemVocab.from_ids([10, 20, 30, 40, 50])
    s = SequenceData.from_frame(_frame(), v)
    ends, targets = s.prefix_targets(1)
    assert ends.tolist() == [1, 2, 4]
    assert v.decode(targets) == [30, 10, 40]
    assert s.sequence_of(ends).tolist() == [0, 0, 1]
    sub = s.subset(np.array([2, 0]))
    assert sub.keys.to_list() == [3, 1]
    assert v.decode(sub.items) == [50, 20, 30, 10]
    assert sub.padded(2).tolist() == [[0, 5], [3, 1]]


def test_presorted_and_shuffled_input_give_the_same_sequences():
    rng = np.random.default_rng(0)
    n = 400
    df = pl.DataFrame(
        {
            "session_id": np.repeat(np.arange(50), 8),
            "item_id": rng.integers(1, 30, n),
            "timestamp": np.repeat(rng.permutation(50) * 100.0, 8) + np.tile(np.arange(8), 50) // 2,
        }
    )  # sorted by key and time, with ties inside sessions and sessions out of time order
    v = ItemVocab.from_ids(df["item_id"])
    a = SequenceData.from_frame(df, v)
    b = SequenceData.from_frame(df.sample(fraction=1.0, shuffle=True, seed=1), v)
    assert a.keys.to_list() == sorted(
        a.keys.to_list(), key=lambda k: df.filter(pl.col("session_id") == k)["timestamp"].min()
    )
    assert np.array_equal(a.offsets, b.offsets)
    # ties inside a session keep row order, so only the multiset per session must agree
    for i in range(len(a)):
        assert sorted(a[i].tolist()) == sorted(b[i].tolist())
    c = SequenceData.from_frame(df.reverse().reverse(), v)
    assert np.array_equal(a.items, c.items)


def test_stable_argsort_matches_a_stable_sort_on_every_path():
    from warmrec.data.sequences import stable_argsort

    rng = np.random.default_rng(1)
    cases = [
        rng.integers(0, 50, 5_000).astype(np.float64),  # whole floats with many ties: packed
        rng.integers(-(10**9), 10**9, 5_000),  # ints: packed
        rng.integers(0, 50, 5_000) + 0.5,  # fractional floats: stable Polars sort
        np.array([0.0, 2.0**62, -1.0, 2.0**62]),  # span too wide to pack
        np.array([3.0]),
        np.zeros(0),
    ]
    for v in cases:
        got = stable_argsort(v)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, np.argsort(v, kind="stable"))
