"""FeatRank: a log-linear ranker over item-agnostic features, its weights fitted, not searched.

Every (history, item) pair gets a handful of features that do not name the item, so they reach
items with no training events as they reach the others; the score is their weighted sum::

    score(i | h) = sum_f w_f * phi_f(h, i)

- ``base``: a base model's scores, normalised per list (``"zscore"``; TF-IDF over the item text
  by default, any registered model);
- ``markov`` (``transitions``, on by default): ``log(1 + n)``, ``n`` the training transitions
  from the last history item to the item (``transition_steps``: also to later events, each
  1 / gap), cross-fitted on the training prefixes (a prefix reads the counts of the other folds
  of sequences, so the first step does not see its own answer);
- ``order`` (integer item ids in publication order): ``p(id(i) - id(last(h)))``, the share of
  training transitions with that id offset (as :mod:`warmrec.models.fresh`; cross-fitted as
  ``markov``);
- ``seen``: 1 on the last ``seen_window`` history items; ``last``: 1 on the last one;
- ``tag:F`` for each categorical item field ``F`` (a string or a list of strings: software,
  theme, difficulty, ...): how much of the recent history (``decay ** age`` over the last
  ``recent`` items) shares the item's values;
- ``pop``: the item's training count (``log1p``, z-scored; 0 for items without events;
  cross-fitted as ``markov``: a training prefix reads the other folds' counts, scaled up);
- ``gap:F`` for each numeric field in ``gap_fields`` (e.g. a publication year): minus the
  distance between the item's value and the last history item's, over the field's spread (by
  default the fields that date an item, kept where they pay on validation);
- ``cold`` (no training event), ``cold*share`` (times ``c(h)``, the recency-weighted share of
  such items in the recent history) and ``cold*base``.

:meth:`FeatRank.fit` fits the weights by softmax cross-entropy over the catalogue (L-BFGS; a
uniform sample of ``negatives`` items plus the target where the catalogue is larger), in three
steps: the item-agnostic weights on prefixes of the training sequences (at most
``max_fit_events``); the cold weights on the validation targets (the only targets that can fall
on an item without training events), weighed by ``cold_target_share`` as in Fresh; then every
weight on validation, pulled towards the second step's by an L2 penalty (``l2``), where that
last step raises the validation NDCG@10 out of fold (``refit``: it pays where validation comes
from another period than the training sequences, not where it is one more step of the same
ones). Without a validation set the cold weights stay 0. It is Fresh's idea -- a model of how
learners move through a catalogue that keeps growing -- with more signals and weights that are
fitted rather than searched on a grid (14 on MARS: a grid would not do). The fit's catalogue is
the items known when it runs (:func:`~warmrec.models.known.known_mask`: training or validation
events, or the item table): an item that only test events bring is no softmax candidate, not
in the base's normalisation nor in the catalogue's cold share; scoring ranks every item, the
base's scores normalised with the statistics of those known items alone applied to every item
(:func:`~warmrec.models.hybrid.normalise_known`), so that the base feature means the same as in
the fit: an item that only the test events bring, or one added later, does not move the known
items' features.

Scoring builds one ``[B, n_items]`` column per feature, histories in chunks of about 4 million
item scores per column; the fit holds its rows' features (at most 200 million values).

Saved state: the base's (prefixed ``base.``), the weights, the cold mask, the popularity
feature, the order prior and ids, each tag field's item-value incidence with its values (so
that added items reuse them), each gap field's values with their spread and, where some item
was not known at fit time, the known items (``known``; a model saved without it scores as if
every item were known, as before).
"""

from __future__ import annotations

import datetime as dt
import inspect
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import polars as pl
import torch
from pydantic import Field

from warmrec.data.dataset import Batch, EvalSet, SequenceDataset, sequence_halves
from warmrec.errors import ModelError
from warmrec.evaluation import metrics as M
from warmrec.models.base import Recommender
from warmrec.models.fresh import (
    ColdShareSettings,
    base_scores,
    cold_mask,
    cold_share,
    fit_base,
    known_mask,
    load_base,
    numeric_ids,
    order_prior,
    order_term,
    resolve_share,
    seen_term,
)
from warmrec.models.hybrid import Fusion, target_ranks
from warmrec.models.known import grown_known, saved_known
from warmrec.registry import register_model

FOLDS = 5
"""Folds of training sequences the ``markov`` feature is cross-fitted over."""

MAX_TAG_VALUES = 2000
"""A field with more distinct values than this (or than half the items) is not a tag field."""


