"""Local search: pruning of a planted bad region, validation-only trials, resume after kill -9,
and ``warmrec tune`` end to end (best.toml feeds ``warmrec train --config``)."""

from __future__ import annotations

import importlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner

from tests.conftest import cyclic_log, split_cyclic
from warmrec.cli.main import cli
from warmrec.tuning.local import open_study, search_local
from warmrec.tuning.space import parse_space
from warmrec.tuning.trial import SearchData, run_trial

ROOT = Path(__file__).resolve().parents[2]
SPACE = """
[search]
metric = "recall@5"
[model]
vector_size = 16
window = 3
epochs = 4
sample = 0.0
n_recent = 1
negative = { type = "int", low = 2, high = 8 }
sg = { type = "categorical", choices = [true, false] }
"""


@pytest.fixture(scope="module")
def data() -> SearchData:
    train, valid = split_cyclic()
    return SearchData(train, valid, train.item_counts())


@pytest.fixture
def log_csv(tmp_path: Path) -> Path:
    p = tmp_path / "log.csv"
    cyclic_log(n_sessions=120, n_items=20, length=8).write_csv(p)
    return p


def test_pruning_stops_the_planted_bad_region_early(tmp_path: Path, data: SearchData) -> None:
    # alpha = 1e-8 never moves the random vectors: validation recall@5 stays ~0.41 while
    # alpha = 0.05 reaches ~0.98 after one epoch. The median pruner must cut the bad trials.
    space = parse_space(
        {
            "search": {"metric": "recall@5"},
            "model": {
                "vector_size": 16,
                "window": 3,
                "epochs": 6,
                "sample": 0.0,
                "n_recent": 1,
                "alpha": {"type": "categorical", "choices": [0.05, 1e-8]},
                "negative": {"type": "int", "low": 2, "high": 8},
            },
        }
    )
    space.check("item2vec")
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    # the pruner's two start-up trials are good ones; then TPE samples freely
    study = open_study(tmp_path / "s", seed=3, pruner=pruner)
    for negative in (4, 6):
        study.enqueue_trial({"model.alpha": 0.05, "model.negative": negative})
    rows = search_local(
        "item2vec", space, data, tmp_path / "s", trials=8, pruner=pruner, exclude_seen=True, seed=3
    )
    bad = [r for r in rows if r.params["model.alpha"] < 1e-3]
    good = [r for r in rows if r.params["model.alpha"] > 1e-3]
    assert bad and good
    late_bad = [r for r in bad if r.number >= 2]  # after the pruner's start-up trials
    assert late_bad, "TPE sampled no bad trial after the start-up trials"
    assert all(r.state == "pruned" and r.epochs < 6 for r in late_bad)
    assert all(r.state == "complete" and r.epochs == 6 for r in good)
    assert max(r.value for r in good) > 0.9


def test_trials_score_on_validation_and_neural_models_report_each_epoch(
    data: SearchData,
) -> None:
    space = parse_space(
        {
            "search": {"metric": "ndcg@10"},
            "model": {"hidden_size": 16, "n_negatives": 0},
            "train": {
                "epochs": 2,
                "patience": 0,
                "lr": {"type": "log", "low": 1e-3, "high": 1e-2},
            },
        }
    )
    space.check("gru4rec")
    seen: list[tuple[int, float]] = []
    out, model = run_trial(
        "gru4rec", space, {"train.lr": 5e-3}, data, lambda e, v: seen.append((e, v))
    )
    assert [e for e, _ in seen] == [1, 2] and out.epochs == 2
    assert out.curve == [v for _, v in seen]
    assert out.value == pytest.approx(max(out.curve))  # the loop keeps the best epoch
    assert model.train_result.history[0]["valid_ndcg@10"] == pytest.approx(seen[0][1])


