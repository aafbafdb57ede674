"""Item2Vec: gensim Word2Vec item embeddings used as a next-item recommender.

Sessions are treated as sentences of item tokens and a skip-gram (or CBOW) Word2Vec model with
negative sampling is trained on them, as in Barkan & Koenigstein, "Item2Vec: Neural Item Embedding
for Collaborative Filtering" (IEEE MLSP 2016). Caselles-Dupre, Lesaint & Royo-Letelier,
"Word2vec applied to Recommendation: Hyperparameters Matter" (RecSys 2018) showed that settings
left at their NLP defaults cost a lot in recommendation -- above all the exponent of the
negative-sampling distribution (``ns_exponent``: 0.75 in word2vec, while negative values, which
sample rare items more, did best on their music-listening data), the window, sub-sampling and the
number of epochs -- so all of them are config fields here. Sequences longer than gensim's
sentence limit (10,000 tokens) are cut into pieces rather than silently truncated.

Scoring. Item vectors (gensim's input vectors) are L2-normalised into a matrix ``[n_items, d]``
(row 0 and items without a vector are zero). A history's query is the recency-weighted mean of the
vectors of its last ``n_recent`` items (weight ``recency_decay ** lag``, lag 0 = most recent item;
items without a vector get weight 0), normalised; an item's score is its cosine with the query, a
single matmul for the whole batch. Item2Vec is not order-aware: it learns co-occurrence, not
"what comes next" (``learns_sequences = False``). Items of the history are scored like any other
item (they usually score highest); use ``exclude_seen`` in ``recommend``/``evaluate`` to drop them.

Documented choices:

- Items that never got a vector (not in the training data, below ``min_count``, or only ever
  alone in a training sequence, items below ``min_count`` left out: Word2Vec then trains no pair
  for them and their vector stays gensim's random init) and the padding column score ``-inf``: below every other item, never
  recommended, and a target among them ranks last in :func:`warmrec.evaluate`.
- A history with no item that has a vector (empty, or only unseen items) falls back to training
  popularity, scaled into ``(0, 1]``.
- Per-epoch training loss: gensim accumulates a cumulative float32 counter over the whole
  ``train()`` call; the callback resets it at the start of every epoch, which yields the same
  per-epoch delta without the counter saturating on large corpora. It is gensim's summed negative
  log-likelihood of the epoch, a diagnostic, not comparable across corpus sizes.
- Determinism: with ``workers=1`` the same ``seed`` gives the same vectors (gensim seeds its vector
  initialisation and its sampling from ``seed``; more workers make the order of updates vary).
- Vectors are normalised here, not with gensim's ``get_normed_vectors`` (it caches the norms of
  its first call, which would be stale in later epochs). The saved state is ``vectors``,
  ``known`` (which items have a vector) and ``counts`` (training popularity, for the fallback).
- gensim (the optional extra ``warmrec[item2vec]``) is needed only by ``fit``: a saved model loads
  and scores with torch alone. Nothing is saved with gensim's pickle-based ``save``; the state is
  the normalised vector matrix in safetensors.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field

from warmrec.config import ConfigModel
from warmrec.data.dataset import Batch, EvalSet, SequenceDataset
from warmrec.errors import ModelError
from warmrec.evaluation.evaluate import evaluate
from warmrec.models.base import Recommender
from warmrec.models.catalogue import NoEvidenceItems, pad
from warmrec.models.layers import offset_items_
from warmrec.models.state import counts_from_state
from warmrec.registry import register_model

# gensim silently truncates sentences longer than this many tokens; longer sequences are cut.
_MAX_SENTENCE = 10_000


class Item2VecConfig(ConfigModel):
    """Settings of :class:`Item2Vec`: Word2Vec's (passed to gensim), then scoring and validation.

    ``seen_offset`` is added to the score of every item among the last ``seen_len`` history items.
    Word2Vec has no way to learn whether a domain repeats items, and a history item is always
    the closest item to a query built from it. Cosines lie in [-1, 1], so -2 puts every seen item
    below every unseen one. Choose it on validation like any other setting; 0 (the default)
    changes nothing.
    """

    vector_size: int = Field(64, ge=1)
    """Embedding width."""
    window: int = Field(5, ge=1)
    """Context window (items on each side)."""
    min_count: int = Field(1, ge=1)
    """Items seen fewer times are dropped."""
    sg: bool = True
    """Skip-gram (True) or CBOW (False)."""
    negative: int = Field(5, ge=1)
    """Negative samples per positive (negative sampling)."""
    ns_exponent: float = 0.75
    """Exponent of the negative-sampling distribution (Caselles-Dupre et al. 2018)."""
    epochs: int = Field(10, ge=1)
    """Passes over the sequences."""
    alpha: float = Field(0.025, gt=0)
    """Initial learning rate (decayed linearly to ``min_alpha``)."""
    min_alpha: float = Field(0.0001, ge=0)
    """Final learning rate."""
    sample: float = Field(1e-3, ge=0)
    """Sub-sampling threshold of frequent items."""
    workers: int = Field(1, ge=1)
    """gensim worker threads (1 for determinism)."""
    seed: int = 0
    """Random seed."""
    n_recent: int = Field(5, ge=1)
    """Most recent history items forming the query."""
    recency_decay: float = Field(0.5, gt=0, le=1)
    """The query weighs the item ``lag`` steps back ``recency_decay ** lag``."""
    eval_k: int = Field(20, ge=1)
    """The K of the Recall@K / MRR@K recorded on validation per epoch."""
    keep_best: bool = True
    """Keep the vectors of the epoch with the best validation MRR@K."""
    seen_offset: float = Field(0.0, allow_inf_nan=False)
    """Added to the score of items among the last ``seen_len`` history items (0 = off)."""
    seen_len: int = Field(200, ge=1)
    """History items the seen offset covers."""


def _bounds(train: SequenceDataset) -> np.ndarray:
    """Where the sentences of :func:`_sentences` start in ``train.sequences.items``, and the
    end: each sequence cut every ``_MAX_SENTENCE`` items."""
    seqs = train.sequences
    pos = np.arange(seqs.n_events, dtype=np.int64)
    within = pos - np.repeat(seqs.offsets[:-1], seqs.lengths)
    return np.append(np.flatnonzero(within % _MAX_SENTENCE == 0), seqs.n_events)


def _sentences(train: SequenceDataset) -> list[list[str]]:
    """Training sequences as lists of str item-index tokens, cut every ``_MAX_SENTENCE`` items."""
    tokens = train.sequences.items.astype(str)
    bounds = _bounds(train)
    return [tokens[a:b].tolist() for a, b in zip(bounds[:-1], bounds[1:])]


def _in_context(train: SequenceDataset, kept: np.ndarray) -> np.ndarray:
    """``[n_items]`` bool: the items of some training sentence holding two or more ``kept``
    items (``[n_items]`` bool, gensim's vocabulary: it drops the others from its sentences). A
    sentence of one item gives Word2Vec no (item, context) pair, so an item only ever alone
    keeps gensim's random initial vector."""
    items = train.sequences.items
    lengths = np.diff(_bounds(train))
    sentence = np.repeat(np.arange(len(lengths)), lengths)
    k = kept[items]
    n_kept = np.bincount(sentence[k], minlength=len(lengths))
    out = np.zeros(len(train.vocab), dtype=bool)
    out[items[k & (n_kept[sentence] >= 2)]] = True
    return out


@register_model("item2vec")
class Item2Vec(NoEvidenceItems, Recommender):
    """Word2Vec item embeddings; scores are cosines to a recency-weighted history query."""

    Config = Item2VecConfig
    learns_sequences: ClassVar[bool] = False
    requires: ClassVar[tuple[str, ...]] = ("gensim",)  # to fit; loading and scoring need torch only
    test_config: ClassVar[dict[str, Any]] = {
        "vector_size": 16,
        "window": 3,
        "epochs": 5,
        "sample": 0.0,
        "n_recent": 3,
    }

    @property
    def history_len(self) -> int:
        c = self.config
        return max(c.n_recent, c.seen_len) if c.seen_offset else int(c.n_recent)

    # -- training ---------------------------------------------------------------------------
    def fit(
        self,
        train: SequenceDataset,
        valid: EvalSet | None = None,
        *,
        callbacks: Sequence[Callable[[int, dict[str, Any], Any], bool | None]] = (),
    ) -> Item2Vec:
        """Train Word2Vec on the training sequences; record loss (and validation metrics).

        Each callback is called as ``callback(epoch, record, model)`` after every epoch, the
        model holding that epoch's vectors (the training loop's convention). gensim cannot stop
        between epochs, so returning True is ignored; an exception (a tuner's pruning signal)
        ends training and propagates."""
        try:
            from gensim.models import Word2Vec
            from gensim.models.callbacks import CallbackAny2Vec
        except ImportError as e:  # pragma: no cover - gensim is a dev dependency
            raise ModelError(
                "model 'item2vec' needs gensim to fit: pip install 'warmrec[item2vec]'"
            ) from e
        if train.sequences.n_events == 0:
            raise ModelError("item2vec: the training data has no events")
        if valid is not None and valid.n_items != len(train.vocab):
            raise ModelError(
                f"item2vec: validation set has {valid.n_items} item columns, "
                f"expected {len(train.vocab)} (built with the training vocabulary)"
            )
        self._bind(train)
        cfg = self.config
        self.counts = torch.from_numpy(train.item_counts()).float()
        self.history: list[dict[str, float]] = []
        metrics = (f"recall@{cfg.eval_k}", f"mrr@{cfg.eval_k}")
        best: dict[str, Any] = {"mrr": -1.0, "epoch": None, "state": None}
        model_ref = self

        class _EpochLog(CallbackAny2Vec):
            """Per-epoch loss and validation metrics, and the best epoch's vectors."""

            def __init__(self) -> None:
                self.epoch = 0

            def on_epoch_begin(self, w2v: Any) -> None:
                w2v.running_training_loss = 0.0

            def on_epoch_end(self, w2v: Any) -> None:
                self.epoch += 1
                row: dict[str, float] = {
                    "epoch": self.epoch,
                    "loss": float(w2v.get_latest_training_loss()),
                }
                if valid is not None:
                    model_ref._set_vectors(w2v.wv)
                    res = evaluate(model_ref, valid, metrics)
                    row.update({m: float(res[m]) for m in metrics})
                    if row[metrics[1]] > best["mrr"]:
                        best.update(mrr=row[metrics[1]], epoch=self.epoch)
                        if cfg.keep_best:
                            best["state"] = (model_ref.vectors.clone(), model_ref.known.clone())
                model_ref.history.append(row)
                if callbacks:
                    if valid is None:
                        model_ref._set_vectors(w2v.wv)
                    for cb in callbacks:
                        cb(self.epoch, dict(row), model_ref)

        w2v = Word2Vec(
            vector_size=cfg.vector_size,
            window=cfg.window,
            min_count=cfg.min_count,
            sg=int(cfg.sg),
            hs=0,
            negative=cfg.negative,
            ns_exponent=cfg.ns_exponent,
            alpha=cfg.alpha,
            min_alpha=cfg.min_alpha,
            sample=cfg.sample,
            workers=cfg.workers,
            seed=cfg.seed,
            compute_loss=True,
        )
        sentences = _sentences(train)
        w2v.build_vocab(sentences)
        if len(w2v.wv) == 0:
            raise ModelError(
                f"item2vec: no item occurs at least min_count={cfg.min_count} times in training"
            )
        kept = np.zeros(len(self.vocab), dtype=bool)
        kept[np.asarray(w2v.wv.index_to_key).astype(np.int64)] = True
        self._context = torch.from_numpy(_in_context(train, kept))
        if not bool(self._context.any()):  # every item would score -inf: nothing to rank
            raise ModelError(
                "item2vec: no training sequence holds two items that occur at least "
                f"min_count={cfg.min_count} times: Word2Vec has no (item, context) pair to learn"
            )
        w2v.train(
            sentences,
            total_examples=w2v.corpus_count,
            epochs=cfg.epochs,
            compute_loss=True,
            callbacks=[_EpochLog()],
        )
        self._set_vectors(w2v.wv)
        kept_epoch = cfg.epochs
        if best["state"] is not None:
            self.vectors, self.known = best["state"]
            kept_epoch = best["epoch"]
        # best_epoch: by validation MRR@K (None without validation); kept_epoch: whose vectors
        # the model holds (the best one with keep_best, else the last)
        self.meta.history = copy.deepcopy(self.history)
        self.meta.best_epoch = best["epoch"]
        self.meta.kept_epoch = kept_epoch
        return self

    def _set_vectors(self, wv: Any) -> None:
        """Normalised gensim vectors -> ``vectors [n_items, d]`` and ``known [n_items]``: the
        items of gensim's vocabulary that some training sentence gives a neighbour (the others'
        vectors are gensim's random init: they are left out, as items without a vector)."""
        n = len(self.vocab)
        idx = np.asarray(wv.index_to_key).astype(np.int64)
        mat = torch.zeros(n, wv.vector_size)
        # normalised here: gensim's get_normed_vectors caches norms from its first call
        vecs = torch.from_numpy(np.array(wv.vectors, dtype=np.float32))
        mat[torch.from_numpy(idx)] = torch.nn.functional.normalize(vecs, dim=1)
        known = torch.zeros(n, dtype=torch.bool)
        known[torch.from_numpy(idx)] = True
        known &= self._context
        mat[~known] = 0.0
        self.vectors, self.known = mat, known

    # -- scoring ----------------------------------------------------------------------------
    def score(self, batch: Batch) -> torch.Tensor:
        """Cosine of every item to the history query; ``[B, n_items]`` float32 (see module doc)."""
        self._check_fitted()
        items = batch.items[:, -self.config.n_recent :].long().cpu()
        length = items.shape[1]
        lag = torch.arange(length - 1, -1, -1, dtype=torch.float32)
        w = (self.config.recency_decay**lag).unsqueeze(0) * self.known[items].float()  # [B, L]
        query = torch.einsum("bl,bld->bd", w, self.vectors[items])
        query = torch.nn.functional.normalize(query, dim=1)
        scores = query @ self.vectors.T
        empty = w.sum(1) == 0
        if empty.any():
            pop = self.counts / self.counts.max().clamp_min(1.0)
            scores[empty] = pop.unsqueeze(0).expand(int(empty.sum()), -1)
        if self.config.seen_offset:
            seen = batch.items[:, -self.config.seen_len :].long().cpu()
            offset_items_(scores, seen, self.config.seen_offset)
        scores.masked_fill_(~self.known, -torch.inf)
        return scores

    # -- state ------------------------------------------------------------------------------
    def get_state(self) -> dict[str, torch.Tensor]:
        return {"vectors": self.vectors, "known": self.known, "counts": self.counts}

    def set_state(self, state: dict[str, torch.Tensor]) -> None:
        for key in ("vectors", "known", "counts"):
            if key not in state:
                raise ModelError(f"item2vec state lacks '{key}' (found: {', '.join(state)})")
        n = len(self.vocab) if self.vocab is not None else state["vectors"].shape[0]
        if state["vectors"].shape[0] != n or state["known"].shape != (n,):
            raise ModelError(
                f"item2vec state has {state['vectors'].shape[0]} item rows, expected {n} "
                "(one per vocabulary index, padding included)"
            )
        self.vectors = state["vectors"].float()
        self.known = state["known"].bool()
        self.counts = counts_from_state(state, len(self.vocab) if self.vocab is not None else None)
        self.history = list(self.meta.history or [])

    def _extend_items(self, n_new: int) -> None:
        # new items: no vector (never in a training sentence), so unknown, as gensim's
        self.vectors = pad(self.vectors, n_new)
        self.known = pad(self.known, n_new, False)
        self.counts = pad(self.counts, n_new)
