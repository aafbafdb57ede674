"""Nearest-neighbour baselines: item-kNN, session-kNN (SKNN) and vector-multiplication SKNN.

- :class:`ItemKNN` -- item-to-item cosine similarity on session co-occurrence, scored from the last
  item (the item-kNN baseline of Hidasi et al., "Session-based recommendations with recurrent
  neural networks", ICLR 2016). It shares the sparse item-to-item machinery of
  :mod:`warmrec.models.rules`.
- :class:`SKNN` -- session-based kNN (Jannach & Ludewig, "When recurrent neural networks meet the
  neighborhood for session-based recommendation", RecSys 2017).
- :class:`VSKNN` -- SKNN with position-weighted current sessions, neighbour decay and optional IDF
  weighting (Ludewig & Jannach, "Evaluation of session-based recommendation algorithms", UMUAI
  2018).

The session models keep the training sessions as a binary ``[n_sessions, n_items]`` CSR matrix
``X`` whose rows are ordered by each session's last timestamp (oldest first), and its transpose
as an index item -> sessions holding it (oldest first). Scoring a batch touches only what the
histories reach, never the whole catalogue or all sessions: for each distinct history item, the
``sample_size`` most recent sessions holding it (the most recent ``sample_size`` sessions sharing
any item are among these, with all their shared items, so their overlaps are exact); overlaps
summed per (history, session); the ``sample_size`` most recent candidates; the ``k`` most similar
of those are the neighbours (ties: the more recent); item scores are summed over the neighbours'
items only. All of it is vectorised over the batch (no Python loop over sessions or rows), and
the sums are added in the order of the sparse products ``Q @ X^T`` and ``N @ X`` that an earlier
version computed, so the scores are bit-identical to it (``tests/models/knn_legacy.py``).
:meth:`~_SessionKNNBase.sparse_scores` returns the scores before the popularity fallback of
:func:`warmrec.models.rules.scores_with_fallback` (which breaks ties among scores); serving ranks
one history from them (:class:`warmrec.models.rules.FallbackRanker`) without a dense row.

``save`` also writes the serving index of :mod:`warmrec.serving.index` (per item its most recent
sessions, per session its items, per item the IDF; memory-mapped ``.npy`` files), from which a
server computes the same candidate scores in a compiled kernel. The CSR matrix and its transpose
are made on first use, so a process that only serves from that index never builds them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field

from warmrec.data.dataset import Batch, EvalSet, SequenceDataset
from warmrec.models.base import Recommender
from warmrec.models.catalogue import NoEvidenceItems, pad
from warmrec.models.rules import (
    ItemToItemRecommender,
    ItemToItemSettings,
    scores_with_fallback,
    session_item_matrix,
)
from warmrec.models.settings import HistorySettings
from warmrec.models.state import counts_from_state, csr_from_state
from warmrec.models.weighting import WEIGHTINGS, Weighting, distance_weight, position_weight
from warmrec.registry import register_model

# ---------------------------------------------------------------------------------------------
# Item-kNN
# ---------------------------------------------------------------------------------------------


class ItemKNNConfig(ItemToItemSettings):
    """Item-kNN settings."""

    topk: int = Field(100, ge=0)
    """Neighbours kept per item (0 = all)."""
    lambda_: float = Field(20.0, ge=0)
    """Support regularisation (damps rare items)."""
    alpha: float = Field(0.5, ge=0, le=1)
    """Asymmetry of the cosine (0.5 = symmetric)."""
    binary: bool = True
    """Count a session once per item (True) or, as Hidasi et al.'s code (False), once per event
    of the scoring item, with supports counting events (see :class:`ItemKNN`)."""


@register_model("itemknn")
class ItemKNN(ItemToItemRecommender):
    """Item-kNN (Hidasi et al. 2016 baseline): items scored by their similarity to the last item.

    The score of item ``j`` given last item ``i`` is

    ``sim(i, j) = C[i, j] / ((supp_i + lambda_) ** alpha * (supp_j + lambda_) ** (1 - alpha))``

    where ``C[i, j]`` counts the sessions holding both items (``i != j``) and ``supp`` the
    sessions holding each item. ``lambda_ = 0, alpha = 0.5`` is the plain cosine of binary
    session vectors; ``lambda_`` damps rare items; ``alpha`` makes it asymmetric. Only the
    ``topk`` most similar items per item are kept. With ``binary=False`` (Hidasi et al.'s code)
    ``supp`` counts events and ``C[i, j]`` the events of ``i`` whose session holds ``j``: ``j``
    counts once per session however often it occurs there, so ``C`` is not symmetric.
    """

    Config = ItemKNNConfig
    learns_sequences: ClassVar[bool] = False  # order-free co-occurrence

    def build_matrix(self, train: SequenceDataset) -> sp.csr_matrix:
        s = session_item_matrix(train, binary=self.config.binary)
        # binary=False: row i adds, for every event of i, the items of its session once each
        # (Hidasi et al.'s code): counts of i times presence of j, not counts times counts
        c = s.T @ (s if self.config.binary else session_item_matrix(train, binary=True))
        c = c.tocsr().astype(np.float64)
        c = (c - sp.diags(c.diagonal(), format="csr")).tocsr()  # no self-similarity
        c.eliminate_zeros()
        supp = np.asarray(s.sum(axis=0), dtype=np.float64).ravel() + self.config.lambda_
        rows = np.repeat(np.arange(c.shape[0]), np.diff(c.indptr))
        a = self.config.alpha
        norm = np.power(supp[rows], a) * np.power(supp[c.indices], 1.0 - a)
        c.data = c.data / np.where(norm > 0, norm, 1.0)
        return c


# ---------------------------------------------------------------------------------------------
# Session-kNN
# ---------------------------------------------------------------------------------------------

POSITION_WEIGHTS = WEIGHTINGS
NEIGHBOUR_DECAYS = WEIGHTINGS


class SKNNConfig(HistorySettings):
    """Session-kNN settings; ``max_len``: recent history items forming the current session."""

    k: int = Field(100, ge=1)
    """Neighbour sessions."""
    sample_size: int = Field(500, ge=0)
    """Candidate sessions per history: the most recent ones sharing an item (0 = all)."""
    pop_fallback: bool = True
    """Rank items without any score by popularity."""


class _SessionKNNBase(NoEvidenceItems, Recommender):
    """Shared fit/state/neighbour search of SKNN and V-SKNN (see the module docstring)."""

    learns_sequences: ClassVar[bool] = False

    # -- fit and state ----------------------------------------------------------------------
    def fit(self, train: SequenceDataset, valid: EvalSet | None = None) -> _SessionKNNBase:
        self._bind(train)
        seqs = train.sequences
        lens = seqs.lengths
        if seqs.timestamps is not None and len(seqs.timestamps):
            last = np.where(lens > 0, seqs.timestamps[np.maximum(seqs.offsets[1:] - 1, 0)], -np.inf)
        else:
            last = np.arange(len(seqs), dtype=np.float64)
        order = np.argsort(last, kind="stable")  # oldest first
        row_of_seq = np.empty(len(seqs), dtype=np.int64)
        row_of_seq[order] = np.arange(len(seqs))
        x = session_item_matrix(train, binary=True, row_of_seq=row_of_seq)
        x = x[np.diff(x.indptr) > 0]  # no empty sessions
        self.counts = torch.from_numpy(train.item_counts().astype(np.float32))
        self._set_sessions(x.indptr.astype(np.int64), x.indices.astype(np.int64))
        self._x = x
        return self

    def _set_sessions(self, indptr: np.ndarray, indices: np.ndarray) -> None:
        n_items = len(self.vocab)
        n_sess = len(indptr) - 1
        self._sess_ptr = np.asarray(indptr, dtype=np.int64)
        self._sess_items = np.asarray(indices, dtype=np.int64)
        self._sess_len = np.diff(self._sess_ptr).astype(np.float64)
        df = np.bincount(self._sess_items, minlength=n_items).astype(np.float64)
        self._idf = np.where(df > 0, np.log(max(n_sess, 1) / np.maximum(df, 1.0)), 0.0)
        # made on first use: a server answering from :mod:`warmrec.serving.index` never needs them
        self._x: sp.csr_matrix | None = None
        self._by_item: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def sessions(self) -> sp.csr_matrix:
        """The binary ``[n_sessions, n_items]`` CSR, rows oldest first (see the module docstring)."""
        if self.__dict__.get("_x") is None:
            n_sess, nnz = len(self._sess_ptr) - 1, len(self._sess_items)
            self._x = sp.csr_matrix(
                (np.ones(nnz, dtype=np.float32), self._sess_items, self._sess_ptr),
                shape=(n_sess, len(self.vocab)),
            )
        return self._x

    def _item_index(self) -> tuple[np.ndarray, np.ndarray]:
        """The index item -> sessions holding it, oldest first (rows are in recency order), as
        ``(indptr, sessions)``; made on first use."""
        if self.__dict__.get("_by_item") is None:
            xt = self.sessions.T.tocsr()
            xt.sort_indices()
            self._by_item = (xt.indptr.astype(np.int64), xt.indices.astype(np.int64))
        return self._by_item

    def save(self, path: str | Path) -> Path:
        """Write the model directory with its serving index (:mod:`warmrec.serving.index`,
        plain ``.npy`` arrays in ``knn_index/``), in one atomic write."""
        from warmrec.artifacts import save_model
        from warmrec.serving.index import INDEX_DIR, write_index

        return save_model(self, path, extra=lambda tmp: write_index(self, tmp / INDEX_DIR))

    def get_state(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "sessions_indptr": self._sess_ptr,
            "sessions_indices": self._sess_items,
        }

    def set_state(self, state: dict[str, torch.Tensor]) -> None:
        n = len(self.vocab)
        self.counts = counts_from_state(state, n)
        ptr = state["sessions_indptr"].numpy().astype(np.int64, copy=False)
        items = state["sessions_indices"].numpy().astype(np.int64, copy=False)
        # checked as a CSR of [sessions, items]: an id out of range was read (and written)
        # out of bounds by the scoring kernels, a crash of the serving process
        n_sess = max(len(ptr) - 1, 0)
        csr_from_state(
            "sessions",
            {"sessions_data": torch.ones(len(items)), "sessions_indices": torch.from_numpy(items),
             "sessions_indptr": torch.from_numpy(ptr)},
            (n_sess, n),
        )  # fmt: skip
        self._set_sessions(ptr, items)

    def _extend_items(self, n_new: int) -> None:
        # new items: in no training session (IDF 0, no neighbour holds them), count 0
        self.counts = pad(self.counts, n_new)
        self._set_sessions(self._sess_ptr, self._sess_items)

    # -- scoring ------------------------------------------------------------------------------
    def score(self, batch: Batch) -> torch.Tensor:
        """Dense ``[B, n_items]`` scores: :meth:`sparse_scores` plus the popularity fallback."""
        return self._finish(self.sparse_scores(batch))

    def sparse_scores(self, batch: Batch) -> sp.csr_matrix:
        """The neighbourhood scores of a batch before the popularity fallback: a ``[B, n_items]``
        CSR (sorted indices) holding the positive score of every item some neighbour holds;
        :meth:`score` is ``scores_with_fallback`` of it."""
        indptr, indices, data = self.candidate_scores(batch)
        return sp.csr_matrix((data, indices, indptr), shape=(len(indptr) - 1, len(self.vocab)))

    def candidate_scores(self, batch: Batch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`sparse_scores` as its CSR arrays ``(indptr, indices, data)``, without building
        the SciPy matrix (the serving path: its construction costs more than a row's ranking)."""
        self._check_fitted()
        hist = batch.items.detach().cpu().numpy()[:, -self.config.max_len :]
        return self._scores_of(np.ascontiguousarray(hist, dtype=np.int64))

    def _scores_of(
        self, hist: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _query(self, hist: np.ndarray, weighting: str) -> _Query:
        """The current sessions of left-padded ``hist [B, W]``: per (row, distinct item), in
        (row, item) order, the weight of the item's last position and its step back (1 = the
        last column); and the distinct item count per row (zero-weight items included)."""
        b, width = hist.shape
        n_items = len(self.vocab)
        nz = hist > 0
        pos = np.cumsum(nz, axis=1)
        m = nz.sum(axis=1)
        rows, cols = np.nonzero(nz)
        w = position_weight(pos[rows, cols], m[rows], weighting)
        keys = rows * n_items + hist[rows, cols]
        order = np.argsort(keys, kind="stable")
        uniq, first = np.unique(keys[order], return_index=True)
        if len(first):
            wmax = np.maximum.reduceat(w[order], first)
            step = np.minimum.reduceat(width - cols[order], first)
        else:
            wmax, step = w[:0], cols[:0]
        urows = uniq // n_items
        n_distinct = np.bincount(urows, minlength=b).astype(np.float64)
        return _Query(
            b, width, uniq, urows, uniq % n_items, wmax, step.astype(np.int64), n_distinct
        )

    def _neighbours(self, q: _Query, sim_of) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Neighbours of each current session, ``(rows, sessions, similarities)`` ordered by
        (row, session): the ``sample_size`` most recent sessions sharing an item of positive
        weight, then the ``k`` most similar of them (ties: the more recent first).
        ``sim_of(rows, sessions, overlaps)`` -> similarities.

        Only the ``sample_size`` most recent sessions of each query item are read: the most
        recent ``sample_size`` sessions of the union are among them, with every item they
        share, so their overlaps are exact. Overlaps add the query weights in item order (as
        the sparse product ``Q @ X^T`` of the reference does)."""
        cfg = self.config
        keep = q.weight > 0
        rows, items, w = q.rows[keep], q.items[keep], q.weight[keep]
        item_ptr, item_sess = self._item_index()
        lo, hi = item_ptr[items], item_ptr[items + 1]
        if cfg.sample_size > 0:
            lo = np.maximum(lo, hi - cfg.sample_size)
        entry = _expand(lo, hi)
        owner = np.repeat(np.arange(len(lo)), hi - lo)
        n_sess = len(self._sess_ptr) - 1
        keys, overlap = _group_sum(rows[owner] * n_sess + item_sess[entry], w[owner], positive=True)
        rows, sess = keys // n_sess, keys % n_sess
        if cfg.sample_size > 0:  # keys are sorted: the right-most of a row are the most recent
            ends = np.searchsorted(rows, rows, side="right")
            recent = ends - np.arange(len(rows)) - 1 < cfg.sample_size
            rows, sess, overlap = rows[recent], sess[recent], overlap[recent]
        sim = sim_of(rows, sess, overlap)
        ok = sim > 0
        rows, sess, sim = rows[ok], sess[ok], sim[ok]
        order = np.lexsort((-sess, -sim, rows))  # by row, similarity desc, recency desc
        rows, sess, sim = rows[order], sess[order], sim[order]
        counts = np.bincount(rows, minlength=q.b)
        rank = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
        top = rank < cfg.k
        rows, sess, sim = rows[top], sess[top], sim[top]
        order = np.lexsort((sess, rows))
        return rows[order], sess[order], sim[order]

    def _item_scores(
        self,
        q: _Query,
        rows: np.ndarray,
        sess: np.ndarray,
        sim: np.ndarray,
        decay: str = "same",
        idf_weighting: float = 0.0,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CSR arrays ``(indptr, indices, data)`` of ``[B, n_items]``: ``sum over neighbours n holding i of sim(n) * decay(step(n))``
        (times the IDF factor), added in session order (as ``N @ X`` of the reference); exact
        zeros are dropped. ``step(n)``: how far back the most recent history item ``n`` holds."""
        n_items = len(self.vocab)
        b = q.b
        lo, hi = self._sess_ptr[sess], self._sess_ptr[sess + 1]
        cnt = hi - lo
        owner = np.repeat(np.arange(len(sess)), cnt)
        items = self._sess_items[_expand(lo, hi)]
        keys = rows[owner] * n_items + items
        if decay != "same" and len(keys) and len(q.keys):
            far = q.width + 1  # not reached (cannot happen: a neighbour shares an item)
            step_of = _lookup(q.keys, q.step, keys, b * n_items, far)
            step = np.full(len(sess), far, dtype=np.int64)
            held = cnt > 0
            step[held] = np.minimum.reduceat(step_of, (np.cumsum(cnt) - cnt)[held])
            step = np.where(step == far, q.width, step)
            sim = sim * distance_weight(np.maximum(step, 1), decay, key="decay")
        # zero sums are dropped below anyway: the dense buffer need not count key presence
        ukeys, r = _group_sum(keys, sim[owner], positive=True)
        if idf_weighting > 0 and len(r):
            r = r * (1.0 + idf_weighting * self._idf[ukeys % n_items])
        nz = r != 0
        ukeys, r = ukeys[nz], r[nz]
        urows = ukeys // n_items
        indptr = np.zeros(b + 1, dtype=np.int64)
        np.cumsum(np.bincount(urows, minlength=b), out=indptr[1:])
        return indptr, ukeys % n_items, r

    def _finish(self, r: sp.csr_matrix) -> torch.Tensor:
        return scores_with_fallback(r, self.counts, bool(self.config.pop_fallback))


class _Query:
    """The current sessions of a batch (see :meth:`_SessionKNNBase._query`)."""

    __slots__ = ("b", "width", "keys", "rows", "items", "weight", "step", "n_distinct")

    def __init__(self, b, width, keys, rows, items, weight, step, n_distinct) -> None:
        self.b, self.width, self.keys, self.rows, self.items = b, width, keys, rows, items
        self.weight, self.step, self.n_distinct = weight, step, n_distinct


def _expand(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The concatenated ranges ``lo[j]:hi[j]``."""
    cnt = hi - lo
    total = int(cnt.sum())
    if not total:
        return np.zeros(0, dtype=np.int64)
    starts = np.cumsum(cnt) - cnt
    return np.arange(total, dtype=np.int64) - np.repeat(starts - lo, cnt)


DENSE_GROUP_LIMIT = 1 << 20
"""Largest key range :func:`_group_sum` accumulates in a dense buffer (else it sorts)."""
DENSE_GROUP_SPREAD = 32
"""... and only when the range is at most this many times the number of keys (a sparse range
is cheaper to sort than to sweep)."""


def _lookup(
    keys: np.ndarray, values: np.ndarray, at: np.ndarray, top: int, missing: int
) -> np.ndarray:
    """``values[j]`` where ``at == keys[j]`` (``keys``: sorted, distinct, in ``[0, top)``), else
    ``missing``: through a dense table of ``top`` entries when that range is small (as in
    :func:`_group_sum`), else by binary search."""
    if top <= DENSE_GROUP_LIMIT and top <= DENSE_GROUP_SPREAD * len(at):
        table = np.full(top, missing, dtype=values.dtype)
        table[keys] = values
        return table[at]
    j = np.minimum(np.searchsorted(keys, at), len(keys) - 1)
    return np.where(keys[j] == at, values[j], missing)


def _group_sum(
    keys: np.ndarray, weights: np.ndarray, dense_limit: int | None = None, positive: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct ``keys`` (sorted) and the sums of their ``weights``, each added in input order
    (``np.bincount``), so that the sums equal a sequential accumulation. A small key range
    (``<= dense_limit`` and dense enough) is accumulated in dense buffers, else after a sort;
    ``positive``: the weights are all > 0, so a key is present where its sum is."""
    limit = DENSE_GROUP_LIMIT if dense_limit is None else dense_limit
    if not len(keys):
        return keys.astype(np.int64), weights.astype(np.float64)
    top = int(keys.max()) + 1
    if top <= limit and top <= DENSE_GROUP_SPREAD * len(keys):
        sums = np.bincount(keys, weights=weights, minlength=top)
        at = np.flatnonzero(sums if positive else np.bincount(keys, minlength=top))
        return at.astype(np.int64), sums[at]
    uniq, inv = np.unique(keys, return_inverse=True)
    return uniq, np.bincount(inv.ravel(), weights=weights, minlength=len(uniq))


@register_model("sknn")
class SKNN(_SessionKNNBase):
    """Session-based kNN (Jannach & Ludewig 2017).

    The current session (the last ``max_len`` history items, as a set) is compared with the
    ``sample_size`` most recent training sessions that share at least one item with it, by
    binary cosine ``|s & n| / sqrt(|s| |n|)``; the ``k`` most similar are the neighbours (ties:
    the more recent first). ``score(i) = sum of sim(s, n)`` over neighbours ``n`` holding ``i``.
    Items of the current session are scored too (no "remind" filter); use ``exclude_seen``.

    Deviation: the reference code (session-rec) computes ``|s & n| / sqrt(|s|) * sqrt(|n|)``
    by operator precedence; this is the actual cosine.
    """

    Config = SKNNConfig

    def _scores_of(self, hist: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        q = self._query(hist, "same")

        def cosine(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> np.ndarray:
            return vals / np.sqrt(q.n_distinct[rows] * self._sess_len[cols])

        return self._item_scores(q, *self._neighbours(q, cosine))


class VSKNNConfig(SKNNConfig):
    """V-SKNN settings: SKNN's plus the vector weighting."""

    weighting: Weighting = "div"
    """Weight of the current session's positions (see
    :func:`~warmrec.models.weighting.position_weight`)."""
    decay: Weighting = "div"
    """Decay of a neighbour by how far back its most recent shared item lies (see
    :func:`~warmrec.models.weighting.distance_weight`)."""
    idf_weighting: float = Field(0.0, ge=0)
    """Item scores are multiplied by ``1 + idf_weighting * log(n_sessions /
    sessions_with_item)`` (0 = off)."""


@register_model("vsknn")
class VSKNN(_SessionKNNBase):
    """V-SKNN, "vector multiplication" session-kNN (Ludewig & Jannach 2018).

    The current session is a real-valued vector: the item at position ``p`` of ``m`` weighs
    ``weighting(p, m)`` (default ``p / m``; a repeated item keeps its last position). Similarity
    with a binary past session ``n`` is the dot product divided by the number of distinct items of
    the current session. Neighbours are chosen as in :class:`SKNN`. A neighbour contributes
    ``sim * decay(step)`` to each of its items, ``step`` being how many positions back its most
    recent shared item lies (1 = the last item), and with ``idf_weighting > 0`` each item's score is
    multiplied by ``1 + idf_weighting * idf(item)``.

    Deviations from session-rec: IDF uses the number of sessions holding the item (not its event
    count, which can make it negative); ``linear`` weights use the distance from the end, clipped
    at 0; candidate sessions are those sharing an item of positive weight.
    """

    Config = VSKNNConfig

    def _scores_of(self, hist: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cfg = self.config
        q = self._query(hist, cfg.weighting)

        def vec(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> np.ndarray:
            return vals / q.n_distinct[rows]

        rows, sess, sim = self._neighbours(q, vec)
        return self._item_scores(q, rows, sess, sim, cfg.decay, cfg.idf_weighting)
