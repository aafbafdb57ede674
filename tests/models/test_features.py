"""Side features: exact codes on a hand-made table (categorical, multi-valued, numeric),
unknown ids and levels -> 0, saved encodings reproduce codes, embeddings, bad input."""

from __future__ import annotations

import json
import warnings

import numpy as np
import polars as pl
import pytest
import torch

from warmrec import SequenceDataset
from warmrec.data.vocab import ItemVocab
from warmrec.errors import ConfigError, DataError
from warmrec.models.features import (
    FeatureEmbedder,
    FeatureSpec,
    FeatureWarning,
    SideFeatures,
    encode_features,
    fit_features,
)

VOCAB = ItemVocab.from_ids([10, 20, 30, 40])  # indices 1, 2, 3, 4


def table() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "item_id": [20, 10, 30, 99],  # 40 has no row; 99 is not in the vocabulary
            "brand": ["b", "a", None, "z"],
            "genres": [["x", "y"], [], None, ["q"]],
            "age": ["24", "53", None, "7"],
            "price": [1.0, 2.0, 3.0, 100.0],
        }
    )


def test_exact_codes():
    enc = fit_features(
        table(), VOCAB, ["brand", "genres", "age", "price"], kinds={"age": "numeric"}, n_bins=2
    )
    kinds = [(s.name, s.kind, s.width) for s in enc.specs]
    assert kinds == [
        ("brand", "categorical", 1),
        ("genres", "multi", 2),
        ("age", "numeric", 1),
        ("price", "numeric", 1),
    ]
    brand, genres, age, price = enc.specs
    assert brand.levels == ["a", "b"]  # "z" belongs to an unknown item
    assert genres.levels == ["x", "y"]  # so does "q"
    assert age.edges == [38.5] and price.edges == [2.0]  # medians of the known rows
    assert enc.codes.tolist() == [
        [0, 0, 0, 0, 0],  # padding
        [1, 0, 0, 2, 2],  # item 10: brand a, no genres, age 53 (> 38.5), price 2.0 (>= 2.0)
        [2, 1, 2, 1, 1],  # item 20: brand b, genres x y, age 24, price 1.0
        [0, 0, 0, 0, 2],  # item 30: missing brand/genres/age, price 3.0
        [0, 0, 0, 0, 0],  # item 40: no row at all
    ]
    assert [s.cardinality for s in enc.specs] == [3, 3, 3, 3]


def test_saved_encoding_reproduces_codes_and_maps_unseen_levels_to_zero():
    enc = fit_features(table(), VOCAB, ["brand", "genres", "price"], n_bins=2)
    meta = json.loads(json.dumps([s.to_dict() for s in enc.specs]))
    specs = [FeatureSpec.from_dict(d) for d in meta]
    assert np.array_equal(encode_features(table(), VOCAB, specs), enc.codes)
    new = pl.DataFrame(
        {
            "item_id": [40, 10],
            "brand": ["new", "b"],
            "genres": [["y", "new", "x"], ["x"]],
            "price": [0.5, None],
        }
    )
    codes = encode_features(new, VOCAB, specs)
    # width stays 2 (the saved one): extra list values are cut, unseen levels -> 0
    assert codes[4].tolist() == [0, 2, 0, 1] and codes[1].tolist() == [2, 1, 0, 0]
    assert codes[[0, 2, 3]].sum() == 0


def test_bad_tables_raise():
    t = table()
    with pytest.raises(DataError, match="duplicate"):
        fit_features(pl.concat([t, t.head(1)]), VOCAB, ["brand"])
    with pytest.raises(DataError, match="nope"):
        fit_features(t, VOCAB, ["nope"])
    with pytest.raises(DataError, match="not a number"):
        fit_features(
            t.with_columns(pl.lit("old").alias("age")), VOCAB, ["age"], kinds={"age": "numeric"}
        )
    with pytest.raises(DataError, match="list"):
        fit_features(t, VOCAB, ["brand"], kinds={"brand": "multi"})
    with pytest.raises(ConfigError, match="kind"):
        fit_features(t, VOCAB, ["brand"], kinds={"brand": "fancy"})


