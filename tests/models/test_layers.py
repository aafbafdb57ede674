"""Layers: tied embeddings, attention masks, causality, padding invariance, GRU, features."""

from __future__ import annotations

import polars as pl
import pytest
import torch

from warmrec.data.vocab import ItemVocab
from warmrec.errors import ConfigError, DataError
from warmrec.models import layers as Ly


def test_item_embedding_tied_and_untied():
    tied = Ly.ItemEmbedding(6, 4, tied=True)
    assert tied.output_weight is tied.embed.weight
    assert list(tied.state_dict()) == ["embed.weight"]  # no second copy to save
    assert tied.embed.weight[0].abs().sum() == 0
    h = torch.randn(2, 3, 4)
    assert torch.allclose(tied.logits(h), h @ tied.embed.weight.T)
    untied = Ly.ItemEmbedding(6, 4, tied=False, bias=True)
    assert untied.output_weight is not untied.embed.weight
    assert set(untied.state_dict()) == {"embed.weight", "out", "bias"}
    assert untied.logits(h).shape == (2, 3, 6)


def test_attention_mask_causal_and_padding():
    valid = torch.tensor([[False, True, True]])
    m = Ly.attention_mask(valid, causal=True)[0, 0]
    assert m.tolist() == [[True, False, False], [False, True, False], [False, True, True]]
    b = Ly.attention_mask(valid, causal=False)[0, 0]
    assert b.tolist() == [[True, True, True], [False, True, True], [False, True, True]]


def _stack(causal: bool) -> tuple[torch.nn.Module, Ly.ItemEmbedding]:
    torch.manual_seed(0)
    stack = Ly.TransformerStack(8, n_layers=2, n_heads=2, ffn_dim=16, dropout=0.0, causal=causal)
    return stack.eval(), Ly.ItemEmbedding(10, 8)


def test_causal_stack_ignores_the_future_and_zeroes_padding():
    stack, emb = _stack(causal=True)
    a = torch.tensor([[0, 3, 4, 5]])
    b = torch.tensor([[0, 3, 4, 9]])
    ha, hb = stack(emb(a), a > 0), stack(emb(b), b > 0)
    assert torch.allclose(ha[:, :3], hb[:, :3], atol=1e-6)
    assert not torch.allclose(ha[:, 3], hb[:, 3])
    assert ha[0, 0].abs().sum() == 0
    assert torch.isfinite(ha).all()


def test_bidirectional_stack_sees_the_future():
    stack, emb = _stack(causal=False)
    a = torch.tensor([[0, 3, 4, 5]])
    b = torch.tensor([[0, 3, 4, 9]])
    assert not torch.allclose(stack(emb(a), a > 0)[:, 1], stack(emb(b), b > 0)[:, 1])


def test_left_padding_does_not_change_real_positions():
    stack, emb = _stack(causal=True)
    pos = Ly.PositionalEmbedding(6, 8)
    short = torch.tensor([[3, 4, 5]])
    long = torch.tensor([[0, 0, 0, 3, 4, 5]])

    def run(x):
        e = emb(x)
        return stack(e + pos(e), x > 0)

    assert torch.allclose(run(short), run(long)[:, 3:], atol=1e-5)
    with pytest.raises(ConfigError, match="max_len"):
        pos(torch.zeros(1, 7, 8))


def test_right_align():
    x = torch.tensor([[0, 0, 1, 2], [3, 4, 5, 6], [0, 0, 0, 0]])
    out, lens = Ly.right_align(x)
    assert out.tolist() == [[1, 2, 0, 0], [3, 4, 5, 6], [0, 0, 0, 0]]
    assert lens.tolist() == [2, 4, 0]


def test_gru_block_padded_run_equals_steps():
    torch.manual_seed(0)
    gru = Ly.GRUBlock(4, 5, n_layers=2).eval()
    x = torch.randn(2, 3, 4)
    lens = torch.tensor([3, 2])
    out = gru(x, lens)
    for b in range(2):
        h = gru.init_state(1, "cpu")
        for t in range(int(lens[b])):
            o, h = gru.step(x[b : b + 1, t], h)
        assert torch.allclose(out[b], o[0], atol=1e-6)
    assert gru(x, torch.tensor([0, 1]))[0].abs().sum() == 0  # empty history: zero state


