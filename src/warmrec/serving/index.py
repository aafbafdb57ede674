"""The session-kNN serving index: SKNN and V-SKNN answered in the manner of Serenade's VMIS-kNN.

Kersbergen et al., "Serenade -- low-latency session-based recommendation in e-commerce at scale"
(SIGMOD 2022) serve V-SKNN from an index that keeps, per item, the ids of the ``m`` most recent
sessions holding it, per session its sorted items, per item an IDF, and answer one history by
walking its items and summing into a bounded set of candidate sessions. This module is that
index for :class:`~warmrec.models.knn.SKNN` and :class:`~warmrec.models.knn.VSKNN`:

- :class:`SessionIndex` -- five flat NumPy arrays (CSR style): ``item_ptr``/``item_sess`` (per
  item the ``m = sample_size`` most recent session ids holding it, oldest first; all of them
  with ``sample_size=0``), ``sess_ptr``/``sess_items`` (per session its sorted items), ``idf``
  (per item, as the model computes it). Session ids are the model's rows, ordered by each
  session's last timestamp (oldest first), so a session's id *is* its time rank: the recency
  that the candidate sample and the tie-break use; no separate timestamp array is needed.
  Written at save time (``Recommender.save`` of SKNN/V-SKNN) as plain ``.npy`` files in the
  model directory's ``knn_index/`` folder with an ``index.json`` (format, sizes, the SHA-256 of
  each array's file, and the SHA-256 of the model's session arrays and settings it was built
  from), and opened with ``np.load(mmap_mode="r")``: only the pages a query touches stay
  resident. A directory without the folder (saved by an older warmrec), or whose folder does
  not match its model (a stale or edited index: an array whose checksum differs), gets the
  index built in memory at load, with a warning for the mismatch; the model directory is never
  written at load (it may be read-only or shared by workers). An ``index.json`` written before
  the checksums were recorded loads without them.
- :class:`IndexScorer` -- one history's candidate scores, in a numba kernel (the ``serve``
  extra): distinct items with their position weights and steps; for each item of positive
  weight (in ascending index order) its recent sessions, overlaps summed in a dense per-session
  buffer (reset after each call, so the cost is what the query touches, not the catalogue);
  the ``sample_size`` most recent touched sessions (only those at or after the most recent
  ``m``-th session of any full item list can qualify, which prunes the sort); similarity
  (V-SKNN: overlap / distinct items; SKNN: cosine); the ``k`` most similar (ties: the more
  recent); the decay by each neighbour's most recent shared item; item scores summed over the
  neighbours in session order; the IDF factor.

**Same scores as the model.** Every sum adds the same terms in the same order as
:meth:`~warmrec.models.knn._SessionKNNBase.candidate_scores` (overlaps in ascending item order,
item scores in ascending session order), the position weights and the decay table come from the
same NumPy functions (:mod:`warmrec.models.weighting`), and the kernel is compiled without
fast-math (no reassociation, no fused multiply-add), so the scores are bit-identical and the
ranking (:class:`~warmrec.models.rules.FallbackRanker`) identical
(``tests/serving/test_index.py`` checks this on several logs and configurations).

The kernel keeps the GIL (numba's default), so calls in one process run one at a time and may
share the scratch buffers; each :class:`IndexScorer` owns its own. Without numba installed,
:func:`scorer_for` returns ``None`` and serving uses the model's vectorised NumPy path.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from warmrec.errors import ModelError

INDEX_DIR = "knn_index"
INDEX_FILE = "index.json"
INDEX_FORMAT = 1
ARRAYS = ("item_ptr", "item_sess", "sess_ptr", "sess_items", "idf")


def fingerprint(model: Any) -> str:
    """SHA-256 of what the index is made from: the model's session arrays, catalogue size and
    ``sample_size`` (the length of the per-item session lists)."""
    h = hashlib.sha256()
    h.update(f"{INDEX_FORMAT} {len(model.vocab)} {int(model.config.sample_size)}\n".encode())
    for a in (model._sess_ptr, model._sess_items):
        h.update(np.ascontiguousarray(a, dtype=np.int64).data)
    return h.hexdigest()


def _expand(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The concatenated ranges ``lo[j]:hi[j]``."""
    cnt = hi - lo
    total = int(cnt.sum())
    if not total:
        return np.zeros(0, dtype=np.int64)
    starts = np.cumsum(cnt) - cnt
    return np.arange(total, dtype=np.int64) - np.repeat(starts - lo, cnt)


