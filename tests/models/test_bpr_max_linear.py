"""The chunked BPR-max fused with its scoring product against the autograd reference."""

from __future__ import annotations

import pytest
import torch

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
