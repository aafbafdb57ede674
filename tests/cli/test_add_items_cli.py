"""``warmrec add-items``: new items join a saved model (text-aware SASRec, TF-IDF, Fresh, a hybrid) without
retraining, ranked by their text; the model directory is replaced atomically (or written to --out); models without a
text representation and ids of the wrong type are refused in one line."""

from __future__ import annotations

import json

import polars as pl
import pytest
from click.testing import CliRunner

from tests.models.test_text import N_STYLES, N_TOPICS, catalogue, fit, item_id, text_cfg, walks
from warmrec.cli.main import cli
from warmrec.data.dataset import SequenceDataset
from warmrec.data.vocab import ItemVocab
from warmrec.models.base import Recommender


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    items = catalogue()
    train = SequenceDataset.from_frame(
        walks(), ItemVocab.from_ids(items["item_id"]), item_features=items
    )
    cache = str(tmp_path_factory.mktemp("cache"))
    d = tmp_path_factory.mktemp("models")
    fit(text_cfg(cache, item_repr="text"), train).save(d / "text")
    fit(text_cfg(cache, item_repr="id"), train).save(d / "ids")
    return d


def _new_items(tmp_path) -> tuple[str, list[int]]:
    # a new topic whose titles read like topic 0's (the topic after the last one), and one
    # item the model already has
    new = catalogue(N_TOPICS + 1).filter(pl.col("item_id") > N_TOPICS * N_STYLES)
    new = new.with_columns(pl.col("title").str.replace(f"topic{N_TOPICS}", "topic0"))
    table = pl.concat([catalogue().head(1), new]).drop("tags")
    p = tmp_path / "new.csv"
    table.write_csv(p)
    return str(p), new["item_id"].to_list()


def test_new_items_join_a_text_model_and_rank_by_their_text(saved, tmp_path) -> None:
    path, new_ids = _new_items(tmp_path)
    out = tmp_path / "grown"
    runner = CliRunner()
    res = runner.invoke(
        cli, ["add-items", str(saved / "text"), "--items", path, "--out", str(out), "--json"]
    )
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["added_ids"] == new_ids and info["known"] == 1
    assert info["items"] == N_TOPICS * N_STYLES + 4
    model = Recommender.load(out)
    assert len(model.vocab.ids) == N_TOPICS * N_STYLES + 4
    assert Recommender.load(saved / "text").n_items == N_TOPICS * N_STYLES + 1  # untouched
    # after the last topic comes topic 0: the new "topic0" items rank with topic 0's
    last = [item_id(N_TOPICS - 2, 1), item_id(N_TOPICS - 1, 0)]
    top = model.recommend([last], k=N_STYLES * 2)[0]
    assert len(set(top) & set(new_ids)) >= 3, top
    # again: nothing new, the folder replaced in place
    res = runner.invoke(cli, ["add-items", str(out), "--items", path])
    assert res.exit_code == 0, res.output
    assert "added 0 item(s)" in res.output and "5 already known" in res.output


