"""The cold-start study: user-disjoint split, k revealed events, its table and its CLI."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from warmrec.cli.main import cli
from warmrec.experiments.studies.coldstart import (
    ColdStartSettings,
    _study_bar,
    display_table,
    shot_eval_set,
    split_users,
    summarize,
    user_sequences,
)


def planted_log(n_users: int = 60, n_groups: int = 3, per_group: int = 8, length: int = 14):
    """Each user draws items from one group only: the k revealed events tell which."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(n_users):
        g = rng.integers(n_groups)
        items = g * per_group + rng.integers(0, per_group, size=length) + 1
        for t, i in enumerate(items):
            rows.append((u + 1, int(i), float(u * 100 + t)))
    return pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")


def test_users_are_disjoint_and_time_split_puts_late_users_in_test():
    data = user_sequences(planted_log())
    for order in ("random", "time"):
        s = split_users(data, ColdStartSettings(order=order, shots=(1, 3)), seed=0)
        sets = [set(s.train.tolist()), set(s.valid.tolist()), set(s.test.tolist())]
        assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
        assert len(s.test) and len(s.valid)
    ts = data.sequences.timestamps[data.sequences.offsets[:-1]]
    assert ts[s.test].min() > ts[s.train].max()


def test_study_bar_counts_the_runs_already_done(tmp_path):
    (tmp_path / "runs").mkdir()
    for name in ("0-pop", "1-pop", "1-other"):  # 1-other: not a method of this study
        (tmp_path / "runs" / f"{name}.json").write_text("{}")
    bar = _study_bar(tmp_path, [0, 1], ["pop", "global"], "s", progress=False)
    assert (bar.n, bar.total, bar.disable) == (2, 4, True)
    bar.close()


def test_shot_eval_set_reveals_k_and_targets_the_next():
    data = user_sequences(planted_log())
    users = np.array([0, 5])
    es = shot_eval_set(data, users, 3)
    seqs = data.sequences
    for j, u in enumerate(users):
        items = seqs.items[seqs.offsets[u] : seqs.offsets[u + 1]]
        np.testing.assert_array_equal(es.history(j), items[:3])
        assert es.targets[j] == items[3]


@pytest.mark.slow
def test_study_cli_runs_end_to_end_and_resumes(tmp_path):
    log = tmp_path / "log.csv"
    planted_log().write_csv(log)
    cfg = tmp_path / "cs.toml"
    cfg.write_text(
        "[model]\nd = 8\nn_layers = 1\nn_heads = 1\nffn_dim = 16\nmax_len = 10\n"
        "[pretrain]\nepochs = 2\n"
        "[meta]\nmeta_epochs = 1\ninner_steps = 2\ntrain_shots = [2, 3]\n"
        "[coldstart]\nlr_grid = [0.1]\nmax_test_users = 8\nmax_valid_users = 5\n"
    )
    out = tmp_path / "study"
    args = [
        "study",
        "coldstart",
        "--data",
        str(log),
        "--model",
        "sasrec",
        "--methods",
        "pop,global,finetune,fomaml",
        "--shots",
        "1,3",
        "--seeds",
        "1",
        "--config",
        str(cfg),
        "--out",
        str(out),
    ]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert "runs computed now: 4" in r.output
    # stderr is no terminal here: a line per step, not a bar drawn with carriage returns
    assert "coldstart study: 0/4 runs done, now seed 0" in r.stderr and "\r" not in r.stderr
    assert "coldstart study: 3/4 runs done, now seed 0 fomaml" in r.stderr
    for f in ("results.md", "report.md", "report.html", "ndcg_at_10_vs_shots.png"):
        assert (out / f).is_file()
    assert "finetune" in (out / "results.md").read_text()
    # the meta-method's epochs are chosen on meta-valid users (the loop validated it there)
    fomaml = json.loads((out / "runs" / "0-fomaml.json").read_text())
    assert fomaml["meta_best_epoch"] == 1
    (out / "runs" / "0-fomaml.json").unlink()  # an interrupted study: one run missing
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert "runs computed now: 1" in r.output
    assert "coldstart study: 3/4 runs done" in r.stderr  # resumed: starts at the runs done
    # its runs were made under these settings: another inner-rate grid must not reuse them
    cfg.write_text(cfg.read_text().replace("lr_grid = [0.1]", "lr_grid = [0.2]"))
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2 and r.output.count("\n") == 1
    assert "other settings (settings)" in r.output
    # the global model records its run (the coldstart scenario): evaluate and predict need
    # only its directory, and score its own meta-test users (8, each with 3 revealed events)
    gm = out / "models" / "global-s0"
    ev = CliRunner().invoke(cli, ["evaluate", str(gm), "--json"])
    assert ev.exit_code == 0, ev.output
    assert json.loads(ev.stdout)["n"] == 8
    pr = CliRunner().invoke(cli, ["predict", str(gm), "-k", "2", "--out", str(tmp_path / "p.csv")])
    assert pr.exit_code == 0, pr.output


