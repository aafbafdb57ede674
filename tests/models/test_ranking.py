"""``top_k``: the masking step of every recommend path (padding, seen, excluded, restricted
items; NaN scores are no scores)."""

from __future__ import annotations

import numpy as np
import torch

from warmrec.models.ranking import top_k


def test_nan_scores_rank_below_every_finite_score():
    """``torch.topk`` puts NaN first: the items with finite scores were lost from the list
    (callers drop non-finite values) and the answer came back empty."""
    nan = float("nan")
    values, index = top_k(torch.tensor([[0.0, nan, nan, 1.0, 2.0, 3.0]]), 2)
    assert index.tolist() == [[5, 4]] and values.tolist() == [[3.0, 2.0]]
    values, index = top_k(torch.tensor([[0.0, nan, 1.0, nan]]), 3)
    assert index[0, 0].item() == 2 and not torch.isfinite(values[0, 1:]).any()


def test_padding_seen_excluded_and_restricted_items_are_masked():
    scores = torch.tensor([[9.0, 1.0, 2.0, 3.0, 4.0, 5.0]] * 2)
    _, index = top_k(scores.clone(), 3, seen=[np.array([5]), np.array([], dtype=np.int64)])
    assert index.tolist() == [[4, 3, 2], [5, 4, 3]]  # padding (9.0) never returned
    _, index = top_k(scores.clone(), 2, exclude=np.array([4]), restrict=np.array([1, 2, 4]))
    assert index.tolist() == [[2, 1], [2, 1]]


def test_ties_fall_to_the_lower_index_whatever_topk_does():
    """``torch.topk``'s order among equal scores is undefined: ``warmrec recommend`` (eager)
    and the service (sparse engine, lower index first) answered the same history with other
    items at a tie. Checked against a brute-force ranking (score down, index up)."""
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        x = torch.randint(0, 4, (3, 12), generator=g).float()
        _, index = top_k(x.clone(), 5)
        for r in range(3):
            want = sorted(range(1, 12), key=lambda j: (-x[r, j].item(), j))[:5]
            assert index[r].tolist() == want


def test_the_eager_and_sparse_engines_answer_alike_at_ties(tmp_path):
    from tests.conftest import cyclic_log
    from warmrec import SequenceDataset, get_model
    from warmrec.serving.bundle import ModelBundle

    data = SequenceDataset.from_frame(cyclic_log(n_sessions=30, n_items=40, length=4))
    path = get_model("markov").fit(data).save(tmp_path / "m")
    eager = ModelBundle.load(path, engine="eager")
    sparse = ModelBundle.load(path, engine="sparse")
    for first in range(1, 40, 3):
        history = eager.decode([first])
        a = eager.recommend(history, 15)
        b = sparse.recommend(history, 15)
        assert a.items == b.items and a.scores == b.scores
