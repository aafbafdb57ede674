"""SASRec: self-attentive sequential recommendation.

Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018.

Item embeddings (scaled by ``sqrt(d)`` as in the original) plus learned positions go through
``n_layers`` causal pre-LN transformer blocks; the representation at each position scores the
next item against the (tied) item table. Training predicts the next item at *every* position of
each (windowed) training sequence -- no per-prefix expansion -- with any loss of
:mod:`warmrec.models.losses`: ``"ce"`` (full softmax, the strong default on small and mid-sized
catalogues, as in "SASRec+", Klenitskiy & Vasilev 2023), ``"bce"`` (the paper's objective, one
uniform negative per position), ``"gbce"`` (gSASRec), ``"sampled_ce"`` or ``"bpr-max"``.

Differences from the paper's code: pre-LN blocks with GELU feed-forward of width ``ffn_dim``
(the paper: ReLU, width ``d``, layer-norm on queries only); ``norm_first=False, emb_norm=True,
emb_scale=False`` gives RecBole's variant instead (post-LN, LayerNorm on the summed embeddings);
key padding is masked but each position may attend to itself; negatives are not filtered
against the whole user history (only the target itself is excluded); window boundaries move
every epoch (``random_phase``), so long histories are seen with varying contexts.

Beyond the paper: a learned seen-item bias (``seen_bias``, on by default,
:class:`~warmrec.models.layers.SeenItemBias`) lets the model learn whether its domain repeats
items. ml-100k users never rate a movie twice, and SASRec without it keeps ranking the movies a
user has just rated near the top.

Measured on ml-100k (leave-one-out, max_len 50, full ranking, seen items not excluded, 1 CPU
thread, shared machine, ``benchmarks/results/neural_ml100k.md``): about 6.5 CPU-seconds per
epoch (RecBole: 140 s). With the RecBole variant (``norm_first=False, emb_norm=True,
emb_scale=False``), ``dropout = attn_dropout = 0.5``, batch 32, lr 2e-3 with cosine decay, the
validation-selected test NDCG@10 was about 0.107 over three seeds with the seen-item bias and
about 0.06 without it (RecBole 0.0636).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from warmrec.data.dataset import Batch
from warmrec.models.layers import (
    ItemEmbedding,
    PositionalEmbedding,
    SeenItemBias,
    TransformerStack,
)
from warmrec.models.neural import NeuralRecommender
from warmrec.registry import register_model


@dataclass
class SASRecConfig:
    """SASRec settings; loss fields as in :class:`~warmrec.models.losses.LossSpec`.

    ``window_stride`` (0 = ``max_len``) sets how far apart training windows of long sequences
    start; smaller strides give early targets of each window more context at more compute.
    ``random_phase`` shifts the window boundaries of long sequences every epoch, so a target is
    seen with a different context each epoch (see :class:`~warmrec.models.neural.WindowData`).
    ``seen_bias`` adds a learned offset to the scores of items already in the history
    (:class:`~warmrec.models.layers.SeenItemBias`): it learns whether the domain repeats items;
    at scoring time it covers the last ``seen_len`` items of the history (the network itself
    reads the last ``max_len``), in training the items before each position of the window.
    ``n_negatives = 0`` takes the loss's default: 1 for ``"bce"`` (as in the paper), 256 for the
    other sampled losses. ``"bce"``/``"gbce"`` draw negatives per position (as SASRec and gSASRec
    do) unless ``shared_negatives``; ``"sampled_ce"``/``"bpr-max"`` always share them across the
    batch. Sharing is much cheaper but, when the negatives are a large share of a small
    catalogue, makes BCE-type losses train poorly.
    """

    max_len: int = 50
    d: int = 64
    n_layers: int = 2
    n_heads: int = 2
    ffn_dim: int = 256
    dropout: float = 0.2
    attn_dropout: float = 0.2
    emb_scale: bool = True
    emb_norm: bool = False
    norm_first: bool = True
    tied: bool = True
    output_bias: bool = False
    seen_bias: bool = True
    seen_len: int = 200
    window_stride: int = 0
    random_phase: bool = True
    loss: str = "ce"
    n_negatives: int = 0
    negative_sampling: str = "uniform"
    pop_alpha: float = 0.75
    shared_negatives: bool = False
    logq: float = 1.0
    gbce_t: float = 0.75
    bpr_reg: float = 1.0


class SASRecNet(nn.Module):
    """The network: ``items[B, L] -> hidden[B, L, d]``; ``item.logits`` scores items."""

    def __init__(self, n_items: int, cfg: SASRecConfig) -> None:
        super().__init__()
        self.item = ItemEmbedding(n_items, cfg.d, tied=cfg.tied, bias=cfg.output_bias)
        self.pos = PositionalEmbedding(cfg.max_len, cfg.d)
        self.drop = nn.Dropout(cfg.dropout)
        self.encoder = TransformerStack(
            cfg.d,
            cfg.n_layers,
            cfg.n_heads,
            cfg.ffn_dim,
            cfg.dropout,
            causal=True,
            attn_dropout=cfg.attn_dropout,
            norm_first=cfg.norm_first,
        )
        self.emb_norm = nn.LayerNorm(cfg.d) if cfg.emb_norm else nn.Identity()
        self.scale = math.sqrt(cfg.d) if cfg.emb_scale else 1.0
        self.seen = SeenItemBias() if cfg.seen_bias else None

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        x = self.item(items) * self.scale
        x = self.emb_norm(x + self.pos(x))
        return self.encoder(self.drop(x), items > 0)


@register_model("sasrec")
class SASRec(NeuralRecommender):
    """SASRec (Kang & McAuley 2018) on the shared training loop."""

    Config = SASRecConfig
    test_config: ClassVar[dict[str, Any]] = {
        "d": 32,
        "n_layers": 1,
        "n_heads": 1,
        "ffn_dim": 64,
        "max_len": 10,
        "dropout": 0.1,
        "attn_dropout": 0.1,
    }

    def build_net(self, n_items: int) -> SASRecNet:
        return SASRecNet(n_items, self.config)

    def training_step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        item = self.net.item
        return self.window_loss(
            self.net(batch["items"]),
            batch["items"],
            batch["targets"],
            item.output_weight,
            item.output_bias,
        )

    def forward_scores(self, batch: Batch) -> torch.Tensor:
        items = batch.items[:, -self.config.max_len :]
        # the seen-item offset covers the whole history given (seen_len), not just the window
        return self.add_seen(self.net.item.logits(self.net(items)[:, -1]), batch)