def test_study_cli_refuses_an_unknown_method_in_one_line(tmp_path):
    log = tmp_path / "log.csv"
    planted_log().write_csv(log)
    r = CliRunner().invoke(
        cli,
        [
            "study",
            "coldstart",
            "--data",
            str(log),
            "--methods",
            "pop,magic",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert r.exit_code == 2
    assert "magic" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("shots", ["0,-1", "3,0"])
def test_study_cli_refuses_non_positive_shots_in_one_line(tmp_path, shots):
    log = tmp_path / "log.csv"
    planted_log().write_csv(log)
    args = ["study", "coldstart", "--data", str(log), "--shots", shots, "--out", str(tmp_path)]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "--shots" in lines[0] and ">= 1" in lines[0], r.output
    assert not (tmp_path / "runs").exists()  # refused before anything ran


def mars_like_log() -> pl.DataFrame:
    """MARS's shape in small: many single-event learners, a few short histories, some cold
    learners with 4 or 5 events and long histories that carry the training (planted groups)."""
    rng = np.random.default_rng(1)
    lengths = [1] * 30 + [2] * 15 + [4] * 12 + [5] * 12 + [14] * 30
    rows = []
    for u, n in enumerate(lengths):
        g = rng.integers(3)
        for t, i in enumerate(g * 8 + rng.integers(0, 8, size=n) + 1):
            rows.append((u + 1, int(i), float(u * 100 + t)))
    return pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")


COLD = {"shots": (1, 2, 3), "max_events": 5, "valid_users": 0.25, "test_users": 0.5}


def test_a_mars_like_log_holds_out_only_cold_learners_and_every_method_runs(tmp_path):
    from warmrec.experiments.studies.coldstart import run_coldstart_study

    log = mars_like_log()
    data = user_sequences(log)
    settings = {
        **COLD,
        "lr_grid": (0.05,),
        "pretrain": {"epochs": 1},
        "meta": {"meta_epochs": 1, "inner_steps": 1, "train_shots": (2, 3), "meta_batch_size": 8},
    }
    split = split_users(data, ColdStartSettings(**settings), seed=0)
    lens = data.sequences.lengths
    assert set(lens[split.test].tolist()) | set(lens[split.valid].tolist()) <= {4, 5}
    assert (lens[split.train] == 1).sum() == 30  # single-event learners train
    res = run_coldstart_study(
        log,
        model_config={"d": 8, "n_layers": 1, "n_heads": 1, "ffn_dim": 16, "max_len": 10},
        methods=("pop", "global", "finetune", "fomaml"),
        seeds=(0,),
        settings=settings,
        out_dir=tmp_path / "out",
    )
    assert sorted(res.computed) == ["0-finetune", "0-fomaml", "0-global", "0-pop"]
    assert set(res.summary["shots"].to_list()) == {1, 2, 3}
    assert all(r["n_users"]["test"] == len(split.test) == 12 for r in res.records)


@pytest.mark.parametrize(
    "extra, words",
    [
        ("max_events = 5\n", ["max_events", "0 eligible of 60 users"]),  # every user has 14
        ("max_events = 3\n", ["max_events", ">= max(shots) + 1 = 4"]),
    ],
)
def test_too_few_cold_learners_or_a_cap_below_the_shots_is_one_line(tmp_path, extra, words):
    log = tmp_path / "log.csv"
    planted_log().write_csv(log)
    cfg = tmp_path / "cs.toml"
    cfg.write_text("[coldstart]\n" + extra)
    args = ["study", "coldstart", "--data", str(log), "--shots", "1,2,3", "--config", str(cfg)]
    r = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "o")])
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and all(w in lines[0] for w in words), r.output


