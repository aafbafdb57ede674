"""`warmrec pretrain`, `warmrec transfer` and `warmrec study transfer` on tiny synthetic data."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tests.conftest import tiny_net
from warmrec.cli.main import cli
from warmrec.data.synthetic import generate_cross_domain
from warmrec.models.base import Recommender

SETTINGS = {**{f"model.{k}": v for k, v in tiny_net("sasrec").items()}, "train.epochs": 2}
SETS = [a for k, v in {**SETTINGS, "train.batch_size": 64}.items() for a in ("--set", f"{k}={v}")]


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    d = tmp_path_factory.mktemp("logs")
    cd = generate_cross_domain(300, 120, 60, 30, seed=0)
    src, tgt = d / "source.csv", d / "target.csv"
    cd.source.write_csv(src)
    cd.target.write_csv(tgt)
    return src, tgt


def run(args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def pretrained(logs, tmp_path_factory):
    out = tmp_path_factory.mktemp("src") / "model"
    res = run(["pretrain", "--model", "sasrec", "--data", logs[0], *SETS, "--out", out, "--json"])
    assert res.exit_code == 0, res.output
    return out, json.loads(res.stdout)


def test_pretrain_saves_model_with_item_counts(pretrained):
    out, info = pretrained
    model = Recommender.load(out)
    assert model.name == "sasrec" and model.config.d == 16
    counts = model.meta.item_counts
    assert len(counts) == len(model.vocab) and sum(counts) > 0
    assert info["model"] == "sasrec" and 0 <= info["valid"]["ndcg@10"] <= 1


def test_transfer_fine_tunes_on_the_target(pretrained, logs, tmp_path):
    src, _ = pretrained
    out = tmp_path / "tgt"
    args = ["transfer", "--from", src, "--data", logs[1], "--strategy", "freeze_embeddings"]
    args += ["--init", "popularity", "--set", "train.epochs=2", "--out", out, "--json"]
    res = run(args)
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["strategy"] == "freeze_embeddings" and info["init"] == "popularity"
    model = Recommender.load(out)
    assert model.meta.transfer.strategy == "freeze_embeddings"
    assert all(str(i).startswith("t") for i in model.vocab.ids.to_list())  # target catalogue
    assert set(info["valid"]) >= {"ndcg@10", "hr@10"}
    assert 0 < info["n_trainable"]
    text = run(
        ["transfer", "--from", src, "--data", logs[1], "--set", "train.epochs=1"]
        + ["--out", tmp_path / "t2"]
    )
    assert text.exit_code == 0 and "valid ndcg@10" in text.output


def test_transfer_errors_are_one_line(pretrained, logs, tmp_path):
    src, _ = pretrained
    res = run(
        ["transfer", "--from", src, "--data", logs[1], "--strategy", "bogus"]
        + ["--out", tmp_path / "x"]
    )
    assert res.exit_code == 2
    assert (
        res.output.strip().count("\n") == 0
        and "--strategy: expected one of" in res.output
        and "found 'bogus'" in res.output
    )
    res = run(
        ["transfer", "--from", src, "--data", logs[1], "--set", "nosuch.k=1"]
        + ["--out", tmp_path / "x"]
    )
    assert res.exit_code == 2 and "unknown config section" in res.output
    res = run(["pretrain", "--model", "pop", "--data", logs[0], "--out", tmp_path / "p"])
    assert res.exit_code == 2 and "neural" in res.output


def test_study_transfer(logs, tmp_path):
    out = tmp_path / "study"
    args = ["study", "transfer", "--source", logs[0], "--target", logs[1]]
    args += ["--strategies", "scratch,finetune", "--inits", "popularity", "--fractions", "0.5,1"]
    args += ["--seeds", "1", "--baselines", "pop", *SETS, "--out", out, "--json"]
    res = run(args)
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    methods = {r["method"] for r in info["summary"]}
    assert methods == {"pop", "scratch", "finetune+popularity"}
    assert len(info["computed"]) == 6
    assert (out / "report.html").exists() and (out / "results.md").exists()
    again = run(args)  # resumes: nothing recomputed
    assert again.exit_code == 0 and json.loads(again.stdout)["computed"] == []
    bad = run([*args[:-3], "--fractions", "0,1", "--out", out, "--json"])
    assert bad.exit_code == 2 and "fraction" in bad.output
    # stderr not a terminal (a log file): a plain line per run, not tqdm's \r updates
    lines = run([*args[:-1], "--no-resume"])
    assert lines.exit_code == 0, lines.output
    assert "\r" not in lines.stderr
    runs = [x for x in lines.stderr.splitlines() if x.startswith("transfer study: run ")]
    assert [x.split(":")[1].strip().split()[1] for x in runs] == [f"{i}/6" for i in range(1, 7)]
    assert "transfer study: pre-training the source (sasrec)" in lines.stderr


def test_study_transfer_with_reptile_from_toml(logs, tmp_path):
    out = tmp_path / "study"
    toml = tmp_path / "study.toml"
    toml.write_text(
        "[reptile]\nmeta_iterations = 3\nmeta_batch_size = 2\ninner_steps = 2\n"
        'n_support = 3\ndevice = "cpu"\n'
    )
    args = ["study", "transfer", "--source", logs[0], "--target", logs[1]]
    args += ["--strategies", "scratch,reptile", "--inits", "mean", "--fractions", "1"]
    args += ["--seeds", "1", "--baselines", "", *SETS, "--config", toml, "--out", out, "--json"]
    res = run(args)
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert {r["method"] for r in info["summary"]} == {"scratch", "reptile+mean"}
    assert info["info"]["reptile"]["meta_iterations"] == 3
    assert Recommender.load(out / "reptile" / "s0").meta.reptile.inner_steps == 2
    again = run(args)
    assert again.exit_code == 0 and json.loads(again.stdout)["computed"] == []
    toml.write_text("[reptile]\nbogus = 1\n")
    bad = run([*args[:-3], "--out", tmp_path / "other", "--json"])
    assert bad.exit_code == 2 and "bogus" in bad.output


def test_study_transfer_reads_each_side_with_its_own_options(logs, tmp_path):
    """A source with its own column names and a target in SASRec's ``user item`` format (as the
    shipped ml-100k -> Wiki1000 pair): each side takes its own read options."""
    import polars as pl

    src = pl.read_csv(logs[0]).rename({"item_id": "ItemId", "timestamp": "Time"})
    src_path = tmp_path / "source.csv"
    src.write_csv(src_path)
    tgt = pl.read_csv(logs[1]).sort("session_id", "timestamp")
    tgt_path = tmp_path / "target.txt"
    tgt_path.write_text(
        "".join(f"{u} {i}\n" for u, i in tgt.select("session_id", "item_id").rows())
    )
    args = ["study", "transfer", "--source", src_path, "--target", tgt_path]
    args += ["--source-col", "item_id=ItemId", "--source-col", "timestamp=Time"]
    args += ["--target-format", "sasrec", "--strategies", "finetune", "--fractions", "1"]
    args += ["--seeds", "1", "--baselines", "pop", *SETS, "--out", tmp_path / "s", "--json"]
    res = run(args)
    assert res.exit_code == 0, res.output
    methods = {r["method"] for r in json.loads(res.stdout)["summary"]}
    assert methods == {"pop", "scratch", "finetune+popularity"}  # scratch: the reference
    same = run([*args[:6], "--format", "sasrec", *args[10:]])  # one format for both: refused
    assert same.exit_code == 2 and str(src_path) in same.output


def test_transfer_refuses_model_settings_it_would_ignore(tmp_path):
    """--set model.dropout=0.9 was recorded in the run as if applied; the source decides."""
    from click.testing import CliRunner

    from warmrec.cli.main import cli

    log = tmp_path / "log.csv"
    log.write_text("session_id,item_id,timestamp\n1,a,1\n1,b,2\n2,a,3\n2,b,4\n")
    res = CliRunner().invoke(cli, ["transfer", "--from", str(tmp_path / "nosuch"), "--data",
                                   str(log), "--set", "model.dropout=0.9", "--out",
                                   str(tmp_path / "t")])  # fmt: skip
    assert res.exit_code == 2 and "[model] does not apply to a transfer run" in res.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--init", "bogus"], "--init: expected one of 'random', 'mean', 'popularity', 'text'"),
        (["--set", "transfer.position_init=x"], "transfer.position_init: expected one of"),
        (
            ["--set", "transfer.init_options.nois=0.1"],
            "transfer.init_options: nois not an option of init 'popularity' (it takes noise",
        ),
        (
            ["--set", "transfer.strategy_options.lr_decay=5"],
            "transfer.strategy_options: lr_decay: expected a number > 0 and <= 1, found 5",
        ),
        (["--strategy", "freeze"], "strategy 'freeze' needs freeze = [glob patterns"),
    ],
)
def test_transfer_settings_are_checked_before_any_data_is_read(args, message, tmp_path):
    """A bad init, position_init, init option or strategy option was found only after the
    data was read and split and the source loaded: here neither exists, so the only way to
    name the setting is to check it first."""
    res = run(["transfer", "--from", tmp_path / "no-source", "--data", tmp_path / "no.csv",
               *args, "--out", tmp_path / "x"])  # fmt: skip
    assert res.exit_code == 2 and message in res.output, res.output
    assert res.output.strip().count("\n") == 0


@pytest.mark.parametrize("workers", [[], ["--workers", "1"]])
def test_train_refuses_a_model_and_a_transfer_source_together(pretrained, logs, tmp_path, workers):
    """train fitted the [transfer] source and ignored [model]: `train --model pop` with a
    config naming a source saved a sasrec."""
    src, _ = pretrained
    toml = tmp_path / "tr.toml"
    toml.write_text(f'[transfer]\nsource = "{src}"\n')
    out = tmp_path / "m"
    res = CliRunner().invoke(cli, ["train", "--model", "pop", "--data", str(logs[1]), "--config",
                                   str(toml), *workers, "--out", str(out)])  # fmt: skip
    assert res.exit_code == 2, res.output
    assert "both [model] (name 'pop') and [transfer] (source" in res.output
    assert res.output.strip().count("\n") == 0 and not out.exists()
