"""Parameter importance of a search (``warmrec.tuning.results``)."""

from __future__ import annotations

import warnings

from warmrec.tuning.results import TrialRow, _rank_importance, importance_of, plot


def _rows(values, params):
    return [TrialRow(i, "complete", p, v) for i, (v, p) in enumerate(zip(values, params))]


def test_every_trial_scoring_the_same_gives_no_importance_and_no_warning(tmp_path):
    """SR on a log it predicts perfectly: every trial 1.0. scipy warned (ConstantInputWarning)
    and every parameter was drawn at importance 0."""
    rows = _rows([1.0] * 4, [{"model.w": w, "model.kind": k} for w, k in
                             [(1, "a"), (2, "b"), (3, "a"), (4, "b")]])  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert importance_of(rows) == {} and _rank_importance(rows) == {}
        assert "importance.png" in plot(rows, tmp_path, "ndcg@10", {})


def test_rank_importance_counts_a_categorical_parameter():
    """String parameters were left out of the fallback; one that decides the score leads."""
    kinds = ["a", "b", "a", "b", "a", "b"]
    noise = [3, 1, 2, 2, 1, 3]  # unrelated to the score
    values = [0.9 if k == "a" else 0.1 for k in kinds]
    rows = _rows(values, [{"kind": k, "noise": n} for k, n in zip(kinds, noise)])
    imp = _rank_importance(rows)
    assert set(imp) == {"kind", "noise"} and imp["kind"] > 0.8
    assert abs(sum(imp.values()) - 1) < 1e-9
