"""The learning curve: runs per (arm, fraction, seed), resume, table shape, sizes, protocol, CLI."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from tests.conftest import cyclic_log, tiny_net
from warmrec.cli.main import cli
from warmrec.errors import ConfigError, DataError
from warmrec.experiments.spec import fit_run, prepare_run, save_run, spec_from_config
from warmrec.experiments.studies.curve import (
    Arm,
    arm_spec,
    paired_ratio_ci,
    parse_arm,
    run_curve,
    split_arms,
)

TRAIN = {"epochs": 3, "batch_size": 64, "lr": 5e-3, "patience": 0}


def user_log(n_users: int = 200, n_items: int = 30, seed: int = 0, offset: int = 0) -> pl.DataFrame:
    """Users who walk a cycle ``i -> i + 1``: the next item is always the last one + 1."""
    df = cyclic_log(n_sessions=n_users, n_items=n_items, length=8, seed=seed)
    return df.rename({"session_id": "user_id"}).with_columns(pl.col("item_id") + offset)


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory):
    """A tiny SASRec pre-trained on another catalogue (items 1001..)."""
    d = tmp_path_factory.mktemp("src")
    log = d / "source.csv"
    user_log(150, 25, seed=3, offset=1000).write_csv(log)
    spec = spec_from_config(
        {
            "data": {"path": str(log)},
            "model": {"name": "sasrec", **tiny_net("sasrec")},
            "train": TRAIN,
            "pretrain": True,
        }
    )
    prep = prepare_run(spec)
    return save_run(fit_run(spec, prep), d / "model")


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    p = tmp_path_factory.mktemp("tgt") / "target.csv"
    user_log().write_csv(p)
    return p


def base_spec(target, model="markov", **model_cfg):
    return spec_from_config(
        {
            "data": {"path": str(target)},
            "split": {"method": "loo"},
            "model": {"name": model, **model_cfg},
            "eval": {"metrics": ["hr@10", "ndcg@10"]},
            **({"train": TRAIN} if model == "sasrec" else {}),
        }
    )


@pytest.mark.slow
def test_curve_two_arms_resumes_and_tabulates(target, source_dir, tmp_path):
    base = base_spec(target, "sasrec", **tiny_net("sasrec"))
    arms = ["scratch", f"src={'transfer:' + str(source_dir)}"]
    kw = dict(fractions=(0.1, 1.0), seeds=(0, 1), out_dir=tmp_path / "c", n_boot=200)
    res = run_curve(base, arms, **kw)
    assert len(res.computed) == 8
    assert len(list((tmp_path / "c" / "runs").glob("*.json"))) == 8
    # one row per (arm, fraction); scratch's ratio is 1, the transfer arm's has an interval
    assert res.summary.height == 4
    assert set(res.summary["arm"]) == {"scratch", "src"}
    src = res.summary.filter(pl.col("arm") == "src")
    assert src["ratio_lo"].is_not_null().all()
    assert (src["ratio_lo"] <= src["ratio"]).all() and (src["ratio"] <= src["ratio_hi"]).all()
    assert res.summary.filter(pl.col("arm") == "scratch")["ratio"].to_list() == [1.0, 1.0]
    n = res.summary.sort("fraction")["n_train"].to_list()
    assert n[0] < n[-1] and n[0] == 20  # 10 % of 200 users
    assert res.table.columns[:4] == ["arm", "fraction", "n_train", "n_seeds"]
    assert "ndcg@10 [95% CI]" in res.table.columns
    for f in (
        "results.md",
        "report.md",
        "report.html",
        "summary.csv",
        "ndcg_at_10_vs_fraction.png",
    ):
        assert (tmp_path / "c" / f).is_file(), f
    md = (tmp_path / "c" / "results.md").read_text()
    assert "split: loo" in md and "seen items kept" in md and "full ranking" in md
    # the transfer runs recorded the source and the per-user values of the same test users
    rec = json.loads((tmp_path / "c" / "runs" / "src-f0.1-s1.json").read_text())
    assert rec["source"] == str(source_dir) and len(rec["per_user"]) == rec["n_test"] == 200
    assert 1 <= rec["best_epoch"] <= rec["epochs_run"] and 0 <= rec["valid"]["ndcg@10"] <= 1
    again = run_curve(base, arms, **kw)
    assert again.computed == []
    assert again.summary.equals(res.summary)


def test_larger_fraction_is_not_worse_on_a_cycle(target, tmp_path):
    # first-order Markov on a cycle: 10 % of users leave transitions unseen, all users none
    res = run_curve(base_spec(target), ["scratch"], fractions=(0.05, 1.0), seeds=(0, 1),
                    out_dir=tmp_path / "m", n_boot=100)  # fmt: skip
    hr = dict(zip(res.summary["fraction"], res.summary["hr@10"], strict=True))
    assert hr[1.0] == pytest.approx(1.0)
    assert hr[0.05] < hr[1.0]


def test_run_records_keep_the_validation_metrics(target, tmp_path):
    # a Markov chain on a cycle predicts every validation target: valid HR@10 is 1
    run_curve(base_spec(target), ["scratch"], fractions=(1.0,), seeds=(0,),
              out_dir=tmp_path / "c", n_boot=50)  # fmt: skip
    rec = json.loads((tmp_path / "c" / "runs" / "scratch-f1-s0.json").read_text())
    assert rec["valid"]["hr@10"] == 1.0 and "epochs_run" not in rec  # no training loop


def test_a_too_small_fraction_refuses_before_fitting(target, tmp_path):
    with pytest.raises(DataError, match="too few training sequences.*0.01"):
        run_curve(base_spec(target), ["scratch"], fractions=(0.01, 1.0), seeds=(0,),
                  out_dir=tmp_path / "s", min_train_sequences=5)  # fmt: skip
    assert not list((tmp_path / "s" / "runs").glob("*.json"))


def test_resume_refuses_runs_of_another_spec(target, tmp_path):
    kw = dict(fractions=(1.0,), seeds=(0,), out_dir=tmp_path / "r", n_boot=50)
    run_curve(base_spec(target), ["scratch"], **kw)
    with pytest.raises(ConfigError, match="another spec"):
        run_curve(base_spec(target, "pop"), ["scratch"], **kw)
    assert run_curve(base_spec(target, "pop"), ["scratch"], resume=False, **kw).computed


def test_transfer_runs_of_the_older_trainer_resolution_are_refused(target, source_dir, tmp_path):
    # transfer once took the loop's defaults, not the model's trainer: its run files keyed by
    # the spec alone (the older key) must be refused on resume, never silently reused
    base = base_spec(target, "sasrec", **tiny_net("sasrec"))
    arms = [f"src={'transfer:' + str(source_dir)}"]
    kw = dict(fractions=(1.0,), seeds=(0,), out_dir=tmp_path / "t", n_boot=50)
    run_curve(base, arms, **kw)
    path = tmp_path / "t" / "runs" / "src-f1-s0.json"
    rec = json.loads(path.read_text())
    # the run recorded the trainer it took: the test's settings over SASRec's default trainer
    assert rec["trainer"]["batch_size"] == TRAIN["batch_size"] and rec["trainer"]["lr"] == 5e-3
    assert rec["trainer"]["schedule"] == "cosine" and rec["trainer"]["warmup_steps"] == 200
    assert run_curve(base, arms, **kw).computed == []  # the current key resumes
    rec["spec_key"] = json.dumps(rec["spec"], sort_keys=True, default=str)
    path.write_text(json.dumps(rec))
    with pytest.raises(ConfigError, match="another spec"):
        run_curve(base, arms, **kw)


def test_runs_made_under_other_trainer_defaults_are_refused(target, tmp_path, monkeypatch):
    # a changed default trainer (SASRec's patience once 5, now 30) changes what a run that leaves
    # the setting open computes: its run files must be refused, a loop-free model's still reused
    from warmrec.models.sasrec import SASRec

    kw = dict(fractions=(1.0,), seeds=(0,), n_boot=50)
    net = base_spec(target, "sasrec", **tiny_net("sasrec"))
    run_curve(net, ["scratch"], out_dir=tmp_path / "n", **kw)
    run_curve(base_spec(target), ["scratch"], out_dir=tmp_path / "m", **kw)
    assert run_curve(net, ["scratch"], out_dir=tmp_path / "n", **kw).computed == []
    monkeypatch.setattr(SASRec, "default_trainer", {**SASRec.default_trainer, "patience": 7})
    with pytest.raises(ConfigError, match="other trainer defaults"):
        run_curve(net, ["scratch"], out_dir=tmp_path / "n", **kw)
    assert run_curve(base_spec(target), ["scratch"], out_dir=tmp_path / "m", **kw).computed == []


def test_arms_and_ratio_interval():
    assert parse_arm("scratch").is_scratch
    with pytest.raises(ConfigError, match="expected scratch, transfer:DIR"):
        parse_arm("finetune")
    with pytest.raises(ConfigError, match="no folder"):
        parse_arm("transfer:/no/such/dir")
    a = np.array([1.0, 0.0, 1.0, 1.0])
    r, lo, hi = paired_ratio_ci(a, a / 2, n_boot=200)
    assert r == lo == hi == pytest.approx(2.0)
    # a user without a value (NaN in either arm) is left out, as paired_test leaves it out:
    # the ratio was NaN
    x, y = np.array([1.0, np.nan, 1.0, 1.0]), np.array([0.5, 0.5, np.nan, 0.5])
    assert paired_ratio_ci(x, y, n_boot=200) == pytest.approx((2.0, 2.0, 2.0))
    assert all(np.isnan(paired_ratio_ci(np.array([np.nan]), np.array([1.0]))))


def test_a_labelled_scratch_arm_is_the_ratios_baseline(target, tmp_path):
    """``LABEL=scratch`` is a scratch arm under another name; the ratio column looked for an
    arm named "scratch" and stayed empty on every row. Two labelled scratch arms of a
    deterministic model: the second is the first's exactly, ratio 1 with a [1, 1] interval."""
    res = run_curve(base_spec(target), ["base=scratch", "again=scratch"], fractions=(0.5, 1.0),
                    seeds=(0,), out_dir=tmp_path, n_boot=50)  # fmt: skip
    rows = res.summary.sort("arm", "fraction").to_dicts()
    assert [(r["arm"], r["fraction"]) for r in rows] == [
        ("again", 0.5), ("again", 1.0), ("base", 0.5), ("base", 1.0)
    ]  # fmt: skip
    for r in rows:
        assert r["ratio"] == pytest.approx(1.0), r
        if r["arm"] == "again":
            assert r["ratio_lo"] == pytest.approx(1.0) and r["ratio_hi"] == pytest.approx(1.0)
    assert "| 1.0000 [1.0000, 1.0000] |" in (tmp_path / "results.md").read_text()


def test_cli_study_curve_runs_and_resumes(target, tmp_path):
    out = tmp_path / "cli"
    args = ["study", "curve", "--data", str(target), "--split", "loo", "--model", "markov",
            "--fractions", "0.5,1", "--seeds", "2", "--exclude-seen", "--out", str(out)]  # fmt: skip
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert "runs computed now: 4" in r.output and "seen items excluded" in r.output
    r = CliRunner().invoke(cli, args)
    assert "runs computed now: 0" in r.output
    r = CliRunner().invoke(cli, [*args[:-2], "--fractions", "0.001,1", "--out", str(out / "x")])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "too few training" in r.output


def test_loo_new_targets_the_last_new_item_and_excludes_seen(tmp_path):
    # user 1: a b a c b d c -> test d (last new), valid c, the final c dropped
    # user 2: x y x y      -> 2 new items only: everything trains
    # user 3: p q r        -> test r, valid q
    rows = [(1, i, t) for t, i in enumerate("abacbdc")]
    rows += [(2, i, 10 + t) for t, i in enumerate("xyxy")]
    rows += [(3, i, 20 + t) for t, i in enumerate("pqr")]
    log = tmp_path / "log.csv"
    pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row").write_csv(log)
    spec = spec_from_config({"data": {"path": str(log)}, "split": {"method": "loo_new"}})
    assert spec.eval.exclude_seen  # the protocol ranks among unopened items
    prep = prepare_run(spec)
    sp = prep.split
    assert sorted(zip(sp.test["user_id"], sp.test["item_id"], strict=True)) == [(1, "d"), (3, "r")]
    assert sorted(zip(sp.valid["user_id"], sp.valid["item_id"], strict=True)) == [
        (1, "c"),
        (3, "q"),
    ]
    u1 = sp.train.filter(pl.col("user_id") == 1)["item_id"].to_list()
    # the repeats before the valid target train; the b between valid (c) and test (d) is the
    # test target's history only (the valid example's future); the last c is gone
    assert u1 == list("aba")
    assert sp.context["item_id"].to_list() == ["b"]
    assert sp.train.filter(pl.col("user_id") == 2).height == 4
    assert sp.info["events_after_test_dropped"] == 1
    # user 1's test history: every earlier event, in time order
    hist = [prep.vocab.decode([i])[0] for i in prep.test.history(0)]
    assert hist == list("abacb")
    kept = spec_from_config({"split": {"method": "loo_new"}, "eval": {"exclude_seen": False}})
    assert kept.eval.exclude_seen is False


