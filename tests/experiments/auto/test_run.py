"""``warmrec auto``'s entry point: the pick on logs with a known answer within the budget, another
run's folder refused, resuming after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from tests.experiments.auto.conftest import prepare_log
from warmrec.errors import ConfigError
from warmrec.experiments.auto import (
    auto,
)
from warmrec.experiments.spec import (
    evaluate_model,
    fit_model,
    spec_from_config,
)
from warmrec.models.base import Recommender

ONE_SHOT = ["pop", "markov", "sr", "ar", "itemknn", "sknn", "vsknn", "sessionpop"]
SRC = Path(__file__).resolve().parents[3] / "src"


def _default_tests(path: Path, families: list[str]) -> dict[str, float]:
    """Test NDCG@10 of every family at warmrec's defaults (seen items kept, the default)."""
    prep = prepare_log(path)
    out = {}
    for fam in families:
        model = fit_model(fam, prep)
        out[fam] = evaluate_model(model, prep.test, prep, metrics=["ndcg@10"])["ndcg@10"]
    return out


@pytest.mark.parametrize("log", ["baskets", "repeats"])
def test_the_pick_beats_every_familys_defaults_within_the_budget(logs, log, tmp_path):
    budget = 14.0
    t0 = time.time()
    res = auto(logs[log], out=tmp_path / "auto", budget=budget, families=ONE_SHOT, progress=False)
    wall = time.time() - t0
    assert wall <= 1.05 * budget, f"{wall:.1f} s for a {budget} s budget"
    w = res["winner"]
    defaults = _default_tests(logs[log], ONE_SHOT)
    best = max(defaults, key=defaults.get)
    assert w["test"]["ndcg@10"] > defaults[best], (w, defaults)
    if log == "baskets":
        assert w["seen_items"] == "excluded"  # the data-aware choice that wins there
    else:
        assert w["seen_items"] == "kept" and w["family"] == "sessionpop"
    # the winner is an ordinary model directory whose record rebuilds its run
    model = Recommender.load(w["model_dir"])
    assert model.meta.run.spec["eval"]["exclude_seen"] == (w["seen_items"] == "excluded")
    out = tmp_path / "auto"
    for name in ("leaderboard.md", "leaderboard.csv", "trials.csv", "report.md", "winner.toml"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "progress.png").read_bytes()[:4] == b"\x89PNG"
    board = pl.read_csv(out / "leaderboard.csv")
    assert board["family"][0] == w["family"] and board["rank"][0] == 1
    assert (board["valid_lo"] <= board["valid_ndcg@10"]).all()
    report = (out / "report.md").read_text()
    assert "## How it steered the search" in report and "## The log" in report
    # the pick's test figure by cold-start slice, read from the same scoring
    slices = w["slices"]
    assert slices["all"]["n"] == len(prepare_log(logs[log]).test)
    assert slices["all"]["ndcg@10"] == pytest.approx(w["test"]["ndcg@10"])
    assert slices["returning_users"]["n"] + slices["new_users"]["n"] == slices["all"]["n"]
    if slices["returning_users"]["n"]:
        assert "by slice (`warmrec evaluate --slices`): returning users" in report
    spec = spec_from_config(
        {k: v for k, v in __import__("tomllib").loads((out / "winner.toml").read_text()).items()}
    )
    assert spec.model.name == w["family"]
    # a second run into the same folder finds it done and returns its summary
    again = auto(logs[log], out=out, budget=budget, families=ONE_SHOT, progress=False)
    assert again["winner"]["trial"] == w["trial"]


def test_a_pick_whose_saved_model_does_not_load_gives_way_to_the_next(logs, tmp_path, capsys):
    """A trial model that does not load at the final step (a bug of the hybrid's save ended a
    10-minute MARS run there) is left out, said and kept in the report; the next best is the
    pick, instead of the whole command failing."""
    from warmrec.errors import ModelError

    real = Recommender.load.__func__

    def load(cls, path):
        if Path(path).parent.name == "models" and Path(path).name.startswith("sessionpop"):
            raise ModelError(f"{path}: weights do not fit (a stand-in)")
        return real(cls, path)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Recommender, "load", classmethod(load))
        res = auto(logs["repeats"], out=tmp_path, budget=8, families=["markov", "sessionpop"],
                   progress=True)  # fmt: skip
    assert res["winner"]["family"] == "markov"  # sessionpop is the better family here
    err = capsys.readouterr().err
    assert "its saved model does not load: " in err and "left out of the final step" in err
    board = pl.read_csv(tmp_path / "leaderboard.csv")
    assert board["family"][0] == "markov"
    row = [x for x in (tmp_path / "leaderboard.md").read_text().splitlines() if "sessionpop" in x]
    assert len(row) == 1 and "its saved model does not load" in row[0]


