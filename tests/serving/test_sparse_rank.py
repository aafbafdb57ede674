"""Session-kNN models are served from their sparse scores (``engine == "index"``, the serving
index, and ``engine == "sparse"``, the model's NumPy path): the answer equals the ranking of the
dense score row (same masks: seen, exclude, restrict_to, index 0), scores bit for bit, ties
ordered by the lower index."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from tests.models.test_knn_fast import _log
from warmrec import SequenceDataset
from warmrec.models.knn import SKNN, VSKNN
from warmrec.models.rules import FallbackRanker, scores_with_fallback
from warmrec.serving.bundle import ModelBundle


@pytest.fixture(
    scope="module",
    params=[(True, "auto"), (False, "auto"), (True, "sparse"), (False, "sparse")],
    ids=["fallback-index", "no-fallback-index", "fallback-sparse", "no-fallback-sparse"],
)
def bundles(request, tmp_path_factory):
    fallback, engine = request.param
    data = SequenceDataset.from_frame(_log(0))
    path = tmp_path_factory.mktemp("knn") / "vsknn"
    VSKNN(k=6, sample_size=12, idf_weighting=0.4, pop_fallback=fallback).fit(data).save(path)
    return ModelBundle.load(path, engine=engine), ModelBundle.load(path, engine="eager")


def _reference(bundle, history, k, exclude_seen, exclude, restrict):
    """The dense row, masked as ``top_k`` masks it, ranked by (score desc, index asc)."""
    idx, _ = bundle.encode(history)
    row = bundle.score_matrix([idx])[0].numpy().astype(np.float64)
    ok = np.ones(len(row), dtype=bool)
    ok[0] = False
    if exclude_seen:
        ok[idx] = False
    if exclude:
        ok[bundle.encode(exclude)[0]] = False
    if restrict is not None:
        keep = np.zeros(len(row), dtype=bool)
        keep[bundle.encode(restrict)[0]] = True
        ok &= keep
    cand = np.flatnonzero(ok)
    best = cand[np.lexsort((cand, -row[cand]))][:k]
    return bundle.decode(best.tolist()), row[best].astype(np.float32).tolist()


CASES = [
    (10, False, None, None),
    (10, True, None, None),
    (1, True, None, None),
    (40, True, [3, 4, 5], None),  # more than the candidates: the fallback fills
    (5, False, [1, 2], list(range(1, 20))),
    (8, True, None, [2, 7, 9]),  # fewer allowed items than k
    (8, True, None, []),
    (100, False, None, None),  # the whole catalogue
]


@pytest.mark.parametrize(("k", "exclude_seen", "exclude", "restrict"), CASES)
def test_sparse_answer_equals_dense_ranking(bundles, k, exclude_seen, exclude, restrict):
    sparse, eager = bundles
    assert sparse.engine in ("index", "sparse") and eager.engine == "eager"
    rng = np.random.default_rng(k)
    for _ in range(25):
        hist = rng.integers(1, 31, size=int(rng.integers(1, 15))).tolist()
        got = sparse.recommend(
            hist, k, exclude_seen=exclude_seen, exclude=exclude, restrict_to=restrict
        )
        items, scores = _reference(sparse, hist, k, exclude_seen, exclude, restrict)
        assert got.items == items
        assert got.scores == scores
        dense = eager.recommend(
            hist, k, exclude_seen=exclude_seen, exclude=exclude, restrict_to=restrict
        )
        assert dense.scores == got.scores  # same values; tied items may come in another order


def test_unknown_ids_and_fallback_request_unchanged(bundles):
    sparse, eager = bundles
    a = sparse.recommend([999, 3, "x"], 5)
    assert a.unknown == [999, "x"]
    b = sparse.recommend([999], 5, fallback="popular")
    c = eager.recommend([999], 5, fallback="popular")
    assert b.fallback_used and (b.items, b.scores) == (c.items, c.scores)


def test_ranker_matches_dense_row_with_ties():
    """Many equal counts and equal scores: the ranker's order is (score desc, index asc)."""
    counts = torch.tensor([0, 5, 5, 1, 0, 5, 2, 2, 0, 1], dtype=torch.float32)
    import scipy.sparse as sp

    for fallback in (True, False):
        ranker = FallbackRanker(counts, fallback)
        for cols, vals in [([], []), ([3, 8], [0.5, 0.5]), ([1, 4, 9], [2.0, 0.25, 2.0])]:
            r = sp.csr_matrix(
                (
                    np.asarray(vals, dtype=np.float64),
                    np.asarray(cols, dtype=np.int64),
                    [0, len(cols)],
                ),
                shape=(1, 10),
            )
            row = scores_with_fallback(r, counts, fallback)[0].numpy()
            cand = np.arange(1, 10)
            want = cand[np.lexsort((cand, -row[cand]))]
            for k in (1, 3, 9, 20):
                s, i = ranker.top_k(r.indices, r.data, k)
                assert i.tolist() == want[:k].tolist()
                assert s.tolist() == row[want[:k]].tolist()


