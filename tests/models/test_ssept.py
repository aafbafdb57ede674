"""SSE-PT: SSE replacement rates, determinism without SSE, unknown users, personalisation,
learning a known next item, save/load."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from tests.conftest import assert_learns_cycle, assert_roundtrip, cyclic_log, tiny_net
from warmrec import EvalSet, SequenceDataset, evaluate, get_model
from warmrec.data.dataset import Batch
from warmrec.data.vocab import ItemVocab
from warmrec.models.ssept import SSEPT, sse_replace

FAST = tiny_net("ssept", ffn_dim=32, dropout_all=0.0, sse_item=0.0, sse_user=0.0)


def with_users(df: pl.DataFrame, n_users: int) -> pl.DataFrame:
    return df.with_columns((pl.col("session_id") % n_users + 1).alias("user_id"))


@pytest.fixture(scope="module")
def cyclic_split():
    df = with_users(cyclic_log(n_sessions=200, n_items=20, length=8, seed=0), 10)
    vocab = ItemVocab.from_ids(df["item_id"])
    train = SequenceDataset.from_frame(df.filter(pl.col("session_id") < 160), vocab)
    valid = EvalSet.from_sessions(
        df.filter(pl.col("session_id") >= 160), vocab, user_vocab=train.user_vocab
    )
    return train, valid


def test_sse_replace_rates_and_padding():
    torch.manual_seed(0)
    items = torch.randint(1, 50, (400, 20))
    items[:, :5] = 0  # left padding
    targets = torch.roll(items, -1, 1)
    targets[:, -1] = 7
    targets[:, :8] = 0  # positions without a target (covered by a later window)
    users = torch.randint(1, 30, (20000,))
    same = sse_replace(items, targets, users, p_item=0.0, p_user=0.0, n_items=50, n_users=30)
    assert all(torch.equal(a, b) for a, b in zip(same, (items, targets, users)))
    # a huge catalogue: a random replacement practically never equals the original item
    big = 10**9
    x, y, u = sse_replace(items, targets, users, p_item=0.25, p_user=0.5, n_items=big, n_users=30)
    assert torch.equal(x[:, :5], items[:, :5]) and (x[:, 5:] > 0).all()
    assert (y[:, :8] == 0).all() and (y[:, 8:] > 0).all()
    assert ((x >= 0) & (x < big)).all() and ((u >= 1) & (u < 30)).all()
    changed = (x != items)[:, 5:].float().mean().item()
    assert 0.23 < changed < 0.27
    assert 0.46 < (u != users).float().mean().item() < 0.5  # 0.5 * (1 - 1/29) expected
    # a replaced input is also the previous position's target (the same event), unless that
    # position was replaced too (its own target is then another random item)
    hit = (x != items)[:, 9:] & (x == items)[:, 8:-1]
    assert hit.sum() > 100
    assert torch.equal(y[:, 8:-1][hit], x[:, 9:][hit])
    assert ((y != targets) & (x == items) & (torch.roll(x, -1, 1) == torch.roll(items, -1, 1)))[
        :, 8:-1
    ].sum() == 0  # untouched events keep their targets
    x1, _, _ = sse_replace(items, targets, users, p_item=1.0, p_user=0.0, n_items=big, n_users=30)
    assert (x1[:, 5:] != items[:, 5:]).all()


def test_ssept_learns_the_cycle_with_sse(cyclic_split):
    train, valid = cyclic_split
    cfg = dict(FAST, sse_item=0.05, sse_user=0.5)
    model = get_model("ssept", cfg).fit(train, valid, epochs=5, lr=1e-2, batch_size=32, seed=0)
    assert isinstance(model, SSEPT)
    assert_learns_cycle(model, valid)


def test_without_sse_training_is_deterministic_and_single_user_equals_unknown():
    df = cyclic_log(n_sessions=60, n_items=20, length=6, seed=3).with_columns(
        pl.lit("only").alias("user_id")
    )
    train = SequenceDataset.from_frame(df)
    assert train.user_vocab.n_ids == 1
    a = get_model("ssept", FAST).fit(train, epochs=2, batch_size=32, seed=5)
    b = get_model("ssept", FAST).fit(train, epochs=2, batch_size=32, seed=5)
    items = a.encode_histories([[3, 4, 5], [10, 11]]).items
    known = Batch(items, torch.tensor([1, 1]))
    unknown = Batch(items, torch.tensor([0, 0]))
    assert torch.equal(a.score(known), b.score(known))
    # the unknown user gets the mean user embedding, i.e. the single user's
    torch.testing.assert_close(a.score(unknown), a.score(known))
    torch.testing.assert_close(a.score(Batch(items)), a.score(known))


def test_unknown_and_out_of_range_users_get_the_mean_user(cyclic_split):
    train, _ = cyclic_split
    model = get_model("ssept", FAST).fit(train, epochs=1, batch_size=64)
    items = model.encode_histories([[3, 4, 5], [9]]).items
    s0 = model.score(Batch(items, torch.tensor([0, 0])))
    assert torch.isfinite(s0[:, 1:]).all()
    torch.testing.assert_close(model.score(Batch(items)), s0)
    torch.testing.assert_close(model.score(Batch(items, torch.tensor([999, -1]))), s0)
    net = model.net
    with torch.no_grad():
        mean = net.user.weight[1:].mean(0)
        torch.testing.assert_close(net.user_vectors(torch.tensor([0]))[0], mean)


def test_users_personalise():
    """Sessions of two items whose second item depends only on the user (user u -> item 12 + u):
    SSE-PT (no SSE) learns it from the user embedding; the item history alone cannot."""
    rng = np.random.default_rng(0)
    n = 400
    users = rng.integers(1, 5, n)
    first = rng.integers(1, 13, n)
    second = 12 + users
    df = pl.DataFrame(
        {
            "session_id": np.repeat(np.arange(n), 2),
            "user_id": np.repeat(users, 2),
            "item_id": np.stack([first, second], 1).ravel(),
            "timestamp": np.tile([0.0, 1.0], n) + np.repeat(np.arange(n), 2) * 10.0,
        }
    )
    train = SequenceDataset.from_frame(df.filter(pl.col("session_id") < 300))
    valid = EvalSet.from_sessions(
        df.filter(pl.col("session_id") >= 300), train.vocab, user_vocab=train.user_vocab
    )
    cfg = dict(FAST, max_len=4)
    model = get_model("ssept", cfg).fit(train, valid, epochs=8, lr=1e-2, batch_size=64)
    hr1 = evaluate(model, valid, ["hr@1"])["hr@1"]
    assert hr1 >= 0.9
    no_users = EvalSet.from_sessions(df.filter(pl.col("session_id") >= 300), train.vocab)
    assert evaluate(model, no_users, ["hr@1"])["hr@1"] < 0.5


def test_ssept_save_load_roundtrip(cyclic_split, tmp_path):
    train, valid = cyclic_split
    model = get_model("ssept", FAST).fit(train, epochs=1, batch_size=64)
    loaded = assert_roundtrip(model, valid, tmp_path / "m", n=20)
    assert loaded.user_vocab is not None and len(loaded.user_vocab) == len(train.user_vocab)
    batch = valid.batch(np.arange(20), loaded.history_len)  # the histories compared above
    assert batch.users is not None and (batch.users > 0).all()


def test_users_without_training_sequences_are_unknown(tmp_path):
    """Under the cold-start split ``user`` the user vocabulary covers the whole log, so a test
    user had an index and scored with its own row, never trained (the random init); the mean
    user also averaged those rows in, and SSE drew them as substitutes. They are unknown users
    now: the mean of the trained rows, which SSE alone draws from."""
    import warmrec
    from warmrec.models.base import Recommender

    rng = np.random.default_rng(0)
    rows = []
    for u in range(60):
        start = int(rng.integers(0, 20))
        rows += [(f"u{u}", int((start + j) % 20 + 1), float(u * 100 + j)) for j in range(6)]
    df = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    prep = warmrec.prepare(df, split="user")
    test_users = np.unique(prep.test.users)
    assert (test_users > 0).all() and not set(test_users) & set(np.unique(prep.train.users))
    m = get_model("ssept", {**tiny_net("ssept"), "sse_user": 0.9})
    m.fit(prep.train, prep.valid, epochs=2, progress=False)
    trained = m.net.trained
    assert not trained[0] and not trained[torch.from_numpy(test_users)].any()
    assert int(trained.sum()) == len(np.unique(prep.train.users))
    batch = prep.test.batch(np.arange(len(prep.test)), m.history_len)
    unknown = Batch(batch.items, torch.zeros_like(batch.users))
    torch.testing.assert_close(m.score(batch), m.score(unknown))
    w = m.net.user.weight.detach()
    mean = m.net.user_vectors(torch.tensor([0]))[0].detach()
    torch.testing.assert_close(mean, w[trained].mean(0))
    # SSE's substitutes: the trained users only
    users = torch.full((2000,), int(np.unique(prep.train.users)[0]))
    pool = trained.nonzero()[:, 0]
    _, _, drawn = sse_replace(
        torch.ones(2000, 3, dtype=torch.long), torch.ones(2000, 3, dtype=torch.long), users,
        p_item=0.0, p_user=1.0, n_items=21, n_users=len(trained), pool=pool,
    )  # fmt: skip
    assert bool(trained[drawn].all())
    # saved and loaded, the mask comes back; a model saved before it reads as all trained
    loaded = Recommender.load(m.save(tmp_path / "m"))
    torch.testing.assert_close(loaded.score(batch), m.score(batch))
    state = {k: v for k, v in m.get_state().items() if not k.endswith("trained")}
    loaded.set_state(state)
    assert bool(loaded.net.trained[1:].all()) and not loaded.net.trained[0]


def test_users_whose_training_sequences_have_one_event_are_unknown():
    """A user with one event in training (before a temporal cut, say) has no training window:
    its row never trained, yet it was marked trained, so it scored with its random init, was
    averaged into the mean user and drawn by SSE as a substitute. It is an unknown user now,
    as a user without training sequences is."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(30):
        start = int(rng.integers(0, 20))
        n = 1 if u < 5 else 6  # u0-u4: one training event each
        rows += [(f"u{u}", int((start + j) % 20 + 1), float(u * 100 + j)) for j in range(n)]
    df = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    train = SequenceDataset.from_frame(df)
    m = get_model("ssept", FAST).fit(train, epochs=2, progress=False, seed=0)
    one = train.user_vocab.lookup(["u0", "u1"]).tolist()
    data = m.training_data(train)
    assert not set(one) & set(data.window_users(np.arange(len(data))).tolist())
    assert not m.net.trained[one].any()
    assert int(m.net.trained.sum()) == 25
    items = torch.tensor([[3, 4, 5], [3, 4, 5]])
    own = m.score(Batch(items, torch.tensor(one)))
    torch.testing.assert_close(own, m.score(Batch(items, torch.zeros(2, dtype=torch.long))))


