"""The training loop: determinism, early stopping with best weights, schedules, logging."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

from tests.conftest import split_cyclic, tiny_net
from warmrec import get_model
from warmrec.config import build_config
from warmrec.errors import ConfigError, ModelError
from warmrec.training import loop
from warmrec.training.loop import TrainerConfig, lr_factor, make_optimizer, train

TINY = tiny_net("sasrec", ffn_dim=32, dropout_all=0.1)


@pytest.fixture(scope="module")
def data():
    return split_cyclic(120, seed=1, n_train=100, last_only=True)


def _weights(model):
    return {k: v.clone() for k, v in model.net.state_dict().items()}


def test_a_negative_seed_is_a_config_error(data):
    """numpy's generators take no negative seed: ``seed=-1`` failed inside the fit with
    numpy's ValueError (a traceback from ``warmrec train --set train.seed=-1``)."""
    train_ds, valid = data
    with pytest.raises(ConfigError, match=r"TrainerConfig.seed: expected an integer >= 0"):
        get_model("sasrec", TINY).fit(train_ds, valid, epochs=1, batch_size=16, seed=-1)


def test_same_seed_same_result_other_seed_differs(data):
    train_ds, valid = data
    runs = [
        get_model("sasrec", TINY).fit(train_ds, valid, epochs=2, batch_size=16, seed=s)
        for s in (3, 3, 4)
    ]
    a, b, c = (_weights(m) for m in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert [h["loss"] for h in runs[0].train_result.history] == [
        h["loss"] for h in runs[1].train_result.history
    ]


def test_early_stopping_restores_the_best_weights(data):
    train_ds, valid = data
    # the cycle is learnt perfectly within a few epochs; then ndcg cannot improve any more
    # a constant lr (SASRec's default cosine schedule spans the epoch cap, which differs below)
    flat = {"lr": 1e-2, "batch_size": 16, "schedule": "none", "warmup_steps": 0}
    long = get_model("sasrec", TINY).fit(train_ds, valid, epochs=40, patience=2, **flat)
    res = long.train_result
    scores = [h["valid_ndcg@10"] for h in res.history]
    best = scores.index(max(scores)) + 1
    assert res.best_metric == pytest.approx(1.0) and res.best_epoch == best
    assert res.stopped_early and res.epochs_run == best + 2
    # the restored weights are those after the best epoch: equal to a run that ended there
    short = get_model("sasrec", TINY).fit(train_ds, valid, epochs=best, **flat)
    w_long, w_short = _weights(long), _weights(short)
    assert all(torch.equal(w_long[k], w_short[k]) for k in w_long)


def test_without_validation_the_last_epoch_is_kept(data):
    train_ds, _ = data
    model = get_model("sasrec", TINY).fit(train_ds, epochs=2, batch_size=32)
    assert model.train_result.best_epoch == 2 and math.isnan(model.train_result.best_metric)
    assert "valid_ndcg@10" not in model.train_result.history[-1]


def test_lr_schedules_by_hand():
    assert lr_factor(0, 100, 10, "none") == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, "none") == pytest.approx(1.0)
    assert lr_factor(50, 100, 0, "none") == 1.0
    assert lr_factor(10, 110, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(60, 110, 10, "cosine") == pytest.approx(0.5)
    assert lr_factor(110, 110, 10, "cosine") == pytest.approx(0.0)
    assert lr_factor(35, 110, 10, "linear") == pytest.approx(0.75)


def test_schedule_reaches_zero_and_log_lines(data, tmp_path):
    train_ds, valid = data
    log = tmp_path / "logs" / "train.jsonl"
    model = get_model("sasrec", TINY)
    res = train(
        model,
        train_ds,
        valid,
        TrainerConfig(
            epochs=3, batch_size=32, schedule="linear", warmup_steps=2, log_path=str(log)
        ),
    )
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2, 3]
    assert {"loss", "train_seconds", "lr", "valid_ndcg@10", "valid_hr@10"} <= set(lines[0])
    assert lines[-1]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert res.history == lines