def test_another_run_into_the_same_folder_is_refused(logs, tmp_path, capsys):
    auto(logs["repeats"], out=tmp_path, budget=10, families=["pop", "markov"], progress=True)
    err = capsys.readouterr().err  # progress: the log, the plan, a line per step, the winner
    assert "log: catalogue:" in err and "plan: " in err and "round 0: the defaults" in err
    assert "markov-000 (defaults): ndcg@10" in err and "winner " in err
    with pytest.raises(ConfigError, match="holds an auto run with other settings"):
        auto(logs["repeats"], out=tmp_path, budget=10, families=["pop", "sr"],
             progress=False)  # fmt: skip
    # a finished run is read back: another budget would not be spent (it was ignored)
    with pytest.raises(ConfigError, match="finished auto run with a budget of 10 s, not 20 s"):
        auto(logs["repeats"], out=tmp_path, budget=20, families=["pop", "markov"], progress=False)
    # its plan and trials were drawn from these spaces under these trainer defaults
    spaces = tmp_path.parent / f"{tmp_path.name}-spaces"
    spaces.mkdir()
    (spaces / "markov.toml").write_text(
        (Path("configs/spaces/markov.toml")).read_text().replace("500", "50")
    )
    with pytest.raises(ConfigError, match=r"other settings \(spaces differ\)"):
        auto(logs["repeats"], out=tmp_path, budget=10, families=["pop", "markov"],
             spaces=spaces, progress=False)  # fmt: skip
    from warmrec.models.sasrec import SASRec

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SASRec, "default_trainer", {**SASRec.default_trainer, "patience": 7})
        with pytest.raises(ConfigError, match=r"other settings \(trainer_defaults "):
            auto(logs["repeats"], out=tmp_path, budget=10, families=["pop", "markov"],
                 progress=False)  # fmt: skip
    with pytest.raises(ConfigError, match="--metric"):
        auto(logs["repeats"], out=tmp_path / "x", budget=6, metric="coverage@10")
    with pytest.raises(ConfigError, match="--families"):
        auto(logs["repeats"], out=tmp_path / "x", budget=6, families=["sasrec", "nope"])
    # Optuna's samplers take seeds in [0, 2**32): -1 was numpy's ValueError traceback after
    # the first round (the time spent); a large seed is taken modulo 2**32 where it is derived
    with pytest.raises(ConfigError, match=r"--seed: expected an integer in \[0, 4294967295\]"):
        auto(logs["repeats"], out=tmp_path / "x", budget=6, seed=-1)
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def _resumable(state: dict) -> list[dict]:
    """Networks with trained epochs and a checkpoint: paused, or running a later step (a
    network often goes straight on from its pause: the state shows "paused" for a moment
    only, which a poll every 0.1 s may miss)."""
    return [
        t
        for t in state["trials"]
        if t["family"] == "gru4rec" and t["epochs"] > 0 and t["status"] in ("paused", "running")
    ]


def test_a_family_named_twice_is_one_family(logs, tmp_path):
    """``--families pop,pop,markov`` was stored as a setting of its own: the same run with the
    list tidied (``pop,markov``) was refused ("holds an auto run with other settings")."""
    first = auto(logs["repeats"], out=tmp_path, budget=6, families=["pop", "pop", "markov"],
                 progress=False)  # fmt: skip
    state = json.loads((tmp_path / "auto_state.json").read_text())
    assert state["args"]["families"] == ["markov", "pop"]
    assert [t["id"] for t in state["trials"] if t["family"] == "pop"] == ["pop-000"]
    again = auto(logs["repeats"], out=tmp_path, budget=6, families=["markov", "pop"],
                 progress=False)  # fmt: skip
    assert again == first  # the finished run, read back


