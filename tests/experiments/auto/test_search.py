"""``warmrec auto``'s search: seen items decided by consensus, a step admitted within the time left,
the hybrid formed again when its network trained on."""

from __future__ import annotations

import time

import pytest

from warmrec.experiments.auto import (
    AutoSearch,
    Trial,
)


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


def _hybrid_search(trials: dict[str, tuple[float, str]]):
    """An AutoSearch with only what ``hybrid`` needs: ``trials`` (id -> value, status), kept,
    and an executor that records the members of every step it runs (returned with it)."""
    from warmrec.experiments.auto import AutoSearch, Trial

    search = object.__new__(AutoSearch)
    search.state = {"hybrid_pair": None}
    search.trials = {
        tid: Trial(id=tid, family=tid.rsplit("-", 1)[0], origin="defaults", value=v, kept=True,
                   status=status)
        for tid, (v, status) in trials.items()
    }  # fmt: skip
    formed: list[list[str]] = []

    class Executor:
        def run(self, steps, admit):
            formed.extend(s["members"] for s in steps)
            return [(s, {}) for s in steps]

    search.executor, search.admit = Executor(), None
    search.step_of = lambda t, allowance: {"trial": t.id, "members": list(t.members)}
    search.absorb = lambda step, res: setattr(search.trials[step["trial"]], "status", "done")
    search.label = "ndcg@10"
    return search, formed


def test_the_hybrid_is_formed_again_when_its_network_trained_on():
    # a paused network that resumes and improves keeps its trial id: the hybrid formed from its
    # earlier weights must be formed again, not left on the leaderboard with them
    search, formed = _hybrid_search({"vsknn-000": (0.30, "done"), "sasrec-000": (0.35, "paused")})
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


def test_a_hybrid_or_fresh_step_that_a_kill_interrupted_is_formed_again_on_resume():
    """A kill inside a formed model's step (after round 0) left it pending in the state; the
    resumed run saw its members unchanged (the pair, or Fresh's base, already recorded) and
    never formed it again: the hybrid was lost from that run. It is now run again."""
    from warmrec.experiments.auto.plan import FRESH

    search, formed = _hybrid_search({"vsknn-000": (0.30, "done"), "sasrec-000": (0.35, "paused")})
    search.hybrid(1)
    assert formed == [["vsknn-000", "sasrec-000"]]
    # the kill: the step was running, and the resumed run set it back to pending
    search.trials["hybrid-000"].status = "pending"
    search.hybrid(2)
    assert formed == [["vsknn-000", "sasrec-000"]] * 2
    assert search.trials["hybrid-000"].status == "done"
    assert [t for t in search.trials if t.startswith("hybrid")] == ["hybrid-000"]
    search.hybrid(3)  # formed: not again
    assert len(formed) == 2
    # Fresh over the best model: the same
    search.state.update(families=[FRESH], fresh_base=["hybrid-000"], fresh_value=0.40)
    search.ctx = type("Ctx", (), {"cold_share": None})()
    own = Trial(id="fresh-000", family=FRESH, origin="defaults", model={"base": "tfidf"})
    over = Trial(id="fresh-over-000", family=FRESH, origin="fresh over hybrid-000",
                 members=["hybrid-000"], status="pending")  # fmt: skip
    search.trials["hybrid-000"].value, search.trials["hybrid-000"].kept = 0.40, True
    search.trials.update({own.id: own, over.id: over})
    search.fresh_over(3)
    assert formed[-1] == ["hybrid-000"] and over.status == "done"


def test_the_hybrid_pairs_the_best_network_with_the_best_knn_or_featrank():
    # FeatRank (item text, catalogue order, shared tags) is a partner as the session kNNs are:
    # the better of them on validation is paired with the best network; a rule model is not
    from warmrec.experiments.auto import PARTNERS

    assert "featrank" in PARTNERS and "sr" not in PARTNERS

    def formed_pair(values: dict[str, float]) -> list[str]:
        search, formed = _hybrid_search({f"{f}-000": (v, "done") for f, v in values.items()})
        search.hybrid(0)
        assert len(formed) == 1
        hyb = search.trials["hybrid-000"]
        assert hyb.model["network"] == "sasrec" and hyb.model["neighbours"] == formed[0][0][:-4]
        return formed[0]

    three = {"vsknn": 0.30, "featrank": 0.33, "sr": 0.34, "sasrec": 0.35}
    assert formed_pair(three) == ["featrank-000", "sasrec-000"]
    assert formed_pair({**three, "featrank": 0.29}) == ["vsknn-000", "sasrec-000"]


