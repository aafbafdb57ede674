"""Feature files beside any log (``--items`` / ``--users``): read with their key found by name,
numbers as numbers, every malformed file refused naming its line; a text model trained with
one ranks by its text, and the saved model reads it again."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from warmrec.cli.main import cli
from warmrec.data.features import attach, read_feature_table
from warmrec.data.readers import load_interactions
from warmrec.errors import ConfigError, DataError

TOPICS = ("alpha", "beta", "gamma")


def _items(tmp_path: Path, name: str = "items.csv") -> Path:
    # item 10*t + k: the k-th video of topic t; the key column has an alias name
    rows = ["video_id,title,duration,level"]
    for t, topic in enumerate(TOPICS):
        for k in range(4):
            rows.append(f"{10 * t + k},{topic} lesson {k},{60 + k},{'easy' if k < 2 else 'hard'}")
    p = tmp_path / name
    p.write_text("\n".join(rows) + "\n")
    return p


def _log(tmp_path: Path) -> Path:
    # each learner watches one topic's videos in order (never another topic's)
    rows = ["user_id,item_id,timestamp"]
    ts = 0
    for u in range(30):
        t = u % 3
        for k in range(4):
            ts += 1
            rows.append(f"u{u},{10 * t + k},{ts}")
    p = tmp_path / "log.csv"
    p.write_text("\n".join(rows) + "\n")
    return p


def test_a_feature_file_is_read_by_its_key_alias_with_numbers_as_numbers(tmp_path) -> None:
    df = read_feature_table(_items(tmp_path), "item_id")
    assert df.columns == ["item_id", "title", "duration", "level"]
    assert df["item_id"].dtype == pl.Int64 and df["duration"].dtype == pl.Int64
    assert df["title"][5] == "beta lesson 1" and df["level"].dtype == pl.String
    pq = tmp_path / "items.parquet"
    df.rename({"item_id": "ItemId"}).write_parquet(pq)
    assert read_feature_table(pq, "item_id").equals(df)


@pytest.mark.parametrize(
    "text, message",
    [
        ("video_id,title\n", "line 2: the file has a header but no data rows"),
        ("title,length\na,1\n", "field 'item_id': missing key column"),
        ("item_id,title\n1,a\n,b\n", "line 3: field 'item_id': missing value"),
        ("item_id,title\n1,a\n2,b\n1,c\n", "line 4: field 'item_id': duplicate id"),
        ("video_id,course_id,title\n1,2,a\n", "two columns could be the item_id"),
    ],
)
def test_a_malformed_feature_file_is_refused_with_its_line(tmp_path, text, message) -> None:
    p = tmp_path / "items.csv"
    p.write_text(text)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_feature_table(p, "item_id")
    with pytest.raises(DataError, match="no item feature file"):
        read_feature_table(tmp_path / "none.csv", "item_id")


def test_the_key_takes_the_logs_id_type_and_another_catalogue_is_refused(tmp_path) -> None:
    log = pl.DataFrame({"item_id": ["a", "b", "7"]})
    table = pl.DataFrame({"item_id": [7, 8], "title": ["x", "y"]})
    out = attach(log, table, "item_id", "t.csv")
    assert out["item_id"].to_list() == ["7", "8"]
    ints = pl.DataFrame({"item_id": [1, 2]})
    strs = pl.DataFrame({"item_id": ["2", "z"], "title": ["y", "z"]})
    assert attach(ints, strs, "item_id", "t.csv")["item_id"].to_list() == [2]  # z is no id
    with pytest.raises(DataError, match=r"t.csv: field 'item_id': no item_id of the log"):
        attach(ints, pl.DataFrame({"item_id": [5]}), "item_id", "t.csv")


def test_load_interactions_attaches_the_files(tmp_path) -> None:
    users = tmp_path / "users.csv"
    users.write_text("learner_id,job\n" + "".join(f"u{u},job{u % 2}\n" for u in range(30)))
    inter = load_interactions(_log(tmp_path), items=_items(tmp_path), users=users)
    assert inter.item_features.height == 12 and "title" in inter.item_features.columns
    assert inter.user_features.columns == ["user_id", "job"]
    sessions = tmp_path / "sessions.csv"
    sessions.write_text("session_id,item_id,timestamp\n1,0,1\n1,1,2\n")
    with pytest.raises(ConfigError, match="no user_id column"):
        load_interactions(sessions, users=users)


def test_a_text_model_trained_with_items_ranks_by_text_and_reloads_them(tmp_path) -> None:
    runner = CliRunner()
    out = tmp_path / "m"
    res = runner.invoke(
        cli,
        [
            "train",
            "--model",
            "tfidf",
            "--data",
            str(_log(tmp_path)),
            "--items",
            str(_items(tmp_path)),
            "--set",
            'model.text_fields=["title"]',
            "--out",
            str(out),
            "--json",
        ],  # fmt: skip
    )
    assert res.exit_code == 0, res.output
    # a history of two beta lessons: the other beta lessons come next (their titles match)
    res = runner.invoke(
        cli, ["recommend", str(out), "--items", "10,11", "-k", "2", "--exclude-seen", "--json"]
    )
    assert res.exit_code == 0, res.output
    assert sorted(json.loads(res.stdout)["items"]) == [12, 13]
    # the model recorded the feature file: evaluate reads it again without --items
    meta = json.loads((out / "config.json").read_text())
    assert json.dumps(meta).count(str(tmp_path / "items.csv")) >= 1
    res = runner.invoke(cli, ["evaluate", str(out), "--metrics", "hr@10", "--json"])
    assert res.exit_code == 0, res.output
    # an error in the file is one line, exit status 2
    (tmp_path / "items.csv").write_text("video_id,title\n1,a\n1,b\n")
    res = runner.invoke(cli, ["train", "--model", "tfidf", "--data", str(_log(tmp_path)),
                              "--items", str(tmp_path / "items.csv"), "--out", str(tmp_path / "n")])  # fmt: skip
    assert res.exit_code == 2
    assert res.output.strip().endswith("duplicate id (expected one row per id, found '1')")
    assert "line 3" in res.output and len(res.output.strip().splitlines()) == 1


def test_zero_padded_text_keys_are_not_integer_ids(tmp_path) -> None:
    """A feature file's ``007`` was read as item 7 of an integer log (a second row for it)."""
    log = pl.DataFrame({"item_id": [3, 7]})
    table = pl.DataFrame({"item_id": ["007", "7", "3"], "title": ["Bond", "Seven", "Three"]})
    out = attach(log, table, "item_id", "t.csv")
    assert out.sort("item_id").rows() == [(3, "Three"), (7, "Seven")]
    p = tmp_path / "items.csv"
    p.write_text("item_id,title\n007,Bond\n3,Three\n")
    with pytest.raises(DataError, match="no item_id of the log"):
        attach(pl.DataFrame({"item_id": [7]}), read_feature_table(p, "item_id"), "item_id", p)
