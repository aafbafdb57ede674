"""Tests for warmrec.models.catalogue: items added to a fitted model without retraining.

Known answers on the text catalogue of ``tests/models/test_text.py`` (topic ``t`` holds items
``"topic<t> style<s>"``; the item of style ``t mod 4`` of each topic is in the catalogue but has
no training event):
- a model that scores items only from their events gives a new item exactly what it gives those
  catalogue items without events, and reads it in a history as it reads one of them;
- a hybrid adds the items to both members (a text-aware member ranks them by their text);
- Fresh's dense-text term centres a new item's text on the fitted catalogue's mean, so an item
  with an existing item's text gets that item's row.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from tests.models.test_text import (
    N_STYLES,
    N_TOPICS,
    catalogue,
    fit,
    item_id,
    make_text_data,
    text_cfg,
    unseen,
)
from warmrec.data.dataset import Batch
from warmrec.errors import ModelError
from warmrec.models.base import Recommender
from warmrec.models.catalogue import add_items, growable, text_fields
from warmrec.models.fresh import Fresh
from warmrec.models.hybrid import Hybrid
from warmrec.models.text import TfidfContent
from warmrec.registry import get_model

NO_TEXT = ["pop", "sessionpop", "markov", "sr", "ar", "itemknn", "sknn", "vsknn", "item2vec"]
CONFIGS = {"item2vec": {"epochs": 3, "min_count": 1, "workers": 1, "seed": 0}}


@pytest.fixture(scope="module")
def text_data(tmp_path_factory):
    return make_text_data(str(tmp_path_factory.mktemp("text-cache")))


def _new(items: pl.DataFrame, ids: list[int], like: int) -> pl.DataFrame:
    """Rows for new ``ids`` with the text of item ``like``."""
    row = items.filter(pl.col("item_id") == like)
    return pl.concat(
        [row.with_columns(pl.lit(i, dtype=items["item_id"].dtype).alias("item_id")) for i in ids]
    )


def _batch(model: Recommender, histories: list[list[int]]) -> Batch:
    width = max(len(h) for h in histories)
    rows = [[0] * (width - len(h)) + model.vocab.encode(h).tolist() for h in histories]
    return Batch(torch.tensor(rows, dtype=torch.long))


@pytest.mark.parametrize("name", NO_TEXT)
def test_models_without_text_add_items_with_no_evidence(name, text_data, tmp_path):
    train, test, items, _ = text_data
    model = get_model(name, CONFIGS.get(name, {})).fit(train)
    n = model.n_items
    cold = unseen(1)  # in the catalogue, no training event
    warm = [item_id(t, (t + 1) % N_STYLES) for t in range(N_TOPICS)]
    histories = [[warm[0]], [warm[2], warm[3]], [warm[5], warm[6], warm[7]]]
    before = model.score(_batch(model, histories))
    assert add_items(model, pl.concat([items, _new(items, [901, 902], cold)])) == [901, 902]
    assert model.n_items == n + 2 and model.meta.item_counts[-2:] == [0, 0]
    after = model.score(_batch(model, histories))
    assert torch.equal(after[:, :n], before)  # the known items score as they did
    c = model.vocab.encode([cold]).item()
    for j in (n, n + 1):  # a new item scores as a catalogue item without events
        assert torch.equal(after[:, j], after[:, c])
    # ... and reads in a history as one: swap the two and the scores swap
    with_new = model.score(_batch(model, [[warm[4], 901]]))[0]
    with_cold = model.score(_batch(model, [[warm[4], cold]]))[0]
    perm = torch.arange(len(with_new))
    perm[n], perm[c] = c, n
    assert torch.equal(with_new[perm], with_cold)
    # saved and loaded with its new items; adding again adds nothing
    loaded = Recommender.load(model.save(tmp_path / name))
    assert torch.equal(loaded.score(_batch(loaded, histories)), after)
    assert add_items(loaded, items) == [] and loaded.n_items == n + 2
    recs = loaded.recommend([[warm[4], 902]], k=loaded.n_items - 1)[0]
    assert (901 in recs) == bool(torch.isfinite(after[0, n]))  # item2vec: no vector, not ranked


def test_a_hybrid_adds_items_to_both_members(text_data, tmp_path):
    """auto's pick on a growing catalogue can be V-SKNN + a text-aware SASRec: the new items
    rank by their text through the network while V-SKNN knows them without evidence."""
    train, test, items, cache = text_data
    text = fit(text_cfg(cache, item_repr="text"), train)
    hybrid = Hybrid.from_members(text, get_model("vsknn").fit(train), weight=0.7).fit(train)
    hybrid = Recommender.load(hybrid.save(tmp_path / "h"))
    new = catalogue(N_TOPICS + 1).filter(pl.col("item_id") > N_TOPICS * N_STYLES)
    new = new.with_columns(pl.col("title").str.replace(f"topic{N_TOPICS}", "topic0"))
    added = add_items(hybrid, new)
    assert added == new["item_id"].to_list()
    assert {m.n_items for m in hybrid.members.values()} == {hybrid.n_items}
    assert hybrid.n_items == len(train.vocab) + 4
    last = [item_id(N_TOPICS - 2, 1), item_id(N_TOPICS - 1, 0)]  # next topic: topic 0
    top = hybrid.recommend([last], k=N_STYLES * 2)[0]
    assert len(set(top) & set(added)) >= 3, top
    loaded = Recommender.load(hybrid.save(tmp_path / "h2"))
    batch = test.batch(np.arange(len(test)), loaded.history_len)
    assert torch.equal(loaded.score(batch), hybrid.score(batch))


def test_a_hybrid_with_a_member_that_cannot_is_refused_and_left_as_it_was(text_data):
    train, _, items, cache = text_data
    ids = fit(text_cfg(cache, item_repr="id"), train)
    for network, neighbours in ((get_model("vsknn").fit(train), ids), (ids, get_model("pop"))):
        if not neighbours.is_fitted:
            neighbours.fit(train)
        hybrid = Hybrid.from_members(network, neighbours, weight=0.5).fit(train)
        n = hybrid.n_items
        with pytest.raises(ModelError, match="hybrid: model 'sasrec' has no text item"):
            add_items(hybrid, _new(items, [901], unseen(0)))
        assert hybrid.n_items == n and {m.n_items for m in hybrid.members.values()} == {n}
    with pytest.raises(ModelError, match="cannot take new items without retraining"):
        add_items(get_model("gru4rec"), items)


def test_fresh_with_the_text_term_centres_new_items_on_the_fitted_mean(text_data, tmp_path):
    train, test, items, cache = text_data
    base = TfidfContent({"text_fields": ("title",), "max_len": 2})
    cfg = {
        "cold_weight": 0.5,
        "affinity_weight": 1.0,
        "text_window": 2,
        "text_weight": 1.0,
        "text_encoder": "fake-words",
        "text_cache": cache,
        "text_fields": ("title",),
    }
    fresh = Fresh.from_base(base, **cfg).fit(train)
    saved = fresh.save(tmp_path / "f")
    twin = _new(items, [999], unseen(0))
    assert add_items(fresh, pl.concat([items, twin])) == [999]
    j = fresh.vocab.encode([unseen(0)]).item()
    assert torch.allclose(fresh.text[-1], fresh.text[j]) and fresh.text[j].abs().sum() > 0
    s = fresh.score(test.batch(np.arange(len(test)), fresh.history_len))
    assert torch.allclose(s[:, -1], s[:, j])  # both cold, the same text
    loaded = Recommender.load(saved)
    assert add_items(loaded, twin) == [999]
    assert torch.equal(loaded.text, fresh.text)
    # a Fresh saved before the centre was kept (an earlier warmrec) is refused, unchanged
    legacy = Recommender.load(saved)
    legacy.text_mean = None
    with pytest.raises(ModelError, match="without its text centre"):
        add_items(legacy, twin)
    assert legacy.n_items == fresh.n_items - 1 and legacy.base.n_items == legacy.n_items


def test_text_fields_are_those_of_the_models_that_read_text(text_data):
    train, _, _, cache = text_data
    tfidf = TfidfContent({"text_fields": ("title", "tags")})
    text = get_model("sasrec", text_cfg(cache, item_repr="text", text_fields=("title",)))
    ids = get_model("sasrec", text_cfg(cache, item_repr="id"))
    assert text_fields(tfidf) == ["title", "tags"] and text_fields(ids) == []
    assert text_fields(get_model("pop")) == []
    assert text_fields(Hybrid.from_members(text, get_model("vsknn"))) == ["title"]
    assert text_fields(Fresh.from_base(tfidf)) == ["title", "tags"]
    fresh = Fresh.from_base(ids, text_window=2, text_fields=("description",))
    assert text_fields(fresh) == ["description"]


def test_growable_says_whether_a_model_takes_new_items_and_changes_nothing(text_data):
    train, _, items, cache = text_data
    ids = fit(text_cfg(cache, item_repr="id"), train)
    text = fit(text_cfg(cache, item_repr="text"), train)
    vsknn = get_model("vsknn").fit(train)
    n = vsknn.n_items
    assert growable(vsknn) is None and growable(text) is None and vsknn.n_items == n
    assert "no text item representation" in growable(ids)
    assert growable(Hybrid.from_members(text, vsknn, weight=0.5).fit(train)) is None
    mixed = Hybrid.from_members(ids, vsknn, weight=0.5).fit(train)
    assert growable(mixed).startswith("hybrid: model 'sasrec' has no text item")
    assert {m.n_items for m in mixed.members.values()} == {n}
    assert "no text item" in growable(
        Fresh.from_base(ids, cold_weight=0.0, affinity_weight=0.0).fit(train)
    )
