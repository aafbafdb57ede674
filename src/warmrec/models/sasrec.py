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
epoch (RecBole: 140 s) before issue 13, about 4.5 after it (``benchmarks/results/speed.md``:
cheaper dropout masks, the fused chunked full softmax; 3.0 CPU-seconds at RecTools' size and
batch 128, against RecTools' 8.8). With the RecBole variant (``norm_first=False, emb_norm=True,
emb_scale=False``), ``dropout = attn_dropout = 0.5``, batch 32, lr 2e-3 with cosine decay, the
validation-selected test NDCG@10 was 0.1082 +- 0.0015 over three seeds with the seen-item bias
and 0.0632 without it (RecBole 0.0636).

Text-aware items (``item_repr``, :mod:`warmrec.models.text`): ``"text"`` makes every item's
vector (input and output) the adapted sentence vector of its text (title, description, tags from
the item table), so an item nobody has interacted with is still ranked, and an item added after
training gets a vector (:func:`~warmrec.models.text.add_items`); ``"id+text"`` adds the learned
id vector to it. The encoder runs once per catalogue (vectors cached on disk). With
``text_prior`` each item's score also gets its text's cosine with the recent history (a learned
weight); ``encoder_weight`` multiplies the encoder's scores against that prior when scoring
(not in training; 0: the prior alone), e.g. for a zero-shot target whose catalogue the
transferred encoder was not trained on (``[transfer] model_options``).

Defaults: those settings are the defaults -- the model's (:class:`SASRecConfig`) and the
trainer's (:attr:`SASRec.default_trainer`: batch 32, lr 2e-3, cosine decay over the epoch cap
after 200 warm-up steps, early stopping after 30 validations without improvement), so
``warmrec train --model sasrec --data ml-100k --split loo`` needs no config file. With patience 5
(the default until 2026-12-05) that command gave test NDCG@10 0.1057 in 187 s (2026-11-30);
patience 30 was chosen on validation on ml-100k, MARS and 10 % of MARS
(``benchmarks/results/sasrec_patience.md``: test NDCG@10 0.111 -> 0.126, 0.430 -> 0.438 and
0.273 -> 0.336 over two seeds, fit time 2-10x longer; ``--set train.patience=5`` is the fast
setting). That command under the current defaults (2026-12-05, one run, torch's thread
policy, load 1-2): test NDCG@10 0.1276 in 275 s of training on ml-100k, 0.4376 in 163 s on MARS
(section ``sasrec-default-command`` of ``benchmarks/results/sasrec_patience.md``).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn

from warmrec.artifacts import TextMeta
from warmrec.data.dataset import Batch, SequenceDataset
from warmrec.models.layers import (
    DomainToken,
    FastDropout,
    PositionalEmbedding,
    SeenItemBias,
    TransformerStack,
)
from warmrec.models.neural import NeuralRecommender
from warmrec.models.settings import (
    LossSettings,
    SeenBiasSettings,
    TextSettings,
    TransformerSettings,
    WindowSettings,
)
from warmrec.models.text import TextItemEmbedding, add_text_items, item_layer, text_vectors
from warmrec.registry import register_model
from warmrec.rng import generator


class SASRecConfig(
    TransformerSettings, WindowSettings, SeenBiasSettings, LossSettings, TextSettings
):
    """SASRec settings. The defaults are the best measured on ml-100k (RecBole's post-LN
    variant with strong dropout; see the module docstring): ``dropout = attn_dropout = 0.5``,
    ``norm_first = False``, ``emb_norm = True``, ``emb_scale = False``, the seen-item bias on.

    ``n_negatives = 0`` takes the loss's default: 1 for ``"bce"`` (as in the paper), 256 for the
    other sampled losses. ``"bce"``/``"gbce"`` draw negatives per position (as SASRec and gSASRec
    do) unless ``shared_negatives``; ``"sampled_ce"``/``"bpr-max"`` always share them across the
    batch. Sharing is much cheaper but, when the negatives are a large share of a small
    catalogue, makes BCE-type losses train poorly.
    """

    dropout: float = Field(0.5, ge=0, lt=1)
    """Dropout on the embeddings and inside the blocks (0.5: best on ml-100k)."""
    attn_dropout: float = Field(0.5, ge=0, lt=1)
    """Dropout on the attention weights (0.5: best on ml-100k)."""
    emb_scale: bool = False
    """Scale the item embeddings by ``sqrt(d)`` (the paper; off in the RecBole variant)."""
    emb_norm: bool = True
    """LayerNorm on the summed item and position embeddings (the RecBole variant)."""
    norm_first: bool = False
    """Pre-LN blocks (True) or post-LN blocks as in RecBole (False)."""
    tied: bool = True
    """Score items against the input item table (tied output embedding)."""
    output_bias: bool = False
    """A learned per-item output bias."""
    random_phase: bool = True
    """Shift the window boundaries of long sequences every epoch."""
    shared_negatives: bool | None = False
    """Share one set of negatives across the batch for ``"bce"``/``"gbce"`` (default: draw per
    position, as SASRec and gSASRec do)."""
    domain_token: bool = False
    """A learned domain vector added to every position's input
    (:class:`~warmrec.models.layers.DomainToken`; multi-source pre-training sets it, one per
    domain, with ``MultiSourceConfig.domain_token``)."""

    @model_validator(mode="after")
    def _text_is_tied(self) -> SASRecConfig:
        if self.item_repr != "id" and not self.tied:
            raise ValueError(
                f"tied: item_repr={self.item_repr!r} scores items with their text vectors, "
                "so the output layer is the input one (set tied = true)"
            )
        return self


