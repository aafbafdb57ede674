"""``warmrec auto``'s executors: the same steps run in Ray actors."""

from __future__ import annotations

import json
import os

import pytest

from warmrec.experiments.auto import (
    auto,
)


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


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_fresh_over_the_best_runs_in_ray_actors_too(tmp_path):
    """The formed steps (here Fresh over Markov on a growing catalogue) load their members from
    the shared work folder in an actor as they do locally: same trial, same pick."""
    pytest.importorskip("ray")
    from tests.experiments.auto.test_text import _time_split, growing_catalogue

    log, items = growing_catalogue(tmp_path)
    res = auto(
        {"path": str(log), "items": str(items)},
        split=_time_split(),
        out=tmp_path / "auto",
        budget=60,
        families=["markov", "tfidf", "fresh"],
        address="local",
        progress=False,
    )
    state = json.loads((tmp_path / "auto" / "auto_state.json").read_text())
    over = [t for t in state["trials"] if t["origin"].startswith("fresh over ")]
    assert [(t["origin"], t["status"]) for t in over] == [("fresh over markov-000", "done")]
    assert res["winner"]["trial"] == over[0]["id"] and res["winner"]["takes_new_items"]
