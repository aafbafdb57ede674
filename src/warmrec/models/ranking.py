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
        return torch.topk(scores, k, dim=1)
