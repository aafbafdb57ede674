"""``warmrec auto``'s budget: ``--budget`` parsed, a first step's cost estimated."""

from __future__ import annotations

import pytest

from warmrec.errors import ConfigError
from warmrec.experiments.auto import (
    AutoSearch,
    Trial,
    auto,
    parse_budget,
)


def test_parse_budget():
    import warmrec

    assert warmrec.auto is auto  # the public API exports it
    assert parse_budget("90s") == 90 and parse_budget("10m") == 600 and parse_budget("1.5h") == 5400
    assert parse_budget(12) == 12 and parse_budget("45") == 45
    for bad in ("10q", "-1m", "0", "m"):
        with pytest.raises(ConfigError, match="--budget"):
            parse_budget(bad)


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
    # FeatRank fits on validation: fitted again on its halves to be valued out of fold
    fr = Trial("featrank-000", "featrank", "defaults")
    s.trials[fr.id] = fr
    s.state["exclude_seen"]["featrank"] = False
    from warmrec.experiments.auto.plan import FAMILY

    prior = FAMILY["featrank"].prior
    assert s.estimate(fr) == pytest.approx(7.86 + 2 * prior * (27.2 - 2 * 7.86))


def test_a_hybrid_estimate_counts_its_scorings_then_what_a_hybrid_took():
    """The first hybrid is estimated in units of its members' validation scorings (a prior
    that counts the fusion and the weight grid: 3x ran a 10-minute nowplaying-1m search 18 %
    over); a later one from what the earlier hybrid took per member scoring."""
    s = AutoSearch.__new__(AutoSearch)
    knn = Trial("vsknn-000", "vsknn", "defaults", status="done", value=0.11)
    knn.seconds, knn.eval_s = 6.4, 2.3
    net = Trial("gru4rec-000", "gru4rec", "defaults", status="paused", value=0.09)
    net.seconds, net.eval_s = 108.0, 4.0
    h0 = Trial("hybrid-000", "hybrid", "hybrid of vsknn-000 + gru4rec-000")
    h0.members = ["vsknn-000", "gru4rec-000"]
    s.trials = {t.id: t for t in (knn, net, h0)}
    s.state = {"exclude_seen": {"hybrid": False}}
    # all of it twice: fitted and scored in sample, then out of fold over the two halves
    assert s.estimate(h0) == pytest.approx(1.0 + 2 * (2.5 + 2.0 * 2) * 6.3)
    s.state["exclude_seen"]["hybrid"] = None  # undecided: scored both ways
    assert s.estimate(h0) == pytest.approx(1.0 + 2 * (2.5 + 2.0 * 3) * 6.3)
    h0.status, h0.seconds, h0.value = "done", 63.0, 0.12  # 10x its members' scorings
    sas = Trial("sasrec-000", "sasrec", "defaults", status="paused", value=0.1)
    sas.eval_s = 7.7
    h1 = Trial("hybrid-001", "hybrid", "hybrid of vsknn-000 + sasrec-000", round=1)
    h1.members = ["vsknn-000", "sasrec-000"]
    s.trials.update({sas.id: sas, h1.id: h1})
    assert s.estimate(h1) == pytest.approx(1.0 + 1.2 * 10.0 * (2.3 + 7.7))


def test_featrank_first_step_is_estimated_from_the_feature_values_it_will_read(logs):
    """FeatRank's first step grows with the catalogue and the prefixes (~1000x Pop's fit on
    MARS, ~5x on small logs): its estimate adds the seconds of the values the step will read,
    known from the data before it runs; more prefixes, more seconds."""
    from types import SimpleNamespace

    from warmrec.experiments.auto.budget import FEATRANK_S_PER_VALUE
    from warmrec.models.featrank import first_step_values

    from .conftest import prepare_log

    prep = prepare_log(logs["baskets"])
    s = AutoSearch.__new__(AutoSearch)
    pop = Trial("pop-000", "pop", "defaults", status="done", value=0.02)
    pop.seconds, pop.eval_s = 2.0, 0.5
    fr = Trial("featrank-000", "featrank", "defaults", model={"max_fit_events": 300})
    s.trials = {t.id: t for t in (pop, fr)}
    s.state = {"exclude_seen": {"pop": False, "featrank": False}}
    alone = s.estimate(fr)  # no data to read: the prior only
    s.ctx = SimpleNamespace(prepared=prep)
    values = first_step_values(prep.train, fr.model, prep.valid)  # the items the fit knows
    assert values > 0
    assert s.estimate(fr) == pytest.approx(alone + FEATRANK_S_PER_VALUE * values)
    more = Trial("featrank-001", "featrank", "sampled", model={"max_fit_events": 3000})
    s.trials[more.id] = more
    assert first_step_values(prep.train, more.model, prep.valid) > values
    assert s.estimate(more) > s.estimate(fr)
    other = Trial("pop-001", "pop", "sampled")  # other families: unchanged
    s.trials[other.id] = other
    assert s.first_step_s(other) == 0.0


def test_a_failed_step_is_not_the_unit_of_the_cost_priors():
    """The priors' unit is the quickest one-shot step that fitted and scored: a family that
    failed at once (0.004 s) had become it, and a network's first step (20 units) was then
    estimated at the 3 s floor where Pop's 2 s step puts it at 40 s, and started with far too
    little time left."""
    import time

    s = AutoSearch.__new__(AutoSearch)
    pop = Trial("pop-000", "pop", "defaults", status="done", value=0.1, seconds=2.0, eval_s=1.5)
    markov = Trial("markov-000", "markov", "defaults", status="failed", seconds=0.004, steps=1)
    cut = Trial("sr-000", "sr", "defaults", status="cut", seconds=0.5, steps=1)
    sasrec = Trial("sasrec-000", "sasrec", "defaults")
    s.trials = {t.id: t for t in (pop, markov, cut, sasrec)}
    s.state = {"exclude_seen": {}, "round": 1}
    assert s.unit() == pytest.approx(2.0)
    assert s.estimate(sasrec) == pytest.approx(40.0)
    s.budget_s, s.n_test, s.n_valid = 600.0, 100, 100
    s.save = lambda: None
    s.end = time.time() + 20.0 + s.reserve()  # 20 s of search left: not enough for it
    assert s.admit({"trial": "sasrec-000", "kind": "fit"}) is False