def _id_dtype(top: int) -> type:
    return np.int32 if top < 2**31 else np.int64


@dataclass
class SessionIndex:
    """The index arrays (see the module docstring) and what they were built from."""

    item_ptr: np.ndarray
    item_sess: np.ndarray
    sess_ptr: np.ndarray
    sess_items: np.ndarray
    idf: np.ndarray
    sample_size: int
    source: str

    @property
    def n_items(self) -> int:
        return len(self.item_ptr) - 1

    @property
    def n_sessions(self) -> int:
        return len(self.sess_ptr) - 1

    @property
    def nbytes(self) -> int:
        return sum(int(getattr(self, a).nbytes) for a in ARRAYS)

    @classmethod
    def build(cls, model: Any) -> SessionIndex:
        """The index of a fitted SKNN/V-SKNN (O(events): a counting transpose, no sort)."""
        import scipy.sparse as sp

        model._check_fitted()
        n_items = len(model.vocab)
        sess_ptr = np.asarray(model._sess_ptr, dtype=np.int64)
        items = np.asarray(model._sess_items)
        n_sess = len(sess_ptr) - 1
        sess_items = items.astype(_id_dtype(n_items))
        # item -> sessions, ascending (= oldest first): CSR -> CSC is a counting sort by column
        x = sp.csc_matrix(
            sp.csr_matrix(
                (np.ones(len(items), dtype=np.int8), sess_items, sess_ptr), shape=(n_sess, n_items)
            )
        )
        x.has_sorted_indices = False
        x.sort_indices()  # already sorted by construction; cheap check-and-sort
        ptr = x.indptr.astype(np.int64)
        m = int(model.config.sample_size)
        hi = ptr[1:]
        lo = np.maximum(ptr[:-1], hi - m) if m > 0 else ptr[:-1]
        item_ptr = np.zeros(n_items + 1, dtype=np.int64)
        np.cumsum(hi - lo, out=item_ptr[1:])
        item_sess = x.indices[_expand(lo, hi)].astype(_id_dtype(n_sess))
        idf = np.asarray(model._idf, dtype=np.float64)
        return cls(item_ptr, item_sess, sess_ptr, sess_items, idf, m, fingerprint(model))

    def save(self, folder: str | Path) -> Path:
        """Write the arrays and ``index.json`` into ``folder`` (a fresh directory: the model
        directory's temporary one at save time, see :func:`add_index` otherwise)."""
        from warmrec.artifacts import file_sha256

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for a in ARRAYS:
            np.save(folder / f"{a}.npy", np.ascontiguousarray(getattr(self, a)))
        info = {
            "format": INDEX_FORMAT,
            "n_items": self.n_items,
            "n_sessions": self.n_sessions,
            "sample_size": self.sample_size,
            "source_sha256": self.source,
            "arrays": {a: [str(getattr(self, a).dtype), len(getattr(self, a))] for a in ARRAYS},
            "sha256": {a: file_sha256(folder / f"{a}.npy") for a in ARRAYS},
        }
        (folder / INDEX_FILE).write_text(json.dumps(info, indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path, *, mmap: bool = True) -> SessionIndex:
        """Open a saved index (memory-mapped by default); a damaged folder is one ModelError."""
        folder = Path(folder)
        info_path = folder / INDEX_FILE
        from warmrec.artifacts import parse_json

        try:
            info = parse_json(info_path.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError) as e:
            raise ModelError(f"{info_path}: unreadable index description ({e})") from None
        if not isinstance(info, dict) or info.get("format") != INDEX_FORMAT:
            found = info.get("format") if isinstance(info, dict) else type(info).__name__
            raise ModelError(f"{info_path}: format {found!r}, expected {INDEX_FORMAT}")
        arrays = {}
        for a in ARRAYS:
            p = folder / f"{a}.npy"
            try:
                arrays[a] = np.load(p, mmap_mode="r" if mmap else None, allow_pickle=False)
            except (OSError, ValueError) as e:
                raise ModelError(f"{p}: not a readable .npy array ({e})") from None
            want = info.get("arrays", {}).get(a)
            got = [str(arrays[a].dtype), len(arrays[a])]
            if arrays[a].ndim != 1 or want != got:
                raise ModelError(f"{p}: dtype and length {got}, expected {want}")
        try:
            m, source = int(info["sample_size"]), str(info["source_sha256"])
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"{info_path}: missing or invalid field {e}") from None
        idx = cls(**arrays, sample_size=m, source=source)
        n_i, n_s = idx.n_items, idx.n_sessions
        if (
            len(idx.idf) != n_i
            or int(idx.item_ptr[-1]) != len(idx.item_sess)
            or int(idx.sess_ptr[-1]) != len(idx.sess_items)
            or (info.get("n_items"), info.get("n_sessions")) != (n_i, n_s)
        ):
            raise ModelError(f"{folder}: index arrays do not fit together (sizes)")
        # the values too: the scoring kernel indexes its accumulators with them unchecked (an
        # id out of range was a write out of bounds, a crash of the serving process)
        for ptr, vals, bound, name in (
            (idx.item_ptr, idx.item_sess, n_s, "item_sess"),
            (idx.sess_ptr, idx.sess_items, n_i, "sess_items"),
        ):
            p = np.asarray(ptr)
            v = np.asarray(vals)
            if len(p) == 0 or int(p[0]) != 0 or bool((np.diff(p) < 0).any()):
                raise ModelError(f"{folder}: index pointers are not a running offset ({name})")
            if len(v) and (int(v.min()) < 0 or int(v.max()) >= bound):
                raise ModelError(
                    f"{folder}: {name}.npy holds ids outside [0, {bound}) "
                    f"(found {int(v.min())} to {int(v.max())})"
                )
        if not bool(np.isfinite(np.asarray(idx.idf)).all()):
            raise ModelError(f"{folder}: idf.npy holds non-finite values")
        _check_sums(folder, info_path, info.get("sha256"))
        return idx


