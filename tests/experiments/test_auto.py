"""``warmrec auto``: the log's description and the plan it steers, one step (a network paused
and resumed), the pick on logs with a known answer, the budget, resuming after a kill."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import cyclic_log
from warmrec.data.synthetic import generate_baskets, generate_repeats
from warmrec.errors import ConfigError
from warmrec.experiments.auto import (
    AutoSearch,
    StepContext,
    Trial,
    auto,
    describe_log,
    find_spaces,
    parse_budget,
    plan_portfolio,
    run_step,
)
from warmrec.experiments.spec import (
    evaluate_model,
    fit_model,
    prepare_run,
    spec_from_config,
)
from warmrec.models.base import Recommender

ONE_SHOT = ["pop", "markov", "sr", "ar", "itemknn", "sknn", "vsknn", "sessionpop"]
SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("logs")
    out = {"baskets": d / "baskets.csv", "repeats": d / "repeats.csv"}
    generate_baskets().write_csv(out["baskets"])
    generate_repeats().write_csv(out["repeats"])
    return out


def _prepared(path: Path):
    return prepare_run(spec_from_config({"data": {"path": str(path)}}))


def test_parse_budget():
    import warmrec

    assert warmrec.auto is auto  # the public API exports it
    assert parse_budget("90s") == 90 and parse_budget("10m") == 600 and parse_budget("1.5h") == 5400
    assert parse_budget(12) == 12 and parse_budget("45") == 45
    for bad in ("10q", "-1m", "0", "m"):
        with pytest.raises(ConfigError, match="--budget"):
            parse_budget(bad)


def test_the_log_steers_the_plan(logs):
    spaces = find_spaces()
    basket = describe_log(_prepared(logs["baskets"]))
    assert basket.basket and basket.tied_time_share > 0.7 and basket.events_per_time > 4
    plan = plan_portfolio(basket, spaces=spaces)
    origins = {t.id: t.origin for t in plan.trials}
    assert "defaults, n_last=5" in origins.values()  # AR queried by a whole basket
    assert any("basket log" in n for n in plan.notes)
    assert plan.exclude_seen["vsknn"] is None  # some targets repeat: decided on validation
    assert "ssept" in plan.families and "bst" not in plan.families  # users, no features

    rep = describe_log(_prepared(logs["repeats"]))
    assert not rep.basket and rep.valid_target_seen_share > 0.5
    plan = plan_portfolio(rep, spaces=spaces)
    assert "sessionpop" in plan.families
    assert any("repeat-heavy" in n for n in plan.notes)
    windows = [t.model.get("max_len") for t in plan.trials if t.family == "sessionpop"]
    assert windows == [None, 3, 10]  # the defaults (50), then last-N

    # no repeats at all: seen items excluded everywhere, SessionPop left out
    prep = prepare_run(spec_from_config({}), data=cyclic_log(n_sessions=150, length=6))
    clean = describe_log(prep)
    assert clean.valid_target_seen_share == 0.0 and not clean.has_user_ids
    plan = plan_portfolio(clean, ["pop", "sessionpop", "ssept", "sr"], spaces=spaces)
    assert plan.families == ["pop", "sr"]
    assert plan.exclude_seen == {"pop": True, "sr": True}
    assert set(plan.left_out) == {"sessionpop", "ssept"}


def test_a_large_catalogue_gets_sampled_losses_only(logs):
    """nowplaying-1m's 121K items: no full-softmax SASRec variant, GRU4Rec's defaults on BPR-max
    (its full softmax takes most of a 10-minute budget per epoch); 30K items: the full softmax
    is still tried beside SASRec's sampled default."""
    import dataclasses

    spaces = find_spaces()
    base = describe_log(_prepared(logs["repeats"]))

    def plan(items: int) -> dict[str, list]:
        p = plan_portfolio(dataclasses.replace(base, items=items), spaces=spaces)
        out: dict[str, list] = {}
        for t in p.trials:
            out.setdefault(t.family, []).append(t.model.get("loss"))
        return out

    big = plan(121_206)
    assert "ce" not in big["sasrec"] and big["gru4rec"] == ["bpr-max"]
    mid = plan(30_000)
    assert mid["sasrec"].count("ce") == 1 and mid["gru4rec"] == ["bpr-max"]
    small = plan(369)
    assert "ce" not in small["sasrec"] and small["gru4rec"] == [None]