def test_resumes_after_a_kill(logs, tmp_path):
    """Killed mid-search: the rerun keeps every scored trial, resumes the paused network from
    its checkpoint and spends only what is left of the budget."""
    out = tmp_path / "auto"
    fams = ["pop", "markov", "sr", "gru4rec"]
    code = (
        "from warmrec.experiments.auto import auto\n"
        f"auto({str(logs['repeats'])!r}, out={str(out)!r}, budget=60, families={fams!r}, "
        "progress=False)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    state_path = out / "auto_state.json"
    before = None
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            time.sleep(0.1)
            if not state_path.exists():
                continue
            try:
                state = json.loads(state_path.read_text())
            except ValueError:
                continue
            if _resumable(state) and sum(t["value"] is not None for t in state["trials"]) >= 4:
                before = state
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert before is not None, "the search never paused a network"
    t0 = time.time()  # the same command again (a fresh process, as a user reruns it)
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
    wall = time.time() - t0
    res = json.loads((out / "summary.json").read_text())
    after = {t["id"]: t for t in json.loads(state_path.read_text())["trials"]}
    assert json.loads(state_path.read_text())["invocations"] == 2
    for t in before["trials"]:
        if t["value"] is not None and t["family"] != "gru4rec":
            assert after[t["id"]]["value"] == t["value"]  # not run again
            assert after[t["id"]]["steps"] == t["steps"]
    paused = _resumable(before)
    # (the halving goes on with the better half of them): one went on from its checkpoint
    went = [
        (t["id"], t["epochs"], after[t["id"]]["epochs"], after[t["id"]]["status"]) for t in paused
    ]
    assert any(a > b for _, b, a, _ in went), (went, before["round"], before["spent_s"])
    assert wall <= 60 - before["spent_s"] + 0.05 * 60 + 2.0  # what was left (+ start-up)
    assert res["winner"] is not None


def test_another_log_does_not_resume_or_read_back_a_folder(logs, tmp_path):
    """Only the log's path (or, for a frame in memory, nothing) was recorded: a log
    overwritten under its name resumed the search, and any frame read back another frame's
    finished run."""
    a = pl.read_csv(logs["repeats"])
    auto(a, out=tmp_path / "mem", budget=6, families=["pop"], progress=False)
    with pytest.raises(ConfigError, match="other settings"):
        auto(a.head(a.height - 10), out=tmp_path / "mem", budget=6, families=["pop"],
             progress=False)  # fmt: skip
    log = tmp_path / "log.csv"
    a.write_csv(log)
    auto(log, out=tmp_path / "p", budget=6, families=["pop"], progress=False)
    state = json.loads((tmp_path / "p" / "auto_state.json").read_text())
    state["phase"] = "search"  # as a run killed mid-search: it resumes, if the data is the same
    (tmp_path / "p" / "auto_state.json").write_text(json.dumps(state))
    a.head(a.height - 10).write_csv(log)
    with pytest.raises(ConfigError, match="on other data"):
        auto(log, out=tmp_path / "p", budget=6, families=["pop"], progress=False)


def test_a_run_whose_every_trial_failed_says_so_not_give_more_time(logs, tmp_path, monkeypatch):
    """Every family failing on a log (here: their fit raises) ended with "no model was fitted
    and scored within the budget ... give more time", which more time would not cure; the
    error now says that every trial failed, the first error and where the others are."""
    from warmrec.registry import get_model

    def boom(self, *args, **kwargs):
        raise RuntimeError("a stand-in failure")

    for fam in ("pop", "markov"):
        monkeypatch.setattr(type(get_model(fam)), "fit", boom)
    with pytest.raises(ConfigError) as e:
        auto(logs["repeats"], out=tmp_path, budget=8, families=["pop", "markov"], progress=False)
    msg = str(e.value)
    assert "give more time" not in msg
    assert "every trial failed" in msg and "RuntimeError: a stand-in failure" in msg
    assert "trials.csv" in msg and "\n" not in msg


@pytest.mark.parametrize("failing", ["sessionpop", "markov"])
def test_a_trial_whose_test_scoring_fails_is_left_out_not_the_end_of_the_run(
    logs, tmp_path, failing
):
    """The final step scores each family's best on test; one of them raising there (the pick,
    or another family's best) had ended the whole command with its traceback after the search,
    with no leaderboard or report. Like a model that does not load, it is now left out, said
    in its leaderboard row, and the next best on validation is the pick."""
    import warmrec.experiments.spec as spec_mod

    real = spec_mod.evaluate_run

    def evaluate_run(model, eval_set, spec, prepared, *args, **kwargs):
        if eval_set is prepared.test and model.name == failing:
            raise RuntimeError("a stand-in failure on test")
        return real(model, eval_set, spec, prepared, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(spec_mod, "evaluate_run", evaluate_run)
        res = auto(logs["repeats"], out=tmp_path, budget=8, families=["markov", "sessionpop"],
                   progress=False)  # fmt: skip
    other = "markov" if failing == "sessionpop" else "sessionpop"
    assert res["winner"]["family"] == other  # sessionpop is the better family here
    assert res["winner"]["test"]["ndcg@10"] > 0
    rows = [x for x in (tmp_path / "leaderboard.md").read_text().splitlines() if failing in x]
    assert len(rows) == 1 and "its test scoring failed: RuntimeError: a stand-in" in rows[0]
    assert (tmp_path / "report.md").is_file() and (tmp_path / "model" / "config.json").is_file()


def test_families_that_all_leave_the_plan_are_refused_at_once(logs, tmp_path):
    """``--families tfidf,bst`` on a log without item text or features: every named family is
    left out of the plan, and the search ran nothing, then said "no model was fitted and scored
    within the budget ... give more time". It is refused before the search, with the reasons."""
    t0 = time.time()
    with pytest.raises(ConfigError) as e:
        auto(logs["repeats"], out=tmp_path, budget=30, families=["tfidf", "bst"], progress=False)
    msg = str(e.value)
    assert "none of them fits this log" in msg and "give more time" not in msg
    assert "tfidf: the log has no item text" in msg and "bst: the log has no item" in msg
    assert not (tmp_path / "auto_state.json").exists()
    assert time.time() - t0 < 25


def test_a_run_whose_every_pick_fails_the_final_step_says_so_not_give_more_time(logs, tmp_path):
    """Every family's best failing its test scoring left no pick, and the error was "no model
    was fitted and scored within the budget ... give more time" (the sibling of the search's
    all-failed message): more time would not cure it. It now says so, with the first error."""
    import warmrec.experiments.spec as spec_mod

    real = spec_mod.evaluate_run

    def evaluate_run(model, eval_set, spec, prepared, *args, **kwargs):
        if eval_set is prepared.test:
            raise RuntimeError("a stand-in failure on test")
        return real(model, eval_set, spec, prepared, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(spec_mod, "evaluate_run", evaluate_run)
        with pytest.raises(ConfigError) as e:
            auto(logs["repeats"], out=tmp_path, budget=8, families=["markov", "sessionpop"],
                 progress=False)  # fmt: skip
    msg = str(e.value)
    assert "give more time" not in msg and "\n" not in msg
    assert "left out of the final step" in msg and "RuntimeError: a stand-in failure" in msg
    assert "stand-in failure on test" in (tmp_path / "trials.csv").read_text()


def test_a_cut_trial_beside_failed_ones_is_not_every_trial_failed(tmp_path):
    """One trial failed, the other was cut at the deadline: "every trial failed ... more time
    would not help" was said although the cut one might have been scored with more time."""
    from types import SimpleNamespace

    from warmrec.experiments.auto.run import _no_winner

    def trial(id, status, error=None):
        return SimpleNamespace(id=id, status=status, steps=1, error=error, value=None)

    failed = trial("pop-000", "failed", "RuntimeError: x")
    search = SimpleNamespace(
        trials={"pop-000": failed, "markov-000": trial("markov-000", "cut")},
        state={"timings": {"prepare_s": 0.5}},
    )
    msg = _no_winner(search, tmp_path, 8)
    assert "give more time" in msg and "1 trials failed" in msg
    search.trials = {"pop-000": failed}
    assert "every trial failed" in _no_winner(search, tmp_path, 8)


def test_a_finished_run_whose_summary_is_damaged_is_one_line(logs, tmp_path):
    """The summary of a finished run is read back; a damaged one was a raw JSONDecodeError
    traceback (the state file, read the same way, was one line)."""
    auto(logs["repeats"], out=tmp_path, budget=6, families=["pop"], progress=False)
    (tmp_path / "summary.json").write_text('{"trunc')
    with pytest.raises(ConfigError, match=r"summary.json: not a readable auto summary"):
        auto(logs["repeats"], out=tmp_path, budget=6, families=["pop"], progress=False)


def test_a_finished_run_is_not_read_back_over_a_log_overwritten_under_its_name(logs, tmp_path):
    """A finished run's summary was returned for whatever the log now held (only a resumed
    search compared the log's content): another log's pick, as if chosen on this one."""
    a = pl.read_csv(logs["repeats"])
    log = tmp_path / "log.csv"
    a.write_csv(log)
    first = auto(log, out=tmp_path / "p", budget=6, families=["pop"], progress=False)
    assert auto(log, out=tmp_path / "p", budget=6, families=["pop"], progress=False) == first
    a.head(a.height - 10).write_csv(log)
    with pytest.raises(ConfigError, match="on other data"):
        auto(log, out=tmp_path / "p", budget=6, families=["pop"], progress=False)
