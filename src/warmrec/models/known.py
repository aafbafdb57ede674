"""The items a model knows when it is fitted (:func:`known_mask`).

The vocabulary covers every part of a split, so that held-out items are ranked. A fit that
ranked or counted the items only the test events bring -- a catalogue's cold share, a cold
bonus, a softmax's candidates, a per-list normalisation -- let the test part change what it
chose on validation; Fresh, FeatRank, Hybrid and ``warmrec auto`` take their statistics over
these items instead, and keep them with the model (:func:`grown_known` as items are added,
:func:`saved_known` when loaded).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from warmrec.data.dataset import EvalSet, SequenceDataset
from warmrec.data.schema import ITEM
from warmrec.errors import ModelError


def known_mask(train: SequenceDataset, valid: EvalSet | None = None) -> torch.Tensor:
    """``[n_items]`` bool: the items known when the model is fitted -- with an event in
    ``train``, in ``valid`` (its histories, history-only rows and targets) or a row in
    ``train``'s item table (a catalogue item, events or not); False for padding and for the
    items that only the test events bring. The vocabulary covers every part of a split, so
    that held-out items are ranked; a fit that ranked or counted those items on validation
    (the catalogue's cold share, the cold bonus, the softmax's candidates, a per-list
    normalisation) let the test part change the weights it chose."""
    known = torch.from_numpy(np.asarray(train.item_counts()) > 0)
    if valid is not None:
        for idx in (valid.items, valid.targets):
            idx = torch.from_numpy(np.array(idx, dtype=np.int64))
            known[idx[(idx > 0) & (idx < len(known))]] = True
    table = train.item_features
    if table is not None and ITEM in table.columns and table.height:
        idx = torch.from_numpy(train.vocab.lookup(table[ITEM].drop_nulls().to_list()))
        known[idx[idx > 0]] = True
    known[0] = False
    return known


def grown_known(known: torch.Tensor | None, n_items: int, n_added: int) -> torch.Tensor:
    """``known`` (:func:`known_mask`, ``[n_items]``; None: every item but padding) with
    ``n_added`` items added after the fit, not known: they are scored on the known items'
    scale and do not move it."""
    if known is None:
        known = torch.ones(n_items, dtype=torch.bool)
        known[0] = False
    return torch.cat([known, torch.zeros(n_added, dtype=torch.bool)])


def saved_known(model: Any, state: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """The known items of a saved ``state`` (``"known"``, checked against ``model``'s
    vocabulary); None where it holds none (every item known, or saved before they were kept:
    such a model scores as it did)."""
    known = state.get("known")
    if known is None:
        return None
    if len(known) != len(model.vocab):
        raise ModelError(
            f"model '{model.name}': the weights' 'known' holds {len(known)} items, the "
            f"vocabulary {len(model.vocab)}"
        )
    return known.reshape(-1).bool()
