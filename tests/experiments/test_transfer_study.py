"""run_transfer_study on tiny synthetic cross-domain data: outputs, aggregation, resume."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch

import warmrec.transfer
from tests.conftest import tiny_net
from warmrec.data.prepared import prepare
from warmrec.data.synthetic import generate_cross_domain
from warmrec.errors import ConfigError
from warmrec.experiments.transfer_study import (
    choose_split,
    run_key,
    run_transfer_study,
    subsample_keys,
    subsample_train,
)
from warmrec.models.base import Recommender
from warmrec.models.sasrec import SASRec

MODEL = tiny_net("sasrec")
TRAINER = {"epochs": 2, "batch_size": 64, "lr": 5e-3}
KW = dict(
    model_config=MODEL,
    trainer=TRAINER,
    strategies=("scratch", "finetune", "freeze_embeddings"),
    inits=("popularity",),
    fractions=(0.5, 1.0),
    seeds=(0, 1),
    baselines=("pop",),
    n_boot=200,
    progress=False,
)


@pytest.fixture(scope="module")
def cd():
    return generate_cross_domain(300, 120, 60, 30, seed=0)


@pytest.fixture(scope="module")
def study(cd, tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    return run_transfer_study(cd.source, cd.target, out_dir=out, **KW)


def test_study_runs_every_method_and_writes_outputs(study):
    methods = {"pop", "scratch", "finetune+popularity", "freeze_embeddings+popularity"}
    assert set(study.runs["method"]) == methods
    assert study.runs.height == 2 * 2 * len(methods)  # fractions x seeds x methods
    assert len(study.computed) == study.runs.height
    assert len(list((study.out_dir / "runs").glob("*.json"))) == study.runs.height
    assert study.summary.height == 2 * len(methods)
    # the smaller fraction trains on fewer sequences, evaluated on the same test set
    n = study.runs.group_by("fraction").agg(pl.col("n_train_sequences").max()).sort("fraction")
    assert n["n_train_sequences"][0] < n["n_train_sequences"][1]
    for key in ("runs_csv", "summary_csv", "table_md", "plot_ndcg@10", "report_md", "report_html"):
        assert study.paths[key].exists(), key
    assert "scratch" in study.paths["table_md"].read_text()
    assert "<img" in study.paths["report_html"].read_text()
    # the setting one key: value line each (they ran together into one paragraph)
    assert "## Setting\n\n- " in study.paths["report_md"].read_text()
    assert '<h2>Setting</h2>\n<ul class="wr-lines"><li>' in study.paths["report_html"].read_text()


def test_summary_matches_the_runs(study):
    runs, summ = study.runs, study.summary
    for f in (0.5, 1.0):
        vals = runs.filter((pl.col("fraction") == f) & (pl.col("method") == "finetune+popularity"))
        row = summ.filter((pl.col("fraction") == f) & (pl.col("method") == "finetune+popularity"))
        assert row["ndcg@10"][0] == pytest.approx(vals["ndcg@10"].mean())
        assert row["ndcg@10_lo"][0] <= row["ndcg@10"][0] <= row["ndcg@10_hi"][0]
        scratch = runs.filter((pl.col("fraction") == f) & (pl.col("method") == "scratch"))
        assert row["ratio"][0] == pytest.approx(vals["ndcg@10"].mean() / scratch["ndcg@10"].mean())
        assert 0 < row["p_value"][0] <= 1
    s = summ.filter(pl.col("method") == "scratch")
    assert s["ratio"].to_list() == [1.0, 1.0] and s["p_value"].is_null().all()
    name, ratio = study.best_transfer(0.5)
    assert name in ("finetune+popularity", "freeze_embeddings+popularity")
    assert ratio == pytest.approx(study.ratio(name, 0.5))


def test_the_ratio_pairs_seeds_when_one_arm_misses_a_seed(study):
    """Scratch without seed 2: the ratio divided finetune's mean over seeds 0-2 by scratch's over
    0-1 (2.0 here, where the two are equal on every seed both ran)."""
    from warmrec.experiments.transfer_study import summarize_study

    def rec(seed, method, v):
        kind = "scratch" if method == "scratch" else "transfer"
        return {"fraction": 1.0, "seed": seed, "method": method, "kind": kind, "fit_s": 1.0,
                "metrics": {"ndcg@10": v}, "per_user": {"ndcg@10": [v, v / 2]}}  # fmt: skip

    recs = [rec(0, "scratch", 0.1), rec(1, "scratch", 0.2)]
    recs += [rec(0, "finetune", 0.1), rec(1, "finetune", 0.2), rec(2, "finetune", 0.6)]
    rows = {r["method"]: r for r in summarize_study(recs, ["ndcg@10"], n_boot=50).to_dicts()}
    assert rows["finetune"]["ndcg@10"] == pytest.approx(0.3)  # its own mean: all its seeds
    assert rows["finetune"]["ratio"] == pytest.approx(1.0)  # was 0.3 / 0.15 = 2.0
    assert rows["finetune"]["diff"] == pytest.approx(0.0)
    assert rows["scratch"]["ratio"] == pytest.approx(1.0)
    assert "both means over the seeds both ran (paired by seed)" in " ".join(
        study.paths["report_md"].read_text().split()
    )


def test_run_files_hold_per_example_values(study):
    rec = json.loads((study.out_dir / "runs" / f"{run_key(0.5, 1, 'scratch')}.json").read_text())
    per = np.asarray(rec["per_example"]["ndcg@10"])
    assert len(per) == rec["n_test"] > 0
    assert per.mean() == pytest.approx(rec["metrics"]["ndcg@10"])


def test_resume_recomputes_only_missing_runs(cd, tmp_path, monkeypatch):
    first = run_transfer_study(cd.source, cd.target, out_dir=tmp_path, **{**KW, "seeds": (0,)})
    key = run_key(0.5, 0, "finetune+popularity")
    (tmp_path / "runs" / f"{key}.json").unlink()
    calls = {"pretrain": 0, "transfer": 0}
    real_pretrain, real_transfer = warmrec.transfer.pretrain, warmrec.transfer.transfer

    def count(name, fn):
        def wrapped(*a, **k):
            calls[name] += 1
            return fn(*a, **k)

        return wrapped

    monkeypatch.setattr(warmrec.transfer, "pretrain", count("pretrain", real_pretrain))
    monkeypatch.setattr(warmrec.transfer, "transfer", count("transfer", real_transfer))
    second = run_transfer_study(cd.source, cd.target, out_dir=tmp_path, **{**KW, "seeds": (0,)})
    assert second.computed == [key]
    assert calls == {"pretrain": 0, "transfer": 1}  # cached source, one transfer run
    assert second.runs.drop("fit_s").equals(first.runs.drop("fit_s"))
    assert second.summary.drop("fit_s").equals(first.summary.drop("fit_s"))
    third = run_transfer_study(cd.source, cd.target, out_dir=tmp_path, **{**KW, "seeds": (0,)})
    assert third.computed == [] and calls["transfer"] == 1


def test_other_settings_in_the_same_folder_are_refused(cd, tmp_path):
    kw = {**KW, "seeds": (0,), "fractions": (1.0,), "strategies": ("scratch",), "baselines": ()}
    run_transfer_study(cd.source, cd.target, out_dir=tmp_path, **kw)
    with pytest.raises(ConfigError, match="other settings.*trainer"):
        run_transfer_study(
            cd.source, cd.target, out_dir=tmp_path, **{**kw, "trainer": {"epochs": 1}}
        )
    res = run_transfer_study(
        cd.source, cd.target, out_dir=tmp_path, resume=False, **{**kw, "trainer": {"epochs": 1}}
    )
    assert len(res.computed) == 1


def test_a_study_made_under_other_trainer_defaults_is_refused(cd, tmp_path, monkeypatch):
    # the runs leave trainer settings open: a changed model default must not reuse them
    kw = {**KW, "seeds": (0,), "fractions": (1.0,), "strategies": ("scratch",), "baselines": ()}
    run_transfer_study(cd.source, cd.target, out_dir=tmp_path, **kw)
    monkeypatch.setattr(SASRec, "default_trainer", {**SASRec.default_trainer, "patience": 7})
    with pytest.raises(ConfigError, match="other settings.*trainer_defaults"):
        run_transfer_study(cd.source, cd.target, out_dir=tmp_path, **kw)


def test_bad_arguments_raise(cd, tmp_path):
    with pytest.raises(ConfigError, match="fraction"):
        run_transfer_study(cd.source, cd.target, out_dir=tmp_path, **{**KW, "fractions": (0,)})
    with pytest.raises(
        ConfigError, match=r"StudySettings.strategies\[0\]: expected .*found 'nope'"
    ):
        run_transfer_study(cd.source, cd.target, out_dir=tmp_path, **{**KW, "strategies": ["nope"]})
    with pytest.raises(ConfigError, match="split"):
        choose_split(cd.target, "bogus")
    # an unknown baseline was found only at its first run, after the source had trained
    with pytest.raises(ConfigError, match=r"baseline 'foo': no such model \(before any run"):
        run_transfer_study(
            cd.source, cd.target, out_dir=tmp_path, **{**KW, "baselines": ("pop", "foo")}
        )
    assert not any(tmp_path.iterdir())
    # the study sets the trainer's seed per run: a seed given was silently overwritten
    with pytest.raises(ConfigError, match=r"train.seed \(5\): set by the study.*--seeds"):
        run_transfer_study(
            cd.source, cd.target, out_dir=tmp_path, **{**KW, "trainer": {"epochs": 1, "seed": 5}}
        )


def test_subsample_is_seeded_nested_and_keeps_eval_sets(cd):
    prep = prepare(cd.target, split="last_session")
    train = prep.split.train
    n = train["session_id"].n_unique()
    a = subsample_train(prep, 0.25, seed=3)
    b = subsample_train(prep, 0.25, seed=3)
    d = subsample_train(prep, 0.25, seed=4)
    assert len(a.train.sequences) == round(0.25 * n) < len(prep.train.sequences)
    assert np.array_equal(a.train.sequences.items, b.train.sequences.items)
    assert not np.array_equal(a.train.sequences.items, d.train.sequences.items)
    small = set(subsample_keys(train, 0.25, 3).to_list())
    assert len(small) == round(0.25 * n)
    assert small <= set(subsample_keys(train, 0.5, 3).to_list())
    assert small != set(subsample_keys(train, 0.25, 4).to_list())
    kept = train.filter(pl.col("session_id").is_in(list(small)))
    assert a.train.sequences.items.size == kept.height  # exactly those sessions' events
    assert a.test is prep.test and a.valid is prep.valid and a.vocab is prep.vocab
    assert subsample_train(prep, 1.0, 0) is prep


def test_choose_split(cd):
    short = cd.target.with_columns(pl.col("session_id").alias("user_id"))  # 1 session a user
    assert choose_split(short) == "last_session"
    long = cd.target.with_columns(pl.lit(1).alias("user_id"))
    assert choose_split(long) == "loo"
    assert choose_split(cd.target.drop("session_id")) == "loo"
    assert choose_split(cd.target, "user") == "user"


REPTILE_CFG = {
    "meta_iterations": 4,
    "meta_batch_size": 2,
    "inner_steps": 2,
    "inner_lr": 0.01,
    "n_support": 3,
    "device": "cpu",
}
REPTILE_KW = {
    **KW,
    "strategies": ("scratch", "reptile"),
    "inits": ("popularity", "mean"),
    "fractions": (0.5,),
    "reptile_config": REPTILE_CFG,
}


def test_reptile_method_is_meta_trained_once_per_seed_cached_and_resumed(cd, tmp_path, monkeypatch):
    import warmrec.meta

    calls = {"pretrain": 0, "reptile": 0, "transfer": 0}
    seen_seeds: list[int] = []
    real = {
        "pretrain": warmrec.transfer.pretrain,
        "reptile": warmrec.meta.reptile_pretrain,
        "transfer": warmrec.transfer.transfer,
    }

    def count(name):
        def wrapped(*a, **k):
            calls[name] += 1
            if name == "reptile":
                seen_seeds.append(a[3]["seed"])
            return real[name](*a, **k)

        return wrapped

    monkeypatch.setattr(warmrec.transfer, "pretrain", count("pretrain"))
    monkeypatch.setattr(warmrec.meta, "reptile_pretrain", count("reptile"))
    monkeypatch.setattr(warmrec.transfer, "transfer", count("transfer"))

    first = run_transfer_study(cd.source, cd.target, out_dir=tmp_path, **REPTILE_KW)
    rep = first.runs.filter(pl.col("strategy") == "reptile")
    assert set(rep["method"]) == {"reptile+popularity", "reptile+mean"}
    assert rep.height == 2 * 2  # seeds x inits
    assert set(rep["kind"]) == {"transfer"} and rep["ndcg@10"].is_not_null().all()
    row = first.summary.filter(pl.col("method") == "reptile+mean")
    assert row.height == 1 and row["n_seeds"][0] == 2 and 0 < row["p_value"][0] <= 1
    # one Reptile model per seed (not per init or fraction), one ordinary source model
    assert calls == {"pretrain": 1, "reptile": 2, "transfer": 2 + 2 * 2}
    assert sorted(seen_seeds) == [0, 1]
    r0, r1 = (Recommender.load(tmp_path / "reptile" / f"s{s}") for s in (0, 1))
    plain = Recommender.load(tmp_path / "source")
    assert r0.meta.reptile.meta_iterations == 4 and r0.meta.reptile.seed == 0
    w0, w1 = (m.net.state_dict()["item.embed.weight"] for m in (r0, r1))
    assert not torch.equal(w0, w1)  # seeded per study seed
    assert not torch.equal(w0, plain.net.state_dict()["item.embed.weight"])
    rec = json.loads((tmp_path / "runs" / f"{run_key(0.5, 1, 'reptile+mean')}.json").read_text())
    assert rec["pretraining"] == "reptile" and rec["strategy"] == "reptile"

    # resume: nothing recomputed, nothing (meta-)trained
    again = run_transfer_study(cd.source, cd.target, out_dir=tmp_path, **REPTILE_KW)
    assert again.computed == []
    assert calls == {"pretrain": 1, "reptile": 2, "transfer": 6}
    assert again.runs.drop("fit_s").equals(first.runs.drop("fit_s"))

    # a lost Reptile run is recomputed from the cached seed-1 model, identically
    key = run_key(0.5, 1, "reptile+popularity")
    (tmp_path / "runs" / f"{key}.json").unlink()
    third = run_transfer_study(cd.source, cd.target, out_dir=tmp_path, **REPTILE_KW)
    assert third.computed == [key]
    assert calls == {"pretrain": 1, "reptile": 2, "transfer": 7}
    assert third.runs.drop("fit_s").equals(first.runs.drop("fit_s"))


def test_reptile_settings_are_guarded(cd, tmp_path):
    kw = {**KW, "seeds": (0,), "fractions": (1.0,), "strategies": ("scratch",), "baselines": ()}
    run_transfer_study(cd.source, cd.target, out_dir=tmp_path, **kw)
    # adding Reptile to a study that never ran it is accepted and recorded
    kw_r = {**kw, "strategies": ("scratch", "reptile"), "reptile_config": REPTILE_CFG}
    res = run_transfer_study(cd.source, cd.target, out_dir=tmp_path, **kw_r)
    assert res.computed == [run_key(1.0, 0, "reptile+popularity")]
    settings = json.loads((tmp_path / "study.json").read_text())
    assert settings["reptile"]["meta_iterations"] == 4 and "seed" not in settings["reptile"]
    # a study without Reptile keeps the record; other Reptile settings are refused
    assert run_transfer_study(cd.source, cd.target, out_dir=tmp_path, **kw).computed == []
    assert json.loads((tmp_path / "study.json").read_text())["reptile"] == settings["reptile"]
    other = {**kw_r, "reptile_config": {**REPTILE_CFG, "meta_iterations": 5}}
    with pytest.raises(ConfigError, match="other settings.*reptile"):
        run_transfer_study(cd.source, cd.target, out_dir=tmp_path, **other)
    with pytest.raises(ConfigError, match="seed"):
        run_transfer_study(
            cd.source, cd.target, out_dir=tmp_path, **{**kw_r, "reptile_config": {"seed": 1}}
        )
    with pytest.raises(ConfigError, match="bogus"):
        run_transfer_study(
            cd.source, cd.target, out_dir=tmp_path, **{**kw_r, "reptile_config": {"bogus": 1}}
        )
