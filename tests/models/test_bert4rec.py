"""BERT4Rec: Cloze masking (rate, at least one per window, last-item-only windows), windows
cover every item, the [MASK] row is never a candidate, learning a known next item, save/load."""

from __future__ import annotations

import numpy as np
import torch

from tests.conftest import assert_learns_cycle, assert_roundtrip, ranged_sequences, tiny_net
from warmrec import get_model
from warmrec.data.sequences import pad_windows
from warmrec.models.bert4rec import BERT4Rec, MaskedWindowData

FAST = tiny_net("bert4rec", d=32, ffn_dim=64, dropout_all=0.0, mask_prob=0.3, mask_last_prob=0.2)


def test_windows_cover_every_item_of_each_sequence():
    seqs = ranged_sequences([1, 2, 5, 9, 4])
    data = MaskedWindowData(seqs, max_len=4, mask_token=99, mask_prob=0.2)
    w = pad_windows(data.items, data.starts, data.ends, 4)
    covered = set(w[w > 0].tolist())
    assert covered == set(range(2, 22))  # all but the one-item sequence (item 1)
    # the 9-item sequence (items 9..17) -> windows [14..17], [10..13], [9..12]
    nine = [r for r in w.tolist() if r[-1] in (12, 13, 17)]
    assert sorted(nine) == [[9, 10, 11, 12], [10, 11, 12, 13], [14, 15, 16, 17]]


def test_mask_rate_and_invariants():
    rng = np.random.default_rng(0)
    data = MaskedWindowData(ranged_sequences([3]), max_len=20, mask_token=1000, mask_prob=0.2)
    windows = rng.integers(1, 1000, size=(4000, 20))
    windows[:, :6] = 0  # padding
    windows[:50, :19] = 0  # one-item windows
    inputs, targets = data.mask(windows, rng)
    masked = inputs == 1000
    assert np.array_equal(masked, targets > 0)
    assert np.array_equal(targets[masked], windows[masked])
    assert np.array_equal(inputs[~masked], windows[~masked])
    assert not masked[windows == 0].any()  # padding is never masked
    assert masked.any(axis=1).all()  # at least one per window
    rate = masked[50:].sum() / (windows[50:] > 0).sum()
    assert 0.19 < rate < 0.215  # 0.2 plus the forced masks of windows that drew none
    last = MaskedWindowData(
        ranged_sequences([3]), max_len=20, mask_token=1000, mask_prob=0.2, mask_last_prob=1.0
    )
    inputs, targets = last.mask(windows, rng)
    assert (inputs[:, -1] == 1000).all() and (inputs[:, :-1] != 1000).all()
    assert np.array_equal(targets[:, -1], windows[:, -1])


def test_mask_token_is_never_a_candidate(cyclic_split):
    train, valid = cyclic_split
    model = get_model("bert4rec", FAST).fit(train, epochs=1, batch_size=64)
    n = model.n_items
    net = model.net
    assert net.item.embed.num_embeddings == n + 1 and net.mask_token == n
    assert net.output_weight.shape[0] == n and net.output_bias.shape[0] == n
    batch = valid.batch(np.arange(10), model.history_len)
    before = model.score(batch)
    assert before.shape == (10, n)
    with torch.no_grad():  # a huge bias on the [MASK] row changes nothing that is scored
        net.item.bias[n] = 1e9
    assert torch.equal(model.score(batch), before)
    # inference puts [MASK] after the last max_len - 1 history items
    items = batch.items[:, -(model.config.max_len - 1) :]
    with torch.no_grad():
        h = net(torch.cat([items, torch.full((10, 1), n)], 1))[:, -1]
        torch.testing.assert_close(before, net.scores(h))


def test_bert4rec_learns_the_cycle(cyclic_split):
    train, valid = cyclic_split
    model = get_model("bert4rec", FAST).fit(train, valid, epochs=8, lr=1e-2, batch_size=32, seed=0)
    assert isinstance(model, BERT4Rec)
    hist = model.train_result.history
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert_learns_cycle(model, valid)


def test_bert4rec_save_load_roundtrip(cyclic_split, tmp_path):
    train, valid = cyclic_split
    model = get_model("bert4rec", FAST).fit(train, epochs=1, batch_size=64)
    assert_roundtrip(model, valid, tmp_path / "m")
