"""BERT4Rec: sequential recommendation with a bidirectional transformer (Cloze objective).

Sun, Liu, Wu, Pei, Lin, Ou & Jiang, "BERT4Rec: Sequential Recommendation with Bidirectional
Encoder Representations from Transformer", CIKM 2019.

Item embeddings plus learned positions go through ``n_layers`` bidirectional pre-LN transformer
blocks. The embedding table has ``n_items + 1`` rows: index ``n_items`` is the ``[MASK]`` token
(index 0 stays padding). Training masks each item of a training window with probability
``mask_prob`` (at least one per window) and predicts the masked items; with probability
``mask_last_prob`` a window instead masks only its last item, the paper's extra samples that
match the inference task. At inference ``[MASK]`` is appended after the last ``max_len - 1``
history items and its output scores the items. The output layer is the paper's: a projection
``GELU(W h + b)`` (with layer norm), then the tied item embeddings plus an item bias; only the
``n_items`` real columns are scored (the ``[MASK]`` row is an input token, never a candidate).

Training windows cover every item of each sequence: cut from the end every ``window_stride``
items (0 = ``max_len``), the earliest window starting at the first item. Sequences of one item
are skipped (nothing to condition on). Masks are drawn per batch from the loop's numpy generator.

Deviations: full softmax cross-entropy by default (as the paper) with the other losses of
:mod:`warmrec.models.losses` available; masked positions always get ``[MASK]`` (the official
code's setting: no 10 % random / 10 % kept tokens); pre-LN blocks (paper: post-LN); the paper's
"dupe factor" (several maskings of each sequence per epoch) is replaced by fresh masks every
epoch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field
from torch import nn

from warmrec.data.dataset import Batch, SequenceDataset
from warmrec.data.sequences import SequenceData, pad_windows
from warmrec.models.layers import Dropout, ItemEmbedding, PositionalEmbedding, TransformerStack
from warmrec.models.neural import NeuralRecommender
from warmrec.models.settings import (
    MAX_HISTORY,
    HistorySettings,
    LossSettings,
    TransformerSettings,
)
from warmrec.registry import register_model


class BERT4RecConfig(TransformerSettings, HistorySettings, LossSettings):
    """BERT4Rec settings (paper: ``d=64``, 2 layers, 2 heads, dropout 0.1; ``mask_prob`` 0.2
    on MovieLens-1M, ``max_len`` 200 there)."""

    max_len: int = Field(50, ge=2, le=MAX_HISTORY)
    """Window length, the ``[MASK]`` slot included at scoring time."""
    dropout: float = Field(0.1, ge=0, lt=1)
    """Dropout on the embeddings and inside the blocks (paper: 0.1)."""
    attn_dropout: float = Field(0.1, ge=0, lt=1)
    """Dropout on the attention weights (paper: 0.1)."""
    mask_prob: float = Field(0.2, ge=0, le=1)
    """Share of a window's items replaced by ``[MASK]`` (Cloze task)."""
    mask_last_prob: float = Field(0.1, ge=0, le=1)
    """Share of windows whose only masked item is the last (matches next-item scoring)."""
    window_stride: int = Field(0, ge=0)
    """How far apart the training windows of long sequences start (0 = ``max_len``)."""


