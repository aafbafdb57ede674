"""Ranking and list metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from warmrec.errors import ConfigError
from warmrec.evaluation import metrics as M

RANKS = np.array([1, 2, 5, 10, 11])


def test_hit_rate_and_recall_at_k():
    assert M.hit_rate(RANKS, 10).tolist() == [1, 1, 1, 1, 0]
    assert M.hit_rate(RANKS, 1).tolist() == [1, 0, 0, 0, 0]
    assert M.recall(RANKS, 5).tolist() == [1, 1, 1, 0, 0]


def test_ndcg_at_k():
    want = [1.0, 1 / math.log2(3), 1 / math.log2(6), 1 / math.log2(11), 0.0]
    np.testing.assert_allclose(M.ndcg(RANKS, 10), want)
    np.testing.assert_allclose(M.ndcg(RANKS, 4), [1.0, 0.63092975, 0, 0, 0], atol=1e-8)


def test_mrr_and_map_at_k():
    np.testing.assert_allclose(M.mrr(RANKS, 10), [1.0, 0.5, 0.2, 0.1, 0.0])
    np.testing.assert_allclose(M.mrr(RANKS, 2), [1.0, 0.5, 0.0, 0.0, 0.0])
    # one relevant item: AP@K is the precision at its rank
    np.testing.assert_allclose(M.average_precision(RANKS, 5), [1.0, 0.5, 0.2, 0.0, 0.0])


def test_parse_metric():
    spec = M.parse_metric(" NDCG@10 ")
    assert (spec.name, spec.k, spec.label) == ("ndcg", 10, "ndcg@10")
    assert M.parse_metric("cat_map@5").label == "cat_map@5"
    for bad in ("foo@10", "ndcg", "ndcg@", "ndcg@0", "ndcg@-1", "@10"):
        with pytest.raises(ConfigError):
            M.parse_metric(bad)


def test_coverage_ignores_padding():
    topk = np.array([[1, 2], [2, 3], [0, 0]])
    assert M.coverage(topk, n_items=6) == pytest.approx(3 / 5)
    assert M.coverage(np.zeros((2, 3), dtype=np.int64), n_items=6) == 0.0


def test_mean_popularity_skips_padding_slots():
    counts = np.array([0.0, 10, 20, 30, 40, 50])
    topk = np.array([[1, 2], [2, 0], [0, 0]])
    got = M.mean_popularity(topk, counts)
    assert got[:2].tolist() == [15.0, 20.0] and np.isnan(got[2])


# categories: A = column 0, B = column 1; item 0 is padding
CATS = np.array([[0, 0], [1, 0], [1, 0], [0, 1], [1, 1], [0, 1]], dtype=bool)


def test_category_hits_by_hand():
    targets = np.array([1, 5, 3])
    topk = np.array([[3, 2, 4], [1, 2, 0], [5, 0, 0]])
    hr, ap = M.category_hits(topk, targets, CATS)
    assert hr.tolist() == [1.0, 0.0, 1.0]
    # target 1 (A): relevant = items 1, 2, 4 -> 3 in the catalogue; list [3, 2, 4] -> rel [0, 1, 1]
    # AP = (1/2 + 2/3) / min(3, 3); target 3 (B): list [5, pad, pad] -> 1 / min(3, 3)
    np.testing.assert_allclose(ap, [(1 / 2 + 2 / 3) / 3, 0.0, 1 / 3])


def test_category_ap_denominator_is_capped_by_relevant_items():
    cats = np.array([[0, 0], [1, 0], [1, 0], [0, 1], [0, 1], [0, 1]], dtype=bool)
    # target 1 (A): only items 1 and 2 are relevant; K = 3 -> denominator min(3, 2) = 2
    hr, ap = M.category_hits(np.array([[3, 1, 2]]), np.array([1]), cats)
    assert hr.tolist() == [1.0]
    np.testing.assert_allclose(ap, [(1 / 2 + 2 / 3) / 2])


def test_category_hits_many_rows_matches_small_blocks():
    rng = np.random.default_rng(0)
    cats = rng.random((50, 4)) < 0.3
    cats[0] = False
    targets = rng.integers(1, 50, size=300)
    topk = rng.integers(0, 50, size=(300, 5))
    hr, ap = M.category_hits(topk, targets, cats)
    # one row at a time, computed directly from the definition
    for j in range(0, 300, 37):
        rel = np.array([t > 0 and (cats[t] & cats[targets[j]]).any() for t in topk[j]])
        n_rel = sum((cats[i] & cats[targets[j]]).any() for i in range(1, 50))
        prec = np.cumsum(rel) / np.arange(1, 6)
        want = (prec * rel).sum() / min(5, n_rel) if n_rel else 0.0
        assert hr[j] == float(rel.any()) and ap[j] == pytest.approx(want)
