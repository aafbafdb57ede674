"""NeuralRecommender parts shared by the models: the seen-item bias on every model that has one."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from warmrec import EvalSet, SequenceDataset, evaluate, get_model
from warmrec.data.vocab import ItemVocab
from warmrec.registry import model_class

SEEN_MODELS = ["sasrec", "narm", "ssept", "bst", "gru4rec"]


def _random_sessions(repeats: bool, n: int = 300, length: int = 8, n_items: int = 30, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n):
        if repeats:  # a few items of the session come back again and again
            items = rng.choice(rng.choice(n_items, 3, replace=False), length)
        else:  # never the same item twice in a session
            items = rng.choice(n_items, length, replace=False)
        rows += [(s, int(i) + 1, float(t)) for t, i in enumerate(items)]
    return pl.DataFrame(rows, schema=["session_id", "item_id", "timestamp"], orient="row")


@pytest.mark.parametrize("name", SEEN_MODELS)
@pytest.mark.parametrize("repeats", [False, True])
def test_seen_bias_learns_the_domains_repeat_behaviour(name, repeats):
    df = _random_sessions(repeats)
    vocab = ItemVocab.from_ids(df["item_id"])
    train = SequenceDataset.from_frame(df.filter(pl.col("session_id") < 250), vocab)
    valid = EvalSet.from_sessions(df.filter(pl.col("session_id") >= 250), vocab)
    cfg = {**model_class(name).test_config, "max_len": 8}
    # a constant lr, whatever the model's default schedule (SASRec's cosine)
    fit = {"epochs": 8, "lr": 1e-2, "batch_size": 32, "seed": 0, "schedule": "none"}
    model = get_model(name, cfg).fit(train, **fit)
    value = float(model.net.seen.value.detach())
    assert value > 0.3 if repeats else value < -0.3
    plain = get_model(name, {**cfg, "seen_bias": False}).fit(train, **fit)
    assert getattr(plain.net, "seen", None) is None
    if repeats:  # knowing that items come back ranks the next item higher
        with_bias = evaluate(model, valid, ["mrr@10"])["mrr@10"]
        assert with_bias > evaluate(plain, valid, ["mrr@10"])["mrr@10"]
    else:  # knowing that they never do keeps seen items out of the top of the list
        assert _seen_share_top5(model, valid) < 0.5 * _seen_share_top5(plain, valid) + 1e-9


def _seen_share_top5(model, valid: EvalSet) -> float:
    batch = valid.batch(np.arange(len(valid)), model.history_len)
    scores = model.score(batch)
    scores[:, 0] = -np.inf
    top = scores.topk(5, dim=1).indices
    hist = batch.items
    return float((top[:, :, None] == hist[:, None, :]).any(-1).float().mean())


def test_setup_training_is_what_the_loop_does_before_its_first_step(cyclic_split):
    """The public start of a hand-driven training run (benchmarks): the same vocabulary, counts,
    seeded net and loss as ``fit`` starts from."""
    import torch

    from warmrec.training.loop import make_optimizer, optimizer_step

    train, _ = cyclic_split
    cfg = {**model_class("sasrec").test_config, "max_len": 8, "loss": "ce"}
    model = get_model("sasrec", cfg)
    torch.manual_seed(3)
    model.setup_training(train)
    assert model.vocab is train.vocab and model.loss_fn.name == "ce"
    assert model.meta.item_counts == train.item_counts().tolist()
    assert model.net.item.embed.weight.shape[0] == train.n_items
    # fit builds the very same net from the same seed: its first epoch starts where ours does
    twin = get_model("sasrec", cfg)
    twin.fit(train, epochs=1, seed=3, lr=1e-12, schedule="none")  # a step too small to see
    for (name, p), (_, q) in zip(model.net.named_parameters(), twin.net.named_parameters()):
        assert torch.allclose(p, q, atol=1e-8), name
    other = get_model("sasrec", cfg).fit(train, epochs=1, seed=4, lr=1e-12, schedule="none")
    assert not torch.allclose(model.net.item.embed.weight, other.net.item.embed.weight, atol=1e-3)
    # and it is ready to train by hand
    batch = next(iter(model.training_data(train).batches(16, np.random.default_rng(0))))
    before = model.net.item.embed.weight.detach().clone()
    optimizer_step(
        model, batch, make_optimizer(model.optimizer_groups(0.0), twin.trainer_config(lr=1e-2))
    )
    assert not torch.equal(model.net.item.embed.weight, before)


# -- the seen set of a training target is the one scoring offsets ---------------------------------
def _one_long_sequence(n: int = 13) -> SequenceDataset:
    """One user's items ``1..n`` in order (each encoded as itself), one ``user_id``."""
    df = pl.DataFrame(
        {
            "user_id": [1] * n,
            "item_id": list(range(1, n + 1)),
            "timestamp": [float(t) for t in range(n)],
        }
    )
    ds = SequenceDataset.from_frame(df, ItemVocab.from_ids(df["item_id"]))
    assert ds.sequences.items.tolist() == list(range(1, n + 1))
    return ds