@pytest.mark.parametrize("opt", ["adam", "adagrad", "sgd"])
def test_other_optimizers_train(data, opt):
    train_ds, valid = data
    model = get_model("gru4rec", {"hidden_size": 16, "max_len": 8})
    res = train(
        model,
        train_ds,
        valid,
        optimizer=opt,
        lr=0.05,
        momentum=0.5,
        epochs=2,
        batch_size=16,
        grad_clip=1.0,
    )
    assert res.history[-1]["loss"] < res.history[0]["loss"]


@pytest.mark.parametrize("name", ["adamw", "adam", "adagrad", "sgd"])
def test_fused_optimizers_match_the_reference_update(name, monkeypatch):
    torch.manual_seed(0)
    nets = [torch.nn.Sequential(torch.nn.Embedding(50, 8), torch.nn.Linear(8, 3)) for _ in "ab"]
    nets[1].load_state_dict(nets[0].state_dict())
    start = [p.detach().clone() for p in nets[0].parameters()]
    cfg = TrainerConfig(optimizer=name, lr=0.05, momentum=0.9, weight_decay=0.01)
    fused = make_optimizer(nets[0], cfg)
    assert fused.defaults["fused"] is True
    monkeypatch.setattr(loop, "_can_fuse", lambda params: False)
    ref = make_optimizer(nets[1], cfg)
    assert not ref.defaults.get("fused")
    for step in range(3):
        x = torch.randint(0, 50, (7,), generator=torch.Generator().manual_seed(step))
        for net, opt in zip(nets, (fused, ref), strict=True):
            opt.zero_grad()
            net(x).square().sum().backward()
            opt.step()
    for a, b, s in zip(nets[0].parameters(), nets[1].parameters(), start, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert not torch.equal(a, s)


def test_no_fused_kernel_across_devices():
    net = torch.nn.Linear(4, 2)
    net.bias = torch.nn.Parameter(torch.zeros(2, device="meta"))
    assert not loop._can_fuse(list(net.parameters()))
    assert loop._can_fuse([net.weight])


def test_trainer_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="unknown key"):
        build_config(TrainerConfig, {"epoch": 3})
    with pytest.raises(ConfigError, match="optimizer"):
        TrainerConfig(optimizer="lbfgs")
    with pytest.raises(ConfigError, match="schedule"):
        TrainerConfig(schedule="step")
    with pytest.raises(ConfigError, match="metric"):
        TrainerConfig(valid_metric="auc")
    with pytest.raises(ConfigError, match="checkpoint_dir"):
        TrainerConfig(resume=True)
    with pytest.raises(ConfigError, match="batch_size"):
        TrainerConfig(batch_size=0)


def test_only_the_loop_calls_backward():
    src = Path(__file__).resolve().parents[2] / "src" / "warmrec"
    callers = [
        p.relative_to(src).as_posix()
        for p in src.rglob("*.py")
        if re.search(r"\.backward\(", p.read_text())
    ]
    assert callers == ["training/loop.py"]


def test_fine_tuning_keeps_the_net_and_respects_frozen_parameters(data):
    train_ds, valid = data
    model = get_model("sasrec", TINY).fit(train_ds, epochs=1, batch_size=32)
    before = _weights(model)
    model.net.item.embed.weight.requires_grad_(False)
    res = train(model, train_ds, valid, epochs=1, batch_size=32, fresh=False)
    after = _weights(model)
    assert torch.equal(before["item.embed.weight"], after["item.embed.weight"])
    assert not torch.equal(before["pos.embed.weight"], after["pos.embed.weight"])
    assert res.epochs_run == 1
    other = get_model("sasrec", TINY)
    with pytest.raises(ModelError, match="fresh=False"):
        train(other, train_ds, valid, epochs=1, fresh=False)


def test_lr_scale_groups_and_callbacks(data):
    train_ds, valid = data
    model = get_model("sasrec", TINY)
    model.optimizer_groups = lambda wd: [
        {"params": list(model.net.encoder.parameters()), "lr_scale": 0.1},
        {"params": [p for n, p in model.net.named_parameters() if not n.startswith("encoder")]},
    ]
    seen = []

    def stop_at_two(epoch, record, m):
        seen.append((epoch, record["loss"]))
        return epoch == 2

    res = train(model, train_ds, valid, epochs=5, batch_size=32, lr=0.01, callbacks=[stop_at_two])
    assert [e for e, _ in seen] == [1, 2] and res.epochs_run == 2 and res.stopped_early
    assert res.history[0]["lr"] == pytest.approx(0.001)  # the first group's scaled rate