class MaskedWindowData:
    """Left-padded windows of whole sequences with a fresh Cloze mask per batch.

    Batches hold ``items`` (inputs with ``[MASK]`` = ``mask_token`` at masked positions) and
    ``targets`` (the original item at masked positions, 0 elsewhere).
    """

    def __init__(
        self,
        seqs: SequenceData,
        max_len: int,
        mask_token: int,
        mask_prob: float,
        mask_last_prob: float = 0.0,
        stride: int | None = None,
    ) -> None:
        stride = max_len if not stride else min(int(stride), max_len)
        lens = seqs.lengths
        seq = np.nonzero(lens >= 2)[0]
        n = lens[seq]
        n_win = 1 + np.maximum(0, -(-(n - max_len) // stride))
        owner = np.repeat(np.arange(len(seq)), n_win)
        k = np.arange(int(n_win.sum())) - np.repeat(np.cumsum(n_win) - n_win, n_win)
        rel_end = np.maximum(n[owner] - k * stride, np.minimum(max_len, n[owner]))
        self.starts = seqs.offsets[seq][owner]
        self.ends = self.starts + rel_end
        self.items = seqs.items
        self.max_len = max_len
        self.mask_token = mask_token
        self.mask_prob = mask_prob
        self.mask_last_prob = mask_last_prob

    def __len__(self) -> int:
        return len(self.ends)

    def n_batches(self, batch_size: int) -> int:
        return -(-len(self) // batch_size)

    def mask(self, windows: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``(inputs, targets)`` of left-padded ``windows`` under a random Cloze mask."""
        valid = windows > 0
        masked = (rng.random(windows.shape) < self.mask_prob) & valid
        # at least one masked item per window: if none was drawn, mask a random real position
        none = ~masked.any(axis=1) & valid.any(axis=1)
        if none.any():
            n_valid = valid[none].sum(axis=1)
            pick = windows.shape[1] - 1 - (rng.random(none.sum()) * n_valid).astype(np.int64)
            masked[np.nonzero(none)[0], pick] = True
        last_only = rng.random(len(windows)) < self.mask_last_prob
        if last_only.any():
            masked[last_only] = False
            masked[last_only, -1] = valid[last_only, -1]
        inputs = np.where(masked, self.mask_token, windows)
        targets = np.where(masked, windows, 0)
        return inputs, targets

    def batches(self, batch_size: int, rng: np.random.Generator) -> Iterator[dict[str, Any]]:
        order = rng.permutation(len(self))
        for lo in range(0, len(order), batch_size):
            idx = order[lo : lo + batch_size]
            windows = pad_windows(self.items, self.starts[idx], self.ends[idx], self.max_len)
            inputs, targets = self.mask(windows, rng)
            yield {"items": torch.from_numpy(inputs), "targets": torch.from_numpy(targets)}


class BERT4RecNet(nn.Module):
    """``items[B, L]`` (with ``[MASK]`` tokens) -> hidden ``[B, L, d]``; ``scores`` -> items."""

    def __init__(self, n_items: int, cfg: BERT4RecConfig) -> None:
        super().__init__()
        self.n_items = n_items
        self.item = ItemEmbedding(n_items + 1, cfg.d, tied=True, bias=True)  # + [MASK]
        self.pos = PositionalEmbedding(cfg.max_len, cfg.d)
        self.drop = Dropout(cfg.dropout)
        self.encoder = TransformerStack(
            cfg.d,
            cfg.n_layers,
            cfg.n_heads,
            cfg.ffn_dim,
            cfg.dropout,
            causal=False,
            attn_dropout=cfg.attn_dropout,
        )
        self.head = nn.Sequential(nn.Linear(cfg.d, cfg.d), nn.GELU(), nn.LayerNorm(cfg.d))

    @property
    def mask_token(self) -> int:
        return self.n_items

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        x = self.item(items)
        x = x + self.pos(x)
        return self.head(self.encoder(self.drop(x), items > 0))

    @property
    def output_weight(self) -> torch.Tensor:
        return self.item.output_weight[: self.n_items]

    @property
    def output_bias(self) -> torch.Tensor:
        return self.item.output_bias[: self.n_items]

    def scores(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.output_weight.T + self.output_bias


@register_model("bert4rec")
class BERT4Rec(NeuralRecommender):
    """BERT4Rec (Sun et al. 2019) on the shared training loop."""

    Config = BERT4RecConfig
    default_trainer: ClassVar[dict[str, Any]] = {"batch_size": 32}
    """Batch 32 (lr 1e-3, AdamW, early stopping), as in ``benchmarks/neural_ml100k.py``
    (``benchmarks/results/neural_ml100k.md``, ml-100k leave-one-out: test NDCG@10 0.0524 +- 0.0049 over 3 seeds)."""
    # overlapping short windows give the conformance suite's short default training more steps
    test_config: ClassVar[dict[str, Any]] = {
        "d": 64,
        "n_layers": 1,
        "n_heads": 1,
        "ffn_dim": 64,
        "max_len": 4,
        "window_stride": 1,
        "dropout": 0.0,
        "attn_dropout": 0.0,
        "mask_prob": 0.3,
        "mask_last_prob": 0.3,
    }

    def build_net(self, n_items: int) -> BERT4RecNet:
        return BERT4RecNet(n_items, self.config)

    def training_data(self, train: SequenceDataset) -> MaskedWindowData:
        c = self.config
        return MaskedWindowData(
            train.sequences,
            c.max_len,
            self.n_items,
            c.mask_prob,
            c.mask_last_prob,
            c.window_stride or None,
        )

    def training_step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.net(batch["items"])
        targets = batch["targets"]
        keep = targets > 0
        return self.loss_fn(
            hidden[keep], targets[keep], self.net.output_weight, self.net.output_bias
        )

    def forward_scores(self, batch: Batch) -> torch.Tensor:
        hist = batch.items[:, -(self.config.max_len - 1) :]
        mask = torch.full((len(hist), 1), self.n_items, dtype=hist.dtype, device=hist.device)
        hidden = self.net(torch.cat([hist, mask], dim=1))[:, -1]
        return self.net.scores(hidden)
