"""The fast session-kNN scoring (item -> recent sessions index, candidate items only) gives
bit-identical scores to the previous whole-catalogue sparse products (``knn_legacy``), ties
included, on random logs with many tied similarities, for every weighting and decay."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from tests.conftest import padded_batch
from tests.models.knn_legacy import Legacy
from warmrec import SequenceDataset
from warmrec.models import knn
from warmrec.models.knn import SKNN, VSKNN
from warmrec.models.weighting import WEIGHTINGS


def _log(seed: int, n_sessions: int = 300, n_items: int = 30) -> pl.DataFrame:
    """Overlapping sessions of 1-12 events (repeats allowed) over few items: many candidate
    sessions per item and many equal similarities."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_sessions):
        n = int(rng.integers(1, 13))
        t0 = float(rng.integers(0, 5000))
        times = t0 + np.cumsum(rng.integers(1, 50, size=n))
        for it, t in zip(rng.integers(1, n_items + 1, size=n), times):
            rows.append((s, int(it), float(t)))
    return pl.DataFrame(rows, schema=["session_id", "item_id", "timestamp"], orient="row")


def _histories(seed: int, n: int = 60, n_items: int = 32) -> list[list[int]]:
    """Histories of 0-20 items (ids beyond the vocabulary become padding-free unknowns are
    not possible here: indices only), repeats included."""
    rng = np.random.default_rng(seed)
    return [rng.integers(1, n_items - 1, size=int(rng.integers(0, 21))).tolist() for _ in range(n)]


@pytest.fixture(scope="module")
def data() -> SequenceDataset:
    return SequenceDataset.from_frame(_log(0))


def _same(model, hists: list[list[int]]) -> None:
    batch = padded_batch(hists)
    want = Legacy(model).score(batch.items.numpy())
    got = model.score(batch)
    assert torch.equal(got, want)
    for h in hists[:10]:  # one history at a time, as the service asks
        one = padded_batch([h])
        assert torch.equal(model.score(one), Legacy(model).score(one.items.numpy()))


CONFIGS = [
    (SKNN, {"k": 5, "sample_size": 20}),
    (SKNN, {"k": 100, "sample_size": 0, "max_len": 8}),
    (SKNN, {"k": 3, "sample_size": 7, "pop_fallback": False}),
    *[
        (VSKNN, {"k": 4, "sample_size": 15, "weighting": w, "decay": d, "max_len": 12})
        for w in WEIGHTINGS
        for d in WEIGHTINGS
    ],
    (VSKNN, {"k": 50, "sample_size": 0, "idf_weighting": 1.5}),
    (VSKNN, {"k": 2, "sample_size": 5, "idf_weighting": 0.3, "pop_fallback": False}),
]


@pytest.mark.parametrize(("cls", "cfg"), CONFIGS)
def test_fast_scores_equal_legacy(data, cls, cfg):
    model = cls(**cfg).fit(data)
    _same(model, _histories(1))


@pytest.mark.parametrize("limit", [0, 1 << 30])
def test_sorted_and_dense_grouping_agree(data, monkeypatch, limit):
    """Both ways of adding overlaps and item scores (dense buffer, sort) and of looking up a
    neighbour's step (dense table, binary search) give the legacy scores."""
    monkeypatch.setattr(knn, "DENSE_GROUP_LIMIT", limit)
    monkeypatch.setattr(knn, "DENSE_GROUP_SPREAD", 1 << 30)
    model = VSKNN(k=6, sample_size=10, idf_weighting=0.5).fit(data)
    _same(model, _histories(2))


@pytest.mark.parametrize("limit", [0, 1 << 30])
def test_lookup_table_and_search_agree(monkeypatch, limit):
    monkeypatch.setattr(knn, "DENSE_GROUP_LIMIT", limit)
    monkeypatch.setattr(knn, "DENSE_GROUP_SPREAD", 1 << 30)
    keys = np.array([2, 5, 6, 11], dtype=np.int64)
    vals = np.array([7, 1, 3, 4], dtype=np.int64)
    at = np.array([0, 2, 3, 5, 6, 11, 12, 11, 2], dtype=np.int64)
    got = knn._lookup(keys, vals, at, 13, -1)
    np.testing.assert_array_equal(got, [-1, 7, -1, 1, 3, 4, -1, 4, 7])


@pytest.mark.parametrize("cls", [SKNN, VSKNN])
def test_long_sessions_batch_and_single(cls):
    """Few long sessions over a mid-size catalogue (the ml-100k shape: every candidate list
    long, neighbours of hundreds of items), batched and one at a time, on the default path."""
    rng = np.random.default_rng(5)
    rows = [
        (s, int(it), float(t))
        for s in range(60)
        for t, it in enumerate(
            rng.choice(np.arange(1, 201), size=int(rng.integers(20, 120)), replace=False)
        )
    ]
    data = SequenceDataset.from_frame(
        pl.DataFrame(rows, schema=["session_id", "item_id", "timestamp"], orient="row")
    )
    model = cls(k=10, sample_size=40).fit(data)
    hists = [rng.integers(1, 200, size=int(rng.integers(1, 60))).tolist() for _ in range(30)]
    _same(model, hists)


def test_sparse_scores_are_the_scores_before_the_fallback(data):
    model = VSKNN(k=6, sample_size=10).fit(data)
    batch = padded_batch(_histories(3, n=20))
    r = model.sparse_scores(batch)
    want = Legacy(model).sparse(batch.items.numpy())
    np.testing.assert_array_equal(r.toarray(), want.toarray())
    assert r.has_sorted_indices and (r.data > 0).all()


def test_empty_and_unknown_only_batches(data):
    model = VSKNN().fit(data)
    _same(model, [[], [], [0, 0]])
