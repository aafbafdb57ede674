"""A loaded model ready to answer: any model directory, warmed up, on the fastest inference path.

:class:`ModelBundle` wraps a :class:`~warmrec.models.base.Recommender` read by
:func:`warmrec.artifacts.load_model` (any directory that ``train``, ``pretrain`` or ``transfer``
writes) with what serving needs and the model does not offer:

- raw ids -> indices through a Python dict built once, when the bundle is made (at load or
  reload: no DataFrame per request, no first request paying for the dict); an integer
  vocabulary also accepts the ids as canonical decimal strings (ASCII digits, an optional
  leading ``-``, no leading zeros or spaces: ``"12"``, ``"-3"``; anything else, ``"--5"``,
  ``"²"``, ``"٣"`` or ``"007"``, is an unknown id), a string vocabulary accepts integers;
- the **unknown ids** of a history are reported, not dropped silently;
- ranking returns **scores** with the ids, with ``exclude_seen``, an ``exclude`` list and a
  ``restrict_to`` list (only these items may be recommended);
- an empty or fully unknown history is refused (:class:`EmptyHistoryError`) unless the caller
  asks for ``fallback="popular"`` (the training counts ``meta.item_counts``);
- inference under :func:`torch.inference_mode`, with ``torch.set_num_threads(threads)`` (one
  thread per worker by default: a server runs one worker per core);
- :meth:`ModelBundle.warm_up` scores a few batches before the port opens, so the first request
  pays no allocation or lazy-initialisation cost, and refuses a model whose scores are not
  finite (NaN or ``+inf`` anywhere, or no finite score at all: damaged weights).

Inference path (``engine``). Measured on the shared 2-core CPU machine
(``benchmarks/serving.py --infer``: one history of ``max_len`` items, the score of the whole
catalogue plus top-10, one thread; figures in ``benchmarks/results/serving.md``), median per
call: SASRec eager 0.74 ms, TorchScript trace 0.43 ms, ``torch.compile`` 0.44 ms (16-61 s to
compile); GRU4Rec eager 1.29 ms, trace 1.06 ms, compile 1.61 ms. The winner, a TorchScript
trace of the model's ``forward_scores`` for a one-history batch, is the default (``"auto"``)
for neural models: it is traced at load time and **checked** against eager scoring on
histories of several lengths (1, half, full); any failure or difference falls back to eager
(``self.engine`` says which runs). Multi-row batches (batch prediction) always run eager.
Session-kNN models (SKNN, V-SKNN) run ``"index"`` unless ``engine="eager"``: one history's
candidate scores come from the VMIS-kNN serving index (:mod:`warmrec.serving.index`: memory-mapped
arrays saved in the model directory, a numba query; bit-identical to the model's
``candidate_scores``) and are ranked by :class:`~warmrec.models.rules.FallbackRanker` -- the same
scores as the dense row, ties ordered by the lower index -- instead of a catalogue-wide row plus
``torch.topk``. ``engine="sparse"`` (or no numba) scores with the model's own vectorised NumPy
``candidate_scores`` instead of the index.

:func:`top_k` is shared with batch prediction (:mod:`warmrec.serving.predict`).
"""

from __future__ import annotations

import re
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from warmrec.errors import ModelError, WarmrecError, summary
from warmrec.models.ranking import top_k  # the one masking step (re-exported here)

RawId = int | str
ENGINES = ("auto", "eager", "torchscript", "sparse")


class EmptyHistoryError(WarmrecError):
    """A history with no item the model knows, and no fallback asked for."""


@dataclass
class Ranked:
    """One answer: ranked raw ids with their scores, the unknown ids of the history, and
    whether the popularity fallback answered."""

    items: list[RawId]
    scores: list[float]
    unknown: list[RawId] = field(default_factory=list)
    fallback_used: bool = False
    popularity_filled: int = 0
    """How many of ``items`` are ranked by training popularity alone: the model has no score of
    its own for them after this history (a rule, kNN or Markov model's popularity fallback
    fills the list past its candidates); all of them when ``fallback_used``."""


