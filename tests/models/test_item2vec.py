"""Item2Vec on synthetic logs with a known answer: clusters, recency, history, save/load, seeds."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

pytest.importorskip("gensim")

from warmrec import EvalSet, ItemVocab, SequenceDataset, evaluate, get_model  # noqa: E402
from warmrec.data.dataset import Batch  # noqa: E402
from warmrec.errors import ConfigError, ModelError  # noqa: E402
from warmrec.models.base import Recommender  # noqa: E402
from warmrec.models.item2vec import Item2Vec  # noqa: E402

N_CLUSTERS, PER = 10, 20  # items 1..20 form cluster 0, 21..40 cluster 1, ...
FAST = {"vector_size": 16, "window": 3, "sample": 0.0, "epochs": 12}


def clustered_log(n_sessions: int, length: int = 8, seed: int = 0) -> pl.DataFrame:
    """Each session draws its items uniformly from one of ``N_CLUSTERS`` disjoint clusters."""
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, N_CLUSTERS, n_sessions)
    items = cluster[:, None] * PER + rng.integers(0, PER, (n_sessions, length)) + 1
    sess = np.repeat(np.arange(n_sessions), length)
    ts = sess * 10_000.0 + np.tile(np.arange(length), n_sessions) * 60.0
    return pl.DataFrame({"session_id": sess, "item_id": items.ravel(), "timestamp": ts})


def cluster_of(item: int) -> int:
    return (item - 1) // PER


@pytest.fixture(scope="module")
def data() -> tuple[SequenceDataset, EvalSet]:
    train = clustered_log(400)
    valid = clustered_log(60, seed=1)
    vocab = ItemVocab.from_ids(train["item_id"])
    return SequenceDataset.from_frame(train, vocab), EvalSet.from_sessions(valid, vocab)


@pytest.fixture(scope="module")
def fitted(data) -> Item2Vec:
    train, valid = data
    return get_model("item2vec", FAST).fit(train, valid)


def test_registered_and_config_checked() -> None:
    assert isinstance(get_model("item2vec"), Item2Vec)
    assert Item2Vec.learns_sequences is False
    with pytest.raises(ConfigError, match="window_size"):
        get_model("item2vec", window_size=3)
    with pytest.raises(ConfigError, match="recency_decay"):
        get_model("item2vec", recency_decay=0.0)


def test_history_from_one_cluster_recommends_that_cluster(fitted: Item2Vec) -> None:
    histories = [[3, 17, 5], [45, 52], [199]]
    for hist, recs in zip(histories, fitted.recommend(histories, k=10)):
        assert len(recs) == 10
        assert {cluster_of(r) for r in recs} == {cluster_of(hist[-1])}, (hist, recs)


def test_recency_weighting_follows_the_latest_items(fitted: Item2Vec) -> None:
    # an old item from cluster 0, then two recent ones from cluster 5: recent items dominate
    recs = fitted.recommend([[2, 101, 110]], k=10)[0]
    assert {cluster_of(r) for r in recs} == {5}
    # with the order reversed, cluster 0 is recent... but only one item: it still leads the list
    recs = fitted.recommend([[101, 110, 2]], k=1)[0]
    assert cluster_of(recs[0]) == 0


def test_n_recent_limits_the_query(fitted: Item2Vec, tmp_path) -> None:
    fitted.save(tmp_path / "m")
    short = Recommender.load(tmp_path / "m")
    short.config.n_recent = 1
    assert short.history_len == 1
    batch = Batch(torch.tensor([[101, 102, 103, 5], [0, 0, 0, 5]]))
    s = short.score(batch)
    torch.testing.assert_close(s[0], s[1])  # only the last item counts
    fitted_scores = fitted.score(batch)
    assert not torch.allclose(fitted_scores[0], fitted_scores[1])


def test_score_shape_cosines_and_padding(fitted: Item2Vec, data) -> None:
    train, _ = data
    batch = Batch(torch.tensor([[0, 1, 2], [0, 0, 150]]))
    s = fitted.score(batch)
    assert s.shape == (2, train.n_items) and s.dtype == torch.float32
    assert torch.isneginf(s[:, 0]).all()
    seen = s[:, 1:]
    assert torch.isfinite(seen).all() and (seen.abs() <= 1 + 1e-5).all()
    # a single-item history: the item is its own nearest neighbour (cosine 1)
    assert s[1].argmax().item() == 150
    assert s[1, 150].item() == pytest.approx(1.0, abs=1e-5)


def test_unseen_items_score_minus_inf_and_empty_history_falls_back_to_popularity() -> None:
    train_df = clustered_log(200)
    # the vocabulary knows items 500 and 501 that never occur in training
    vocab = ItemVocab.from_ids(pl.concat([train_df["item_id"], pl.Series([500, 501])]))
    train = SequenceDataset.from_frame(train_df, vocab)
    model = get_model("item2vec", FAST, epochs=2).fit(train)
    unseen = torch.tensor(vocab.encode([500, 501]))
    s = model.score(Batch(torch.tensor([[0, 3], [0, 0], [0, int(unseen[0])]])))
    assert torch.isneginf(s[:, unseen]).all()
    finite = torch.isfinite(s)
    assert finite[:, 1:].sum(1).tolist() == [train.n_items - 3] * 3
    # rows 1 and 2 have no item with a vector: popularity order
    counts = torch.from_numpy(train.item_counts()).float()
    assert s[1].argmax().item() == counts.argmax().item()
    torch.testing.assert_close(s[1], s[2])
    assert 500 not in model.recommend([[3]], k=train.n_items)[0]


def test_items_only_ever_alone_in_a_sequence_have_no_vector() -> None:
    """An item whose every training sequence holds it alone gives Word2Vec no pair: its vector
    stayed gensim's random init (equal after 1 and 4 epochs) yet counted as known, so it was
    scored by a random cosine and pulled a history's query in a random direction. It is an
    item without a vector now, as one below min_count."""
    train_df = clustered_log(200)
    alone = pl.DataFrame({"session_id": [900, 901], "item_id": [500, 500]})
    alone = alone.with_columns(timestamp=pl.Series([9e6, 9.1e6])).cast(train_df.schema)
    train = SequenceDataset.from_frame(pl.concat([train_df, alone]))
    x = int(train.vocab.encode([500])[0])
    for epochs in (1, 4):
        model = get_model("item2vec", FAST, epochs=epochs).fit(train)
        assert not model.known[x] and not model.vectors[x].any()
    s = model.score(Batch(torch.tensor([[0, 3], [3, x]])))
    assert torch.isneginf(s[:, x]).all()
    torch.testing.assert_close(s[0], s[1])  # in a history it reads as an item without vector
    assert int(model.known.sum()) == train.n_items - 2  # every item but padding and x
    # alone once the items below min_count are dropped (gensim drops them from its sentences)
    pair = pl.DataFrame({"session_id": [902, 902], "item_id": [600, 601]})
    pair = pair.with_columns(timestamp=pl.Series([9.2e6, 9.2e6 + 1])).cast(train_df.schema)
    other = pair.with_columns(session_id=pl.lit(903), item_id=pl.Series([600, 602]))
    train = SequenceDataset.from_frame(pl.concat([train_df, pair, other.cast(train_df.schema)]))
    model = get_model("item2vec", FAST, epochs=2, min_count=2).fit(train)
    assert not model.known[int(train.vocab.encode([600])[0])]


def test_a_log_of_lone_items_is_one_model_error() -> None:
    """Sessions of one item each give Word2Vec no pair: every item would score -inf (a model
    that ranks nothing, its targets all last); it is one ModelError, as min_count's."""
    df = pl.DataFrame({"session_id": [0, 1, 2], "item_id": [1, 2, 1], "timestamp": [0.0, 1, 2]})
    with pytest.raises(ModelError, match="no training sequence holds two items"):
        get_model("item2vec", FAST, epochs=1).fit(SequenceDataset.from_frame(df))