class FeatRankConfig(ColdShareSettings):
    """The base model, the feature windows and fields, and how the weights are fitted."""

    base: str = "tfidf"
    """Registered name of the base model (its normalised scores are the ``base`` feature). A
    content base (TF-IDF) scores the training prefixes of the first step as it scores unseen
    histories; a base that learns from the events (Markov, SR, a network) has seen them, so its
    weight from that step is too high and the validation steps correct it only in part (on
    MARS under leave-one-out, SR as the base: test NDCG@10 0.397 against SR's own 0.411)."""
    base_config: dict[str, Any] = {}
    """The base model's config."""
    fusion: Fusion = "zscore"
    """Per-list normalisation of the base's scores."""
    recent: int = Field(5, ge=1)
    """History items read by the tag features and ``c(h)``."""
    decay: float = Field(0.5, gt=0, le=1)
    """Weight of the ``k``-th most recent of them: ``decay ** k``."""
    order_window: int | None = None
    """Catalogue order: id offsets ``0 < |d| <= order_window`` (0: off; None: 5 where the item
    ids are integers, else off)."""
    transitions: bool = True
    """A ``markov`` feature: ``log(1 + n)``, ``n`` the training transitions from the last
    history item to the item (to another item, within a sequence), cross-fitted on the
    training prefixes (:data:`FOLDS` folds of sequences: each fold's prefixes read the other
    folds' counts, scaled up to the whole). On by default: on MARS it lifted the validation
    NDCG@10 under both protocols (leave-one-out and the time split; see
    ``benchmarks/results/mars.md``, section ``featrank``)."""
    transition_steps: int = Field(3, ge=1)
    """The ``markov`` feature's pairs: events of a sequence up to this many steps apart, each
    counting ``1 / gap`` (as the sequential rules); 1: consecutive events only. On MARS 3 lifts
    the first step's out-of-sample validation NDCG@10 under both protocols (by 0.0030, standard
    error 0.0016 over the learners, under leave-one-out; by 0.0032, 0.0027, on the time split;
    ``benchmarks/results/mars.md``, section ``featrank``, row ``steps-1``)."""
    seen_window: int = Field(50, ge=0)
    """``seen``: the last ``seen_window`` history items (0: no ``seen``/``last`` features)."""
    tag_fields: list[str] | None = None
    """Categorical item fields of the ``tag:F`` features; None: every string or list-of-strings
    item field with 2 to 2,000 distinct values and at most half as many as there are items (so
    not a title or a description)."""
    gap_fields: list[str] | Literal["auto"] = "auto"
    """Numeric item fields of the ``gap:F`` features (e.g. ``["year"]``). ``"auto"``: the
    fields that say when an item was published (:func:`time_fields`: a date, or integers that
    all read as years), each kept only where it raises the first step's validation NDCG@10
    (weights fitted on the training prefixes with and without the gap features, scored on the
    validation targets, which they have not seen); none without a validation set. Counts such
    as a video's views are never candidates: a lifetime count is known only after the period
    it counts. On MARS the publication year is kept under both protocols
    (``benchmarks/results/mars.md``, section ``featrank``)."""
    negatives: int = Field(1024, ge=1)
    """Items sampled (uniformly) besides the target in the fitting softmax when the catalogue
    has more items than this; otherwise the whole catalogue."""
    max_fit_events: int = Field(20000, ge=1)
    """Training prefixes (and validation targets) fitted at most (a uniform sample; fewer
    where their features would pass 200 million values)."""
    l2: float = Field(0.01, ge=0)
    """Penalty on the last step's distance to the second step's weights."""
    refit: Literal["auto"] | bool = "auto"
    """The last step (every weight refitted on validation): ``"auto"`` keeps it only where it
    raises the validation NDCG@10 out of fold (the validation sequences in two random halves,
    the second and last steps fitted on one half and scored on the other, both ways; the
    cold targets weighed as in the fit); True: always; False: never (the first step's weights
    with the cold ones from validation). On MARS the refit pays on the time split (the
    validation months differ from the training years) and costs under leave-one-out, where
    validation is one more step of the same sequences (``benchmarks/results/mars.md``)."""
    fit_valid: bool = True
    """Whether the validation targets fit weights (the cold ones, the gap fields' choice, the
    refit) and count as known items. False: every weight is fitted on the training sequences
    alone, as a network's are, and validation only measures the model (early stopping and
    selection elsewhere read it as they read any model's): the cold weights stay 0, no gap
    field is kept, there is no refit. For comparisons where validation is larger than the
    training data (a learning curve's small fractions keep the full validation set)."""
    seed: int = 0
    """Seed of the samples."""


def _fields_where(features: pl.DataFrame | None, keep: Callable[[pl.Series], bool]) -> list[str]:
    """The item fields (``item_id`` aside) whose column ``keep`` accepts, sorted."""
    if features is None:
        return []
    return sorted(n for n in features.columns if n != "item_id" and keep(features[n]))