_TRACE_LOCK = threading.Lock()


@contextmanager
def _private_compilation_unit() -> Iterator[None]:
    """Trace into a compilation unit of its own, freed with the traced function.

    ``torch.jit.trace`` of a function registers it, with the model's weights as graph constants,
    in torch's process-wide Python compilation unit, which never drops it: every reload of a
    traced model leaked the old model (measured 2.3 MB per reload of a small SASRec, RSS
    453 -> 566 MiB over 50 reloads). Torch looks that unit up when it creates the function, so
    a fresh one swapped in for the duration of the trace holds the function instead, and goes
    when the bundle does (one trace at a time: the swap is process-wide)."""
    state = getattr(torch.jit, "_state", None)
    if (
        state is None
        or not hasattr(state, "_python_cu")
        or not hasattr(torch._C, "CompilationUnit")
    ):
        yield
        return
    with _TRACE_LOCK:
        shared = state._python_cu
        state._python_cu = torch._C.CompilationUnit()
        try:
            yield
        finally:
            state._python_cu = shared


_PATH = re.compile(r"^(/|~|\\|[A-Za-z]:[\\/]|\.{1,2}[\\/])")
_SEP = re.compile(r"[\\/]")


def _without_paths(value: Any) -> Any:
    """A config with every absolute or dot-relative file-system path (a text cache, a local
    encoder) shown by its last name only: ``/metadata`` tells a client nothing of the
    server's file system."""
    if isinstance(value, dict):
        return {k: _without_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_paths(v) for v in value]
    if isinstance(value, str) and _PATH.match(value):
        last = [part for part in _SEP.split(value) if part]
        return ".../" + (last[-1] if last else "")
    return value