def test_a_transfer_runs_key_follows_the_source_weights(target, tmp_path):
    """A source re-trained into the same folder was reused from the old one's run files."""
    from warmrec.experiments.studies.curve import _spec_key

    src = tmp_path / "src"
    src.mkdir()
    (src / "model.safetensors").write_bytes(b"weights one")
    (src / "config.json").write_text("{}")
    spec = spec_from_config(
        {"data": {"path": str(target)}, "transfer": {"source": str(src), "strategy": "finetune"}}
    )
    one = _spec_key(spec)
    assert _spec_key(spec) == one
    (src / "model.safetensors").write_bytes(b"weights two")
    assert _spec_key(spec) != one


def test_cli_curve_of_transfer_arms_only_takes_epochs(target, source_dir, tmp_path):
    """--epochs with transfer arms only: "training settings given but no model"."""
    args = ["study", "curve", "--data", str(target), "--split", "loo", "--arms",
            f"ft=transfer:{source_dir}", "--fractions", "1", "--seeds", "1", "--epochs", "1",
            "--out", str(tmp_path / "c")]  # fmt: skip
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    rec = json.loads((tmp_path / "c" / "runs" / "ft-f1-s0.json").read_text())
    assert rec["epochs_run"] == 1


def test_stored_runs_of_another_primary_metric_or_other_data_are_refused(target, tmp_path):
    """The run files' per-user values are the primary metric's, and the key held the data's
    path only: a rerun with --metric hr@10 read NDCG@10 values as HR@10's, and a log
    rewritten under its name read the old log's runs back."""
    kw = dict(fractions=(1.0,), seeds=(0,), out_dir=tmp_path / "r", n_boot=50)
    run_curve(base_spec(target), ["scratch"], primary="ndcg@10", **kw)
    with pytest.raises(ConfigError, match="ndcg@10's, not hr@10's"):
        run_curve(base_spec(target), ["scratch"], primary="hr@10", **kw)
    log = tmp_path / "t.csv"
    user_log().write_csv(log)
    kw["out_dir"] = tmp_path / "d"
    run_curve(base_spec(log), ["scratch"], **kw)
    user_log(seed=5).write_csv(log)
    with pytest.raises(ConfigError, match="other data"):
        run_curve(base_spec(log), ["scratch"], **kw)


