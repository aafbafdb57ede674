"""BST: learns a known next item, personalises through user features, keeps its feature
encoding and codes through save/load, scores the whole catalogue in one product."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from tests.conftest import assert_learns_cycle, tiny_net
from warmrec import EvalSet, SequenceDataset, evaluate, get_model
from warmrec.data.dataset import Batch
from warmrec.models import Recommender
from warmrec.models.bst import BST

FAST = tiny_net("bst", d=32, n_heads=2, ffn_dim=64, mlp=(32,), feature_dim=8, dropout_all=0.0)


@pytest.fixture(scope="module")
def segments():
    """Two-item sessions whose second item is set by the user's segment (a user feature):
    segment s -> item 13 + s. Items carry a colour feature."""
    rng = np.random.default_rng(0)
    n, n_users = 400, 40
    users = rng.integers(1, n_users + 1, n)
    first = rng.integers(1, 13, n)
    second = 13 + users % 4
    df = pl.DataFrame(
        {
            "session_id": np.repeat(np.arange(n), 2),
            "user_id": np.repeat(users, 2),
            "item_id": np.stack([first, second], 1).ravel(),
            "timestamp": np.tile([0.0, 1.0], n) + np.repeat(np.arange(n), 2) * 10.0,
        }
    )
    user_features = pl.DataFrame(
        {
            "user_id": np.arange(1, n_users + 1),
            "segment": [f"s{u % 4}" for u in range(1, n_users + 1)],
            "age": [str(20 + u) for u in range(1, n_users + 1)],
        }
    )
    item_features = pl.DataFrame(
        {"item_id": np.arange(1, 17), "colour": [["red"], ["blue", "red"]] * 8}
    )
    train = SequenceDataset.from_frame(
        df.filter(pl.col("session_id") < 300),
        item_features=item_features,
        user_features=user_features,
    )
    held = df.filter(pl.col("session_id") >= 300)
    valid = EvalSet.from_sessions(held, train.vocab, user_vocab=train.user_vocab)
    anonymous = EvalSet.from_sessions(held, train.vocab)
    return train, valid, anonymous


def test_bst_learns_the_cycle_without_features(cyclic_split):
    train, valid = cyclic_split
    model = get_model("bst", FAST).fit(train, valid, epochs=4, lr=1e-2, batch_size=32, seed=0)
    assert isinstance(model, BST)
    assert model.net.item_feat is None and model.net.user_feat is None
    assert_learns_cycle(model, valid)


def test_user_features_personalise(segments):
    train, valid, anonymous = segments
    cfg = dict(
        FAST,
        max_len=4,
        item_features=("colour",),
        user_features=("segment", "age"),
        numeric_features=("age",),
        n_bins=4,
    )
    model = get_model("bst", cfg).fit(train, valid, epochs=8, lr=1e-2, batch_size=64)
    assert [s.name for s in model.meta.features.user.specs] == ["segment", "age"]
    assert evaluate(model, valid, ["hr@1"])["hr@1"] >= 0.9
    # unknown users have no features: the segment cannot be told, so at most ~1/4 are right
    assert evaluate(model, anonymous, ["hr@1"])["hr@1"] < 0.5


def test_features_survive_save_load(segments, tmp_path):
    train, valid, _ = segments
    cfg = dict(FAST, max_len=4, item_features=("colour",), user_features=("segment",))
    model = get_model("bst", cfg).fit(train, epochs=1, batch_size=64)
    codes = model.net.item_feat.codes.clone()
    assert codes[1:17, 0].tolist() == [2, 1] * 8  # colours "blue" < "red"; first value
    assert codes[1:17, 1].tolist() == [0, 2] * 8
    model.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    assert isinstance(loaded, BST) and loaded.meta.features == model.meta.features
    assert torch.equal(loaded.net.item_feat.codes, codes)
    assert torch.equal(loaded.net.user_feat.codes, model.net.user_feat.codes)
    batch = valid.batch(np.arange(30), loaded.history_len)
    assert batch.users is not None
    assert torch.equal(model.score(batch), loaded.score(batch))
    # item features enter the candidates' representations: change one value's embedding
    before = model.score(batch)
    with torch.no_grad():
        model.net.item_feat.multi[0].weight[1] += 1.0  # "blue": only even item indices
    diff = (model.score(batch) - before).abs().amax(0)
    assert (diff[2:17:2] > 0).all()


def test_unknown_users_score_like_featureless_users(segments):
    train, _, _ = segments
    cfg = dict(FAST, max_len=4, item_features=(), user_features=("segment",))
    model = get_model("bst", cfg).fit(train, epochs=1, batch_size=64)
    items = model.encode_histories([[3], [5]]).items
    s = model.score(Batch(items))
    assert s.shape == (2, model.n_items) and torch.isfinite(s).all()
    torch.testing.assert_close(model.score(Batch(items, torch.tensor([0, 10**6]))), s)


def test_a_hybrid_with_a_featured_bst_survives_save_and_load(segments, tmp_path):
    """The hybrid rebuilt its BST member from the config alone: the feature layout (the
    member's meta) was lost, so the saved weights of its feature tables did not fit and the
    hybrid could not be loaded (``warmrec auto`` failed at its last step on MARS)."""
    from warmrec.models.hybrid import Hybrid

    train, valid, _ = segments
    cfg = dict(FAST, max_len=4, item_features=("colour",), user_features=("segment",))
    net = get_model("bst", cfg).fit(train, epochs=1, batch_size=64)
    hybrid = Hybrid.from_members(net, get_model("markov"), weight=0.5).fit(train, valid)
    loaded = Recommender.load(hybrid.save(tmp_path / "h"))
    member = loaded.members["network"]
    assert member.meta.features == net.meta.features
    assert torch.equal(member.net.item_feat.codes, net.net.item_feat.codes)
    batch = valid.batch(np.arange(30), loaded.history_len)
    assert torch.equal(hybrid.score(batch), loaded.score(batch))
