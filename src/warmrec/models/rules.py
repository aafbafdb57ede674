"""Rule baselines: first-order Markov, association rules (AR) and sequential rules (SR).

All three learn a sparse item-to-item matrix ``W`` (``W[a, b]`` = strength of the rule
``a -> b``) in one pass of vectorised counting and score a batch with one sparse product
``Q @ W``, where ``Q`` holds the last history item (or, for AR, the last ``n_last`` items with a
decay). ``W`` is kept as a SciPy CSR matrix and saved as its ``indptr``/``indices``/``data``
arrays; no dense ``[n_items, n_items]`` matrix is ever built.

Rules follow the reference implementations of Ludewig & Jannach, "Evaluation of session-based
recommendation algorithms" (UMUAI 2018; session-rec): rules are counted over pairs of *events*
(an item repeated within a session pairs with itself, so repeat consumption can be recommended).

Popularity fallback (shared with :mod:`warmrec.models.knn`): where the rule scores tie -- most
visibly the items with no rule at all, or an empty history -- a small popularity term breaks the
tie, and only the tie. Row ``b`` gets ``s_b * count / (max_count + 1)`` added, with ``s_b`` half
the smallest step of that row's scores (the smallest positive score, or the smallest difference
between two distinct scores, whichever is smaller; 1 for a row without any), so the order of two
different rule scores never changes (a rounding to float32 may at worst make them equal), every
item with a rule ranks above every item without one, and tied items are ordered by training
popularity. ``pop_fallback=False`` returns the raw rule scores.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field

from warmrec.config import ConfigModel
from warmrec.data.dataset import Batch, EvalSet, SequenceDataset
from warmrec.models.base import Recommender
from warmrec.models.catalogue import NoEvidenceItems, pad
from warmrec.models.state import counts_from_state, csr_from_state, csr_state
from warmrec.models.weighting import WEIGHTINGS, Weighting, distance_weight
from warmrec.registry import register_model

# ---------------------------------------------------------------------------------------------
# shared sparse helpers (also used by knn.py)
# ---------------------------------------------------------------------------------------------


def event_sequence_ids(train: SequenceDataset) -> np.ndarray:
    """Sequence index of every training event (aligned with ``train.sequences.items``)."""
    seqs = train.sequences
    return np.repeat(np.arange(len(seqs), dtype=np.int64), seqs.lengths)


def session_item_matrix(
    train: SequenceDataset, binary: bool, row_of_seq: np.ndarray | None = None
) -> sp.csr_matrix:
    """``[n_sequences, n_items]`` CSR of item counts per sequence (or 0/1 with ``binary``).

    ``row_of_seq`` optionally renumbers the rows (sequence ``i`` goes to row ``row_of_seq[i]``).
    """
    seqs = train.sequences
    rows = event_sequence_ids(train)
    if row_of_seq is not None:
        rows = row_of_seq[rows]
    m = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, seqs.items)),
        shape=(len(seqs), train.n_items),
    )
    m.sum_duplicates()
    m.sort_indices()
    if binary:
        m.data[:] = 1.0
    return m


def prune_rows(m: sp.csr_matrix, k: int, tiebreak: np.ndarray | None = None) -> sp.csr_matrix:
    """Keep the ``k`` largest entries of every row (``k <= 0`` keeps all).

    Ties are broken by ``tiebreak[column]`` (higher first, e.g. popularity), then by the lower
    column index. Only rows longer than ``k`` are sorted.
    """
    if k <= 0 or m.nnz == 0:
        return m
    counts = np.diff(m.indptr)
    if counts.max() <= k:
        return m
    row_of = np.repeat(np.arange(m.shape[0], dtype=np.int64), counts)
    pos = np.nonzero((counts > k)[row_of])[0]  # entries of the rows to prune, row after row
    rows, cols = row_of[pos], m.indices[pos]
    tb = tiebreak[cols] if tiebreak is not None else np.zeros(len(pos))
    order = np.lexsort((cols, -tb, -m.data[pos], rows))
    long_counts = counts[counts > k]
    rank = np.arange(len(pos)) - np.repeat(np.cumsum(long_counts) - long_counts, long_counts)
    keep = np.ones(m.nnz, dtype=bool)
    keep[pos[order[rank >= k]]] = False
    indptr = np.zeros(m.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(row_of[keep], minlength=m.shape[0]), out=indptr[1:])
    return sp.csr_matrix((m.data[keep], m.indices[keep], indptr), shape=m.shape)


def _half_step(values: np.ndarray) -> float:
    """Half the smallest positive score or gap between two distinct scores of one row (1 for a
    row without a positive score)."""
    # the gaps of the float32 scores the rows are ranked by: two sums that differ only by a
    # float64 rounding are one float32 score (a tie to break), not a gap of 1e-17
    v = np.unique(np.asarray(values, dtype=np.float32).astype(np.float64))
    v = v[v > 0]
    if not len(v):
        return 1.0
    return 0.5 * float(min(v[0], np.diff(v).min()) if len(v) > 1 else v[0])


def tie_scale(r: sp.csr_matrix) -> np.ndarray:
    """:func:`_half_step` of every row of non-negative sparse ``r``, as float32: ``scale * pop``
    (``pop < 1``) stays below half of every gap between the row's scores."""
    b = r.shape[0]
    scale = np.ones(b, dtype=np.float64)
    if r.nnz:
        rows = np.repeat(np.arange(b, dtype=np.int64), np.diff(r.indptr))
        data = r.data.astype(np.float32).astype(np.float64)  # as ranked (see _half_step)
        order = np.lexsort((data, rows))
        d, rw = data[order], rows[order]
        d, rw = d[d > 0], rw[d > 0]
        if len(d):
            first = np.ones(len(d), dtype=bool)
            first[1:] = rw[1:] != rw[:-1]
            step = d.copy()  # a row's smallest value: its gap to 0
            gap = np.diff(d)
            later = ~first[1:]
            step[1:][later] = np.where(gap[later] > 0, gap[later], np.inf)
            heads = np.nonzero(first)[0]
            scale[rw[heads]] = 0.5 * np.minimum.reduceat(step, heads)
    return scale.astype(np.float32)