def test_the_interval_resamples_users_not_their_examples(tmp_path):
    """Under a session split each user has several test examples (correlated): the paired
    interval had resampled them as if independent users. Each run keeps one value per user,
    the mean of its examples."""
    from warmrec.evaluation.stats import per_user_values

    rows = []
    for u in range(60):  # each user: 3 sessions of 4 events; the last session is test
        for s in range(3):
            for j in range(4):
                rows.append((u, u * 10 + s, (u + j) % 12 + 1, float(u * 100 + s * 10 + j)))
    log = tmp_path / "s.csv"
    pl.DataFrame(rows, schema=["user_id", "session_id", "item_id", "timestamp"],
                 orient="row").write_csv(log)  # fmt: skip
    spec = spec_from_config({"data": {"path": str(log)}, "split": {"method": "last_session"},
                             "model": {"name": "markov"}})  # fmt: skip
    prep = prepare_run(spec)
    n_users = len(set(prep.test.users.tolist()))
    assert len(prep.test) > n_users  # several examples per user
    res = run_curve(spec, ["scratch"], fractions=(1.0,), seeds=(0,), out_dir=tmp_path / "c",
                    n_boot=50)  # fmt: skip
    per_user = res.records[0]["per_user"]
    assert len(per_user) == n_users
    ev = np.asarray([1.0, 0.0, 0.5, 1.0])

    class ES:  # two users: examples (a, a, b, a)
        users, keys = np.array([7, 7, 3, 7]), None

    assert per_user_values(ES, ev).tolist() == [2 / 3, 0.5]  # users in order of first example