def test_a_first_step_estimate_counts_scorings_apart_from_the_fit():
    """Scoring a large catalogue costs every family about the same: Pop's first step (27.2 s,
    two 7.86 s scorings) puts Markov's defaults (fit prior 2) at 2 x 7.86 + 2 x 11.48 s, not at
    2 x 2 x 27.2 s, which no 2-minute budget admitted after Pop on nowplaying-1m."""
    s = AutoSearch.__new__(AutoSearch)
    pop = Trial("pop-000", "pop", "defaults", status="done", value=0.02, value_other=0.01)
    pop.seconds, pop.eval_s = 27.2, 7.86
    markov = Trial("markov-000", "markov", "defaults")
    s.trials = {t.id: t for t in (pop, markov)}
    s.state = {"exclude_seen": {"pop": False, "markov": None}}
    assert s.estimate(markov) == pytest.approx(2 * 7.86 + 2 * (27.2 - 2 * 7.86))
    pop.fit_s = 3.0  # with its fit timed apart: imports and fit 3 s, saving the rest
    assert s.estimate(markov) == pytest.approx(2 * 7.86 + (27.2 - 3.0 - 2 * 7.86) + 2 * 3.0)
    pop.fit_s = 0.0
    markov.status, markov.seconds, markov.value, markov.round = "done", 9.0, 0.05, 1
    sampled = Trial("markov-001", "markov", "sampled", round=1)
    s.trials[sampled.id] = sampled
    assert s.estimate(sampled) == pytest.approx(9.0)  # its family's own steps, one scoring
    sr = Trial("sr-000", "sr", "defaults")
    s.trials[sr.id] = sr
    s.state["exclude_seen"]["sr"] = False  # decided by the first families' consensus
    assert s.estimate(sr) == pytest.approx(7.86 + 2 * (27.2 - 2 * 7.86))


def test_the_first_families_agreeing_on_seen_items_spare_the_rest_a_scoring():
    s = AutoSearch.__new__(AutoSearch)
    s.progress = False
    s.trials, s.state = {}, {"exclude_seen": {}}
    for i, fam in enumerate(["pop", "vsknn", "sknn", "markov", "sr"]):
        t = Trial(f"{fam}-000", fam, "defaults")
        if i < 3:  # scored both ways: kept won
            t.status, t.value, t.value_other = "done", 0.1, 0.05
        s.trials[t.id] = t
        s.state["exclude_seen"][fam] = None
    step = {"trial": "markov-000", "kind": "fit", "eval_both": True, "exclude_seen": False}
    s.follow_consensus(step)
    assert step["eval_both"] is False and step["exclude_seen"] is False
    assert s.state["exclude_seen"] == {
        "pop": None,  # measured both ways: decided after round 0 by its own scores
        "vsknn": None,
        "sknn": None,
        "markov": False,
        "sr": False,
    }
    assert "kept" in s.state["consensus_note"]
    # two agreeing families are not yet a consensus; a disagreement never is
    s.trials["sknn-000"].value_other = None
    s.state["exclude_seen"]["sr"] = None
    assert s.consensus() is None
    s.trials["sknn-000"].value_other = 0.095  # kept wins by 5 %: a close call
    assert s.consensus() is None
    s.trials["sknn-000"].value_other = 0.05
    assert s.consensus() is False
    s.trials["sknn-000"].exclude_seen = True
    assert s.consensus() is None