def _training_seen_sets(name: str, cfg: dict, train: SequenceDataset):
    """``(model, target -> the items its training loss offsets as seen)`` over one epoch of
    ``name``'s own batches and ``training_step`` (the loss is intercepted)."""
    import torch

    model = get_model(name, cfg)
    torch.manual_seed(0)
    model.setup_training(train)
    got: dict[int, set[int]] = {}

    def loss(hidden, targets, weight, bias, seen=None):
        history, _ = seen
        for y, row in zip(targets.tolist(), history.tolist(), strict=True):
            assert y not in got, f"target {y} trained twice"
            got[y] = set(row) - {0}
        return hidden.sum() * 0.0

    model.loss_fn = loss
    for batch in model.training_data(train).batches(2, np.random.default_rng(0)):
        model.training_step(batch)
    return model, got


WINDOW_MODELS = [(n, {}) for n in SEEN_MODELS if n != "gru4rec"] + [
    ("gru4rec", {"training": "windows"})
]


@pytest.mark.parametrize(("name", "extra"), WINDOW_MODELS, ids=[n for n, _ in WINDOW_MODELS])
@pytest.mark.parametrize("seen_len", [20, 6, 4, 2])
@pytest.mark.parametrize("random_phase", [False, True])
def test_training_seen_set_is_the_last_seen_len_items_of_the_sequence(
    name, extra, seen_len, random_phase
):
    """Items 1..13 in windows of 4: the target at position p (item p + 1) is trained with the
    seen set {max(1, p + 1 - seen_len) .. p} -- what scoring offsets for the history 1..p --
    wherever its window starts (before: only the window's prefix, e.g. {9, 10, 11, 12} for
    item 13 with seen_len 20, while scoring offsets 1..12)."""
    train = _one_long_sequence(13)
    cfg = {
        **model_class(name).test_config,
        **extra,
        "max_len": 4,
        "seen_len": seen_len,
        "random_phase": random_phase,
    }
    import torch

    from tests.conftest import padded_batch

    model, got = _training_seen_sets(name, cfg, train)
    assert sorted(got) == list(range(2, 14))
    for y, seen in got.items():
        p = y - 1
        assert seen == set(range(max(1, p + 1 - seen_len), p + 1)), (y, seen)
    # what scoring offsets for the history 1..12 (the input of the last target, 13): the same
    batch = padded_batch([list(range(1, 13))[-model.history_len :]])
    plain = model.score(batch)
    with torch.no_grad():
        model.net.seen.value.fill_(-5.0)
    offset = model.score(batch) - plain
    assert set((offset[0] < -4).nonzero()[:, 0].tolist()) == got[13]


def test_window_batches_carry_the_items_before_each_window():
    """``context``: up to that many items of the window's sequence before its first input,
    left-padded to the batch's widest; none where no window starts after its sequence."""
    from tests.conftest import ranged_sequences
    from warmrec.models.neural import WindowData

    seqs = ranged_sequences([10, 3])  # items 1..10 | 11..13
    data = WindowData(seqs, max_len=4, context=3)
    # sequence 0 has 9 pairs: windows of inputs 6..9, 2..5 and 1; sequence 1 one of 11, 12
    windows = {tuple(data.window(np.array([w]))[0][0].tolist()): w for w in range(len(data))}
    assert sorted(windows) == [(0, 0, 0, 1), (0, 0, 11, 12), (2, 3, 4, 5), (6, 7, 8, 9)]
    before = {w: data.before(np.array([windows[w]])) for w in windows}
    assert before[(6, 7, 8, 9)].tolist() == [[3, 4, 5]]
    assert before[(2, 3, 4, 5)].tolist() == [[1]]  # only one item before it
    assert before[(0, 0, 0, 1)] is None and before[(0, 0, 11, 12)] is None
    both = data.batch(np.array([windows[(2, 3, 4, 5)], windows[(6, 7, 8, 9)]]))
    assert both["before"].tolist() == [[0, 0, 1], [3, 4, 5]]
    assert "before" not in data.batch(np.array([windows[(0, 0, 0, 1)], windows[(0, 0, 11, 12)]]))
    assert "before" not in WindowData(seqs, max_len=4).batch(np.arange(len(data)))