def test_model_arms_parse_and_refuse_unknown_models():
    a = parse_arm("model:pop")
    assert (a.name, a.model, a.source, a.is_scratch) == ("pop", "pop", None, False)
    b = parse_arm("chain=model:markov")
    assert (b.name, b.model) == ("chain", "markov")
    with pytest.raises(ConfigError, match="registered model after model:, found 'nosuch'"):
        parse_arm("model:nosuch")


def test_a_model_arm_is_another_model_read_against_scratch(target, tmp_path):
    """A baseline beside the scratch arm: on a cycle a first-order Markov chain predicts
    every target (HR@10 1) while popularity cannot (30 items, uniform use), so the model
    arm's ratio to scratch is far below 1, with an interval; its run records its own model
    and no loop settings, and the scratch arm is the base's model still."""
    base = base_spec(target, "sasrec", **tiny_net("sasrec"))
    res = run_curve(base, ["scratch", "markov=model:markov", "model:pop"], fractions=(1.0,),
                    seeds=(0,), out_dir=tmp_path, n_boot=100)  # fmt: skip
    rows = {r["arm"]: r for r in res.summary.to_dicts()}
    assert rows["markov"]["hr@10"] == pytest.approx(1.0)
    assert rows["pop"]["hr@10"] < 0.6
    assert rows["pop"]["ratio"] < rows["markov"]["ratio"]
    assert rows["pop"]["ratio_lo"] <= rows["pop"]["ratio"] <= rows["pop"]["ratio_hi"]
    recs = {
        p.stem: json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*.json")
    }  # fmt: skip
    assert recs["markov-f1-s0"]["model"] == "markov" and "train" not in recs["markov-f1-s0"]["spec"]
    assert recs["scratch-f1-s0"]["model"] == "sasrec" and recs["scratch-f1-s0"]["epochs_run"] >= 1
    assert "pop (model pop)" in (tmp_path / "report.md").read_text()


def test_cli_study_curve_takes_model_arms(target, tmp_path):
    args = ["study", "curve", "--data", str(target), "--split", "loo", "--model", "markov",
            "--arms", "scratch,model:pop", "--fractions", "1", "--seeds", "1",
            "--out", str(tmp_path)]  # fmt: skip
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "runs" / "pop-f1-s0.json").is_file()
    r = CliRunner().invoke(cli, [*args[:8], "--arms", "scratch,model:nosuch", *args[10:]])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "nosuch" in r.output


def test_a_model_arm_takes_config_keys_in_python(target):
    arm = Arm("fr", model="featrank", config=(("fit_valid", False), ("base", "pop")))
    spec = arm_spec(base_spec(target), arm, 0.5, 1)
    assert spec.model.name == "featrank"
    assert spec.model.config["fit_valid"] is False and spec.model.config["base"] == "pop"
    assert spec.to_config()["split"]["fraction_seed"] == 1


