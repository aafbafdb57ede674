"""make_tasks / TaskSet: support strictly before query, query batches hold only query targets."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from tests.conftest import cyclic_log
from warmrec import SequenceDataset
from warmrec.errors import ConfigError, DataError
from warmrec.meta import make_tasks


def _user_log() -> pl.DataFrame:
    """3 users x 2 sessions of 4 events; strictly increasing times within a user."""
    rows = []
    item = 1
    for u in range(3):
        for s in range(2):
            for k in range(4):
                t = 1000.0 * u + 100.0 * s + k
                rows.append((f"u{u}s{s}", f"u{u}", item, t))
                item += 1
    df = pl.DataFrame(rows, schema=["session_id", "user_id", "item_id", "timestamp"], orient="row")
    return df.sample(fraction=1.0, shuffle=True, seed=3)  # row order must not matter


def _check_task(tasks, t, max_len=6):
    seq_ts = tasks.dataset.sequences
    sup = tasks.support(t)
    query, context = tasks.query(t)
    n = tasks.n_events(t)
    n_sup = int(tasks.n_support[t])
    assert sup.n_events == n_sup
    # query targets: events of the query sequences after their context
    q_mask = np.ones(query.n_events, dtype=bool)
    for i in range(len(query)):
        q_mask[query.offsets[i] : query.offsets[i] + context[i]] = False
    assert int(q_mask.sum()) == n - n_sup
    assert sup.timestamps.max() < query.timestamps[q_mask].min()  # strictly before
    batch = tasks.query_batch(t, max_len)
    targets = batch["targets"].numpy()
    assert sorted(targets[targets > 0].tolist()) == sorted(query.items[q_mask].tolist())
    assert not set(targets[targets > 0].tolist()) & set(sup.items.tolist())
    assert seq_ts.items.dtype == np.int64


def test_sequence_tasks_support_before_query():
    ds = SequenceDataset.from_frame(cyclic_log(n_sessions=10, n_items=50, length=9, seed=1))
    tasks = make_tasks(ds, by="sequence", min_len=4, support_frac=0.4)
    assert len(tasks) == 10
    assert (tasks.n_support == 4).all()  # round(0.4 * 9)
    for t in range(len(tasks)):
        _check_task(tasks, t)
        # support is the first 4 events of the sequence, in order
        seq = ds.sequences[int(tasks.sequences(t)[0])]
        np.testing.assert_array_equal(tasks.support(t).items, seq[:4])
        sd = tasks.support_dataset(t)
        assert sd.vocab is ds.vocab and sd.sequences.n_events == 4


def test_user_tasks_span_sessions():
    ds = SequenceDataset.from_frame(_user_log())
    assert ds.key == "session_id"
    tasks = make_tasks(ds, by="user", n_support=5)
    assert len(tasks) == 3
    for t in range(3):
        assert len(tasks.sequences(t)) == 2
        assert tasks.n_events(t) == 8
        _check_task(tasks, t)
        sup = tasks.support(t)
        assert sup.lengths.tolist() == [4, 1]  # first session + 1 event of the second
        query, context = tasks.query(t)
        assert len(query) == 1 and context.tolist() == [1]  # the support event is context
        assert tasks.query_batch(t, 6)["users"].tolist() == [t + 1]


def test_min_len_sampling_and_errors():
    df = cyclic_log(n_sessions=6, n_items=30, length=3, seed=0)
    ds = SequenceDataset.from_frame(df)
    with pytest.raises(DataError):
        make_tasks(ds, min_len=4)
    with pytest.raises(ConfigError):
        make_tasks(ds, by="item")
    with pytest.raises(ConfigError):
        make_tasks(ds, support_frac=1.0)
    with pytest.raises(DataError):
        make_tasks(ds, by="user")  # no user ids
    tasks = make_tasks(ds, min_len=3)
    assert (tasks.n_support == 2).all()
    a = tasks.sample(4, np.random.default_rng(0))
    assert len(set(a.tolist())) == 4
    np.testing.assert_array_equal(a, tasks.sample(4, np.random.default_rng(0)))
    train, held = tasks.split(2, seed=0)
    assert len(train) == 4 and len(held) == 2
    all_seqs = np.concatenate([train.seq_index, held.seq_index])
    assert sorted(all_seqs.tolist()) == list(range(6))
