"""NARM: vectorised all-positions training equals the per-prefix model; learns a known next
item; save/load gives identical scores."""

from __future__ import annotations

import torch

from tests.conftest import assert_learns_cycle, assert_roundtrip, tiny_net
from warmrec import evaluate, get_model
from warmrec.models.layers import right_shift
from warmrec.models.narm import NARM

FAST = tiny_net("narm", dropout_all=0.0)


def test_right_shift_moves_items_and_targets_together():
    items = torch.tensor([[0, 0, 3, 4], [1, 2, 3, 4], [0, 0, 0, 0]])
    targets = torch.tensor([[0, 0, 4, 5], [0, 3, 4, 5], [0, 0, 0, 0]])
    x, y, lens = right_shift(items, targets)
    assert x.tolist() == [[3, 4, 0, 0], [1, 2, 3, 4], [0, 0, 0, 0]]
    assert y.tolist() == [[4, 5, 0, 0], [0, 3, 4, 5], [0, 0, 0, 0]]
    assert lens.tolist() == [2, 4, 0]


def test_all_positions_equal_the_prefix_model(cyclic_split):
    """Position t of one pass over a window == the model run on the prefix ending at t."""
    train, _ = cyclic_split
    torch.manual_seed(0)
    model = get_model("narm", dict(FAST, dropout_embed=0.3, dropout_context=0.3))
    model._bind(train)
    model.init_net()
    net = model.net.eval()
    seq = torch.tensor([[0, 0, 5, 9, 2, 7, 7, 1]])
    x, lens = right_shift(seq)
    with torch.no_grad():
        every = net(x, lens, last_only=False)[0]
        for t in range(int(lens[0])):
            px, plen = right_shift(seq[:, : 3 + t])
            one = net(px, plen, last_only=True)[0]
            torch.testing.assert_close(every[t], one, rtol=1e-5, atol=1e-6)
    # the scores of a batch are those of its last positions
    s = model.score(model.encode_histories([[5, 9, 2, 7, 7, 1]]))
    with torch.no_grad():
        want = net.item.logits(every[int(lens[0]) - 1])
    ids = model.vocab.encode([5, 9, 2, 7, 7, 1])
    assert ids.tolist() == [5, 9, 2, 7, 7, 1]  # vocab of 1..20 maps ids to themselves
    torch.testing.assert_close(s[0], want)


def test_narm_learns_the_cycle(cyclic_split):
    train, valid = cyclic_split
    model = get_model("narm", FAST).fit(train, valid, epochs=4, lr=1e-2, batch_size=32, seed=0)
    assert isinstance(model, NARM)
    hist = model.train_result.history
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert_learns_cycle(model, valid)


def test_narm_sampled_loss_trains(cyclic_split):
    train, valid = cyclic_split
    model = get_model("narm", dict(FAST, loss="sampled_ce", n_negatives=8))
    model.fit(train, valid, epochs=4, lr=1e-2, batch_size=32)
    assert evaluate(model, valid, ["hr@10"])["hr@10"] >= 0.9


def test_narm_save_load_roundtrip(cyclic_split, tmp_path):
    train, valid = cyclic_split
    model = get_model("narm", FAST).fit(train, epochs=1, batch_size=64)
    assert_roundtrip(model, valid, tmp_path / "m")
