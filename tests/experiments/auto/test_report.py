"""``warmrec auto``'s final step: the ranking of each family's best."""

from __future__ import annotations


def test_a_tie_goes_to_the_single_model_not_the_hybrid_that_equals_it():
    from warmrec.experiments.auto import Trial, rank_bests

    net = Trial(id="sasrec-000", family="sasrec", origin="defaults", value=0.4255, seconds=104)
    hyb = Trial(id="hybrid-002", family="hybrid", origin="hybrid", value=0.4255, seconds=0.7)
    knn = Trial(id="vsknn-003", family="vsknn", origin="sampled", value=0.3881, seconds=0.1)
    assert [t.id for t in rank_bests([hyb, knn, net])] == ["sasrec-000", "hybrid-002", "vsknn-003"]
    better = Trial(id="hybrid-003", family="hybrid", origin="hybrid", value=0.43, seconds=1)
    assert rank_bests([net, better])[0] is better  # a better hybrid still wins


def test_the_report_says_whether_new_items_join_the_pick():
    from warmrec.experiments.auto.report import new_items_line

    yes = {"takes_new_items": True, "new_items_note": None, "model_dir": "out/model"}
    assert "`warmrec add-items out/model --items FILE`" in new_items_line(yes)
    no = {"takes_new_items": False, "model_dir": "out/model"}
    no["new_items_note"] = "model 'gru4rec' cannot take new items without retraining"
    assert new_items_line(no) == (
        "- new items need a refit: model 'gru4rec' cannot take new items without retraining"
    )


def test_the_coldstart_scenario_finishes_with_a_pick_and_no_slices(logs, tmp_path):
    """``--split coldstart`` searched its whole budget, then the final step asked for the
    cold-start slices (which need a row split) and ended the command there: no leaderboard, no
    model, and a folder that failed the same way on every resume. It now finishes without
    slices (every held-out user of the scenario is new by construction)."""
    import json

    from warmrec.experiments.auto import auto

    res = auto(logs["repeats"], out=tmp_path, budget=6, split="coldstart", families=["pop"],
               progress=False)  # fmt: skip
    w = res["winner"]
    assert w["family"] == "pop" and w["test"]["ndcg@10"] > 0
    assert w["slices"] == {}
    assert (tmp_path / "model" / "config.json").is_file()
    assert "by slice" not in (tmp_path / "report.md").read_text()
    assert json.loads((tmp_path / "auto_state.json").read_text())["phase"] == "done"


def _tied(family: str, n: int, seconds: float, value: float = 0.3) -> object:
    from warmrec.experiments.auto import Trial

    return Trial(id=f"{family}-{n:03d}", family=family, origin="defaults", value=value,
                 seconds=seconds)  # fmt: skip


def test_a_tie_between_families_is_settled_by_cost_prior_and_order_not_by_seconds():
    from warmrec.experiments.auto import rank_bests

    # equal validation values; the measured seconds point the other way each time (a second
    # run of the same search measures other seconds, and must pick the same winner)
    pop, sasrec = _tied("pop", 0, seconds=50.0), _tied("sasrec", 0, seconds=1.0)
    markov, sr = _tied("markov", 0, seconds=9.0), _tied("sr", 0, seconds=0.5)  # both prior 2
    for order in ([sasrec, sr, markov, pop], [pop, markov, sr, sasrec]):
        assert [t.id for t in rank_bests(order)] == [
            "pop-000",
            "markov-000",
            "sr-000",
            "sasrec-000",
        ]
    faster = _tied("sasrec", 0, seconds=0.1, value=0.31)
    assert rank_bests([pop, faster])[0] is faster  # a better value still wins


def test_the_best_trial_of_a_family_on_a_tie_is_the_earlier_one_not_the_quicker():
    from warmrec.experiments.auto import AutoSearch

    search = object.__new__(AutoSearch)
    early, late = _tied("sasrec", 2, seconds=90.0), _tied("sasrec", 10, seconds=3.0)
    other = _tied("gru4rec", 0, seconds=1.0)  # same prior as SASRec, later in the portfolio
    for order in ([late, early, other], [other, early, late]):
        search.trials = {t.id: t for t in order}
        assert search.best(["sasrec"]) is early
        assert search.best() is early


def test_the_report_keeps_the_digits_of_a_small_figure():
    """The leaderboard and the pick wrote 4 decimals: a test NDCG of 3e-05 with its interval
    read ``0.0000 [0.0000, 0.0000]``, a zero; they are written as the other reports write
    them now."""
    from warmrec.experiments.auto.report import _fmt

    assert _fmt(3e-5, [1e-5, 4e-5]) == "3.00e-05 [1.00e-05, 4.00e-05]"
    assert _fmt(0.25, [0.2, 0.3]) == "0.2500 [0.2000, 0.3000]"
    assert _fmt(None) == "-" and _fmt(0.0) == "0.0000"


def test_the_progress_plot_leaves_the_callers_matplotlib_backend_alone(tmp_path):
    """``matplotlib.use("Agg")`` in the plot switched the caller's backend (a notebook's
    inline one) for the rest of its session; the plot uses the object API now."""
    from types import SimpleNamespace

    import matplotlib

    from warmrec.experiments.auto.report import _plot

    before = matplotlib.get_backend()
    trial = SimpleNamespace(curve=[(1.0, 0.1), (2.0, 0.2)])
    search = SimpleNamespace(
        of=lambda fam: [trial] if fam == "pop" else [], ctx=SimpleNamespace(metric="ndcg@10")
    )
    try:
        matplotlib.use("pdf")
        _plot(search, tmp_path / "progress.png", SimpleNamespace(value=0.2))
        assert matplotlib.get_backend() == "pdf"
    finally:
        matplotlib.use(before)
    assert (tmp_path / "progress.png").read_bytes()[:4] == b"\x89PNG"
