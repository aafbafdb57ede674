"""Markov, association rules and sequential rules: exact counts on hand-made sessions.

Sessions (time order within each; vocabulary a=1, b=2, c=3, d=4):

    s1: a b c      s2: b c d      s3: a c a d

Item counts: a 3, b 2, c 3, d 2. Expected rule matrices are written out by hand below.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from tests.conftest import cyclic_log, hand_made, raw_scores, session_frame
from warmrec import EvalSet, SequenceDataset, evaluate, get_model
from warmrec.errors import ConfigError
from warmrec.models.rules import (
    AssociationRules,
    Markov,
    SequentialRules,
    last_items_query,
    prune_rows,
    scores_with_fallback,
)

A, B, C, D = 1, 2, 3, 4


@pytest.fixture(scope="module")
def tiny() -> SequenceDataset:
    return hand_made()


def dense(model) -> np.ndarray:
    return model.matrix.toarray()


def expected(rows: dict[int, dict[int, float]]) -> np.ndarray:
    out = np.zeros((5, 5))
    for a, row in rows.items():
        for b, v in row.items():
            out[a, b] = v
    return out


def test_vocab_of_tiny(tiny):
    assert tiny.vocab.ids.to_list() == ["a", "b", "c", "d"]
    assert tiny.item_counts().tolist() == [0, 3, 2, 3, 2]


# -- Markov ------------------------------------------------------------------------------------


def test_markov_transition_counts(tiny):
    m = Markov(pop_fallback=False).fit(tiny)
    # a->b, b->c | b->c, c->d | a->c, c->a, a->d
    want = expected({A: {B: 1, C: 1, D: 1}, B: {C: 2}, C: {D: 1, A: 1}})
    np.testing.assert_array_equal(dense(m), want)
    s = raw_scores(m, [[A], [D, B], [C], [D]])
    np.testing.assert_array_equal(s, want[[A, B, C, D]].astype(np.float32))


def test_markov_popularity_fallback_values_and_order(tiny):
    m = Markov().fit(tiny)
    # history ending in c: rules c->a, c->d (1 each). Scale 0.5 * min positive = 0.5;
    # popularity term 0.5 * count / (max count + 1) = 0.5 * count / 4.
    s = raw_scores(m, [[C]])[0]
    np.testing.assert_allclose(s, [0.0, 1.375, 0.25, 0.375, 1.25], rtol=1e-6)
    assert m.recommend([["c"]], k=4) == [["a", "d", "c", "b"]]
    # empty history: popularity only (scale 1)
    np.testing.assert_allclose(raw_scores(m, [[]])[0], [0, 0.75, 0.5, 0.75, 0.5], rtol=1e-6)


def test_markov_topk_prunes_by_count_then_popularity(tiny):
    m = Markov(topk=1, pop_fallback=False).fit(tiny)
    # a: b, c, d tie at 1 -> the most popular, c (3), wins; c: a (3) beats d (2)
    want = expected({A: {C: 1}, B: {C: 2}, C: {A: 1}})
    np.testing.assert_array_equal(dense(m), want)


def test_markov_state_is_arrays(tiny):
    m = Markov().fit(tiny)
    st = m.get_state()
    assert set(st) == {"counts", "w_indptr", "w_indices", "w_data"}
    assert st["w_indptr"].tolist() == [0, 0, 3, 4, 6, 6]


# -- association rules -------------------------------------------------------------------------


def test_ar_pair_counts(tiny):
    m = AssociationRules(pop_fallback=False).fit(tiny)
    # s1: ab ac bc; s2: bc bd cd; s3 (a c a d): ac x2, aa x2 (both directions of one pair),
    # ad x2, cd x1
    want = expected(
        {
            A: {A: 2, B: 1, C: 3, D: 2},
            B: {A: 1, C: 2, D: 1},
            C: {A: 3, B: 2, D: 2},
            D: {A: 2, B: 1, C: 2},
        }
    )
    np.testing.assert_array_equal(dense(m), want)
    np.testing.assert_array_equal(dense(m), dense(m).T)


def test_ar_last_n_with_decay(tiny):
    m = AssociationRules(n_last=2, decay=0.5, pop_fallback=False).fit(tiny)
    # history [..., b, a]: row a + 0.5 * row b; the item before b is beyond n_last
    s = raw_scores(m, [[D, B, A]])[0]
    np.testing.assert_allclose(s, [0, 2.5, 1.0, 4.0, 2.5])
    one = AssociationRules(pop_fallback=False).fit(tiny)
    np.testing.assert_allclose(raw_scores(one, [[D, B, A]])[0], [0, 2, 1, 3, 2])


def test_ar_puts_cooccurring_items_first(cyclic):
    """Order-free, so on the cycle the next and the previous item tie; with the previous one
    excluded as seen, the next item comes first almost always."""
    train = SequenceDataset.from_frame(cyclic)
    es = EvalSet.from_sessions(cyclic_log(n_sessions=40, seed=1), train.vocab)
    res = evaluate(AssociationRules().fit(train), es, ["hr@2"], exclude_seen=True)
    assert res["hr@2"] >= 0.95


# -- sequential rules --------------------------------------------------------------------------


def test_sr_div_weights(tiny):
    m = SequentialRules(steps=2, pop_fallback=False).fit(tiny)
    # distance 1 (weight 1): a->b b->c | b->c c->d | a->c c->a a->d
    # distance 2 (weight 1/2): a->c | b->d | a->a c->d
    want = expected({A: {A: 0.5, B: 1, C: 1.5, D: 1}, B: {C: 2, D: 0.5}, C: {A: 1, D: 1.5}})
    np.testing.assert_allclose(dense(m), want)
    np.testing.assert_allclose(raw_scores(m, [[B, A]])[0], want[A])


def test_sr_linear_and_steps(tiny):
    m = SequentialRules(steps=3, weighting="linear", pop_fallback=False).fit(tiny)
    # d=1: 0.9, d=2: 0.8, d=3: 0.7 (only s3: a->d)
    want = expected(
        {A: {A: 0.8, B: 0.9, C: 1.7, D: 0.9 + 0.7}, B: {C: 1.8, D: 0.8}, C: {A: 0.9, D: 1.7}}
    )
    np.testing.assert_allclose(dense(m), want, rtol=1e-6)


def test_sr_one_step_same_weight_is_markov(tiny):
    sr = SequentialRules(steps=1, weighting="same", pop_fallback=False).fit(tiny)
    mk = Markov(pop_fallback=False).fit(tiny)
    np.testing.assert_array_equal(dense(sr), dense(mk))


def test_sr_learns_the_cycle(cyclic):
    train = SequenceDataset.from_frame(cyclic)
    es = EvalSet.from_sessions(cyclic_log(n_sessions=40, seed=1), train.vocab)
    assert evaluate(SequentialRules().fit(train), es, ["hr@1"])["hr@1"] == 1.0


# -- configs and helpers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cfg"),
    [
        ("sr", {"weighting": "cubic"}),
        ("sr", {"steps": 0}),
        ("ar", {"n_last": 0}),
        ("ar", {"decay": 0.0}),
        ("markov", {"topk": -1}),
    ],
)
def test_bad_config_values(name, cfg):
    with pytest.raises(ConfigError, match=next(iter(cfg))):
        get_model(name, cfg)


def test_last_items_query():
    items = np.array([[0, 0, 2, 3], [1, 3, 1, 3], [0, 0, 0, 0]])
    q = last_items_query(items, 5, n_last=3, decay=0.5).toarray()
    np.testing.assert_allclose(q, [[0, 0, 0.5, 1, 0], [0, 0.5, 0, 1.25, 0], [0, 0, 0, 0, 0]])


def test_prune_rows_keeps_largest_with_tiebreak():
    m = sp.csr_matrix(np.array([[0, 3, 1, 3, 2], [0, 0, 0, 0, 0], [0, 1, 1, 0, 0]], dtype=float))
    pop = np.array([0, 1, 5, 9, 2], dtype=float)
    got = prune_rows(m, 2, tiebreak=pop).toarray()
    np.testing.assert_array_equal(got, [[0, 3, 0, 3, 0], [0, 0, 0, 0, 0], [0, 1, 1, 0, 0]])
    got1 = prune_rows(m, 1, tiebreak=pop).toarray()
    np.testing.assert_array_equal(got1, [[0, 0, 0, 3, 0], [0, 0, 0, 0, 0], [0, 0, 1, 0, 0]])


def test_fallback_keeps_positive_scores_above_the_rest():
    r = sp.csr_matrix(np.array([[0, 0.01, 0, 0.02], [0, 0, 0, 0]], dtype=np.float32))
    counts = torch.tensor([0.0, 1.0, 100.0, 5.0])
    s = scores_with_fallback(r, counts, True)
    assert s.dtype == torch.float32
    assert s[0, 0] == 0 and s[1, 0] == 0
    assert s[0, 2] < s[0, 1] < s[0, 3]  # popular item 2 without a rule stays below both
    assert torch.argsort(s[1, 1:], descending=True).tolist() == [1, 2, 0]


def test_fallback_never_reorders_different_rule_scores():
    """1 -> 2 twelve times, 1 -> 3 ten times, 3 the most popular item: Markov ranks by the
    transition counts; popularity only orders items whose counts tie (or have none)."""
    sessions = [[1, 2]] * 12 + [[1, 3]] * 10 + [[3, 4, 3, 4, 3]] * 30
    rows = [(f"s{j}", str(it), float(t)) for j, s in enumerate(sessions) for t, it in enumerate(s)]
    m = Markov().fit(SequenceDataset.from_frame(session_frame(rows)))
    items = [i for i, _ in m.recommend([["1"]], k=4, scores=True)[0]]
    assert items == ["2", "3", "4", "1"]  # 12, 10 transitions, then no rule: by popularity


def test_fallback_breaks_only_ties_on_random_rows():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = 30
        dense_r = np.zeros((1, n), dtype=np.float32)
        cols = rng.choice(np.arange(1, n), size=rng.integers(1, 12), replace=False)
        dense_r[0, cols] = rng.choice([0.5, 1.0, 1.0001, 2.0, 3.0, 7.25], size=len(cols))
        counts = torch.from_numpy(rng.integers(0, 50, size=n).astype(np.float32))
        s = scores_with_fallback(sp.csr_matrix(dense_r), counts, True)[0].numpy()
        raw = dense_r[0]
        for a in range(1, n):
            for b in range(1, n):
                if raw[a] > raw[b]:
                    assert s[a] >= s[b], (raw[a], raw[b], s[a], s[b])
                elif raw[a] == raw[b] and counts[a] > counts[b]:
                    assert s[a] > s[b]


def test_fallback_breaks_float64_rounding_ties_by_popularity():
    """Session-kNN sums in float64 that differ only by a rounding (0.1 + 0.2 against 0.3) are
    one float32 score: a tie ordered by popularity, not a gap of 1e-17 that lost the term."""
    r = sp.csr_matrix(np.array([[0, 0.1 + 0.2, 0.3, 0.3, 1.0, 0]], dtype=np.float64))
    counts = torch.tensor([0.0, 1.0, 9.0, 5.0, 2.0, 7.0])
    s = scores_with_fallback(r, counts, True)[0].numpy()
    assert s[4] > s[2] > s[3] > s[1] > s[5]  # 1.0; the three 0.3 by count 9 > 5 > 1; then none