def test_history_per_epoch_and_validation_improves(fitted: Item2Vec) -> None:
    hist = fitted.history
    assert [h["epoch"] for h in hist] == list(range(1, FAST["epochs"] + 1))
    for h in hist:
        assert set(h) == {"epoch", "loss", "recall@20", "mrr@20"}
        assert h["loss"] > 0 and np.isfinite(h["loss"])
    assert hist[-1]["loss"] < 0.5 * hist[0]["loss"]  # per-epoch values, not a cumulative sum
    assert hist[0]["recall@20"] < 0.5 < 0.9 < hist[-1]["recall@20"]
    assert fitted.meta.history == hist
    best = max(range(len(hist)), key=lambda i: hist[i]["mrr@20"])
    assert fitted.meta.best_epoch == fitted.meta.kept_epoch == best + 1


def cross_cluster_log(n_sessions: int = 100, seed: int = 5) -> pl.DataFrame:
    """Two-item sessions that jump from a cluster to the next one: learning clusters hurts here."""
    rng = np.random.default_rng(seed)
    c = rng.integers(0, N_CLUSTERS, n_sessions)
    a = c * PER + rng.integers(0, PER, n_sessions) + 1
    b = (c + 1) % N_CLUSTERS * PER + rng.integers(0, PER, n_sessions) + 1
    return pl.DataFrame(
        {
            "session_id": np.repeat(np.arange(n_sessions), 2),
            "item_id": np.column_stack([a, b]).ravel(),
            "timestamp": np.tile([0.0, 60.0], n_sessions),
        }
    )


