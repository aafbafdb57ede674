"""Building blocks shared by the neural models.

- :class:`ItemEmbedding` -- item table (row 0 = padding, kept at zero) with a tied or separate
  output layer; ``output_weight``/``output_bias`` feed the losses of :mod:`warmrec.models.losses`.
- :class:`PositionalEmbedding` -- learned absolute positions of a left-padded window.
- :class:`TransformerBlock` / :class:`TransformerStack` -- pre-LN blocks with causal or
  bidirectional attention through ``torch.nn.functional.scaled_dot_product_attention``.
- :class:`FastDropout` / :func:`dropout_keep` -- dropout whose CPU masks come from random bytes
  (about 10x cheaper than torch's per-element Bernoulli draws, which were ~30 % of a SASRec step).
- :class:`GRUBlock` -- a (multi-layer) GRU that runs over left-padded histories or steps one event
  at a time (session-parallel training).
- :class:`FeatureEmbedding` -- categorical side features (item or user) -> embeddings, summed or
  concatenated; :func:`feature_table` turns a feature frame into the index table it reads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from torch import nn

from warmrec.data.vocab import ItemVocab
from warmrec.errors import ConfigError, DataError
from warmrec.rng import dropout, generator

_DROPOUT_LEVELS = 256  # a CPU mask compares random bytes with a threshold: p in steps of 1/256


def dropout_keep(
    shape: Sequence[int], p: float, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """A dropout mask of ``shape``: 0 where dropped, ``1 / (1 - p')`` where kept.

    On CPU the mask compares random bytes (64-bit draws of the global torch generator, viewed as
    8 bytes each) with ``p' = round(p * 256) / 256``, ``p`` rounded to a step of 1/256 (0.5,
    0.25, ... exactly; 0.2 becomes 0.1992); scaling by ``1 / (1 - p')`` keeps the expectation.
    torch's own CPU dropout draws one Bernoulli variate per element through the generic
    sampler, about 10x slower (measured on a SASRec step: 6 ms per [32, 50, 64] mask, ~30 % of the
    step). Elsewhere (CUDA) the mask is drawn the usual way, ``bernoulli_(1 - p)``. Both draw
    from :func:`warmrec.rng.generator`: the running fit's own generator, seeded by the training
    loop and kept in its checkpoints (torch's global generator outside a fit).
    """
    gen = generator(device)
    if device.type != "cpu":
        keep = torch.empty(tuple(shape), dtype=dtype, device=device).bernoulli_(
            1.0 - p, generator=gen
        )
        return keep.div_(1.0 - p)
    n = math.prod(shape)
    level = min(int(round(p * _DROPOUT_LEVELS)), _DROPOUT_LEVELS - 1)
    words = torch.randint(-(2**63), 2**63 - 1, ((n + 7) // 8,), dtype=torch.int64, generator=gen)
    random_bytes = words.view(torch.uint8)[:n].view(tuple(shape))
    scale = _DROPOUT_LEVELS / (_DROPOUT_LEVELS - level)
    return (random_bytes >= level).to(dtype).mul_(scale)


def fast_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``F.dropout`` with the mask of :func:`dropout_keep` (identity when not training or
    ``p == 0``)."""
    if not training or p <= 0.0:
        return x
    return x * dropout_keep(x.shape, p, x.dtype, x.device)


class Dropout(nn.Dropout):
    """``nn.Dropout`` drawing its mask from the running fit's own generator
    (:func:`warmrec.rng.dropout`; the same numbers as ``nn.Dropout`` for the same state)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


class FastDropout(nn.Dropout):
    """``nn.Dropout`` with :func:`fast_dropout`'s cheaper CPU masks (same ``p``, same
    expectation; ``p`` takes steps of 1/256 on CPU)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_dropout(x, self.p, self.training)


class ItemEmbedding(nn.Module):
    """Item input embeddings and the matching output layer.

    With ``tied=True`` the output weight is the input table itself (no second parameter, so
    saving never meets shared tensors); otherwise a separate ``[n_items, d]`` table is used.
    ``inputs=False`` (untied only): the output layer alone, no input table (``embed`` is None),
    for a network that embeds its inputs with a table of its own (untied GRU4Rec).
    """

    def __init__(
        self,
        n_items: int,
        dim: int,
        *,
        tied: bool = True,
        bias: bool = False,
        init_std: float = 0.02,
        inputs: bool = True,
    ) -> None:
        super().__init__()
        if tied and not inputs:
            raise ValueError("ItemEmbedding: a tied output layer is its input table (inputs=True)")
        self.tied = tied
        self.embed = nn.Embedding(n_items, dim, padding_idx=0) if inputs else None
        if self.embed is not None:
            nn.init.normal_(self.embed.weight, std=init_std)
            with torch.no_grad():
                self.embed.weight[0].zero_()
        self.out = None
        if not tied:
            self.out = nn.Parameter(torch.randn(n_items, dim) * init_std)
        self.bias = nn.Parameter(torch.zeros(n_items)) if bias else None

    @property
    def n_items(self) -> int:
        return int(self.output_weight.shape[0])

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        if self.embed is None:
            raise RuntimeError("ItemEmbedding: an output layer without an input table")
        return self.embed(items)

    @property
    def output_weight(self) -> torch.Tensor:
        return self.embed.weight if self.out is None else self.out

    @property
    def output_bias(self) -> torch.Tensor | None:
        return self.bias

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores of every item: ``[..., d] -> [..., n_items]``."""
        out = hidden @ self.output_weight.T
        return out + self.bias if self.bias is not None else out


def offset_items_(scores: torch.Tensor, items: torch.Tensor, value: torch.Tensor | float) -> None:
    """Add ``value`` in place to ``scores[b, i]`` for every item ``i`` in row ``b`` of
    ``items[B, H]``, once per item however often it occurs; padding (column 0) is untouched.

    Without autograd (evaluation, serving): a gather and a scatter over the ``[B, H]`` history
    columns only (a repeated item writes the same value twice, padding gets ``+ 0``). When a
    gradient is needed (the meta-learners' query loss is the cross-entropy of these scores and
    ``value`` gets its gradient): one ``add_`` of a ``[B, n_items]`` mask, since a scatter's
    output saved for backward must not be changed in place afterwards. Both trace (TorchScript).
    """
    grad = torch.is_grad_enabled() and (
        scores.requires_grad or (isinstance(value, torch.Tensor) and value.requires_grad)
    )
    if not grad:
        offset = (items > 0).to(scores.dtype) * value
        scores.scatter_(1, items, scores.gather(1, items) + offset)
        return
    mask = torch.zeros_like(scores)  # a float mask: a bool scatter_ does not trace
    mask.scatter_(1, items, 1.0)
    mask[:, 0] = 0.0
    scores.add_(mask * value)


class SeenItemBias(nn.Module):
    """A learned score offset for items already in the user's sequence (repeat-aware scoring).

    One scalar ``value``, starting at 0, is added to the score of every item that occurs in the
    history the prediction is made from. Training learns its sign and size from the data: in a
    log where users never return to an item (movie ratings) it goes strongly negative, so the
    model stops spending its top slots on seen items; where items keep coming back it goes
    positive (on nowplaying-1m sessions, where 10 % of next items repeat one of the session, it
    still learned about -1.3). Nothing about the evaluation changes: the model simply learns the
    repeat behaviour of the domain (RepeatNet, Ren et al. 2019, models the same choice with a
    repeat/explore switch). Padding (index 0) is never offset.
    """

    def __init__(self) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.zeros(()))

    @staticmethod
    def prefix_histories(items: torch.Tensor) -> torch.Tensor:
        """``items[B, L] -> [B, L, L]``: row ``t`` holds ``items[:, :t + 1]`` (the input up to and
        including position ``t``, what the prediction at ``t`` sees), 0 elsewhere."""
        length = items.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=items.device).tril()
        return items[:, None, :] * causal

    @staticmethod
    def recent_histories(
        items: torch.Tensor, keep: torch.Tensor, seen_len: int, before: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``items[B, L]``, ``keep[B, L]`` -> ``[N, H]``, one row per kept position (row-major,
        as ``x[keep]``): the last ``seen_len`` items up to and including ``items[b, t]`` of
        ``before[b]`` (``[B, C]``, the items just before row ``b``, left-padded) followed by
        ``items[b]`` (first item first, or left-padded), most recent first, 0 past the start;
        ``H = min(seen_len, C + L)``. Scoring offsets the same set: the last ``seen_len``
        items of the history."""
        full = items if before is None else torch.cat([before.to(items.dtype), items], dim=1)
        extra = full.shape[1] - items.shape[1]
        h = min(int(seen_len), full.shape[1])
        # a view of every position's last h columns (0 past the start), then one gather of the
        # kept rows: 3 ms for 128 windows of 50 with 199 items before, against 10-15 ms for an
        # [N, h] index matrix (one CPU thread)
        windows = F.pad(full, (h - 1, 0)).unfold(1, h, 1)  # [B, C + L, h], oldest first
        b, t = keep.nonzero(as_tuple=True)
        return windows[b, t + extra].flip(1)

    def add_(self, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """Add the offset in place to ``logits[B, n_items]`` (no autograd) at ``history[B, H]``."""
        offset_items_(logits, history, self.value)
        return logits


class DomainToken(nn.Module):
    """A learned per-domain vector added to every position's input of a sequence encoder.

    In multi-source pre-training (:mod:`warmrec.transfer.multisource`) each domain's model has
    its own (like its item table and seen-item bias) in front of the one shared encoder, so the
    encoder can tell the domains apart and behave differently per domain. It is added (not
    prepended as an extra token) so that the window, the positions, the causal mask and the
    scoring position stay those of the plain model. ``value`` starts at 0: a new domain (a
    transfer target with ``reset_domain``) starts from "no domain offset".
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x[B, L, d] + value`` at every position."""
        return x + self.value


class PositionalEmbedding(nn.Module):
    """Learned positions ``0..max_len-1`` of a left-padded window (last column = most recent)."""

    def __init__(self, max_len: int, dim: int, init_std: float = 0.02) -> None:
        super().__init__()
        self.embed = nn.Embedding(max_len, dim)
        nn.init.normal_(self.embed.weight, std=init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x[B, L, d]`` -> positions for its ``L`` columns (the last ``L`` of ``max_len``)."""
        length = x.shape[1]
        max_len = self.embed.num_embeddings
        if length > max_len:
            raise ConfigError(f"sequence of length {length} exceeds max_len {max_len}")
        pos = torch.arange(max_len - length, max_len, device=x.device)
        return self.embed(pos)[None]


def attention_mask(valid: torch.Tensor, causal: bool) -> torch.Tensor:
    """Boolean ``[B, 1, L, L]`` mask (True = may attend) for left-padded rows.

    Padding keys are masked; every query may attend to itself, so no row is empty (padding rows
    produce finite values that the caller zeroes).
    """
    length = valid.shape[1]
    eye = torch.eye(length, dtype=torch.bool, device=valid.device)
    mask = valid[:, None, None, :] | eye
    if causal:
        mask = mask & torch.ones(length, length, dtype=torch.bool, device=valid.device).tril()
    return mask


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, dropout: float = 0.0
) -> torch.Tensor:
    """Scaled dot-product attention ``[B, H, L, D]`` with a boolean ``mask`` (True = may attend).

    ``F.scaled_dot_product_attention`` without dropout and off the CPU; with dropout on CPU the
    same computation written out, so that the attention weights' mask comes from
    :func:`dropout_keep` (SDPA's CPU dropout draws per-element Bernoulli variates)."""
    if dropout <= 0.0 or q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
    scores = (q @ k.transpose(-2, -1)).mul_(1.0 / math.sqrt(q.shape[-1]))
    weights = torch.softmax(scores.masked_fill_(~mask, -torch.inf), dim=-1)
    return fast_dropout(weights, dropout) @ v


class TransformerBlock(nn.Module):
    """Pre-LN block: ``x + Attn(LN(x))`` then ``x + FFN(LN(x))`` (GELU feed-forward).

    ``norm_first=False`` gives the post-LN block of BERT (and RecBole's SASRec):
    ``LN(x + Attn(x))`` then ``LN(x + FFN(x))``.
    """

    def __init__(
        self,
        dim: int,
        n_heads: int,
        ffn_dim: int | None = None,
        dropout: float = 0.1,
        attn_dropout: float | None = None,
        norm_first: bool = True,
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        if dim % n_heads:
            raise ConfigError(f"dimension {dim} is not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.attn_dropout = dropout if attn_dropout is None else attn_dropout
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        ffn_dim = ffn_dim or 4 * dim
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_dim), nn.GELU(), FastDropout(dropout), nn.Linear(ffn_dim, dim)
        )
        self.drop = FastDropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, length, d = x.shape
        h = self.ln1(x) if self.norm_first else x
        q, k, v = self.qkv(h).view(b, length, 3, self.n_heads, d // self.n_heads).unbind(2)
        a = attention(
            q.transpose(1, 2),
            k.transpose(1, 2),
            v.transpose(1, 2),
            mask,
            self.attn_dropout if self.training else 0.0,
        )
        a = self.drop(self.proj(a.transpose(1, 2).reshape(b, length, d)))
        if not self.norm_first:
            x = self.ln1(x + a)
            return self.ln2(x + self.drop(self.ffn(x)))
        x = x + a
        return x + self.drop(self.ffn(self.ln2(x)))


class TransformerStack(nn.Module):
    """``n_layers`` pre-LN blocks and a final LayerNorm; padding positions are kept at zero.

    ``norm_first=False`` stacks post-LN blocks without the final LayerNorm.
    """

    def __init__(
        self,
        dim: int,
        n_layers: int,
        n_heads: int,
        ffn_dim: int | None = None,
        dropout: float = 0.1,
        causal: bool = True,
        attn_dropout: float | None = None,
        norm_first: bool = True,
    ) -> None:
        super().__init__()
        self.causal = causal
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, n_heads, ffn_dim, dropout, attn_dropout, norm_first)
            for _ in range(n_layers)
        )
        self.ln = nn.LayerNorm(dim) if norm_first else nn.Identity()

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        mask = attention_mask(valid, self.causal)
        keep = valid[..., None].to(x.dtype)
        x = x * keep
        for block in self.blocks:
            x = block(x, mask) * keep
        return self.ln(x) * keep


def right_align(items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ``[B, L]`` -> right-padded ``[B, L]`` (first item first) and the lengths."""
    return right_shift(items)


def right_shift(inputs: torch.Tensor, *others: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Left-padded ``[B, L]`` windows -> right-padded (first item first), same shift for
    ``others``; returns ``(inputs, *others, lengths)``."""
    length = inputs.shape[1]
    lens = (inputs > 0).sum(dim=1)
    col = torch.arange(length, device=inputs.device)[None, :]
    idx = (col + (length - lens)[:, None]).clamp_max(length - 1)
    keep = col < lens[:, None]
    out = tuple(t.gather(1, idx) * keep for t in (inputs, *others))
    return (*out, lens)


MIN_LOW_ROWS = 64
"""Fewer rows than this keep a :class:`GRUStep` in float32 whatever ``mm_dtype`` says (as the
fused BPR-max does, :data:`warmrec.models.bpr_max_linear.MIN_LOW_ROWS`)."""


class GRUStep(torch.autograd.Function):
    """One GRU step (torch's gate layout and equations: ``r``, ``z``, ``n`` blocks; ``h' = n +
    z (h - n)``) with a hand-written backward, its four products taken in ``mm_dtype``
    (float32 or bfloat16; the gates, the state and every gradient stay in ``x``'s dtype).

    ``nn.GRU`` on one step of 256 lanes x 100 units spends most of its CPU time around the
    products (1.8 ms forward and backward, measured); this makes one pass per gate block and
    skips the state's gradient when the state is detached (GRU4Rec's one-step truncated
    back-propagation): 1.5 ms in float32, 1.0 ms with bfloat16 products.
    """

    @staticmethod
    def forward(ctx, x, h, w_ih, w_hh, b_ih, b_hh, mm_dtype):  # type: ignore[override]
        hid = h.shape[1]
        low = mm_dtype is not None and mm_dtype != x.dtype and len(x) >= MIN_LOW_ROWS
        with torch.no_grad():
            x_mm, h_mm = (x.to(mm_dtype), h.to(mm_dtype)) if low else (x, h)
            wi, wh = (w_ih.to(mm_dtype), w_hh.to(mm_dtype)) if low else (w_ih, w_hh)
            if low:
                gi = torch.add(x_mm @ wi.T, b_ih)
                gh = torch.add(h_mm @ wh.T, b_hh)
            else:
                gi = torch.addmm(b_ih, x, w_ih.T)
                gh = torch.addmm(b_hh, h, w_hh.T)
            rz = gi[:, : 2 * hid].add_(gh[:, : 2 * hid]).sigmoid_()
            r, z = rz[:, :hid], rz[:, hid:]
            hn = gh[:, 2 * hid :]
            n = torch.addcmul(gi[:, 2 * hid :], r, hn).tanh_()
            out = torch.sub(h, n).mul_(z).add_(n)
        ctx.save_for_backward(x_mm, h_mm, wi, wh, rz, n, hn, h)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # type: ignore[override]
        x_mm, h_mm, wi, wh, rz, n, hn, h = ctx.saved_tensors
        hid = h.shape[1]
        r, z = rz[:, :hid], rz[:, hid:]
        dgi = torch.empty(grad.shape[0], 3 * hid, dtype=grad.dtype, device=grad.device)
        d_r, d_z, d_n = dgi.split(hid, dim=1)
        torch.mul(n, n, out=d_n).neg_().add_(1.0).mul_(torch.rsub(z, 1.0).mul_(grad))
        torch.sub(h, n, out=d_z).mul_(grad).mul_(torch.rsub(z, 1.0).mul_(z))
        torch.mul(d_n, hn, out=d_r).mul_(torch.rsub(r, 1.0).mul_(r))
        dgh = dgi.clone()
        dgh[:, 2 * hid :].mul_(r)
        low = dgi.dtype != x_mm.dtype
        gi_mm, gh_mm = (dgi.to(x_mm.dtype), dgh.to(x_mm.dtype)) if low else (dgi, dgh)
        need = ctx.needs_input_grad
        dx = (gi_mm @ wi).to(grad.dtype) if need[0] else None
        dh = None
        if need[1]:
            dh = (gh_mm @ wh).to(grad.dtype).addcmul_(grad, z)
        dw_ih = (gi_mm.T @ x_mm).to(grad.dtype) if need[2] else None
        dw_hh = (gh_mm.T @ h_mm).to(grad.dtype) if need[3] else None
        db_ih = dgi.sum(dim=0) if need[4] else None
        db_hh = dgh.sum(dim=0) if need[5] else None
        return dx, dh, dw_ih, dw_hh, db_ih, db_hh, None


class GRUBlock(nn.Module):
    """A multi-layer GRU with dropout on its output.

    ``forward`` runs over right-padded histories and returns the state after the last item (a
    history without items gives the zero state); ``outputs`` returns the output at every
    position; ``step`` advances one event for a batch (one layer: through :class:`GRUStep`,
    with ``matmul_dtype`` products).
    """

    matmul_dtype: torch.dtype | None = None
    """dtype of the products of a one-layer :meth:`step` (None: the inputs' own)."""

    def __init__(
        self, input_dim: int, hidden_dim: int, n_layers: int = 1, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.n_layers = n_layers
        self.hidden_dim = hidden_dim
        self.gru = nn.GRU(
            input_dim,
            hidden_dim,
            n_layers,
            batch_first=True,
            dropout=dropout if n_layers > 1 else 0.0,
        )
        self.drop = Dropout(dropout)

    def init_state(self, batch: int, device: torch.device | str) -> torch.Tensor:
        return torch.zeros(self.n_layers, batch, self.hidden_dim, device=device)

    def step(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x[B, d_in]``, ``h[n_layers, B, H]`` -> (output ``[B, H]``, new state)."""
        g = self.gru
        if type(g) is nn.GRU and g.num_layers == 1 and g.bias and torch.is_grad_enabled():
            w = (g.weight_ih_l0, g.weight_hh_l0, g.bias_ih_l0, g.bias_hh_l0)
            out = GRUStep.apply(x, h[0], *w, self.matmul_dtype)
            return self.drop(out), out[None]
        out, h = g(x[:, None, :], h)
        return self.drop(out[:, 0]), h

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Right-padded inputs ``x[B, L, d_in]`` with ``lengths`` -> last output ``[B, H]``."""
        out = torch.zeros(x.shape[0], self.hidden_dim, device=x.device, dtype=x.dtype)
        nz = lengths > 0
        if nz.any():
            packed = nn.utils.rnn.pack_padded_sequence(
                x[nz], lengths[nz].cpu(), batch_first=True, enforce_sorted=False
            )
            _, h = self.gru(packed)
            out[nz] = h[-1]
        return self.drop(out)

    def outputs(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Right-padded inputs ``x[B, L, d_in]`` -> the output at every position ``[B, L, H]``
        (zeros from each row's length on)."""
        b, length = x.shape[:2]
        out = torch.zeros(b, length, self.hidden_dim, device=x.device, dtype=x.dtype)
        nz = lengths > 0
        if nz.any():
            packed = nn.utils.rnn.pack_padded_sequence(
                x[nz], lengths[nz].cpu(), batch_first=True, enforce_sorted=False
            )
            h, _ = self.gru(packed)
            h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=length)
            out[nz] = h
        return self.drop(out)


class FeatureEmbedding(nn.Module):
    """Categorical features -> one vector per row.

    ``cardinalities[f]`` is the number of values of feature ``f`` including 0 = missing (its
    embedding is zero). ``combine="sum"`` gives ``[..., dim]``; ``"concat"`` gives
    ``[..., dim * n_features]``.
    """

    def __init__(
        self, cardinalities: Sequence[int], dim: int, combine: str = "sum", init_std: float = 0.02
    ) -> None:
        super().__init__()
        if combine not in ("sum", "concat"):
            raise ConfigError(f"feature combine '{combine}': expected 'sum' or 'concat'")
        self.combine = combine
        self.tables = nn.ModuleList(nn.Embedding(int(c), dim, padding_idx=0) for c in cardinalities)
        for t in self.tables:
            nn.init.normal_(t.weight, std=init_std)
            with torch.no_grad():
                t.weight[0].zero_()

    @property
    def out_dim(self) -> int:
        d = self.tables[0].embedding_dim if len(self.tables) else 0
        return d if self.combine == "sum" else d * len(self.tables)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``features[..., n_features]`` integer codes -> embeddings."""
        if features.shape[-1] != len(self.tables):
            raise ConfigError(
                f"expected {len(self.tables)} feature columns, found {features.shape[-1]}"
            )
        parts = [t(features[..., i]) for i, t in enumerate(self.tables)]
        return torch.stack(parts, 0).sum(0) if self.combine == "sum" else torch.cat(parts, -1)


def feature_table(
    features: pl.DataFrame, vocab: ItemVocab, columns: Sequence[str], key: str = "item_id"
) -> tuple[np.ndarray, list[int]]:
    """Encode categorical ``columns`` of a feature frame keyed by raw ``key`` ids.

    Returns ``(table, cardinalities)``: ``table[i, f]`` is the code (1-based, 0 = missing) of
    feature ``f`` for vocabulary index ``i``; values are coded in sorted order. Rows of unknown
    ids are ignored; ids absent from the frame get 0.
    """
    missing = [c for c in [key, *columns] if c not in features.columns]
    if missing:
        raise DataError(
            "feature table lacks columns",
            field=missing[0],
            expected=", ".join([key, *columns]),
            found=", ".join(features.columns),
        )
    if features[key].n_unique() != features.height:
        raise DataError(
            "feature table has duplicate ids",
            field=key,
            expected="unique ids",
            found=f"{features.height - features[key].n_unique()} duplicates",
        )
    idx = vocab.encode(features[key])
    keep = idx > 0
    table = np.zeros((len(vocab), len(columns)), dtype=np.int64)
    cards = []
    for f, col in enumerate(columns):
        values = features[col]
        levels = values.drop_nulls().unique().sort()
        codes = (
            pl.Series(values)
            .replace_strict(
                levels, pl.Series(np.arange(1, levels.len() + 1)), default=0, return_dtype=pl.Int64
            )
            .to_numpy()
        )
        table[idx[keep], f] = codes[keep]
        cards.append(levels.len() + 1)
    return table, cards
