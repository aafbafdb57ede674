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
