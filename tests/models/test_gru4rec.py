"""GRU4Rec: session-parallel batching, learning a known next item, losses, save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.conftest import assert_learns_cycle, assert_roundtrip, ranged_sequences, tiny_net
from warmrec import evaluate, get_model
from warmrec.errors import ConfigError
from warmrec.models import Recommender
from warmrec.models.gru4rec import GRU4Rec, SessionParallelData, session_parallel_schedule
from warmrec.models.neural import WindowData
from warmrec.training.loop import TrainerConfig, inner_steps, make_optimizer, optimizer_step

FAST = tiny_net("gru4rec", hidden_size=24)


def test_schedule_by_hand():
    # steps per sequence: 2, 1, 3, 0, 1 on two lanes
    start, lane = session_parallel_schedule(np.array([3, 2, 4, 1, 2]), 2)
    # seq0 -> lane 0 at t0 (free at 2); seq1 -> lane 1 at t0 (free at 1);
    # seq2 -> lane 1 at t1 (free at 4); seq3 has no pair; seq4 -> lane 0 at t2
    assert start[[0, 1, 2, 4]].tolist() == [0, 0, 1, 2]
    assert lane[[0, 1, 2, 4]].tolist() == [0, 1, 1, 0]


def test_session_parallel_batches_by_hand():
    seqs = ranged_sequences([3, 2, 4, 1, 2])  # items 1-3 | 4-5 | 6-9 | 10 | 11-12
    data = SessionParallelData(seqs)
    steps = list(data.batches(2, np.random.default_rng(0)))
    assert len(steps) == data.n_batches(2) == 4
    x = torch.stack([s["items"] for s in steps]).tolist()
    y = torch.stack([s["targets"] for s in steps]).tolist()
    r = torch.stack([s["reset"] for s in steps]).tolist()
    assert x == [[1, 4], [2, 6], [11, 7], [0, 8]]
    assert y == [[2, 5], [3, 7], [12, 8], [0, 9]]
    assert r == [[True, True], [False, True], [True, False], [False, False]]


def test_lane_histories_for_the_seen_bias_by_hand():
    seqs = ranged_sequences(
        [3, 2, 4, 1, 2]
    )  # items 1-3 | 4-5 | 6-9 | 10 | 11-12 (schedule as above)
    steps = list(SessionParallelData(seqs, seen_len=2).batches(2, np.random.default_rng(0)))
    hist = torch.stack([s["history"] for s in steps]).tolist()
    assert hist == [
        [[1, 0], [4, 0]],
        [[2, 1], [6, 0]],
        [[11, 0], [7, 6]],
        [[0, 0], [8, 7]],  # lane 0 idles in the last step
    ]
    assert "history" not in next(SessionParallelData(seqs).batches(2, np.random.default_rng(0)))


def test_every_pair_is_trained_once_with_many_lanes():
    seqs = ranged_sequences([5, 1, 3, 8, 2, 2, 6])
    x, y, _ = SessionParallelData(seqs)._steps(3, None)
    pairs = sorted(zip(x[y > 0].tolist(), y[y > 0].tolist()))
    want = sorted((int(a), int(a) + 1) for i in range(len(seqs)) for a in seqs[i][:-1])
    assert pairs == want


def test_random_session_order_changes_with_the_generator():
    seqs = ranged_sequences([3] * 20)
    data = SessionParallelData(seqs, order="random")
    a = torch.stack([s["items"] for s in data.batches(4, np.random.default_rng(0))])
    b = torch.stack([s["items"] for s in data.batches(4, np.random.default_rng(1))])
    assert not torch.equal(a, b)


def test_random_session_order_epochs_are_as_long_as_counted():
    """``n_batches`` counted the time order's steps while a random order handed the sequences
    to the lanes anew, so an epoch's length depended on the order (here 8 steps counted, 8 to
    12 made: a long sequence drawn last runs alone at the end); the learning-rate schedule
    and the progress bar were off by that much (on ml-100k with 256 lanes: 897 counted,
    861 to 998 made)."""
    seqs = ranged_sequences([9, 2, 2, 2, 2, 2, 2, 2, 1, 3])
    data = SessionParallelData(seqs, order="random")
    counted = data.n_batches(2)
    assert counted == SessionParallelData(seqs).n_batches(2) == 9
    want = sorted((int(a), int(a) + 1) for i in range(len(seqs)) for a in seqs[i][:-1])
    rng, orders = np.random.default_rng(0), set()
    for _ in range(20):
        steps = list(data.batches(2, rng))
        assert len(steps) == counted
        x = torch.stack([s["items"] for s in steps])
        y = torch.stack([s["targets"] for s in steps])
        assert sorted(zip(x[y > 0].tolist(), y[y > 0].tolist())) == want  # each pair once
        # a lane's sequence starts where its state is reset, and only there
        r = torch.stack([s["reset"] for s in steps])
        starts = (x > 0) & torch.cat([torch.ones(1, 2, dtype=torch.bool), y[:-1] != x[1:]])
        assert torch.equal(r[1:], starts[1:])
        orders.add(tuple(x.flatten().tolist()))
    assert len(orders) > 5  # reshuffled every epoch


def test_gru4rec_learns_the_cycle(cyclic_split):
    train, valid = cyclic_split
    model = get_model("gru4rec", FAST).fit(train, valid, epochs=3, lr=1e-2, batch_size=16)
    assert isinstance(model, GRU4Rec)
    assert_learns_cycle(model, valid, (7, 8, 9))


@pytest.mark.parametrize(
    ("loss", "precision"),
    [("sampled_ce", "auto"), ("bpr-max", "float32"), ("bpr-max", "bfloat16")],
)
def test_gru4rec_learns_with_sampled_losses(cyclic_split, loss, precision):
    train, valid = cyclic_split
    cfg = dict(FAST, loss=loss, n_negatives=8, matmul_precision=precision)
    model = get_model("gru4rec", cfg).fit(train, valid, epochs=4, lr=1e-2, batch_size=16)
    assert evaluate(model, valid, ["hr@10"])["hr@10"] >= 0.9


def test_scoring_matches_the_training_recurrence(cyclic_split):
    train, _ = cyclic_split
    model = get_model("gru4rec", FAST).fit(train, epochs=1, batch_size=16)
    net = model.net.eval()
    hist = torch.tensor([3, 4, 5])
    h = net.gru.init_state(1, "cpu")
    with torch.no_grad():
        for item in hist:
            out, h = net.gru.step(net.embed(item[None]), h)
        want = net.item.logits(out)
        want[0, hist] += net.seen.value  # the seen-item bias on the history's items
    from warmrec.data.dataset import Batch

    got = model.score(Batch(torch.tensor([[0, 0, 0, 0, 0, 3, 4, 5]])))
    assert torch.allclose(got, want, atol=1e-5)


def test_gru4rec_save_load_roundtrip(cyclic_split, tmp_path):
    train, valid = cyclic_split
    model = get_model("gru4rec", dict(FAST, tied=False, embedding_dim=12)).fit(
        train, epochs=1, batch_size=16
    )
    assert_roundtrip(model, valid, tmp_path / "g", n=12)


def test_untied_gru4rec_keeps_no_unused_input_table(cyclic_split):
    # untied: inputs are looked up in `input`, outputs scored against `item.out`; the output
    # layer's own input table was allocated and saved, never read nor trained
    train, _ = cyclic_split
    model = get_model("gru4rec", dict(FAST, tied=False, embedding_dim=12)).fit(
        train, epochs=1, batch_size=16
    )
    state = model.get_state()
    assert "item.embed.weight" not in state
    assert state["input.weight"].shape == (len(train.vocab), 12)
    assert state["item.out"].shape == (len(train.vocab), 24)
    assert model.net.item.n_items == len(train.vocab)


def test_an_untied_gru4rec_saved_with_the_unused_table_still_loads(cyclic_split, tmp_path):
    train, valid = cyclic_split
    model = get_model("gru4rec", dict(FAST, tied=False, embedding_dim=12)).fit(
        train, epochs=1, batch_size=16
    )
    path = model.save(tmp_path / "g")
    # what an earlier warmrec wrote: the same weights plus item.embed.weight
    from safetensors.torch import load_file, save_file

    from warmrec.artifacts import file_sha256

    state = load_file(path / "model.safetensors")
    state["item.embed.weight"] = torch.randn(len(train.vocab), 24)
    save_file(state, path / "model.safetensors")
    info = json.loads((path / "config.json").read_text())
    info["weights_sha256"] = file_sha256(path / "model.safetensors")
    (path / "config.json").write_text(json.dumps(info))
    loaded = Recommender.load(path)
    batch = valid.batch(np.arange(12), loaded.history_len)
    assert torch.equal(model.score(batch), loaded.score(batch))
    assert "item.embed.weight" not in loaded.get_state()


def test_gru4rec_config_errors():
    with pytest.raises(ConfigError, match="session_order"):
        get_model("gru4rec", {"session_order": "length"})
    with pytest.raises(ConfigError, match="loss"):
        get_model("gru4rec", {"loss": "gbce"})
    with pytest.raises(ConfigError, match="training"):
        get_model("gru4rec", {"training": "prefixes"})


@pytest.mark.parametrize("seen_bias", [True, False])
def test_gru4rec_learns_the_cycle_with_window_training(cyclic_split, seen_bias):
    train, valid = cyclic_split
    cfg = dict(FAST, training="windows", seen_bias=seen_bias)
    model = get_model("gru4rec", cfg)
    model._bind(train)
    assert type(model.training_data(train)) is WindowData
    model.fit(train, valid, epochs=4, lr=1e-2, batch_size=16, seed=0)
    assert_learns_cycle(model, valid, (7, 8, 9))


def _steps(train, sparse: bool, optimizer: str, n_steps: int = 5) -> dict[str, torch.Tensor]:
    """Weights of a tiny BPR-max GRU4Rec after ``n_steps`` optimizer steps (seeded), float32
    products (bfloat16 rounding would make the two runs' sums of the same terms differ)."""
    cfg = dict(
        FAST,
        loss="bpr-max",
        n_negatives=8,
        seen_bias=False,
        sparse_items=sparse,
        matmul_precision="float32",
    )
    model = get_model("gru4rec", cfg)
    torch.manual_seed(0)
    model._bind(train)
    model.init_net()
    model.prepare(train)
    batches = list(model.training_data(train).batches(16, np.random.default_rng(0)))
    tc = TrainerConfig(optimizer=optimizer, lr=0.05)
    inner_steps(model, batches, tc, n_steps)
    return {k: v.clone() for k, v in model.net.state_dict().items()}


@pytest.mark.parametrize("optimizer", ["adagrad", "sgd"])
def test_sparse_item_updates_equal_the_dense_ones(cyclic_split, optimizer):
    # Adagrad and SGD leave a row with a zero gradient unchanged, so updating only the touched
    # rows (sparse gradients, RowAdagrad) must give the dense run's weights
    train, _ = cyclic_split
    sparse, dense = _steps(train, True, optimizer), _steps(train, False, optimizer)
    for k in dense:
        torch.testing.assert_close(sparse[k], dense[k], rtol=1e-5, atol=1e-6)


def test_sparse_lookups_give_sparse_table_gradients(cyclic_split):
    train, _ = cyclic_split
    cfg = dict(FAST, loss="bpr-max", n_negatives=8, seen_bias=False)
    model = get_model("gru4rec", cfg)
    model._bind(train)
    model.init_net()
    model.prepare(train)
    assert model.sparse_parameters() == [model.net.item.output_weight]
    batch = next(iter(model.training_data(train).batches(16, np.random.default_rng(0))))
    opt = make_optimizer(model.optimizer_groups(0.0), TrainerConfig(optimizer="adagrad"))
    optimizer_step(model, batch, opt)  # the loop's step: backward there; gradients stay
    assert model.net.item.output_weight.grad.is_sparse
    assert not model.net.gru.gru.weight_ih_l0.grad.is_sparse
    # the full softmax touches every row: dense as before
    ce = get_model("gru4rec", dict(FAST, loss="ce"))
    ce._bind(train)
    ce.init_net()
    assert ce.sparse_parameters() == []


def test_gru4rec_learns_the_cycle_with_official_settings(cyclic_split):
    # BPR-max over shared negatives, sparse item updates by RowAdagrad, no seen bias
    train, valid = cyclic_split
    cfg = dict(FAST, loss="bpr-max", n_negatives=8, seen_bias=False)
    model = get_model("gru4rec", cfg)
    model.fit(train, valid, epochs=4, optimizer="adagrad", lr=0.1, batch_size=16)
    assert_learns_cycle(model, valid, (7, 8, 9))


@pytest.mark.parametrize("seen_bias", [False, True])
def test_idle_lanes_skip_the_gru_without_changing_the_step(cyclic_split, seen_bias):
    """In the epoch's tail only the active lanes run: the loss, every gradient and the active
    lanes' next state equal those of running all lanes and keeping the active ones."""
    train, _ = cyclic_split
    cfg = dict(FAST, loss="bpr-max", n_negatives=8, seen_bias=seen_bias)
    model = get_model("gru4rec", cfg)
    torch.manual_seed(0)
    model._bind(train)
    model.init_net()
    model.prepare(train)
    # 200 lanes for 160 training sessions: 40 lanes idle from the start
    batch = next(iter(model.training_data(train).batches(200, np.random.default_rng(0))))
    keep = batch["targets"] > 0
    assert 0 < int(keep.sum()) < 200
    batch["reset"] = torch.zeros(200, dtype=torch.bool)  # carry a random state into the step
    h0 = torch.randn(1, 200, model.config.hidden_size)
    net = model.net

    model._hidden = h0.clone()
    torch.manual_seed(1)
    got = model.training_step(batch)
    got_grads = torch.autograd.grad(got, [p for p in net.parameters() if p.requires_grad])
    got_state = model._hidden[:, keep]

    # the reference: every lane through the GRU, the loss on the active ones
    h = h0 * (~batch["reset"]).float()[None, :, None]
    out, h = net.gru.step(net.embed(batch["items"], model._sparse), h)
    seen = (batch["history"][keep], net.seen.value) if seen_bias else None
    torch.manual_seed(1)
    want = model.loss_fn(
        out[keep], batch["targets"][keep], net.item.output_weight, net.item.output_bias, seen=seen
    )
    want_grads = torch.autograd.grad(want, [p for p in net.parameters() if p.requires_grad])
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got_state, h[:, keep])
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a.to_dense(), b.to_dense())


@pytest.mark.parametrize(
    ("precision", "native", "want"),
    [
        ("float32", True, torch.float32),
        ("bfloat16", False, torch.bfloat16),
        ("auto", True, torch.bfloat16),
        ("auto", False, torch.float32),
    ],
)
def test_matmul_precision_reaches_the_loss_and_the_gru_step(
    cyclic_split, monkeypatch, precision, native, want
):
    """``matmul_precision`` sets the dtype of the fused loss's and the GRU step's products
    (``auto``: bfloat16 only where the CPU multiplies it natively)."""
    from warmrec.models import bpr_max_linear

    monkeypatch.delenv(bpr_max_linear.MATMUL_ENV, raising=False)
    monkeypatch.setattr(bpr_max_linear, "native_bf16", lambda: native)
    train, _ = cyclic_split
    cfg = dict(FAST, loss="bpr-max", n_negatives=8, matmul_precision=precision)
    model = get_model("gru4rec", cfg)
    model.setup_training(train)
    assert model.loss_fn.matmul_dtype == want
    assert model.net.gru.matmul_dtype == want
    with pytest.raises(ConfigError, match="matmul_precision"):
        get_model("gru4rec", {"matmul_precision": "float16"})