def test_gru_block_outputs_at_every_position_equal_steps():
    torch.manual_seed(0)
    gru = Ly.GRUBlock(4, 5, n_layers=2).eval()
    x = torch.randn(3, 4, 4)
    lens = torch.tensor([4, 2, 0])
    out = gru.outputs(x, lens)
    assert out.shape == (3, 4, 5)
    for b in range(3):
        h = gru.init_state(1, "cpu")
        for t in range(int(lens[b])):
            o, h = gru.step(x[b : b + 1, t], h)
            assert torch.allclose(out[b, t], o[0], atol=1e-6)
        assert out[b, int(lens[b]) :].abs().sum() == 0  # nothing after the row's length


@pytest.mark.parametrize("state_grad", [True, False])
def test_gru_step_equals_torch_gru_with_its_gradients(state_grad):
    """One-layer ``GRUBlock.step`` (through ``GRUStep``, hand-written backward) gives torch's
    GRU output, state and gradients in float64, the state's gradient only when it is wanted."""
    torch.manual_seed(0)
    block = Ly.GRUBlock(6, 5).double()
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    h = torch.randn(1, 4, 5, dtype=torch.float64, requires_grad=state_grad)
    g = torch.randn(4, 5, dtype=torch.float64)
    params = [x, *block.gru.parameters()] + ([h] if state_grad else [])
    out, state = block.step(x, h)
    want, want_state = block.gru(x[:, None], h)
    torch.testing.assert_close(out, want[:, 0])
    torch.testing.assert_close(state, want_state)
    got = torch.autograd.grad((out * g).sum(), params)
    for a, b in zip(got, torch.autograd.grad((want[:, 0] * g).sum(), params)):
        torch.testing.assert_close(a, b)


def test_gru_step_with_bfloat16_products_stays_near_float32():
    torch.manual_seed(1)
    block = Ly.GRUBlock(32, 16)
    x, h = torch.randn(64, 32, requires_grad=True), torch.randn(1, 64, 16)
    want, _ = block.step(x, h)
    (gx,) = torch.autograd.grad(want.sum(), [x])
    block.matmul_dtype = torch.bfloat16
    got, _ = block.step(x, h)
    (bx,) = torch.autograd.grad(got.sum(), [x])
    assert got.dtype == bx.dtype == torch.float32
    assert 1e-5 < (got - want).abs().max() < 2e-2
    assert (bx - gx).norm() < 2e-2 * gx.norm()


def test_feature_embedding_sum_and_concat():
    torch.manual_seed(0)
    fe = Ly.FeatureEmbedding([3, 4], 5, combine="sum")
    codes = torch.tensor([[1, 2], [0, 0]])
    out = fe(codes)
    assert out.shape == (2, 5) and fe.out_dim == 5
    assert torch.allclose(out[0], fe.tables[0].weight[1] + fe.tables[1].weight[2])
    assert out[1].abs().sum() == 0  # missing values embed to zero
    cat = Ly.FeatureEmbedding([3, 4], 5, combine="concat")
    assert cat(codes).shape == (2, 10) and cat.out_dim == 10
    with pytest.raises(ConfigError, match="feature columns"):
        fe(torch.zeros(2, 3, dtype=torch.long))


def test_feature_table_from_frame():
    vocab = ItemVocab.from_ids([10, 20, 30])
    feats = pl.DataFrame(
        {"item_id": [30, 10, 99], "genre": ["b", "a", "c"], "year": [1990, None, 2000]}
    )
    table, cards = Ly.feature_table(feats, vocab, ["genre", "year"])
    # genre levels a, b, c -> 1, 2, 3; year levels 1990, 2000 -> 1, 2; item 20 absent -> 0
    assert table.tolist() == [[0, 0], [1, 0], [0, 0], [2, 1]]
    assert cards == [4, 3]
    with pytest.raises(DataError, match="lacks columns"):
        Ly.feature_table(feats, vocab, ["color"])


def test_post_ln_stack_is_causal_and_has_no_final_norm():
    torch.manual_seed(0)
    stack = Ly.TransformerStack(8, 2, 2, 16, dropout=0.0, norm_first=False).eval()
    assert not any(k.startswith("ln.") for k in stack.state_dict())
    emb = Ly.ItemEmbedding(10, 8)
    a, b = torch.tensor([[0, 3, 4, 5]]), torch.tensor([[0, 3, 4, 9]])
    ha, hb = stack(emb(a), a > 0), stack(emb(b), b > 0)
    assert torch.allclose(ha[:, :3], hb[:, :3], atol=1e-6)
    assert not torch.allclose(ha[:, 3], hb[:, 3])
    # each block ends with a LayerNorm: real positions have zero mean, unit variance
    assert torch.allclose(ha[0, 1:].mean(-1), torch.zeros(3), atol=1e-5)


