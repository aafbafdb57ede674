"""Items added to a fitted model without retraining (``warmrec add-items``).

A catalogue grows after training: a shop lists a product, a MOOC publishes a video. A model that
can take the new items does it its own way through an ``add_items(item_features)`` method, and
:func:`add_items` only dispatches to it:

- models that read **item text** give a new item the vector of its text: a text-aware SASRec
  (:func:`warmrec.models.text.add_text_items`), TF-IDF (the fitted terms and idf), Fresh (its
  base's way, the new items cold, with the dense-text term centred on the fitted mean), FeatRank
  (its base's way, the new items cold with their tags and ids read from the table);
- models that score an item **only from its training events** (popularity, item-to-item rules
  and kNN, session kNN, item2vec) give a new item what they give any catalogue item without
  events: no evidence (count 0, no co-occurrence, no vector). It ranks as such an item ranks
  (after those with evidence), and its events, once in a history, are read as the model reads an
  item it has never seen. What this adds is that the model *knows* the id: it can be served,
  recommended by a text-aware partner in a :class:`~warmrec.models.hybrid.Hybrid` (both members
  add the items), and refitted later on the same item table;
- a hybrid adds the items to both members (each its own way).

Models with learned item vectors and no text (an ID-only SASRec, GRU4Rec, ...) refuse: a new
item would need a vector no training made. Existing item indices never move: the vocabulary
grows at its end.
"""

from __future__ import annotations

from typing import Any

import polars as pl
import torch

from warmrec.data.schema import ITEM
from warmrec.data.vocab import ItemVocab
from warmrec.errors import ModelError
from warmrec.models.base import Recommender

TAKERS = "a text-aware SASRec, TF-IDF, Fresh, FeatRank, popularity, rules, kNN, item2vec and their hybrids"
"""The models that can take new items, for messages."""


def add_items(model: Recommender, item_features: pl.DataFrame) -> list[Any]:
    """Add the items of ``item_features`` that ``model`` does not know, without retraining, the
    model's way (see the module docstring). Returns the raw ids added, in table order.

    Raises:
        ModelError: the model cannot take new items without retraining.
    """
    own = getattr(model, "add_items", None)
    if own is None:
        raise ModelError(
            f"model '{model.name}' cannot take new items without retraining (it learns a vector "
            f"per item and reads no item text; {TAKERS} can): fit it again"
        )
    return own(item_features)


def growable(model: Recommender) -> str | None:
    """None if ``model`` can take new items without retraining, else why not (the one-line
    error :func:`add_items` would raise). Nothing is added: the check adds an empty table."""
    empty = pl.DataFrame({ITEM: pl.Series([], dtype=model.vocab.ids.dtype)})
    try:
        add_items(model, empty)
    except ModelError as e:
        return str(e)
    return None


def new_items(model: Recommender, item_features: pl.DataFrame) -> tuple[list[Any], Any, Any]:
    """``(raw ids, vocabulary, their vocabulary)``: the items of ``item_features`` that
    ``model`` does not know (in table order), the model's vocabulary grown by them at the end
    (existing indices do not move), and a vocabulary of the new ones alone."""
    ids = item_features[ITEM].unique(maintain_order=True)
    old = model.vocab
    if old.is_str:
        ids = ids.cast(pl.Utf8)
    new = ids.filter(~ids.is_in(old.ids.implode()))
    if new.len() == 0:
        return [], old, None
    vocab = ItemVocab(pl.concat([old.ids, new.cast(old.ids.dtype)]))
    return new.to_list(), vocab, ItemVocab(new.cast(old.ids.dtype))


def text_fields(model: Recommender) -> list[str]:
    """The item text fields ``model`` reads (its own, its members', its base's; in config
    order, each once): where a new item's text comes from. Empty for a model without text."""
    out: list[str] = []
    parts = [model]
    while parts:
        m = parts.pop(0)
        cfg = m.config
        if getattr(cfg, "item_repr", "text") != "id" and getattr(cfg, "text_window", 1) > 0:
            out += [f for f in getattr(cfg, "text_fields", ()) if f not in out]
        parts += list((getattr(m, "members", None) or {}).values())
        if getattr(m, "base", None) is not None and isinstance(m.base, Recommender):
            parts.append(m.base)
    return out


def grow(model: Recommender, vocab: ItemVocab, n_new: int) -> None:
    """Give ``model`` the grown ``vocab`` and its new items a training count of 0."""
    model.vocab = vocab
    if model.meta.item_counts is not None:
        model.meta.item_counts = list(model.meta.item_counts) + [0] * n_new


def pad(t: torch.Tensor, n_new: int, value: float | bool = 0) -> torch.Tensor:
    """``t`` with ``n_new`` rows of ``value`` appended along its first axis."""
    extra = torch.full((n_new, *t.shape[1:]), value, dtype=t.dtype, device=t.device)
    return torch.cat([t, extra])


class NoEvidenceItems:
    """Mixin: ``add_items`` for models that score an item only from its training events (see
    the module docstring). The class extends its own item-indexed state in
    :meth:`_extend_items`; the vocabulary and counts are grown here."""

    def add_items(self, item_features: pl.DataFrame) -> list[Any]:
        """Add the unknown items of ``item_features`` with no evidence (count 0, no
        co-occurrence): they rank as the catalogue's items without events. Returns the raw ids
        added."""
        self._check_fitted()  # type: ignore[attr-defined]
        new, vocab, _ = new_items(self, item_features)  # type: ignore[arg-type]
        if not new:
            return []
        grow(self, vocab, len(new))  # type: ignore[arg-type]
        self._extend_items(len(new))
        return new

    def _extend_items(self, n_new: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError
