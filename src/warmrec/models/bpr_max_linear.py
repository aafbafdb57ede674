"""BPR-max over shared candidates fused with its scoring product, computed in cache-sized row
chunks with its gradient in the same pass (GRU4Rec's training loss, the hot path on large
catalogues).

Unfused, a session-parallel GRU4Rec step on nowplaying-1m (256 lanes, 2,304 shared candidates)
builds the ``[256, 2304]`` score matrix (2.4 MB) with one product and then passes over it about
16 times (ELU, softmax, sigmoid, the row sums and the backward's products): each pass streams
the matrix through the L3 cache. Here the scores of a chunk of rows at a time are computed,
turned into the loss terms and into ``dL/dscores`` at once, and that gradient is written into
one ``[N, M]`` buffer; two products after the loop give the gradients of the hidden states and
of the candidate rows. The elementwise passes run about 2.5x faster from L2, and no pass is made
twice. Measured on that step (CPU ms per step, one thread, an AMD EPYC with 1 MiB of L2 per
core): 15.0 unfused, 14.4 with chunks of 64K scores, 13.4 with 128K, 13.7 with 256K, 14.3 with
1M (more chunks cost Python overhead per chunk, bigger ones leave L2).

The chunk size follows the machine (:func:`chunk_bytes`): a score buffer of half a core's L2
(512 KiB, 128K float32 scores, on that machine), read from the cache sizes
(:mod:`warmrec.training.machine`); or the size :func:`tune_chunk_bytes` timed fastest on this
machine, once, kept in the user's cache directory; or ``WARMREC_BPR_CHUNK_BYTES``. Rows are
independent, so the chunk size changes which rows share a product call and nothing else: the
tests check every size against the reference in float64.

The three products (scores, ``dL/dhidden``, ``dL/dcandidates``) may take their operands in
bfloat16 (``mm_dtype``; :func:`matmul_dtype` chooses it where the CPU multiplies bfloat16
natively): 4x faster products there (0.27 against 1.13 ms for the step's scoring product on an
AMD EPYC with AVX512-BF16), float32 accumulation, the loss terms and gradients in float32. The
exponentials are ``exp2`` of scaled arguments (:data:`LOG2E`).

With ``X`` the (ELU'd) candidate scores of a row, ``P`` its target's score, ``e_j = exp(X_j -
max X)`` (0 at the row's accidental hits), ``Z = sum e``, ``sig_j = sigmoid(P - X_j)``,
``A = sum_j e_j sig_j / Z`` and ``R = sum_j e_j X_j**2 / Z``, the row's loss is ``-log A + reg
R`` and

``dL/dX_j = (e_j / Z) (inv sig_j**2 + c + k X_j (X_j + 2))``, ``dL/dP = inv (A - sum_j e_j
sig_j**2 / Z)``

with ``inv = -1 / (n A)``, ``k = reg / n``, ``c = -inv A - k R`` (``n`` rows, mean loss), times
the ELU's derivative. The reference is :func:`warmrec.models.losses.bpr_max_reference`, against
which the tests check values and gradients in float64.
"""

from __future__ import annotations

import functools
import os
import time

import torch

from warmrec.errors import ConfigError
from warmrec.training import machine

CHUNK_ELEMENTS: int | None = None
"""Scores per row chunk when set (tests, experiments); None: :func:`chunk_bytes` decides."""

CHUNK_ENV = "WARMREC_BPR_CHUNK_BYTES"
"""Environment variable: bytes of one chunk's score buffer, overriding the machine's choice."""
TUNED_NAME = "bpr_max_linear.chunk_bytes"
"""The name of the timed choice in :mod:`warmrec.training.machine`'s per-machine store."""
DEFAULT_L2 = 1 << 20
"""L2 bytes assumed where the cache sizes cannot be read."""
MIN_CHUNK_BYTES, MAX_CHUNK_BYTES = 1 << 16, 1 << 22
CHUNK_CANDIDATES = (1 << 17, 1 << 18, 1 << 19, 1 << 20, 1 << 21)
"""Buffer sizes :func:`tune_chunk_bytes` times (128 KiB to 2 MiB)."""