def test_tfidf_and_fresh_models_take_new_items_too(tmp_path) -> None:
    """The pick of ``warmrec auto`` on a growing catalogue is Fresh over TF-IDF: new items join
    it (cold, ranked by their text) as they join a text-aware SASRec."""
    from warmrec.models.fresh import Fresh
    from warmrec.models.text import TfidfContent

    items = catalogue()
    train = SequenceDataset.from_frame(
        walks(), ItemVocab.from_ids(items["item_id"]), item_features=items
    )
    base = TfidfContent({"text_fields": ("title",)}).fit(train)
    Fresh.from_base(base, cold_weight=0.0, affinity_weight=0.0).fit(train).save(tmp_path / "f")
    path, new_ids = _new_items(tmp_path)
    res = CliRunner().invoke(cli, ["add-items", str(tmp_path / "f"), "--items", path, "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["added_ids"] == new_ids
    model = Recommender.load(tmp_path / "f")
    assert model.cold[-len(new_ids) :].tolist() == [1.0] * len(new_ids)
    # a history of topic 0: the new "topic0" items rank with topic 0's
    top = model.recommend([[item_id(0, 1)]], k=N_STYLES * 2)[0]
    assert len(set(top) & set(new_ids)) >= 3, top


def test_models_without_text_and_ids_of_another_type_are_refused(saved, tmp_path) -> None:
    path, _ = _new_items(tmp_path)
    runner = CliRunner()
    res = runner.invoke(cli, ["add-items", str(saved / "ids"), "--items", path])
    assert res.exit_code == 2
    assert "no text item representation" in res.output and len(res.output.splitlines()) == 1
    bad = tmp_path / "bad.csv"
    bad.write_text("item_id,title\nx9,topic0 style9\n")
    res = runner.invoke(cli, ["add-items", str(saved / "text"), "--items", str(bad)])
    assert res.exit_code == 2
    assert "item id of another type" in res.output and "'x9'" in res.output


def test_a_hybrid_of_a_text_model_and_vsknn_takes_new_items(saved, tmp_path) -> None:
    """Each member adds them its way: the text-aware SASRec by their text, V-SKNN without
    evidence; the hybrid then ranks the new "topic0" items with topic 0's."""
    from warmrec.models.hybrid import Hybrid
    from warmrec.registry import get_model

    items = catalogue()
    train = SequenceDataset.from_frame(
        walks(), ItemVocab.from_ids(items["item_id"]), item_features=items
    )
    text = Recommender.load(saved / "text")
    Hybrid.from_members(text, get_model("vsknn").fit(train), weight=0.7).fit(train).save(
        tmp_path / "h"
    )
    path, new_ids = _new_items(tmp_path)
    res = CliRunner().invoke(cli, ["add-items", str(tmp_path / "h"), "--items", path])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("added 4 item(s) to hybrid (1 already known")
    model = Recommender.load(tmp_path / "h")
    assert {m.n_items for m in model.members.values()} == {N_TOPICS * N_STYLES + 5}
    last = [item_id(N_TOPICS - 2, 1), item_id(N_TOPICS - 1, 0)]
    top = model.recommend([last], k=N_STYLES * 2)[0]
    assert len(set(top) & set(new_ids)) >= 3, top


def test_a_mars_layout_file_is_read_as_training_read_it(saved, tmp_path) -> None:
    """New videos written as MARS's items_en.csv (``name``, ``Software`` as ``['...']``, empty
    here) get the text fields training used (``title``, ``software``), not the raw columns;
    the line says where their text came from."""
    new = catalogue(N_TOPICS + 1).filter(pl.col("item_id") > N_TOPICS * N_STYLES)
    rows = [
        f'{i},"{t.replace(f"topic{N_TOPICS}", "topic0")}",[]'
        for i, t in zip(new["item_id"], new["title"], strict=True)
    ]
    p = tmp_path / "new_videos.csv"
    p.write_text("item_id,name,Software\n" + "\n".join(rows) + "\n")
    runner = CliRunner()
    for fmt, fields in (("auto", ["title", "software"]), ("plain", ["name"])):
        out = tmp_path / fmt
        res = runner.invoke(
            cli,
            ["add-items", str(saved / "text"), "--items", str(p), "--format", fmt]
            + ["--out", str(out), "--json"],
        )
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)["text_fields"] == fields
    res = runner.invoke(
        cli, ["add-items", str(saved / "text"), "--items", str(p), "--out", str(tmp_path / "again")]
    )
    assert res.exit_code == 0 and res.output.strip().endswith("their text from title, software")
    model = Recommender.load(tmp_path / "auto")
    last = [item_id(N_TOPICS - 2, 1), item_id(N_TOPICS - 1, 0)]
    top = model.recommend([last], k=N_STYLES * 2)[0]
    assert len(set(top) & set(new["item_id"].to_list())) >= 3, top
