"""Setting groups shared by several model configs, defined once and composed by inheritance.

- :class:`HistorySettings` -- ``max_len``, the recent history a model reads;
- :class:`WindowSettings` -- training windows (``window_stride``, ``random_phase``, see
  :class:`~warmrec.models.neural.WindowData`);
- :class:`SeenBiasSettings` -- the learned seen-item bias (``seen_bias``, ``seen_len``, see
  :class:`~warmrec.models.layers.SeenItemBias`);
- :class:`LossSettings` -- the next-item loss (:mod:`warmrec.models.losses`);
- :class:`TransformerSettings` -- width, depth, heads and dropout of a transformer stack, with
  ``d % n_heads == 0`` checked;
- :class:`FeatureSettings` / :class:`UserFeatureSettings` -- side-feature columns
  (:mod:`warmrec.models.features`);
- :class:`TextSettings` -- item representations from item text (``item_repr``, the encoder, the
  adaptor, see :mod:`warmrec.models.text`).

A model's config subclasses the groups it uses (``class SASRecConfig(TransformerSettings,
WindowSettings, SeenBiasSettings, LossSettings)``); code that needs a group tests
``isinstance(config, Group)`` instead of probing attributes. No torch import here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from warmrec.config import ConfigModel

LossName = Literal["ce", "sampled_ce", "bce", "gbce", "bpr-max", "auto"]
ItemRepr = Literal["id", "text", "id+text"]
AdaptorName = Literal["whiten", "moe"]
TEXT_FIELDS = (
    "title",
    "movie_title",
    "name",
    "genres",
    "class",
    "software",
    "theme",
    "job",
    "difficulty",
    "type",
    "category",
    "tags",
    "description",
)
"""Item feature columns read as item text by default (those a table lacks are skipped): MARS
(title, tags, difficulty, type, description), MovieLens (title, genres; RecBole's ml-100k:
movie_title, class) and common names. The
long description comes last: an encoder that truncates (MiniLM: 256 word pieces) keeps the
title and tags."""


MAX_HISTORY = 100_000
"""The most history items a model may read (``max_len``, ``seen_len``): far beyond any
history a next-item model reads (the package's largest setting is 200), and small enough that
a model file whose config was edited to a huge width is refused when it is read, not at its
first recommendation (which pads every history to that width)."""


class HistorySettings(ConfigModel):
    """How much of a history the model reads."""

    max_len: int = Field(50, ge=1, le=MAX_HISTORY)
    """Most recent history items the model reads (and the length of its training windows)."""


class WindowSettings(HistorySettings):
    """Training windows of ``max_len`` positions, every position a target once."""

    window_stride: int = Field(0, ge=0)
    """How far apart the training windows of long sequences start (0 = ``max_len``); smaller
    strides give the early targets of each window more context, at more compute."""

    random_phase: bool = False
    """Shift the window boundaries of long sequences every epoch, so a target is seen with a
    different context each epoch."""


class SeenBiasSettings(HistorySettings):
    """A learned score offset for items already in the history."""

    seen_bias: bool = True
    """Learn one scalar added to the scores of items already in the history: the model learns
    whether its domain repeats items (ml-100k users never rate a movie twice)."""

    seen_len: int = Field(200, ge=1, le=MAX_HISTORY)
    """How many recent history items the seen-item bias covers at scoring time (may exceed
    ``max_len``: the network reads ``max_len``, the bias looks further back)."""


class LossSettings(ConfigModel):
    """The next-item training objective (see :mod:`warmrec.models.losses`)."""

    loss: LossName = "auto"
    """``"auto"`` (full softmax up to ``auto_full_max_items`` items, sampled softmax with logQ
    correction above; the choice is logged and recorded in the run info), ``"ce"`` full softmax,
    ``"sampled_ce"`` sampled softmax with logQ correction, ``"bce"`` (SASRec paper), ``"gbce"``
    (gSASRec) or ``"bpr-max"`` (GRU4Rec)."""

    auto_full_max_items: int = Field(20_000, ge=1)
    """Largest catalogue (items, padding included) on which ``loss = "auto"`` trains with the full
    softmax; larger ones get ``"sampled_ce"`` (``benchmarks/results/speed.md``: its time per
    epoch grows with the catalogue, sampled softmax's does not)."""

    n_negatives: int = Field(0, ge=0)
    """Negatives per row for the sampled losses; 0 = the loss's default (1 for ``"bce"``, as in
    the SASRec paper; 1024 for ``"auto"`` where it resolves to sampled softmax,
    :data:`~warmrec.models.losses.AUTO_NEGATIVES`; 256 for the others)."""

    negative_sampling: Literal["uniform", "pop"] = "uniform"
    """How negatives are drawn: uniformly or by ``count ** pop_alpha``."""

    pop_alpha: float = Field(0.75, ge=0)
    """Exponent of the popularity sampling distribution."""

    shared_negatives: bool | None = None
    """Share one set of negatives across the batch (cheap) or draw per position (``"bce"`` /
    ``"gbce"`` only; ``"sampled_ce"`` / ``"bpr-max"`` always share). None: shared except for
    ``"bce"``."""

    in_batch: bool = False
    """Also use the batch's other targets as negatives (``"sampled_ce"``, ``"bpr-max"``, and
    ``"auto"`` where it resolves to sampled softmax; ``"ce"`` scores every item already).
    ``"bce"`` / ``"gbce"`` refuse it: their negatives are the sampler's draws only (gBCE's
    calibration assumes uniform ones)."""

    logq: float = Field(1.0, ge=0)
    """Strength of the logQ correction of ``"sampled_ce"`` (0 = off, 1 = full)."""

    gbce_t: float = Field(0.75, ge=0, le=1)
    """gSASRec's calibration parameter ``t`` of ``"gbce"``."""

    bpr_reg: float = Field(1.0, ge=0)
    """Score regularisation of ``"bpr-max"``."""

    elu_param: float = Field(0.0, ge=0)
    """ELU applied to the scores of ``"bpr-max"`` first (0 = off; GRU4Rec's ``elu_param``)."""

    @model_validator(mode="after")
    def _in_batch_has_a_use(self) -> LossSettings:
        check_in_batch(self.loss, self.in_batch)
        return self


IN_BATCH_LOSSES = ("sampled_ce", "bpr-max", "auto", "ce")
"""Losses that take ``in_batch`` (``"ce"`` and ``"auto"`` resolved to it score every item, the
batch's targets among them)."""


def check_in_batch(loss: str, in_batch: bool) -> None:
    """Refuse ``in_batch`` with a loss that would ignore it (``"bce"``, ``"gbce"``), as a
    ``ValueError`` naming the field (pydantic reports it as a one-line config error)."""
    if in_batch and loss.lower() not in IN_BATCH_LOSSES:
        raise ValueError(
            f"in_batch: expected false with loss {loss!r} (in-batch negatives are used by "
            "'sampled_ce' and 'bpr-max'; BCE and gBCE score the sampled negatives only), "
            "found true"
        )


class TransformerSettings(ConfigModel):
    """A stack of transformer blocks of width ``d``."""

    d: int = Field(64, gt=0)
    """Width of the item embeddings and the transformer."""

    n_layers: int = Field(2, ge=1)
    """Transformer blocks."""

    n_heads: int = Field(2, ge=1)
    """Attention heads per block; must divide ``d``."""

    ffn_dim: int = Field(256, ge=1)
    """Width of each block's feed-forward layer."""

    dropout: float = Field(0.2, ge=0, lt=1)
    """Dropout on the embeddings and inside the blocks."""

    attn_dropout: float = Field(0.2, ge=0, lt=1)
    """Dropout on the attention weights."""

    @model_validator(mode="after")
    def _heads_divide_width(self) -> TransformerSettings:
        if self.d % self.n_heads:
            raise ValueError(f"n_heads: expected a divisor of d = {self.d}, found {self.n_heads}")
        return self


class FeatureSettings(ConfigModel):
    """Item side-feature columns added to the item embeddings."""

    item_features: tuple[str, ...] = ()
    """Item feature columns used (a missing column is skipped with a warning)."""

    numeric_features: tuple[str, ...] = ()
    """Feature columns bucketised as numbers into ``n_bins`` quantile bins."""

    n_bins: int = Field(10, ge=1)
    """Quantile bins of a numeric feature."""


class UserFeatureSettings(FeatureSettings):
    """Item and user side-feature columns."""

    user_features: tuple[str, ...] = ()
    """User feature columns used (a missing column is skipped with a warning)."""


class TextFieldSettings(ConfigModel):
    """Which item feature columns make an item's text (:func:`warmrec.models.text.item_texts`)."""

    text_fields: tuple[str, ...] = TEXT_FIELDS
    """Item feature columns joined into the item text, in this order (absent ones skipped)."""

    text_max_chars: int = Field(2000, ge=1)
    """Longest item text kept (characters; MiniLM reads at most 256 word pieces anyway)."""


class TextSettings(TextFieldSettings):
    """Item vectors from item text through a sentence encoder and a learned adaptor
    (:mod:`warmrec.models.text`)."""

    item_repr: ItemRepr = "id"
    """``"id"`` (a learned vector per item), ``"text"`` (the adapted text vector only: items
    without interactions are ranked by their text) or ``"id+text"`` (their sum)."""

    text_encoder: str = "minilm"
    """Sentence encoder (:func:`warmrec.models.text.text_encoder`): ``"minilm"`` (offline
    all-MiniLM-L6-v2, extra ``warmrec[text]``) or ``"hashing"`` (bag of words, no model)."""

    adaptor: AdaptorName = "whiten"
    """``"whiten"`` (parametric whitening + projection) or ``"moe"`` (a mixture of whitening
    experts, as UniSRec)."""

    n_experts: int = Field(4, ge=1)
    """Experts of the ``"moe"`` adaptor."""

    text_prior: int = Field(0, ge=0)
    """Add to each item's score its text's cosine with the recent history, with a learned
    weight: the last ``text_prior`` items, weighted ``0.5 ** age`` (0 = off). Keeps the plain
    content similarity that the adaptor's projection blurs (the strength of a TF-IDF
    baseline on items without interactions)."""

    id_dropout: float = Field(0.0, ge=0, le=1)
    """With ``"id+text"``: the share of items whose id part is dropped in each training step
    (their text part must score them alone; helps items without interactions)."""

    text_dropout: float = Field(0.1, ge=0, lt=1)
    """Dropout on the text vectors before the adaptor (training only)."""

    prior_only: float = Field(0.0, ge=0, lt=1)
    """With ``text_prior``: the share of training sequences scored by the text prior alone
    (the encoder's scores dropped), so that the prior's weight is learned as a ranker of its
    own and not only as a correction to the encoder (the prior reads the raw sentence vectors,
    which mean the same on any catalogue; the encoder's scores are learned on the source's)."""

    encoder_weight: float = Field(1.0, ge=0, allow_inf_nan=False)
    """With ``text_prior``: how much to trust the encoder against the text prior when scoring
    (evaluation, serving): the encoder's item scores are multiplied by it, the prior's are not
    (nor the seen-item bias). 1 is the plain model; 0 ranks by the text prior alone (the MiniLM
    cosine with the recent history); between them the encoder's scores count for less. It does
    not apply in training (the prior's weight is learned against the encoder's full scores; a
    scale on them would only be absorbed by the learned weights, and 0 would leave the encoder
    untrained): it is a scoring-time choice, e.g. ``[transfer] model_options`` for a zero-shot
    target whose catalogue the transferred encoder was not trained on."""

    text_cache: str | None = None
    """Folder of the cached text vectors (None: ``$WARMREC_CACHE_DIR/text`` or
    ``~/.cache/warmrec/text``; ``""``: no cache)."""

    @model_validator(mode="after")
    def _encoder_weight_needs_prior(self) -> TextSettings:
        if self.encoder_weight != 1.0 and (self.text_prior == 0 or self.item_repr == "id"):
            raise ValueError(
                f"encoder_weight: {self.encoder_weight:g} weighs the encoder against the text "
                f"prior, and this model has none (item_repr={self.item_repr!r}, text_prior="
                f"{self.text_prior}); expected 1, or a text item_repr with text_prior > 0"
            )
        return self
