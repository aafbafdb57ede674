"""The chunked BPR-max fused with its scoring product against the autograd reference."""

from __future__ import annotations

import pytest
import torch

from warmrec.errors import ConfigError
from warmrec.models import bpr_max_linear as B
from warmrec.models import losses as L


def _case(seed: int, n: int = 13, m: int = 21, d: int = 5, n_items: int = 40):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, d, generator=g, dtype=torch.float64).requires_grad_()
    weight = torch.randn(n_items, d, generator=g, dtype=torch.float64).requires_grad_()
    bias = torch.randn(n_items, generator=g, dtype=torch.float64).requires_grad_()
    value = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(1, n_items, (n,), generator=g)
    targets[3] = targets[7]  # a repeated target: two rows drop the same candidate
    cands = torch.cat([targets, torch.randint(1, n_items, (m - n,), generator=g)])
    history = torch.randint(0, n_items, (n, 4), generator=g)
    return hidden, weight, bias, value, targets, cands, history


@pytest.mark.parametrize("alpha", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("seen", [False, True])
@pytest.mark.parametrize("chunk_elements", [1 << 16, 60])
def test_fused_bpr_max_equals_the_reference(monkeypatch, alpha, seen, chunk_elements):
    """Loss and gradients (hidden, table, bias, seen bias) equal the reference's in float64,
    in one chunk and in chunks of 2 rows (60 // 21) whose drop positions cross chunk bounds;
    ELU 2.0 takes torch's own ELU, 0.5 the exp-only form."""
    monkeypatch.setattr(B, "CHUNK_ELEMENTS", chunk_elements)
    hidden, weight, bias, value, targets, cands, history = _case(0)
    drop = L.equal_positions(cands, targets)
    assert len(drop[0]) > len(targets)  # every row hits itself, plus the repeat
    params = [hidden, weight, bias] + ([value] if seen else [])

    pos = (hidden * weight[targets]).sum(1) + bias[targets]
    mask = None
    if seen:
        pos = pos + value * L.seen_mask(history, targets[:, None])[:, 0]
        mask = L.seen_mask(history, cands).double()
    got = B.BPRMaxLinear.apply(
        hidden, weight[cands], bias[cands], pos, value if seen else None, mask, *drop, 1.3, alpha
    )
    got_grads = torch.autograd.grad(got, params)

    pos = (hidden * weight[targets]).sum(1) + bias[targets]
    neg = hidden @ weight[cands].T + bias[cands]
    if seen:
        pos = pos + value * L.seen_mask(history, targets[:, None])[:, 0]
        neg = neg + value * mask
    keep = torch.ones(neg.shape, dtype=torch.bool)
    keep[drop] = False
    want = L.bpr_max_reference(pos, neg, keep, 1.3, alpha)
    torch.testing.assert_close(got, want)
    for a, b in zip(got_grads, torch.autograd.grad(want, params)):
        torch.testing.assert_close(a, b)


def test_backward_scales_by_the_incoming_gradient():
    hidden, weight, bias, _, targets, cands, _ = _case(1)
    drop = L.equal_positions(cands, targets)
    pos = (hidden * weight[targets]).sum(1) + bias[targets]

    def loss():
        return B.BPRMaxLinear.apply(
            hidden, weight[cands], bias[cands], pos, None, None, *drop, 1.0, 0.5
        )

    (g1,) = torch.autograd.grad(loss(), [hidden], retain_graph=True)
    (g3,) = torch.autograd.grad(3.0 * loss(), [hidden], retain_graph=True)
    torch.testing.assert_close(g3, 3.0 * g1)


def test_exp_only_elu_equals_torch_elu():
    x = torch.linspace(-30, 5, 2001, dtype=torch.float64)
    for alpha in (0.25, 0.5, 1.0):
        got = B.elu_(x.clone(), alpha, torch.empty_like(x))
        torch.testing.assert_close(got, torch.nn.functional.elu(x, alpha))


def test_bpr_max_module_takes_the_fused_path_only_when_once_differentiable(monkeypatch):
    """With gradients on, the module's loss comes from ``BPRMaxLinear``; inside
    ``twice_differentiable`` (second-order meta-learning) it does not, and both agree."""
    calls = []
    apply = B.BPRMaxLinear.apply
    monkeypatch.setattr(L.BPRMaxLinear, "apply", lambda *a: calls.append(1) or apply(*a))
    counts = torch.ones(40).numpy()
    counts[0] = 0
    spec = L.LossSpec(loss="bpr-max", n_negatives=10, in_batch=True, elu_param=0.5)
    loss = L.make_loss(spec, 40, counts)
    hidden, weight, bias, _, targets, _, _ = _case(2)
    torch.manual_seed(0)
    fused = loss(hidden, targets, weight, bias)
    assert calls == [1]
    torch.manual_seed(0)
    with L.twice_differentiable():
        plain = loss(hidden, targets, weight, bias)
    assert calls == [1]
    torch.testing.assert_close(fused, plain)
    params = [hidden, weight, bias]  # the targets' rows come from the candidates' lookup
    for a, b in zip(torch.autograd.grad(fused, params), torch.autograd.grad(plain, params)):
        torch.testing.assert_close(a, b)


def test_module_without_output_bias_takes_the_fused_path_and_equals_the_reference(monkeypatch):
    """A model without an output bias (SASRec's default) trains BPR-max through the same fused
    path; loss and gradients equal the reference's."""
    calls = []
    apply = B.BPRMaxLinear.apply
    monkeypatch.setattr(L.BPRMaxLinear, "apply", lambda *a: calls.append(1) or apply(*a))
    counts = torch.ones(40).numpy()
    counts[0] = 0
    spec = L.LossSpec(loss="bpr-max", n_negatives=10, in_batch=True, elu_param=0.5)
    loss = L.make_loss(spec, 40, counts)
    hidden, weight, _, _, targets, _, _ = _case(3)
    torch.manual_seed(0)
    got = loss(hidden, targets, weight, None)
    assert calls == [1]
    torch.manual_seed(0)
    pos, neg, _, keep = loss.logits(hidden, targets, weight, None)
    want = L.bpr_max_reference(pos, neg, keep, loss.reg, 0.5)
    torch.testing.assert_close(got, want)
    for a, b in zip(
        torch.autograd.grad(got, [hidden, weight]), torch.autograd.grad(want, [hidden, weight])
    ):
        torch.testing.assert_close(a, b)


@pytest.fixture
def fresh_choice(tmp_path, monkeypatch):
    """No chunk override, an empty per-machine store, the choice re-read before and after."""
    from warmrec.training import machine

    monkeypatch.setattr(B, "CHUNK_ELEMENTS", None)
    monkeypatch.delenv(B.CHUNK_ENV, raising=False)
    monkeypatch.setenv("WARMREC_CACHE_DIR", str(tmp_path))
    B.chunk_bytes.cache_clear()
    yield machine
    B.chunk_bytes.cache_clear()


@pytest.mark.parametrize(
    "l2,want",
    [(1 << 20, 512 << 10), (2 << 20, 1 << 20), (1280 << 10, 512 << 10), (None, 512 << 10),
     (32 << 10, 64 << 10), (256 << 20, 4 << 20)],
)  # fmt: skip
def test_chunk_from_l2_is_half_of_it_as_a_power_of_two_within_bounds(l2, want):
    assert B.l2_chunk_bytes(l2) == want


def test_chunk_choice_sources_in_order(fresh_choice, monkeypatch):
    """The L2 rule from the machine's caches; a timed choice kept for this machine wins over
    it; the environment variable wins over both; a bad value is a ConfigError naming it."""
    machine = fresh_choice
    fake = machine.CpuInfo("Test CPU", 32 << 10, 2 << 20, 1 << 25, "sysfs")
    monkeypatch.setattr(machine, "cpu_info", lambda: fake)
    assert B.chunk_bytes() == (1 << 20, "l2")
    assert B.chunk_elements(4) == 1 << 18 and B.chunk_elements(8) == 1 << 17
    machine.remember(B.TUNED_NAME, 3 << 18, fake)
    B.chunk_bytes.cache_clear()
    assert B.chunk_bytes() == (3 << 18, "tuned")
    monkeypatch.setenv(B.CHUNK_ENV, "65536")
    B.chunk_bytes.cache_clear()
    assert B.chunk_bytes() == (65536, "env")
    monkeypatch.setenv(B.CHUNK_ENV, "lots")
    B.chunk_bytes.cache_clear()
    with pytest.raises(B.ConfigError, match="WARMREC_BPR_CHUNK_BYTES.*'lots'"):
        B.chunk_bytes()
    monkeypatch.setattr(B, "CHUNK_ELEMENTS", 60)
    assert B.chunk_elements(8) == 60  # the module override needs no resolution
    unknown = machine.CpuInfo("Test CPU", None, None, None, "none")
    monkeypatch.setattr(machine, "cpu_info", lambda: unknown)
    monkeypatch.delenv(B.CHUNK_ENV)
    B.chunk_bytes.cache_clear()
    assert B.chunk_bytes() == (B.l2_chunk_bytes(None), "default")


def test_tuning_times_the_candidates_and_keeps_the_fastest(fresh_choice, monkeypatch):
    """The tuner times every candidate, keeps the fastest for this machine and later runs use
    it; forced timings show the choice is the minimum, not the L2 rule."""
    small = {"n": 8, "m": 16, "d": 4, "rounds": 1}
    got = B.tune_chunk_bytes(candidates=(1 << 10, 1 << 12), **small)
    assert set(got["ms"]) == {"1024", "4096"} and got["value"] in (1 << 10, 1 << 12)
    assert B.chunk_bytes() == (got["value"], "tuned")
    monkeypatch.setattr(B, "time_chunk_sizes", lambda **k: {1 << 17: 0.003, 1 << 21: 0.002})
    got = B.tune_chunk_bytes()
    assert got["value"] == 1 << 21 and got["l2_rule"] == B.l2_chunk_bytes(
        fresh_choice.cpu_info().l2
    )
    assert B.chunk_bytes() == (1 << 21, "tuned")
    assert B.CHUNK_ELEMENTS is None  # the tuner restored the override


@pytest.mark.parametrize("seen", [False, True])
def test_every_chunk_size_gives_the_same_loss_and_gradients(monkeypatch, seen):
    """Rows are independent: one row per chunk, uneven chunks and one chunk give the same loss
    and gradients to float64 rounding (not bit for bit: a chunk's shape decides the SIMD tails of
    its elementwise passes and the kernel of its product, so the last bits may differ)."""
    hidden, weight, bias, value, targets, cands, history = _case(4, n=40, m=50, d=6, n_items=80)
    drop = L.equal_positions(cands, targets)
    params = [hidden, weight, bias] + ([value] if seen else [])
    mask = L.seen_mask(history, cands).double() if seen else None
    out = []
    for elements in (1, 150, 650, 1 << 16):  # rows per chunk: 1, 3, 13 (uneven), all 40
        monkeypatch.setattr(B, "CHUNK_ELEMENTS", elements)
        pos = (hidden * weight[targets]).sum(1) + bias[targets]
        loss = B.BPRMaxLinear.apply(
            hidden, weight[cands], bias[cands], pos, value if seen else None, mask, *drop, 1.3, 0.5
        )
        out.append((loss, torch.autograd.grad(loss, params)))
    for loss, grads in out[1:]:
        torch.testing.assert_close(loss, out[0][0], rtol=1e-14, atol=0)
        for a, b in zip(grads, out[0][1]):
            torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("seen", [False, True])
def test_bfloat16_products_stay_within_bfloat16_rounding_of_the_reference(
    monkeypatch, with_bias, seen
):
    """``mm_dtype=bfloat16`` rounds the three products' operands only: in float32, in chunks of
    5 rows, loss and gradients stay near the float64 reference (bfloat16 keeps 8
    significant bits: within 2 %), float32 products within 1e-5; the gradients are float32."""
    monkeypatch.setattr(B, "CHUNK_ELEMENTS", 5 * 150)
    g = torch.Generator().manual_seed(4)
    n, m, d, n_items = B.MIN_LOW_ROWS + 16, 150, 32, 400
    hidden = (torch.randn(n, d, generator=g, dtype=torch.float64) * 0.5).requires_grad_()
    weight = (torch.randn(n_items, d, generator=g, dtype=torch.float64) * 0.5).requires_grad_()
    bias = (torch.randn(n_items, generator=g, dtype=torch.float64) * 0.1).requires_grad_()
    value = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(1, n_items, (n,), generator=g)
    cands = torch.cat([targets, torch.randint(1, n_items, (m - n,), generator=g)])
    history = torch.randint(0, n_items, (n, 6), generator=g)
    drop = L.equal_positions(cands, targets)
    params = [hidden, weight] + ([bias] if with_bias else []) + ([value] if seen else [])
    mask = L.seen_mask(history, cands).double() if seen else None

    def loss(dtype, mm_dtype):
        p = [t.detach().to(dtype).requires_grad_() for t in params]
        h, w = p[0], p[1]
        b = p[2] if with_bias else None
        v = p[-1] if seen else None
        pos = (h * w[targets]).sum(1) + (b[targets] if with_bias else 0.0)
        if seen:
            pos = pos + v * L.seen_mask(history, targets[:, None])[:, 0]
        out = B.BPRMaxLinear.apply(
            h,
            w[cands],
            None if b is None else b[cands],
            pos,
            v,
            None if mask is None else mask.to(dtype),
            *drop,
            1.0,
            0.5,
            mm_dtype,
        )
        return out, torch.autograd.grad(out, p)

    want, want_grads = loss(torch.float64, None)
    errors = {}
    for mm_dtype in (torch.bfloat16, torch.float32):
        got, grads = loss(torch.float32, mm_dtype)
        assert all(a.dtype == torch.float32 for a in grads)
        errors[mm_dtype] = [abs(got.item() - want.item()) / abs(want.item())] + [
            ((a.double() - b).norm() / b.norm()).item() for a, b in zip(grads, want_grads)
        ]
    assert max(errors[torch.float32]) < 1e-5
    assert 1e-4 < max(errors[torch.bfloat16]) < 2e-2  # rounded, and only by bfloat16's 8 bits


def test_matmul_dtype_follows_the_setting_the_environment_and_the_cpu(monkeypatch):
    monkeypatch.delenv(B.MATMUL_ENV, raising=False)
    assert B.matmul_dtype("float32") == torch.float32
    assert B.matmul_dtype("bfloat16") == torch.bfloat16
    monkeypatch.setattr(B, "native_bf16", lambda: True)
    assert B.matmul_dtype("auto") == torch.bfloat16
    assert B.matmul_dtype("auto", "meta") == torch.float32  # not a CPU
    monkeypatch.setattr(B, "native_bf16", lambda: False)
    assert B.matmul_dtype("auto") == torch.float32
    monkeypatch.setenv(B.MATMUL_ENV, "bfloat16")
    assert B.matmul_dtype("auto") == torch.bfloat16
    assert B.matmul_dtype("float32") == torch.float32  # an explicit setting wins
    monkeypatch.setenv(B.MATMUL_ENV, "half")
    with pytest.raises(ConfigError, match=B.MATMUL_ENV):
        B.matmul_dtype("auto")
    with pytest.raises(ConfigError, match="matmul_precision"):
        B.matmul_dtype("float16")


def test_few_rows_keep_float32_products():
    """Below ``MIN_LOW_ROWS`` rows (the epoch's tail) bfloat16 is not used: same result."""
    g = torch.Generator().manual_seed(5)
    n, m, d = B.MIN_LOW_ROWS - 1, 90, 16
    hidden, cand_w = torch.randn(n, d, generator=g), torch.randn(m, d, generator=g)
    pos, rows = torch.randn(n, generator=g), torch.arange(n)
    args = (hidden, cand_w, None, pos, None, None, rows, rows, 1.0, 0.5)
    want = B.BPRMaxLinear.apply(*args, None)
    assert torch.equal(B.BPRMaxLinear.apply(*args, torch.bfloat16), want)