def test_a_decaying_learning_rate_is_not_a_warm_up():
    """SASRec's cosine decay is under 0.9 of its base rate from a fifth of its epochs on: the
    network had been taken as warming up, kept from every halving and given 3x its time."""
    from warmrec.experiments.auto.steps import warming

    assert warming(0.2e-3, None, 2e-3)  # the first epoch, low: warm-up
    assert warming(1.0e-3, 0.5e-3, 2e-3)  # rising
    assert not warming(1.5e-3, 1.7e-3, 2e-3)  # falling: the decay
    assert not warming(1.95e-3, 1.5e-3, 2e-3)  # at the base rate


def test_a_kill_inside_a_step_loses_at_most_a_tick_of_the_time_spent(tmp_path):
    """The state gets the time spent when a step ends: a kill inside one had lost it, and the
    resumed run overran its budget while reporting it had kept it."""
    import json

    from warmrec.experiments.auto.search import CLOCK, AutoSearch, spent_before

    assert spent_before(tmp_path, {"spent_s": 7.0}) == 7.0  # no clock written
    (tmp_path / CLOCK).write_text(json.dumps({"spent_s": 25.0}))
    assert spent_before(tmp_path, {"spent_s": 7.0}) == 25.0
    (tmp_path / CLOCK).write_text("{")  # a torn write: the state's figure
    assert spent_before(tmp_path, {"spent_s": 7.0}) == 7.0

    class Clocked:  # the clock and the folder of an AutoSearch, nothing else
        out, spent_prev, t_start = tmp_path, 3.0, time.time()
        clock = AutoSearch.clock
        ticking = AutoSearch.ticking

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("warmrec.experiments.auto.search.CLOCK_S", 0.05)
        with Clocked().ticking():
            time.sleep(0.3)
    assert 3.1 < json.loads((tmp_path / CLOCK).read_text())["spent_s"] < 4.0


def test_a_sampled_network_trains_as_long_as_the_defaults_trial_may():
    """The built-in SASRec space fixes an epoch cap of 8 and patience 3 (sized for `warmrec
    tune`): auto's sampled networks had stopped at 8 epochs while the defaults' trial had 100."""
    from warmrec.experiments.auto.plan import find_spaces
    from warmrec.experiments.auto.sampling import FamilySampler

    class Sampler(FamilySampler):
        seed, state, trials, _studies, _asked = 0, {"exclude_seen": {}}, {}, {}, {}
        spaces = find_spaces(None)

        def of(self, fam):
            return [t for t in self.trials.values() if t.family == fam]

    assert Sampler.spaces["sasrec"].fixed["train"]["epochs"] == 8  # the space's own cap
    t = Sampler().sample("sasrec", 1)
    assert "epochs" not in t.train and "patience" not in t.train
    assert t.train["num_threads"] == 1  # what else the space fixes is kept
    k = Sampler().sample("markov", 1)  # not a network: as the space says
    assert k is not None and k.family == "markov"