def test_a_network_step_pauses_at_its_allowance_and_resumes_from_its_checkpoint(tmp_path):
    prep = prepare_run(
        spec_from_config({}), data=generate_repeats(n_users=40, n_items=80, length=15)
    )
    ctx = StepContext(prep, prep.info["spec"], tmp_path, "ndcg@10")
    step = {
        "trial": "gru4rec-000",
        "family": "gru4rec",
        "kind": "fit",
        "model": {"hidden_size": 16, "max_len": 10},
        # one thread: this test process's torch was started before conftest's OMP_NUM_THREADS
        "train": {"epochs": 3, "patience": 0, "batch_size": 16, "num_threads": 1},
        "exclude_seen": False,
        "train_exclude": False,
        "eval_both": True,
        "spent": 0.0,
        "allowance": 0.0,  # the first epoch is the cheapest rung: pause after it
        "deadline": time.time() + 300,
        "members": [],
    }
    first = run_step(ctx, step)
    assert first["status"] == "paused" and first["epochs"] == 1, first
    assert first["value"] is not None and first["value_other"] is not None
    assert first["ci"][0] <= first["value"] <= first["ci"][1]
    assert (tmp_path / "ckpt" / "gru4rec-000").is_dir()
    saved = Recommender.load(tmp_path / "models" / "gru4rec-000")
    assert saved.name == "gru4rec"
    second = run_step(ctx, {**step, "spent": first["seconds"], "allowance": math.inf})
    assert second["status"] == "done" and second["epochs"] == 3, second  # epochs 2 and 3 only
    assert len(second["curve"]) == 2
    # a step past the deadline is cut and leaves the checkpoint as it was
    cut = run_step(ctx, {**step, "trial": "gru4rec-001", "deadline": time.time() - 1})
    assert cut["status"] in ("cut", "paused")
    # the hybrid of a kNN model and this network, formed from the two saved members
    knn = run_step(
        ctx, {**step, "trial": "sknn-000", "family": "sknn", "model": {"k": 50}, "train": {}}
    )
    assert knn["status"] == "done"
    members = {"network": "gru4rec", "network_config": step["model"], "neighbours": "sknn"}
    hyb = run_step(
        ctx,
        {
            **step,
            "trial": "hybrid-000",
            "family": "hybrid",
            "kind": "hybrid",
            "model": {**members, "neighbours_config": {"k": 50}, "select_metric": "ndcg@10"},
            "train": {},
            "members": ["sknn-000", "gru4rec-000"],
        },
    )
    assert hyb["status"] == "done" and 0.0 <= hyb["weight"] <= 1.0, hyb
    assert hyb["value"] >= max(knn["value"], second["value"]) - 1e-9  # w=0 or 1: one member
    from warmrec.tuning.results import dump_toml

    text = dump_toml(ctx.spec("hybrid", hyb["model"], {}, False).to_config())
    spec = spec_from_config(__import__("tomllib").loads(text))  # winner.toml round-trips
    assert spec.model.config["network_config"] == step["model"]
    assert spec.model.config["weight"] == hyb["weight"]


def _default_tests(path: Path, families: list[str]) -> dict[str, float]:
    """Test NDCG@10 of every family at warmrec's defaults (seen items kept, the default)."""
    prep = _prepared(path)
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
    spec = spec_from_config(
        {k: v for k, v in __import__("tomllib").loads((out / "winner.toml").read_text()).items()}
    )
    assert spec.model.name == w["family"]
    # a second run into the same folder finds it done and returns its summary
    again = auto(logs[log], out=out, budget=budget, families=ONE_SHOT, progress=False)
    assert again["winner"]["trial"] == w["trial"]


def test_another_run_into_the_same_folder_is_refused(logs, tmp_path, capsys):
    auto(logs["repeats"], out=tmp_path, budget=10, families=["pop", "markov"], progress=True)
    err = capsys.readouterr().err  # progress: the log, the plan, a line per step, the winner
    assert "log: catalogue:" in err and "plan: " in err and "round 0: the defaults" in err
    assert "markov-000 (defaults): ndcg@10" in err and "winner " in err
    with pytest.raises(ConfigError, match="holds an auto run with other settings"):
        auto(logs["repeats"], out=tmp_path, budget=10, families=["pop", "sr"], progress=False)
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


@pytest.mark.slow
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
            paused = [t for t in state["trials"] if t["status"] == "paused"]
            if paused and sum(t["value"] is not None for t in state["trials"]) >= 4:
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
    paused = [t for t in before["trials"] if t["status"] == "paused"]
    # (the halving goes on with the better half of them): one went on from its checkpoint
    went = [
        (t["id"], t["epochs"], after[t["id"]]["epochs"], after[t["id"]]["status"]) for t in paused
    ]
    assert any(a > b for _, b, a, _ in went), (went, before["round"], before["spent_s"])
    assert wall <= 60 - before["spent_s"] + 0.05 * 60 + 2.0  # what was left (+ start-up)
    assert res["winner"] is not None