def _check_sums(folder: Path, info_path: Path, sums: Any) -> None:
    """Each array file's SHA-256 against ``index.json``'s record (None: an index saved before
    it was recorded): values edited within range pass every other check, and the service
    would answer from them."""
    from warmrec.artifacts import file_sha256

    if sums is None:
        return
    if not isinstance(sums, dict):
        raise ModelError(f"{info_path}: field 'sha256': expected an object, found {sums!r}")
    for a in ARRAYS:
        p = folder / f"{a}.npy"
        want = sums.get(a)
        if not isinstance(want, str):
            raise ModelError(f"{info_path}: field 'sha256.{a}': expected a SHA-256, found {want!r}")
        got = file_sha256(p)
        if got != want:
            raise ModelError(
                f"{p}: checksum {got[:12]}... differs from the {want[:12]}... recorded in "
                f"{INDEX_FILE} (the file was changed after saving)"
            )


def write_index(model: Any, folder: str | Path) -> Path:
    """Build the index of ``model`` and write it into ``folder`` (used by ``save``)."""
    return SessionIndex.build(model).save(folder)


def add_index(model_dir: str | Path) -> Path:
    """Add (or replace) the index of a saved SKNN/V-SKNN directory, e.g. one saved by an older
    warmrec: written to a temporary folder beside it that replaces ``knn_index`` as one unit
    (:func:`warmrec.io.atomic_dir`)."""
    from warmrec.artifacts import load_model
    from warmrec.io import atomic_dir

    d = Path(model_dir)
    model = load_model(d)
    if not is_session_knn(model):
        raise ModelError(f"{d}: holds a '{model.name}' model, not sknn or vsknn")
    with atomic_dir(d / INDEX_DIR) as tmp:
        write_index(model, tmp)
    return d / INDEX_DIR


def is_session_knn(model: Any) -> bool:
    from warmrec.models.knn import _SessionKNNBase

    return isinstance(model, _SessionKNNBase)