def test_sse_draws_replacing_items_from_the_training_items(monkeypatch):
    """The vocabulary covers every part of a split: SSE drew its replacing items from all of it,
    so an item that only the test events bring was trained as an input and, above all, as a
    target at random (its score pulled up by the test part). It draws from the items with
    training events now (and as before where every item has some)."""
    import warmrec.models.ssept as ssept_module

    df = with_users(cyclic_log(n_sessions=60, n_items=20, length=6, seed=0), 5)
    held = pl.DataFrame({"session_id": [999, 999], "item_id": [21, 22]}).with_columns(
        timestamp=pl.Series([9e9, 9e9 + 60])
    )
    vocab = ItemVocab.from_ids(
        pl.concat([df["item_id"], held["item_id"].cast(df["item_id"].dtype)])
    )
    train = SequenceDataset.from_frame(df, vocab)
    held_out = torch.tensor(vocab.encode([21, 22]).tolist())
    seen: list[torch.Tensor] = []
    real = ssept_module.sse_replace

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        seen.extend([out[0], out[1]])
        return out

    monkeypatch.setattr(ssept_module, "sse_replace", spy)
    cfg = {**FAST, "sse_item": 0.9}
    get_model("ssept", cfg).fit(train, epochs=2, progress=False, seed=0)
    drawn = torch.cat([t.reshape(-1) for t in seen])
    assert len(drawn) and not torch.isin(drawn, held_out).any()
    # every item with training events: the pool is the whole range, drawn as before
    m = get_model("ssept", cfg)
    m.setup_training(SequenceDataset.from_frame(df))
    assert m._item_pool is None
