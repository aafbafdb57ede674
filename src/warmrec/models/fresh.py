"""Fresh: a base model's scores plus a bonus for cold items, scaled by how cold the history is.

A *cold* item has no training interaction (its training count is 0): a video published after
the model was trained, known to the catalogue (and, through its text, to a text-aware base) but
never seen as a target. On a catalogue that keeps growing (MARS: a third of the views after the
2019-07-01 cut are on videos with no earlier view) whether the next item is cold depends on the
history: a learner who is watching new videos goes on with new videos (on MARS after the cut,
79 % of the next items are new after a new one, 15 % after an older one). A model trained before
the cut cannot learn that -- every training target had training interactions. ``Fresh`` adds it
as two numbers fitted on validation (and, optionally, three more terms)::

    score(i | h) = norm(base(i | h)) + (a + b * c(h)) * cold(i) + o * p(id(i) - id(last(h)))
                   + t * norm(x_i . sum_k decay ** k x_{h_k}) + r * seen(i, h)

``norm`` is the per-list normalisation of :mod:`warmrec.models.hybrid` (``"zscore"`` by default),
``c(h)`` the recency-weighted share of cold items among the last ``recent`` history items (the
``k``-th most recent weighs ``decay ** k``; in [0, 1], 0 for an empty history), ``a``
(``cold_weight``) a bonus or penalty for every cold item, ``b`` (``affinity_weight``) the part
that follows the history. With the weights unset, ``fit`` picks them from ``cold_grid`` x
``affinity_grid`` by the validation ``select_metric`` (ties: the first in grid order, the cold
grid outer); the validation items that are cold for the training data play the part of the new
items, weighed as they come or by ``cold_target_share`` (e.g. the catalogue's cold share, where
the validation period saw fewer new items than the served one will); the other weights join
that grid where their term is on. On validation the lists hold only the items known when the
model is fitted (:func:`known_mask`: training or validation events, or the item table), not
those that only the test events bring. At scoring time every item is scored, each per-list
normalisation (the base's, the text term's) taking its statistics from those known items alone
and applying them to every item (:func:`~warmrec.models.hybrid.normalise_known`), so that the
weights chosen on validation mean the same there: an item that only the test events bring, or
one added later (:meth:`Fresh.add_items`), does not move the known items' scores, and is scored
on their scale. ``a = b = 0`` (other terms off) ranks exactly as the base. Non-finite base scores
stay at the bottom.

The third term (off unless ``order_window > 0``; integer item ids only) is the **catalogue order**:
where ids are given in publication order, the videos of one course get consecutive ids and
learners follow the course (on MARS after the cut, 27 % of the first views of new videos are the
video whose id follows the last one's). ``p(d)`` is the share of the training transitions (to a
different item) whose id offset is ``d`` (``0 < |d| <= order_window``), divided by the largest
such share (so ``p`` is at most 1); it is item-agnostic, so it reaches cold items; ``o``
(``order_weight``) is chosen on validation with ``a`` and ``b`` (``order_grid``).

The fourth term (off unless ``text_window > 0``) is a **dense text** similarity: ``x_i`` is the
item's sentence vector (:func:`warmrec.models.text.text_vectors`, MiniLM by default) centred on
the catalogue's mean text vector and L2-normalised (items without text: zero), summed over the
last ``text_window`` history items (``decay ** age``) and normalised per list as the base. It
reaches cold items as it reaches warm ones, so a base that reads text sparsely (TF-IDF) or not
at all gets the sentence encoder's view of "the same topic"; ``t`` (``text_weight``) is chosen
on validation with the others (``text_grid``).

The last, **repeat** term (off unless ``seen_window > 0``) adds ``r`` (``seen_weight``) to
every item among the last ``seen_window`` of the history: learners come back to videos they
opened (on MARS after the cut, 46 % of the targets on new videos are a video already in the
history), also beyond the few items a content base reads.

The base is any registered model (default a ``hybrid``), fitted by ``fit`` if it is not yet
(:meth:`Fresh.from_base` wraps a fitted one). Saved state: the base's (prefixed ``base.``), the
weights ``(a, b, o, t, r)``, the cold mask, the order prior, the text vectors with their
centre and, where some item was not known at fit time, the known items (``known``; a model saved
without it scores as if every item were known, as before) (a loaded model needs no encoder to score; adding items, :meth:`Fresh.add_items`, encodes
the new items' text and centres it on the fitted catalogue's mean); the validation grid is kept
in ``meta.history``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, field_validator

from warmrec.config import ConfigModel
from warmrec.data.dataset import Batch, EvalSet, SequenceDataset
from warmrec.data.vocab import ItemVocab
from warmrec.errors import ModelError
from warmrec.evaluation import metrics as M
from warmrec.models.base import Recommender
from warmrec.models.hybrid import Fusion, normalise_known, rank_metric_label
from warmrec.models.known import grown_known, known_mask, saved_known
from warmrec.models.settings import TextFieldSettings, TextSettings
from warmrec.registry import register_model


class ColdShareSettings(ConfigModel):
    """How much the validation targets on cold items weigh where a model's weights are chosen
    or fitted on validation (Fresh, FeatRank)."""

    cold_target_share: float | Literal["catalogue"] | None = None
    """How much the validation targets on cold items weigh when the weights are chosen: None,
    as they come; a share in [0, 1] (the cold targets' mean metric times it plus the others'
    times one minus it); ``"catalogue"``, the share of cold items in the catalogue (the items
    known when the model is fitted, :func:`known_mask`: not those only test events bring). Use
    it when the validation period has fewer targets on new items than the period the model will
    serve (MARS: 7 % in the months before the cut, 33 % after it, where a third of the
    catalogue is new). Without cold or without warm validation targets there is nothing to reweight."""

    @field_validator("cold_target_share")
    @classmethod
    def _share(cls, v: float | str | None) -> float | str | None:
        if isinstance(v, float) and not 0.0 <= v <= 1.0:
            raise ValueError(f"expected a share in [0, 1] or 'catalogue', found {v}")
        return v


def resolve_share(
    share: float | str | None, cold: torch.Tensor, known: torch.Tensor | None = None
) -> float | None:
    """``cold_target_share`` as a number (``"catalogue"``: the share of the ``cold`` mask's
    items among the ``known`` ones, :func:`known_mask`; None: every item; padding excluded),
    None as None."""
    if share == "catalogue":
        c = cold[1:] if known is None else cold[1:][known[1:]]
        return float(c.mean()) if len(c) else 0.0
    return share


def fit_base(
    model: Recommender,
    base: Recommender | None,
    train: SequenceDataset,
    valid: EvalSet | None,
    trainer: Any,
    callbacks: Sequence[Callable[[int, dict[str, Any], Any], bool | None]],
) -> Recommender:
    """``base`` (built from ``model``'s config ``base``/``base_config`` if None) fitted on
    ``train`` if it is not yet (``trainer``/``callbacks`` where it trains in the loop), checked
    to hold ``train``'s items."""
    if base is None:
        from warmrec.registry import get_model

        base = get_model(model.config.base, model.config.base_config)
    if not base.is_fitted:
        looped = "trainer" in inspect.signature(base.fit).parameters
        kw = {"trainer": trainer, "callbacks": callbacks} if looped else {}
        base.fit(train, valid, **kw)
    if base.n_items != len(train.vocab):
        raise ModelError(
            f"{model.name}: the base '{base.name}' has {base.n_items} items, the training "
            f"data {len(train.vocab)}: fit it on the same data"
        )
    return base


def load_base(model: Recommender, state: dict[str, torch.Tensor]) -> Recommender:
    """The base of ``model`` (config ``base``/``base_config``) with the ``base.``-prefixed
    entries of a saved ``state``, on ``model``'s vocabularies."""
    from warmrec.registry import get_model

    base = get_model(model.config.base, model.config.base_config)
    base.vocab, base.user_vocab = model.vocab, model.user_vocab
    base.meta.item_counts = model.meta.item_counts
    base.set_state({k[5:]: v for k, v in state.items() if k.startswith("base.")})
    return base


class FreshConfig(TextFieldSettings, ColdShareSettings):
    """The base model, the history window of ``c(h)``, the cold-item weights and the optional
    catalogue-order and dense-text terms."""

    base: str = "hybrid"
    """Registered name of the base model."""
    base_config: dict[str, Any] = {}
    """The base model's config."""
    fusion: Fusion = "zscore"
    """Per-list normalisation of the base's scores (``"zscore"`` or ``"minmax"``)."""
    recent: int = Field(5, ge=1)
    """History items read by ``c(h)``, the recency-weighted share of cold items."""
    decay: float = Field(0.5, gt=0, le=1)
    """Weight of the ``k``-th most recent item in ``c(h)``: ``decay ** k``."""
    cold_weight: float | None = None
    """``a``: added to every cold item's score; None: chosen on validation from ``cold_grid``."""
    affinity_weight: float | None = None
    """``b``: times ``c(h)``, added to every cold item's score; None: chosen on validation."""
    cold_grid: list[float] = Field(
        default_factory=lambda: [-2.0, -1.0, -0.5, 0.0, 0.5, 1.0], min_length=1
    )
    """Candidates for ``a``."""
    affinity_grid: list[float] = Field(
        default_factory=lambda: [0.0, 0.5, 1.0, 2.0, 4.0, 8.0], min_length=1
    )
    """Candidates for ``b``."""
    order_window: int = Field(0, ge=0)
    """Catalogue-order term: id offsets ``0 < |d| <= order_window`` from the last history item
    (0: off; needs integer item ids)."""
    order_weight: float | None = None
    """``o``: the weight of the catalogue-order term; None: chosen on validation."""
    order_grid: list[float] = Field(
        default_factory=lambda: [0.0, 0.5, 1.0, 2.0, 4.0, 8.0], min_length=1
    )
    """Candidates for ``o``."""
    text_window: int = Field(0, ge=0)
    """Dense-text term: the last ``text_window`` history items (weights ``decay ** age``) whose
    centred sentence vectors score every item by cosine (0: off)."""
    text_weight: float | None = None
    """``t``: the weight of the dense-text term; None: chosen on validation."""
    text_grid: list[float] = Field(default_factory=lambda: [0.0, 0.25, 0.5, 1.0], min_length=1)
    """Candidates for ``t``."""
    seen_window: int = Field(0, ge=0)
    """Repeat term: items among the last ``seen_window`` history items get ``r`` (0: off)."""
    seen_weight: float | None = None
    """``r``: the repeat bonus; None: chosen on validation."""
    seen_grid: list[float] = Field(default_factory=lambda: [0.0, 0.5, 1.0, 2.0, 4.0], min_length=1)
    """Candidates for ``r``."""
    text_encoder: str = "minilm"
    """Sentence encoder of the text term (:func:`warmrec.models.text.text_encoder`)."""
    text_cache: str | None = None
    """Folder of the cached text vectors (None: the default cache; ``""``: no cache)."""
    select_metric: str = "hr@10"
    """The validation metric that chooses the weights (a rank metric)."""
    select_exclude_seen: bool = False
    """Rank the validation targets with each history's items removed."""

    @field_validator("select_metric")
    @classmethod
    def _rank_metric(cls, v: str) -> str:
        return rank_metric_label(v)


def cold_share(items: torch.Tensor, cold: torch.Tensor, recent: int, decay: float) -> torch.Tensor:
    """``[B]``: the ``decay ** age``-weighted share of cold items among the last ``recent``
    columns of the left-padded ``items[B, L]`` (padding skipped; 0 for an empty history)."""
    window = items[:, -recent:]
    length = window.shape[1]
    w = decay ** torch.arange(length - 1, -1, -1, dtype=torch.float32)
    w = w.unsqueeze(0) * (window > 0)
    total = w.sum(dim=1)
    hit = (w * cold[window]).sum(dim=1)
    return torch.where(total > 0, hit / total.clamp(min=1e-12), torch.zeros_like(total))


def numeric_ids(vocab: ItemVocab) -> torch.Tensor:
    """``[n_items]`` float64 raw ids in index order (0 at padding); integer ids only."""
    ids = vocab.ids
    if vocab.is_str or not ids.dtype.is_integer():
        raise ModelError(
            f"fresh: order_window needs integer item ids (their order), found {ids.dtype}"
        )
    num = torch.from_numpy(ids.to_numpy().astype(np.float64))
    return torch.cat([torch.zeros(1, dtype=torch.float64), num])


def order_prior(
    train: SequenceDataset,
    id_num: torch.Tensor,
    window: int,
    sequences: np.ndarray | None = None,
) -> torch.Tensor:
    """``[2 window + 1]``: for ``d = -window..window`` the share of the training transitions
    (consecutive events of a sequence on two different items) whose id offset is ``d``, over
    the largest such share (0 at ``d = 0``, all 0 without transitions). ``sequences``: a
    boolean mask over the training sequences, the transitions of those alone (None: all)."""
    seq = train.sequences
    items = torch.from_numpy(np.array(seq.items, dtype=np.int64))
    offs = np.asarray(seq.offsets, dtype=np.int64)
    same_seq = torch.ones(len(items), dtype=torch.bool)
    same_seq[torch.from_numpy(offs[1:-1])] = False
    if sequences is not None:
        mine = np.repeat(np.asarray(sequences, dtype=bool), np.diff(offs))
        same_seq &= torch.from_numpy(mine)
    prev, nxt, keep = items[:-1], items[1:], same_seq[1:]
    keep = keep & (prev != nxt)
    d = (id_num[nxt] - id_num[prev])[keep]
    counts = torch.zeros(2 * window + 1, dtype=torch.float64)
    inside = d.abs() <= window
    counts.index_add_(
        0, (d[inside] + window).long(), torch.ones(int(inside.sum()), dtype=torch.float64)
    )
    counts[window] = 0.0
    top = counts.max()
    return (counts / top if top > 0 else counts).to(torch.float32)


def cold_mask(train: SequenceDataset) -> torch.Tensor:
    """``[n_items]`` float: 1 for the items without a training interaction (padding 0)."""
    cold = torch.from_numpy(np.asarray(train.item_counts()) == 0).to(torch.float32)
    cold[0] = 0.0
    return cold


def order_term(items: torch.Tensor, id_num: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """``[B, n_items]``: ``p(id(i) - id(last))`` from the ``order`` prior (:func:`order_prior`)
    for the last item of each left-padded history (0 outside the window, for the last item
    itself and for an empty history)."""
    w = (len(order) - 1) // 2
    last = items[:, -1]
    d = id_num.unsqueeze(0) - id_num[last].unsqueeze(1)
    ok = (d.abs() <= w) & (last > 0).unsqueeze(1)
    ok[:, 0] = False
    pos = torch.where(ok, d + w, torch.zeros((), dtype=d.dtype)).long()
    return torch.where(ok, order[pos], torch.zeros(()))


def seen_term(items: torch.Tensor, window: int, n_items: int) -> torch.Tensor:
    """``[B, n_items]``: 1 on the items among the last ``window`` of each left-padded history
    (padding excluded)."""
    out = torch.zeros(items.shape[0], n_items)
    out.scatter_(1, items[:, -window:].long(), 1.0)
    out[:, 0] = 0.0
    return out


def base_scores(
    base: Recommender,
    batch: Batch,
    fusion: str,
    keep: torch.Tensor | None = None,
    known: torch.Tensor | None = None,
) -> torch.Tensor:
    """``[B, n_items]``: ``base``'s scores of ``batch`` (its histories cut to the base's
    ``history_len``), normalised per list (non-finite scores and padding stay ``-inf``); with
    ``keep`` (``[n_items]`` bool, the validation lists) the other items are left out of the
    lists (``-inf``, not in the normalisation); with ``known`` instead (scoring) every item is
    scored, on the scale of the ``known`` items' statistics
    (:func:`~warmrec.models.hybrid.normalise_known`: the same values as with ``keep`` on them)."""
    h = base.history_len
    items = batch.items[:, -h:] if batch.items.shape[1] > h else batch.items
    s = torch.as_tensor(base.score(Batch(items, batch.users))).detach().float().cpu()
    if keep is not None:
        return normalise_kept(s, fusion, keep)
    return normalise_known(s, fusion, known)


def normalise_kept(
    scores: torch.Tensor, fusion: str, keep: torch.Tensor | None = None
) -> torch.Tensor:
    """:func:`~warmrec.models.hybrid.normalise` of the ``keep`` columns of ``scores[B, n_items]``
    alone (``[n_items]`` bool; None: every column), as if the others were not in the
    catalogue: they come out ``-inf``. The kept columns take the statistics that scoring
    applies to every item (:func:`~warmrec.models.hybrid.normalise_known` with ``drop``), so a
    fit on these lists sees the values scoring gives its items, to the bit: a spread within
    rounding is no scale in both, and rows with non-finite scores round alike. The result does
    not depend on how many other columns there are, not even in rounding."""
    return normalise_known(scores, fusion, keep, drop=True)


def centred_text(vectors: np.ndarray, mean: torch.Tensor | None = None) -> torch.Tensor:
    """``[n_items, d]`` float32: ``vectors`` (row 0 padding) minus ``mean`` (None: the mean of
    the rows with text, :func:`text_mean`), each row L2-normalised; rows without text (and
    padding) stay zero."""
    x = torch.as_tensor(np.asarray(vectors, dtype=np.float32)).clone()
    if x.ndim != 2 or x.shape[0] < 1:
        raise ModelError(f"fresh: text vectors of shape {tuple(x.shape)}: expected [n_items, d]")
    has = _has_text(x)
    if mean is None:
        mean = text_mean(x)
    x[has] = x[has] - mean
    x = x / x.norm(dim=1, keepdim=True).clamp(min=1e-12)
    x[~has] = 0.0
    return x


def _has_text(x: torch.Tensor) -> torch.Tensor:
    has = x.abs().sum(dim=1) > 0
    has[0] = False
    return has


def text_mean(vectors: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``[d]``: the mean of the rows of ``vectors`` with text (row 0, padding, excluded): the
    centre of the dense-text term, kept with the weights so that items added later are centred
    as the fitted catalogue was."""
    x = torch.as_tensor(np.asarray(vectors, dtype=np.float32))
    has = _has_text(x)
    if not bool(has.any()):
        raise ModelError("fresh: text_window > 0 but no item has text")
    return x[has].mean(dim=0)


def text_term(items: torch.Tensor, text: torch.Tensor, window: int, decay: float) -> torch.Tensor:
    """``[B, n_items]``: every item's dot product with the ``decay ** age``-weighted sum of the
    ``text`` rows of the last ``window`` columns of the left-padded ``items[B, L]`` (padding has
    a zero row; an empty history gives 0 everywhere)."""
    last = items[:, -window:]
    w = decay ** torch.arange(last.shape[1] - 1, -1, -1, dtype=torch.float32)
    profile = (w.view(1, -1, 1) * text[last]).sum(dim=1)
    return profile @ text.T


@register_model("fresh")
class Fresh(Recommender):
    """A base model's normalised scores plus a history-dependent bonus for cold items (see the
    module docstring)."""

    Config = FreshConfig
    fits_on_validation: ClassVar[bool] = True  # its weights are fitted there
    learns_sequences: ClassVar[bool] = True
    """As its base (the conformance suite's base, Markov, does)."""
    test_config: ClassVar[dict[str, Any]] = {
        "base": "markov",
        "cold_weight": 0.5,
        "affinity_weight": 1.0,
    }

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.base: Recommender | None = None
        self.cold: torch.Tensor | None = None  # [n_items] float, 1 for items without training
        self.weights_: tuple[float, float, float, float, float] | None = None
        """``(a, b, o, t, r)`` in use (the config's, or those chosen on validation; o, t and r
        are 0 where their term is off)."""
        self.order: torch.Tensor | None = None  # [2 W + 1] p(d) for d = -W..W (p(0) = 0)
        self.id_num: torch.Tensor | None = None  # [n_items] float raw ids (0 at padding)
        self.text: torch.Tensor | None = None  # [n_items, d] centred unit text vectors
        self.text_mean: torch.Tensor | None = None  # [d] the centre (None: saved without it)
        self.known_: torch.Tensor | None = None
        """``[n_items]`` bool: the items known when the model was fitted (:func:`known_mask`),
        whose scores alone set each per-list normalisation at scoring time; None: every item
        (where every item was known, or a model saved before they were kept)."""

    @classmethod
    def from_base(cls, base: Recommender, **config: Any) -> Fresh:
        """Wrap ``base`` (fitted or not); ``config`` sets the other fields."""
        model = cls({"base": base.name, "base_config": base.config.model_dump(), **config})
        model.base = base
        return model

    def _text_settings(self) -> TextSettings:
        """The text fields and encoder of the dense-text term."""
        c = self.config
        fields = {k: getattr(c, k) for k in ("text_fields", "text_max_chars")}
        return TextSettings(text_encoder=c.text_encoder, text_cache=c.text_cache, **fields)

    @property
    def history_len(self) -> int:
        base = self.base.history_len if self.base is not None else super().history_len
        c = self.config
        return max(base, c.recent, c.text_window, c.seen_window)

    # -- fit ----------------------------------------------------------------------------------
    def fit(
        self,
        train: SequenceDataset,
        valid: EvalSet | None = None,
        *,
        trainer: Any = None,
        callbacks: Sequence[Callable[[int, dict[str, Any], Any], bool | None]] = (),
    ) -> Fresh:
        """Fit the base if it is not yet, mark the cold items (no training interaction), then
        set the weights (the config's, or the best of the grids on ``valid``)."""
        c = self.config
        unset = self._weights_unset()
        if unset and valid is None:
            raise ModelError(
                "model 'fresh': cold_weight, affinity_weight or order_weight is None, so fit "
                "needs a validation set to choose it; pass valid or set them"
            )
        self._bind(train)
        self.base = fit_base(self, self.base, train, valid, trainer, callbacks)
        self.cold = cold_mask(train)
        known = known_mask(train, valid)
        self.known_ = None if bool(known[1:].all()) else known
        self.order, self.id_num = (None, None)
        if c.order_window > 0:
            self.id_num = numeric_ids(train.vocab)
            self.order = order_prior(train, self.id_num, c.order_window)
        self.text = self.text_mean = None
        if c.text_window > 0:
            from warmrec.models.text import text_vectors

            raw = text_vectors(train, self._text_settings())[0]
            self.text_mean = text_mean(raw)
            self.text = centred_text(raw, self.text_mean)
        if not unset:
            o = float(c.order_weight or 0.0) if c.order_window > 0 else 0.0
            t = float(c.text_weight or 0.0) if c.text_window > 0 else 0.0
            r = float(c.seen_weight or 0.0) if c.seen_window > 0 else 0.0
            self.weights_ = (float(c.cold_weight), float(c.affinity_weight), o, t, r)
        else:
            curve = self.selection_curve(valid, known)
            best = max(range(len(curve)), key=lambda i: (curve[i][5], -i))
            self.weights_ = curve[best][:5]
            self.meta.history = [
                {
                    "cold_weight": a,
                    "affinity_weight": b,
                    "order_weight": o,
                    "text_weight": t,
                    "seen_weight": r,
                    c.select_metric: v,
                }
                for a, b, o, t, r, v in curve
            ]
        return self

    def _grid(self) -> list[tuple[float, float, float, float, float]]:
        c = self.config
        ga = [c.cold_weight] if c.cold_weight is not None else list(c.cold_grid)
        gb = [c.affinity_weight] if c.affinity_weight is not None else list(c.affinity_grid)
        go, gt, gr = [0.0], [0.0], [0.0]
        if c.order_window > 0:
            go = [c.order_weight] if c.order_weight is not None else list(c.order_grid)
        if c.text_window > 0:
            gt = [c.text_weight] if c.text_weight is not None else list(c.text_grid)
        if c.seen_window > 0:
            gr = [c.seen_weight] if c.seen_weight is not None else list(c.seen_grid)
        grid = [(a, b, o, t, r) for a in ga for b in gb for o in go for t in gt for r in gr]
        return [tuple(float(v) for v in w) for w in grid]

    def _seen_term(self, items: torch.Tensor) -> torch.Tensor | None:
        """``[B, n_items]``: 1 on the items among the last ``seen_window`` of each history
        (padding excluded); None when the term is off."""
        if self.config.seen_window <= 0:
            return None
        return seen_term(items, self.config.seen_window, self.n_items)

    def _text_term(
        self, items: torch.Tensor, keep: torch.Tensor | None = None
    ) -> torch.Tensor | None:
        """``[B, n_items]``: the normalised dense-text similarity to the recent history (with
        ``keep``: normalised over those items, 0 on the others; without: every item on the
        scale of the items known at fit time, :attr:`known_`); None when the term is off."""
        if self.text is None:
            return None
        sim = text_term(items, self.text, self.config.text_window, self.config.decay)
        if keep is not None:
            out = normalise_kept(sim, self.config.fusion, keep)
        else:
            out = normalise_known(sim, self.config.fusion, self.known_)
        out[:, 0] = 0.0  # padding: the base's -inf stays
        if keep is not None:
            out[:, ~keep] = 0.0
        return out

    def _order_term(self, items: torch.Tensor) -> torch.Tensor | None:
        """``[B, n_items]``: ``p(id(i) - id(last))`` (0 outside the window, for the last item
        itself and for an empty history); None when the term is off."""
        if self.order is None or self.id_num is None:
            return None
        return order_term(items, self.id_num, self.order)

    def selection_curve(
        self, valid: EvalSet, known: torch.Tensor | None = None
    ) -> list[tuple[float, ...]]:
        """:meth:`validation_curve` with the cold targets weighed by ``cold_target_share``
        (``"catalogue"``: the cold share of the ``known`` items; ``known`` also limits the
        validation lists, :meth:`validation_curve`)."""
        share = self.config.cold_target_share
        if share is None or self.cold is None:
            return self.validation_curve(valid, known=known)
        share = resolve_share(share, self.cold, known)
        on_cold = self.cold[torch.from_numpy(np.asarray(valid.targets, dtype=np.int64))] > 0
        ic, iw = np.flatnonzero(on_cold.numpy()), np.flatnonzero(~on_cold.numpy())
        if len(ic) == 0 or len(iw) == 0:
            return self.validation_curve(valid, known=known)
        cold = self.validation_curve(valid.subset(ic), known=known)
        warm = self.validation_curve(valid.subset(iw), known=known)
        return [(*w, share * vc + (1 - share) * vw) for (*w, vc), (*_, vw) in zip(cold, warm)]

    def validation_curve(
        self, valid: EvalSet, batch_size: int = 512, known: torch.Tensor | None = None
    ) -> list[tuple[float, ...]]:
        """``(a, b, o, t, r, select_metric)`` on ``valid`` for every point of the grids (the base
        scores each batch once). With ``known`` (:func:`known_mask`) the lists hold those items
        only: an item that only test events bring is not ranked, normalised or given the cold
        bonus on validation."""
        spec = M.parse_metric(self.config.select_metric)
        grid = self._grid()
        ranks = np.zeros((len(grid), len(valid)), dtype=np.int64)
        with torch.no_grad():
            for lo in range(0, len(valid), batch_size):
                idx = np.arange(lo, min(lo + batch_size, len(valid)))
                batch = valid.batch(idx, self.history_len)
                base = self._base_scores(batch, known)
                share = cold_share(batch.items, self.cold, self.config.recent, self.config.decay)
                order = self._order_term(batch.items)
                text = self._text_term(batch.items, known)
                seen = self._seen_term(batch.items)
                if self.config.select_exclude_seen:
                    for r, j in enumerate(idx):
                        hist = np.asarray(valid.history(int(j)), dtype=np.int64)
                        base[r, torch.from_numpy(hist[hist > 0])] = -torch.inf
                rows = torch.arange(len(idx))
                tgt = torch.from_numpy(valid.targets[idx])
                for g, (a, b, o, tw, rw) in enumerate(grid):
                    s = base + (a + b * share).unsqueeze(1) * self.cold
                    if order is not None and o != 0.0:
                        s = s + o * order
                    if text is not None and tw != 0.0:
                        s = s + tw * text
                    if seen is not None and rw != 0.0:
                        s = s + rw * seen
                    t = s[rows, tgt][:, None]
                    r = (s >= t).sum(dim=1)
                    lost = ~(t[:, 0] > -torch.inf)
                    ranks[g, idx] = np.where(lost.numpy(), M.UNRANKED, r.numpy())
        f = M.RANK_METRICS[spec.name]
        return [
            (*w, float(f(ranks[g], spec.k).mean()) if len(valid) else 0.0)
            for g, w in enumerate(grid)
        ]

    def chosen_config(self) -> dict[str, float]:
        """The weights in use as config keys (``cold_weight``, ``affinity_weight``, and the
        weights of the terms that are on): with them a refit chooses nothing."""
        if self.weights_ is None:
            raise ModelError("model 'fresh' has no weights: call fit() or load() first")
        c = self.config
        on = (True, True, c.order_window > 0, c.text_window > 0, c.seen_window > 0)
        keys = ("cold_weight", "affinity_weight", "order_weight", "text_weight", "seen_weight")
        return {k: w for k, w, used in zip(keys, self.weights_, on, strict=True) if used}

    def _weights_unset(self) -> bool:
        """Whether a weight in use is None in the config, so that fit chooses them all."""
        c = self.config
        unset = c.cold_weight is None or c.affinity_weight is None
        unset = unset or (c.order_window > 0 and c.order_weight is None)
        unset = unset or (c.text_window > 0 and c.text_weight is None)
        return unset or (c.seen_window > 0 and c.seen_weight is None)

    def fit_choices(self) -> dict[str, str]:
        if self.weights_ is None or not self._weights_unset():  # weights given, not chosen
            return {}
        return {"weights": ", ".join(f"{k} {v:g}" for k, v in self.chosen_config().items())}

    # -- score --------------------------------------------------------------------------------
    def _base_scores(self, batch: Batch, keep: torch.Tensor | None = None) -> torch.Tensor:
        """The base's normalised scores: with ``keep``, of those items alone (validation);
        without, of every item on the scale of the items known at fit time (:attr:`known_`)."""
        self._check_fitted()
        if self.base is None or self.cold is None:
            raise ModelError("model 'fresh' has no base: call fit() or load() first")
        return base_scores(self.base, batch, self.config.fusion, keep, self.known_)

    def score(self, batch: Batch) -> torch.Tensor:
        if self.weights_ is None:
            raise ModelError("model 'fresh' has no weights: call fit() or load() first")
        a, b, o, t, r = self.weights_
        base = self._base_scores(batch)
        if a != 0.0 or b != 0.0:
            share = cold_share(batch.items, self.cold, self.config.recent, self.config.decay)
            base = base + (a + b * share).unsqueeze(1) * self.cold
        order = self._order_term(batch.items) if o != 0.0 else None
        if order is not None:
            base = base + o * order
        text = self._text_term(batch.items) if t != 0.0 else None
        if text is not None:
            base = base + t * text
        seen = self._seen_term(batch.items) if r != 0.0 else None
        return base if seen is None else base + r * seen

    # -- new items ----------------------------------------------------------------------------
    def add_items(self, item_features: Any) -> list[Any]:
        """Add the items of ``item_features`` that the model does not know, without refitting:
        the base adds them its way (:func:`warmrec.models.catalogue.add_items`), they are cold
        (no training event) with their ids in the catalogue order, and the dense-text term
        (if on) gets their text vectors centred on the fitted catalogue's mean. Returns the raw
        ids added."""
        from warmrec.models.catalogue import add_items, grow, new_items, pad

        self._check_fitted()
        if self.base is None or self.cold is None:
            raise ModelError("model 'fresh' is not fitted: nothing to add to")
        text = None
        if self.text is not None and self.text_mean is None:
            raise ModelError(
                "model 'fresh' with text_window > 0 was saved without its text centre (by an "
                "earlier warmrec): fit it again to add items"
            )
        if self.text is not None:  # encoded first: a failure leaves the model as it was
            new, _, extra = new_items(self, item_features)
            if new:
                from warmrec.models.text import encode_texts, item_texts

                cfg = self._text_settings()
                texts, _ = item_texts(item_features, extra, cfg.text_fields, cfg.text_max_chars)
                raw, _ = encode_texts(texts, cfg.text_encoder, cache_dir=cfg.text_cache)
                rows = np.concatenate([np.zeros((1, raw.shape[1]), np.float32), raw])
                text = centred_text(rows, self.text_mean)[1:]
        added = add_items(self.base, item_features)
        if not added:
            return []
        n = len(added)
        # the added items are scored on the scale of the items known at fit time
        self.known_ = grown_known(self.known_, self.n_items, n)
        grow(self, self.base.vocab, n)
        self.cold = pad(self.cold, n, 1.0)
        if self.id_num is not None:
            num = torch.tensor([float(i) for i in added], dtype=self.id_num.dtype)
            self.id_num = torch.cat([self.id_num, num])
        if self.text is not None and text is not None:
            if len(text) != n:  # pragma: no cover - the base adds the ids new_items finds
                raise ModelError(f"fresh: the base added {n} items, the text term {len(text)}")
            self.text = torch.cat([self.text, text.to(self.text.dtype)])
        return added

    # -- state --------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        if self.base is None or self.weights_ is None or self.cold is None:
            raise ModelError("model 'fresh' is not fitted: nothing to save")
        state: dict[str, Any] = {
            "weights": torch.tensor(self.weights_, dtype=torch.float64),
            "cold": self.cold.clone(),
        }
        if self.known_ is not None:
            state["known"] = self.known_.to(torch.uint8)
        if self.order is not None and self.id_num is not None:
            state["order"], state["id_num"] = self.order.clone(), self.id_num.clone()
        if self.text is not None:
            state["text"] = self.text.clone()
            if self.text_mean is not None:
                state["text_mean"] = self.text_mean.clone()
        for k, v in self.base.get_state().items():
            state[f"base.{k}"] = v
        return state

    def set_state(self, state: dict[str, torch.Tensor]) -> None:
        self._check_fitted()
        if "weights" not in state or "cold" not in state:
            raise ModelError("model 'fresh': the weights hold no 'weights' or 'cold'")
        self.base = load_base(self, state)
        self.cold = state["cold"].to(torch.float32)
        self.known_ = saved_known(self, state)
        self.order, self.id_num = state.get("order"), state.get("id_num")
        self.text = state.get("text")
        if self.config.text_window > 0 and self.text is None:
            raise ModelError("model 'fresh': text_window > 0 but the weights hold no 'text'")
        if self.text is not None:
            self.text = self.text.to(torch.float32)
        mean = state.get("text_mean")
        self.text_mean = None if mean is None else mean.to(torch.float32)
        w = [float(v) for v in state["weights"].reshape(-1).tolist()]
        w += [0.0] * (5 - len(w))  # saved before the order / text / repeat terms: off
        self.weights_ = (w[0], w[1], w[2], w[3], w[4])
