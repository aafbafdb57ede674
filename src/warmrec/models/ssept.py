"""SSE-PT: personalized transformer with stochastic shared embeddings.

Wu, Li, Hsieh & Sharpnack, "SSE-PT: Sequential Recommendation Via Personalized Transformer",
RecSys 2020 (SSE: Wu, Li, Hsieh & Sharpnack, "Stochastic Shared Embeddings", NeurIPS 2019).
Follows the authors' code (wuliwei9278/SSE-PT) where practical.

SASRec with a user embedding: at every position the input is the concatenation
``[sqrt(d_i) * item_emb ; sqrt(d_u) * user_emb]`` (width ``d_i + d_u``) plus a learned position;
causal pre-LN transformer blocks produce ``o_t``, which scores item ``l`` for user ``u`` as
``o_t . [item_l ; user_u]``.

**Stochastic Shared Embeddings** (training only): with probability ``sse_user`` a sequence's
user index is replaced by a uniformly random user (the paper's ``1 - threshold_user``; 0.92 on
MovieLens-1M), and with probability ``sse_item`` each input event is replaced by a random item
(``1 - threshold_item``; 0.1). As in the official sampler, a replaced event changes both the
input at its position (and so the previous position's target, which is the same event) and its
own target, which becomes another random item. Replacing items are drawn from those with
training events, replacing users from those with training windows (the vocabularies cover
every part of a split: an item or user only the held-out parts bring would otherwise be trained
at random); all from torch's RNG (seeded by the training loop).

Users: ``SequenceDataset.users`` / ``Batch.users`` are user-vocabulary indices; ``0`` is an
unknown user (a new user at serving time, a history without a user, a log without ``user_id``).
An unknown user (or one of the vocabulary without a training sequence of two events or more:
a user first seen in validation or test, as under the cold-start split ``user``, or one with a
single event before a temporal split's cut, whose row no training window reaches) gets the
**mean** of the trained user embeddings (with no users at all the single
row 0 is trained and used for everyone, so the model is a SASRec of width ``d_i + d_u``).

Optional item side features (``item_features``, via :mod:`warmrec.models.features`) are added to
the item embedding of the input and output (off by default).

Deviations from the official code: full softmax cross-entropy by default (the paper: BCE with
one negative; ``loss="bce"`` is available); for any loss the user half of the score,
``o_t[d_i:] . user_u``, is dropped: it is the same for every candidate of a row, so it changes no
ranking and cancels in softmax losses (for the BCE losses it is a per-row offset the official
code learns); pre-LN blocks with GELU feed-forward (the official: ReLU of width ``d``).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn

from warmrec.data.dataset import Batch, SequenceDataset
from warmrec.models.features import FeatureEmbedder
from warmrec.models.layers import (
    Dropout,
    ItemEmbedding,
    PositionalEmbedding,
    SeenItemBias,
    TransformerStack,
)
from warmrec.models.settings import (
    FeatureSettings,
    LossSettings,
    SeenBiasSettings,
    WindowSettings,
)
from warmrec.models.user_features import (
    FeatureSequenceModel,
    batch_users,
    known_users,
    n_users_of,
)
from warmrec.registry import register_model
from warmrec.rng import generator


class SSEPTConfig(WindowSettings, SeenBiasSettings, LossSettings, FeatureSettings):
    """SSE-PT settings (official ml-1m run: ``d_item = d_user = 50``, 2 blocks, 1 head,
    dropout 0.2, ``sse_user = 0.92``, ``sse_item = 0.1``)."""

    d_item: int = Field(50, ge=1)
    """Width of the item embeddings."""
    d_user: int = Field(50, ge=1)
    """Width of the user embeddings (the transformer's width is ``d_item + d_user``)."""
    n_layers: int = Field(2, ge=1)
    """Transformer blocks."""
    n_heads: int = Field(1, ge=1)
    """Attention heads per block; must divide ``d_item + d_user``."""
    ffn_dim: int = Field(0, ge=0)
    """Width of each block's feed-forward layer (0 = 4 x the transformer's width)."""
    dropout: float = Field(0.2, ge=0, lt=1)
    """Dropout on the embeddings and inside the blocks."""
    attn_dropout: float = Field(0.2, ge=0, lt=1)
    """Dropout on the attention weights."""
    sse_item: float = Field(0.1, ge=0, le=1)
    """Probability of replacing an input event by a random item (SSE, training only)."""
    sse_user: float = Field(0.92, ge=0, le=1)
    """Probability of replacing a sequence's user by a random user (SSE, training only)."""

    @model_validator(mode="after")
    def _heads_divide_width(self) -> SSEPTConfig:
        d = self.d_item + self.d_user
        if d % self.n_heads:
            raise ValueError(
                f"n_heads: expected a divisor of d_item + d_user = {d}, found {self.n_heads}"
            )
        return self


class SSEPTNet(nn.Module):
    """``items[B, L], users[B] -> hidden[B, L, d_item + d_user]``."""

    def __init__(
        self, n_items: int, n_users: int, cfg: SSEPTConfig, item_specs: list | None = None
    ) -> None:
        super().__init__()
        d = cfg.d_item + cfg.d_user
        self.d_item = cfg.d_item
        self.n_users = n_users
        self.item = ItemEmbedding(n_items, cfg.d_item)
        self.seen = SeenItemBias() if cfg.seen_bias else None
        self.user = nn.Embedding(n_users, cfg.d_user)
        nn.init.normal_(self.user.weight, std=0.02)
        # the users with training windows: the others (a user of the vocabulary first seen in
        # validation or test, as under the cold-start split "user", or with a single training
        # event) have untrained rows
        trained = torch.ones(n_users, dtype=torch.bool)
        trained[0] = False
        self.register_buffer("trained", trained)
        self.item_feat = FeatureEmbedder(item_specs, n_items, cfg.d_item) if item_specs else None
        self.pos = PositionalEmbedding(cfg.max_len, d)
        self.drop = Dropout(cfg.dropout)
        self.encoder = TransformerStack(
            d,
            cfg.n_layers,
            cfg.n_heads,
            cfg.ffn_dim or 4 * d,
            cfg.dropout,
            causal=True,
            attn_dropout=cfg.attn_dropout,
        )
        self.scale_i = math.sqrt(cfg.d_item)
        self.scale_u = math.sqrt(cfg.d_user)

    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        """User embeddings; a user without training sequences (index 0 included) -> the mean
        of the trained users' embeddings."""
        emb = self.user(users)
        if bool(self.trained.any()):
            mean = self.user.weight[self.trained].mean(0)
            emb = torch.where(self.trained[users][..., None], emb, mean)
        return emb

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        e = self.item(items)
        return e if self.item_feat is None else e + self.item_feat(items)

    def output_weight(self) -> torch.Tensor:
        if self.item_feat is None:
            return self.item.output_weight
        n = self.item.n_items
        return self.item.output_weight + self.item_feat(
            torch.arange(n, device=self.pos.embed.weight.device)
        )

    def forward(self, items: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        e_i = self.item_vectors(items) * self.scale_i
        e_u = self.user_vectors(users)[:, None, :].expand(-1, items.shape[1], -1) * self.scale_u
        x = torch.cat([e_i, e_u], dim=-1)
        x = x + self.pos(x)
        return self.encoder(self.drop(x), items > 0)


def sse_replace(
    items: torch.Tensor,
    targets: torch.Tensor,
    users: torch.Tensor,
    *,
    p_item: float,
    p_user: float,
    n_items: int,
    n_users: int,
    pool: torch.Tensor | None = None,
    item_pool: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stochastic Shared Embeddings on a batch of windows (see the module docstring).

    ``items``/``targets`` are ``[B, L]`` left-padded windows (target ``t`` = input ``t + 1``);
    padding stays padding and positions without a target keep none. A replaced user is drawn
    from ``pool`` (user indices) where given, else from ``1 .. n_users - 1``; a replacing item
    from ``item_pool`` (item indices) where given, else from ``1 .. n_items - 1``.
    """
    if p_item > 0 and n_items > 1:
        gen = generator(items.device)
        hit = (torch.rand(items.shape, device=items.device, generator=gen) < p_item) & (items > 0)
        if item_pool is None:
            r_in = torch.randint(1, n_items, items.shape, device=items.device, generator=gen)
            r_out = torch.randint(1, n_items, items.shape, device=items.device, generator=gen)
        else:  # the training items only (the others would train as targets drawn at random)
            n_pool, dev = len(item_pool), items.device
            pool_i = item_pool.to(dev)
            r_in = pool_i[torch.randint(0, n_pool, items.shape, device=dev, generator=gen)]
            r_out = pool_i[torch.randint(0, n_pool, items.shape, device=dev, generator=gen)]
        items = torch.where(hit, r_in, items)
        prev = torch.zeros_like(hit)
        prev[:, :-1] = hit[:, 1:]  # the previous position's target is this event
        shifted = torch.zeros_like(r_in)
        shifted[:, :-1] = r_in[:, 1:]
        t = torch.where(prev & (targets > 0), shifted, targets)
        targets = torch.where(hit & (t > 0), r_out, t)
    if p_user > 0 and n_users > 2:
        gen = generator(users.device)
        hit = torch.rand(users.shape, device=users.device, generator=gen) < p_user
        if pool is None:
            other = torch.randint(1, n_users, users.shape, device=users.device, generator=gen)
        else:  # the trained users only (the others' rows would train as someone else's)
            pick = torch.randint(0, len(pool), users.shape, device=users.device, generator=gen)
            other = pool.to(users.device)[pick]
        users = torch.where(hit, other, users)
    return items, targets, users


@register_model("ssept")
class SSEPT(FeatureSequenceModel):
    """SSE-PT (Wu et al. 2020) on the shared training loop."""

    Config = SSEPTConfig
    default_trainer: ClassVar[dict[str, Any]] = {"batch_size": 32}
    """Batch 32 (lr 1e-3, AdamW, early stopping), as in ``benchmarks/neural_ml100k.py``
    (``benchmarks/results/neural_ml100k.md``, ml-100k leave-one-out: test NDCG@10 0.1098 +- 0.0051 over 3 seeds)."""
    test_config: ClassVar[dict[str, Any]] = {
        "d_item": 32,
        "d_user": 8,
        "n_layers": 1,
        "n_heads": 1,
        "max_len": 8,
        "dropout": 0.0,
        "attn_dropout": 0.0,
        "sse_item": 0.0,
        "sse_user": 0.0,
    }

    def _bind_users(self, train: SequenceDataset) -> None:
        self._trained_users = None
        if train.users is not None:
            # a user's row trains only through its training windows: a sequence of one event
            # gives none (no input with a target), so a user with no longer one is unknown
            users = np.asarray(train.users, dtype=np.int64)
            self._trained_users = np.unique(users[np.asarray(train.sequences.lengths) >= 2])

    def prepare(self, train: SequenceDataset) -> None:
        super().prepare(train)
        # SSE's replacing items: those with training events. The vocabulary covers every part
        # of a split; an item only validation or test events bring would otherwise be trained
        # as a target at random (None where every item has events: the draw is as it was)
        counts = np.asarray(train.item_counts())
        items = np.flatnonzero(counts > 0)
        items = items[items > 0]
        self._item_pool = None if len(items) == len(counts) - 1 else torch.from_numpy(items)

    def build_net(self, n_items: int) -> SSEPTNet:
        item_specs, _ = self.feature_specs()
        net = SSEPTNet(n_items, n_users_of(self), self.config, item_specs)
        users = getattr(self, "_trained_users", None)
        if users is not None:  # a fit (a loaded model reads its saved mask instead)
            users = users[(users > 0) & (users < net.n_users)]
            net.trained.zero_()
            net.trained[torch.from_numpy(users)] = True
        return self.attach_features(net)

    def set_state(self, state: dict[str, torch.Tensor]) -> None:
        if "trained" not in state:  # saved before the mask: every user of the vocabulary trained
            state = dict(state)
            trained = torch.ones(n_users_of(self), dtype=torch.bool)
            trained[0] = False
            state["trained"] = trained
        self._trained_users = None
        super().set_state(state)

    def training_step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        c = self.config
        n_users = self.net.n_users
        users = known_users(batch["users"], n_users)
        pool = self.net.trained.nonzero()[:, 0]
        items, targets, users = sse_replace(
            batch["items"],
            batch["targets"],
            users,
            p_item=c.sse_item,
            p_user=c.sse_user,
            n_items=self.n_items,
            n_users=n_users,
            pool=pool if len(pool) else None,
            item_pool=getattr(self, "_item_pool", None),
        )
        hidden = self.net(items, users)[..., : c.d_item]
        # the seen-item bias reads what the user really saw (before SSE replaced events)
        return self.window_loss(
            hidden,
            batch["items"],
            targets,
            self.net.output_weight(),
            self.net.item.output_bias,
            before=batch.get("before"),
        )

    def forward_scores(self, batch: Batch) -> torch.Tensor:
        items = batch.items[:, -self.config.max_len :]
        users = batch_users(batch, self.net.n_users)
        hidden = self.net(items, users)[:, -1, : self.config.d_item]
        return self.add_seen(hidden @ self.net.output_weight().T, batch)
