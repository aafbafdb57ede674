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


def test_sub_windows_support_precedes_query_and_respects_melo_options():
    from warmrec.meta.tasks import sub_windows

    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(2, 60))
        k = int(rng.integers(1, 40))
        nq, nw, mw = int(rng.integers(1, 6)), int(rng.integers(1, 5)), int(rng.integers(1, 5))
        ml = int(rng.integers(0, 40))
        if (min(n, ml) if ml else n) < 2:
            continue
        sup, (q0, q1) = sub_windows(n, k, nq, n_windows=nw, min_window=mw, max_len=ml, rng=rng)
        cut = min(n, ml) if ml else n
        assert sup[0][0] == 0 and sup[-1][1] == q0  # support = the first k events, contiguous
        assert all(a < b and b <= c for (a, b), (c, _) in zip(sup, sup[1:] + [(q0, q1)]))
        assert all(b == c for (_, b), (c, _) in zip(sup, sup[1:]))
        assert 1 <= len(sup) <= nw
        if q0 >= mw:
            assert all(b - a >= mw for a, b in sup)
        assert q0 < q1 <= min(q0 + nq, cut)  # query after the support, n_query, max_len
    assert sub_windows(10, 6, 2, n_windows=3, min_window=2) == ([(0, 2), (2, 4), (4, 6)], (6, 8))
    assert sub_windows(10, 5, 9, n_windows=3, min_window=2) == ([(0, 3), (3, 5)], (5, 10))
    assert sub_windows(100, 50, 3, max_len=30) == ([(0, 29)], (29, 30))


def test_meta_tasks_with_sub_windows_never_train_across_a_window_or_on_the_query():
    from tests.conftest import tiny_net
    from warmrec.data.sequences import SequenceData
    from warmrec.data.vocab import ItemVocab
    from warmrec.meta.maml import MetaModel, TaskStream
    from warmrec.registry import get_model

    items = np.arange(1, 21, dtype=np.int64)
    seqs = SequenceData(np.array([0, 20]), items, pl.Series("key", ["u"]))
    ds = SequenceDataset(seqs, ItemVocab.from_ids(pl.Series(np.arange(1, 21))), "user_id")
    model = get_model("sasrec", tiny_net("sasrec", max_len=10))
    model.fit(ds, epochs=1, progress=False)
    meta = MetaModel(
        model,
        {
            "train_shots": (8,),
            "n_query": 2,
            "n_support_windows": 3,
            "min_window": 2,
            "max_seq_len": 12,
            "inner_steps": 2,
        },
    )
    stream = TaskStream(meta, ds)
    (task,) = next(stream.batches(1, np.random.default_rng(0)))
    for b in task.support:
        x, t = b["items"].numpy(), b["targets"].numpy()
        assert t.max() <= 8  # item ids 1..8 = the first 8 events: no query item is a target
        # a next-item target is its input's successor inside one window (ids are consecutive)
        for row_x, row_t in zip(x, t):
            keep = (row_t > 0) & (row_x > 0)
            assert np.all(row_t[keep] == row_x[keep] + 1)
        assert (t > 0).sum() < 7  # 3 windows of 8 events give 8 - 3 = 5 targets, not 7
    assert task.targets.tolist() == [9, 10]


def _events_of(tasks, t):
    return tasks.events(t).tolist()


def test_an_episode_of_a_user_task_trains_within_sessions_and_queries_the_rest():

    from tests.conftest import tiny_net
    from warmrec.meta.tasks import Episodes
    from warmrec.registry import get_model

    ds = SequenceDataset.from_frame(_user_log())
    tasks = make_tasks(ds, by="user", n_support=5)
    model = get_model("sasrec", tiny_net("sasrec", max_len=6))  # only its training format
    rng = np.random.default_rng(0)
    for t in range(len(tasks)):
        ev = _events_of(tasks, t)  # 8 events: session 1 = ev[:4], session 2 = ev[4:]
        task = tasks.episode(t, model, 2, rng, Episodes())
        assert len(task.support) == 2  # one batch per inner step
        for b in task.support:
            x, y = b["items"].numpy(), b["targets"].numpy()
            pairs = {(int(i), int(j)) for xi, yi in zip(x, y) for i, j in zip(xi, yi) if j > 0}
            # next-item pairs of the first session only: ev[3] -> ev[4] crosses sessions and
            # ev[4] (the 5th support event) has no successor in the support
            assert pairs == {(ev[0], ev[1]), (ev[1], ev[2]), (ev[2], ev[3])}
        assert task.targets.tolist() == ev[5:]  # the query: everything after the support
        # each query item's history is every earlier event of the user, across sessions
        assert task.hist.items[0].tolist()[-5:] == ev[:5]
        drawn = tasks.episode(t, model, 1, rng, Episodes(shots=(2,), n_query=1))
        assert drawn.targets.tolist() == [ev[2]]  # support size drawn from shots, 1 query


