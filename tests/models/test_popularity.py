"""Pop and SessionPop on hand-made sessions with known counts.

Sessions: s1 a b c | s2 b c d | s3 a c a d -> counts a 3, b 2, c 3, d 2 (a=1, b=2, c=3, d=4).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import hand_made, padded_batch
from warmrec import SequenceDataset
from warmrec.models.popularity import Pop, SessionPop

A, B, C, D = 1, 2, 3, 4


@pytest.fixture(scope="module")
def tiny() -> SequenceDataset:
    return hand_made()


def test_pop_scores_are_training_counts(tiny):
    m = Pop().fit(tiny)
    s = m.score(padded_batch([[A], [D, B], []]))
    assert s.shape == (3, 5)
    for row in s:
        assert row.tolist() == [0, 3, 2, 3, 2]
    assert m.recommend([["d"]], k=2)[0] in (["a", "c"], ["c", "a"])
    assert sorted(m.recommend([["d"]], k=4, exclude_seen=True)[0]) == ["a", "b", "c"]


def test_sessionpop_counts_history_then_popularity(tiny):
    m = SessionPop().fit(tiny)
    s = m.score(padded_batch([[D, B, D], []]))
    # history counts d 2, b 1 plus global count / (max count + 1) = count / 4
    np.testing.assert_allclose(s[0].numpy(), [0, 0.75, 1.5, 0.75, 2.5])
    np.testing.assert_allclose(s[1].numpy(), [0, 0.75, 0.5, 0.75, 0.5])
    assert m.recommend([["d", "b", "d"]], k=2) == [["d", "b"]]


def test_sessionpop_respects_max_len(tiny):
    m = SessionPop(max_len=2).fit(tiny)
    assert m.history_len == 2
    # only the last two items (b, d) count
    np.testing.assert_allclose(
        m.score(padded_batch([[D, B, D][-2:]]))[0].numpy(), [0, 0.75, 1.5, 0.75, 1.5]
    )
    assert m.recommend([["d", "d", "b", "c"]], k=2) == [["c", "b"]]


def test_sessionpop_reads_only_the_last_max_len_items_of_a_wider_batch(tiny):
    # a batch wider than max_len (a caller's own padding, a composite's wider window): the
    # items before the last max_len do not count, as in the kNN and neural models
    m = SessionPop(max_len=2).fit(tiny)
    wide = m.score(padded_batch([[A, A, A, B, D]]))[0].numpy()
    np.testing.assert_allclose(wide, m.score(padded_batch([[B, D]]))[0].numpy())
    np.testing.assert_allclose(wide, [0, 0.75, 1.5, 0.75, 1.5])
