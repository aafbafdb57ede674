"""Item-kNN, SKNN and V-SKNN: exact similarities on hand-made sessions, behaviour on cyclic data.

Sessions (vocabulary a=1, b=2, c=3, d=4; each session's last timestamp gives its recency):

    s1: a b c        (ends t=3)
    s2: b c d        (ends t=12)
    s3: a c a d      (ends t=23, the most recent)

As sets: s1 {a,b,c}, s2 {b,c,d}, s3 {a,c,d}; sessions holding each item: a 2, b 2, c 3, d 2.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from tests.conftest import cyclic_log, hand_made, raw_scores, session_frame
from warmrec import EvalSet, SequenceDataset, evaluate, get_model
from warmrec.errors import ConfigError
from warmrec.models.knn import SKNN, VSKNN, ItemKNN
from warmrec.models.weighting import distance_weight, position_weight

A, B, C, D = 1, 2, 3, 4
R6 = np.sqrt(6.0)


@pytest.fixture(scope="module")
def tiny() -> SequenceDataset:
    return hand_made()


def sym(pairs: dict[tuple[int, int], float]) -> np.ndarray:
    out = np.zeros((5, 5))
    for (i, j), v in pairs.items():
        out[i, j] = out[j, i] = v
    return out


@pytest.fixture(scope="module")
def cyclic_data() -> tuple[SequenceDataset, EvalSet]:
    train = SequenceDataset.from_frame(cyclic_log())
    return train, EvalSet.from_sessions(cyclic_log(n_sessions=40, seed=1), train.vocab)


# -- item-kNN ----------------------------------------------------------------------------------


def test_itemknn_plain_cosine(tiny):
    m = ItemKNN(lambda_=0.0, alpha=0.5, topk=0, pop_fallback=False).fit(tiny)
    # co-sessions: ab 1, ac 2, ad 1, bc 2, bd 1, cd 2; cosine = co / sqrt(supp_i * supp_j)
    want = sym(
        {(A, B): 0.5, (A, C): 2 / R6, (A, D): 0.5, (B, C): 2 / R6, (B, D): 0.5, (C, D): 2 / R6}
    )
    np.testing.assert_allclose(m.matrix.toarray(), want, rtol=1e-6)
    np.testing.assert_allclose(raw_scores(m, [[D, A]])[0], want[A], rtol=1e-6)


def test_itemknn_lambda_and_alpha(tiny):
    m = ItemKNN(lambda_=1.0, alpha=0.5, topk=0, pop_fallback=False).fit(tiny)
    assert m.matrix[A, B] == pytest.approx(1 / 3)  # 1 / sqrt(3 * 3)
    assert m.matrix[A, C] == pytest.approx(2 / np.sqrt(12))  # 2 / sqrt(3 * 4)
    asym = ItemKNN(lambda_=0.0, alpha=1.0, topk=0, pop_fallback=False).fit(tiny)
    # alpha = 1: co / supp_i -- from a: b 1/2, c 2/2, d 1/2; from c: a, b, d all 2/3
    np.testing.assert_allclose(asym.matrix.toarray()[A], [0, 0, 0.5, 1.0, 0.5], rtol=1e-6)
    np.testing.assert_allclose(asym.matrix.toarray()[C], [0, 2 / 3, 2 / 3, 0, 2 / 3], rtol=1e-6)


def test_itemknn_event_counts(tiny):
    """binary=False is Hidasi et al.'s item-kNN code: for every event of item i, each item of
    its session counts once (``iarray[items_of_session] += 1``), supports count events. s3
    (a c a d) holds a twice: from a, c and d count twice there; from c or d, a counts once
    (the old code counted a's two events from c too: C symmetric, c -> a = 1)."""
    m = ItemKNN(lambda_=0.0, binary=False, topk=0, pop_fallback=False).fit(tiny)
    # events of i whose session holds j -- from a: b 1, c 1 + 2, d 2; from b: a 1, c 2, d 1;
    # from c: a 1 + 1, b 2, d 2; from d: a 1, b 1, c 2; supports a 3, b 2, c 3, d 2
    want = np.zeros((5, 5))
    want[A, [B, C, D]] = [1 / R6, 3 / 3, 2 / R6]
    want[B, [A, C, D]] = [1 / R6, 2 / R6, 1 / 2]
    want[C, [A, B, D]] = [2 / 3, 2 / R6, 2 / R6]
    want[D, [A, B, C]] = [1 / R6, 1 / 2, 2 / R6]
    np.testing.assert_allclose(m.matrix.toarray(), want, rtol=1e-6)
    # a repeated candidate does not outweigh a second session: after i, j (in "i j j j") ranks
    # below k (in "i k" twice), as in the reference; the old counts put j first (3 vs 2)
    rows = [("s1", "i", 1), ("s1", "j", 2), ("s1", "j", 3), ("s1", "j", 4)]
    rows += [(f"s{n}", x, 10 * n + t) for n in (2, 3) for t, x in enumerate(["i", "k"])]
    data = SequenceDataset.from_frame(session_frame(rows))
    i, j, k = data.vocab.encode(["i", "j", "k"]).tolist()
    s = raw_scores(ItemKNN(lambda_=0.0, binary=False, pop_fallback=False).fit(data), [[i]])[0]
    assert s[k] == pytest.approx(2 / np.sqrt(3 * 2)) and s[j] == pytest.approx(1 / 3)


def test_itemknn_topk(tiny):
    m = ItemKNN(lambda_=0.0, topk=1, pop_fallback=False).fit(tiny)
    dense = m.matrix.toarray()
    assert (dense > 0).sum(axis=1).tolist() == [0, 1, 1, 1, 1]
    assert dense[A].argmax() == C
    assert dense[C].argmax() == A  # a, b, d tie at 2/sqrt(6): the most popular, a, is kept


def test_itemknn_ranks_neighbours_of_the_cycle(cyclic_data):
    train, es = cyclic_data
    res = evaluate(get_model("itemknn").fit(train), es, ["hr@2"], exclude_seen=True)
    assert res["hr@2"] >= 0.95


# -- SKNN --------------------------------------------------------------------------------------


def test_sknn_cosine_neighbours(tiny):
    m = SKNN(k=3, sample_size=0, pop_fallback=False).fit(tiny)
    # history {a, b}: cos s1 = 2/sqrt(2*3), s2 = s3 = 1/sqrt(6)
    got = raw_scores(m, [[A, B], [D]])
    np.testing.assert_allclose(got[0], [0, 3 / R6, 3 / R6, 4 / R6, 2 / R6], rtol=1e-6)
    # history {d}: s2 and s3, each 1/sqrt(3)
    r3 = 1 / np.sqrt(3)
    np.testing.assert_allclose(got[1], [0, r3, r3, 2 * r3, 2 * r3], rtol=1e-6)


def test_sknn_k_keeps_most_similar_then_most_recent(tiny):
    one = SKNN(k=1, sample_size=0, pop_fallback=False).fit(tiny)
    np.testing.assert_allclose(
        raw_scores(one, [[A, B]])[0], [0, 2 / R6, 2 / R6, 2 / R6, 0], rtol=1e-6
    )
    two = SKNN(k=2, sample_size=0, pop_fallback=False).fit(tiny)  # s1, then s3 (ties s2, newer)
    np.testing.assert_allclose(
        raw_scores(two, [[A, B]])[0], [0, 3 / R6, 2 / R6, 3 / R6, 1 / R6], rtol=1e-6
    )


def test_sknn_sample_takes_most_recent_sessions(tiny):
    m = SKNN(k=3, sample_size=1, pop_fallback=False).fit(tiny)
    # all three sessions share an item with {a, b}; the most recent is s3 = {a, c, d}
    np.testing.assert_allclose(
        raw_scores(m, [[A, B]])[0], [0, 1 / R6, 0, 1 / R6, 1 / R6], rtol=1e-6
    )


def test_sknn_recency_is_the_last_event():
    # "long" starts first but ends last, so it is the most recent session
    data = SequenceDataset.from_frame(
        session_frame(
            [
                ("long", "x", 0),
                ("long", "y", 100),
                ("short", "x", 10),
                ("short", "z", 20),
            ]
        )
    )
    m = SKNN(k=1, sample_size=1, pop_fallback=False).fit(data)
    assert m.recommend([["x"]], k=1, exclude_seen=True) == [["y"]]


def test_sknn_finds_cycle_neighbours(cyclic_data):
    train, es = cyclic_data
    res = evaluate(get_model("sknn").fit(train), es, ["hr@3"], exclude_seen=True)
    assert res["hr@3"] >= 0.9


# -- V-SKNN ------------------------------------------------------------------------------------


def test_vsknn_position_weights_and_decay(tiny):
    m = VSKNN(k=3, sample_size=0, pop_fallback=False).fit(tiny)
    # history [a, b]: weights a 1/2, b 1; sim = dot / 2 distinct items:
    # s1 (a, b) 0.75, s2 (b) 0.5, s3 (a) 0.25; decay 1/step: s3 shares only a (step 2) -> 0.125
    np.testing.assert_allclose(
        raw_scores(m, [[A, B]])[0], [0, 0.875, 1.25, 1.375, 0.625], rtol=1e-6
    )
    flat = VSKNN(k=3, sample_size=0, decay="same", pop_fallback=False).fit(tiny)
    np.testing.assert_allclose(raw_scores(flat, [[A, B]])[0], [0, 1.0, 1.25, 1.5, 0.75], rtol=1e-6)


def test_vsknn_repeated_item_keeps_last_position(tiny):
    m = VSKNN(k=3, sample_size=0, pop_fallback=False).fit(tiny)
    # [a, b, a]: a weighs 3/3, b 2/3; 2 distinct items: s1 5/6, s2 1/3, s3 1/2;
    # decay: s2 shares only b (step 2) -> 1/6
    np.testing.assert_allclose(
        raw_scores(m, [[A, B, A]])[0], [0, 4 / 3, 1.0, 1.5, 2 / 3], rtol=1e-6
    )


def test_vsknn_idf(tiny):
    m = VSKNN(k=3, sample_size=0, idf_weighting=1.0, pop_fallback=False).fit(tiny)
    f = 1 + np.log(3 / 2)  # idf of a, b, d; c is in every session (idf 0)
    np.testing.assert_allclose(
        raw_scores(m, [[A, B]])[0], [0, 0.875 * f, 1.25 * f, 1.375, 0.625 * f], rtol=1e-6
    )


def test_vsknn_uses_order_where_sknn_cannot(cyclic_data):
    """SKNN sees a set: on the cycle the item before the history and the one after tie. V-SKNN's
    recency weights break the tie toward the next item once the history has a direction."""
    train, es = cyclic_data
    sk = evaluate(get_model("sknn").fit(train), es, ["hr@1"], exclude_seen=True)
    vs_model = get_model("vsknn").fit(train)
    vs = evaluate(vs_model, es, ["hr@1"], exclude_seen=True)
    assert vs["hr@1"] >= sk["hr@1"] + 0.1
    longer = np.nonzero(es.ends - es.starts >= 4)[0]
    assert evaluate(vs_model, es.subset(longer), ["hr@1"], exclude_seen=True)["hr@1"] >= 0.95


@pytest.mark.parametrize(
    ("name", "cfg"),
    [
        ("sknn", {"k": 0}),
        ("sknn", {"sample_size": -1}),
        ("vsknn", {"weighting": "cubic"}),
        ("vsknn", {"decay": "fast"}),
        ("vsknn", {"idf_weighting": -1.0}),
        ("vsknn", {"max_len": 0}),
        ("itemknn", {"alpha": 1.5}),
        ("itemknn", {"lambda_": -1.0}),
    ],
)
def test_bad_config_values(name, cfg):
    with pytest.raises(ConfigError, match=next(iter(cfg))):
        get_model(name, cfg)


def test_sknn_window_is_max_len(tiny):
    short = SKNN(k=3, sample_size=0, max_len=1, pop_fallback=False).fit(tiny)
    full = SKNN(k=3, sample_size=0, pop_fallback=False).fit(tiny)
    np.testing.assert_allclose(raw_scores(short, [[A, B, D]]), raw_scores(full, [[D]]))


# -- against a direct, loop-based reading of the definitions ------------------------------------


def _random_log(seed: int) -> tuple[pl.DataFrame, list[list[int]], np.ndarray]:
    """Overlapping sessions (so first-event order != last-event order) over items 1..25."""
    rng = np.random.default_rng(seed)
    rows, sessions, last = [], [], []
    for s in range(60):
        n = int(rng.integers(2, 7))
        items = rng.integers(1, 26, size=n).tolist()
        t0 = float(rng.integers(0, 1000))
        times = t0 + np.cumsum(rng.integers(1, 300, size=n))
        rows += [(s, it, float(t)) for it, t in zip(items, times)]
        sessions.append(items)
        last.append(times[-1])
    df = pl.DataFrame(rows, schema=["session_id", "item_id", "timestamp"], orient="row")
    return df, sessions, np.asarray(last)


def _reference(
    sessions,
    last,
    hist,
    *,
    k,
    sample_size,
    cosine,
    weighting="same",
    decay="same",
    idf_w=0.0,
    n_items=26,
):
    sets = [set(s) for s in sessions]
    m = len(hist)
    pos_w = {
        it: position_weight(np.array([p]), np.array([m]), weighting)[0]
        for p, it in enumerate(hist, 1)
    }  # a later position overwrites an earlier one
    qset = set(hist)
    recency = sorted(range(len(sets)), key=lambda i: last[i])  # oldest first (stable)
    rank = {s: r for r, s in enumerate(recency)}
    cand = sorted((i for i in range(len(sets)) if sets[i] & qset), key=lambda i: -rank[i])
    if sample_size:
        cand = cand[:sample_size]
    sims = []
    for i in cand:
        inter = sets[i] & qset
        if cosine:
            sim = len(inter) / np.sqrt(len(qset) * len(sets[i]))
        else:
            sim = sum(pos_w[x] for x in inter) / len(pos_w)
        if sim > 0:
            sims.append((sim, i))
    sims.sort(key=lambda t: (-t[0], -rank[t[1]]))
    df = np.bincount([x for s in sets for x in s], minlength=n_items)
    idf = np.log(len(sets) / np.maximum(df, 1))
    out = np.zeros(n_items)
    for sim, i in sims[:k]:
        step = next(j for j, it in enumerate(reversed(hist), 1) if it in sets[i])
        w = sim * distance_weight(np.array([step]), decay)[0]
        for x in sets[i]:
            out[x] += w * (1.0 + idf_w * idf[x])
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_sknn_matches_reference(seed):
    df, sessions, last = _random_log(seed)
    data = SequenceDataset.from_frame(df)
    assert data.vocab.ids.to_list() == list(range(1, 26))  # raw id == index
    rng = np.random.default_rng(100 + seed)
    hists = [rng.integers(1, 26, size=int(rng.integers(1, 9))).tolist() for _ in range(25)]
    m = SKNN(k=5, sample_size=12, pop_fallback=False).fit(data)
    got = raw_scores(m, hists)
    for h, row in zip(hists, got):
        ref = _reference(sessions, last, h, k=5, sample_size=12, cosine=True)
        np.testing.assert_allclose(row, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("weighting", "decay"), [("div", "div"), ("linear", "quadratic"), ("log", "linear")]
)
def test_vsknn_matches_reference(weighting, decay):
    df, sessions, last = _random_log(3)
    data = SequenceDataset.from_frame(df)
    rng = np.random.default_rng(7)
    hists = [rng.integers(1, 26, size=int(rng.integers(1, 9))).tolist() for _ in range(25)]
    m = VSKNN(
        k=1000,
        sample_size=15,
        weighting=weighting,
        decay=decay,
        idf_weighting=0.5,
        pop_fallback=False,
    ).fit(data)
    got = raw_scores(m, hists)
    for h, row in zip(hists, got):
        ref = _reference(
            sessions,
            last,
            h,
            k=1000,
            sample_size=15,
            cosine=False,
            weighting=weighting,
            decay=decay,
            idf_w=0.5,
        )
        np.testing.assert_allclose(row, ref, rtol=1e-5, atol=1e-6)
