"""A study folder's settings record: written once, the same settings resume, others are refused
naming the keys that differ; the data fingerprint follows the rows."""

from __future__ import annotations

import json

import polars as pl
import pytest

from warmrec.errors import ConfigError
from warmrec.experiments.studies.stored import SETTINGS_FILE, check_settings, data_fingerprint


def test_the_same_settings_resume_and_others_are_refused(tmp_path):
    out = tmp_path / "study"
    check_settings(out, {"model": "sasrec", "seeds": (0, 1)})
    assert json.loads((out / SETTINGS_FILE).read_text()) == {"model": "sasrec", "seeds": [0, 1]}
    check_settings(out, {"model": "sasrec", "seeds": [0, 1]})  # a tuple reads back as a list
    with pytest.raises(ConfigError, match=r"holds a search with other settings \(extra, model\);"):
        check_settings(out, {"model": "gru4rec", "seeds": [0, 1], "extra": 1}, what="search")
    (out / SETTINGS_FILE).write_text("{not json")
    with pytest.raises(ConfigError, match="not a readable settings record"):
        check_settings(out, {"model": "sasrec"})


def test_the_data_fingerprint_follows_the_rows():
    a = pl.DataFrame({"user_id": [1, 1, 2], "item_id": [3, 4, 3]})
    assert data_fingerprint(a) == data_fingerprint(a.clone())
    assert data_fingerprint(a) != data_fingerprint(a.with_columns(pl.col("item_id") + 1))
    assert data_fingerprint(a) != data_fingerprint(a.head(2))


def test_the_data_fingerprint_follows_the_feature_tables():
    """Studies and searches resumed over an edited item (or user) feature file: the fingerprint
    hashed the events only, so trials trained on the old features were kept."""
    a = pl.DataFrame({"user_id": [1, 1, 2], "item_id": [3, 4, 3]})
    items = pl.DataFrame({"item_id": [3, 4], "genre": [["a"], ["b", "c"]]})
    assert data_fingerprint(a, None, None) == data_fingerprint(a)  # no features: as before
    with_items = data_fingerprint(a, items, None)
    assert with_items != data_fingerprint(a)
    assert with_items == data_fingerprint(a, items.clone(), None)
    assert with_items != data_fingerprint(a, items.with_columns(genre=pl.lit(["a"])), None)
    assert with_items != data_fingerprint(a, None, items.rename({"item_id": "user_id"}))