def open_index(model: Any, model_dir: str | Path | None) -> SessionIndex:
    """The model directory's saved index when it matches ``model``, else one built in memory
    (a warning says why when a saved one is refused)."""
    from warmrec.io import recover_dir

    folder = recover_dir(Path(model_dir) / INDEX_DIR) if model_dir is not None else None
    if folder is not None and folder.is_dir():
        try:
            idx = SessionIndex.load(folder)
        except ModelError as e:
            warnings.warn(f"{e}; building the index in memory", stacklevel=2)
        else:
            if idx.source == fingerprint(model):
                return idx
            warnings.warn(
                f"{folder}: built from other sessions or settings than the model beside it "
                "(stale); building the index in memory",
                stacklevel=2,
            )
    return SessionIndex.build(model)


# -- the query kernel --------------------------------------------------------------------------

_KERNEL: Any = None


def _kernel() -> Any:
    """The numba-compiled query (compiled on first use, cached on disk by numba)."""
    global _KERNEL
    if _KERNEL is None:
        import numba

        try:
            _KERNEL = numba.njit(cache=True, error_model="numpy", nogil=False)(_query)
        except RuntimeError:  # no writable cache location: compile per process
            _KERNEL = numba.njit(cache=False, error_model="numpy", nogil=False)(_query)
    return _KERNEL


def _query(
    hist,
    w,
    item_ptr,
    item_sess,
    sess_ptr,
    sess_items,
    idf,
    m,
    k,
    cosine,
    dtable,
    idf_w,
    sacc,
    iacc,
):  # pragma: no cover - compiled by numba (run through IndexScorer in the tests)
    """Candidate items and scores of one history (see the module docstring); ``sacc``/``iacc``
    are zero-filled per-session / per-item buffers, left zero-filled on return."""
    n = len(hist)
    # distinct items (ascending), the largest weight and the smallest step of each
    order = np.argsort(hist, kind="mergesort")
    q_items = np.empty(n, np.int64)
    q_w = np.empty(n, np.float64)
    q_step = np.empty(n, np.int64)
    nd = 0
    for j in range(n):
        p = order[j]
        it = hist[p]
        st = n - p
        if nd > 0 and q_items[nd - 1] == it:
            if w[p] > q_w[nd - 1]:
                q_w[nd - 1] = w[p]
            if st < q_step[nd - 1]:
                q_step[nd - 1] = st
        else:
            q_items[nd] = it
            q_w[nd] = w[p]
            q_step[nd] = st
            nd += 1
    n_distinct = float(nd)
    # overlaps with the recent sessions of each item of positive weight, in item order
    total = 0
    floor = -1
    for g in range(nd):
        if q_w[g] > 0:
            it = q_items[g]
            lo, hi = item_ptr[it], item_ptr[it + 1]
            total += hi - lo
            if m > 0 and hi - lo >= m and item_sess[lo] > floor:
                floor = item_sess[lo]  # the union's m most recent are at least this recent
    touched = np.empty(total, np.int64)
    nt = 0
    for g in range(nd):
        wg = q_w[g]
        if wg > 0:
            it = q_items[g]
            for e in range(item_ptr[it], item_ptr[it + 1]):
                s = item_sess[e]
                if sacc[s] == 0.0:
                    touched[nt] = s
                    nt += 1
                sacc[s] += wg
    # the m most recent candidates, then their similarities
    nc = 0
    cand = np.empty(nt, np.int64)
    for j in range(nt):
        if touched[j] >= floor:
            cand[nc] = touched[j]
            nc += 1
    cand = np.sort(cand[:nc])[::-1]  # most recent first
    if m > 0 and nc > m:
        cand = cand[:m]
        nc = m
    sim = np.empty(nc, np.float64)
    ns = 0
    for j in range(nc):
        s = cand[j]
        if cosine:
            v = sacc[s] / np.sqrt(n_distinct * float(sess_ptr[s + 1] - sess_ptr[s]))
        else:
            v = sacc[s] / n_distinct
        if v > 0:
            cand[ns] = s
            sim[ns] = v
            ns += 1
    for j in range(nt):
        sacc[touched[j]] = 0.0
    # the k most similar, ties: the more recent (cand is most recent first: a stable sort)
    top = np.argsort(-sim[:ns], kind="mergesort")[:k]
    nb = len(top)
    neigh = np.empty(nb, np.int64)
    nsim = np.empty(nb, np.float64)
    for j in range(nb):
        neigh[j] = cand[top[j]]
        nsim[j] = sim[top[j]]
    o = np.argsort(neigh)  # session order, as the model adds them
    neigh = neigh[o]
    nsim = nsim[o]
    # decay by each neighbour's most recent shared item
    if len(dtable) > 0:
        for j in range(nb):
            s = neigh[j]
            best = n + 1
            for e in range(sess_ptr[s], sess_ptr[s + 1]):
                it = sess_items[e]
                a = np.searchsorted(q_items[:nd], it)
                if a < nd and q_items[a] == it and q_step[a] < best:
                    best = q_step[a]
            if best == n + 1:
                best = n
            nsim[j] = nsim[j] * dtable[max(best, 1)]
    # item scores over the neighbours' items, in session order
    cap = 0
    for j in range(nb):
        s = neigh[j]
        cap += sess_ptr[s + 1] - sess_ptr[s]
    out = np.empty(cap, np.int64)
    no = 0
    for j in range(nb):
        c = nsim[j]
        if c > 0:
            s = neigh[j]
            for e in range(sess_ptr[s], sess_ptr[s + 1]):
                it = sess_items[e]
                if iacc[it] == 0.0:
                    out[no] = it
                    no += 1
                iacc[it] += c
    items = np.sort(out[:no])
    vals = np.empty(no, np.float64)
    for j in range(no):
        it = items[j]
        r = iacc[it]
        if idf_w > 0:
            r = r * (1.0 + idf_w * idf[it])
        vals[j] = r
        iacc[it] = 0.0
    return items, vals