def scores_with_fallback(r: sp.csr_matrix, counts: torch.Tensor, fallback: bool) -> torch.Tensor:
    """Dense float32 ``[B, n_items]`` scores from sparse non-negative ``r`` plus the popularity
    fallback described in the module docstring (column 0 stays 0)."""
    r = r.tocsr()
    r.eliminate_zeros()
    b, n = r.shape
    if fallback:
        scale = tie_scale(r)
        pop = (counts.double() / (float(counts.max()) + 1.0)).float() if len(counts) else counts
        out = torch.outer(torch.from_numpy(scale), pop)
    else:
        out = torch.zeros(b, n, dtype=torch.float32)
    if r.nnz:
        rows = np.repeat(np.arange(b, dtype=np.int64), np.diff(r.indptr))
        flat = torch.from_numpy(rows * n + r.indices.astype(np.int64))
        out.view(-1)[flat] += torch.from_numpy(r.data.astype(np.float32))
    out[:, 0] = 0.0
    return out


class FallbackRanker:
    """The top-``k`` of one row of :func:`scores_with_fallback` without building the dense row.

    Given the row's sparse scores ``r`` (indices and positive values), the scores of the items
    ``r`` holds are computed exactly as the dense row has them (float32
    ``scale * pop + r``), and the best of the other items are read from a popularity order made
    once (``count`` descending, index ascending; without the fallback every other item scores 0
    and the order is the index). The answer is ordered by score descending, ties by the lower
    index, and equals the dense ranking up to the order of tied scores (``torch.topk`` leaves
    that unspecified). One approximation: two items with different counts whose scaled
    popularities round to the same float32 (counts above ~1.6e7) keep their popularity order.
    """

    def __init__(self, counts: torch.Tensor, fallback: bool) -> None:
        self.n = len(counts)
        self.fallback = fallback
        if fallback and self.n:
            self.pop = (counts.double() / (float(counts.max()) + 1.0)).float().numpy()
            self.order = np.argsort(-self.pop, kind="stable")
        else:
            self.pop = np.zeros(self.n, dtype=np.float32)
            self.order = np.arange(self.n, dtype=np.int64)
        self.rank = np.empty(self.n, dtype=np.int64)
        self.rank[self.order] = np.arange(self.n)
        self.pop_max = np.float32(self.pop.max()) if self.n else np.float32(0.0)

    def top_k(
        self,
        idx: np.ndarray,
        val: np.ndarray,
        k: int,
        *,
        blocked: np.ndarray | None = None,
        allowed: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(scores float32, indices)`` of the best ``k`` items of one row whose sparse scores
        are ``val`` at ``idx``; index 0 and ``blocked`` are never returned, and with ``allowed``
        only those indices are."""
        k = max(0, min(k, self.n - 1))
        none = (np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64))
        if k == 0:
            return none
        idx = np.asarray(idx, dtype=np.int64)
        scale = np.float32(_half_step(val)) if (self.fallback and len(val)) else np.float32(1.0)
        cand = val.astype(np.float32)
        if self.fallback:
            cand = scale * self.pop[idx] + cand
        blocked = None if blocked is None or not len(blocked) else np.asarray(blocked, np.int64)
        ok = idx > 0
        if blocked is not None:
            ok &= ~np.isin(idx, blocked)
        if allowed is not None:
            ok &= np.isin(idx, allowed)
        ci, cs = idx[ok], cand[ok]
        if len(ci) > k:  # keep the k best and everything tied with the k-th
            kth = np.partition(cs, len(cs) - k)[len(cs) - k]
            keep = cs >= kth
            ci, cs = ci[keep], cs[keep]
            # every other item scores at most scale * max(pop) (0 without the fallback)
            if kth > (scale * self.pop_max if self.fallback else 0.0):
                best = np.lexsort((ci, -cs))[:k]
                return cs[best], ci[best]
        mark = np.zeros(self.n, dtype=bool)  # per call: requests may run in threads
        mark[idx[(idx >= 0) & (idx < self.n)]] = True
        mark[0] = True
        if blocked is not None:
            mark[blocked[(blocked >= 0) & (blocked < self.n)]] = True
        if allowed is not None:
            pool = np.asarray(allowed, dtype=np.int64)
            pool = pool[(pool > 0) & (pool < self.n)]
            pool = np.unique(pool)
            pool = pool[np.argsort(self.rank[pool], kind="stable")]
            pool = pool[~mark[pool]][:k]
        else:
            pool = np.zeros(0, dtype=np.int64)
            start, step = 0, k + 1 + len(idx)
            while len(pool) < k and start < self.n:
                chunk = self.order[start : start + step]
                pool = np.concatenate([pool, chunk[~mark[chunk]]])
                start += step
                step *= 2
            pool = pool[:k]
        ps = scale * self.pop[pool] if self.fallback else np.zeros(len(pool), dtype=np.float32)
        all_i = np.concatenate([ci, pool])
        all_s = np.concatenate([cs, ps.astype(np.float32)])
        best = np.lexsort((all_i, -all_s))[:k]
        return all_s[best], all_i[best]


def last_items_query(
    items: np.ndarray, n_items: int, n_last: int = 1, decay: float = 1.0
) -> sp.csr_matrix:
    """``[B, n_items]`` CSR query from left-padded histories: the ``j``-th most recent of the last
    ``n_last`` items gets weight ``decay ** j`` (the last item 1); repeats add up."""
    b, width = items.shape
    n = max(min(n_last, width), 0)
    cols = items[:, width - n :]
    w = np.power(float(decay), np.arange(n - 1, -1, -1, dtype=np.float64)).astype(np.float32)
    mask = cols > 0
    rows = np.broadcast_to(np.arange(b)[:, None], cols.shape)
    q = sp.csr_matrix(
        (np.broadcast_to(w[None, :], cols.shape)[mask], (rows[mask], cols[mask])),
        shape=(b, n_items),
    )
    q.sum_duplicates()
    return q


class ItemToItemSettings(ConfigModel):
    """Settings every item-to-item model shares."""

    topk: int = Field(0, ge=0)
    """Strongest entries kept per row of the item-to-item matrix (0 = all)."""
    pop_fallback: bool = True
    """Rank items without any score by popularity (else they tie at 0)."""


class RecentItemsSettings(ConfigModel):
    """How the query is built from the last history items."""

    n_last: int = Field(1, ge=1)
    """How many recent history items query the matrix."""
    decay: float = Field(1.0, gt=0, le=1)
    """The ``j``-th most recent item weighs ``decay ** j``."""


# ---------------------------------------------------------------------------------------------
# item-to-item base
# ---------------------------------------------------------------------------------------------


class ItemToItemRecommender(NoEvidenceItems, Recommender):
    """Base of models that score with one sparse item-to-item matrix ``W`` from recent items.

    Subclasses implement :meth:`build_matrix` (training data -> CSR ``[n_items, n_items]``).
    Its config is an :class:`ItemToItemSettings` (``topk``, ``pop_fallback``), with
    :class:`RecentItemsSettings` (``n_last``, ``decay``) to query from several recent items.
    """

    def build_matrix(self, train: SequenceDataset) -> sp.csr_matrix:
        raise NotImplementedError

    @property
    def history_len(self) -> int:
        return max(50, self._recent()[0])

    def _recent(self) -> tuple[int, float]:
        c = self.config
        return (c.n_last, c.decay) if isinstance(c, RecentItemsSettings) else (1, 1.0)

    def fit(self, train: SequenceDataset, valid: EvalSet | None = None) -> ItemToItemRecommender:
        self._bind(train)
        counts = train.item_counts()
        w = self.build_matrix(train).tocsr().astype(np.float32)
        w.eliminate_zeros()
        w.sort_indices()
        w = prune_rows(w, self.config.topk, tiebreak=counts)
        self.counts = torch.from_numpy(counts.astype(np.float32))
        self.matrix = w
        return self

    def score(self, batch: Batch) -> torch.Tensor:
        return scores_with_fallback(
            self.sparse_scores(batch), self.counts, self.config.pop_fallback
        )

    def sparse_scores(self, batch: Batch) -> sp.csr_matrix:
        """The rule scores of a batch before the popularity fallback: ``Q @ W`` as a
        ``[B, n_items]`` CSR holding the positive score of every item a rule reaches;
        :meth:`score` is ``scores_with_fallback`` of it."""
        self._check_fitted()
        items = batch.items.detach().cpu().numpy()
        n_last, decay = self._recent()
        r = (last_items_query(items, self.n_items, n_last, decay) @ self.matrix).tocsr()
        r.eliminate_zeros()
        r.sort_indices()
        return r

    def candidate_scores(self, batch: Batch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`sparse_scores` as its CSR arrays ``(indptr, indices, data)``: the serving path
        ranks one history from them without a dense catalogue-wide row."""
        r = self.sparse_scores(batch)
        return r.indptr, r.indices, r.data

    def get_state(self) -> dict[str, Any]:
        return {"counts": self.counts, **csr_state("w", self.matrix)}

    def set_state(self, state: dict[str, torch.Tensor]) -> None:
        n = len(self.vocab)
        self.counts = counts_from_state(state, n)
        self.matrix = csr_from_state("w", state, (n, n))

    def _extend_items(self, n_new: int) -> None:
        # new items: empty rows and columns (no rule reaches or leaves them), count 0
        self.counts = pad(self.counts, n_new)
        n = len(self.vocab)
        m = self.matrix.tocsr()
        indptr = np.concatenate([m.indptr, np.full(n_new, m.indptr[-1], dtype=m.indptr.dtype)])
        self.matrix = sp.csr_matrix((m.data, m.indices, indptr), shape=(n, n))


# ---------------------------------------------------------------------------------------------
# Markov
# ---------------------------------------------------------------------------------------------


class MarkovConfig(ItemToItemSettings):
    """Markov chain settings (``topk``: transitions kept per item)."""


@register_model("markov")
class Markov(ItemToItemRecommender):
    """First-order Markov chain: ``score(b | history) = #transitions last_item -> b``.

    Counts consecutive pairs ``(x_t, x_{t+1})`` within each training sequence (self-transitions
    included); unnormalised counts rank exactly like the maximum-likelihood transition
    probabilities ``P(b | a)`` for a fixed ``a``.
    """

    Config = MarkovConfig

    def build_matrix(self, train: SequenceDataset) -> sp.csr_matrix:
        items = train.sequences.items
        seq = event_sequence_ids(train)
        same = seq[:-1] == seq[1:]
        n = train.n_items
        return sp.csr_matrix(
            (np.ones(int(same.sum()), dtype=np.float32), (items[:-1][same], items[1:][same])),
            shape=(n, n),
        )


# ---------------------------------------------------------------------------------------------
# Association rules
# ---------------------------------------------------------------------------------------------


class ARConfig(ItemToItemSettings, RecentItemsSettings):
    """Association-rule settings (``n_last`` recent items weighted ``decay ** j`` query the
    rules; ``topk``: rules kept per item)."""


@register_model("ar")
class AssociationRules(ItemToItemRecommender):
    """Association rules of size two: items that co-occur with the last item in sessions.

    Agrawal et al. 1993, as used for sessions by Ludewig & Jannach (2018): ``W[a, b]`` = number of pairs of events ``(a, b)`` at two different positions
    of the same sequence, order ignored (so ``W`` is symmetric).

    With per-sequence item counts ``S`` this is ``S^T S`` minus ``diag(item counts)`` (an item
    occurring ``c`` times pairs with itself ``c (c - 1)`` times). Scores come from the last item,
    or from the last ``n_last`` items with weights ``decay ** j``.
    """

    Config = ARConfig
    learns_sequences: ClassVar[bool] = False  # order-free co-occurrence

    def build_matrix(self, train: SequenceDataset) -> sp.csr_matrix:
        s = session_item_matrix(train, binary=False)
        c = (s.T @ s).tocsr()
        return c - sp.diags(np.asarray(s.sum(axis=0)).ravel(), format="csr")


# ---------------------------------------------------------------------------------------------
# Sequential rules
# ---------------------------------------------------------------------------------------------

SR_WEIGHTS = WEIGHTINGS


class SRConfig(ItemToItemSettings):
    """Sequential-rule settings."""

    steps: int = Field(10, ge=1)
    """Largest distance between the two events of a rule."""
    weighting: Weighting = "div"
    """Weight by distance ``d``: ``div`` 1/d, ``linear`` max(1 - 0.1 d, 0), ``same`` 1,
    ``quadratic`` 1/d^2, ``log`` 1/log10(d + 1.7)."""


@register_model("sr")
class SequentialRules(ItemToItemRecommender):
    """Sequential rules: items that follow the last item closely, weighted by distance.

    Ludewig & Jannach 2018, "Evaluation of session-based recommendation algorithms":
    ``W[a, b] = sum w(d)`` over every pair of events ``a`` then ``b`` that are
    ``d <= steps`` positions apart in the same sequence, ``a`` first. Scored from the last item.

    Like the reference implementation, ``a -> a`` rules from repeated items are kept; unlike it,
    ``linear`` weights are clipped at 0 instead of going negative for ``d > 10``.
    """

    Config = SRConfig

    def build_matrix(self, train: SequenceDataset) -> sp.csr_matrix:
        items = train.sequences.items
        seq = event_sequence_ids(train)
        n = train.n_items
        src, dst, wts = [], [], []
        for d in range(1, min(self.config.steps, max(len(items) - 1, 0)) + 1):
            same = seq[:-d] == seq[d:]
            src.append(items[:-d][same])
            dst.append(items[d:][same])
            wts.append(
                np.full(
                    int(same.sum()), distance_weight(d, self.config.weighting), dtype=np.float32
                )
            )
        if not src:
            return sp.csr_matrix((n, n), dtype=np.float32)
        return sp.csr_matrix(
            (np.concatenate(wts), (np.concatenate(src), np.concatenate(dst))), shape=(n, n)
        )
