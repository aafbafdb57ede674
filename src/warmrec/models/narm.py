"""NARM: neural attentive session-based recommendation.

Li, Ren, Chen, Ren, Lian & Ma, "Neural Attentive Session-based Recommendation", CIKM 2017.

A GRU encodes the item sequence. The **global** encoder is the last hidden state
``c_g = h_t``; the **local** encoder attends over every hidden state of the sequence with
``alpha_tj = v^T sigmoid(A1 h_t + A2 h_j)`` (no softmax, as in the paper and its code) and gives
``c_l = sum_j alpha_tj h_j``. The **bilinear decoder** scores item ``i`` as
``emb_i^T B [c_g; c_l]`` with the same item embeddings as the input (``B`` is ``2H -> D``), which
makes the full softmax one matrix product. Dropout on the input embeddings (0.25) and on the
concatenated context (0.5), as in the paper.

Training: the paper augments every session into all its prefixes, each predicting its next item.
Here the same pairs come from :class:`~warmrec.models.neural.WindowData` in one pass per window:
the GRU runs once over the window and the attention at position ``t`` sees only ``j <= t``
(a masked ``[B, L, L]`` score matrix), so position ``t``'s output is exactly the prefix model's.
Windows of ``max_len`` bound the prefixes of very long sequences (the paper's sessions are short).

Deviations: the loss is any of :mod:`warmrec.models.losses` (full softmax CE by default, as in
the paper); the optimizer is the shared loop's (paper: Adam, lr 1e-3, batch 512); scoring uses
the last ``max_len`` items of a history.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field
from torch import nn

from warmrec.data.dataset import Batch
from warmrec.models.layers import Dropout, GRUBlock, ItemEmbedding, SeenItemBias, right_shift
from warmrec.models.neural import NeuralRecommender
from warmrec.models.settings import LossSettings, SeenBiasSettings, WindowSettings
from warmrec.registry import register_model


class NARMConfig(WindowSettings, SeenBiasSettings, LossSettings):
    """NARM settings (paper defaults: ``embedding_dim=50``, ``hidden_size=100``)."""

    embedding_dim: int = Field(50, ge=1)
    """Item embedding width."""
    hidden_size: int = Field(100, ge=1)
    """GRU units."""
    n_layers: int = Field(1, ge=1)
    """Stacked GRU layers."""
    dropout_embed: float = Field(0.25, ge=0, lt=1)
    """Dropout on the input embeddings (paper: 0.25)."""
    dropout_context: float = Field(0.5, ge=0, lt=1)
    """Dropout on the concatenated global and local context (paper: 0.5)."""
    init_std: float = Field(1.0, gt=0)
    """Standard deviation of the item embeddings at initialisation (1.0 is PyTorch's
    ``nn.Embedding`` default, used by the common PyTorch NARM code; with the transformers' 0.02
    the GRU sees near-zero inputs and NARM learns far more slowly)."""


class NARMNet(nn.Module):
    """Embedding -> GRU -> global + local attention -> bilinear query ``[.., D]``."""

    def __init__(self, n_items: int, cfg: NARMConfig) -> None:
        super().__init__()
        d, h = cfg.embedding_dim, cfg.hidden_size
        self.item = ItemEmbedding(n_items, d, tied=True, init_std=cfg.init_std)
        self.seen = SeenItemBias() if cfg.seen_bias else None
        self.emb_drop = Dropout(cfg.dropout_embed)
        self.gru = GRUBlock(d, h, cfg.n_layers)
        self.a1 = nn.Linear(h, h, bias=False)
        self.a2 = nn.Linear(h, h, bias=False)
        self.v = nn.Linear(h, 1, bias=False)
        self.ctx_drop = Dropout(cfg.dropout_context)
        self.b = nn.Linear(2 * h, d, bias=False)

    def states(self, items: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """GRU outputs ``[B, L, H]`` of right-padded ``items`` (zeros after each length)."""
        return self.gru.outputs(self.emb_drop(self.item(items)), lens)

    def forward(self, items: torch.Tensor, lens: torch.Tensor, last_only: bool) -> torch.Tensor:
        """Queries ``[B, L, D]`` for every position (or ``[B, D]`` at each row's last item)."""
        h = self.states(items, lens)
        length = items.shape[1]
        col = torch.arange(length, device=items.device)
        if last_only:
            last = (lens - 1).clamp_min(0)
            h_t = h[torch.arange(len(h), device=h.device), last][:, None]  # [B, 1, H]
            allowed = (col[None, :] < lens[:, None])[:, None, :]  # [B, 1, L]
        else:
            h_t = h
            allowed = (col[None, :, None] >= col[None, None, :]) & (
                col[None, None, :] < lens[:, None, None]
            )  # [B, t, j]: j <= t, j real
        e = self.v(torch.sigmoid(self.a1(h_t)[:, :, None, :] + self.a2(h)[:, None, :, :]))
        alpha = e.squeeze(-1) * allowed
        c_local = alpha @ h  # [B, T, H]
        c = self.ctx_drop(torch.cat([h_t, c_local], dim=-1))
        q = self.b(c)
        return q[:, 0] if last_only else q


@register_model("narm")
class NARM(NeuralRecommender):
    """NARM (Li et al. 2017) on the shared training loop."""

    Config = NARMConfig
    default_trainer: ClassVar[dict[str, Any]] = {"batch_size": 32}
    """Batch 32 (lr 1e-3, AdamW, early stopping), as in ``benchmarks/neural_ml100k.py``
    (``benchmarks/results/neural_ml100k.md``, ml-100k leave-one-out: test NDCG@10 0.0674 +- 0.0078 over 3 seeds)."""
    test_config: ClassVar[dict[str, Any]] = {
        "embedding_dim": 32,
        "hidden_size": 32,
        "dropout_embed": 0.0,
        "dropout_context": 0.0,
        "max_len": 8,
    }

    def build_net(self, n_items: int) -> NARMNet:
        return NARMNet(n_items, self.config)

    def training_step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        items, targets, lens = right_shift(batch["items"], batch["targets"])
        q = self.net(items, lens, last_only=False)
        item = self.net.item
        return self.window_loss(
            q, items, targets, item.output_weight, item.output_bias, before=batch.get("before")
        )

    def forward_scores(self, batch: Batch) -> torch.Tensor:
        items, lens = right_shift(batch.items[:, -self.config.max_len :])
        return self.add_seen(self.net.item.logits(self.net(items, lens, last_only=True)), batch)
