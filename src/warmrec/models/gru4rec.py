"""GRU4Rec: session-based recommendation with recurrent networks.

Hidasi, Karatzoglou, Baltrunas & Tikk, "Session-based Recommendations with Recurrent Neural
Networks", ICLR 2016; Hidasi & Karatzoglou, "Recurrent Neural Networks with Top-k Gains for
Session-based Recommendations", CIKM 2018. Follows hidasib/GRU4Rec_PyTorch_Official where
practical:

- session-parallel mini-batches (``training="session_parallel"``): ``batch_size`` lanes each
  walk one sequence event by event; when a sequence ends its lane takes the next one (in order of
  first event time) and its hidden state is reset; lanes left without sequences idle until the
  epoch's last event;
- the hidden state is carried across mini-batches (truncated back-propagation of one step);
- "constrained embedding" (``tied=True``, the official default): the input embedding is the output
  weight matrix ``Wy``, with an output bias ``By``;
- losses: cross-entropy or BPR-max (with ``bpr_reg`` score regularisation and an ELU of
  ``elu_param`` on the scores) over the batch's other targets plus ``n_negatives`` items sampled
  by ``count ** pop_alpha``, shared across the mini-batch, with optional ``logq`` correction;
- initialisation: Glorot-uniform per gate block, zero biases (the official compatibility mode).

Deviations (documented on purpose):

- the default ``loss="ce"`` is the *full* softmax (exact, and cheap for catalogues up to ~1e5
  items); ``"sampled_ce"`` is the official sampled cross-entropy;
- the optimizer is the shared loop's (AdamW by default; ``optimizer="adagrad"`` is the closest to
  the official IndexedAdagradM). With a sampled loss the item tables are updated row-wise, as in
  the official code (``sparse_items``): Adagrad exactly as the official (without its momentum),
  AdamW as lazy AdamW on the tables;
- negatives that equal a row's target (including the batch's own repeated targets) are removed
  from its candidates; the official code keeps them;
- the loss is a mean over the active lanes (official: sum divided by the batch size);
- the logQ correction uses the expected number of draws of each candidate (see
  :mod:`warmrec.models.losses`), not the official raw-count mix;
- scoring re-runs the GRU over the last ``max_len`` items of a history instead of carrying the
  state through the test session;
- ``training="windows"`` (not the default) trains like warmrec's other sequence models instead:
  windows of the last ``max_len`` events, the GRU run from a zero state over each window with a
  prediction at every position and full back-propagation through it (RecBole's GRU4Rec trains
  this way, on every prefix). On user histories (ml-100k) it beats session-parallel training;
- ``matmul_precision="auto"`` (default): on a CPU with native bfloat16 products (AVX512-BF16,
  AMX) the session-parallel step's matrix products (the fused BPR-max's and the GRU step's) take
  bfloat16 operands with float32 accumulation; ``"float32"`` is the official arithmetic;
- ``seen_bias=True`` (default, as in warmrec's other sequence models) adds one learned scalar to
  the score of the items already in the lane's sequence (its last ``seen_len`` items), in
  training and in scoring (:class:`~warmrec.models.layers.SeenItemBias`); ``seen_bias=False`` is
  the official model.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from warmrec.data.dataset import Batch, SequenceDataset
from warmrec.data.sequences import SequenceData
from warmrec.models.bpr_max_linear import matmul_dtype
from warmrec.models.layers import (
    Dropout,
    GRUBlock,
    ItemEmbedding,
    SeenItemBias,
    right_align,
    right_shift,
)
from warmrec.models.losses import loss_spec_from_config, make_loss
from warmrec.models.neural import NeuralRecommender, WindowData
from warmrec.models.settings import LossSettings, SeenBiasSettings, WindowSettings
from warmrec.registry import register_model


class GRU4RecConfig(WindowSettings, SeenBiasSettings, LossSettings):
    """GRU4Rec settings (official defaults where they exist). ``max_len``: history items used
    when scoring (and the window length of ``training="windows"``)."""

    hidden_size: int = Field(100, ge=1)
    """GRU units (and, with ``tied=True``, the item embedding width)."""
    n_layers: int = Field(1, ge=1)
    """Stacked GRU layers."""
    tied: bool = True
    """The official "constrained embedding": the input embedding is the output weight matrix."""
    embedding_dim: int = Field(0, ge=0)
    """Input embedding width with ``tied=False`` (0 = ``hidden_size``)."""
    dropout_embed: float = Field(0.0, ge=0, lt=1)
    """Dropout on the input embeddings."""
    dropout_hidden: float = Field(0.0, ge=0, lt=1)
    """Dropout on the GRU outputs."""
    session_order: Literal["time", "random"] = "time"
    """Order in which session-parallel lanes take sequences: by first event time (official), or
    each lane's sequences (those time order gives it) reshuffled every epoch, which keeps every
    epoch as long as the schedule counts it (:class:`SessionParallelData`)."""
    training: Literal["session_parallel", "windows"] = "session_parallel"
    """``"session_parallel"`` (official: lanes walk sequences event by event, one-step
    back-propagation) or ``"windows"`` (``max_len`` windows, a prediction at every position,
    full back-propagation through the window). Windows measured best on ml-100k's long user
    histories (test NDCG@10 0.1057 against 0.0879, ``benchmarks/results/neural_ml100k.md``; use
    ``configs/gru4rec_ml100k.toml``); on short sessions session-parallel training gets many more
    updates per epoch (the synthetic demo: NDCG@10 0.59 against 0.22 with windows), so it stays
    the default."""
    loss: Literal["ce", "sampled_ce", "bpr-max"] = "ce"
    """``"ce"`` (full softmax), ``"sampled_ce"`` or ``"bpr-max"``."""
    n_negatives: int = Field(2048, ge=0)
    """Negatives sampled per mini-batch (shared), on top of the batch's other targets."""
    negative_sampling: Literal["uniform", "pop"] = "pop"
    """How negatives are drawn (official: by ``count ** pop_alpha``)."""
    pop_alpha: float = Field(0.5, ge=0)
    """Exponent of the popularity sampling distribution (official 0.5)."""
    in_batch: bool = True
    """Also use the batch's other targets as negatives (official)."""
    logq: float = Field(0.0, ge=0)
    """Strength of the logQ correction of ``"sampled_ce"`` (official default off)."""
    elu_param: float = Field(0.5, ge=0)
    """ELU applied to the scores of ``"bpr-max"`` (official 0.5)."""
    matmul_precision: Literal["auto", "float32", "bfloat16"] = "auto"
    """dtype of the matrix products of a session-parallel training step: the fused
    ``"bpr-max"`` loss's three (scores, and the gradients of the hidden states and of the
    candidate rows) and the one-layer GRU step's four. ``"auto"`` takes bfloat16 on a CPU that
    multiplies it natively (AVX512-BF16 or AMX; 4x faster products there) and float32 elsewhere
    (see :func:`warmrec.models.bpr_max_linear.matmul_dtype`). Only the products' operands are
    rounded: the gates, the loss terms, every gradient and the parameters stay float32; scoring
    runs in float32. Measured on nowplaying-1m: ``benchmarks/results/gru4rec_speed.md``."""
    sparse_items: bool = True
    """Update the item tables row-wise: with a sampled loss (``"sampled_ce"``, ``"bpr-max"``) and
    session-parallel training a mini-batch touches only its inputs, targets and negatives, so
    their lookups give sparse gradients and the optimizer updates only those rows (as the
    official IndexedAdagrad does). Adagrad and SGD then make exactly the dense update; Adam and
    AdamW become lazy Adam on the tables (see :func:`warmrec.training.loop.make_optimizer`).
    Measured on nowplaying-1m (121K items): ``benchmarks/results/gru4rec_speed.md``."""