def tag_fields(features: pl.DataFrame | None, n_items: int) -> list[str]:
    """The item fields that make tag features by default (see ``FeatRankConfig.tag_fields``)."""

    def is_tag(col: pl.Series) -> bool:
        if col.dtype == pl.List(pl.String):
            col = col.explode()
        elif col.dtype != pl.String:
            return False
        return 2 <= col.drop_nulls().n_unique() <= min(MAX_TAG_VALUES, n_items // 2)

    return _fields_where(features, is_tag)


def _by_item(features: pl.DataFrame, vocab: Any, name: str, missing_ok: bool = False) -> list[Any]:
    """The values of field ``name`` in the vocabulary's index order (None: padding, missing;
    all None if the table lacks the field and ``missing_ok``)."""
    if name not in features.columns:
        if missing_ok:
            return [None] * len(vocab)
        raise ModelError(f"featrank: no item field {name!r}; the item table has {features.columns}")
    where = dict(zip(features["item_id"].to_list(), features[name].to_list(), strict=True))
    return [None] + [where.get(i) for i in vocab.ids.to_list()]


def tag_incidence(
    values: list[Any], index: dict[str, int] | None = None
) -> tuple[torch.Tensor, dict[str, int]]:
    """``([2, nnz] (item index, value index) pairs, value -> index)`` of one field's values by
    item (a string, a list of strings or None; a value listed twice counts once); ``index``
    extended (a copy) if given."""
    index = dict(index or {})
    rows, cols = [], []
    for i, v in enumerate(values):
        seen: set[int] = set()
        for t in v if isinstance(v, list) else ([] if v is None else [v]):
            if t is None:
                continue
            col = index.setdefault(str(t), len(index))
            if col not in seen:
                seen.add(col)
                rows.append(i)
                cols.append(col)
    return torch.tensor([rows, cols], dtype=torch.int64).reshape(2, -1), index


def _packed(values: list[str]) -> torch.Tensor:
    """The strings ``values`` as one uint8 tensor (UTF-8, NUL-separated), for the weights file."""
    return torch.tensor(list("\0".join(values).encode()), dtype=torch.uint8)


def _unpacked(t: torch.Tensor) -> list[str]:
    raw = bytes(t.tolist()).decode()
    return raw.split("\0") if raw else []


def transition_counts(
    train: SequenceDataset, n_items: int, sequences: np.ndarray | None = None, steps: int = 1
) -> torch.Tensor:
    """``[n_items, n_items]`` sparse counts of the training transitions ``i -> j`` (two events
    of a sequence on different items, ``g <= steps`` events apart, each counting ``1 / g``: the
    sequential rules' weighting), over the sequences where the bool mask ``sequences`` is True
    (all without it)."""
    seq = train.sequences
    items = torch.from_numpy(np.array(seq.items, dtype=np.int64))
    offs = np.asarray(seq.offsets, dtype=np.int64)
    sid = torch.from_numpy(np.repeat(np.arange(len(offs) - 1), np.diff(offs)))
    keep = None if sequences is None else torch.from_numpy(np.asarray(sequences, dtype=bool))
    index, values = [], []
    for g in range(1, steps + 1):
        ok = (sid[g:] == sid[:-g]) & (items[g:] != items[:-g])
        if keep is not None:
            ok &= keep[sid[:-g]]
        index.append(torch.stack([items[:-g][ok], items[g:][ok]]))
        values.append(torch.full((int(ok.sum()),), 1.0 / g))
    return _sparse(torch.cat(index, dim=1), torch.cat(values), n_items)


def _sparse(index: torch.Tensor, values: torch.Tensor, n_items: int) -> torch.Tensor:
    """A coalesced ``[n_items, n_items]`` COO tensor, its invariants checked."""
    return torch.sparse_coo_tensor(
        index, values, (n_items, n_items), check_invariants=True
    ).coalesce()


YEARS = (1800, 2200)
"""Integers all within these bounds (inclusive) read as years (:func:`time_fields`)."""


def time_fields(features: pl.DataFrame | None) -> list[str]:
    """The item fields that say when an item was published: a date or datetime, or integers
    that all read as years (:data:`YEARS`) with at least two distinct values; sorted. The
    candidates of ``gap_fields = "auto"``."""

    def is_time(col: pl.Series) -> bool:
        col = col.drop_nulls()
        if col.n_unique() < 2:
            return False
        if col.dtype == pl.Date or isinstance(col.dtype, pl.Datetime):
            return True
        return col.dtype.is_integer() and YEARS[0] <= col.min() and col.max() <= YEARS[1]

    return _fields_where(features, is_time)


def _number(v: Any) -> float:
    """A gap field's value as a number: dates and datetimes in days (nan: missing)."""
    if v is None:
        return np.nan
    if isinstance(v, dt.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return (v - dt.datetime(1970, 1, 1)).total_seconds() / 86400.0
    if isinstance(v, dt.date):
        return float(v.toordinal() - dt.date(1970, 1, 1).toordinal())
    return float(v)


def _numeric(values: list[Any], field: str) -> torch.Tensor:
    """``[n]`` float values of a gap field (nan where missing; dates in days)."""
    try:
        return torch.tensor([_number(v) for v in values], dtype=torch.float32)
    except (TypeError, ValueError):
        raise ModelError(f"featrank: gap field {field!r} is not numeric") from None


@register_model("featrank")
class FeatRank(Recommender):
    """A weighted sum of item-agnostic features, the weights fitted by softmax cross-entropy
    (see the module docstring)."""

    Config = FeatRankConfig
    fits_on_validation: ClassVar[bool] = True  # its weights are fitted there
    learns_sequences: ClassVar[bool] = True
    test_config: ClassVar[dict[str, Any]] = {"base": "markov"}

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.base: Recommender | None = None
        self.names: list[str] = []
        self.weights_: torch.Tensor | None = None
        self.cold: torch.Tensor | None = None
        self.pop: torch.Tensor | None = None
        self.order: torch.Tensor | None = None
        self.id_num: torch.Tensor | None = None
        self.tags: dict[str, torch.Tensor] = {}  # field -> [2, nnz] incidence pairs
        self.tag_values: dict[str, dict[str, int]] = {}  # field -> value -> column
        self.gaps: dict[str, torch.Tensor] = {}  # field -> [n_items] values / spread (nan: none)
        self.gap_scale: dict[str, float] = {}  # field -> the spread the values are divided by
        self._tag_m: dict[str, torch.Tensor] = {}
        self.trans: torch.Tensor | None = None  # [n_items, n_items] sparse transition counts
        self._trans_now: torch.Tensor | None = None  # the counts the features read now
        self._pop_now: torch.Tensor | None = None  # the pop column read now (a fold's)
        self._order_now: torch.Tensor | None = None  # the order prior read now (a fold's)
        self._pop_scale: tuple[float, float] = (0.0, 1.0)  # pop's log-count mean and spread
        self.gap_check: dict[str, Any] | None = None
        """After a fit with ``gap_fields = "auto"``, candidates and a validation set: the
        first step's validation NDCG@10 with the gap features (``with``) and without
        (``without``), and the candidate ``fields``; None otherwise."""
        self.refit_check: dict[str, float] | None = None
        """After a fit with ``refit = "auto"``: the out-of-fold validation NDCG@10 with the
        last step (``refit``) and without (``kept``); None otherwise."""
        self._known: torch.Tensor | None = None
        """During a fit, where the vocabulary holds items not known then (only test events
        bring them; :func:`~warmrec.models.known.known_mask`): the known ones, the only
        candidates of the fit; None otherwise (every item)."""
        self.known_: torch.Tensor | None = None
        """``[n_items]`` bool: the items known when the model was fitted, whose base scores
        alone set the base's normalisation at scoring time; None: every item (where every item
        was known, or a model saved before they were kept)."""

    @property
    def history_len(self) -> int:
        base = self.base.history_len if self.base is not None else 1
        c = self.config
        return max(base, c.recent, c.seen_window, 1)

    def weights(self) -> dict[str, float]:
        """The fitted weight of each feature, by name."""
        if self.weights_ is None:
            raise ModelError("model 'featrank' has no weights: call fit() or load() first")
        return dict(zip(self.names, self.weights_.tolist(), strict=True))

    def fit_choices(self) -> dict[str, str]:
        out = {}
        if self.gap_check is not None:
            kept = ", ".join(sorted(self.gaps)) or "none"
            out["gap fields"] = (
                f"kept {kept} (candidates: {', '.join(self.gap_check['fields'])}; validation "
                f"NDCG@10 {self.gap_check['with']:.4f} with them, "
                f"{self.gap_check['without']:.4f} without)"
            )
        if self.refit_check is not None:
            took = "taken" if self.refit_check["refit"] > self.refit_check["kept"] else "not taken"
            out["refit"] = (
                f"{took} (out-of-fold validation NDCG@10 {self.refit_check['refit']:.4f} "
                f"with, {self.refit_check['kept']:.4f} without)"
            )
        return out

    # -- features -----------------------------------------------------------------------------
    def _feature_names(self) -> list[str]:
        names = ["base"]
        names += ["markov"] if self.trans is not None else []
        names += ["order"] if self.order is not None else []
        names += ["seen", "last"] if self.config.seen_window > 0 else []
        names += [f"tag:{f}" for f in self.tags] + ["pop"] + [f"gap:{f}" for f in self.gaps]
        return names + ["cold", "cold*share", "cold*base"]

    def _tag_index(self, field: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``([n_items, K] value columns, [n_items, K] weights)`` of a tag field: each item's
        values (at most K; the padding column is the number of values, never a value) and
        1 / its number of values (0 on padding)."""
        cached = self._tag_m.get(field)
        if cached is not None and cached[0].shape[0] == self.n_items:
            return cached
        pairs = self.tags[field]
        n_values = int(pairs[1].max()) + 1 if pairs.shape[1] else 0
        count = torch.bincount(pairs[0], minlength=self.n_items)
        k = max(int(count.max()) if len(count) else 0, 1)
        idx = torch.full((self.n_items, k), n_values, dtype=torch.int64)
        order = torch.argsort(pairs[0], stable=True)
        rows, cols = pairs[0][order], pairs[1][order]
        first = torch.cumsum(count, 0) - count
        slot = torch.arange(len(rows)) - first[rows]
        idx[rows, slot] = cols
        w = torch.where(idx < n_values, 1.0 / count.clamp(min=1).unsqueeze(1).float(), 0.0)
        self._tag_m[field] = (idx, w)
        return idx, w

    def _columns(self, batch: Batch) -> tuple[torch.Tensor, Iterator[torch.Tensor]]:
        """``([B, n_items] usable, the [B, n_items] feature columns in :attr:`names` order)``:
        the base's normalised scores first (0 where not finite, the items not usable: they
        rank last), each other column computed as it is taken."""
        if self.base is None or self.cold is None or self.pop is None:
            raise ModelError("model 'featrank' is not fitted: call fit() or load() first")
        # in the fit the lists hold the known items alone; scoring ranks every item on the scale
        # of the items known at fit time (the same values on them)
        base = base_scores(self.base, batch, self.config.fusion, self._known, self.known_)
        usable = torch.isfinite(base)
        return usable, self._more(batch.items, torch.where(usable, base, torch.zeros(())))

    def _more(self, items: torch.Tensor, base: torch.Tensor) -> Iterator[torch.Tensor]:
        c = self.config
        n_b, n = base.shape
        last = items[:, -1].long()
        yield base
        trans = self._trans_now if self._trans_now is not None else self.trans
        if trans is not None:
            rows = torch.index_select(trans, 0, last.clamp(min=0)).to_dense()
            yield torch.log1p(rows) * (last > 0).unsqueeze(1)
        if self.order is not None and self.id_num is not None:
            order = self._order_now if self._order_now is not None else self.order
            yield order_term(items, self.id_num, order)
        if c.seen_window > 0:
            yield seen_term(items, c.seen_window, n)
            yield seen_term(items, 1, n)
        recent = items[:, -c.recent :].long()
        age = c.decay ** torch.arange(recent.shape[1] - 1, -1, -1, dtype=torch.float32)
        wr = age.unsqueeze(0) * (recent > 0)
        wr = wr / wr.sum(dim=1, keepdim=True).clamp(min=1e-12)
        for field in self.tags:
            idx, w = self._tag_index(field)
            pad = int(idx.max()) if idx.numel() else 0
            # the share of the recent history (by weight) on each value, then summed over an
            # item's values
            profile = torch.zeros(n_b, pad + 1)
            profile.scatter_add_(
                1,
                idx[recent].reshape(n_b, -1),
                (wr.unsqueeze(2) * w[recent]).reshape(n_b, -1),
            )
            profile[:, pad] = 0.0
            yield profile[:, idx].sum(dim=2) if pad > 0 else torch.zeros(n_b, n)
        yield (self._pop_now if self._pop_now is not None else self.pop).expand(n_b, n)
        for vals in self.gaps.values():
            g = -(vals.unsqueeze(0) - vals[last].unsqueeze(1)).abs()
            yield torch.nan_to_num(g, nan=0.0) * (last > 0).unsqueeze(1)
        share = cold_share(items, self.cold, c.recent, c.decay)
        yield self.cold.expand(n_b, n)
        yield share.unsqueeze(1) * self.cold
        yield base * self.cold

    def _row_chunk(self) -> int:
        """Histories per chunk: about 4 million item scores per feature column."""
        return max(1, min(256, 4_000_000 // max(self.n_items, 1)))

    def features(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """``([B, n_items, F] features, [B, n_items] bool usable)``: ``usable`` is False where
        the base's score is not finite (padding included): those items rank last."""
        usable, cols = self._columns(batch)
        return torch.stack(list(cols), dim=2), usable

    def score(self, batch: Batch) -> torch.Tensor:
        if self.weights_ is None:
            raise ModelError("model 'featrank' has no weights: call fit() or load() first")
        out = []
        step = self._row_chunk()
        for lo in range(0, len(batch.items), step):
            part = Batch(
                batch.items[lo : lo + step],
                None if batch.users is None else batch.users[lo : lo + step],
            )
            usable, cols = self._columns(part)
            s = torch.zeros(usable.shape)
            for w, col in zip(self.weights_.tolist(), cols, strict=True):
                s.add_(col, alpha=w)
            out.append(torch.where(usable, s, torch.full((), -torch.inf)))
        return torch.cat(out)

    # -- fit ----------------------------------------------------------------------------------
    def fit(
        self,
        train: SequenceDataset,
        valid: EvalSet | None = None,
        *,
        trainer: Any = None,
        callbacks: Sequence[Callable[[int, dict[str, Any], Any], bool | None]] = (),
    ) -> FeatRank:
        """Fit the base (a new one: a second fit does not keep the first's), build the
        features, then fit the weights (module docstring): on training prefixes, then the cold
        ones (and all, near them) on ``valid``."""
        self._bind(train)
        if not self.config.fit_valid:
            valid = None  # the training sequences alone (the config's docstring)
        self.base = fit_base(self, None, train, valid, trainer, callbacks)
        known = known_mask(train, valid)
        self._known = None if bool(known[1:].all()) else known
        self.known_ = self._known
        try:
            return self._fit(train, valid)
        finally:
            self._known = None

    def _fit(self, train: SequenceDataset, valid: EvalSet | None) -> FeatRank:
        c = self.config
        counts = np.asarray(train.item_counts(), dtype=np.float64)
        self.cold = cold_mask(train)
        logc = torch.from_numpy(np.log1p(counts)).float()
        warm = self.cold == 0
        warm[0] = False
        mu, sd = logc[warm].mean(), logc[warm].std()
        self._pop_scale = (float(mu), float(sd) if sd > 0 else 1.0)
        self.pop = self._pop_feature(counts)
        window = _order_window(c, train)
        self.order = self.id_num = None
        if window > 0:
            self.id_num = numeric_ids(train.vocab)
            self.order = order_prior(train, self.id_num, window)
        self._item_fields(train)
        self.trans = self._trans_now = None
        if c.transitions:
            self.trans = transition_counts(train, self.n_items, steps=c.transition_steps)
        self.names = self._feature_names()
        self.weights_ = self._fit_weights(train, valid)
        return self

    def _pop_feature(self, counts: np.ndarray) -> torch.Tensor:
        """The ``pop`` column from training counts per item: ``log1p``, z-scored with the whole
        training set's statistics (:attr:`_pop_scale`); 0 on the items without training events
        (:attr:`cold`), whatever ``counts`` gives them."""
        mu, sd = self._pop_scale
        logc = torch.from_numpy(np.log1p(counts)).float()
        pop = torch.where(self.cold == 0, (logc - mu) / sd, torch.zeros(()))
        pop[0] = 0.0
        return torch.nan_to_num(pop, nan=0.0)

    def _item_fields(self, train: SequenceDataset) -> None:
        c, feats = self.config, train.item_features
        fields, gap = _item_fields_of(c, train)
        if (fields or gap) and feats is None:
            raise ModelError("featrank: tag_fields / gap_fields given but the data has no items")
        self.tags, self.tag_values, self.gaps, self.gap_scale, self._tag_m = {}, {}, {}, {}, {}
        for f in sorted(fields):
            self.tags[f], self.tag_values[f] = tag_incidence(_by_item(feats, train.vocab, f))
        for f in gap:
            x = _numeric(_by_item(feats, train.vocab, f), f)
            ok = torch.isfinite(x)
            spread = float(x[ok].std()) if int(ok.sum()) > 1 else 0.0
            self.gap_scale[f] = spread if spread > 0 else 1.0
            self.gaps[f] = x / self.gap_scale[f]

    def _fit_weights(self, train: SequenceDataset, valid: EvalSet | None) -> torch.Tensor:
        rng = np.random.default_rng(self.config.seed)
        n = len(self.names)
        w = torch.zeros(n)
        w[0] = 1.0
        cold = torch.tensor([float(name.startswith("cold")) for name in self.names])
        first = self._first_step(train, valid, rng, w, cold)
        self.gap_check = None
        if self.config.gap_fields == "auto" and self.gaps:
            w, cold = self._judge_gaps(first, w, cold, valid)
            n = len(self.names)
        else:
            w = first["w"]
        if valid is None or len(valid) == 0:
            return w
        fit, on_cold, rows = self._valid_features(valid, rng)
        if len(rows) == 0:
            return w

        def later(sel: torch.Tensor, last: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
            """The second step's weights fitted on the rows ``sel``, and the last step's
            (``last``; else the second step's again)."""
            part = tuple(x[sel] for x in fit)
            w2 = _fit_softmax(*part, w, cold, 0.0) if bool(on_cold[sel].any()) else w
            return w2, _fit_softmax(*part, w2, torch.ones(n), self.config.l2) if last else w2

        refit, self.refit_check = self.config.refit, None
        if refit == "auto":
            refit = self._refit_pays(valid, rows, fit[3], later, rng)
        return later(torch.ones(len(rows), dtype=torch.bool), bool(refit))[1]

    def _first_step(
        self,
        train: SequenceDataset,
        valid: EvalSet | None,
        rng: np.random.Generator,
        w0: torch.Tensor,
        cold: torch.Tensor,
    ) -> dict[str, Any]:
        """The first step's weights, fitted on training prefixes (the costly part of a fit, and
        the part no validation target enters): ``w``, or with ``gap_fields = "auto"``
        ``without`` and (where there is validation to judge them on) ``with`` the gap features.
        Kept per training set and config (:data:`_FIRST_STEPS`, ``rng`` left as that fit
        leaves it), so that fitting again on the same training data with another validation
        set -- ``warmrec auto`` values FeatRank out of fold, on halves of its validation
        learners -- fits the validation steps alone, with the same result."""
        import hashlib
        import json

        judged = valid is not None and len(valid) > 0
        known = None  # the fit's candidates (the known items) make a first step too
        if self._known is not None:
            known = hashlib.sha1(self._known.numpy().tobytes()).hexdigest()
        key = json.dumps([self.config.model_dump(mode="json"), judged, known], default=str)
        # a base that learns with validation (a network stopped on it) makes the prefix
        # features depend on the validation set: not kept then
        base = self.base
        kept = not (
            getattr(base, "fits_on_validation", False)
            or "trainer" in inspect.signature(base.fit).parameters
        )
        ref, memo = _FIRST_STEPS.get(id(train), (None, {}))
        if kept and (ref is None or ref() is not train):
            memo = {}
            _FIRST_STEPS[id(train)] = (weakref.ref(train), memo)
            weakref.finalize(train, _FIRST_STEPS.pop, id(train), None)
        if kept and key in memo:
            rng.bit_generator.state = memo[key]["rng"]
            return _copied(memo[key])
        fit = self._prefix_features(train, rng)
        fitted = len(fit[1]) > 0
        out: dict[str, Any] = {"fitted": fitted}
        if self.config.gap_fields == "auto" and self.gaps:
            gap = torch.tensor([float(name.startswith("gap:")) for name in self.names])
            out["without"] = (
                _fit_softmax(*fit, w0, (1.0 - cold) * (1.0 - gap), 0.0) if fitted else w0
            )
            if judged and fitted:
                out["with"] = _fit_softmax(*fit, w0, 1.0 - cold, 0.0)
        else:
            out["w"] = _fit_softmax(*fit, w0, 1.0 - cold, 0.0) if fitted else w0
        out["rng"] = rng.bit_generator.state
        if kept:
            memo[key] = out
        return _copied(out)

    def _judge_gaps(
        self, first: dict[str, Any], w0: torch.Tensor, cold: torch.Tensor, valid: EvalSet | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``gap_fields = "auto"``: the first step's weights with and without the gap features
        (:meth:`_first_step`), those kept only where they raise the validation NDCG@10
        (:attr:`gap_check`); returns the first step's weights and cold mask over the features
        kept."""
        gap = torch.tensor([float(name.startswith("gap:")) for name in self.names])
        without = first["without"]
        if valid is not None and len(valid) and first["fitted"]:
            with_gap = first["with"]
            got = {"with": self._valid_ndcg(valid, with_gap)}
            got["without"] = self._valid_ndcg(valid, without)
            self.gap_check = {**got, "fields": sorted(self.gaps)}
            if got["with"] > got["without"]:
                return with_gap, cold
        keep = gap == 0
        self.gaps, self.gap_scale = {}, {}
        self.names = self._feature_names()
        return without[keep], cold[keep]

    def _valid_ndcg(self, valid: EvalSet, w: torch.Tensor) -> float:
        """Mean NDCG@10 of the weights ``w`` on the validation targets (full ranking; at most
        ``max_fit_events`` of them, evenly spaced)."""
        idx = np.arange(len(valid))
        if len(idx) > self.config.max_fit_events:
            idx = np.unique(np.linspace(0, len(idx) - 1, self.config.max_fit_events).astype(int))
        return float(self._ndcg_of(w, valid, idx).mean())

    def _ndcg_of(self, w: torch.Tensor, valid: EvalSet, idx: np.ndarray) -> np.ndarray:
        """Per-example NDCG@10 of the weights ``w`` on the validation examples ``idx`` (full
        ranking, ties against the model); the model's own weights are left unset."""
        self.weights_ = w
        try:
            scores = self.score(valid.batch(idx, self.history_len))
        finally:
            self.weights_ = None
        return M.ndcg(target_ranks(scores, np.asarray(valid.targets, dtype=np.int64)[idx]), 10)

    def _refit_pays(self, valid: EvalSet, rows: np.ndarray, weight: torch.Tensor, later, rng):
        """Whether the last step raises the validation NDCG@10 out of fold (``refit``)."""
        half = sequence_halves(valid.keys.gather(rows), rng)
        if half is None:
            return True  # a single validation sequence: nothing to hold out
        got = {"refit": 0.0, "kept": 0.0}
        for side in (half, ~half):
            w2, w3 = later(torch.from_numpy(~side))
            for name, w in (("kept", w2), ("refit", w3)):
                ndcg = torch.from_numpy(self._ndcg_of(w, valid, rows[side])).float()
                got[name] += float((weight[torch.from_numpy(side)] * ndcg).sum())
        total = float(weight.sum())
        self.refit_check = {k: v / total for k, v in got.items()}
        return got["refit"] > got["kept"]

    def _pool(self) -> torch.Tensor | None:
        """The items a fit may put in its softmax (:attr:`_known`); None: every item."""
        return None if self._known is None else torch.nonzero(self._known)[:, 0]

    def _sampled(
        self, targets: torch.Tensor, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(candidate columns per row, the target's column per row)`` where the fit does not
        take the whole catalogue: a uniform sample of the known items (:meth:`_pool`) after
        the target, or every known item (padding first) where they are fewer than
        ``negatives``; None: every column."""
        n, k, pool = self.n_items, self.config.negatives, self._pool()
        if pool is None:
            if n - 1 <= k:
                return None
            neg = torch.from_numpy(rng.integers(1, n, size=(len(targets), k)))
        elif len(pool) <= k:
            cols = torch.cat([torch.zeros(1, dtype=torch.int64), pool])
            return cols.expand(len(targets), -1), torch.searchsorted(cols, targets)
        else:  # drawn as from 1..n-1 when every item is known: the same sample
            neg = pool[torch.from_numpy(rng.integers(0, len(pool), size=(len(targets), k)))]
        t = torch.zeros(len(targets), dtype=torch.int64)
        return torch.cat([targets.unsqueeze(1), neg], dim=1), t

    def _gather(
        self, histories: torch.Tensor, targets: torch.Tensor, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(features [N, C, F], usable [N, C], target column [N], kept rows [N])`` of the
        histories (scored in batches), on the sampled columns (the target first) where the
        catalogue is sampled; rows whose target the base cannot score are not kept."""
        sampled = self._sampled(targets, rng)
        cols, t = (None, targets) if sampled is None else sampled
        fs, us = [], []
        step = self._row_chunk()
        for lo in range(0, len(targets), step):
            usable, columns = self._columns(Batch(histories[lo : lo + step]))
            pick = None if cols is None else cols[lo : lo + step]
            if pick is not None:
                usable = usable.gather(1, pick)
            f = torch.stack([c if pick is None else c.gather(1, pick) for c in columns], dim=2)
            fs.append(torch.where(usable.unsqueeze(2), f, torch.zeros(())))
            us.append(usable)
        f, usable = torch.cat(fs), torch.cat(us)
        keep = usable.gather(1, t.unsqueeze(1))[:, 0]
        return f[keep], usable[keep], t[keep], keep

    def _fit_cap(self) -> int:
        """Rows fitted at most: ``max_fit_events``, and 200 million feature values (over the
        known items' columns, :meth:`_pool`)."""
        pool = self._pool()
        n = self.n_items if pool is None else len(pool) + 1
        return _fit_cap(self.config, n, len(self.names))

    def _prefix_features(self, train: SequenceDataset, rng: np.random.Generator):
        """The fit of the first step: prefixes of the training sequences (at least one item)
        and the item that follows each, every row weighing 1."""
        seq = train.sequences
        items = np.asarray(seq.items, dtype=np.int64)
        offs = np.asarray(seq.offsets, dtype=np.int64)
        starts = np.repeat(offs[:-1], np.diff(offs))
        pos = np.arange(len(items))
        keep = pos > starts
        pos, starts = pos[keep], starts[keep]
        if len(pos) > self._fit_cap():
            pick = np.sort(rng.choice(len(pos), self._fit_cap(), replace=False))
            pos, starts = pos[pick], starts[pick]
        if not len(pos):  # no sequence of two events: nothing to fit (the first step keeps w0)
            n, width = self.n_items, len(self.names)
            return (
                torch.zeros(0, n, width),
                torch.zeros(0, n, dtype=torch.bool),
                torch.zeros(0, dtype=torch.int64),
                torch.ones(0),
            )
        size = self.history_len
        hist = np.zeros((len(pos), size), dtype=np.int64)
        for r, (p, s) in enumerate(zip(pos, starts, strict=True)):
            h = items[max(s, p - size) : p]
            hist[r, size - len(h) :] = h
        hist_t, targets = torch.from_numpy(hist), torch.from_numpy(items[pos])
        # the features read from training events (markov, pop, order) cross-fitted: a prefix
        # reads the other folds' sequences alone, scaled up to the whole, never its own answer
        n_seq = len(offs) - 1
        fold = (np.searchsorted(offs, starts, side="right") - 1) % FOLDS  # the prefix's sequence
        seq_of = np.repeat(np.arange(n_seq), np.diff(offs)) % FOLDS  # each event's fold
        scale = FOLDS / (FOLDS - 1)
        parts = []
        try:
            for k in range(FOLDS):
                rows = torch.from_numpy(np.flatnonzero(fold == k))
                if len(rows) == 0:
                    continue
                other = items[seq_of != k]
                counts = np.bincount(other, minlength=self.n_items)[: self.n_items] * scale
                self._pop_now = self._pop_feature(counts.astype(np.float64))
                if self.order is not None and self.id_num is not None:
                    self._order_now = order_prior(
                        train,
                        self.id_num,
                        (len(self.order) - 1) // 2,
                        np.arange(n_seq) % FOLDS != k,
                    )
                if self.trans is not None:
                    mask = np.arange(n_seq) % FOLDS == k
                    own = transition_counts(train, self.n_items, mask, self.config.transition_steps)
                    self._trans_now = (self.trans - own).coalesce() * scale
                parts.append(self._gather(hist_t[rows], targets[rows], rng)[:3])
        finally:
            self._trans_now = self._pop_now = self._order_now = None
        f, usable, t = (torch.cat([part[i] for part in parts]) for i in range(3))
        return f, usable, t, torch.ones(len(t))

    def _valid_features(self, valid: EvalSet, rng: np.random.Generator):
        """The fit of the last two steps (the validation targets, the cold ones weighed by
        ``cold_target_share``), which rows are on cold items and their validation indices."""
        idx = np.arange(len(valid))
        if len(idx) > self._fit_cap():
            idx = np.sort(rng.choice(len(idx), self._fit_cap(), replace=False))
        batch = valid.batch(idx, self.history_len)
        targets = torch.from_numpy(np.asarray(valid.targets, dtype=np.int64)[idx])
        f, usable, t, keep = self._gather(batch.items, targets, rng)
        on_cold = self.cold[targets[keep]] > 0
        rows = idx[keep.numpy()]
        share = resolve_share(self.config.cold_target_share, self.cold, self._known)
        weight = torch.ones(len(t))
        n_cold, n_warm = int(on_cold.sum()), int((~on_cold).sum())
        if share is not None and n_cold and n_warm:
            weight = torch.where(on_cold, share / n_cold, (1.0 - share) / n_warm) * len(t)
        return (f, usable, t, weight), on_cold, rows

    # -- new items ----------------------------------------------------------------------------
    def add_items(self, item_features: pl.DataFrame) -> list[Any]:
        """Add the items of ``item_features`` that the model does not know, without refitting:
        the base adds them its way (:func:`warmrec.models.catalogue.add_items`); they are cold
        (no training event, popularity 0) with their ids in the catalogue order and their tag
        and gap values read from the table (a field it lacks: no value). Returns the raw ids
        added."""
        from warmrec.models.catalogue import add_items, grow, new_items, pad

        self._check_fitted()
        if self.base is None or self.cold is None or self.pop is None:
            raise ModelError("model 'featrank' is not fitted: nothing to add to")
        new, _, only = new_items(self, item_features)
        if not new:
            add_items(self.base, item_features)  # the base's own check (it may refuse)
            return []
        n_old = self.n_items
        tags = {}
        for f, index in self.tag_values.items():
            vals = _by_item(item_features, only, f, missing_ok=True)[1:]
            pairs, grown = tag_incidence(vals, index)
            tags[f] = (pairs + torch.tensor([[n_old], [0]]), grown)
        gaps = {
            f: _numeric(_by_item(item_features, only, f, missing_ok=True)[1:], f) / scale
            for f, scale in self.gap_scale.items()
        }
        added = add_items(self.base, item_features)
        if len(added) != len(new):  # pragma: no cover - the base adds the ids new_items finds
            raise ModelError(f"featrank: the base added {len(added)} items, expected {len(new)}")
        n = len(added)
        # the added items are scored on the scale of the items known at fit time
        self.known_ = grown_known(self.known_, self.n_items, n)
        grow(self, self.base.vocab, n)
        self.cold, self.pop = pad(self.cold, n, 1.0), pad(self.pop, n, 0.0)
        if self.id_num is not None:
            num = torch.tensor([float(i) for i in added], dtype=self.id_num.dtype)
            self.id_num = torch.cat([self.id_num, num])
        for f, (pairs, index) in tags.items():
            self.tags[f] = torch.cat([self.tags[f], pairs], dim=1)
            self.tag_values[f] = index
        for f, x in gaps.items():
            self.gaps[f] = torch.cat([self.gaps[f], x])
        if self.trans is not None:
            self.trans = _sparse(self.trans.indices(), self.trans.values(), self.n_items)
        self._tag_m = {}
        return added

    # -- state --------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        if self.base is None or self.weights_ is None or self.cold is None or self.pop is None:
            raise ModelError("model 'featrank' is not fitted: nothing to save")
        state: dict[str, Any] = {
            "weights": self.weights_.clone(),
            "cold": self.cold.clone(),
            "pop": self.pop.clone(),
        }
        if self.known_ is not None:
            state["known"] = self.known_.to(torch.uint8)
        if self.order is not None and self.id_num is not None:
            state["order"], state["id_num"] = self.order.clone(), self.id_num.clone()
        if self.trans is not None:
            state["trans.index"] = self.trans.indices().clone()
            state["trans.values"] = self.trans.values().clone()
        for f, pairs in self.tags.items():
            state[f"tag.{f}"] = pairs.clone()
            state[f"tagvalues.{f}"] = _packed(
                sorted(self.tag_values[f], key=self.tag_values[f].get)
            )
        for f, vals in self.gaps.items():
            state[f"gap.{f}"] = vals.clone()
            state[f"gapscale.{f}"] = torch.tensor(self.gap_scale[f], dtype=torch.float64)
        for k, v in self.base.get_state().items():
            state[f"base.{k}"] = v
        return state

    def set_state(self, state: dict[str, torch.Tensor]) -> None:
        self._check_fitted()
        for key in ("weights", "cold", "pop"):
            if key not in state:
                raise ModelError(f"model 'featrank': the weights hold no {key!r}")
        self.base = load_base(self, state)
        self.cold = state["cold"].float()
        self.pop = state["pop"].float()
        self.known_ = saved_known(self, state)
        self.order, self.id_num = state.get("order"), state.get("id_num")
        self.trans = self._trans_now = None
        if self.config.transitions:
            if "trans.index" not in state or "trans.values" not in state:
                raise ModelError("model 'featrank': transitions is on but the weights hold none")
            self.trans = _sparse(
                state["trans.index"].long(), state["trans.values"].float(), len(self.vocab)
            )
        # tag and gap fields in the config's order (tag_fields resolved at fit: sorted)
        self.tags = {k[4:]: v.long() for k, v in sorted(state.items()) if k.startswith("tag.")}
        self.tag_values = {}
        for f in self.tags:
            if f"tagvalues.{f}" not in state:
                raise ModelError(f"model 'featrank': the weights hold no values of tag field {f!r}")
            values = _unpacked(state[f"tagvalues.{f}"])
            self.tag_values[f] = {v: i for i, v in enumerate(values)}
        self.gaps, self.gap_scale = {}, {}
        gap = self.config.gap_fields
        if gap == "auto":  # the fields the fit kept, in its (sorted) order
            gap = sorted(k[4:] for k in state if k.startswith("gap."))
        for f in gap:
            if f"gap.{f}" not in state:
                raise ModelError(f"model 'featrank': the weights hold no gap field {f!r}")
            self.gaps[f] = state[f"gap.{f}"].float()
            self.gap_scale[f] = float(state.get(f"gapscale.{f}", torch.tensor(1.0)))
        self._tag_m = {}
        self.names = self._feature_names()
        w = state["weights"].float().reshape(-1)
        if len(w) != len(self.names):
            raise ModelError(
                f"model 'featrank': {len(w)} weights for {len(self.names)} features "
                f"({', '.join(self.names)})"
            )
        self.weights_ = w


_FIRST_STEPS: dict[int, tuple[Any, dict[str, dict[str, Any]]]] = {}
"""``id(train) -> (weak reference to train, {config key: first step})``: see
:meth:`FeatRank._first_step` (an entry goes with its training set)."""


def _order_window(c: FeatRankConfig, train: SequenceDataset) -> int:
    """The ``order`` feature's id-offset window (``order_window``; None: 5 on integer ids)."""
    if c.order_window is not None:
        return c.order_window
    return 5 if not train.vocab.is_str and train.vocab.ids.dtype.is_integer() else 0


def _item_fields_of(c: FeatRankConfig, train: SequenceDataset) -> tuple[list[str], list[str]]:
    """The tag fields and the gap-field candidates of ``train``'s items under ``c`` (a tag
    field's values counted against the items known in training, :func:`known_mask`: the
    vocabulary also holds those only test events bring, plus padding)."""
    feats = train.item_features
    fields = c.tag_fields
    if fields is None:
        fields = tag_fields(feats, int(known_mask(train).sum()) + 1) if feats is not None else []
    gap = time_fields(feats) if c.gap_fields == "auto" else list(c.gap_fields)
    return list(fields), list(gap)


def _fit_cap(c: FeatRankConfig, n_items: int, n_features: int) -> int:
    """Rows fitted at most: ``max_fit_events``, and 200 million feature values."""
    width = min(n_items, c.negatives + 1) * n_features
    return max(1, min(c.max_fit_events, 200_000_000 // max(width, 1)))


def first_step_values(
    train: SequenceDataset, config: Any = None, valid: EvalSet | None = None
) -> int:
    """What a FeatRank fit of ``train`` (and ``valid``) costs, known before it runs: the
    feature values its first step reads per pass of the softmax fit (the training prefixes
    fitted, times the softmax's columns, times the features), times the first-step fits (two
    where ``gap_fields = "auto"`` finds a field that dates the items: with and without it). The
    first step is most of a fit (on MARS 62 s of 70, of which 49 s in the L-BFGS passes over
    these values) and it grows with the catalogue and the prefixes, so no constant prior can
    stand for it (``warmrec auto``'s estimate reads this). The softmax's columns and the row
    cap count the items the fit knows (:func:`~warmrec.models.known.known_mask` of ``train``
    and ``valid``, as the fit's candidates do), not the vocabulary, which also holds the items
    only the test events bring."""
    c = config if isinstance(config, FeatRankConfig) else FeatRankConfig(**dict(config or {}))
    fields, gap = _item_fields_of(c, train)
    n_features = (
        1  # base
        + int(c.transitions)
        + int(_order_window(c, train) > 0)
        + 2 * int(c.seen_window > 0)
        + len(fields)
        + 1  # pop
        + len(gap)
        + 3  # cold, cold*share, cold*base
    )
    n_items = int(known_mask(train, valid).sum()) + 1  # the known items and padding
    lengths = np.diff(np.asarray(train.sequences.offsets, dtype=np.int64))
    prefixes = int(np.clip(lengths - 1, 0, None).sum())
    rows = min(prefixes, _fit_cap(c, n_items, n_features))
    fits = 2 if (c.gap_fields == "auto" and gap) else 1
    return fits * rows * min(n_items, c.negatives + 1) * n_features


def _copied(first: dict[str, Any]) -> dict[str, Any]:
    """A first step's record with its tensors copied (the kept ones are never handed out)."""
    return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in first.items()}


def _fit_softmax(
    f: torch.Tensor,
    usable: torch.Tensor,
    t: torch.Tensor,
    weight: torch.Tensor,
    w0: torch.Tensor,
    free: torch.Tensor,
    l2: float,
    iters: int = 200,
) -> torch.Tensor:
    """Weights minimising the ``weight``-ed softmax cross-entropy of the target columns ``t``
    over the ``usable`` columns of ``f[N, C, F]`` (only the ``free`` weights move from ``w0``),
    plus ``l2`` times the squared distance to ``w0``."""
    w = w0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([w], max_iter=iters, line_search_fn="strong_wolfe")
    total = weight.sum().clamp(min=1e-12)
    off = torch.where(usable, 0.0, -1e9)

    def closure() -> torch.Tensor:
        # a convex fit of a few weights, not a network's training: its gradient is taken with
        # torch.autograd.grad (backward() belongs to the training loop, contract 3)
        ww = w * free + w0 * (1 - free)
        ce = torch.nn.functional.cross_entropy(f @ ww + off, t, reduction="none")
        loss = (weight * ce).sum() / total + l2 * ((ww - w0) ** 2).sum()
        (w.grad,) = torch.autograd.grad(loss, w)
        return loss.detach()

    opt.step(closure)
    out = (w * free + w0 * (1 - free)).detach()
    if not bool(torch.isfinite(out).all()):
        raise ModelError("featrank: the weights diverged (non-finite); check the features")
    return out