def l2_chunk_bytes(l2: int | None) -> int:
    """Bytes of one chunk's score buffer for a core with ``l2`` bytes of L2: half of it, rounded
    down to a power of two, within 64 KiB-4 MiB (``DEFAULT_L2`` where unknown). Half: measured
    best (512 KiB) on a 1 MiB L2, where the chunk's passes read and write two to three buffers
    at a time."""
    half = max(1, (l2 or DEFAULT_L2) // 2)
    return min(MAX_CHUNK_BYTES, max(MIN_CHUNK_BYTES, 1 << (half.bit_length() - 1)))


@functools.lru_cache(maxsize=1)
def chunk_bytes() -> tuple[int, str]:
    """Bytes of one chunk's score buffer and where the figure came from: ``"env"``
    (``WARMREC_BPR_CHUNK_BYTES``), ``"tuned"`` (this machine's timed choice), ``"l2"`` (half the
    L2 read from the machine) or ``"default"`` (L2 unknown). Resolved once per process
    (``chunk_bytes.cache_clear()`` re-reads)."""
    env = os.environ.get(CHUNK_ENV, "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ConfigError(f"{CHUNK_ENV}: found {env!r}, expected a positive number of bytes")
        return int(env), "env"
    info = machine.cpu_info()
    value = machine.tuned(TUNED_NAME, info)
    if isinstance(value, int) and value > 0:
        return value, "tuned"
    return l2_chunk_bytes(info.l2), "l2" if info.l2 else "default"


def chunk_elements(itemsize: int = 4) -> int:
    """Scores per row chunk for scores of ``itemsize`` bytes (``CHUNK_ELEMENTS`` when set)."""
    if CHUNK_ELEMENTS is not None:
        return CHUNK_ELEMENTS
    return max(1, chunk_bytes()[0] // itemsize)


MATMUL_ENV = "WARMREC_MATMUL_PRECISION"
"""Environment variable: ``float32`` or ``bfloat16``, overriding ``matmul_precision="auto"``."""
PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}
MIN_LOW_ROWS = 64
"""Products with fewer rows (the epoch's tail, where few session-parallel lanes are left) stay
in float32 whatever ``mm_dtype`` says: there bfloat16 saves nothing, and its casts and
oneDNN's set-up for every new shape cost more (a tail step with one lane: 4.5 against 4.1 ms)."""


def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices natively (AVX512-BF16 or AMX): oneDNN's
    bfloat16 products then run 2-4x faster than float32 ones (measured 4.2x at the fused loss's
    shapes on an AMD EPYC with AVX512-BF16); elsewhere they are emulated and slower."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def matmul_dtype(precision: str = "auto", device: torch.device | str = "cpu") -> torch.dtype:
    """dtype of the fused loss's three matrix products for ``precision``: ``"float32"``,
    ``"bfloat16"``, or ``"auto"``: ``$WARMREC_MATMUL_PRECISION`` when set, else bfloat16 on a
    CPU with native bfloat16 products (:func:`native_bf16`), else float32 (and float32 on other
    devices). bfloat16 rounds only the products' operands (8 significant bits, float32
    accumulation); the loss terms, the gradients' sums and the parameters stay float32."""
    if precision == "auto":
        env = os.environ.get(MATMUL_ENV, "").strip().lower()
        if env:
            if env not in PRECISIONS:
                raise ConfigError(
                    f"{MATMUL_ENV}: found {env!r}, expected one of {', '.join(PRECISIONS)}"
                )
            return PRECISIONS[env]
        if torch.device(device).type != "cpu":
            return torch.float32
        return torch.bfloat16 if native_bf16() else torch.float32
    if precision not in PRECISIONS:
        raise ConfigError(
            f"matmul_precision: found {precision!r}, expected auto, {', '.join(PRECISIONS)}"
        )
    return PRECISIONS[precision]


LOG2E = 1.4426950408889634
"""``log2(e)``: ``exp(x) = exp2(x * LOG2E)``. torch's float32 ``exp`` on CPU ran 4.5x slower than
its ``exp2`` (80 against 18 us on 129K scores, torch 2.13, AVX512), so the loss's exponentials
are taken as ``exp2`` of a scaled argument (the scaling folded into a pass made anyway)."""


def elu_(x: torch.Tensor, alpha: float, tmp: torch.Tensor) -> torch.Tensor:
    """ELU of ``x`` in place. ``torch``'s ELU evaluates ``expm1`` one element at a time; for
    ``alpha <= 1`` it equals ``max(x, alpha (exp(min(x, 0)) - 1))``, vectorised ``exp2`` only
    (``tmp`` is scratch of ``x``'s shape)."""
    if alpha > 1:
        return torch.nn.functional.elu(x, alpha, inplace=True)
    torch.mul(x, LOG2E, out=tmp).clamp_max_(0.0).exp2_().sub_(1.0).mul_(alpha)
    return torch.maximum(x, tmp, out=x)


class BPRMaxLinear(torch.autograd.Function):
    """Mean BPR-max of the rows of ``hidden @ cand_w.T + cand_b`` (+ ``value * seen``) against
    their target scores ``pos``; the gradient is computed in the forward pass (see the module
    docstring) and only scaled in ``backward``. ``cand_b`` may be None (no output bias).

    ``drop`` = ``(rows, cols)`` of the candidates to leave out of a row (sorted by row, as
    :func:`warmrec.models.losses.equal_positions` gives them), or None. ``seen`` is a float
    ``[N, M]`` 0/1 matrix added times the scalar tensor ``value`` (the seen-item bias), or None.
    """

    @staticmethod
    def forward(
        ctx,
        hidden,
        cand_w,
        cand_b,
        pos,
        value,
        seen,
        drop_rows,
        drop_cols,
        reg,
        alpha,
        mm_dtype=None,
    ):  # type: ignore[override]  # noqa: E501
        n, m = hidden.shape[0], cand_w.shape[0]
        like = {"dtype": hidden.dtype, "device": hidden.device}
        low = mm_dtype is not None and mm_dtype != hidden.dtype and n >= MIN_LOW_ROWS
        with torch.no_grad():
            # the three products' operands (rounded to ``mm_dtype`` when it is set: see
            # :func:`matmul_dtype`); everything else stays in ``hidden``'s dtype
            h_mm = hidden.to(mm_dtype) if low else hidden
            w_mm = cand_w.to(mm_dtype) if low else cand_w
            big_p = torch.nn.functional.elu(pos, alpha) if alpha > 0 else pos
            grad_s = torch.empty(n, m, dtype=h_mm.dtype, device=hidden.device)
            chunk = max(1, chunk_elements(hidden.element_size()) // max(m, 1))
            c0, n_chunks = min(chunk, n), -(-n // chunk)
            # per row: Z = sum e, S1 = sum e sig, S2 = sum e sig^2, EXX = sum e X^2 (one
            # reduction over the first four of a chunk's five products, ``prod``; the fifth, e X,
            # only enters the gradient)
            stats = torch.empty(4, n, **like)
            prod = torch.empty(5, c0, m, **like)
            x_buf, sig_buf = torch.empty(2, c0, m, **like)
            out_buf = torch.empty(c0, m, **like) if low else None
            x_mm = torch.empty(c0, m, dtype=h_mm.dtype, device=hidden.device) if low else None
            col = torch.empty(n_chunks, m, **like) if cand_b is not None else None
            grad_v = torch.zeros((), **like)
            starts = flat = None
            if drop_rows is not None and len(drop_rows):
                bounds = torch.arange(0, n + chunk, chunk, device=drop_rows.device).clamp_max(n)
                starts = torch.searchsorted(drop_rows, bounds).tolist()
                flat = (drop_rows % chunk) * m + drop_cols  # within its chunk's [c, m] block
            wt, k_reg = w_mm.T, reg / n
            p_col = big_p[:, None]
            for i, lo in enumerate(range(0, n, chunk)):
                hi = min(lo + chunk, n)
                c = hi - lo
                x, sig = x_buf[:c], sig_buf[:c]
                block = prod[:, :c]
                e, es, es2, ex2, ex = block.unbind(0)
                out = out_buf[:c] if low else grad_s[lo:hi]
                if low:  # the product rounded to mm_dtype, widened with the bias in one pass
                    xl = torch.mm(h_mm[lo:hi], wt, out=x_mm[:c])
                    if cand_b is None:
                        x.copy_(xl)
                    else:
                        torch.add(xl, cand_b, out=x)
                elif cand_b is None:
                    torch.mm(hidden[lo:hi], wt, out=x)
                else:
                    torch.addmm(cand_b, hidden[lo:hi], wt, out=x)
                if seen is not None:
                    x.addcmul_(seen[lo:hi], value)
                if alpha > 0:
                    elu_(x, alpha, sig)
                top = x.amax(dim=1, keepdim=True)
                torch.add(top.mul_(-LOG2E), x, alpha=LOG2E, out=e).exp2_()  # exp(X - max X)
                if starts is not None and starts[i] < starts[i + 1]:
                    e.view(-1).index_fill_(0, flat[starts[i] : starts[i + 1]], 0.0)
                torch.sub(p_col[lo:hi], x, out=sig).sigmoid_()  # sigmoid(P - X)
                torch.mul(e, sig, out=es)
                torch.mul(es, sig, out=es2)
                torch.mul(e, x, out=ex)
                torch.mul(ex, x, out=ex2)
                st = torch.sum(block[:4], dim=2, out=stats[:, lo:hi])
                z, s1, _, sxx = st.unsqueeze(2).unbind(0)
                # dL/dX = e sig^2 / (-n S1) + e (1/n - k R) / Z + e X (X + 2) k / Z, with
                # k = reg / n and R = EXX / Z
                inv_z = z.clamp_min(1e-30).reciprocal_()
                coef_u = s1.clamp_min(1e-30).reciprocal_().mul_(-1.0 / n)
                coef_e = torch.mul(sxx, inv_z).mul_(-k_reg).add_(1.0 / n).mul_(inv_z)
                inv_z.mul_(k_reg)
                torch.mul(es2, coef_u, out=out).addcmul_(e, coef_e).addcmul_(ex2, inv_z)
                out.addcmul_(ex, inv_z, value=2.0)
                if alpha > 0:
                    torch.ops.aten.elu_backward.grad_input(
                        out, alpha, 1, 1, True, x, grad_input=out
                    )
                if seen is not None:
                    grad_v += torch.mul(out, seen[lo:hi], out=e).sum()
                if col is not None:
                    torch.sum(out, dim=0, out=col[i])
                if low:
                    grad_s[lo:hi].copy_(out)
            z, s1, s2 = stats[0], stats[1], stats[2]
            big_r = stats[3] / z.clamp_min(1e-30)  # sum e X^2 / Z
            grad_b = col.sum(dim=0) if col is not None else None
            has = z > 0
            ranking = torch.where(has, -torch.log(s1 / z.clamp_min(1e-30) + 1e-24), 0.0)
            loss = (ranking + reg * big_r).sum() / max(n, 1)
            d_pos = torch.where(has, (s2 / s1.clamp_min(1e-30) - 1.0) / n, 0.0)
            if alpha > 0:
                d_pos = torch.ops.aten.elu_backward(d_pos, alpha, 1, 1, True, big_p)
            grad_h = (grad_s @ w_mm).to(hidden.dtype)
            grad_w = (grad_s.T @ h_mm).to(hidden.dtype)
        ctx.save_for_backward(grad_h, grad_w, grad_b, d_pos, grad_v)
        ctx.has_value = value is not None
        ctx.value_shape = value.shape if value is not None else ()
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # type: ignore[override]
        saved = ctx.saved_tensors
        if grad.numel() != 1 or grad.item() != 1.0:  # backpropagating the loss itself passes 1
            saved = [None if t is None else t * grad for t in saved]
        grad_h, grad_w, grad_b, d_pos, grad_v = saved
        return (
            grad_h,
            grad_w,
            grad_b,
            d_pos,
            grad_v.reshape(ctx.value_shape) if ctx.has_value else None,
            None,
            None,
            None,
            None,
            None,
            None,
        )


def time_chunk_sizes(
    candidates: tuple[int, ...] = CHUNK_CANDIDATES,
    *,
    n: int = 256,
    m: int = 2304,
    d: int = 100,
    rounds: int = 15,
    seed: int = 0,
) -> dict[int, float]:
    """Seconds of one fused forward+gradient (float32, ELU 0.5, in-batch drops) per candidate
    buffer size, the best of ``rounds``; the candidates are interleaved round by round so that a
    change of the machine's load falls on all alike. The default shape is GRU4Rec's step on
    nowplaying-1m (256 lanes, 2,304 candidates, 100 units); torch's current thread count. With
    one thread the clock is the process's CPU time (time spent descheduled on a busy machine does
    not count), else wall time."""
    global CHUNK_ELEMENTS
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, d, generator=g) * 0.1
    cand_w = torch.randn(m, d, generator=g) * 0.1
    cand_b = torch.randn(m, generator=g) * 0.01
    pos = torch.randn(n, generator=g)
    rows = torch.arange(n)
    best = dict.fromkeys(candidates, float("inf"))
    clock = time.process_time if torch.get_num_threads() == 1 else time.perf_counter
    saved = CHUNK_ELEMENTS
    try:
        for r in range(rounds + 1):
            for c in candidates:
                CHUNK_ELEMENTS = max(1, c // 4)
                t0 = clock()
                BPRMaxLinear.apply(hidden, cand_w, cand_b, pos, None, None, rows, rows, 1.0, 0.5)
                if r:  # round 0 warms up
                    best[c] = min(best[c], clock() - t0)
    finally:
        CHUNK_ELEMENTS = saved
    return best


def tune_chunk_bytes(save: bool = True, **kwargs) -> dict:
    """Time the candidate chunk sizes on this machine (:func:`time_chunk_sizes`, about a second)
    and, with ``save``, keep the fastest as this machine's choice (used by every later run; see
    :mod:`warmrec.training.machine`). Returns the choice, the L2 rule's size and the timings."""
    info = machine.cpu_info()
    times = time_chunk_sizes(**kwargs)
    choice = min(times, key=times.__getitem__)
    out = {
        "value": choice,
        "l2_rule": l2_chunk_bytes(info.l2),
        "ms": {str(k): round(v * 1e3, 3) for k, v in times.items()},
        "threads": torch.get_num_threads(),
        "load": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    if save:
        details = {k: v for k, v in out.items() if k != "value"}
        out["file"] = str(machine.remember(TUNED_NAME, choice, info, **details))
        chunk_bytes.cache_clear()
    return out