def test_the_first_step_may_use_the_reserve_and_a_network_is_not_cut_before_its_score(tmp_path):
    """The package docstring lets the very first step use the reserve (without one score there
    is nothing to pick). A network admitted there was given the search deadline all the same:
    started in the reserve, its first batch was cut and the search ended with no score. With
    30 s of the budget left and a reserve of 68 s it now trains its first epoch, is scored,
    and pauses (3 epochs configured: the reserve is not spent on more); a later step is not
    admitted there."""
    from warmrec.data.synthetic import generate_repeats
    from warmrec.experiments.auto import StepContext, run_step
    from warmrec.experiments.spec import prepare_run, spec_from_config

    prep = prepare_run(
        spec_from_config({}), data=generate_repeats(n_users=40, n_items=80, length=15)
    )
    s = AutoSearch.__new__(AutoSearch)
    s.progress = False
    s.ctx = StepContext(prep, prep.info["spec"], tmp_path, "ndcg@10")
    first = Trial(
        "gru4rec-000",
        "gru4rec",
        "defaults",
        model={"hidden_size": 16, "max_len": 10},
        train={"epochs": 3, "patience": 0, "batch_size": 16, "num_threads": 1},
    )
    later = Trial("sasrec-000", "sasrec", "defaults", model={"hidden_size": 16, "max_len": 10})
    s.trials = {t.id: t for t in (first, later)}
    s.state = {"exclude_seen": {"gru4rec": False, "sasrec": False}, "round": 0}
    s.budget_s, s.n_test, s.n_valid, s.save = 3000.0, 100, 100, lambda: None
    s.end = time.time() + 30.0
    assert s.reserve() == pytest.approx(3.0 + 60.0 + 1.5 * 2.0 + 2.0)  # no step measured yet
    assert s.search_deadline() < time.time()  # only the reserve is left
    step = s.step_of(first, 0.0)
    assert s.admit(step) is True
    assert step["deadline"] == s.end and step["pause_at"] == pytest.approx(s.search_deadline())
    assert s.state["round0_left"] < 0  # the networks' round-0 share counted from this start
    res = run_step(s.ctx, step)
    assert res["status"] == "paused" and res["epochs"] == 1, res
    assert res["value"] is not None and res["kept"] is True
    first.value, first.status = res["value"], "paused"
    # with a score, no later step is admitted in the reserve
    assert s.admit(s.step_of(later, 0.0)) is False


def test_only_one_step_at_a_time_may_use_the_reserve_for_the_first_score(tmp_path):
    """Ray's executor admits a step for every free actor before any has a score. Each of them
    counted as 'the very first' and was handed the budget's end as its deadline: steps of the
    first wave kept running into the final step's reserve after another had scored (a slow
    one-shot step, a network's epoch), not cut at the search deadline. The reserve buys one
    first score: a step started while the first runs is admitted and cut as any other."""
    s = AutoSearch.__new__(AutoSearch)
    s.progress = False
    first = Trial("gru4rec-000", "gru4rec", "defaults", model={"hidden_size": 16})
    other = Trial("featrank-000", "featrank", "defaults")
    s.trials = {t.id: t for t in (first, other)}
    s.state = {"exclude_seen": {"gru4rec": False, "featrank": False}, "round": 0}
    s.budget_s, s.n_test, s.n_valid, s.save = 3000.0, 100, 100, lambda: None
    s.end = time.time() + 30.0
    assert s.search_deadline() < time.time()  # only the reserve is left
    step = s.step_of(first, 0.0)
    assert s.admit(step) is True and step["deadline"] == s.end
    assert first.status == "running"
    # a second actor is free while the first step runs, nothing scored yet: not in the reserve
    assert s.admit(s.step_of(other, 0.0)) is False
    assert other.status == "pending"


def test_the_progress_line_names_the_trial_the_final_ranking_would_pick():
    """Fresh over SASRec that only equals its base (its terms at 0) is not the final pick: on a
    tie the single model goes first (rank_bests). The progress line's "| best" went by value
    and cost prior alone and named the Fresh-over trial (Fresh is cheaper than SASRec)."""
    from types import SimpleNamespace

    s = AutoSearch.__new__(AutoSearch)
    base = Trial("sasrec-000", "sasrec", "defaults", status="done", value=0.3, kept=True)
    fresh = Trial("fresh-over-000", "fresh", "fresh over sasrec-000", members=["sasrec-000"])
    fresh.status = "running"
    s.trials = {t.id: t for t in (base, fresh)}
    s.ctx = SimpleNamespace(metric="ndcg@10")
    said: list[str] = []
    s.say, s.save, s.prune, s.tell = said.append, lambda: None, lambda: None, lambda t: None
    s.clock = lambda when=None: 0.0
    s.absorb({"trial": fresh.id}, {"status": "done", "value": 0.3, "kept": True, "seconds": 1.0})
    assert fresh.value == 0.3 and fresh.kept
    assert said[-1].endswith("| best sasrec-000 0.3000")
    assert s.ranked()[0] is base  # the final step's order
    fresh.value = 0.31  # better than its base: now the pick, and the line says so
    s.absorb({"trial": base.id}, {"status": "done", "value": 0.3, "kept": True, "seconds": 1.0})
    assert said[-1].endswith("| best fresh-over-000 0.3100")
