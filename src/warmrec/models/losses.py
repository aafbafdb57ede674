"""Next-item training objectives as modules, selectable by name.

Every loss takes the sequence representations at the positions that have a target, the targets,
and the output item table, and returns a scalar::

    loss(hidden[N, d], targets[N], weight[n_items, d], bias[n_items] | None) -> Tensor[]

Row 0 of ``weight`` is padding: it is never a target and never a candidate. Losses that need
negatives draw them with :class:`NegativeSampler` from the global torch RNG (so the training
loop's seeding and checkpointed RNG state make them reproducible).

- ``"auto"`` -- ``"ce"`` on catalogues of up to ``auto_full_max_items`` items (20,000 by default),
  ``"sampled_ce"`` (1,024 shared uniform negatives, logQ-corrected) above: full softmax costs
  ``O(targets x items x d)`` per epoch, sampled softmax a constant. :func:`resolve_loss` makes the
  choice; :func:`make_loss` logs it and names it on the loss module (``loss.name``), and the
  training loop records it (``TrainResult.extra["loss"]``, the saved model's run info).
- ``"ce"`` -- full softmax cross-entropy over the whole catalogue, in row chunks with a fused
  gradient (:class:`FullCrossEntropy`: never ``[N, n_items]`` logits at once).
- ``"sampled_ce"`` -- sampled softmax: the target against ``n_negatives`` items drawn uniformly or
  by popularity (``count ** pop_alpha``), shared across the batch, optionally together with the
  other targets of the batch (``in_batch``). Logits are corrected by ``logq * log E[count]``, the
  expected number of times each candidate was drawn (Bengio & Senecal 2008; Yi et al. 2019).
  Negatives equal to a row's target ("accidental hits") are removed.
- ``"bce"`` -- binary cross-entropy with sampled negatives, as in the original SASRec (Kang &
  McAuley 2018: one uniform negative per position by default).
- ``"gbce"`` -- generalised BCE (Petrov & Macdonald, "gSASRec", RecSys 2023): the positive term is
  ``log sigmoid(s+) ** beta`` with ``beta = alpha * (t * (1 - 1/alpha) + 1/alpha)``, ``alpha`` the
  negative sampling rate ``k / (n_items - 1)`` and ``t`` the calibration parameter.
- ``"bpr-max"`` -- BPR-max (Hidasi & Karatzoglou, CIKM 2018):
  ``-log sum_j s_j sigmoid(r_i - r_j) + reg * sum_j s_j r_j**2`` with ``s`` the softmax of the
  negative scores; optionally an ELU on all scores first (GRU4Rec's ``elu_param``).

Every loss also takes ``seen=(history[N, H], value)``: the items each row's prediction is made
from (0 = padding) and a learned scalar added to the logit of any candidate among them
(:class:`~warmrec.models.layers.SeenItemBias`).

Scale conventions: every loss is a mean over rows (positions). The BCE-family sums the negative
terms of a row (so gSASRec's per-element mean equals ours divided by ``1 + k``).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from warmrec.config import ConfigModel
from warmrec.errors import ConfigError
from warmrec.models.bpr_max_linear import BPRMaxLinear
from warmrec.models.settings import LossName, LossSettings, check_in_batch
from warmrec.rng import generator

LOSSES = ("ce", "sampled_ce", "bce", "gbce", "bpr-max")
AUTO_FULL_MAX_ITEMS = 20_000
"""Default largest catalogue on which ``loss = "auto"`` means the full softmax."""
AUTO_NEGATIVES = 1024
"""Negatives of the sampled softmax that ``loss = "auto"`` picks above that size (when
``n_negatives`` is left at 0)."""

log = logging.getLogger(__name__)


# -- pure functions of logits (hand-checkable) --------------------------------------------------
def sampled_softmax_from_logits(
    pos: torch.Tensor, neg: torch.Tensor, neg_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean of ``-log softmax([pos, neg])[0]`` per row; ``neg_mask`` False removes a negative."""
    if neg_mask is not None:
        neg = neg.masked_fill(~neg_mask, -torch.inf)
    logits = torch.cat([pos[:, None], neg], dim=1)
    return (torch.logsumexp(logits, dim=1) - pos).mean()


def bce_from_logits(
    pos: torch.Tensor, neg: torch.Tensor, neg_mask: torch.Tensor | None = None, beta: float = 1.0
) -> torch.Tensor:
    """Mean over rows of ``-(beta * log sigmoid(pos) + sum_j log sigmoid(-neg_j))``."""
    neg_term = F.logsigmoid(-neg)
    if neg_mask is not None:
        neg_term = neg_term * neg_mask
    return -(beta * F.logsigmoid(pos) + neg_term.sum(dim=1)).mean()