def session_parallel_schedule(lengths: np.ndarray, n_lanes: int) -> tuple[np.ndarray, np.ndarray]:
    """Start step and lane of each sequence under session-parallel batching.

    Sequence ``i`` occupies ``lengths[i] - 1`` steps (one per (input, target) pair); it goes to
    the lane that frees first (lowest lane on ties), in the given order. A heap over lanes: one
    Python step per *sequence*, not per event.
    """
    steps = np.clip(np.asarray(lengths, dtype=np.int64) - 1, 0, None)
    start = np.zeros(len(steps), dtype=np.int64)
    lane = np.zeros(len(steps), dtype=np.int64)
    heap = [(0, j) for j in range(n_lanes)]
    for i, n in enumerate(steps.tolist()):
        if n == 0:
            continue
        t, j = heapq.heappop(heap)
        start[i], lane[i] = t, j
        heapq.heappush(heap, (t + n, j))
    return start, lane


class SessionParallelData:
    """Session-parallel mini-batches: step ``t`` gives every lane's input, target, reset flag.

    With ``seen_len > 0`` a step also gives ``history[B, seen_len]``: the last ``seen_len`` items
    of each lane's sequence up to and including its input (0-padded; all 0 on idle lanes).

    ``order="random"``: every lane walks the sequences that time order gives it, in a new random
    order every epoch. A lane never idles before its last sequence, so the lanes' loads, and the
    epoch's length (:meth:`n_batches`, the learning-rate schedule's unit), stay those of time
    order, while the sequences that share a mini-batch change from epoch to epoch. (Handing
    the sequences out to the lanes in a new random order every epoch would make the epoch's
    length depend on the order: on ml-100k with 256 lanes, 861 to 998 steps against the 897
    counted.)
    """

    def __init__(self, seqs: SequenceData, order: str = "time", seen_len: int = 0) -> None:
        self.seqs = seqs
        self.order = order
        self.seen_len = int(seen_len)
        self._cache: dict[int, tuple[torch.Tensor, ...]] = {}
        self._schedules: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _schedule(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """The time-order schedule (start step and lane of each sequence), computed once."""
        if batch_size not in self._schedules:
            self._schedules[batch_size] = session_parallel_schedule(self.seqs.lengths, batch_size)
        return self._schedules[batch_size]

    def _steps(
        self, batch_size: int, rng: np.random.Generator | None = None
    ) -> tuple[torch.Tensor, ...]:
        seqs = self.seqs
        lens = seqs.lengths
        n = np.clip(lens - 1, 0, None)
        start, lane = self._schedule(batch_size)
        if rng is not None:  # each lane's sequences in a random order: the same load per lane
            by_lane = np.lexsort((rng.random(len(n)), lane))
            done = np.cumsum(n[by_lane])  # steps done on the lane after each sequence
            heads = np.flatnonzero(np.r_[True, lane[by_lane][1:] != lane[by_lane][:-1]])
            before = np.repeat(done[heads] - n[by_lane][heads], np.diff(np.r_[heads, len(n)]))
            start = np.empty_like(start)
            start[by_lane] = done - n[by_lane] - before
        t_total = int((start + n).max(initial=0))
        inputs = np.zeros((t_total, batch_size), dtype=np.int64)
        targets = np.zeros((t_total, batch_size), dtype=np.int64)
        reset = np.zeros((t_total, batch_size), dtype=bool)
        seq = np.repeat(np.arange(len(seqs)), n)
        j = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
        t, lanes = start[seq] + j, lane[seq]
        src = seqs.offsets[seq] + j
        inputs[t, lanes] = seqs.items[src]
        targets[t, lanes] = seqs.items[src + 1]
        has = n > 0
        reset[start[has], lane[has]] = True
        if t_total:
            reset[0] = True
        out = [torch.from_numpy(inputs), torch.from_numpy(targets), torch.from_numpy(reset)]
        if self.seen_len:  # where each lane's input sits in ``items`` and where its sequence starts
            pos = np.full((t_total, batch_size), -1, dtype=np.int64)
            first = np.zeros((t_total, batch_size), dtype=np.int64)
            pos[t, lanes] = src
            first[t, lanes] = seqs.offsets[seq]
            items = torch.from_numpy(np.concatenate([seqs.items, [0]]).astype(np.int64))
            out += [torch.from_numpy(pos), torch.from_numpy(first), items]
        return tuple(out)

    @property
    def n_targets_total(self) -> int:
        """Training targets in all (every event after a sequence's first), as
        :class:`~warmrec.models.neural.WindowData` counts them."""
        return int(np.clip(self.seqs.lengths - 1, 0, None).sum())

    def n_batches(self, batch_size: int) -> int:
        """Steps per epoch, the same in every epoch and for both orders."""
        start, _ = self._schedule(batch_size)
        return int((start + np.clip(self.seqs.lengths - 1, 0, None)).max(initial=0))

    def _get(self, batch_size: int, rng: np.random.Generator | None) -> tuple[torch.Tensor, ...]:
        if self.order == "random" and rng is not None:
            return self._steps(batch_size, rng)
        if batch_size not in self._cache:
            self._cache[batch_size] = self._steps(batch_size, None)
        return self._cache[batch_size]

    def batches(self, batch_size: int, rng: np.random.Generator) -> Iterator[dict[str, Any]]:
        inputs, targets, reset, *where = self._get(batch_size, rng)
        back = torch.arange(self.seen_len)
        for t in range(inputs.shape[0]):
            batch = {"items": inputs[t], "targets": targets[t], "reset": reset[t]}
            if where:
                pos, first, items = where
                idx = pos[t, :, None] - back  # [B, seen_len], most recent first
                inside = idx >= first[t, :, None]
                batch["history"] = items[torch.where(inside, idx, -1)]  # -1 -> the padding 0
            yield batch


class GRU4RecNet(nn.Module):
    """Embedding (or the tied output table) -> GRU -> scores against ``Wy`` + ``By``."""

    def __init__(self, n_items: int, cfg: GRU4RecConfig) -> None:
        super().__init__()
        h = cfg.hidden_size
        # untied: the inputs are looked up in ``input``, so the output layer holds no input table
        self.item = ItemEmbedding(n_items, h, tied=cfg.tied, bias=True, inputs=cfg.tied)
        in_dim = h
        self.input = None
        if not cfg.tied:
            in_dim = cfg.embedding_dim or h
            self.input = nn.Embedding(n_items, in_dim, padding_idx=0)
        self.drop_embed = Dropout(cfg.dropout_embed)
        self.gru = GRUBlock(in_dim, h, cfg.n_layers, cfg.dropout_hidden)
        self.seen = SeenItemBias() if cfg.seen_bias else None
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        def glorot(t: torch.Tensor) -> None:
            sigma = math.sqrt(6.0 / (t.shape[0] + t.shape[1]))
            t.uniform_(-sigma, sigma)

        glorot(self.item.output_weight)
        self.item.output_weight[0].zero_()
        if self.input is not None:
            glorot(self.input.weight)
            self.input.weight[0].zero_()
        for name, p in self.gru.gru.named_parameters():
            if name.startswith("weight"):
                for block in p.chunk(3, 0):
                    glorot(block)
            else:
                p.zero_()

    def embed(self, items: torch.Tensor, sparse: bool = False) -> torch.Tensor:
        """Input embeddings of ``items`` (``sparse=True``: a sparse gradient on the table)."""
        table = self.item.embed.weight if self.input is None else self.input.weight
        return self.drop_embed(F.embedding(items, table, padding_idx=0, sparse=sparse))


@register_model("gru4rec")
class GRU4Rec(NeuralRecommender):
    """GRU4Rec (Hidasi et al. 2016, 2018) with session-parallel mini-batches (or windows)."""

    Config = GRU4RecConfig
    default_trainer: ClassVar[dict[str, Any]] = {"batch_size": 32}
    """Batch 32 (lr 1e-3, AdamW, early stopping), as in ``benchmarks/neural_ml100k.py``
    (``benchmarks/results/neural_ml100k.md``, ml-100k leave-one-out: session-parallel training: test NDCG@10 0.0879 +- 0.0043 over 3 seeds; windows: 0.1057 +- 0.0061)."""
    test_config: ClassVar[dict[str, Any]] = {"hidden_size": 32, "max_len": 10}

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self._hidden = None

    def build_net(self, n_items: int) -> GRU4RecNet:
        return GRU4RecNet(n_items, self.config)

    def set_state(self, state: dict[str, torch.Tensor]) -> None:
        if not self.config.tied and "item.embed.weight" in state:
            # saved before untied nets dropped it: an input table nothing read (``input`` is)
            state = {k: v for k, v in state.items() if k != "item.embed.weight"}
        super().set_state(state)

    def prepare(self, train: SequenceDataset) -> None:
        spec = loss_spec_from_config(self.config)
        self.loss_fn = make_loss(spec, self.n_items, train.item_counts())
        if self._sparse:
            self.loss_fn.sparse_rows = True
        dtype = matmul_dtype(self.config.matmul_precision, self.device)
        if hasattr(self.loss_fn, "matmul_dtype"):
            self.loss_fn.matmul_dtype = dtype
        if self.net is not None:
            self.net.gru.matmul_dtype = dtype
        self._hidden = None

    @property
    def _sparse(self) -> bool:
        """Whether training looks the item tables up with sparse gradients (``sparse_items``
        with session-parallel training and a sampled loss)."""
        c = self.config
        return c.sparse_items and c.training == "session_parallel" and c.loss != "ce"

    def sparse_parameters(self) -> list[torch.Tensor]:
        if self.net is None or not self._sparse:
            return []
        tables = [self.net.item.output_weight]
        if self.net.input is not None:
            tables.append(self.net.input.weight)
        return tables

    def training_data(self, train: SequenceDataset) -> SessionParallelData | WindowData:
        c = self.config
        if c.training == "windows":
            return super().training_data(train)
        return SessionParallelData(
            train.sequences, c.session_order, c.seen_len if c.seen_bias else 0
        )

    def training_step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.config.training == "windows":
            return self._window_step(batch)
        x, y, reset = batch["items"], batch["targets"], batch["reset"]
        h = self._hidden
        if h is None or h.shape[1] != len(x) or h.device != x.device:
            h = self.net.gru.init_state(len(x), x.device)
        h = h.detach() * (~reset).to(h.dtype)[None, :, None]
        keep = y > 0
        history = batch.get("history")
        if bool(keep.all()):
            out, h = self.net.gru.step(self.net.embed(x, self._sparse), h)
            self._hidden = h.detach()
        else:
            # The epoch's tail: lanes without a sequence left idle until the epoch ends (they are
            # reset before any reuse), so only the active lanes run; the idle ones keep their
            # state. A third of nowplaying-1m's steps have 1-50 active lanes out of 256.
            lanes = keep.nonzero()[:, 0]
            out, h_active = self.net.gru.step(self.net.embed(x[lanes], self._sparse), h[:, lanes])
            self._hidden = h.index_copy(1, lanes, h_active.detach())
            y = y[lanes]
            history = history[lanes] if history is not None else None
        item = self.net.item
        seen = None
        if self.net.seen is not None:
            seen = (history, self.net.seen.value)
        return self.loss_fn(out, y, item.output_weight, item.output_bias, seen=seen)

    def _window_step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        items, targets, lens = right_shift(batch["items"], batch["targets"])
        out = self.net.gru.outputs(self.net.embed(items), lens)
        item = self.net.item
        return self.window_loss(
            out, items, targets, item.output_weight, item.output_bias, before=batch.get("before")
        )

    def forward_scores(self, batch: Batch) -> torch.Tensor:
        items, lens = right_align(batch.items[:, -self.config.max_len :])
        hidden = self.net.gru(self.net.embed(items), lens)
        return self.add_seen(self.net.item.logits(hidden), batch)