def test_a_stream_samples_meta_batches_and_stops_after_total():
    from types import SimpleNamespace

    from tests.conftest import tiny_net
    from warmrec.meta.tasks import Episodes, TaskStream
    from warmrec.registry import get_model

    ds = SequenceDataset.from_frame(cyclic_log(n_sessions=10, n_items=50, length=9, seed=1))
    tasks = make_tasks(ds, n_support=4)
    meta = SimpleNamespace(
        base=get_model("sasrec", tiny_net("sasrec", max_len=6)),
        config=SimpleNamespace(inner_steps=1),
    )
    stream = TaskStream(meta, tasks, Episodes(n_query=1), per_epoch=3, total=5)
    assert stream.n_batches(4) == 3
    rng = np.random.default_rng(0)
    epochs = [list(stream.batches(4, rng)) for _ in range(3)]
    assert [len(e) for e in epochs] == [3, 2, 0]
    assert all(len(b) == 4 for e in epochs for b in e)
    # a pass: every task once per epoch
    full = TaskStream(meta, tasks, Episodes(n_query=1))
    assert full.n_batches(4) == 3
    firsts = [task.hist.items[0, -1].item() for b in full.batches(4, rng) for task in b]
    assert len(firsts) == 10


def test_query_batch_with_context_trains_the_seen_bias_on_the_scoring_seen_sets():
    """A long task in windows of 4: with the model's ``seen_context`` its query targets get the
    last ``seen_len`` items of the sequence as seen set (as scoring), not the window's prefix;
    without it (the default) the batch is as before."""
    import torch

    from warmrec import get_model
    from warmrec.registry import model_class

    n = 13
    df = pl.DataFrame(
        {
            "user_id": [1] * n,
            "item_id": list(range(1, n + 1)),
            "timestamp": [float(t) for t in range(n)],
        }
    )
    ds = SequenceDataset.from_frame(df)
    assert ds.sequences.items.tolist() == list(range(1, n + 1))
    tasks = make_tasks(ds, by="sequence", n_support=3)
    cfg = {**model_class("sasrec").test_config, "max_len": 4, "seen_len": 20}
    model = get_model("sasrec", cfg)
    torch.manual_seed(0)
    model.setup_training(ds)
    got: dict[int, set[int]] = {}

    def loss(hidden, targets, weight, bias, seen=None):
        for y, row in zip(targets.tolist(), seen[0].tolist(), strict=True):
            got[y] = set(row) - {0}
        return hidden.sum() * 0.0

    model.loss_fn = loss
    batch = tasks.query_batch(0, 4, context=model.seen_context)
    model.training_step(batch)
    assert sorted(got) == list(range(4, n + 1))  # the query: items 4..13
    assert all(seen == set(range(1, y)) for y, seen in got.items()), got
    plain = tasks.query_batch(0, 4)
    assert "before" not in plain
    assert torch.equal(plain["targets"], batch["targets"])
    assert torch.equal(plain["items"], batch["items"])


def test_meta_training_episodes_are_cold_users_for_ssept():
    """A meta-training episode is a cold user's, as meta-test users are scored
    (``MetaModel.adapt``: no user): SSE-PT reads its support as the unknown user (the mean user
    vector). It read the task's own user row, which the global model learned from the whole
    history -- the query included -- while the query scored as the unknown user."""
    import torch

    from warmrec import get_model
    from warmrec.experiments.studies.coldstart import user_sequences
    from warmrec.meta.maml import MetaModel, TaskStream
    from warmrec.meta.tasks import support_batches

    rows = [(u, (3 * u + i) % 10 + 1, i) for u in range(1, 9) for i in range(8)]
    df = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    data = user_sequences(df)
    base = get_model("ssept", {"d_item": 8, "d_user": 4, "n_heads": 1, "n_layers": 1, "max_len": 8})
    base.fit(data, epochs=1, progress=False)
    assert bool(base.net.trained[1:].all())  # every task's user has a learned row
    meta = MetaModel(base, {"algorithm": "maml", "inner_steps": 1, "train_shots": [3]})
    tasks = next(TaskStream(meta, data).batches(8, np.random.default_rng(0)))
    assert len(tasks) == 8
    for task in tasks:
        assert task.hist.users is None  # the query: the unknown user
        for batch in task.support:
            assert torch.equal(batch["users"], torch.zeros_like(batch["users"]))
    # the support batch is the one a meta-test user with those 3 events adapts on
    items = data.sequences.items[:3]
    cold = support_batches(base, items, 1, np.random.default_rng(0), data.vocab, "user_id")
    assert cold[0]["users"].tolist() == [0]
