"""Popularity baselines: Pop (global counts) and SessionPop (counts within the history first)."""

from __future__ import annotations

import torch

from warmrec.data.dataset import Batch, EvalSet, SequenceDataset
from warmrec.models.base import Recommender
from warmrec.models.catalogue import NoEvidenceItems, pad
from warmrec.models.settings import HistorySettings
from warmrec.models.state import counts_from_state
from warmrec.registry import register_model


@register_model("pop")
class Pop(NoEvidenceItems, Recommender):
    """Most popular items in training, the same list for everyone."""

    def fit(self, train: SequenceDataset, valid: EvalSet | None = None) -> Pop:
        self._bind(train)
        self.counts = torch.from_numpy(train.item_counts()).float()
        return self

    def score(self, batch: Batch) -> torch.Tensor:
        self._check_fitted()
        return self.counts.unsqueeze(0).expand(len(batch), -1).clone()

    def get_state(self) -> dict[str, torch.Tensor]:
        return {"counts": self.counts}

    def set_state(self, state: dict[str, torch.Tensor]) -> None:
        self.counts = counts_from_state(state, len(self.vocab) if self.vocab is not None else None)

    def _extend_items(self, n_new: int) -> None:
        self.counts = pad(self.counts, n_new)


class SessionPopConfig(HistorySettings):
    """``max_len``: how many recent history items count."""


@register_model("sessionpop")
class SessionPop(Pop):
    """Items of the current history ranked by how often they occur in it, then global popularity."""

    Config = SessionPopConfig

    def score(self, batch: Batch) -> torch.Tensor:
        self._check_fitted()
        n = self.counts.shape[0]
        items = batch.items[:, -self.config.max_len :].long().cpu()  # the last max_len only
        local = torch.zeros(len(batch), n)
        local.scatter_add_(1, items, torch.ones_like(items, dtype=torch.float32))
        local[:, 0] = 0
        glob = self.counts / (self.counts.max() + 1.0)  # in [0, 1): breaks ties among local counts
        return local + glob.unsqueeze(0)