def test_the_test_part_is_never_touched_during_the_search(
    tmp_path: Path, log_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import warmrec.experiments.spec as spec_mod
    import warmrec.models.item2vec as i2v_mod
    import warmrec.training.loop as loop_mod
    import warmrec.tuning.local as local_mod
    import warmrec.tuning.trial as trial_mod
    from warmrec.tuning.run import run_tune

    ev_mod = importlib.import_module("warmrec.evaluation.evaluate")
    events: list[str] = []
    test_sets: list[object] = []
    real_prepare = spec_mod.prepare_run
    real_eval = ev_mod.evaluate
    real_search = local_mod.search_local

    def prepare_spy(*a, **k):
        prep = real_prepare(*a, **k)
        test_sets.append(prep.test)
        return prep

    def eval_spy(model, eval_set, *a, **k):
        events.append("TEST" if any(eval_set is t for t in test_sets) else "valid")
        return real_eval(model, eval_set, *a, **k)

    def search_spy(*a, **k):
        rows = real_search(*a, **k)
        events.append("search done")
        return rows

    monkeypatch.setattr(spec_mod, "prepare_run", prepare_spy)
    for mod in (ev_mod, trial_mod, loop_mod, i2v_mod):
        monkeypatch.setattr(mod, "evaluate", eval_spy)
    monkeypatch.setattr(local_mod, "search_local", search_spy)
    space = tmp_path / "space.toml"
    space.write_text(SPACE)
    res = run_tune(
        {"data": {"path": str(log_csv)}},
        model="item2vec",
        space_path=space,
        trials=4,
        out=tmp_path / "out",
        pruner="none",
    )
    done = events.index("search done")
    assert events[:done].count("valid") >= 4 * 4  # every epoch of every trial, on validation
    assert "TEST" not in events[:done]
    assert events[done:].count("TEST") == 1  # once, for the best trial
    assert set(res["best"]["test"]) == {"recall@5", "recall@10", "mrr@10", "ndcg@10"}


def test_tune_cli_writes_results_and_a_config_train_takes(tmp_path: Path, log_csv: Path) -> None:
    space = tmp_path / "space.toml"
    space.write_text(SPACE)
    out = tmp_path / "out"
    r = CliRunner().invoke(
        cli,
        [
            "tune",
            "--model",
            "item2vec",
            "--data",
            str(log_csv),
            "--space",
            str(space),
            "--trials",
            "4",
            "--n-jobs",
            "2",
            "--out",
            str(out),
            "--json",
            "--no-progress",
        ],
    )
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["trials"] == 4 and res["best"] is not None
    for f in (
        "trials.csv",
        "trials.md",
        "best.toml",
        "summary.json",
        "history.png",
        "importance.png",
    ):
        assert (out / f).is_file(), f
    lines = (out / "trials.csv").read_text().splitlines()
    assert lines[0].startswith("trial,state,model.negative,model.sg,valid_recall@5,epochs,seconds")
    assert len(lines) == 5
    r2 = CliRunner().invoke(
        cli, ["train", "--config", str(out / "best.toml"), "--out", str(tmp_path / "m"), "--json"]
    )
    assert r2.exit_code == 0, r2.output
    trained = json.loads(r2.stdout)
    # same data, split and settings (seeded, one worker): the same validation score
    assert trained["valid"]["recall@5"] == pytest.approx(res["best"]["valid"]["recall@5"])
    # the refitted best model records its run: evaluate needs only its directory, and gives
    # the test figures the search reported
    ev = CliRunner().invoke(cli, ["evaluate", str(out / "best_model"), "--json"])
    assert ev.exit_code == 0, ev.output
    assert json.loads(ev.stdout)["metrics"]["recall@5"] == pytest.approx(
        res["best"]["test"]["recall@5"]
    )
    # best.toml names the data as typed (made absolute, symlinks kept)
    assert str(log_csv) in (out / "best.toml").read_text()


def test_a_bad_space_fails_in_one_line_before_reading_data(tmp_path: Path) -> None:
    space = tmp_path / "space.toml"
    space.write_text('[model]\nwindw = { type = "int", low = 1, high = 3 }\n')
    r = CliRunner().invoke(
        cli,
        [
            "tune",
            "--model",
            "item2vec",
            "--data",
            str(tmp_path / "missing.csv"),
            "--space",
            str(space),
            "--trials",
            "2",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert r.exit_code == 2
    assert "unknown key 'windw'" in r.output and "Traceback" not in r.output


def _finished(db: Path) -> int:
    """Finished trials, read through a read-only SQLite connection (a reader that never takes
    the writer's lock: optuna.load_study may write, and the running search must not fail on it)."""
    if not db.exists():
        return 0
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as con:
            row = con.execute(
                "SELECT COUNT(*) FROM trials WHERE state IN ('COMPLETE', 'PRUNED')"
            ).fetchone()
    except sqlite3.Error:  # not created yet
        return 0
    return int(row[0])


@pytest.mark.slow  # two CLI processes: ~20 s on a loaded 2-core machine
def test_a_search_killed_with_sigkill_resumes(tmp_path: Path, log_csv: Path) -> None:
    space = tmp_path / "space.toml"
    space.write_text(SPACE.replace("epochs = 4", "epochs = 12"))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "warmrec", "tune", "--model", "item2vec", "--data",
           str(log_csv), "--space", str(space), "--out", str(out), "--no-progress",
           "--pruner", "none"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    err = tmp_path / "stderr.txt"
    with err.open("w") as fh:
        proc = subprocess.Popen([*cmd, "--trials", "40"], env=env, stdout=subprocess.DEVNULL,
                                stderr=fh)  # fmt: skip
    db = out / "study.db"
    deadline = time.monotonic() + 90
    try:
        while _finished(db) < 3 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
    finally:
        early = proc.poll()
        if early is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert early is None, f"the search exited by itself (code {early}): {err.read_text()[-2000:]}"
    before = _finished(db)
    assert 3 <= before < 40, "the search was not killed mid-way"
    assert not (out / "summary.json").exists()
    r = subprocess.run([*cmd, "--trials", str(before + 2), "--json"], env=env,
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    study = optuna.load_study(study_name="warmrec", storage=f"sqlite:///{db}")
    states = [t.state.name for t in study.trials]
    assert "RUNNING" not in states
    assert _finished(db) == before + 2  # the earlier trials were kept, two more were run
    assert res["best"] is not None and res["n_complete"] == before + 2


def test_a_resumed_search_draws_new_configurations(tmp_path: Path, data: SearchData) -> None:
    """Issue 19: a resumed search re-seeded its sampler identically, so trials 3-5 had the
    parameters of trials 0-2 and a 6-trial search tested 3 configurations."""
    space = parse_space(
        {
            "search": {"metric": "recall@5"},
            "model": {
                "vector_size": 8,
                "window": 3,
                "epochs": 1,
                "sample": 0.0,
                "n_recent": 1,
                "alpha": {"type": "log", "low": 1e-3, "high": 0.1},
            },
        }
    )
    space.check("item2vec")
    kw = {"seed": 0, "pruner": "none"}
    first = search_local("item2vec", space, data, tmp_path / "s", trials=3, **kw)
    rows = search_local("item2vec", space, data, tmp_path / "s", trials=6, **kw)
    alphas = [r.params["model.alpha"] for r in rows]
    assert [r.number for r in rows] == list(range(6))
    assert alphas[:3] == [r.params["model.alpha"] for r in first]  # the first three kept
    assert len(set(alphas)) == 6, alphas
    # a fresh search with the same seed still draws the same first trials (reproducible)
    fresh = search_local("item2vec", space, data, tmp_path / "t", trials=3, **kw)
    assert [r.params["model.alpha"] for r in fresh] == alphas[:3]


def _sr_space():
    space = parse_space(
        {"search": {"metric": "recall@5"}, "model": {"steps": {"type": "int", "low": 1, "high": 9}}}
    )
    space.check("sr")
    return space


def test_a_model_fitted_in_one_pass_is_never_pruned(tmp_path: Path, data: SearchData) -> None:
    """Its one value was reported as an epoch after the fit: the median pruner then labelled
    half of the finished trials "pruned" (and left them out of the importance)."""
    rows = search_local("sr", _sr_space(), data, tmp_path / "s", trials=8, seed=0)
    assert [r.state for r in rows] == ["complete"] * 8


def test_ctrl_c_stops_a_trial_that_runs_again_on_resume(
    tmp_path: Path, data: SearchData, monkeypatch
) -> None:
    """Ctrl-C stored the trial as failed (with a partial score), counted it as done and never
    ran it again."""
    import warmrec.tuning.local as local

    real, calls = local.run_trial, []

    def interrupted_once(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(local, "run_trial", interrupted_once)
    space = _sr_space()
    with pytest.raises(KeyboardInterrupt):
        search_local("sr", space, data, tmp_path / "s", trials=3, seed=0, pruner="none")
    rows = search_local("sr", space, data, tmp_path / "s", trials=3, seed=0, pruner="none")
    states = [r.state for r in rows]
    assert states.count("complete") == 3 and states.count("interrupted") == 1
    stopped = next(r for r in rows if r.state == "interrupted")
    assert stopped.value is None
    again = [r for r in rows if r.retries == 1]
    assert len(again) == 1 and again[0].params == stopped.params and again[0].state == "complete"


def test_a_failed_trial_says_why_and_no_completed_trial_exits_non_zero(
    tmp_path: Path, log_csv: Path
) -> None:
    space = tmp_path / "space.toml"
    space.write_text('[search]\nmetric = "ndcg@10"\n[model]\ntext_fields = ["title"]\n'
                     'min_df = { type = "int", low = 1, high = 3 }\n')  # fmt: skip
    r = CliRunner().invoke(cli, ["tune", "--model", "tfidf", "--data", str(log_csv), "--space",
                                 str(space), "--trials", "1", "--no-progress", "--out",
                                 str(tmp_path / "t")])  # fmt: skip
    assert r.exit_code == 2 and "no trial completed (1 run, see trials.csv)" in r.output
    table = (tmp_path / "t" / "trials.csv").read_text()
    assert table.splitlines()[0].endswith(",error") and "failed" in table
    assert "item" in table.splitlines()[1].split(",")[-1]  # the reason, not an empty cell


def test_a_ray_search_is_not_resumed_into_its_folder(tmp_path: Path, log_csv: Path) -> None:
    """A second Ray run into the same --out started over and drew the same trials again."""
    (tmp_path / "t" / "ray" / "search").mkdir(parents=True)
    r = CliRunner().invoke(cli, ["tune", "--backend", "ray", "--model", "sr", "--data",
                                 str(log_csv), "--trials", "1", "--out", str(tmp_path / "t")])  # fmt: skip
    assert r.exit_code == 2 and "a Ray search does not resume" in r.output


def test_values_that_do_not_go_together_fail_their_trial_not_the_search(
    tmp_path: Path, data: SearchData
) -> None:
    """The space checks each value of a range against the fixed ones, not each combination:
    SASRec's d = 24 with n_heads = 16 raised a ConfigError out of the trial, which ended the
    whole search (exit 2, no trials.csv, no best) after its completed trials."""
    from warmrec.errors import ModelError

    space = parse_space(
        {
            "search": {"metric": "ndcg@10"},
            "model": {
                "d": {"type": "categorical", "choices": [24, 32]},
                "n_heads": {"type": "categorical", "choices": [1, 16]},
                "max_len": 8,
            },
            "train": {"epochs": 1, "progress": False},
        }
    )
    space.check("sasrec")
    bad = {"model.d": 24, "model.n_heads": 16}
    with pytest.raises(ModelError, match="model.d = 24, model.n_heads = 16.*divisor of d = 24"):
        run_trial("sasrec", space, bad, data)
    study = open_study(tmp_path, seed=0, pruner="none")
    study.enqueue_trial(bad)
    study.enqueue_trial({"model.d": 32, "model.n_heads": 16})
    rows = search_local("sasrec", space, data, tmp_path, trials=2, pruner="none")
    assert [(r.state, r.params) for r in rows] == [
        ("failed", bad),
        ("complete", {"model.d": 32, "model.n_heads": 16}),
    ]
    assert "divisor of d = 24" in rows[0].error


def test_a_trial_scores_the_same_with_one_job_or_two(tmp_path: Path, data: SearchData) -> None:
    # two trials fitting at once in threads used to share torch's global generator: each
    # re-seeded it at its start and drew the other's dropout masks, so the same configuration
    # scored differently beside another trial than alone. Every trial here has one of two
    # configurations: a value must depend on the configuration only.
    space = parse_space(
        {
            "search": {"metric": "ndcg@10"},
            "model": {"hidden_size": 16, "max_len": 8, "dropout_embed": 0.3},
            "train": {
                "epochs": 2,  # short of the cycle's perfect score: every value differs
                "batch_size": 16,  # ~70 steps an epoch: the two trials' steps interleave
                "patience": 0,
                "seed": 4,
                "lr": {"type": "categorical", "choices": [0.001, 0.002]},
            },
        }
    )
    space.check("gru4rec")
    values: dict[float, set[float]] = {}  # lr -> the values its trials scored
    for n_jobs in (1, 2):
        rows = search_local(
            "gru4rec", space, data, tmp_path / f"jobs{n_jobs}", trials=6, n_jobs=n_jobs,
            seed=1, pruner="none",
        )  # fmt: skip
        assert [r.state for r in rows] == ["complete"] * 6
        for r in rows:
            values.setdefault(r.params["train.lr"], set()).add(r.value)
    assert len(values) == 2, "TPE sampled only one of the two configurations"
    assert all(len(v) == 1 for v in values.values()), values


def test_trials_in_threads_share_one_thread_count(
    tmp_path: Path, data: SearchData, monkeypatch: pytest.MonkeyPatch
) -> None:
    # with --n-jobs 2 each trial measured the machine at its own start and took every free
    # CPU (2 trials x 2 threads on 2 CPUs), recording whatever it had measured: the search now
    # splits the CPUs free at its start between the trials, the same count for each
    import torch

    import warmrec.tuning.local as local_mod
    from warmrec.training import threads

    for k in threads.THREADS_ENV:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(threads, "policy_threads", lambda requested=0: requested or 2)
    recorded: list[tuple[int, int]] = []  # (trainer record, torch's count in the trial)

    def run_trial_recorded(*args, **kwargs):  # type: ignore[no-untyped-def]
        outcome, model = run_trial(*args, **kwargs)
        recorded.append((model.train_result.trainer["num_threads"], torch.get_num_threads()))
        return outcome, model

    monkeypatch.setattr(local_mod, "run_trial", run_trial_recorded)
    space = parse_space(
        {
            "search": {"metric": "ndcg@10"},
            "model": {"hidden_size": 8, "max_len": 8},
            "train": {"epochs": 1, "patience": 0, "lr": {"type": "log", "low": 1e-3, "high": 1e-2}},
        }
    )
    space.check("gru4rec")
    before = torch.get_num_threads()
    rows = search_local(
        "gru4rec", space, data, tmp_path / "s", trials=4, n_jobs=2, seed=0, pruner="none"
    )
    assert [r.state for r in rows] == ["complete"] * 4
    assert recorded == [(1, 1)] * 4  # 2 CPUs free at the start, 2 trials at once
    assert torch.get_num_threads() == before
