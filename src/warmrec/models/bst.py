"""BST: Behavior Sequence Transformer, as a full-catalogue next-item recommender.

Chen, Zhao, Li, Huang & Ou, "Behavior Sequence Transformer for E-commerce Recommendation in
Alibaba", DLP-KDD 2019.

The paper's model is a click-through-rate ranker: the user's behaviour sequence *and the target
item* (each an item-id embedding plus side-feature embeddings, plus a position embedding) go
through one transformer layer; its outputs, concatenated with embeddings of user profile and
other features, feed an MLP (1024-512-256, LeakyReLU) that predicts the click probability of
that one target. Ranking a catalogue that way costs one transformer + MLP pass per
(user, candidate) pair.

**What this implementation does (the pragmatic variant; deviations on purpose):**

- items are represented as ``e_i = item_emb_i + feature_emb_i`` (side features summed into the
  id embedding, through :mod:`warmrec.models.features`; the paper concatenates);
- the behaviour sequence (without the target) goes through ``n_layers`` *causal* pre-LN
  transformer layers with learned positions (the paper: bidirectional over sequence + target,
  with time-difference positions); causality lets every position of a training window be a
  next-item example, as in SASRec;
- at each position the transformer output ``h_t`` is concatenated with the user-feature
  embeddings (one ``feature_dim`` vector per feature, concatenated; unknown users get zeros)
  and passed through the MLP (LeakyReLU, dropout), whose last layer outputs a *query*
  ``q_t`` of width ``d``;
- the score of item ``i`` is ``q_t . e_i + b_i``, so the history is encoded once and the whole
  catalogue is scored by one matrix product (``O(n_items d)`` per user). The target item thus
  enters through its (feature-aware) representation in the final dot product rather than as a
  transformer position: target-history interactions are captured by the dot product, not by
  attention;
- training is full softmax cross-entropy over the catalogue at every position (the paper:
  logloss on clicks); any loss of :mod:`warmrec.models.losses` can be chosen.

Why not the faithful form: it needs one transformer + MLP pass per (user, candidate) pair.
Measured on this project's CPU machine (one thread of two shared cores; 1 layer, ``d=64``, 8 heads, 20
history items + the target, the paper's 1024-512-256 MLP, candidates in chunks of 512): 1.4 s per
user, i.e. about 22 minutes for one full-catalogue evaluation of ml-100k (943 users x 1,682
items), against about a second for the variant here -- and training it against the whole
catalogue would be as slow (it would need sampled negatives instead).

Side features (``SequenceDataset.item_features`` / ``user_features``): by default the ml-100k
columns the paper's setting suggests -- item ``class`` (genres, multi-valued: mean of value
embeddings), user ``age`` (bucketised), ``gender``, ``occupation``. Absent columns are skipped
(see :mod:`warmrec.models.features`); without any feature BST is a SASRec with an MLP head.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar

import torch
from pydantic import Field
from torch import nn

from warmrec.data.dataset import Batch
from warmrec.models.features import FeatureEmbedder, FeatureSpec
from warmrec.models.layers import (
    Dropout,
    ItemEmbedding,
    PositionalEmbedding,
    SeenItemBias,
    TransformerStack,
)
from warmrec.models.settings import (
    LossSettings,
    SeenBiasSettings,
    TransformerSettings,
    UserFeatureSettings,
    WindowSettings,
)
from warmrec.models.user_features import (
    FeatureSequenceModel,
    batch_users,
    known_users,
    n_users_of,
)
from warmrec.registry import register_model


class BSTConfig(
    TransformerSettings, WindowSettings, SeenBiasSettings, LossSettings, UserFeatureSettings
):
    """BST settings (paper: 1 transformer layer, 8 heads, MLP 1024-512-256, LeakyReLU).
    The default feature columns are ml-100k's (absent columns are skipped)."""

    n_layers: int = Field(1, ge=1)
    """Transformer blocks (paper: 1)."""
    n_heads: int = Field(8, ge=1)
    """Attention heads per block (paper: 8); must divide ``d``."""
    mlp: tuple[Annotated[int, Field(ge=1)], ...] = (256,)
    """Hidden widths of the MLP head."""
    mlp_dropout: float = Field(0.2, ge=0, lt=1)
    """Dropout after each MLP layer."""
    feature_dim: int = Field(16, ge=1)
    """Width of each user-feature embedding."""
    item_features: tuple[str, ...] = ("class",)
    """Item feature columns (ml-100k: the genres)."""
    user_features: tuple[str, ...] = ("age", "gender", "occupation")
    """User feature columns (ml-100k's)."""
    numeric_features: tuple[str, ...] = ("age",)
    """Columns bucketised as numbers."""