class SASRecNet(nn.Module):
    """The network: ``items[B, L] -> hidden[B, L, d]``; ``item.logits`` scores items."""

    def __init__(
        self,
        n_items: int,
        cfg: SASRecConfig,
        text: np.ndarray | None = None,
        text_meta: TextMeta | None = None,
        counts: list[int] | None = None,
    ) -> None:
        super().__init__()
        # an ItemEmbedding, or with item_repr "text"/"id+text" a TextItemEmbedding
        self.item = item_layer(
            n_items, cfg.d, cfg, text, text_meta, bias=cfg.output_bias, counts=counts
        )
        self.pos = PositionalEmbedding(cfg.max_len, cfg.d)
        self.drop = FastDropout(cfg.dropout)
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
        self.domain = DomainToken(cfg.d) if cfg.domain_token else None

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        x = self.item(items) * self.scale
        x = x + self.pos(x)
        if self.domain is not None:
            x = self.domain(x)
        x = self.emb_norm(x)
        return self.encoder(self.drop(x), items > 0)


@register_model("sasrec")
class SASRec(NeuralRecommender):
    """SASRec (Kang & McAuley 2018) on the shared training loop."""

    Config = SASRecConfig
    default_trainer: ClassVar[dict[str, Any]] = {
        "batch_size": 32,
        "lr": 2e-3,
        "schedule": "cosine",
        "warmup_steps": 200,
        "patience": 30,
    }
    """The trainer settings of ``benchmarks/neural_ml100k.py`` (``benchmarks/results/
    neural_ml100k.md``: test NDCG@10 0.1082 +- 0.0015 over 3 seeds on ml-100k leave-one-out,
    epoch cap 100); patience 30, chosen on validation over 5 and 15 on ml-100k, MARS and 10 % of
    MARS (``benchmarks/results/sasrec_patience.md``; 5 stops at early validation dips)."""
    test_config: ClassVar[dict[str, Any]] = {
        "d": 32,
        "n_layers": 1,
        "n_heads": 1,
        "ffn_dim": 64,
        "max_len": 10,
        "dropout": 0.1,
        "attn_dropout": 0.1,
    }

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self._text: np.ndarray | None = None

    def _bind(self, train: SequenceDataset) -> None:
        super()._bind(train)
        if self.config.item_repr != "id":  # item text -> vectors, once (cached on disk)
            self._text, self.meta.text = text_vectors(train, self.config)

    def add_items(self, item_features: Any) -> list[Any]:
        """New items from their text, without retraining
        (:func:`~warmrec.models.text.add_text_items`; a text item layer only)."""
        return add_text_items(self, item_features)

    def set_state(self, state: dict[str, torch.Tensor]) -> None:
        text = state.get("item.text")
        if self.config.item_repr != "id" and self._text is None and text is not None:
            # the text vectors are saved with the weights: a member of a composite model
            # (hybrid, fresh), whose own record has no TextMeta for it, is rebuilt from them
            self._text = text.detach().cpu().numpy()
        super().set_state(state)

    def build_net(self, n_items: int) -> SASRecNet:
        text = self._text if self._text is not None and len(self._text) == n_items else None
        counts = self.meta.item_counts
        counts = counts if counts is not None and len(counts) == n_items else None
        return SASRecNet(n_items, self.config, text, self.meta.text, counts)

    def training_step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        item = self.net.item
        # text items: those without training events are out of the softmax (train_offset)
        items = batch["items"]
        hidden, weight, bias = self.net(items), item.output_weight, item.output_bias
        if isinstance(item, TextItemEmbedding):
            bias = item.train_offset()
            if item.prior_len:  # the text prior as extra dimensions: [h, p] . [w, text]
                rate = self.config.prior_only
                if rate > 0:  # some sequences scored by the prior alone (config.prior_only)
                    draw = torch.rand(
                        hidden.shape[0],
                        1,
                        1,
                        device=hidden.device,
                        generator=generator(hidden.device),
                    )
                    keep = draw >= rate
                    hidden = hidden * keep
                hidden = torch.cat([hidden, item.prior_profile(items)], dim=-1)
                weight = torch.cat([weight, item.text], dim=-1)
        return self.window_loss(
            hidden, items, batch["targets"], weight, bias, before=batch.get("before")
        )

    def forward_scores(self, batch: Batch) -> torch.Tensor:
        items = batch.items[:, -self.config.max_len :]
        item = self.net.item
        logits = item.logits(self.net(items)[:, -1])
        if getattr(item, "prior_len", 0):
            w = self.config.encoder_weight  # scoring only (training_step leaves it out)
            logits = (logits if w == 1.0 else logits * w) + item.prior_logits(items)
        # the seen-item offset covers the whole history given (seen_len), not just the window
        return self.add_seen(logits, batch)
