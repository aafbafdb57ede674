"""Pop and SessionPop on hand-made sessions with known counts.

Sessions: s1 a b c | s2 b c d | s3 a c a d -> counts a 3, b 2, c 3, d 2 (a=1, b=2, c=3, d=4).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from warmrec import Batch, SequenceDataset
from warmrec.models.popularity import Pop, SessionPop

A, B, C, D = 1, 2, 3, 4


@pytest.fixture(scope="module")
def tiny() -> SequenceDataset:
    rows = [
        ("s1", "a", 1),
        ("s1", "b", 2),
        ("s1", "c", 3),
        ("s2", "b", 10),
        ("s2", "c", 11),
        ("s2", "d", 12),
        ("s3", "a", 20),
        ("s3", "c", 21),
        ("s3", "a", 22),
        ("s3", "d", 23),
    ]
    df = pl.DataFrame(rows, schema=["session_id", "item_id", "timestamp"], orient="row")
    return SequenceDataset.from_frame(df.with_columns(pl.col("timestamp").cast(pl.Float64)))


def batch(rows: list[list[int]]) -> Batch:
    width = max(1, max(len(r) for r in rows))
    mat = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        if r:
            mat[i, width - len(r) :] = r
    return Batch(torch.from_numpy(mat))


def test_pop_scores_are_training_counts(tiny):
    m = Pop().fit(tiny)
    s = m.score(batch([[A], [D, B], []]))
    assert s.shape == (3, 5)
    for row in s:
        assert row.tolist() == [0, 3, 2, 3, 2]
    assert m.recommend([["d"]], k=2)[0] in (["a", "c"], ["c", "a"])
    assert sorted(m.recommend([["d"]], k=4, exclude_seen=True)[0]) == ["a", "b", "c"]


def test_sessionpop_counts_history_then_popularity(tiny):
    m = SessionPop().fit(tiny)
    s = m.score(batch([[D, B, D], []]))
    # history counts d 2, b 1 plus global count / (max count + 1) = count / 4
    np.testing.assert_allclose(s[0].numpy(), [0, 0.75, 1.5, 0.75, 2.5])
    np.testing.assert_allclose(s[1].numpy(), [0, 0.75, 0.5, 0.75, 0.5])
    assert m.recommend([["d", "b", "d"]], k=2) == [["d", "b"]]


def test_sessionpop_respects_max_len(tiny):
    m = SessionPop(max_len=2).fit(tiny)
    assert m.history_len == 2
    # only the last two items (b, d) count
    np.testing.assert_allclose(
        m.score(batch([[D, B, D][-2:]]))[0].numpy(), [0, 0.75, 1.5, 0.75, 1.5]
    )
    assert m.recommend([["d", "d", "b", "c"]], k=2) == [["c", "b"]]
