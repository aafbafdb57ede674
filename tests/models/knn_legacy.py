"""The session-kNN scoring of warmrec before the serving rework (issue 12), kept verbatim as an
oracle: sparse products ``Q @ X^T`` and ``N @ X`` over the whole catalogue and all sessions.
The fast path in :mod:`warmrec.models.knn` must give bit-identical scores."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from warmrec.models.rules import scores_with_fallback
from warmrec.models.weighting import distance_weight, position_weight


def _row_ids(m: sp.csr_matrix) -> np.ndarray:
    return np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))


class Legacy:
    """The old scoring of a fitted SKNN / V-SKNN ``model`` (its sessions, counts and config)."""

    def __init__(self, model) -> None:
        self.m = model
        x = model.sessions
        self.n_items = len(model.vocab)
        self.xt = x.T.tocsr()
        self.keys = _row_ids(x) * self.n_items + x.indices.astype(np.int64)
        self.sess_len = np.diff(x.indptr).astype(np.float64)
        self.idf = model._idf

    def _query(self, hist, weighting):
        b = hist.shape[0]
        n_items = self.n_items
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

    def _contains(self, sess, items):
        keys = sess * self.n_items + items
        i = np.searchsorted(self.keys, keys)
        i = np.minimum(i, len(self.keys) - 1)
        return (self.keys[i] == keys) & (items > 0) if len(self.keys) else items < 0

    def _neighbours(self, overlap, sim_of):
        cfg = self.m.config
        overlap = overlap.tocsr()
        overlap.eliminate_zeros()
        overlap.sort_indices()
        rows = _row_ids(overlap)
        cols = overlap.indices.astype(np.int64)
        vals = overlap.data.astype(np.float64)
        if cfg.sample_size > 0:
            from_end = overlap.indptr[rows + 1] - np.arange(overlap.nnz) - 1
            keep = from_end < cfg.sample_size
            rows, cols, vals = rows[keep], cols[keep], vals[keep]
        sim = sim_of(rows, cols, vals)
        ok = sim > 0
        rows, cols, sim = rows[ok], cols[ok], sim[ok]
        order = np.lexsort((-cols, -sim, rows))
        rows, cols, sim = rows[order], cols[order], sim[order]
        counts = np.bincount(rows, minlength=overlap.shape[0])
        rank = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
        top = rank < cfg.k
        return sp.csr_matrix((sim[top], (rows[top], cols[top])), shape=overlap.shape)

    def _steps(self, neigh, hist):
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
        steps[todo] = width
        return np.maximum(steps, 1)

    def sparse(self, items: np.ndarray) -> sp.csr_matrix:
        """The old ``r`` (scores before the fallback) of padded histories ``items [B, L]``."""
        cfg = self.m.config
        hist = items[:, -cfg.max_len :]
        vector = hasattr(cfg, "decay")
        q, n_distinct = self._query(hist, cfg.weighting if vector else "same")
        if vector:
            q.eliminate_zeros()
        overlap = q @ self.xt

        def sim_of(rows, cols, vals):
            if vector:
                return vals / n_distinct[rows]
            return vals / np.sqrt(n_distinct[rows] * self.sess_len[cols])

        neigh = self._neighbours(overlap, sim_of)
        if vector and cfg.decay != "same" and neigh.nnz:
            neigh.data = neigh.data * distance_weight(
                self._steps(neigh, hist), cfg.decay, key="decay"
            )
        r = (neigh @ self.m.sessions).tocsr()
        if vector and cfg.idf_weighting > 0 and r.nnz:
            r.data = r.data * (1.0 + cfg.idf_weighting * self.idf[r.indices])
        return r

    def score(self, items: np.ndarray) -> torch.Tensor:
        r = self.sparse(items)
        return scores_with_fallback(r, self.m.counts, bool(self.m.config.pop_fallback))
