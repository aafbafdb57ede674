"""Losses against values computed by hand on tiny tensors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from warmrec.config import build_config
from warmrec.errors import ConfigError
from warmrec.models import losses as L


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_full_ce_excludes_padding_column():
    hidden = torch.tensor([[1.0, 0.0]])
    weight = torch.tensor([[5.0, 5.0], [1.0, 0.0], [0.0, 1.0]])  # row 0 = padding, high score
    loss = L.FullCrossEntropy()(hidden, torch.tensor([1]), weight)
    # logits of items 1, 2: 1 and 0 -> -log(e / (e + 1))
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-6)
    bias = torch.tensor([0.0, 0.0, 1.0])
    loss_b = L.FullCrossEntropy()(hidden, torch.tensor([1]), weight, bias)
    assert loss_b.item() == pytest.approx(math.log(2.0), rel=1e-6)  # both logits 1


def test_sampled_softmax_from_logits_and_mask():
    pos = torch.tensor([2.0, 0.0])
    neg = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    got = L.sampled_softmax_from_logits(pos, neg)
    row0 = math.log(1 + math.exp(-1) + math.exp(-2))
    row1 = math.log(3.0)
    assert got.item() == pytest.approx((row0 + row1) / 2, rel=1e-6)
    mask = torch.tensor([[True, False], [False, False]])
    got = L.sampled_softmax_from_logits(pos, neg, mask)
    assert got.item() == pytest.approx((math.log(1 + math.exp(-1)) + 0.0) / 2, rel=1e-6)


def test_bce_and_gbce_from_logits():
    pos = torch.tensor([0.0])
    neg = torch.tensor([[0.0, 2.0]])
    want = -(math.log(0.5) + math.log(0.5) + math.log(sig(-2.0)))
    assert L.bce_from_logits(pos, neg).item() == pytest.approx(want, rel=1e-6)
    want_b = -(0.25 * math.log(0.5) + math.log(0.5) + math.log(sig(-2.0)))
    assert L.bce_from_logits(pos, neg, beta=0.25).item() == pytest.approx(want_b, rel=1e-6)
    mask = torch.tensor([[True, False]])
    assert L.bce_from_logits(pos, neg, mask).item() == pytest.approx(2 * math.log(2), rel=1e-6)


def test_gbce_beta_formula():
    # 1 negative out of 10 non-targets: alpha = 0.1
    assert L.gbce_beta(1, 11, 0.5) == pytest.approx(0.1 * (0.5 * (1 - 10) + 10))
    assert L.gbce_beta(1, 11, 0.0) == pytest.approx(1.0)  # t = 0: plain BCE
    assert L.gbce_beta(1, 11, 1.0) == pytest.approx(0.1)  # t = 1: beta = alpha


def test_bpr_max_by_hand():
    pos = torch.tensor([1.0])
    neg = torch.tensor([[0.0, 1.0]])
    s0, s1 = 1 / (1 + math.e), math.e / (1 + math.e)
    ranking = -math.log(s0 * sig(1.0) + s1 * sig(0.0))
    want = ranking + 0.5 * (s0 * 0.0 + s1 * 1.0)
    got = L.bpr_max_from_logits(pos, neg, reg=0.5)
    assert got.item() == pytest.approx(want, rel=1e-6)
    # a masked negative drops out of the softmax weights
    got_m = L.bpr_max_from_logits(pos, neg, torch.tensor([[True, False]]), reg=0.5)
    assert got_m.item() == pytest.approx(-math.log(sig(1.0)), rel=1e-6)


def test_bpr_max_elu():
    pos = torch.tensor([1.0])
    neg = torch.tensor([[-1.0]])
    e = 0.5 * (math.exp(-1.0) - 1.0)  # elu(-1, 0.5)
    want = -math.log(sig(1.0 - e)) + 1.0 * e * e
    assert L.bpr_max_from_logits(pos, neg, elu_param=0.5).item() == pytest.approx(want, rel=1e-6)


def test_sampled_softmax_logq_by_hand():
    counts = np.array([0.0, 3.0, 1.0, 0.0])
    sampler = L.NegativeSampler(4, "pop", counts, alpha=1.0)  # p = [0, .75, .25, 0]
    loss = L.SampledSoftmax(sampler, 2, logq=1.0)
    loss.negatives = lambda targets: torch.tensor([1, 2])  # fixed draw
    hidden = torch.tensor([[1.0, 0.0]])
    weight = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.5, 0.0], [0.0, 0.0]])
    got = loss(hidden, torch.tensor([2]), weight)
    # target 2 (logit .5), negatives 1 (logit 1) and 2 (= target: accidental hit, removed)
    pos = 0.5 - math.log(2 * 0.25)
    neg1 = 1.0 - math.log(2 * 0.75)
    want = math.log(math.exp(pos) + math.exp(neg1)) - pos
    assert got.item() == pytest.approx(want, rel=1e-6)
    loss0 = L.SampledSoftmax(sampler, 2, logq=0.0)
    loss0.negatives = lambda targets: torch.tensor([1, 2])
    want0 = math.log(math.exp(0.5) + math.exp(1.0)) - 0.5
    assert loss0(hidden, torch.tensor([2]), weight).item() == pytest.approx(want0, rel=1e-6)


def test_in_batch_candidates_and_expected_counts():
    counts = np.array([0.0, 1.0, 1.0, 2.0])
    sampler = L.NegativeSampler(4, "uniform")
    loss = L.SampledSoftmax(sampler, 3, in_batch=True, item_counts=counts, logq=0.0)
    torch.manual_seed(0)
    targets = torch.tensor([1, 3])
    neg = loss.negatives(targets)
    assert neg[:2].tolist() == [1, 3] and len(neg) == 5
    e = loss.expected_count(torch.tensor([1, 3]), batch_size=2)
    assert e.tolist() == pytest.approx([3 / 3 + 2 * 0.25, 3 / 3 + 2 * 0.5])


def test_in_batch_only_bpr_max_by_hand():
    sampler = L.NegativeSampler(4, "pop", np.array([0.0, 1, 1, 1]))
    loss = L.BPRMax(sampler, 0, reg=0.0, in_batch=True)
    hidden = torch.tensor([[1.0], [2.0]])
    weight = torch.tensor([[0.0], [1.0], [0.5], [0.0]])
    # row 0: target 1 (score 1) against item 2 (0.5); row 1: target 2 (1.0) against item 1 (2.0)
    got = loss(hidden, torch.tensor([1, 2]), weight)
    want = (-math.log(sig(0.5)) - math.log(sig(-1.0))) / 2
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_sampler_never_draws_padding_or_unseen():
    torch.manual_seed(0)
    uni = L.NegativeSampler(5).sample((2000,))
    assert uni.min() >= 1 and uni.max() <= 4
    pop = L.NegativeSampler(5, "pop", np.array([0, 8, 0, 2, 0]), alpha=1.0).sample((4000,))
    assert set(pop.unique().tolist()) == {1, 3}
    assert (pop == 1).float().mean().item() == pytest.approx(0.8, abs=0.03)
    a = L.NegativeSampler(5, "pop", np.array([0, 8, 0, 2, 0]), alpha=0.5)
    assert a.probs[1].item() == pytest.approx(math.sqrt(8) / (math.sqrt(8) + math.sqrt(2)))


@pytest.mark.parametrize("name", L.LOSSES)
def test_make_loss_every_name_gives_finite_gradients(name):
    torch.manual_seed(0)
    spec = L.LossSpec(loss=name, n_negatives=4, in_batch=name == "bpr-max")
    counts = np.array([0.0, 2, 3, 4, 5, 6])
    loss_fn = L.make_loss(spec, 6, counts)
    hidden = torch.randn(3, 4, requires_grad=True)
    weight = torch.randn(6, 4, requires_grad=True)
    loss = loss_fn(hidden, torch.tensor([1, 2, 5]), weight)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(hidden.grad).all()
    assert weight.grad[0].abs().sum() == 0  # padding never scored


def test_make_loss_rejects_unknown_names_and_settings():
    # bad names are refused when the spec is built, in one line naming the key
    with pytest.raises(ConfigError, match=r"LossSpec.loss: expected one of 'ce'.*found 'hinge'"):
        build_config(L.LossSpec, loss="hinge")
    with pytest.raises(ConfigError, match="LossSpec.negative_sampling: expected one of"):
        build_config(L.LossSpec, loss="bce", negative_sampling="zipf")
    with pytest.raises(ConfigError, match="item counts"):
        L.make_loss(L.LossSpec(loss="sampled_ce", negative_sampling="pop"), 5)


@pytest.mark.parametrize("loss", ["bce", "gbce"])
def test_in_batch_with_a_bce_loss_is_refused_naming_the_field(loss):
    """``in_batch = true`` with ``loss = "bce"`` (or gBCE) built a BCE over the sampled
    negatives alone: the setting was silently ignored."""
    from warmrec import get_model

    with pytest.raises(
        ConfigError, match=rf"SASRecConfig.in_batch: expected false with loss '{loss}'"
    ):
        get_model("sasrec", {"loss": loss, "in_batch": True})
    with pytest.raises(ConfigError, match=r"LossSpec.in_batch: expected false"):
        L.LossSpec(loss=loss, in_batch=True)
    for fine in ("sampled_ce", "bpr-max", "auto", "ce"):  # used, or every item scored anyway
        assert L.LossSpec(loss=fine, in_batch=True).in_batch
    assert not get_model("sasrec", {"loss": loss}).config.in_batch


def test_seen_mask_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    history = torch.randint(0, 12, (40, 7), generator=g)  # 0 = padding
    shared = torch.randint(1, 12, (9,), generator=g)
    per_row = torch.randint(1, 12, (40, 5), generator=g)
    for items in (shared, per_row):
        rows = items.expand(40, -1) if items.dim() == 1 else items
        want = torch.tensor(
            [[float(int(x) in set(h.tolist())) for x in r] for h, r in zip(history, rows)]
        )
        assert torch.equal(L.seen_mask(history, items), want)


def test_full_ce_with_seen_offset_by_hand():
    hidden = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    weight = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])  # items 1-3 tie
    history = torch.tensor([[0, 2, 2], [0, 0, 0]])  # row 0 saw item 2 (twice); row 1 nothing
    value = torch.tensor(-1.0, requires_grad=True)
    loss = L.FullCrossEntropy()(hidden, torch.tensor([1, 1]), weight, seen=(history, value))
    # row 0: logits 1, 0, 1 -> -log(e / (2e + 1)); row 1: 1, 1, 1 -> log 3
    want = (math.log((2 * math.e + 1) / math.e) + math.log(3.0)) / 2
    assert loss.item() == pytest.approx(want, rel=1e-6)
    loss.backward()
    # d/dvalue of row 0's loss = softmax weight of item 2 = 1 / (2e + 1), counted once
    assert value.grad.item() == pytest.approx(0.5 / (2 * math.e + 1), rel=1e-5)


def test_sampled_losses_offset_seen_targets_and_negatives():
    torch.manual_seed(0)
    hidden = torch.randn(4, 3)
    weight = torch.randn(10, 3)
    targets = torch.tensor([1, 2, 3, 4])
    history = torch.tensor([[1, 5], [0, 0], [3, 0], [0, 6]])
    loss = L.make_loss(L.LossSpec(loss="bce", n_negatives=3, shared_negatives=False), 10)
    value = torch.tensor(2.0)
    torch.manual_seed(1)
    pos, neg, neg_items, _ = loss.logits(hidden, targets, weight, None, (history, value))
    torch.manual_seed(1)
    pos0, neg0, same_items, _ = loss.logits(hidden, targets, weight, None)
    assert torch.equal(neg_items, same_items)
    assert torch.allclose(pos - pos0, torch.tensor([2.0, 0.0, 2.0, 0.0]))
    hit = torch.stack([torch.isin(neg_items[i], history[i]) for i in range(4)]).float()
    assert torch.allclose(neg - neg0, 2.0 * hit)


@pytest.mark.parametrize("elu", [0.0, 0.5])
@pytest.mark.parametrize("reg", [0.0, 1.0])
@pytest.mark.parametrize("masked", [False, True])
def test_bpr_max_fused_backward_equals_autograd(elu, reg, masked):
    g = torch.Generator().manual_seed(0)
    pos = torch.randn(6, generator=g, dtype=torch.float64).requires_grad_()
    neg = (3 * torch.randn(6, 9, generator=g, dtype=torch.float64)).requires_grad_()
    mask = None
    if masked:
        mask = torch.rand(6, 9, generator=g) > 0.3
        mask[2] = False  # a row without negatives contributes 0
    fused = L.bpr_max_from_logits(pos, neg, mask, reg, elu)
    ref = L.bpr_max_reference(pos, neg, mask, reg, elu)
    torch.testing.assert_close(fused, ref)
    for a, b in zip(torch.autograd.grad(fused, [pos, neg]), torch.autograd.grad(ref, [pos, neg])):
        torch.testing.assert_close(a, b)


def test_popularity_draws_follow_the_distribution():
    counts = np.array([0.0, 10.0, 0.0, 30.0, 60.0])  # item 2 never drawn, 0 is padding
    sampler = L.NegativeSampler(5, "pop", counts, alpha=1.0)
    torch.manual_seed(0)
    draws = sampler.sample((200_000,))
    freq = np.bincount(draws.numpy(), minlength=5) / len(draws)
    assert freq[0] == 0 and freq[2] == 0
    np.testing.assert_allclose(freq[[1, 3, 4]], [0.1, 0.3, 0.6], atol=0.005)


def test_alias_table_reproduces_the_distribution_exactly():
    p = np.array([0.05, 0.4, 0.1, 0.25, 0.2])
    keep, alias = L.alias_table(p)
    n = len(p)
    got = keep / n
    np.add.at(got, alias, (1 - keep) / n)
    np.testing.assert_allclose(got, p, atol=1e-12)


def test_equal_positions_by_hand():
    cand = torch.tensor([5, 3, 5, 7])
    rows, cols = L.equal_positions(cand, torch.tensor([5, 2, 7, 3]))
    got = sorted(zip(rows.tolist(), cols.tolist()))
    assert got == [(0, 0), (0, 2), (2, 3), (3, 1)]
    rows, cols = L.equal_positions(cand, torch.tensor([1, 9]))
    assert len(rows) == len(cols) == 0


@pytest.mark.parametrize("elu", [0.0, 0.5])
def test_bpr_max_module_drops_accidental_hits_as_the_dense_mask_does(elu):
    """The module's sparse drop positions give the reference (dense mask, autograd) loss and
    gradients, with in-batch candidates (every row hits its own target) and repeated targets."""
    counts = np.ones(30)
    counts[0] = 0
    loss = L.make_loss(
        L.LossSpec(
            loss="bpr-max",
            n_negatives=40,
            negative_sampling="pop",
            pop_alpha=0.5,
            in_batch=True,
            elu_param=elu,
        ),
        30,
        counts,
    )
    g = torch.Generator().manual_seed(3)
    hidden = torch.randn(8, 4, generator=g, dtype=torch.float64).requires_grad_()
    weight = torch.randn(30, 4, generator=g, dtype=torch.float64).requires_grad_()
    bias = torch.randn(30, generator=g, dtype=torch.float64).requires_grad_()
    targets = torch.tensor([3, 3, 7, 1, 29, 7, 12, 3])
    torch.manual_seed(0)
    got = loss(hidden, targets, weight, bias)
    torch.manual_seed(0)
    pos, neg, _, mask = loss.logits(hidden, targets, weight, bias)
    want = L.bpr_max_reference(pos, neg, mask, loss.reg, elu)
    torch.testing.assert_close(got, want)
    for a, b in zip(
        torch.autograd.grad(got, [hidden, weight, bias]),
        torch.autograd.grad(want, [hidden, weight, bias]),
    ):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("seen", [False, True])
@pytest.mark.parametrize("chunk_rows", [3, 1000])
def test_fused_full_ce_equals_autograd_reference(bias, seen, chunk_rows):
    """The chunked, fused-gradient full softmax gives the reference's loss and gradients (bias,
    seen offset with repeated history items, one or several row chunks)."""
    torch.manual_seed(0)
    n, m, d = 40, 23, 6
    h = torch.randn(n, d, requires_grad=True)
    w = torch.randn(m, d, requires_grad=True)
    b = torch.randn(m, requires_grad=True) if bias else None
    v = torch.tensor(-0.7, requires_grad=True)
    targets = torch.randint(1, m, (n,))
    hist = torch.randint(0, m, (n, 5))
    hist[:, :2] = hist[:, 2:4]  # repeats count once
    s = (hist, v) if seen else None
    params = [x for x in (h, w, b, v) if x is not None]
    fused = L.FullCrossEntropy(chunk_elements=chunk_rows * m)(h, targets, w, b, seen=s)
    g_fused = torch.autograd.grad(2.0 * fused, params, allow_unused=True)
    ref = L.full_ce_reference(h, targets, w, b, seen=s)
    g_ref = torch.autograd.grad(2.0 * ref, params, allow_unused=True)
    assert torch.allclose(fused, ref, atol=1e-5)
    for a, r in zip(g_fused, g_ref, strict=True):
        if r is None:
            assert a is None or not a.abs().any()
        else:
            assert torch.allclose(a, r, atol=1e-5)


def test_fused_full_ce_never_materialises_all_logits(monkeypatch):
    """With a small chunk the logits come in row chunks, never ``[N, n_items]`` at once."""
    shapes = []
    real = torch.log_softmax

    def spy(x, *a, **k):
        shapes.append(tuple(x.shape))
        return real(x, *a, **k)

    monkeypatch.setattr(torch, "log_softmax", spy)
    h = torch.randn(100, 4, requires_grad=True)
    w = torch.randn(50, 4, requires_grad=True)
    L.FullCrossEntropy(chunk_elements=32 * 50)(h, torch.randint(1, 50, (100,)), w).backward()
    assert shapes and max(s[0] for s in shapes) == 32 and len(shapes) == 4


def test_auto_loss_resolves_by_catalogue_size_and_logs_it(caplog):
    spec = L.LossSpec(loss="auto", auto_full_max_items=100, n_negatives=64)
    assert L.resolve_loss(spec, 100).loss == "ce"
    big = L.resolve_loss(spec, 101)
    assert big.loss == "sampled_ce" and big.n_negatives == 64
    assert L.resolve_loss(L.LossSpec(loss="bce"), 10**6).loss == "bce"
    with caplog.at_level("INFO", logger="warmrec.models.losses"):
        small_loss = L.make_loss(spec, 50)
        big_loss = L.make_loss(spec, 500)
    assert isinstance(small_loss, L.FullCrossEntropy) and small_loss.name == "ce"
    assert isinstance(big_loss, L.SampledSoftmax) and big_loss.name == "sampled_ce"
    assert big_loss.logq == 1.0 and big_loss.n_negatives == 64
    assert (
        "loss 'auto' on 500 items" in caplog.text and "sampled_ce with 64 negatives" in caplog.text
    )


def test_auto_is_the_default_and_takes_1024_negatives_when_sampled():
    from warmrec.models.sasrec import SASRecConfig

    cfg = build_config(SASRecConfig, {"auto_full_max_items": 10})
    spec = L.loss_spec_from_config(cfg)
    assert spec.loss == "auto" and spec.n_negatives == L.AUTO_NEGATIVES == 1024
    assert L.make_loss(spec, 11).n_negatives == 1024
    assert L.make_loss(spec, 10).name == "ce"