def test_seen_item_bias_histories_and_in_place_offset():
    from warmrec.models.layers import SeenItemBias

    items = torch.tensor([[0, 4, 2, 4]])
    h = SeenItemBias.prefix_histories(items)
    assert h[0].tolist() == [[0, 0, 0, 0], [0, 4, 0, 0], [0, 4, 2, 0], [0, 4, 2, 4]]
    bias = SeenItemBias()
    with torch.no_grad():
        bias.value.fill_(-3.0)
    logits = torch.zeros(1, 6)
    bias.add_(logits, items)  # item 4 twice: offset once; padding untouched
    assert logits[0].tolist() == [0.0, 0.0, -3.0, 0.0, -3.0, 0.0]


def test_seen_item_bias_recent_histories_reach_before_the_window():
    """The last ``seen_len`` items up to each kept position, most recent first, reaching into
    the items before the window; left-padded or right-padded (first item first) windows."""
    from warmrec.models.layers import SeenItemBias

    before = torch.tensor([[0, 1, 2], [0, 0, 0]])
    left = torch.tensor([[3, 4, 5], [0, 7, 8]])  # row 1: a window at its sequence's start
    keep = torch.tensor([[True, False, True], [False, True, True]])
    h = SeenItemBias.recent_histories(left, keep, 4, before)
    assert h.tolist() == [[3, 2, 1, 0], [5, 4, 3, 2], [7, 0, 0, 0], [8, 7, 0, 0]]
    right = torch.tensor([[3, 4, 5], [7, 8, 0]])
    keep = torch.tensor([[True, True, False], [True, True, False]])
    h = SeenItemBias.recent_histories(right, keep, 2, before)
    assert h.tolist() == [[3, 2], [4, 3], [7, 0], [8, 7]]
    # without items before it and seen_len >= L: the window prefix, as prefix_histories gives
    keep = torch.ones(2, 3, dtype=torch.bool)
    recent = SeenItemBias.recent_histories(left, keep, 10)
    prefix = SeenItemBias.prefix_histories(left)[keep]
    assert [set(r) - {0} for r in recent.tolist()] == [set(r) - {0} for r in prefix.tolist()]


def test_offset_items_without_autograd_matches_the_differentiable_path():
    """Evaluation and serving take a gather/scatter over the history columns; training and
    meta-learning a mask: the same numbers, each item once, padding untouched."""
    from warmrec.models.layers import offset_items_

    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(4, 9, generator=gen)
    items = torch.tensor([[0, 0, 3, 3], [1, 2, 3, 4], [0, 0, 0, 0], [8, 8, 8, 1]])
    fast = scores.clone()
    with torch.no_grad():
        offset_items_(fast, items, torch.tensor(-1.5))
    value = torch.tensor(-1.5, requires_grad=True)
    slow = scores.clone()
    offset_items_(slow, items, value)
    torch.testing.assert_close(fast, slow.detach())
    expect = scores.clone()
    for b, row in enumerate(items.tolist()):
        for i in set(row) - {0}:
            expect[b, i] -= 1.5
    torch.testing.assert_close(fast, expect)


@pytest.mark.parametrize("p", [0.5, 0.2, 0.9])
def test_fast_dropout_keeps_the_expectation_and_its_rate(p):
    torch.manual_seed(0)
    x = torch.ones(200_000)
    y = Ly.fast_dropout(x, p)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - p) < 0.01  # p in steps of 1/256
    assert abs(y.mean().item() - 1.0) < 0.02
    assert torch.equal(Ly.fast_dropout(x, p, training=False), x)


def test_fast_dropout_is_seeded_and_differentiable():
    x = torch.randn(4, 7, 3, requires_grad=True)
    torch.manual_seed(1)
    a = Ly.fast_dropout(x, 0.5)
    torch.manual_seed(1)
    b = Ly.fast_dropout(x, 0.5)
    assert torch.equal(a, b)
    a.sum().backward()
    assert torch.equal(x.grad, (a.detach() != 0).float() * 2.0)
    drop = Ly.FastDropout(0.3)
    drop.eval()
    assert drop(x) is x


def test_attention_with_dropout_equals_sdpa_without_it():
    """The CPU attention path written out (used when attention dropout is on) computes what
    SDPA does; with dropout each kept weight is scaled by 1 / (1 - p)."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 5, 4) for _ in range(3))
    mask = Ly.attention_mask(torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]]) > 0, True)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.allclose(Ly.attention(q, k, v, mask, 1e-9), ref, atol=1e-6)
    out = Ly.attention(q, k, v, mask, 0.5)
    assert out.shape == ref.shape and torch.isfinite(out).all()