@pytest.mark.slow
@pytest.mark.xdist_group("ray")  # one Ray at a time under --dist loadgroup
def test_the_same_steps_run_in_ray_actors(logs, tmp_path):
    pytest.importorskip("ray")
    res = auto(
        logs["repeats"],
        out=tmp_path,
        budget=45,
        families=["pop", "markov", "sessionpop"],
        address="local",
        progress=False,
    )
    assert res["elapsed_s"] <= 45
    state = json.loads((tmp_path / "auto_state.json").read_text())
    scored = [t for t in state["trials"] if t["value"] is not None]
    assert len(scored) >= 5
    # the repeat-heavy log's best family wins whenever it was scored (on a loaded machine the
    # actors may not reach it within the budget: then the best of those scored wins)
    best = max(scored, key=lambda t: t["value"])
    assert res["winner"]["family"] == best["family"]
    if any(t["family"] == "sessionpop" for t in scored):
        assert res["winner"]["family"] == "sessionpop"
    # the actors wrote into the shared folder: each family's best model, nothing else
    kept = {t["id"] for t in state["trials"] if t["kept"]}
    assert kept == set(os.listdir(tmp_path / "work" / "models"))
    assert res["winner"]["trial"] in kept


def test_item2vec_first_step_counts_its_per_epoch_scorings_and_waits_for_time():
    """Item2Vec scores validation after every epoch: with 8.6 s scorings its defaults (10
    epochs) are estimated at 12 scorings plus its fit prior, and round 0 does not start it
    with less than four times that left (on nowplaying-1m it took 458 s)."""
    s = AutoSearch.__new__(AutoSearch)
    s.progress = False
    pop = Trial("pop-000", "pop", "defaults", status="done", value=0.02, value_other=0.01)
    pop.seconds, pop.eval_s, pop.fit_s = 20.0, 8.6, 1.0
    i2v = Trial("item2vec-000", "item2vec", "defaults")
    s.trials = {t.id: t for t in (pop, i2v)}
    s.state = {"exclude_seen": {"pop": False, "item2vec": False}, "round": 0}
    est = (1 + 10) * 8.6 + (20.0 - 1.0 - 2 * 8.6) + 30 * 1.0
    assert s.estimate(i2v) == pytest.approx(est)
    s.end = time.time() + 3 * est  # the reserve is counted off the end
    s.budget_s = 600.0
    s.save = lambda: None
    s.n_test = s.n_valid = 100
    assert s.admit({"trial": "item2vec-000", "kind": "fit"}) is False
    s.end = time.time() + 6 * est
    assert s.admit({"trial": "item2vec-000", "kind": "fit"}) is True


def test_the_hybrid_is_formed_again_when_its_network_trained_on():
    # a paused network that resumes and improves keeps its trial id: the hybrid formed from its
    # earlier weights must be formed again, not left on the leaderboard with them
    from warmrec.experiments.auto import AutoSearch, Trial

    search = object.__new__(AutoSearch)
    search.state = {"hybrid_pair": None}
    search.trials = {
        "vsknn-000": Trial(id="vsknn-000", family="vsknn", origin="defaults", value=0.30,
                           kept=True, status="done"),
        "sasrec-000": Trial(id="sasrec-000", family="sasrec", origin="defaults", value=0.35,
                            kept=True, status="paused"),
    }  # fmt: skip
    formed = []

    class Executor:
        def run(self, steps, admit):
            formed.extend(s["members"] for s in steps)
            return [(s, {}) for s in steps]

    search.executor, search.admit = Executor(), None
    search.step_of = lambda t, allowance: {"trial": t.id, "members": list(t.members)}
    search.absorb = lambda step, res: setattr(search.trials[step["trial"]], "status", "done")
    search.label = "ndcg@10"
    search.hybrid(0)
    search.hybrid(1)  # nothing changed: no new hybrid
    assert formed == [["vsknn-000", "sasrec-000"]]
    search.trials["sasrec-000"].value = 0.40  # trained on
    search.hybrid(2)
    assert formed == [["vsknn-000", "sasrec-000"]] * 2
    assert sorted(t for t in search.trials if t.startswith("hybrid")) == [
        "hybrid-000",
        "hybrid-001",
    ]


def test_a_tie_goes_to_the_single_model_not_the_hybrid_that_equals_it():
    from warmrec.experiments.auto import Trial, rank_bests

    net = Trial(id="sasrec-000", family="sasrec", origin="defaults", value=0.4255, seconds=104)
    hyb = Trial(id="hybrid-002", family="hybrid", origin="hybrid", value=0.4255, seconds=0.7)
    knn = Trial(id="vsknn-003", family="vsknn", origin="sampled", value=0.3881, seconds=0.1)
    assert [t.id for t in rank_bests([hyb, knn, net])] == ["sasrec-000", "hybrid-002", "vsknn-003"]
    better = Trial(id="hybrid-003", family="hybrid", origin="hybrid", value=0.43, seconds=1)
    assert rank_bests([net, better])[0] is better  # a better hybrid still wins
