"""What a fit chose on its own (``Recommender.fit_choices``) reaches the run record and
``warmrec train``'s output: FeatRank keeps the publication year where the next video shares the
last one's year, and says so with its two validation figures; a model that chooses nothing
prints no such line."""

from __future__ import annotations

import json

import polars as pl
from click.testing import CliRunner

from tests.models.test_featrank import IDS, _by_year, _items, _shuffled_years
from warmrec.cli.main import cli
from warmrec.models.base import Recommender


def _files(tmp_path) -> tuple[str, str]:
    events = _by_year(300, 0, 0, True).rename({"session_id": "user_id"})
    items = (
        _items()
        .with_columns(pl.Series("year", _shuffled_years()))
        .select("item_id", "title", "year")
    )
    assert items["item_id"].to_list() == IDS
    ev, it = tmp_path / "events.csv", tmp_path / "items.csv"
    events.write_csv(ev)
    items.write_csv(it)
    return str(ev), str(it)


def test_train_prints_and_records_what_featrank_chose(tmp_path) -> None:
    ev, it = _files(tmp_path)
    runner = CliRunner()
    out = tmp_path / "fr"
    args = ["train", "--model", "featrank", "--data", ev, "--items", it, "--out", str(out)]
    args += ["--set", "model.transitions=false", "--set", "model.order_window=0"]
    res = runner.invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("chose ")]
    assert lines[0].startswith(
        "chose gap fields: kept year (candidates: year; validation NDCG@10 "
    ), lines
    assert lines[1].startswith("chose refit: "), lines
    model = Recommender.load(out)
    assert "gap:year" in model.names
    assert model.meta.run.choices["gap fields"] == lines[0].removeprefix("chose gap fields: ")
    res = runner.invoke(cli, [*args, "--json"], catch_exceptions=False)
    assert json.loads(res.stdout)["choices"] == model.meta.run.choices
    # a model that chooses nothing
    pop = runner.invoke(
        cli, ["train", "--model", "pop", "--data", ev, "--out", str(tmp_path / "pop")]
    )
    assert pop.exit_code == 0 and "chose " not in pop.output
    assert Recommender.load(tmp_path / "pop").meta.run.choices == {}


def test_fresh_reports_weights_only_where_it_chose_them(tmp_path) -> None:
    ev, it = _files(tmp_path)
    runner = CliRunner()
    base = ["train", "--model", "fresh", "--data", ev, "--items", it, "--set", "model.base=pop"]
    chose = runner.invoke(cli, [*base, "--out", str(tmp_path / "a")], catch_exceptions=False)
    assert chose.exit_code == 0, chose.output
    assert "chose weights: cold_weight " in chose.output
    given = [*base, "--set", "model.cold_weight=1", "--set", "model.affinity_weight=0"]
    res = runner.invoke(cli, [*given, "--out", str(tmp_path / "b")], catch_exceptions=False)
    assert res.exit_code == 0 and "chose " not in res.output, res.output