def _record(seed, method, ndcg):
    return {
        "seed": seed,
        "method": method,
        "metrics": {"3": {"hr@10": 0.5, "ndcg@10": ndcg, "mrr@10": 0.2}},
        "per_user": {"3": [ndcg, ndcg + 0.1]},
    }


def test_table_shows_no_interval_for_one_seed_and_a_real_one_for_two():
    one = [_record(0, "finetune", 0.3), _record(0, "global", 0.2)]
    table = display_table(summarize(one, (3,)))
    cells = table["ndcg@10 [95% CI]"].to_list()
    assert sorted(cells) == ["0.2000 [-]", "0.3000 [-]"]
    assert "nan" not in str(table.to_dicts())
    two = one + [_record(1, "finetune", 0.5), _record(1, "global", 0.2)]
    cells = dict(zip(*display_table(summarize(two, (3,)))[["method", "ndcg@10 [95% CI]"]]))
    # finetune: mean 0.4 over seeds 0.3, 0.5: t(0.975, 1) * 0.1414 / sqrt 2 = 1.2706, so
    # [-0.8706, 1.6706], clipped to NDCG's range
    assert cells["finetune"] == "0.4000 [0.0000, 1.0000]"
    assert cells["global"] == "0.2000 [0.2000, 0.2000]"


def test_the_rating_table_names_its_difference_in_mse():
    """The paired test of the rating protocol is on per-user squared error; the column sat
    beside RMSE unnamed (1.5212 = 1.2805^2 - 0.3443^2 read as an RMSE difference)."""
    recs = [
        {"seed": 0, "method": m, "metrics": {"3": {"rmse": r, "mae": r}},
         "per_user": {"3": [r * r, r * r]}}
        for m, r in (("finetune", 1.0), ("global", 1.2))
    ]  # fmt: skip
    table = display_table(
        summarize(recs, (3,), ("rmse", "mae"), higher_better=False), ("rmse", "mae")
    )
    assert "diff of MSE [95% CI]" in table.columns and "diff [95% CI]" not in table.columns
    assert "diff [95% CI]" in display_table(summarize([_record(0, "finetune", 0.3)], (3,))).columns