@pytest.mark.parametrize(("engine", "served"), [("auto", "index"), ("sparse", "sparse")])
def test_sknn_is_served_sparse_too(tmp_path, engine, served):
    data = SequenceDataset.from_frame(_log(1))
    SKNN(k=4, sample_size=10).fit(data).save(tmp_path / "m")
    b = ModelBundle.load(tmp_path / "m", engine=engine)
    assert b.engine == served
    items, scores = _reference(b, [3, 4], 10, True, None, None)
    got = b.recommend([3, 4], 10, exclude_seen=True)
    assert (got.items, got.scores) == (items, scores)


@pytest.mark.parametrize(
    ("name", "config"),
    [("markov", {}), ("sr", {}), ("ar", {"n_last": 3, "decay": 0.5}), ("itemknn", {})],
)
@pytest.mark.parametrize("fallback", [True, False])
def test_rule_models_are_served_sparse_with_the_dense_answer(tmp_path, name, config, fallback):
    from warmrec import get_model

    data = SequenceDataset.from_frame(_log(2))
    get_model(name, {**config, "pop_fallback": fallback}).fit(data).save(tmp_path / "m")
    sparse = ModelBundle.load(tmp_path / "m")
    eager = ModelBundle.load(tmp_path / "m", engine="eager")
    assert sparse.engine == "sparse" and eager.engine == "eager"
    rng = np.random.default_rng(3)
    for k, exclude_seen, exclude, restrict in CASES:
        for _ in range(10):
            hist = rng.integers(1, 31, size=int(rng.integers(1, 10))).tolist()
            got = sparse.recommend(
                hist, k, exclude_seen=exclude_seen, exclude=exclude, restrict_to=restrict
            )
            assert (got.items, got.scores) == _reference(
                sparse, hist, k, exclude_seen, exclude, restrict
            )
            dense = eager.recommend(
                hist, k, exclude_seen=exclude_seen, exclude=exclude, restrict_to=restrict
            )
            assert dense.scores == got.scores
            assert dense.popularity_filled == got.popularity_filled


def _chain_log() -> pl.DataFrame:
    """Sessions 1 -> 2 -> 3 (ten times) and a lone 4 and 5: Markov knows 1 -> 2 and 2 -> 3
    only, so after item 3 (or 4) it has no score of its own."""
    rows = [(s, i, float(10 * s + i)) for s in range(10) for i in (1, 2, 3)]
    rows += [(10, 4, 500.0), (11, 5, 600.0)]
    return pl.DataFrame(rows, schema=["session_id", "item_id", "timestamp"], orient="row")


@pytest.mark.parametrize("engine", ["auto", "eager"])
def test_the_popularity_fill_is_counted(tmp_path, engine):
    from warmrec.models.rules import Markov

    Markov().fit(SequenceDataset.from_frame(_chain_log())).save(tmp_path / "m")
    b = ModelBundle.load(tmp_path / "m", engine=engine)
    one = b.recommend([1], 4, exclude_seen=True)
    assert one.items[0] == 2 and one.popularity_filled == 3 and not one.fallback_used
    none = b.recommend([3], 4, exclude_seen=True)  # no transition leaves 3
    assert len(none.items) == 4 and none.popularity_filled == 4 and not none.fallback_used
    fb = b.recommend([99], 3, fallback="popular")
    assert fb.fallback_used and fb.popularity_filled == 3
    Markov(pop_fallback=False).fit(SequenceDataset.from_frame(_chain_log())).save(tmp_path / "n")
    raw = ModelBundle.load(tmp_path / "n", engine=engine).recommend([3], 4, exclude_seen=True)
    assert raw.popularity_filled == 0  # ties at 0: no popularity order was used


def test_ranker_matches_dense_row_on_random_rows():
    """Rows with close and equal scores (the tie step is the smallest gap, not the smallest
    score): the sparse ranker returns what the dense row ranks."""
    import scipy.sparse as sp

    rng = np.random.default_rng(1)
    n = 40
    counts = torch.from_numpy(rng.integers(0, 30, size=n).astype(np.float32))
    ranker = FallbackRanker(counts, True)
    for _ in range(100):
        cols = np.sort(rng.choice(np.arange(1, n), size=rng.integers(1, 15), replace=False))
        vals = rng.choice([0.5, 1.0, 1.001, 2.0, 9.0], size=len(cols)).astype(np.float32)
        r = sp.csr_matrix((vals, cols, [0, len(cols)]), shape=(1, n))
        row = scores_with_fallback(r, counts, True)[0].numpy()
        cand = np.arange(1, n)
        want = cand[np.lexsort((cand, -row[cand]))]
        for k in (1, 5, 39):
            s, i = ranker.top_k(r.indices, r.data, k)
            assert s.tolist() == row[want[:k]].tolist()