class ModelBundle:
    """A model loaded once, with a fast raw-id index; see the module docstring."""

    def __init__(
        self,
        model: Any,
        path: str | Path | None = None,
        *,
        threads: int = 1,
        engine: str = "eager",
    ) -> None:
        if engine not in ENGINES:
            raise WarmrecError(f"engine: expected one of {', '.join(ENGINES)}, found {engine!r}")
        self.model = model
        self.path = Path(path).resolve() if path is not None else None
        self.threads = threads
        self.loaded_at = time.time()
        self.trained_with: str | None = None
        vocab = model.vocab
        ids = vocab.ids.to_list()
        self._is_str = vocab.is_str
        # the raw-id table now, with the model (in the reload thread for a reload): built on
        # the first request it cost that request 138 ms on a 500K-item vocabulary
        self._vocab = vocab.prepare()
        self._ids = ids
        self.n_items = len(ids)
        self.history_len = max(int(model.history_len), 1)
        counts = model.meta.item_counts
        self.engine = "eager"
        self._traced: Any = None
        self._ranker: Any = None
        self._knn: Any = None
        if engine != "eager":
            self._trace()
            self._sparse(index=engine != "sparse")
        self._popular = (
            torch.as_tensor(counts, dtype=torch.float32)
            if counts is not None and len(counts) == self.n_items + 1
            else None
        )

    def _trace(self) -> None:
        """Trace ``forward_scores`` for one history; keep it only if it matches eager."""
        from warmrec.data.dataset import Batch

        m = self.model
        if not (hasattr(m, "forward_scores") and getattr(m, "net", None) is not None):
            return
        if self.n_items == 0:
            return
        m.net.eval()
        for p in m.net.parameters():
            p.requires_grad_(False)
        L = self.history_len

        def fn(items: torch.Tensor) -> torch.Tensor:
            return m.forward_scores(Batch(items))

        def hist(n: int) -> torch.Tensor:
            row = np.zeros((1, L), dtype=np.int64)
            row[0, L - n :] = (np.arange(n, dtype=np.int64) * 7919) % self.n_items + 1
            return torch.from_numpy(row)

        try:
            with torch.no_grad(), warnings.catch_warnings(), _private_compilation_unit():
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(fn, (hist(L),), check_trace=False)
                for n in sorted({1, 2, max(1, L // 2), L}):
                    x = hist(n)
                    if not torch.allclose(traced(x).float(), fn(x).float(), rtol=1e-4, atol=1e-5):
                        return
        except Exception:  # noqa: BLE001 - any model that does not trace runs eager
            return
        self._traced, self.engine = traced, "torchscript"

    def _sparse(self, index: bool = True) -> None:
        """Models with sparse scores plus a popularity fallback (the session-kNN family) rank
        one history from their candidate items, without a dense catalogue-wide row; SKNN and
        V-SKNN score them from the serving index (:mod:`warmrec.serving.index`) unless
        ``index`` is false (``engine="sparse"``: the model's own NumPy path)."""
        from warmrec.models.rules import FallbackRanker

        m = self.model
        counts = getattr(m, "counts", None)
        if not hasattr(m, "candidate_scores") or counts is None or len(counts) != self.n_items + 1:
            return
        self._ranker = FallbackRanker(counts, bool(getattr(m.config, "pop_fallback", False)))
        self.engine = "sparse"
        if index:
            from warmrec.serving.index import scorer_for

            self._knn = scorer_for(m, self.path)
            self.engine = "index" if self._knn is not None else "sparse"

    @classmethod
    def load(
        cls, path: str | Path, *, threads: int = 1, warm_up: bool = True, engine: str = "auto"
    ) -> ModelBundle:
        """Load any model directory (:func:`warmrec.artifacts.load_model`) on the CPU."""
        from warmrec.artifacts import load_model, read_consistent, read_info

        if threads >= 1:
            torch.set_num_threads(threads)
        try:  # the model and its version from one save of the directory
            model, version = read_consistent(
                path, lambda: (load_model(path), read_info(path).info.warmrec_version)
            )
            if hasattr(model, "to") and hasattr(model, "net"):
                model.to("cpu")
            bundle = cls(model, path, threads=threads, engine=engine)
            bundle.trained_with = version
            if warm_up:
                bundle.warm_up()
        except WarmrecError:
            raise
        except Exception as e:  # noqa: BLE001 - a damaged directory: one error, not a traceback
            raise ModelError(f"{path}: the model does not load ({summary(e)})") from None
        return bundle

    # -- ids ----------------------------------------------------------------------------------
    def index_of(self, raw: Any) -> int:
        """The index of one raw id (0 when unknown), read by the model's vocabulary
        (:meth:`~warmrec.data.vocab.ItemVocab.index_of`: the one reading of raw ids shared with
        the CLI and the Python API)."""
        return self._vocab.index_of(raw)

    def encode(self, raw: Sequence[Any]) -> tuple[np.ndarray, list[Any]]:
        """Indices of the known ids (in order) and the unknown raw ids."""
        idx = np.fromiter((self.index_of(x) for x in raw), dtype=np.int64, count=len(raw))
        unknown = [x for x, i in zip(raw, idx) if i == 0]
        return idx[idx > 0], unknown

    def decode(self, idx: Sequence[int]) -> list[RawId]:
        ids = self._ids
        return [ids[i - 1] for i in idx]

    # -- scoring ------------------------------------------------------------------------------
    @property
    def can_fallback(self) -> bool:
        return self._popular is not None

    @property
    def exclude_seen(self) -> bool:
        """Whether the model was evaluated with the history's items out of the ranking (its
        run's ``[eval] exclude_seen``, e.g. as ``warmrec auto`` chose it on validation): the
        default of :meth:`recommend`, ``predict`` and the service. False where not recorded."""
        return bool(self.model.excludes_seen())

    def _padded(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        from warmrec.data.sequences import pad_windows

        lens = np.array([len(h) for h in histories], dtype=np.int64)
        items = np.concatenate(histories) if len(histories) else np.zeros(0, dtype=np.int64)
        ends = np.cumsum(lens)
        return pad_windows(items, ends - lens, ends, self.history_len)

    def score_matrix(self, histories: Sequence[np.ndarray]) -> torch.Tensor:
        """Scores ``[B, n_items + 1]`` of encoded histories (each non-empty), as a fresh tensor."""
        from warmrec.data.dataset import Batch

        mat = self._padded(histories)
        if self._traced is not None and len(histories) == 1:
            with torch.inference_mode():
                out = self._traced(torch.from_numpy(mat)).float()
            return out.clone() if out._is_view() or not out.is_contiguous() else out
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = self.model.score(Batch(torch.from_numpy(mat)))
        out = out.float()
        # masking writes in place: copy only what may alias the model's state (a view, e.g.
        # Pop's expanded counts); a fresh output (a matmul's) is used as it is
        return out.clone() if out._is_view() or not out.is_contiguous() else out

    def recommend(
        self,
        history: Sequence[Any],
        k: int = 10,
        *,
        exclude_seen: bool | None = None,
        exclude: Sequence[Any] | None = None,
        restrict_to: Sequence[Any] | None = None,
        fallback: str | None = None,
    ) -> Ranked:
        """Top-``k`` raw ids and scores after one raw-id history (most recent last);
        ``exclude_seen`` None: as the model was evaluated (:attr:`exclude_seen`).

        Raises :class:`EmptyHistoryError` for a history with no known item unless
        ``fallback="popular"`` (the most frequent training items; scores are the counts)."""
        if exclude_seen is None:
            exclude_seen = self.exclude_seen
        idx, unknown = self.encode(list(history))
        fallback_used = False
        if len(idx) == 0:
            if fallback != "popular":
                shown = ", ".join(repr(x) for x in unknown[:5])
                more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
                what = (
                    "is empty" if not len(history) else f"has only unknown item ids ({shown}{more})"
                )
                raise EmptyHistoryError(
                    f"the history {what}: no item the model knows; "
                    "ask for fallback='popular' for the most popular training items"
                )
            if self._popular is None:
                raise EmptyHistoryError(
                    f"model '{self.model.name}' has no training item counts for "
                    "fallback='popular' (saved by an older warmrec)"
                )
            scores = self._popular.clone().unsqueeze(0)
            fallback_used = True
        ex = self.encode(list(exclude))[0] if exclude else None
        rs = self.encode(list(restrict_to))[0] if restrict_to is not None else None
        if not fallback_used and self._ranker is not None:
            return self._rank_sparse(idx, unknown, k, exclude_seen, ex, rs)
        if not fallback_used:
            scores = self.score_matrix([idx])
        vals, top = top_k(scores, k, seen=[idx] if exclude_seen else None, exclude=ex, restrict=rs)
        v, t = vals[0], top[0]
        keep = torch.isfinite(v)
        chosen = t[keep].numpy()
        filled = len(chosen) if fallback_used else self._filled(idx, chosen)
        return Ranked(
            self.decode(chosen.tolist()), v[keep].tolist(), unknown, fallback_used, filled
        )

    def _own_candidates(self, idx: np.ndarray) -> np.ndarray | None:
        """The items a sparse-scoring model (rules, kNN) scores itself after ``idx``, or None
        for a model without such scores or without the popularity fill."""
        from warmrec.data.dataset import Batch

        m = self.model
        if not hasattr(m, "candidate_scores") or not getattr(m.config, "pop_fallback", False):
            return None
        indptr, indices, data = m.candidate_scores(Batch(torch.from_numpy(self._padded([idx]))))
        lo, hi = indptr[0], indptr[1]
        return indices[lo:hi][data[lo:hi] > 0]

    def _filled(self, idx: np.ndarray, chosen: np.ndarray) -> int:
        own = self._own_candidates(idx)
        return 0 if own is None else int((~np.isin(chosen, own)).sum())

    def _rank_sparse(
        self,
        idx: np.ndarray,
        unknown: list[Any],
        k: int,
        exclude_seen: bool,
        ex: np.ndarray | None,
        rs: np.ndarray | None,
    ) -> Ranked:
        """:meth:`recommend` through the model's sparse scores (see :meth:`_sparse`)."""
        from warmrec.data.dataset import Batch

        if self._knn is not None:
            indices, data = self._knn.scores(idx)
            lo, hi = 0, len(indices)
        else:
            indptr, indices, data = self.model.candidate_scores(
                Batch(torch.from_numpy(self._padded([idx])))
            )
            lo, hi = indptr[0], indptr[1]
        parts = [p for p in (idx if exclude_seen else None, ex) if p is not None and len(p)]
        blocked = np.concatenate(parts) if parts else None
        cand, val = indices[lo:hi], data[lo:hi]
        vals, top = self._ranker.top_k(cand, val, k, blocked=blocked, allowed=rs)
        filled = int((~np.isin(top, cand[val > 0])).sum()) if self._ranker.fallback else 0
        return Ranked(self.decode(top.tolist()), vals.tolist(), unknown, False, filled)

    def warm_up(self, rounds: int = 3) -> None:
        """Score a few one-item and full-length histories (allocators, lazy init, caches).

        Raises :class:`~warmrec.errors.ModelError` when the scores are not finite: NaN or
        ``+inf`` for any item, or no finite score at all (``-inf`` alone marks an item that is
        never recommended, e.g. item2vec's unknown items)."""
        if self.n_items == 0:
            return
        short = np.array([1], dtype=np.int64)
        full = (np.arange(self.history_len, dtype=np.int64) % self.n_items) + 1
        for r in range(rounds):
            for h in (short, full):
                scores = self.score_matrix([h])
                if r == 0:
                    self._check_finite(scores[:, 1:], len(h))
                top_k(scores, 10)
            if self._ranker is not None:
                ranked = self._rank_sparse(full, [], 10, True, None, None)
                if r == 0:  # candidates only: an empty list is no damage
                    vals = torch.tensor(ranked.scores, dtype=torch.float64)
                    self._check_finite(vals, len(full), need_one=False)

    def _check_finite(self, scores: torch.Tensor, n: int, need_one: bool = True) -> None:
        bad = bool(torch.isnan(scores).any() or torch.isposinf(scores).any())
        if bad or (need_one and not bool(torch.isfinite(scores).any())):
            where = str(self.path) if self.path is not None else f"model '{self.model.name}'"
            raise ModelError(
                f"{where}: the model scores a {n}-item history with "
                f"{'NaN or +inf' if bad else 'no finite value'}; its weights are damaged "
                "(refused at load)"
            )

    def metadata(self) -> dict[str, Any]:
        """Model name, config, vocabulary size, versions, the directory's name (not its path: a
        client learns nothing of the server's file system) and when it was loaded."""
        from warmrec._version import __version__

        m = self.model
        cfg = m.config.model_dump(mode="json") if hasattr(m.config, "model_dump") else {}
        cfg = _without_paths(cfg)
        return {
            "model": m.name,
            "config": cfg,
            "n_items": self.n_items,
            "history_len": self.history_len,
            "item_id_type": "str" if self._is_str else "int",
            "popular_fallback": self.can_fallback,
            "exclude_seen": self.exclude_seen,
            "warmrec_version": __version__,
            "trained_with_version": self.trained_with,
            "model_dir": self.path.name if self.path else None,
            "loaded_at": self.loaded_at,
            "threads": torch.get_num_threads(),
            "engine": self.engine,
        }


MAX_SAFE_INT = 2**53 - 1
"""Integer ids beyond +-(2**53 - 1) (not exact in JSON numbers everywhere) are sent as strings,
both ways: a request gives them as canonical decimal strings, an answer names them so."""


def json_id(i: Any) -> Any:
    """An id as a JSON answer gives it (the service's and ``warmrec recommend --json``'s): an
    integer beyond +-(2**53 - 1) as its decimal string (a JSON number that large reads as
    another id in JavaScript; requests take the string)."""
    if isinstance(i, int) and not -MAX_SAFE_INT <= i <= MAX_SAFE_INT:
        return str(i)
    return i
