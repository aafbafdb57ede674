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
``X`` whose rows are ordered by each session's last timestamp (oldest first). Scoring a batch is
vectorised: ``Q @ X^T`` gives every (history, candidate session) overlap; the ``sample_size`` most
recent candidates per history are the right-most entries of each row; the ``k`` most similar of
those are the neighbours ``N``; item scores are ``N @ X``. Ties among scores are broken by the
popularity fallback of :func:`warmrec.models.rules.scores_with_fallback`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field

from warmrec.data.dataset import Batch, EvalSet, SequenceDataset
from warmrec.models.base import Recommender
from warmrec.models.rules import (
    ItemToItemRecommender,
    ItemToItemSettings,
    scores_with_fallback,
    session_item_matrix,
)
from warmrec.models.settings import HistorySettings
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
    """Count a session once per item (True) or every event, as Hidasi et al.'s code (False)."""


@register_model("itemknn")
class ItemKNN(ItemToItemRecommender):
    """Item-kNN (Hidasi et al. 2016 baseline): the score of item ``j`` given last item ``i`` is

    ``sim(i, j) = C[i, j] / ((supp_i + lambda_) ** alpha * (supp_j + lambda_) ** (1 - alpha))``

    where ``C[i, j]`` counts the sessions holding both items (``i != j``) and ``supp`` the
    sessions holding each item. ``lambda_ = 0, alpha = 0.5`` is the plain cosine of binary
    session vectors; ``lambda_`` damps rare items; ``alpha`` makes it asymmetric. Only the
    ``topk`` most similar items per item are kept.
    """

    Config = ItemKNNConfig
    learns_sequences: ClassVar[bool] = False  # symmetric co-occurrence

    def build_matrix(self, train: SequenceDataset) -> sp.csr_matrix:
        s = session_item_matrix(train, binary=self.config.binary)
        c = (s.T @ s).tocsr().astype(np.float64)
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


def _row_ids(m: sp.csr_matrix) -> np.ndarray:
    return np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))


class SKNNConfig(HistorySettings):
    """Session-kNN settings; ``max_len``: recent history items forming the current session."""

    k: int = Field(100, ge=1)
    """Neighbour sessions."""
    sample_size: int = Field(500, ge=0)
    """Candidate sessions per history: the most recent ones sharing an item (0 = all)."""
    pop_fallback: bool = True
    """Rank items without any score by popularity."""


