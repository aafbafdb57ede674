"""How the data was read travels with every saved model (train, pretrain, transfer), so
``evaluate`` works with a column mapping and from any working directory; the pretrain/transfer
pipelines are library functions."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tests.conftest import cyclic_log
from warmrec.cli.main import cli
from warmrec.models.base import Recommender

TINY = ["model.d=8", "model.n_layers=1", "model.n_heads=1", "model.ffn_dim=8", "model.max_len=6"]
TINY += ["train.epochs=1", "train.batch_size=64"]
TINY_SETS = [x for kv in TINY for x in ("--set", kv)]
DATA_KEYS = {
    "path",
    "format",
    "columns",
    "no_timestamp",
    "order",
    "time_unit",
    "sep",
    "names",
    "items",
    "users",
    "duplicates",
    "fingerprint",
}


def run(args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def renamed_csv(tmp_path):
    """A log whose columns need --col: SessionKey, ItemKey, When."""
    p = tmp_path / "renamed.csv"
    cyclic_log(n_sessions=40, n_items=10, length=5).rename(
        {"session_id": "SessionKey", "item_id": "ItemKey", "timestamp": "When"}
    ).write_csv(p)
    return p


COLS = ["--col", "session_id=SessionKey", "--col", "item_id=ItemKey", "--col", "timestamp=When"]


def test_pretrain_with_col_then_evaluate(renamed_csv, tmp_path):
    out = tmp_path / "pre"
    res = run(["pretrain", "--data", renamed_csv, *COLS, *TINY_SETS, "--out", out, "--json"])
    assert res.exit_code == 0, res.output
    data = Recommender.load(out).meta.run.data.model_dump()
    assert set(data) == DATA_KEYS
    assert data["columns"] == {
        "session_id": "SessionKey",
        "item_id": "ItemKey",
        "timestamp": "When",
    }
    ev = run(["evaluate", out, "--json"])
    assert ev.exit_code == 0, ev.output
    assert json.loads(ev.stdout)["n"] > 0


def test_transfer_records_data_and_evaluates(renamed_csv, tmp_path):
    pre, tgt = tmp_path / "pre", tmp_path / "tgt"
    assert run(["pretrain", "--data", renamed_csv, *COLS, *TINY_SETS, "--out", pre]).exit_code == 0
    res = run(["transfer", "--from", pre, "--data", renamed_csv, *COLS, "--set", "train.epochs=1"])
    assert res.exit_code == 2 and "--out" in res.output  # --out is required
    res = run(
        ["transfer", "--from", pre, "--data", renamed_csv, *COLS]
        + ["--set", "train.epochs=1", "--out", tgt, "--json"]
    )
    assert res.exit_code == 0, res.output
    data = Recommender.load(tgt).meta.run.data.model_dump()
    assert set(data) == DATA_KEYS and data["columns"]["item_id"] == "ItemKey"
    ev = run(["evaluate", tgt, "--json"])
    assert ev.exit_code == 0, ev.output


def test_train_relative_data_path_evaluates_from_another_cwd(tmp_path, monkeypatch):
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    cyclic_log(n_sessions=40, n_items=10, length=5).write_csv(work / "log.csv")
    monkeypatch.chdir(work)
    res = run(["train", "--model", "markov", "--data", "log.csv", "--out", "model"])
    assert res.exit_code == 0, res.output
    data = Recommender.load(work / "model").meta.run.data.model_dump()
    assert set(data) == DATA_KEYS
    assert data["path"] == str((work / "log.csv").resolve())
    st = (work / "log.csv").stat()
    assert data["fingerprint"].startswith(f"{st.st_size}:{st.st_mtime_ns}#")  # a changed log
    monkeypatch.chdir(elsewhere)
    ev = run(["evaluate", work / "model", "--json"])
    assert ev.exit_code == 0, ev.output
    assert json.loads(ev.stdout)["metrics"]["hr@10"] > 0.5


def test_run_pretrain_and_run_transfer_python_api(tmp_path):
    from warmrec.experiments.run import run_pretrain, run_transfer

    p = tmp_path / "log.csv"
    cyclic_log(n_sessions=40, n_items=10, length=5).write_csv(p)
    cfg = {
        "data": {"path": str(p)},
        "model": {"d": 8, "n_layers": 1, "n_heads": 1, "ffn_dim": 8, "max_len": 6},
        "train": {"epochs": 1},
    }
    info = run_pretrain(cfg, tmp_path / "pre")
    assert info["model"] == "sasrec" and info["split"] == "last_session"
    out = run_transfer(
        {"data": {"path": str(p)}, "train": {"epochs": 1}},
        tmp_path / "tgt",
        source=tmp_path / "pre",
        strategy="finetune",
    )
    assert out["strategy"] == "finetune" and out["n_trainable"] > 0
    m = Recommender.load(tmp_path / "tgt")
    assert m.meta.run.split["method"] == "last_session"
    assert len(m.meta.item_counts) == len(m.vocab)


def test_a_configs_item_feature_file_is_read_next_to_the_config(tmp_path, monkeypatch):
    """[data] items was read from the working directory, not the config file's folder: a
    config with its log and item file beside it failed from anywhere else."""
    import polars as pl

    exp = tmp_path / "exp"
    exp.mkdir()
    cyclic_log(n_sessions=40, n_items=12, length=6).write_csv(exp / "log.csv")
    items = pl.DataFrame({"item_id": range(1, 13), "title": [f"video {i}" for i in range(1, 13)]})
    items.write_csv(exp / "items.csv")
    (exp / "run.toml").write_text(
        '[data]\npath = "log.csv"\nitems = "items.csv"\n[model]\nname = "pop"\n'
    )
    monkeypatch.chdir(tmp_path)  # neither file is here
    res = CliRunner().invoke(cli, ["train", "--config", "exp/run.toml", "--out", "m"])
    assert res.exit_code == 0, res.output
    assert Recommender.load(tmp_path / "m").meta.run.data.items == str(exp / "items.csv")


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"transfer": 3}, "transfer: expected a table of settings, found int 3"),
        (
            {"transfer": {"strategy_options": 3}, "strategy": {"lr_decay": 0.5}},
            "transfer.strategy_options: expected a table (merged with [strategy]), found int 3",
        ),
    ],
)
def test_run_transfer_refuses_a_transfer_section_that_is_no_table(cfg, message, tmp_path):
    """``--set transfer=3`` was a TypeError traceback ('int' object is not iterable), and so was
    a transfer.strategy_options value beside a [strategy] table: one ConfigError each."""
    from warmrec.errors import ConfigError
    from warmrec.experiments.run import run_transfer

    with pytest.raises(ConfigError) as e:
        run_transfer(cfg, tmp_path / "out", source=tmp_path / "src")
    assert message in str(e.value)