class IndexScorer:
    """One history's candidate scores of an SKNN/V-SKNN model from its :class:`SessionIndex`
    (the numba kernel); the same ``(indices, scores)`` as the model's ``candidate_scores``."""

    def __init__(self, model: Any, index: SessionIndex) -> None:
        from warmrec.models.knn import VSKNN
        from warmrec.models.weighting import distance_weight

        cfg = model.config
        self.index = index
        self.max_len = int(cfg.max_len)
        self.k = int(cfg.k)
        self.m = int(cfg.sample_size)
        if index.sample_size != self.m or index.n_items != len(model.vocab):
            raise ModelError(
                f"index of sample_size {index.sample_size} over {index.n_items} items, "
                f"expected {self.m} over {len(model.vocab)}"
            )
        self.vector = isinstance(model, VSKNN)
        self.weighting = cfg.weighting if self.vector else "same"
        decay = cfg.decay if self.vector else "same"
        self.idf_w = float(cfg.idf_weighting) if self.vector else 0.0
        steps = np.arange(1, self.max_len + 1, dtype=np.int64)
        self.dtable = (
            np.concatenate([[0.0], distance_weight(steps, decay, key="decay")])
            if decay != "same"
            else np.zeros(0, dtype=np.float64)
        )
        self._sacc = np.zeros(index.n_sessions, dtype=np.float64)
        self._iacc = np.zeros(index.n_items, dtype=np.float64)
        self._run = _kernel()

    def scores(self, history: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(item indices ascending, float64 scores)`` after encoded ``history`` (indices > 0,
        most recent last; only the last ``max_len`` are read)."""
        from warmrec.models.weighting import position_weight

        h = np.ascontiguousarray(history[-self.max_len :], dtype=np.int64)
        n = len(h)
        if n == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        w = position_weight(np.arange(1, n + 1), np.full(n, n), self.weighting)
        ix = self.index
        return self._run(
            h,
            w,
            ix.item_ptr,
            ix.item_sess,
            ix.sess_ptr,
            ix.sess_items,
            ix.idf,
            self.m,
            self.k,
            not self.vector,
            self.dtable,
            self.idf_w,
            self._sacc,
            self._iacc,
        )


def has_numba() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def scorer_for(model: Any, model_dir: str | Path | None) -> IndexScorer | None:
    """The :class:`IndexScorer` of an SKNN/V-SKNN model (its directory's index, see
    :func:`open_index`), or ``None`` for other models or without numba."""
    if not is_session_knn(model) or not has_numba():
        return None
    return IndexScorer(model, open_index(model, model_dir))