def test_embedder_means_multi_values_and_zeroes_missing():
    enc = fit_features(table(), VOCAB, ["brand", "genres"])
    emb = FeatureEmbedder(enc.specs, len(VOCAB), 4, combine="concat")
    emb.set_codes(enc.codes)
    assert "codes" in emb.state_dict()  # saved with the weights
    out = emb(torch.tensor([0, 1, 2, 3, 4, 77, -1]))
    assert out.shape == (7, 8)
    brand_w, genre_w = emb.single.tables[0].weight, emb.multi[0].weight
    with torch.no_grad():
        torch.testing.assert_close(out[2, :4], brand_w[2])
        torch.testing.assert_close(out[2, 4:], (genre_w[1] + genre_w[2]) / 2)  # mean of x, y
        torch.testing.assert_close(out[1, :4], brand_w[1])
    assert (out[1, 4:] == 0).all()  # no genres -> zero vector
    assert (out[[0, 3, 4, 5, 6]] == 0).all()  # padding, missing, no row, out of range
    summed = FeatureEmbedder(enc.specs, len(VOCAB), 4, combine="sum")
    summed.load_state_dict(emb.state_dict())
    torch.testing.assert_close(summed(torch.tensor([2])), out[2:3, :4] + out[2:3, 4:])


def test_side_features_of_a_training_set():
    log = pl.DataFrame(
        {
            "session_id": [1, 1, 2, 2],
            "user_id": ["u", "u", "v", "v"],
            "item_id": [10, 20, 30, 40],
            "timestamp": [0.0, 1.0, 2.0, 3.0],
        }
    )
    users = pl.DataFrame({"user_id": ["v", "u", "w"], "gender": ["F", "M", "F"]})
    train = SequenceDataset.from_frame(log, VOCAB, item_features=table(), user_features=users)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f = SideFeatures.fit(train, ["brand"], ["gender"])
    assert f.item.codes[:, 0].tolist() == [0, 1, 2, 0, 0]
    assert train.user_vocab.encode(["u", "v"]).tolist() == [1, 2]
    assert f.user.codes[:, 0].tolist() == [0, 2, 1]  # u -> M (2), v -> F (1)
    with pytest.warns(FeatureWarning, match="colour"):
        g = SideFeatures.fit(train, ["brand", "colour"], ())
    assert g.item.skipped == ["colour"] and g.user is None
    item_specs, user_specs = SideFeatures.specs_from_meta(json.loads(json.dumps(f.to_meta())))
    assert [s.name for s in item_specs] == ["brand"] and user_specs[0].levels == ["F", "M"]
    bare = SequenceDataset.from_frame(log, VOCAB)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no feature tables at all: silently nothing
        h = SideFeatures.fit(bare, ["brand"], ["gender"])
    assert SideFeatures.specs_from_meta(h.to_meta()) == ([], [])


def test_ml100k_features(ml100k):
    from warmrec.data.readers import load_interactions

    data = load_interactions(ml100k)
    train = SequenceDataset.from_frame(
        data.interactions, item_features=data.item_features, user_features=data.user_features
    )
    f = SideFeatures.fit(
        train, ["class"], ["age", "gender", "occupation"], kinds={"age": "numeric"}
    )
    genre = f.item.specs[0]
    assert genre.kind == "multi" and len(genre.levels) == 19 and genre.width >= 5
    assert (f.item.codes[1:, 0] > 0).all()  # every movie has at least one genre
    age, gender, occupation = f.user.specs
    assert age.kind == "numeric" and 5 <= len(age.edges) <= 9
    assert gender.levels == ["F", "M"] and len(occupation.levels) == 21
    assert (f.user.codes[1:] > 0).all() and f.user.codes.shape == (944, 3)