def gbce_beta(n_negatives: int, n_real_items: int, t: float) -> float:
    """gSASRec's ``beta`` for ``n_negatives`` drawn from ``n_real_items - 1`` non-targets."""
    alpha = n_negatives / max(n_real_items - 1, 1)
    return alpha * (t * (1.0 - 1.0 / alpha) + 1.0 / alpha)


def bpr_max_from_logits(
    pos: torch.Tensor,
    neg: torch.Tensor,
    neg_mask: torch.Tensor | None = None,
    reg: float = 1.0,
    elu_param: float = 0.0,
) -> torch.Tensor:
    """BPR-max averaged over rows (Hidasi & Karatzoglou 2018, eq. 6 and 8).

    With ``s`` the softmax of the (ELU'd) negative scores over the kept negatives and
    ``r_i`` the target's score, a row's loss is ``-log sum_j s_j sigmoid(r_i - r_j) +
    reg * sum_j s_j r_j**2``; a row without negatives contributes 0. Computed by
    :class:`_BPRMaxFunction`: its hand-written backward makes a fraction of the passes over the
    ``[N, M]`` scores that autograd's does (:func:`bpr_max_reference` is the plain form). Inside
    :func:`twice_differentiable` (second-order meta-learning) the plain form is used, since the
    fused backward can be differentiated only once."""
    if _TWICE_DIFFERENTIABLE:
        return bpr_max_reference(pos, neg, neg_mask, reg, elu_param)
    drop = None if neg_mask is None else (~neg_mask).nonzero(as_tuple=True)
    return bpr_max_dropping(pos, neg, drop, reg, elu_param)


def bpr_max_dropping(
    pos: torch.Tensor,
    neg: torch.Tensor,
    drop: tuple[torch.Tensor, torch.Tensor] | None = None,
    reg: float = 1.0,
    elu_param: float = 0.0,
) -> torch.Tensor:
    """:func:`bpr_max_from_logits` with the excluded negatives given as ``(rows, cols)``
    positions (few: a row's accidental hits) instead of a dense ``[N, M]`` mask."""
    if _TWICE_DIFFERENTIABLE:
        mask = None
        if drop is not None:
            mask = torch.ones(neg.shape, dtype=torch.bool, device=neg.device)
            mask[drop] = False
        return bpr_max_reference(pos, neg, mask, reg, elu_param)
    rows, cols = (None, None) if drop is None else drop
    return _BPRMaxFunction.apply(pos, neg, rows, cols, float(reg), float(elu_param))


_TWICE_DIFFERENTIABLE = False


@contextlib.contextmanager
def twice_differentiable() -> Iterator[None]:
    """Inside the block, losses avoid hand-written backwards (which have no double backward),
    so that second-order meta-gradients flow through them."""
    global _TWICE_DIFFERENTIABLE
    before, _TWICE_DIFFERENTIABLE = _TWICE_DIFFERENTIABLE, True
    try:
        yield
    finally:
        _TWICE_DIFFERENTIABLE = before


def bpr_max_reference(
    pos: torch.Tensor,
    neg: torch.Tensor,
    neg_mask: torch.Tensor | None = None,
    reg: float = 1.0,
    elu_param: float = 0.0,
) -> torch.Tensor:
    """:func:`bpr_max_from_logits` written with autograd ops (the reference its tests check)."""
    if elu_param > 0:
        pos = F.elu(pos, elu_param)
        neg = F.elu(neg, elu_param)
    if neg_mask is None:
        s = torch.softmax(neg, dim=1)
        has_neg = torch.ones_like(pos, dtype=torch.bool)
    else:
        s = torch.softmax(neg.masked_fill(~neg_mask, -1e30), dim=1) * neg_mask
        s = s / s.sum(dim=1, keepdim=True).clamp_min(1e-30)
        has_neg = neg_mask.any(dim=1)
    ranking = -torch.log((s * torch.sigmoid(pos[:, None] - neg)).sum(dim=1) + 1e-24)
    ranking = torch.where(has_neg, ranking, torch.zeros_like(ranking))
    return (ranking + reg * (s * neg.square()).sum(dim=1)).mean()


