"""The Recommender protocol and the small base class every model shares.

A model offers ``fit(train, valid=None) -> self`` and ``score(batch) -> Tensor[B, n_items]``
(higher is better; column 0 is padding). The base class adds ``recommend`` (raw ids in, top-k raw
ids out, with exclusions), and ``save``/``load`` as a directory in the one artifact format of
:mod:`warmrec.artifacts`: ``model.safetensors`` (weights or statistics), ``config.json`` (model
name, config, warmrec version, the typed :class:`~warmrec.artifacts.ModelMeta`) and
``vocab.json``. Nothing is pickled; writes are atomic.

Subclasses implement ``fit``, ``score``, ``get_state`` (name -> array) and ``set_state``.
A constructor stores its config and nothing else.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch

from warmrec.artifacts import ModelMeta
from warmrec.config import ConfigModel, build_config
from warmrec.data.dataset import Batch, EvalSet, SequenceDataset
from warmrec.data.sequences import pad_windows
from warmrec.data.vocab import ItemVocab
from warmrec.errors import ModelError, WarmrecWarning
from warmrec.models.settings import HistorySettings


class UnknownItemWarning(WarmrecWarning):
    """A history named items the model's vocabulary does not know; they were ignored."""


def _listlike(x: Any) -> bool:
    return hasattr(x, "__len__") and hasattr(x, "__iter__") and not isinstance(x, dict)


def _check_histories(histories: Any) -> None:
    """A list of histories, each a list of raw ids: a flat list of ids (one history without
    its brackets) or a string is refused, naming the argument."""
    if isinstance(histories, str | bytes) or not _listlike(histories):
        raise ModelError(
            "histories: expected a list of histories (lists of raw item ids, e.g. [[50, 172]]), "
            f"found {type(histories).__name__}"
        )
    for j, h in enumerate(histories):
        if isinstance(h, str | bytes) or not _listlike(h):
            raise ModelError(
                f"histories[{j}]: expected a list of raw item ids (one history: [[50, 172]], "
                f"not [50, 172]), found {type(h).__name__} {h!r}"
            )


@runtime_checkable
class RecommenderProtocol(Protocol):
    def fit(self, train: SequenceDataset, valid: EvalSet | None = None) -> Any: ...
    def score(self, batch: Batch) -> torch.Tensor: ...


class NoConfig(ConfigModel):
    """Models without settings."""


