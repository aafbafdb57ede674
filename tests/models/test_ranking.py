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