def _rowdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(a * b).sum(1)`` for ``[N, M]`` (a batched ``bmm`` of vectors is 10x slower on CPU)."""
    return (a * b).sum(dim=1)


class _BPRMaxFunction(torch.autograd.Function):
    """BPR-max with a fused backward. With ``X`` the (ELU'd) negative scores, ``P`` the target's,
    ``e_j = exp(X_j - max X)`` (0 at dropped positions), ``Z = sum_j e_j``, ``s = e / Z``,
    ``sig_j = sigmoid(P - X_j)``, ``A = sum_j s_j sig_j`` and ``R = sum_j s_j X_j**2``:
    ``dL/dX_j = s_j * (-(sig_j**2 - A) / A + reg * (X_j**2 + 2 X_j - R))`` and
    ``dL/dP = -sum_j s_j sig_j (1 - sig_j) / A``, times the ELU's derivative. Every per-row
    factor (``1 / Z`` included) is folded into row vectors, so the ``[N, M]`` matrices are
    passed over about 8 times forward and 8 times backward."""

    @staticmethod
    def forward(ctx, pos, neg, rows, cols, reg, elu_param):  # type: ignore[override]
        if elu_param > 0:
            big_p, big_x = F.elu(pos, elu_param), F.elu(neg, elu_param)
        else:
            big_p, big_x = pos, neg
        e = torch.sub(big_x, big_x.amax(dim=1, keepdim=True)).exp_()
        if rows is not None and len(rows):
            e[rows, cols] = 0.0
        total = e.sum(dim=1)
        has = total > 0
        inv_z = total.clamp_min_(1e-30).reciprocal_()
        sig = torch.sub(big_p[:, None], big_x).sigmoid_()
        a = _rowdot(e, sig).mul_(inv_z)
        r = _rowdot(e, big_x.square()).mul_(inv_z)
        ranking = torch.where(has, -torch.log(a + 1e-24), torch.zeros_like(a))
        ctx.save_for_backward(big_p, big_x, e, sig, a, r, has, inv_z)
        ctx.reg, ctx.elu_param = reg, elu_param
        return (ranking + reg * r).mean()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # type: ignore[override]
        big_p, big_x, e, sig, a, r, has, inv_z = ctx.saved_tensors
        reg, alpha = ctx.reg, ctx.elu_param
        g = grad / big_p.shape[0]
        inv = torch.where(has, -g / (a + 1e-24), torch.zeros_like(a))  # d ranking / dA
        # dL/dX = e/Z * (inv * sig**2 + c + k * X * (X + 2)), c = -inv A - g reg R, k = g reg
        u = torch.mul(e, sig).mul_(sig)  # e * sig**2
        d_pos = inv * (a - u.sum(dim=1) * inv_z)
        c = ((-inv * a - g * reg * r) * inv_z)[:, None]
        if reg:
            # (an out-of-place addcmul broadcasting two [N, 1] operands took a slow path:
            # 2.8 ms a step in the profile, against about 0.3 ms for each in-place pass)
            t = torch.add(big_x, 2.0).mul_(big_x).mul_((g * reg * inv_z)[:, None]).add_(c)
            t.mul_(e)
        else:
            t = e * c
        t.addcmul_(u, (inv * inv_z)[:, None])
        if alpha > 0:  # through the ELU, from its output (one fused pass)
            t = torch.ops.aten.elu_backward(t, alpha, 1, 1, True, big_x)
            d_pos = torch.ops.aten.elu_backward(d_pos, alpha, 1, 1, True, big_p)
        return d_pos, t, None, None, None, None


# -- negative sampling ---------------------------------------------------------------------------
def alias_table(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker's alias table (Vose's construction) of the distribution ``p`` (positive, summing
    to 1): draw a slot ``i`` uniformly, keep it with probability ``keep[i]``, else take
    ``alias[i]``; every ``i`` then comes out with probability ``p[i]``."""
    n = len(p)
    q = (np.asarray(p, dtype=np.float64) * n).tolist()
    keep = np.ones(n, dtype=np.float64)
    alias = np.arange(n, dtype=np.int64)
    small = [i for i, v in enumerate(q) if v < 1.0]
    large = [i for i, v in enumerate(q) if v >= 1.0]
    while small and large:
        lo, hi = small.pop(), large[-1]
        keep[lo], alias[lo] = q[lo], hi
        q[hi] -= 1.0 - q[lo]
        if q[hi] < 1.0:
            small.append(large.pop())
    return keep, alias  # slots left in either list keep themselves (rounding)


class NegativeSampler:
    """Draws negative item indices ``1..n_items-1`` uniformly or by ``count ** alpha``.

    Uses the global torch RNG (seeded and checkpointed by the training loop).
    """

    def __init__(
        self,
        n_items: int,
        distribution: str = "uniform",
        item_counts: np.ndarray | None = None,
        alpha: float = 1.0,
    ) -> None:
        if distribution not in ("uniform", "pop"):
            raise ConfigError(f"negative sampling '{distribution}': expected 'uniform' or 'pop'")
        if n_items < 2:
            raise ConfigError("negative sampling needs at least one real item")
        self.n_items = n_items
        self.distribution = distribution
        if distribution == "pop":
            if item_counts is None:
                raise ConfigError("popularity sampling needs item counts")
            w = np.asarray(item_counts, dtype=np.float64).copy() ** alpha
            w[0] = 0.0
            if w.sum() <= 0:
                raise ConfigError("popularity sampling: all item counts are zero")
            self.probs = torch.from_numpy(w / w.sum()).float()
            support = np.nonzero(w)[0]
            keep, alias = alias_table(w[support] / w[support].sum())
            self._support = torch.from_numpy(support.astype(np.int64))
            self._keep = torch.from_numpy(keep)
            self._alias = torch.from_numpy(support[alias].astype(np.int64))
        else:
            p = torch.full((n_items,), 1.0 / (n_items - 1))
            p[0] = 0.0
            self.probs = p

    def sample(self, shape: tuple[int, ...], device: torch.device | str = "cpu") -> torch.Tensor:
        n = math.prod(shape)
        gen = generator("cpu")  # drawn on the CPU, then moved
        if self.distribution == "uniform":
            out = torch.randint(1, self.n_items, (n,), generator=gen)
        else:
            # alias method: two table reads per draw, where torch.multinomial passes over the
            # whole catalogue per call (1-2 ms a call for 121K items)
            slot = torch.randint(0, len(self._support), (n,), generator=gen)
            take = torch.rand(n, dtype=torch.float64, generator=gen) < self._keep[slot]
            out = torch.where(take, self._support[slot], self._alias[slot])
        return out.reshape(shape).to(device)


# -- loss modules --------------------------------------------------------------------------------
Seen = tuple[torch.Tensor, torch.Tensor]  # (history[N, H] item indices, 0 = padding; offset [])


def seen_mask(history: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Float 0/1 ``[N, M]``: whether each candidate is in its row's history ``[N, H]``.

    ``items`` is ``[M]`` (candidates shared by every row) or ``[N, M]`` (per row). Candidates are
    never 0, so padding in the history never matches.
    """
    if items.dim() == 1:  # shared: look each history item up among the distinct candidates
        distinct, column = torch.unique(items, return_inverse=True)
        at = torch.searchsorted(distinct, history).clamp_max(len(distinct) - 1)
        hit = distinct[at] == history
        found = torch.zeros(len(history), len(distinct) + 1, device=items.device)
        found.scatter_(1, torch.where(hit, at, len(distinct)), 1.0)  # misses: a spare column
        return found[:, column]
    ordered = history.sort(dim=1).values.contiguous()
    query = items
    at = torch.searchsorted(ordered, query).clamp_max(ordered.shape[1] - 1)
    return (ordered.gather(1, at) == query).float()


def _full_seen(logits: torch.Tensor, seen: Seen | None) -> torch.Tensor:
    if seen is None:
        return logits
    history, value = seen
    mask = torch.zeros_like(logits).scatter_(1, history, 1.0)
    mask[:, 0] = 0.0
    return logits + value * mask


def rows(weight: torch.Tensor, items: torch.Tensor, sparse: bool = False) -> torch.Tensor:
    """``weight[items]``; with ``sparse=True`` its gradient is a sparse tensor holding only the
    looked-up rows (no dense ``[n_items, d]`` zeros per step; the optimizer must take sparse
    gradients, see :func:`warmrec.training.loop.make_optimizer`)."""
    return F.embedding(items, weight, sparse=sparse)


def equal_positions(
    candidates: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rows, cols)`` with ``candidates[cols] == targets[rows]``: the accidental hits of shared
    candidates ``[M]``, found by sorting the candidates once (no dense ``[N, M]`` comparison)."""
    order = torch.argsort(candidates)
    ordered = candidates[order]
    lo = torch.searchsorted(ordered, targets)
    count = torch.searchsorted(ordered, targets, right=True) - lo
    rows = torch.repeat_interleave(torch.arange(len(targets), device=targets.device), count)
    first = torch.cumsum(count, 0) - count
    at = torch.arange(len(rows), device=targets.device) + torch.repeat_interleave(lo - first, count)
    return rows, order[at]


def _candidate_logits(
    hidden: torch.Tensor,
    items: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    sparse: bool = False,
) -> torch.Tensor:
    """Logits of shared candidates ``items[M]`` -> ``[N, M]``, or per-row ``items[N, M]``."""
    if items.dim() == 1:
        if bias is not None:  # the bias added by the matrix product itself (one pass fewer)
            return torch.addmm(bias[items], hidden, rows(weight, items, sparse).T)
        return hidden @ rows(weight, items, sparse).T
    out = torch.einsum("nd,nmd->nm", hidden, rows(weight, items, sparse))
    return out + bias[items] if bias is not None else out


def _target_logits(
    hidden: torch.Tensor,
    targets: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    sparse: bool = False,
) -> torch.Tensor:
    out = (hidden * rows(weight, targets, sparse)).sum(dim=1)
    return out + bias[targets] if bias is not None else out


CE_CHUNK_ELEMENTS = 1 << 18
"""Logits per row chunk of :class:`FullCrossEntropy` (256K floats, 1 MiB: the chunk's passes stay
in a core's L2 cache, and ``[N, n_items]`` is never materialised at once)."""


def _first_copies(history: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    """0/1 float ``[n, H]`` for ``history[n, H]``: 1 at the first copy of each real item of a row
    (0 for later copies and padding), so that a gather over it counts every item once. Each
    item's smallest column is scattered into ``scratch`` (``[>= n, n_items]`` int32, any
    contents: only the written cells are read back) and gathered again: no sort (sorting the
    ``seen_len``-wide histories of a batch cost more than the rest of the seen offset)."""
    n, width = history.shape
    cols = torch.arange(width, dtype=torch.int32, device=history.device).expand(n, width)
    s = scratch[:n]
    s.scatter_reduce_(1, history, cols, reduce="amin", include_self=False)
    return ((s.gather(1, history) == cols) & (history > 0)).float()


class _LinearCrossEntropy(torch.autograd.Function):
    """Full-softmax cross-entropy of ``hidden @ weight.T + bias`` (+ the seen-item offset), the
    mean over rows, computed chunk by chunk of rows with its gradient in the same pass.

    Per chunk: the logits (one matmul), the seen offset (a gather and a scatter over the history
    columns), ``log_softmax``, the loss terms at the targets, then ``softmax - onehot`` in place
    and the gradients of ``hidden``, ``weight``, ``bias`` and the offset from it. Against
    autograd's ``cross_entropy`` over a ``[N, n_items]`` matrix this makes about half the passes
    over the logits, keeps each chunk in cache, and needs ``[chunk, n_items]`` memory instead of
    several ``[N, n_items]`` buffers. Backward only scales the saved gradients by the incoming
    one (once differentiable; :func:`twice_differentiable` falls back to the plain form)."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, value, targets, history, chunk):  # type: ignore[override]
        n = hidden.shape[0]
        with torch.no_grad():
            grad_h = torch.empty_like(hidden)
            grad_w = torch.zeros_like(weight)
            grad_b = torch.zeros_like(bias) if bias is not None else None
            grad_v = torch.zeros((), dtype=hidden.dtype, device=hidden.device)
            total = torch.zeros((), dtype=hidden.dtype, device=hidden.device)
            if history is not None:
                offset = (history > 0).to(hidden.dtype) * value  # padding gets + 0
                scratch = torch.empty(
                    (min(chunk, n), weight.shape[0]), dtype=torch.int32, device=hidden.device
                )
            for lo in range(0, n, chunk):
                hi = min(lo + chunk, n)
                h, t = hidden[lo:hi], targets[lo:hi, None]
                logits = h @ weight.T if bias is None else torch.addmm(bias, h, weight.T)
                if history is not None:
                    hist = history[lo:hi]
                    logits.scatter_(1, hist, logits.gather(1, hist) + offset[lo:hi])
                logits[:, 0] = -torch.inf
                p = torch.log_softmax(logits, dim=1)
                del logits
                total -= p.gather(1, t).sum()
                p.exp_()  # softmax
                p.scatter_add_(1, t, torch.full_like(t, -1.0, dtype=p.dtype))  # - onehot
                if history is not None:
                    first = _first_copies(hist, scratch).to(p.dtype)
                    grad_v += (p.gather(1, hist) * first).sum()
                if grad_b is not None:
                    grad_b += p.sum(dim=0)
                torch.mm(p, weight, out=grad_h[lo:hi])
                grad_w.addmm_(p.T, h)
            scale = 1.0 / max(n, 1)
            grad_h.mul_(scale)
            grad_w.mul_(scale)
            if grad_b is not None:
                grad_b.mul_(scale)
            grad_v.mul_(scale)
        ctx.save_for_backward(grad_h, grad_w, grad_b, grad_v)
        ctx.has_value = value is not None
        ctx.value_shape = value.shape if value is not None else ()
        return total * scale

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # type: ignore[override]
        grad_h, grad_w, grad_b, grad_v = ctx.saved_tensors
        return (
            grad_h * grad,
            grad_w * grad,
            grad_b * grad if grad_b is not None else None,
            (grad_v * grad).reshape(ctx.value_shape) if ctx.has_value else None,
            None,
            None,
            None,
        )


def full_ce_reference(
    hidden: torch.Tensor,
    targets: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    seen: Seen | None = None,
) -> torch.Tensor:
    """Full-softmax cross-entropy with autograd ops (what :class:`FullCrossEntropy` computes; the
    reference its tests check, and the twice-differentiable form)."""
    logits = hidden @ weight.T
    if bias is not None:
        logits = logits + bias
    logits = _full_seen(logits, seen)
    logits[:, 0] = -torch.inf
    return F.cross_entropy(logits, targets)


class FullCrossEntropy(nn.Module):
    """Softmax cross-entropy over every real item, in row chunks of about ``chunk_elements``
    logits with a fused gradient (see :class:`_LinearCrossEntropy`)."""

    def __init__(self, chunk_elements: int = CE_CHUNK_ELEMENTS) -> None:
        super().__init__()
        self.chunk_elements = chunk_elements

    def forward(
        self,
        hidden: torch.Tensor,
        targets: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        seen: Seen | None = None,
    ) -> torch.Tensor:
        if _TWICE_DIFFERENTIABLE or not torch.is_grad_enabled():
            return full_ce_reference(hidden, targets, weight, bias, seen)
        history, value = seen if seen is not None else (None, None)
        if value is not None and not isinstance(value, torch.Tensor):
            value = torch.tensor(float(value), dtype=hidden.dtype, device=hidden.device)
        chunk = max(32, self.chunk_elements // max(weight.shape[0], 1))
        return _LinearCrossEntropy.apply(hidden, weight, bias, value, targets, history, chunk)


class SampledLoss(nn.Module):
    """Base of the losses that score the target against sampled negatives.

    ``shared=True`` draws one set of ``n_negatives`` for the whole batch (a matrix product);
    ``False`` draws ``n_negatives`` per row. ``in_batch`` adds the batch's targets as negatives
    (shared mode only). ``sparse_rows=True`` looks the rows of ``weight`` up with sparse
    gradients (see :func:`rows`); the model then lists that table in its
    ``sparse_parameters``.
    """

    def __init__(
        self,
        sampler: NegativeSampler,
        n_negatives: int,
        *,
        shared: bool = True,
        in_batch: bool = False,
        sparse_rows: bool = False,
    ) -> None:
        super().__init__()
        self.sparse_rows = sparse_rows
        if n_negatives < 0 or (n_negatives == 0 and not in_batch):
            raise ConfigError(f"n_negatives must be positive, found {n_negatives}")
        if in_batch and not shared:
            raise ConfigError("in-batch negatives need shared negatives")
        self.sampler = sampler
        self.n_negatives = n_negatives
        self.shared = shared
        self.in_batch = in_batch

    def negatives(self, targets: torch.Tensor) -> torch.Tensor:
        """``[M]`` shared or ``[N, M]`` per-row candidate negatives."""
        if self.shared:
            if self.n_negatives == 0:
                return targets  # in-batch negatives only
            neg = self.sampler.sample((self.n_negatives,), targets.device)
            return torch.cat([targets, neg]) if self.in_batch else neg
        return self.sampler.sample((len(targets), self.n_negatives), targets.device)

    def logits(self, hidden, targets, weight, bias, seen: Seen | None = None):
        neg_items = self.negatives(targets)
        pos = _target_logits(hidden, targets, weight, bias, self.sparse_rows)
        neg = _candidate_logits(hidden, neg_items, weight, bias, self.sparse_rows)
        if seen is not None:
            history, value = seen
            pos = pos + value * seen_mask(history, targets[:, None])[:, 0]
            neg = neg + value * seen_mask(history, neg_items)
        mask = (neg_items[None, :] if neg_items.dim() == 1 else neg_items) != targets[:, None]
        return pos, neg, neg_items, mask


class SampledSoftmax(SampledLoss):
    """Sampled softmax with ``logq``-weighted correction by expected candidate counts."""

    def __init__(
        self,
        sampler: NegativeSampler,
        n_negatives: int,
        *,
        logq: float = 1.0,
        in_batch: bool = False,
        item_counts: np.ndarray | None = None,
    ) -> None:
        super().__init__(sampler, n_negatives, shared=True, in_batch=in_batch)
        self.logq = logq
        data_p = None
        if in_batch:
            if item_counts is None:
                raise ConfigError("in-batch negatives need item counts for the logQ correction")
            c = np.asarray(item_counts, dtype=np.float64)
            data_p = torch.from_numpy(c / max(c.sum(), 1.0)).float()
        self.data_p = data_p

    def expected_count(self, items: torch.Tensor, batch_size: int) -> torch.Tensor:
        """Expected number of draws of each item into the candidate set."""
        e = self.n_negatives * self.sampler.probs.to(items.device)[items]
        if self.data_p is not None:
            e = e + batch_size * self.data_p.to(items.device)[items]
        return e

    def forward(
        self,
        hidden: torch.Tensor,
        targets: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        seen: Seen | None = None,
    ) -> torch.Tensor:
        pos, neg, neg_items, mask = self.logits(hidden, targets, weight, bias, seen)
        if self.logq:
            n = len(targets)
            pos = pos - self.logq * torch.log(self.expected_count(targets, n).clamp_min(1e-12))
            neg = neg - self.logq * torch.log(self.expected_count(neg_items, n).clamp_min(1e-12))
        return sampled_softmax_from_logits(pos, neg, mask)


class BinaryCrossEntropy(SampledLoss):
    """BCE with sampled negatives; ``beta != 1`` gives gBCE (see :func:`gbce_beta`)."""

    def __init__(
        self,
        sampler: NegativeSampler,
        n_negatives: int = 1,
        *,
        shared: bool = False,
        beta: float = 1.0,
    ) -> None:
        super().__init__(sampler, n_negatives, shared=shared)
        self.beta = beta

    def forward(
        self,
        hidden: torch.Tensor,
        targets: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        seen: Seen | None = None,
    ) -> torch.Tensor:
        pos, neg, _, mask = self.logits(hidden, targets, weight, bias, seen)
        return bce_from_logits(pos, neg, mask, self.beta)


class BPRMax(SampledLoss):
    """BPR-max with score regularisation over shared (and optionally in-batch) negatives."""

    def __init__(
        self,
        sampler: NegativeSampler,
        n_negatives: int,
        *,
        reg: float = 1.0,
        elu_param: float = 0.0,
        in_batch: bool = False,
    ) -> None:
        super().__init__(sampler, n_negatives, shared=True, in_batch=in_batch)
        self.reg = reg
        self.elu_param = elu_param
        self.matmul_dtype: torch.dtype | None = None
        """dtype of the fused loss's three matrix products (None: the scores' own; see
        :func:`warmrec.models.bpr_max_linear.matmul_dtype`)."""

    def forward(
        self,
        hidden: torch.Tensor,
        targets: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        seen: Seen | None = None,
    ) -> torch.Tensor:
        neg_items = self.negatives(targets)
        fused = not _TWICE_DIFFERENTIABLE and torch.is_grad_enabled()
        if fused:
            cand_w = rows(weight, neg_items, self.sparse_rows)
            cand_b = None if bias is None else bias[neg_items]
        if fused and self.in_batch:
            # the candidates start with the targets: their rows are looked up once (one gather
            # and one sparse gradient fewer per step)
            n = len(targets)
            pos = (hidden * cand_w[:n]).sum(dim=1)
            pos = pos + cand_b[:n] if cand_b is not None else pos
        else:
            pos = _target_logits(hidden, targets, weight, bias, self.sparse_rows)
        drop = equal_positions(neg_items, targets)
        value = mask = None
        if seen is not None:
            history, value = seen
            pos = pos + value * seen_mask(history, targets[:, None])[:, 0]
            mask = seen_mask(history, neg_items)
        if fused:
            # the scoring product fused with the loss, in cache-sized row chunks
            if value is not None and not isinstance(value, torch.Tensor):
                value = torch.tensor(float(value), dtype=hidden.dtype, device=hidden.device)
            return BPRMaxLinear.apply(
                hidden, cand_w, cand_b,
                pos, value, mask, *drop, float(self.reg), float(self.elu_param),
                self.matmul_dtype,
            )  # fmt: skip
        neg = _candidate_logits(hidden, neg_items, weight, bias, self.sparse_rows)
        if mask is not None:
            neg = neg + value * mask
        return bpr_max_dropping(pos, neg, drop, self.reg, self.elu_param)


class LossSpec(ConfigModel):
    """A resolved loss: what :func:`make_loss` builds (see the module docstring)."""

    loss: LossName = "ce"
    """The objective (see the module docstring)."""
    auto_full_max_items: int = Field(AUTO_FULL_MAX_ITEMS, ge=1)
    """Largest catalogue on which ``"auto"`` means ``"ce"``."""
    n_negatives: int = Field(256, ge=1)
    """Negatives per row of the sampled losses."""
    negative_sampling: Literal["uniform", "pop"] = "uniform"
    """Uniform or popularity (``count ** pop_alpha``) negatives."""
    pop_alpha: float = Field(0.75, ge=0)
    """Exponent of the popularity sampling distribution."""
    shared_negatives: bool = True
    """One set of negatives for the whole batch (else one per row; BCE-type losses only)."""
    in_batch: bool = False
    """Also use the batch's other targets as negatives."""
    logq: float = Field(1.0, ge=0)
    """Strength of the logQ correction of sampled softmax."""
    gbce_t: float = Field(0.75, ge=0, le=1)
    """gSASRec's calibration parameter."""
    bpr_reg: float = Field(1.0, ge=0)
    """BPR-max score regularisation."""
    elu_param: float = Field(0.0, ge=0)
    """ELU on the BPR-max scores (0 = off)."""

    @model_validator(mode="after")
    def _in_batch_has_a_use(self) -> LossSpec:
        check_in_batch(self.loss, self.in_batch)
        return self


def loss_spec_from_config(config: LossSettings) -> LossSpec:
    """The :class:`LossSpec` of a model config composed with
    :class:`~warmrec.models.settings.LossSettings`.

    ``n_negatives = 0`` means the default: 1 for BCE (the original SASRec objective),
    :data:`AUTO_NEGATIVES` for ``"auto"`` (used if it resolves to sampled softmax), else 256;
    ``shared_negatives = None`` shares negatives across the batch except for BCE.
    """
    if not isinstance(config, LossSettings):
        raise ConfigError(f"{type(config).__name__} has no loss settings")
    k = config.n_negatives or {"bce": 1, "auto": AUTO_NEGATIVES}.get(config.loss, 256)
    shared = config.shared_negatives
    return LossSpec(
        loss=config.loss,
        auto_full_max_items=config.auto_full_max_items,
        n_negatives=k,
        negative_sampling=config.negative_sampling,
        pop_alpha=config.pop_alpha,
        shared_negatives=config.loss != "bce" if shared is None else shared,
        in_batch=config.in_batch,
        logq=config.logq,
        gbce_t=config.gbce_t,
        bpr_reg=config.bpr_reg,
        elu_param=config.elu_param,
    )


def resolve_loss(spec: LossSpec, n_items: int) -> LossSpec:
    """``spec`` with ``"auto"`` replaced by the loss it means for ``n_items`` items (padding
    included): ``"ce"`` up to ``spec.auto_full_max_items``, else ``"sampled_ce"`` with
    ``spec.n_negatives`` (a model config's ``n_negatives = 0`` gives :data:`AUTO_NEGATIVES`, see
    :func:`loss_spec_from_config`). Other losses pass unchanged."""
    if spec.loss != "auto":
        return spec
    return spec.model_copy(
        update={"loss": "ce" if n_items <= spec.auto_full_max_items else "sampled_ce"}
    )


def make_loss(spec: LossSpec, n_items: int, item_counts: np.ndarray | None = None) -> nn.Module:
    """Build the loss ``spec.loss`` for a catalogue of ``n_items`` (padding included); ``"auto"``
    is resolved first (:func:`resolve_loss`), the choice logged. The module's ``name`` is the
    loss it computes."""
    if spec.loss == "auto":
        chosen = resolve_loss(spec, n_items)
        log.info(
            "loss 'auto' on %d items (full softmax up to %d): %s%s",
            n_items,
            spec.auto_full_max_items,
            chosen.loss,
            f" with {chosen.n_negatives} negatives" if chosen.loss == "sampled_ce" else "",
        )
        spec = chosen
    name = spec.loss.lower()
    if name not in LOSSES:
        raise ConfigError(f"unknown loss '{spec.loss}'; expected one of {', '.join(LOSSES)}")
    module = _build_loss(name, spec, n_items, item_counts)
    module.name = name
    return module


def _build_loss(
    name: str, spec: LossSpec, n_items: int, item_counts: np.ndarray | None
) -> nn.Module:
    if name == "ce":
        return FullCrossEntropy()
    sampler = NegativeSampler(n_items, spec.negative_sampling, item_counts, spec.pop_alpha)
    if name == "sampled_ce":
        return SampledSoftmax(
            sampler,
            spec.n_negatives,
            logq=spec.logq,
            in_batch=spec.in_batch,
            item_counts=item_counts,
        )
    if name == "bce":
        return BinaryCrossEntropy(sampler, spec.n_negatives, shared=spec.shared_negatives)
    if name == "gbce":
        beta = gbce_beta(spec.n_negatives, n_items - 1, spec.gbce_t)
        return BinaryCrossEntropy(
            sampler, spec.n_negatives, shared=spec.shared_negatives, beta=beta
        )
    return BPRMax(
        sampler,
        spec.n_negatives,
        reg=spec.bpr_reg,
        elu_param=spec.elu_param,
        in_batch=spec.in_batch,
    )