class _SessionKNNBase(Recommender):
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
        return self

    def _set_sessions(self, indptr: np.ndarray, indices: np.ndarray) -> None:
        n_items = len(self.vocab)
        n_sess = len(indptr) - 1
        x = sp.csr_matrix(
            (np.ones(len(indices), dtype=np.float32), indices, indptr), shape=(n_sess, n_items)
        )
        self.sessions = x
        self._xt = x.T.tocsr()
        self._sess_len = np.diff(indptr).astype(np.float64)
        self._keys = _row_ids(x) * n_items + indices  # sorted: rows, then sorted columns
        df = np.bincount(indices, minlength=n_items).astype(np.float64)
        self._idf = np.where(df > 0, np.log(max(n_sess, 1) / np.maximum(df, 1.0)), 0.0)

    def get_state(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "sessions_indptr": np.asarray(self.sessions.indptr, dtype=np.int64),
            "sessions_indices": np.asarray(self.sessions.indices, dtype=np.int64),
        }

    def set_state(self, state: dict[str, torch.Tensor]) -> None:
        self.counts = state["counts"].float()
        self._set_sessions(
            state["sessions_indptr"].numpy().astype(np.int64),
            state["sessions_indices"].numpy().astype(np.int64),
        )

    # -- scoring ------------------------------------------------------------------------------
    def _query(self, hist: np.ndarray, weighting: str) -> tuple[sp.csr_matrix, np.ndarray]:
        """Current sessions as a ``[B, n_items]`` CSR of position weights (an item repeated in the
        session keeps the weight of its last position) and the distinct item count per row."""
        b = hist.shape[0]
        n_items = len(self.vocab)
        nz = hist > 0
        pos = np.cumsum(nz, axis=1)
        m = nz.sum(axis=1)
        rows, cols = np.nonzero(nz)
        w = position_weight(pos[rows, cols], m[rows], weighting)
        keys = rows * n_items + hist[rows, cols]
        order = np.argsort(keys, kind="stable")
        uniq, first = np.unique(keys[order], return_index=True)
        wmax = np.maximum.reduceat(w[order], first) if len(first) else w[:0]
        urows = uniq // n_items
        q = sp.csr_matrix((wmax, (urows, uniq % n_items)), shape=(b, n_items))
        return q, np.bincount(urows, minlength=b).astype(np.float64)

    def _contains(self, sess: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Whether training session ``sess[j]`` holds item ``items[j]``."""
        keys = sess * len(self.vocab) + items
        i = np.searchsorted(self._keys, keys)
        i = np.minimum(i, len(self._keys) - 1)
        return (self._keys[i] == keys) & (items > 0) if len(self._keys) else items < 0

    def _neighbours(self, overlap: sp.csr_matrix, sim_of) -> sp.csr_matrix:
        """Recency sample then top-``k`` by similarity per row: returns sparse ``[B, n_sessions]``
        similarities of the neighbours. ``sim_of(rows, cols, overlap_values)`` -> similarities."""
        cfg = self.config
        overlap = overlap.tocsr()
        overlap.eliminate_zeros()
        overlap.sort_indices()
        rows = _row_ids(overlap)
        cols = overlap.indices.astype(np.int64)
        vals = overlap.data.astype(np.float64)
        if cfg.sample_size > 0:  # the right-most entries are the most recent sessions
            from_end = overlap.indptr[rows + 1] - np.arange(overlap.nnz) - 1
            keep = from_end < cfg.sample_size
            rows, cols, vals = rows[keep], cols[keep], vals[keep]
        sim = sim_of(rows, cols, vals)
        ok = sim > 0
        rows, cols, sim = rows[ok], cols[ok], sim[ok]
        order = np.lexsort((-cols, -sim, rows))  # by row, similarity desc, recency desc
        rows, cols, sim = rows[order], cols[order], sim[order]
        counts = np.bincount(rows, minlength=overlap.shape[0])
        rank = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
        top = rank < cfg.k
        return sp.csr_matrix((sim[top], (rows[top], cols[top])), shape=overlap.shape)

    def _item_scores(self, neigh: sp.csr_matrix) -> sp.csr_matrix:
        return (neigh @ self.sessions).tocsr()

    def _finish(self, r: sp.csr_matrix) -> torch.Tensor:
        return scores_with_fallback(r, self.counts, bool(self.config.pop_fallback))


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

    def score(self, batch: Batch) -> torch.Tensor:
        self._check_fitted()
        hist = batch.items.detach().cpu().numpy()[:, -self.config.max_len :]
        q, n_distinct = self._query(hist, "same")
        overlap = q @ self._xt

        def cosine(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> np.ndarray:
            return vals / np.sqrt(n_distinct[rows] * self._sess_len[cols])

        neigh = self._neighbours(overlap, cosine)
        return self._finish(self._item_scores(neigh))


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

    def score(self, batch: Batch) -> torch.Tensor:
        self._check_fitted()
        cfg = self.config
        hist = batch.items.detach().cpu().numpy()[:, -cfg.max_len :]
        q, n_distinct = self._query(hist, cfg.weighting)
        q.eliminate_zeros()
        overlap = q @ self._xt

        def vec(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> np.ndarray:
            return vals / n_distinct[rows]

        neigh = self._neighbours(overlap, vec)
        if cfg.decay != "same" and neigh.nnz:
            neigh.data = neigh.data * distance_weight(
                self._steps(neigh, hist), cfg.decay, key="decay"
            )
        r = self._item_scores(neigh)
        if cfg.idf_weighting > 0 and r.nnz:
            r.data = r.data * (1.0 + cfg.idf_weighting * self._idf[r.indices])
        return self._finish(r)

    def _steps(self, neigh: sp.csr_matrix, hist: np.ndarray) -> np.ndarray:
        """For each neighbour entry: positions back (1 = last) of the most recent history item
        the neighbour session holds. Walks back one column at a time over unresolved entries."""
        rows = _row_ids(neigh)
        sess = neigh.indices.astype(np.int64)
        steps = np.zeros(len(rows), dtype=np.int64)
        todo = np.arange(len(rows))
        width = hist.shape[1]
        for j in range(1, width + 1):
            found = self._contains(sess[todo], hist[rows[todo], width - j])
            steps[todo[found]] = j
            todo = todo[~found]
            if not len(todo):
                break
        steps[todo] = width  # not reached: every neighbour shares an item
        return np.maximum(steps, 1)
