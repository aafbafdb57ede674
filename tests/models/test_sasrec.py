"""SASRec: windowed training data, learning a known next item, every loss, save/load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import assert_learns_cycle, assert_roundtrip, ranged_sequences, tiny_net
from warmrec import evaluate, get_model
from warmrec.data.dataset import Batch
from warmrec.models.neural import WindowData, window_layout
from warmrec.models.sasrec import SASRec

FAST = tiny_net("sasrec", ffn_dim=32, dropout_all=0.0)


@pytest.mark.parametrize("stride", [None, 2, 3])
def test_windows_make_every_position_a_target_once(stride):
    seqs = ranged_sequences([1, 2, 5, 9, 4])
    wd = WindowData(seqs, max_len=4, stride=stride)
    inputs, targets = wd.window(np.arange(len(wd)))
    # pairs: every item except each sequence's first is a target exactly once
    firsts = set(seqs.offsets[:-1] + 1)
    want = sorted(i for i in seqs.items.tolist() if i not in firsts)
    got = sorted(targets[targets > 0].tolist())
    assert got == want and wd.n_targets_total == len(want)
    # each target follows its input within the same sequence
    ok = targets > 0
    assert (targets[ok] == inputs[ok] + 1).all()


def test_window_layout_for_a_long_sequence():
    wd = WindowData(
        ranged_sequences([9]), max_len=4
    )  # 8 pairs -> windows of 4 ending at the latest
    inputs, targets = wd.window(np.arange(len(wd)))
    assert inputs.tolist() == [[5, 6, 7, 8], [1, 2, 3, 4]]
    assert targets.tolist() == [[6, 7, 8, 9], [2, 3, 4, 5]]
    wd2 = WindowData(ranged_sequences([9]), max_len=4, stride=2)
    inputs, targets = wd2.window(np.arange(len(wd2)))
    assert inputs.tolist() == [[5, 6, 7, 8], [3, 4, 5, 6], [1, 2, 3, 4]]
    # overlapping windows keep only targets not already covered by a later window
    assert targets.tolist() == [[0, 0, 8, 9], [0, 0, 6, 7], [2, 3, 4, 5]]


def test_random_phase_keeps_every_target_once_and_varies_contexts():
    seqs = ranged_sequences([3, 12, 20, 5])
    wd = WindowData(seqs, max_len=4, random_phase=True)
    plain = WindowData(seqs, max_len=4)
    want = sorted(t for t in plain.window(np.arange(len(plain)))[1].ravel().tolist() if t > 0)
    rng = np.random.default_rng(0)
    layouts = set()
    for _ in range(6):
        batches = list(wd.batches(3, rng))
        assert abs(len(batches) - wd.n_batches(3)) <= 1  # the mean over the phases
        t = torch.cat([b["targets"] for b in batches])
        x = torch.cat([b["items"] for b in batches])
        assert sorted(t[t > 0].tolist()) == want
        assert (t[t > 0] == x[t > 0] + 1).all()
        layouts.add(tuple(sorted(wd.in_ends.tolist())))
    assert len(layouts) > 1


@pytest.mark.parametrize(("max_len", "stride"), [(4, None), (4, 2), (8, None), (5, 3), (4, 1)])
def test_random_phase_batch_count_is_the_mean_over_the_phases(max_len, stride):
    """``n_batches`` (the learning-rate schedule's length, the progress bar's total) counted one
    window more for every long sequence, which only some phases give: on sequences one pair
    longer than ``max_len`` (none get one) it said 19 batches where every epoch had 13, so a
    cosine schedule ended at 23 % of the base rate instead of 0."""
    lengths = [3, 12, 20, 5, 10, 9, 17, 2, 30]
    seqs = ranged_sequences(lengths)
    wd = WindowData(seqs, max_len=max_len, stride=stride, random_phase=True)
    s = wd.stride
    mean = 0.0  # every sequence's window count averaged over its equally likely phases
    for n in lengths:
        one = ranged_sequences([n])
        phases = range(s) if n - 1 > max_len else [0]
        counts = [len(window_layout(one.offsets, one.lengths, max_len, s, np.array([o]))[0])
                  for o in phases]  # fmt: skip
        mean += sum(counts) / len(counts)
    assert wd.n_batches(4) == -(-round(mean) // 4)
    assert wd.expected_windows() == pytest.approx(mean, abs=1e-12)
    plain = WindowData(seqs, max_len=max_len, stride=stride)
    assert plain.expected_windows() == len(plain) and plain.n_batches(4) == -(-len(plain) // 4)
    # one pair beyond max_len: no phase adds a window, so the count is exact
    short = WindowData(ranged_sequences([max_len + 2] * 50), max_len, stride, random_phase=True)
    rng = np.random.default_rng(0)
    for _ in range(5):
        assert len(list(short.batches(8, rng))) == short.n_batches(8) == -(-100 // 8)


def test_window_batches_are_a_shuffled_partition():
    wd = WindowData(ranged_sequences([3, 6, 2, 7]), max_len=3)
    rng = np.random.default_rng(0)
    batches = list(wd.batches(2, rng))
    assert len(batches) == wd.n_batches(2)
    t = torch.cat([b["targets"] for b in batches])
    assert sorted(t[t > 0].tolist()) == sorted(
        wd.window(np.arange(len(wd)))[1]
        .ravel()[wd.window(np.arange(len(wd)))[1].ravel() > 0]
        .tolist()
    )


def test_sasrec_learns_the_cycle(cyclic_split):
    train, valid = cyclic_split
    # SASRec's default trainer decays the lr to 0 by the last epoch (cosine): 6 short epochs
    model = get_model("sasrec", FAST).fit(train, valid, epochs=6, lr=1e-2, batch_size=32, seed=0)
    assert isinstance(model, SASRec)
    assert_learns_cycle(model, valid)  # raw ids in, raw ids out: after 3, 4, 5 comes 6


@pytest.mark.parametrize(
    "loss,extra",
    [
        ("bce", {}),  # one negative per position, as in the paper
        ("gbce", {"n_negatives": 2, "gbce_t": 0.5}),
        ("sampled_ce", {"n_negatives": 8}),
        ("bpr-max", {"n_negatives": 8}),
    ],
)
def test_sasrec_learns_with_every_loss(cyclic_split, loss, extra):
    train, valid = cyclic_split
    cfg = dict(FAST, loss=loss, **extra)
    model = get_model("sasrec", cfg).fit(train, valid, epochs=6, lr=1e-2, batch_size=32)
    hist = model.train_result.history
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert evaluate(model, valid, ["hr@10"])["hr@10"] >= 0.9


def test_sasrec_save_load_roundtrip(cyclic_split, tmp_path):
    train, valid = cyclic_split
    model = get_model("sasrec", FAST).fit(train, epochs=1, batch_size=64)
    assert_roundtrip(model, valid, tmp_path / "m")


def test_scores_ignore_history_beyond_max_len(cyclic_split):
    train, valid = cyclic_split
    model = get_model("sasrec", {**FAST, "seen_bias": False}).fit(train, epochs=1, batch_size=64)
    short = model.recommend([[1, 2, 3, 4, 5, 6, 7, 8]], k=5)
    long = model.recommend([[19, 20, 1, 2, 3, 4, 5, 6, 7, 8]], k=5)
    assert short == long


def test_seen_bias_offsets_every_history_item_even_beyond_max_len(cyclic_split):
    train, _ = cyclic_split
    model = get_model("sasrec", FAST).fit(train, epochs=1, batch_size=64)
    with torch.no_grad():
        model.net.seen.value.fill_(-100.0)
    short = torch.as_tensor(model.vocab.encode([0, 0, 1, 2, 3, 4, 5, 6, 7, 8]))[None]
    long = torch.as_tensor(model.vocab.encode([19, 20, 1, 2, 3, 4, 5, 6, 7, 8]))[None]
    assert model.history_len >= 10
    a = model.score(Batch(short))[0]
    b = model.score(Batch(long))[0]
    idx = model.vocab.encode([19, 20])
    assert torch.allclose(b[idx], a[idx] - 100.0)  # outside the window, still seen
    rest = np.setdiff1d(np.arange(1, len(model.vocab)), idx)
    assert torch.allclose(a[rest], b[rest])  # the network output itself is window-limited


@pytest.mark.parametrize(("limit", "want"), [(20_000, "ce"), (5, "sampled_ce")])
def test_auto_loss_choice_is_recorded_in_the_train_result(cyclic_split, limit, want):
    train, _ = cyclic_split
    model = get_model("sasrec", {**FAST, "auto_full_max_items": limit, "n_negatives": 4})
    model.fit(train, epochs=1, batch_size=64)
    assert model.config.loss == "auto"
    assert model.train_result.extra["loss"] == want == model.loss_fn.name


@pytest.mark.parametrize("name", ["sasrec", "gru4rec"])
def test_seen_bias_covers_only_the_last_seen_len_items(cyclic_split, name):
    """``seen_len`` 2 below ``max_len`` 8: the bias offsets the last two history items only
    (it offset every item of the ``max_len`` window), as GRU4Rec's session-parallel training
    learns it."""
    train, _ = cyclic_split
    cfg = {"max_len": 8, "seen_len": 2}
    cfg.update({**FAST, "max_len": 8, "seen_len": 2} if name == "sasrec" else {})
    model = get_model(name, cfg).fit(train, epochs=1, batch_size=64)
    history = torch.as_tensor(model.vocab.encode([1, 2, 3, 4, 5, 6, 7, 8]))[None]
    with torch.no_grad():
        model.net.seen.value.fill_(-5.0)
        on = model.score(Batch(history))[0]
        model.net.seen.value.fill_(0.0)
        off = model.score(Batch(history))[0]
    diff = (on - off).numpy()
    recent = model.vocab.encode([7, 8])
    assert np.allclose(diff[recent], -5.0)
    older = model.vocab.encode([1, 2, 3, 4, 5, 6])
    assert np.allclose(diff[older], 0.0)