def test_a_model_arm_takes_config_keys_in_text():
    """``LABEL=model:NAME:key=value:key2=value2``: the keys of :class:`Arm`'s ``config``, values
    read as ``--set`` values (a colon inside a value stays, a dotted key reaches a table)."""
    a = parse_arm("fr=model:featrank:fit_valid=false:l2=0.5")
    assert a == Arm("fr", model="featrank", config=(("fit_valid", False), ("l2", 0.5)))
    b = parse_arm('model:featrank: tag_fields = ["a:b", "c"] :base_config.d=8')
    assert (b.name, b.model) == ("featrank", "featrank")
    assert dict(b.config) == {"tag_fields": ["a:b", "c"], "base_config": {"d": 8}}
    assert parse_arm("model:markov").config == ()
    with pytest.raises(
        ConfigError, match=r"arm 'fr=model:featrank:nosuch=1': unknown key 'nosuch'"
    ):
        parse_arm("fr=model:featrank:nosuch=1")
    with pytest.raises(ConfigError, match=r"arm 'model:markov:topk': expected key=value"):
        parse_arm("model:markov:topk")
    with pytest.raises(ConfigError, match=r"arm 'model:markov:topk=x': .*topk"):
        parse_arm("model:markov:topk=x")
    with pytest.raises(ConfigError, match=r"arm 'py': unknown key 'nosuch'"):
        arm_spec(spec_from_config({"data": {"path": "x.csv"}, "model": {"name": "markov"}}),
                 Arm("py", model="markov", config=(("nosuch", 1),)), 1.0, 0)  # fmt: skip


def test_an_arm_list_keeps_the_commas_of_a_model_arm_value():
    assert split_arms('scratch, fr=model:featrank:tag_fields=["a,b", "c"]:l2=1,model:pop') == [
        "scratch", 'fr=model:featrank:tag_fields=["a,b", "c"]:l2=1', "model:pop"]  # fmt: skip
    assert split_arms("t=transfer:/x/a[b,model:bst:mlp=[64, 32]") == [
        "t=transfer:/x/a[b", "model:bst:mlp=[64, 32]"]  # fmt: skip


def test_cli_study_curve_sets_a_model_arm_config_keys(target, tmp_path):
    args = ["study", "curve", "--data", str(target), "--split", "loo", "--model", "markov",
            "--arms", "scratch,top1=model:markov:topk=1:pop_fallback=false", "--fractions", "1",
            "--seeds", "1", "--out", str(tmp_path)]  # fmt: skip
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    rec = json.loads((tmp_path / "runs" / "top1-f1-s0.json").read_text())
    assert rec["spec"]["model"] == {"name": "markov", "topk": 1, "pop_fallback": False}
    bad = [*args[:8], "--arms", "scratch,m=model:markov:nosuch=1", *args[10:]]
    r = CliRunner().invoke(cli, bad)
    assert r.exit_code == 2 and r.output.count("\n") == 1, r.output
    assert "arm 'm=model:markov:nosuch=1'" in r.output and "'nosuch'" in r.output


def test_a_coverage_primary_metric_refuses_in_one_line_before_fitting(target, tmp_path):
    """coverage@K has no per-example value to pair per user: a curve with it as --metric fit
    the first model and then failed with a KeyError traceback."""
    args = ["study", "curve", "--data", str(target), "--split", "loo", "--model", "markov",
            "--fractions", "1", "--seeds", "1", "--set", 'eval.metrics=["ndcg@10", "coverage@10"]',
            "--metric", "coverage@10", "--out", str(tmp_path / "c")]  # fmt: skip
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2 and r.output.count("\n") == 1, r.output
    assert "primary metric 'coverage@10'" in r.output
    assert not list((tmp_path / "c").glob("runs/*.json"))


def test_arms_whose_run_files_would_share_a_name_are_refused():
    """Run files name the arm with odd characters replaced by ``_``: arms "a b" and "a_b"
    wrote and read the same files, one arm's results read back as the other's."""
    from warmrec.experiments.studies.curve import parse_arms

    with pytest.raises(ConfigError, match="'a b' and 'a_b' share the run file name"):
        parse_arms(["a b=scratch", "a_b=model:pop"])
    assert [a.name for a in parse_arms(["a b=scratch", "ab=model:pop"])] == ["a b", "ab"]
