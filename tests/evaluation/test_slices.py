"""Cold-start slices: on a hand-made log whose returning/new users, new items and repeats are
known, each slice holds exactly those examples and its metrics are those of that subset."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from click.testing import CliRunner

from warmrec.cli.main import cli
from warmrec.data.prepared import prepare
from warmrec.errors import ConfigError
from warmrec.evaluation.evaluate import evaluate
from warmrec.evaluation.slices import (
    SLICES,
    cold_slices,
    evaluate_slices,
    slices_table,
    subset_result,
)

# train (t < 100): users a, b on items 1-4; valid (100 <= t < 200): b on item 4, d on item 6;
# test (t >= 200): a returns (item 5 new, then 5 again: a repeat, then 1), c is new (5, then 6:
# 6 was first seen in valid, so it is not new for test), d (first seen in valid) returns on 1.
ROWS = [
    ("a", 1, 10), ("a", 2, 11), ("b", 2, 12), ("b", 3, 13), ("b", 4, 14), ("a", 3, 15),
    ("b", 4, 110), ("d", 6, 120),
    ("a", 5, 210), ("a", 5, 211), ("a", 1, 212), ("c", 5, 220), ("c", 6, 221), ("d", 1, 230),
]  # fmt: skip


def _log() -> pl.DataFrame:
    return pl.DataFrame(
        ROWS, schema={"user_id": pl.String, "item_id": pl.Int64, "timestamp": pl.Float64},
        orient="row",
    )  # fmt: skip


@pytest.fixture
def prep():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few test events
        return prepare(
            _log(),
            split="temporal",
            split_options={"test_start": 200.0, "valid_start": 100.0, "drop_unseen": False},
        )


def _pairs(prep, idx) -> set[tuple[str, int, int]]:
    es = prep.test
    items = prep.vocab.decode(es.targets)
    keys = es.keys.to_list()
    return {(keys[j], int(items[j]), int(len(es.history(j)))) for j in idx}


def test_each_slice_holds_exactly_its_examples(prep) -> None:
    s = cold_slices(prep)
    assert tuple(s) == SLICES
    assert len(s["all"]) == len(prep.test) == 6
    # (user, target item, history length)
    assert _pairs(prep, s["returning_users"]) == {
        ("a", 5, 3),
        ("a", 5, 4),
        ("a", 1, 5),
        ("d", 1, 1),
    }
    assert _pairs(prep, s["new_users"]) == {("c", 5, 0), ("c", 6, 1)}
    assert _pairs(prep, s["new_items"]) == {("a", 5, 3), ("a", 5, 4), ("c", 5, 0)}
    # a's second view of 5 is a repeat (5 is in its history)
    assert _pairs(prep, s["new_items_first"]) == {("a", 5, 3), ("c", 5, 0)}


def test_on_the_valid_part_only_train_is_before(prep) -> None:
    s = cold_slices(prep, "valid")
    es = prep.valid
    items = prep.vocab.decode(es.targets)
    keys = es.keys.to_list()
    assert {(keys[j], int(items[j])) for j in s["new_users"]} == {("d", 6)}
    assert {(keys[j], int(items[j])) for j in s["new_items"]} == {("d", 6)}
    assert {(keys[j], int(items[j])) for j in s["returning_users"]} == {("b", 4)}
    with pytest.raises(ConfigError, match="part: expected one of test, valid, found 'train'"):
        cold_slices(prep, "train")


class _Fixed:
    """Scores item 5 first, then item 1, then the rest by index (known ranks)."""

    history_len = 50

    def __init__(self, n_items: int, vocab) -> None:
        self.n_items = n_items
        self.order = [int(vocab.encode(pl.Series([5]))[0]), int(vocab.encode(pl.Series([1]))[0])]

    def score(self, batch) -> torch.Tensor:
        s = -torch.arange(self.n_items, dtype=torch.float32).repeat(len(batch), 1)
        s[:, self.order[0]] = 100.0
        s[:, self.order[1]] = 50.0
        return s


def test_slice_metrics_are_those_of_the_subset(prep) -> None:
    model = _Fixed(prep.test.n_items, prep.vocab)
    metrics = ["hr@1", "mrr@10", "coverage@2"]
    res = evaluate_slices(model, prep.test, cold_slices(prep), metrics)
    # every target on item 5 is ranked first; item 1 second
    assert res["new_items"].summary == {"hr@1": 1.0, "mrr@10": 1.0}
    assert res["new_items"].n_examples == 3
    assert res["new_users"]["hr@1"] == 0.5  # c: 5 (first), 6 (not first)
    assert res["all"]["coverage@2"] == pytest.approx(2 / (prep.test.n_items - 1))
    for name, idx in cold_slices(prep).items():
        direct = evaluate(model, prep.test.subset(idx), ["hr@1", "mrr@10"]).summary
        assert res[name]["hr@1"] == direct["hr@1"] and res[name]["mrr@10"] == direct["mrr@10"]
    table = slices_table(res)
    assert table["slice"].to_list() == list(SLICES)
    assert table["n"].to_list() == [6, 4, 2, 3, 2]
    assert table.filter(pl.col("slice") == "new_users")["coverage@2"].to_list() == [None]
    empty = subset_result(res["all"], np.array([], dtype=np.int64))
    assert empty.n_examples == 0 and np.isnan(empty.summary["hr@1"])
    assert slices_table({"none": empty})["hr@1"].to_list() == [None]  # no example, no figure


def test_a_session_log_has_no_user_slices() -> None:
    log = _log().rename({"user_id": "session_id"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prep = prepare(
            log, split="temporal", split_options={"test_start": 200.0, "drop_unseen": False}
        )
    s = cold_slices(prep)
    assert tuple(s) == ("all", "new_items", "new_items_first")


def test_an_anonymous_session_is_in_neither_user_slice() -> None:
    """A session log whose guest sessions have no user: cold_slices failed on them ('index out
    of the vocabulary': user index 0 decoded as a user), and with it ``warmrec evaluate
    --slices`` and ``warmrec auto``'s final report."""
    rows = [
        ("a", "s1", 1, 10.0), ("a", "s1", 2, 11.0), (None, "s2", 2, 20.0), (None, "s2", 3, 21.0),
        ("b", "s3", 1, 110.0), ("b", "s3", 3, 111.0),
        ("a", "s4", 2, 210.0), ("a", "s4", 3, 211.0), ("c", "s5", 1, 220.0), ("c", "s5", 2, 221.0),
        (None, "s6", 3, 230.0), (None, "s6", 1, 231.0),
    ]  # fmt: skip
    schema = {"user_id": pl.String, "session_id": pl.String, "item_id": pl.Int64}
    log = pl.DataFrame(rows, schema={**schema, "timestamp": pl.Float64}, orient="row")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prep = prepare(
            log,
            split="temporal",
            split_options={"test_start": 200.0, "valid_start": 100.0, "drop_unseen": False},
        )
    s = cold_slices(prep)
    session = prep.test.keys.to_list()
    assert sorted(session) == ["s4", "s5", "s6"]
    assert [session[j] for j in s["returning_users"]] == ["s4"]  # a trained before
    assert [session[j] for j in s["new_users"]] == ["s5"]  # c arrives in test; s6 has no user
    assert len(s["all"]) == 3


def test_cli_evaluate_slices(tmp_path: Path) -> None:
    p = tmp_path / "log.csv"
    _log().write_csv(p)
    out = tmp_path / "m"
    runner = CliRunner()
    args = ["train", "--model", "markov", "--data", str(p), "--split", "temporal",
            "--set", "split.test_start=200", "--set", "split.valid_start=100",
            "--set", "split.drop_unseen=false", "--out", str(out)]  # fmt: skip
    res = runner.invoke(cli, args)
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["evaluate", str(out), "--slices", "--metrics", "hr@1", "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert {k: v["n"] for k, v in d["slices"].items()} == dict(
        zip(SLICES, [6, 4, 2, 3, 2], strict=True)
    )
    # an ID-only model cannot rank items it never saw (ties count against it): never first
    assert d["slices"]["new_items"]["metrics"]["hr@1"] == 0.0
    assert d["metrics"]["hr@1"] == d["slices"]["all"]["metrics"]["hr@1"]
    res = runner.invoke(cli, ["evaluate", str(out), "--slices", "--metrics", "hr@10"])
    assert res.exit_code == 0, res.output
    assert "| new_items_first | 2" in res.output


def test_mars_time_split_slices_are_the_benchmarks() -> None:
    """MARS cut at 2019-07-01 (valid from 2019-04-01): the slice sizes of
    ``benchmarks/results/mars.md`` (section text-newvideo), and what the data README says: 957
    learners first appear after the cut, a third of the test events are on new videos."""
    from tests.conftest import require_shared
    from warmrec.data.readers import load_interactions

    inter = load_interactions(require_shared("mars"))
    prep = prepare(
        inter,
        split="temporal",
        split_options={
            "test_start": "2019-07-01",
            "valid_start": "2019-04-01",
            "drop_unseen": False,
        },
    )
    sizes = {k: len(v) for k, v in cold_slices(prep).items()}
    assert sizes == dict(zip(SLICES, [8531, 1410, 7121, 2841, 1523], strict=True))
    new_users = prep.test.keys.gather(cold_slices(prep)["new_users"]).n_unique()
    assert new_users == 957


def test_a_slice_skips_nan_examples_as_evaluate_does() -> None:
    """The popularity of an empty top-K list is NaN: ``evaluate`` averages without it, and a
    slice must too (it showed null for a slice holding one such example)."""
    from warmrec.data.dataset import EvalSet

    class Ranked:
        history_len = 5

        def score(self, batch):
            x = torch.arange(6.0).repeat(len(batch), 1)
            x[0] = -torch.inf  # nothing to recommend to the first example
            return x

    items = np.array([5, 5, 5], dtype=np.int64)
    es = EvalSet(items, np.array([0, 1, 2]), np.array([1, 2, 3]), np.array([1, 2, 3]), 6,
                 pl.Series(range(3)))  # fmt: skip
    res = evaluate(Ranked(), es, ["hr@2", "popularity@2"], item_counts=np.arange(6.0))
    assert np.isnan(res.per_example["popularity@2"][0])
    assert res.summary["popularity@2"] == pytest.approx(4.5)
    part = subset_result(res, np.array([0, 1]))
    assert part.summary["popularity@2"] == pytest.approx(4.5)


def test_slices_under_a_training_fraction_read_the_sample_the_model_trained_on(prep) -> None:
    """``train_fraction``: an item or user known only from dropped training sequences is new
    to the model, and the slices say so; the examples' histories are unchanged."""
    from warmrec.experiments.scenarios import DataScarcity

    seed = next(
        s
        for s in range(50)
        if DataScarcity(fraction=0.5, seed=s).keys(prep.split.train).to_list() == ["b"]
    )  # keeps b (items 2, 3, 4), drops a (items 1, 2, 3)
    scarce = DataScarcity(fraction=0.5, seed=seed).apply(prep)
    assert set(scarce.split.train["user_id"].to_list()) == {"b"}
    assert set(scarce.split.context["user_id"].to_list()) == {"a"}  # history only
    assert scarce.split.info["train_rows_dropped"] == 3
    s = cold_slices(scarce)
    # item 1 had training events of a only: new now, for a's and d's targets on it
    assert _pairs(scarce, s["new_items"]) == {
        ("a", 5, 3), ("a", 5, 4), ("c", 5, 0), ("a", 1, 5), ("d", 1, 1),
    }  # fmt: skip
    assert _pairs(scarce, s["new_users"]) == {("a", 5, 3), ("a", 5, 4), ("a", 1, 5),
                                              ("c", 5, 0), ("c", 6, 1)}  # fmt: skip
    # the split rebuilds the same examples (a's history kept through the context rows)
    es = scarce.split.test_set(scarce.vocab)
    assert [len(es.history(j)) for j in range(len(es))] == [
        len(scarce.test.history(j)) for j in range(len(scarce.test))
    ]