@pytest.mark.parametrize("name", SEEN_MODELS)
def test_seen_loss_unchanged_where_every_sequence_fits_its_window(name, cyclic_split):
    """Sequences no longer than the window and ``seen_len >= max_len``: no ``"before"`` in the
    batches, and the loss's seen histories are the windows' prefixes, as before."""
    import torch

    from warmrec.models.layers import SeenItemBias

    train, _ = cyclic_split
    assert int(train.sequences.lengths.max()) <= 9
    cfg = {**model_class(name).test_config, "max_len": 8, "training": "windows"}
    if name != "gru4rec":
        cfg.pop("training")
    model = get_model(name, cfg)
    model.setup_training(train)
    assert model.seen_context == 199
    for batch in model.training_data(train).batches(16, np.random.default_rng(0)):
        assert "before" not in batch
        keep = batch["targets"] > 0
        history, value = model.seen_for_loss(batch["items"], keep, batch.get("before"))
        assert torch.equal(history, SeenItemBias.prefix_histories(batch["items"])[keep])
        assert value is model.net.seen.value


def _expected_targets(data, index: np.ndarray, items: np.ndarray, offsets: np.ndarray, n: int):
    """Brute force, window by window in row-major order: each counted target's item and the set
    scoring offsets for its history (the last ``n`` items of its sequence before it)."""
    out = []
    for w in index.tolist():
        e, k = int(data.in_ends[w]), int(data.n_targets[w])
        first = int(offsets[np.searchsorted(offsets, data.starts[w], side="right") - 1])
        for p in range(e - k + 1, e + 1):  # flat positions of the window's counted targets
            out.append((int(items[p]), set(items[max(first, p - n) : p].tolist()) - {0}))
    return out


@pytest.mark.parametrize("trial", range(8))
@pytest.mark.parametrize(("name", "extra"), WINDOW_MODELS, ids=[n for n, _ in WINDOW_MODELS])
def test_training_seen_sets_match_a_brute_force_over_random_windows(name, extra, trial):
    """Random sequences with repeats, random ``max_len``, ``window_stride`` (overlapping windows
    included), ``seen_len`` and ``random_phase``: over every batch of a few epochs, each
    target the loss gets has the seen set of a direct computation on its sequence, and every
    target of the sequences is trained once an epoch."""
    import torch

    rng = np.random.default_rng(100 + trial)
    lengths = rng.integers(1, 30, size=7)
    rows = [(s, int(rng.integers(1, 9)), float(t)) for s, m in enumerate(lengths) for t in range(m)]
    df = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    train = SequenceDataset.from_frame(df, ItemVocab.from_ids(df["item_id"]))
    max_len = int(rng.integers(2, 9))
    stride = int(rng.integers(1, max_len)) if trial % 2 else 0  # odd: overlapping windows
    seen_len = int(rng.integers(1, 3 * max_len + 2))
    random_phase = trial % 4 >= 2
    cfg = {
        **model_class(name).test_config,
        **extra,
        "max_len": max_len,
        "window_stride": stride,
        "seen_len": seen_len,
        "random_phase": random_phase,
    }
    model = get_model(name, cfg)
    torch.manual_seed(0)
    model.setup_training(train)
    got: list = []

    def loss(hidden, targets, weight, bias, seen=None):
        history, _ = seen
        assert history.shape[1] <= seen_len
        got.extend(
            (y, set(row) - {0}) for y, row in zip(targets.tolist(), history.tolist(), strict=True)
        )
        return hidden.sum() * 0.0

    model.loss_fn = loss
    data = model.training_data(train)
    seqs = train.sequences
    items, offsets = np.asarray(seqs.items), np.asarray(seqs.offsets)
    n_pairs = int(np.clip(seqs.lengths - 1, 0, None).sum())
    layout_rng = np.random.default_rng(trial)
    for _epoch in range(3):
        if random_phase:
            data.relayout(layout_rng)
        order = layout_rng.permutation(len(data))
        want = []
        got.clear()
        for lo in range(0, len(order), 3):
            index = order[lo : lo + 3]
            model.training_step(data.batch(index))
            want += _expected_targets(data, index, items, offsets, seen_len)
        assert len(want) == n_pairs
        assert got == want, (max_len, stride, seen_len, random_phase)