def test_study_reads_shots_from_the_config(tmp_path):
    """--shots' default overwrote [coldstart] shots from --config or --set."""
    log = tmp_path / "log.csv"
    planted_log().write_csv(log)
    base = ["study", "coldstart", "--data", str(log), "--methods", "pop", "--seeds", "1"]
    r = CliRunner().invoke(cli, [*base, "--set", "coldstart.shots=[0]", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "coldstart.shots: expected numbers of revealed events >= 1" in (
        r.output
    )


def test_seeds_that_scored_the_same_users_are_paired_per_user_not_pooled():
    """With ``order = "time"`` every seed tests the same users: their arrays were pooled, each
    user counted once per seed as if independent (p far too small). The same users: each
    user's mean over the seeds; other users per seed: pooled, as before."""
    from warmrec.evaluation.stats import paired_test

    rng = np.random.default_rng(0)
    n = 40
    noise = [rng.normal(0, 0.2, n) for _ in range(3)]
    base = [np.clip(0.3 + noise[s], 0, 1) for s in range(3)]
    meth = [np.clip(b + 0.03 + rng.normal(0, 0.2, n), 0, 1) for b in base]

    def rec(seed, method, vals, users):
        return {"seed": seed, "method": method, "metrics": {"3": {"ndcg@10": float(vals.mean())}},
                "per_user": {"3": vals.tolist()}, "user_keys": {"3": users}}  # fmt: skip

    same = [rec(s, "finetune", base[s], "u") for s in range(3)]
    same += [rec(s, "maml", meth[s], "u") for s in range(3)]
    row = summarize(same, (3,), ("ndcg@10",)).filter(pl.col("method") == "maml").row(0, named=True)
    want = paired_test(np.mean(meth, axis=0), np.mean(base, axis=0), n_boot=5000, seed=0)
    assert row["p_value"] == pytest.approx(want.p_value)
    assert row["diff_lo"] == pytest.approx(want.ci[0])
    other = [rec(s, "finetune", base[s], f"u{s}") for s in range(3)]
    other += [rec(s, "maml", meth[s], f"u{s}") for s in range(3)]
    row = summarize(other, (3,), ("ndcg@10",)).filter(pl.col("method") == "maml").row(0, named=True)
    pooled = paired_test(np.concatenate(meth), np.concatenate(base), n_boot=5000, seed=0)
    assert row["p_value"] == pytest.approx(pooled.p_value)
    assert pooled.ci[1] - pooled.ci[0] < want.ci[1] - want.ci[0]  # pooling narrowed it


def test_the_report_says_how_the_seeds_users_were_paired(tmp_path):
    """The report said "users pooled over seeds" where every seed scored the same users
    (``order = "time"``) and the test took each user's mean over the seeds."""
    from warmrec.experiments.studies.coldstart import write_outputs

    rng = np.random.default_rng(0)

    def rec(seed, method, vals, users):
        return {"seed": seed, "method": method,
                "metrics": {"3": {"hr@10": 0.5, "ndcg@10": float(vals.mean()), "mrr@10": 0.2}},
                "per_user": {"3": vals.tolist()}, "user_keys": {"3": users}}  # fmt: skip

    def report(records, name):
        summary = summarize(records, (3,))
        paths = write_outputs(tmp_path / name, summary, display_table(summary), {"seeds": "0, 1"})
        return summary, " ".join(paths["report_md"].read_text().split())

    vals = [rng.uniform(0, 1, 20) for _ in range(2)]
    same = [rec(s, m, np.clip(vals[s] + d, 0, 1), "u") for s in range(2)
            for m, d in (("finetune", 0.0), ("maml", 0.05))]  # fmt: skip
    summary, text = report(same, "same")
    assert set(summary["paired_users"]) == {"mean over seeds"}
    assert "each user's mean over the seeds (every seed scored the same users)" in text
    assert "pooled" not in text
    other = [{**r, "user_keys": {"3": f"u{r['seed']}"}} for r in same]
    summary, text = report(other, "other")
    assert set(summary["paired_users"]) == {"pooled over seeds"}
    assert "users pooled over the seeds (each seed scored other users)" in text
    summary, text = report([r for r in same if r["seed"] == 0], "one")
    assert set(summary["paired_users"]) == {"one seed"} and "the users of one seed" in text


@pytest.mark.parametrize(
    ("methods", "settings", "words"),
    [
        (("global", "fomaml", "mamlpp_loss"), {"meta": {"meta_epochs": 1}},
         "[meta] for method mamlpp_loss: meta adaptive_loss"),
        (("finetune",), {"meta": {"inner_step": 2}}, "unknown key 'inner_step' for MetaConfig"),
        (("finetune",), {"lr_grid": [0.0, 0.1]}, "lr_grid: expected inner learning rates > 0"),
        (("global", "mamlpp"), {"protocol": "melo", "melo_min_item": 1, "meta": {"inner_step": 2}},
         "'inner_step'"),
    ],
)  # fmt: skip
def test_meta_settings_a_chosen_method_refuses_fail_before_anything_is_trained(
    tmp_path, methods, settings, words
):
    """[meta] was first read when its method's turn came: meta_epochs = 1 (within MAML++'s 2
    first-order epochs) failed mamlpp_loss after the global model, the learning-rate search
    and every method before it had run (hours on a real log)."""
    from warmrec.errors import ConfigError
    from warmrec.experiments.studies.coldstart import run_coldstart_study

    log = planted_log(n_users=30)
    if settings.get("protocol") == "melo":
        log = log.with_columns(rating=pl.lit(4.0))
    with pytest.raises(ConfigError) as e:
        run_coldstart_study(
            log,
            model_config={"d": 8, "n_layers": 1, "n_heads": 1, "ffn_dim": 16, "max_len": 10},
            methods=methods,
            seeds=(0,),
            settings={"shots": (1, 3), "pretrain": {"epochs": 1}, **settings},
            out_dir=tmp_path / "out",
        )
    assert not (tmp_path / "out" / "models").exists()  # nothing was trained
    assert words in str(e.value)
