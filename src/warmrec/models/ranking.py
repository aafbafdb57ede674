"""Top-k with exclusions: the one masking step of every recommend path.

:meth:`warmrec.models.base.Recommender.recommend` (the Python API), the serving bundle
(:class:`warmrec.serving.bundle.ModelBundle`, behind ``POST /recommend`` and ``warmrec
recommend``) and batch prediction (``warmrec predict``) all rank through :func:`top_k`; raw ids
are read by :meth:`warmrec.data.vocab.ItemVocab.index_of`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def top_k(
    scores: torch.Tensor,
    k: int,
    *,
    seen: Sequence[np.ndarray] | None = None,
    exclude: np.ndarray | None = None,
    restrict: np.ndarray | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` (values, indices) of each row of ``scores`` ``[B, n_items]`` (modified in place).

    Column 0 (padding) is never returned; ``seen[i]`` (indices) are masked in row ``i``;
    ``exclude`` in every row; with ``restrict`` only those indices may be returned. Masked
    entries and NaN scores are ``-inf``; callers drop non-finite values (a row can have fewer
    than ``k``)."""
    with torch.inference_mode():  # scores may be inference tensors: mask them in the mode
        # a NaN score is no score (topk would rank it above every finite one), as in evaluate()
        scores.nan_to_num_(nan=-torch.inf, posinf=torch.inf, neginf=-torch.inf)
        scores[:, 0] = -torch.inf
        if restrict is not None:
            keep = torch.zeros(scores.shape[1], dtype=torch.bool)
            keep[torch.from_numpy(np.asarray(restrict, dtype=np.int64))] = True
            keep[0] = False
            scores[:, ~keep] = -torch.inf
        if seen is not None:
            lens = [len(s) for s in seen]
            if sum(lens):
                rows = np.repeat(np.arange(len(seen)), lens)
                cols = np.concatenate([np.asarray(s, dtype=np.int64) for s in seen])
                scores[torch.from_numpy(rows), torch.from_numpy(cols)] = -torch.inf
                scores[:, 0] = -torch.inf
        if exclude is not None and len(exclude):
            scores[:, torch.from_numpy(np.asarray(exclude, dtype=np.int64))] = -torch.inf
        k = max(0, min(k, scores.shape[1] - 1))
        return _top_ties_by_index(scores, k)


def _top_ties_by_index(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.topk`` with ties broken by the lower index (as the service's sparse and index
    engines break them): topk's order among equal scores is undefined, so ``recommend`` and
    the service answered the same history with different items at a tie. The items above
    each row's k-th score, then the lowest-indexed of those equal to it, sorted by score (one
    more pass over the scores; the rows whose k-th score is tied beyond the list take two)."""
    vals, cols = torch.topk(scores, k, dim=1)
    if k == 0 or scores.shape[0] == 0:
        return vals, cols
    kth = vals[:, -1:]
    # the k-th score also held by items outside the list: which of them is kept is topk's
    # (undefined) choice there
    if scores.is_cpu:  # NumPy counts along a row several times faster than torch here
        a, t = scores.numpy(), kth.numpy()
        n_tied = torch.from_numpy(np.count_nonzero(a == t, axis=1))
    else:
        n_tied = (scores == kth).sum(dim=1)
    tied_out = n_tied > (vals == kth).sum(dim=1)
    if bool(tied_out.any()):
        rows = tied_out.nonzero()[:, 0]
        sub, sub_kth = scores[rows], kth[rows]
        tied = sub == sub_kth
        room = k - (sub > sub_kth).sum(dim=1, keepdim=True)
        keep = (sub > sub_kth) | (tied & (tied.cumsum(dim=1) <= room))
        cols[rows] = keep.nonzero()[:, 1].view(len(rows), k)
    cols = torch.sort(cols, dim=1).values  # ascending index, then by score (stable)
    vals = scores.gather(1, cols)
    order = torch.sort(vals, dim=1, descending=True, stable=True).indices
    return vals.gather(1, order), cols.gather(1, order)