class Recommender:
    """Base class: config handling, recommend, save and load."""

    name: ClassVar[str] = "base"
    Config: ClassVar[type[ConfigModel]] = NoConfig
    fits_on_validation: ClassVar[bool] = False
    """Whether ``fit`` fits parameters to the validation targets (weights, a mixing share), not
    only stops or selects on them: its validation score is then in sample, and a search that
    compares it with other models (``warmrec auto``) scores it out of fold instead."""

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        self.config = build_config(self.Config, config, **overrides)
        self.vocab: ItemVocab | None = None
        self.user_vocab: ItemVocab | None = None
        self.meta: ModelMeta = ModelMeta()

    # -- to implement -------------------------------------------------------------------------
    def fit(self, train: SequenceDataset, valid: EvalSet | None = None) -> Recommender:
        """Learn from ``train`` (its sequences, vocabulary and feature tables); ``valid``, where
        given, is what the model selects and stops on (neural models, and the models that fit
        weights on it: :attr:`fits_on_validation`). Returns the fitted model itself."""
        raise NotImplementedError

    def score(self, batch: Batch) -> torch.Tensor:
        """Scores ``[batch, n_items + 1]`` for the padded histories of ``batch`` (column 0, the
        padding index, is never ranked); higher is better. What :func:`warmrec.evaluate`,
        :meth:`recommend` and the service rank."""
        raise NotImplementedError

    def get_state(self) -> dict[str, torch.Tensor | np.ndarray]:
        """The fitted state as named tensors or arrays (what :meth:`save` writes)."""
        raise NotImplementedError

    def set_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the state :meth:`get_state` gave (what :meth:`load` reads)."""
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------------
    def __repr__(self) -> str:
        vocab = getattr(self, "vocab", None)
        state = f"fitted on {len(vocab) - 1:,} items" if vocab is not None else "not fitted"
        return f"{type(self).__name__}('{self.name}', {state})"

    @property
    def n_items(self) -> int:
        self._check_fitted()
        return len(self.vocab)

    @property
    def history_len(self) -> int:
        """How many recent items of a history ``score`` looks at (the config's ``max_len``,
        else 50)."""
        c = self.config
        return c.max_len if isinstance(c, HistorySettings) else 50

    @property
    def is_fitted(self) -> bool:
        return self.vocab is not None

    def _check_fitted(self) -> None:
        if self.vocab is None:
            raise ModelError(f"model '{self.name}' is not fitted: call fit() or load() first")

    def _bind(self, train: SequenceDataset) -> None:
        """Remember the training vocabularies and item counts (call at the start of ``fit``);
        the counts (``meta.item_counts``) rank ``recommend(..., fallback="popular")``."""
        self.vocab = train.vocab
        self.user_vocab = train.user_vocab
        self.meta.item_counts = train.item_counts().astype(np.int64).tolist()
        self._bind_users(train)

    def _bind_users(self, train: SequenceDataset) -> None:
        """Note what the model needs of ``train``'s users beyond their vocabulary before its
        net is built (SSE-PT: which users have training sequences); nothing by default. Called
        by :meth:`_bind`, so also where a model is bound without its own ``_bind`` (a transfer
        target keeps the source's feature encoding)."""

    def fit_choices(self) -> dict[str, str]:
        """What the last ``fit`` chose on its own (fusion weights, features kept, steps taken),
        each as a short text, for the run record and ``warmrec train``'s output; ``{}`` where
        nothing was chosen."""
        return {}

    def excludes_seen(self) -> bool:
        """Whether the model was evaluated with the history's items out of the ranking (its
        run's ``[eval] exclude_seen``, e.g. as ``warmrec auto`` chose it on validation); False
        where no run is recorded."""
        run = getattr(self.meta, "run", None)
        spec = getattr(run, "spec", None) or {}
        return bool((spec.get("eval") or {}).get("exclude_seen", False))

    def encode_histories(self, histories: Sequence[Sequence[Any]]) -> Batch:
        """Raw-id histories -> a scoring batch; unknown items are dropped with a warning."""
        self._check_fitted()
        _check_histories(histories)
        enc, unknown = [], []
        for h in histories:
            idx = self.vocab.lookup(h)
            unknown.extend(x for x, i in zip(h, idx) if i == 0)
            enc.append(idx[idx > 0])
        if unknown:
            warnings.warn(
                f"{len(unknown)} unknown item id(s) ignored, e.g. {unknown[0]!r}",
                UnknownItemWarning,
                stacklevel=3,
            )
        lens = np.array([len(e) for e in enc], dtype=np.int64)
        items = np.concatenate(enc) if enc else np.zeros(0, dtype=np.int64)
        ends = np.cumsum(lens)
        mat = pad_windows(items, ends - lens, ends, max(self.history_len, 1))
        return Batch(torch.from_numpy(mat))

    def recommend(
        self,
        histories: Sequence[Sequence[Any]],
        k: int = 10,
        *,
        exclude_seen: bool | None = None,
        exclude: Sequence[Any] | None = None,
        restrict_to: Sequence[Any] | None = None,
        fallback: str | None = None,
        scores: bool = False,
    ) -> list[list[Any]]:
        """Top-``k`` raw item ids for each raw-id history (most recent item last):
        ``histories`` is a list of histories (``[[50, 172, 133]]`` for one). ``exclude``: raw
        ids never returned; ``restrict_to``: only these may be returned (a candidate set;
        unknown ids in either are ignored); ``scores``: ``(id, score)`` pairs instead of ids.

        ``exclude_seen`` None: as the model was evaluated (:meth:`excludes_seen`: its run's
        ``eval.exclude_seen``, False for a model fitted in Python), as ``warmrec recommend``,
        ``predict`` and the service do. A history with no item the model knows (empty, or only
        unknown ids) raises :class:`ModelError`, unless ``fallback="popular"``: it then gets
        the most frequent training items (``meta.item_counts``)."""
        if exclude_seen is None:
            exclude_seen = self.excludes_seen()
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ModelError(f"k: expected a whole number >= 1, found {k!r}")
        if fallback not in (None, "popular"):
            raise ModelError(f"fallback: expected None or 'popular', found {fallback!r}")
        batch = self.encode_histories(histories)
        empty = (batch.items == 0).all(dim=1)
        if bool(empty.any()) and fallback is None:
            where = f"history {int(empty.nonzero()[0, 0])}" if len(histories) > 1 else "the history"
            raise ModelError(
                f"{where} has no item the model knows (empty, or only unknown ids); "
                "pass fallback='popular' for the most popular training items"
            )
        with torch.no_grad():
            matrix = self.score(batch).float().clone()
        if bool(empty.any()):
            counts = self.meta.item_counts
            if counts is None or len(counts) != matrix.shape[1]:
                raise ModelError(
                    f"model '{self.name}' has no training item counts (meta.item_counts) "
                    "for fallback='popular': fit or save it with this version of warmrec"
                )
            matrix[empty] = torch.as_tensor(counts, dtype=matrix.dtype)
        from warmrec.models.ranking import top_k

        seen = [self.vocab.lookup(h) for h in histories] if exclude_seen else None
        ex = self.vocab.lookup(exclude) if exclude else None  # the whole history, not only
        rs = None  # the last history_len items scored
        if restrict_to is not None:
            rs = self.vocab.lookup(restrict_to)
            rs = rs[rs > 0]
        vals, idx = top_k(matrix, k, seen=seen, exclude=ex, restrict=rs)
        out = []
        for row_v, row_i in zip(vals, idx):
            keep = torch.isfinite(row_v)
            ids = self.vocab.decode(row_i[keep].numpy())
            out.append(list(zip(ids, row_v[keep].tolist())) if scores else ids)
        return out

    def save(self, path: str | Path) -> Path:
        """Write the model directory atomically (:mod:`warmrec.artifacts`); returns its path."""
        from warmrec.artifacts import save_model

        return save_model(self, path)

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        """Load a model directory written by :meth:`save` (any registered model from the base)."""
        from warmrec.artifacts import load_model

        return load_model(path, None if cls is Recommender else cls)