def test_tensorboard_when_installed_else_a_warning(data, tmp_path):
    import importlib.util

    train_ds, _ = data
    model = get_model("sasrec", TINY)
    tb = tmp_path / "tb"
    if importlib.util.find_spec("tensorboard") is None:
        with pytest.warns(UserWarning, match="tensorboard"):
            train(model, train_ds, epochs=1, batch_size=64, tensorboard_dir=str(tb))
    else:  # pragma: no cover - depends on the environment
        train(model, train_ds, epochs=1, batch_size=64, tensorboard_dir=str(tb))
        assert any(tb.iterdir())


class _LockProbe(loop.LoopHooks):
    """While the fit builds its training data, another thread does what another trial's setup
    does -- takes :data:`warmrec.rng.GLOBAL_LOCK`, seeds torch's global generator and draws from
    it -- and the fit waits (at most 5 s) for it to be done: ``taken`` says whether it was."""

    def __init__(self) -> None:
        self.taken: bool | None = None

    def wrap_data(self, data):
        import threading

        from warmrec.rng import seeded_global

        done = threading.Event()

        def other_setup() -> None:
            with seeded_global(123):
                torch.rand(1000)
            done.set()

        threading.Thread(target=other_setup, daemon=True).start()
        self.taken = done.wait(5)
        return data


@pytest.mark.parametrize(
    ("name", "cfg"),
    [
        ("sasrec", {**TINY, "loss": "sampled_ce", "n_negatives": 5}),
        ("gru4rec", tiny_net("gru4rec", dropout_all=0.3)),
    ],
)
def test_the_global_lock_is_free_while_a_fit_builds_its_data(data, tmp_path, name, cfg):
    """Only the net's init (and a checkpoint's RNG states) hold the lock: another thread's fit
    can set up while this one builds its training data (``warmrec tune --n-jobs``: trials'
    setups used to wait for each other), and the weights -- fresh or resumed -- and the global
    generator's final state are the ones a fit alone gives."""
    train_ds, valid = data
    kw = dict(epochs=3, batch_size=16, seed=7, progress=False)
    alone = get_model(name, cfg)
    train(alone, train_ds, valid, **kw)
    after_alone = torch.get_rng_state()
    probe = _LockProbe()
    beside = get_model(name, cfg)
    train(beside, train_ds, valid, hooks=probe, **kw)
    assert probe.taken is True
    assert torch.equal(torch.get_rng_state(), after_alone)
    a, b = _weights(alone), _weights(beside)
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    # resumed: the checkpoint's generator states are the fit's, whatever the other thread drew
    train(
        get_model(name, cfg), train_ds, valid, **{**kw, "epochs": 2}, checkpoint_dir=str(tmp_path)
    )
    probe = _LockProbe()
    resumed = get_model(name, cfg)
    with pytest.warns(loop.ResumeWarning, match="resumed"):
        res = train(
            resumed, train_ds, valid, hooks=probe, checkpoint_dir=str(tmp_path), resume=True, **kw
        )
    assert probe.taken is True and res.resumed_from == 2
    assert torch.equal(torch.get_rng_state(), after_alone)
    c = _weights(resumed)
    assert [k for k in a if not torch.equal(a[k], c[k])] == []


def test_a_spent_time_budget_validates_and_checkpoints_its_last_epoch(data, tmp_path):
    # the budget is spent by the first epoch: it is the run's last, so it is validated (the
    # best weights are a validated epoch's, not unselected ones) and checkpointed
    train_ds, valid = data
    model = get_model("sasrec", TINY).fit(
        train_ds,
        valid,
        epochs=10,
        batch_size=32,
        eval_every=3,
        time_budget_s=1e-9,
        checkpoint_dir=str(tmp_path / "ckpt"),
        checkpoint_every=5,
    )
    res = model.train_result
    assert res.epochs_run == 1 and "valid_ndcg@10" in res.history[-1]
    assert res.best_epoch == 1 and res.best_metric == res.history[-1]["valid_ndcg@10"]
    assert loop.has_checkpoint(str(tmp_path / "ckpt"))