def test_keep_best_keeps_the_best_validation_epoch(data, fitted: Item2Vec) -> None:
    train, valid = data
    res = evaluate(fitted, valid, ("recall@20", "mrr@20"))
    best = fitted.history[fitted.meta.kept_epoch - 1]
    assert res["mrr@20"] == pytest.approx(best["mrr@20"])
    assert res["recall@20"] == pytest.approx(best["recall@20"])
    # validation MRR falls to 0 once clusters are learnt: keep_best keeps an early epoch
    jump = EvalSet.from_sessions(cross_cluster_log(), train.vocab)
    kept = get_model("item2vec", FAST).fit(train, jump)
    last = get_model("item2vec", FAST, keep_best=False).fit(train, jump)
    assert kept.history == last.history
    assert kept.meta.best_epoch == kept.meta.kept_epoch < FAST["epochs"]
    assert last.meta.kept_epoch == FAST["epochs"]
    assert last.history[-1]["mrr@20"] == 0.0
    top = max(h["mrr@20"] for h in kept.history)
    assert evaluate(kept, jump, ("mrr@20",))["mrr@20"] == pytest.approx(top) and top > 0
    assert evaluate(last, jump, ("mrr@20",))["mrr@20"] == 0.0


def test_without_validation_no_metrics(data) -> None:
    train, _ = data
    model = get_model("item2vec", FAST, epochs=3).fit(train)
    assert [set(h) for h in model.history] == [{"epoch", "loss"}] * 3
    assert model.meta.best_epoch is None and model.meta.kept_epoch == 3


def test_save_load_identical_scores_no_pickle(fitted: Item2Vec, tmp_path) -> None:
    path = fitted.save(tmp_path / "i2v")
    assert sorted(p.name for p in path.iterdir()) == [
        "config.json",
        "model.safetensors",
        "vocab.json",
    ]
    loaded = Recommender.load(path)
    assert isinstance(loaded, Item2Vec)
    assert loaded.history == fitted.history
    batch = Batch(torch.tensor([[0, 1, 2], [0, 0, 150], [0, 0, 0]]))
    assert torch.equal(loaded.score(batch), fitted.score(batch))


def test_same_seed_same_vectors_other_seed_differs(data) -> None:
    train, _ = data
    batch = Batch(torch.tensor([[0, 1, 2], [0, 0, 150]]))
    a = get_model("item2vec", FAST, epochs=2, seed=7).fit(train).score(batch)
    b = get_model("item2vec", FAST, epochs=2, seed=7).fit(train).score(batch)
    c = get_model("item2vec", FAST, epochs=2, seed=8).fit(train).score(batch)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_errors(data) -> None:
    train, valid = data
    with pytest.raises(ModelError, match="not fitted"):
        get_model("item2vec").score(Batch(torch.tensor([[1]])))
    with pytest.raises(ModelError, match="min_count"):
        get_model("item2vec", min_count=10_000).fit(train)
    other = EvalSet.from_sessions(clustered_log(5, seed=2), ItemVocab.from_ids([1, 2, 3]))
    with pytest.raises(ModelError, match="item columns"):
        get_model("item2vec").fit(train, other)
    assert len(valid) > 0


def test_seen_offset_moves_history_items_below_the_rest(fitted: Item2Vec, tmp_path) -> None:
    fitted.save(tmp_path / "m")
    moved = Recommender.load(tmp_path / "m")
    moved.config.seen_offset = -2.0
    assert moved.history_len == moved.config.seen_len  # the offset looks past n_recent
    batch = Batch(torch.tensor([[0, 150, 3, 17, 5]]))
    plain, off = fitted.score(batch)[0], moved.score(batch)[0]
    hist = [150, 3, 17, 5]
    torch.testing.assert_close(off[hist], plain[hist] - 2.0)
    rest = [i for i in range(1, len(plain)) if i not in hist]
    torch.testing.assert_close(off[rest], plain[rest])
    assert torch.isneginf(off[0])
    # without the offset the history items lead the list; with it none is recommended
    assert len(set(fitted.recommend([[3, 17, 5]], k=3)[0]) & {3, 17, 5}) >= 2
    recs = moved.recommend([[3, 17, 5]], k=10)[0]
    assert not {3, 17, 5} & set(recs) and {cluster_of(r) for r in recs} == {0}
    with pytest.raises(ConfigError, match="seen_offset"):
        get_model("item2vec", seen_offset=float("-inf"))