class BSTNet(nn.Module):
    """``items[B, L], users[B] -> queries[B, L, d]``; ``item_matrix()`` -> ``[n_items, d]``."""

    def __init__(
        self,
        n_items: int,
        n_users: int,
        cfg: BSTConfig,
        item_specs: list[FeatureSpec],
        user_specs: list[FeatureSpec],
    ) -> None:
        super().__init__()
        d = cfg.d
        self.item = ItemEmbedding(n_items, d, bias=True)
        self.seen = SeenItemBias() if cfg.seen_bias else None
        self.item_feat = FeatureEmbedder(item_specs, n_items, d) if item_specs else None
        self.user_feat = (
            FeatureEmbedder(user_specs, n_users, cfg.feature_dim, "concat") if user_specs else None
        )
        self.pos = PositionalEmbedding(cfg.max_len, d)
        self.drop = Dropout(cfg.dropout)
        self.encoder = TransformerStack(
            d,
            cfg.n_layers,
            cfg.n_heads,
            cfg.ffn_dim,
            cfg.dropout,
            causal=True,
            attn_dropout=cfg.attn_dropout,
        )
        width = d + (self.user_feat.out_dim if self.user_feat is not None else 0)
        layers: list[nn.Module] = []
        for w in cfg.mlp:
            layers += [nn.Linear(width, int(w)), nn.LeakyReLU(), Dropout(cfg.mlp_dropout)]
            width = int(w)
        layers.append(nn.Linear(width, d))
        self.mlp = nn.Sequential(*layers)
        self.scale = math.sqrt(d)

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        e = self.item(items)
        return e if self.item_feat is None else e + self.item_feat(items)

    def item_matrix(self) -> torch.Tensor:
        """Representations of every item (row 0 = padding), the candidates of the scores."""
        if self.item_feat is None:
            return self.item.output_weight
        idx = torch.arange(self.item.n_items, device=self.item.output_weight.device)
        return self.item_vectors(idx)

    def forward(self, items: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        x = self.item_vectors(items) * self.scale
        x = x + self.pos(x)
        h = self.encoder(self.drop(x), items > 0)
        if self.user_feat is not None:
            u = self.user_feat(users)[:, None, :].expand(-1, items.shape[1], -1)
            h = torch.cat([h, u], dim=-1)
        return self.mlp(h)


@register_model("bst")
class BST(FeatureSequenceModel):
    """Behavior Sequence Transformer (Chen et al. 2019), full-catalogue variant."""

    Config = BSTConfig
    default_trainer: ClassVar[dict[str, Any]] = {"batch_size": 32}
    """Batch 32 (lr 1e-3, AdamW, early stopping), as in ``benchmarks/neural_ml100k.py``
    (``benchmarks/results/neural_ml100k.md``, ml-100k leave-one-out: test NDCG@10 0.1081 +- 0.0019 over 3 seeds)."""
    test_config: ClassVar[dict[str, Any]] = {
        "d": 64,
        "n_heads": 2,
        "ffn_dim": 64,
        "max_len": 8,
        "dropout": 0.0,
        "attn_dropout": 0.0,
        "mlp": (64,),
        "mlp_dropout": 0.0,
    }

    def build_net(self, n_items: int) -> BSTNet:
        item_specs, user_specs = self.feature_specs()
        net = BSTNet(n_items, n_users_of(self), self.config, item_specs, user_specs)
        return self.attach_features(net)

    def training_step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        q = self.net(batch["items"], known_users(batch["users"], n_users_of(self)))
        return self.window_loss(
            q,
            batch["items"],
            batch["targets"],
            self.net.item_matrix(),
            self.net.item.output_bias,
            before=batch.get("before"),
        )

    def forward_scores(self, batch: Batch) -> torch.Tensor:
        items = batch.items[:, -self.config.max_len :]
        q = self.net(items, batch_users(batch, n_users_of(self)))[:, -1]
        return self.add_seen(q @ self.net.item_matrix().T + self.net.item.output_bias, batch)
