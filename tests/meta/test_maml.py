"""Numeric tests of the meta-learners on tiny networks (float64, no dropout)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from tests.conftest import split_cyclic
from warmrec import get_model
from warmrec.meta.learner import MetaLearner, trainable
from warmrec.meta.maml import MetaModel, TaskStream, make_task, meta_train, step_weights

SEQ = np.array([3, 4, 5, 6, 7, 8, 9, 10], dtype=np.int64)


def tiny(name: str = "sasrec", **extra):
    train, valid = split_cyclic(n_sessions=30, n_items=12, length=8, n_train=24, last_only=True)
    cfg = {**get_model(name).test_config, **extra}
    if name == "sasrec":
        cfg.update(d=8, ffn_dim=16, dropout=0.0, attn_dropout=0.0)
    if name == "gru4rec":
        cfg.update(hidden_size=8, training="windows")
    torch.manual_seed(0)
    m = get_model(name, cfg).fit(train, epochs=1, progress=False, seed=0)
    m.net.double()
    return m, train, valid


def task_for(meta: MetaModel, train, k: int = 4, n_query: int = 2):
    rng = np.random.default_rng(0)
    return make_task(
        meta.base, SEQ, k, n_query, meta.config.inner_steps, rng, train.vocab, train.key
    )


def meta_loss(meta: MetaModel, task, first_order: bool) -> torch.Tensor:
    return meta.run_task(task, first_order, meta.config.step_weights(meta.epoch))[1]


@pytest.mark.parametrize(
    ("name", "extra"),
    [("sasrec", {}), ("gru4rec", {}), ("gru4rec", {"loss": "bpr-max", "n_negatives": 8})],
)
def test_maml_meta_gradient_matches_finite_differences(name, extra):
    """(BPR-max: its fused backward is differentiable once; second order takes its plain form.)"""
    m, train, _ = tiny(name, **extra)
    meta = MetaModel(m, algorithm="maml", inner_steps=2, inner_lr=0.5, inner_grad_clip=0.0)
    task = task_for(meta, train)
    params = list(trainable(meta.net.base).values())
    torch.manual_seed(7)  # the same negatives in every evaluation (sampled losses)
    g2 = torch.autograd.grad(meta_loss(meta, task, False), params, allow_unused=True)
    torch.manual_seed(7)
    g1 = torch.autograd.grad(meta_loss(meta, task, True), params, allow_unused=True)
    gen = torch.Generator().manual_seed(1)
    v = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]

    def at(eps: float) -> float:
        with torch.no_grad():
            for p, d in zip(params, v):
                p.add_(eps * d)
        torch.manual_seed(7)
        out = float(meta_loss(meta, task, False).detach())
        with torch.no_grad():
            for p, d in zip(params, v):
                p.sub_(eps * d)
        return out

    eps = 1e-5
    fd = (at(eps) - at(-eps)) / (2 * eps)

    def dot(g):
        return float(sum((gi * d).sum() for gi, d in zip(g, v) if gi is not None))

    # BPR-max (ELU, softmax-weighted negatives) is the stiffest: its central difference is good to
    # ~2e-4; without its plain form in second order the gradient was 21 % off
    assert dot(g2) == pytest.approx(fd, rel=1e-3 if extra else 1e-4, abs=1e-7)
    # the first-order gradient is a different number: the test can tell them apart
    assert abs(dot(g1) - fd) > 1e-3 * abs(fd)


def test_fomaml_equals_gradient_of_hand_adapted_reference():
    m, train, _ = tiny()
    meta = MetaModel(m, algorithm="fomaml", inner_steps=3, inner_lr=0.3, inner_grad_clip=0.0)
    task = task_for(meta, train)
    got = torch.autograd.grad(meta.training_step([task]), list(trainable(meta.net.base).values()))

    ref = copy.deepcopy(m)
    ps = [p for p in ref.net.parameters() if p.requires_grad]
    ref.net.train()
    for batch in task.support:
        g = torch.autograd.grad(ref.training_step(batch), ps, allow_unused=True)
        with torch.no_grad():
            for p, gi in zip(ps, g):
                if gi is not None:
                    p -= 0.3 * gi
    ref.net.eval()
    logits = ref.forward_scores(task.hist)
    logits = logits.masked_fill(torch.arange(logits.shape[1]) == 0, float("-inf"))
    want = torch.autograd.grad(torch.nn.functional.cross_entropy(logits, task.targets), ps)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_mamlpp_step_weights_follow_the_schedule_and_lrs_get_gradients():
    w0 = step_weights(3, 0, 5)
    np.testing.assert_allclose(w0, [1 / 3] * 3)
    w2 = step_weights(3, 2, 5)
    assert w2[0] == pytest.approx(1 / 3 - 2 / 15) and w2[-1] == pytest.approx(1 / 3 + 4 / 15)
    assert w2.sum() == pytest.approx(1.0)
    w9 = step_weights(3, 9, 5)
    assert w9[0] == pytest.approx(0.01) and w9[-1] == pytest.approx(0.98)

    m, train, _ = tiny()
    meta = MetaModel(m, algorithm="mamlpp", inner_steps=3, msl_epochs=4, first_order_epochs=1)
    assert meta.config.first_order(0) and not meta.config.first_order(1)
    np.testing.assert_allclose(meta.config.step_weights(4), [0, 0, 1])
    task = task_for(meta, train)
    for epoch in (0, 2):  # first order, then second order
        meta.epoch = epoch
        lrs = list(meta.net.lrs.values())
        grads = torch.autograd.grad(meta.training_step([task]), lrs)
        for g in grads:
            assert g.shape == (3,)
            assert torch.isfinite(g).all() and (g != 0).all()


def test_loss_network_receives_gradients_and_starts_neutral():
    m, train, _ = tiny()
    meta = MetaModel(m, algorithm="maml", inner_steps=2, adaptive_loss=True).to("cpu")
    meta.net.loss_net.double()
    losses = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(
        meta.net.loss_net.weights(losses, 0, 2), torch.ones(3, dtype=torch.float64)
    )
    task = task_for(meta, train)
    ps = list(meta.net.loss_net.parameters())
    grads = torch.autograd.grad(meta.training_step([task]), ps)
    assert any(float(g.abs().sum()) > 0 for g in grads)
    assert all(torch.isfinite(g).all() for g in grads)


def test_adaptation_never_sees_a_query_item():
    m, train, valid = tiny()
    meta = MetaModel(m, algorithm="finetune", inner_steps=2)
    # training tasks: the support batches hold only the first k events
    task = task_for(meta, train, k=4, n_query=3)
    for b in task.support:
        assert set(b["items"].unique().tolist()) <= {0, *SEQ[:4].tolist()}
        assert set(b["targets"].unique().tolist()) <= {0, *SEQ[1:4].tolist()}
    # scoring: adaptation gets the history only
    seen: list[set[int]] = []
    orig = meta.base.training_step

    def spy(batch):
        seen.append(set(batch["items"].unique().tolist()) | set(batch["targets"].unique().tolist()))
        return orig(batch)

    meta.base.training_step = spy
    sub = valid.subset(np.arange(3))
    meta.score(sub.batch(np.arange(3), meta.history_len))
    assert seen
    allowed = set(sub.items[sub.starts[0] : sub.ends[-1]].tolist()) | {0}
    for s in seen:
        assert s <= allowed
    assert len(seen) == 3 * 2  # 3 users x 2 inner steps


def test_second_order_runs_without_cudnn_and_gru_double_backward_on_cpu():
    m, train, _ = tiny("gru4rec")
    flags: list[bool] = []
    orig = m.training_step

    def spy(batch):
        flags.append(torch.backends.cudnn.enabled)
        return orig(batch)

    m.training_step = spy
    learner = MetaLearner(m, first_order=False)
    batch = task_for(MetaModel(m, algorithm="maml", inner_steps=1), train).support[0]
    fast = learner.clone()
    fast.adapt(fast.loss(batch), 0.1)
    assert flags == [False]
    assert torch.backends.cudnn.enabled is True or not torch.backends.cudnn.is_available()
    m.net.train()  # a first-order inner step (training mode) keeps cuDNN
    learner.clone(first_order=True).loss(batch)
    assert flags[-1] == torch.backends.cudnn.enabled
    m.net.eval()  # a first-order query loss (eval mode, back-propagated): cuDNN's RNN refuses
    learner.clone(first_order=True).loss(batch)
    assert flags[-1] is False


@pytest.mark.parametrize("algorithm", ["maml", "fomaml", "mamlpp", "reptile"])
def test_meta_train_goes_through_the_loop(monkeypatch, algorithm):
    import warmrec.training.loop as loop

    calls = []
    real = loop.optimizer_step

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    m, train, _ = tiny()
    monkeypatch.setattr(loop, "optimizer_step", counting)
    before = {k: v.clone() for k, v in m.net.state_dict().items()}
    meta = meta_train(
        m,
        train,
        algorithm=algorithm,
        meta_epochs=1,
        meta_batch_size=12,
        inner_steps=1,
        train_shots=(2, 3),
    )
    assert len(calls) == TaskStream(meta, train).n_batches(12) >= 2
    changed = any(not torch.equal(before[k], v) for k, v in meta.net.base.state_dict().items())
    assert changed
    for k, v in m.net.state_dict().items():  # the pretrained model is left as it was
        assert torch.equal(before[k], v)


def test_save_and_load_keep_inner_lrs_and_loss_network(tmp_path):
    m, train, valid = tiny()
    m.net.float()
    meta = meta_train(
        m,
        train,
        algorithm="mamlpp",
        meta_epochs=1,
        first_order_epochs=0,  # a loss network learns through second-order gradients only
        adaptive_loss=True,
        meta_batch_size=24,
        inner_steps=2,
        train_shots=(2, 3),
    )
    with torch.no_grad():
        next(iter(meta.net.lrs.values()))[1] = 0.123
    meta.save(tmp_path / "mm")
    back = MetaModel.load(tmp_path / "mm")
    for k, v in meta.net.extras().items():
        torch.testing.assert_close(back.net.extras()[k], v)
    sub = valid.subset(np.arange(2))
    b = sub.batch(np.arange(2), meta.history_len)
    torch.testing.assert_close(back.score(b), meta.score(b))


def test_second_order_through_bidirectional_attention():
    """BERT4Rec's fused attention kernel has no double backward: second-order steps use the
    math kernel (this raised 'derivative ... not implemented' before)."""
    m, train, _ = tiny("bert4rec")
    meta = MetaModel(m, algorithm="maml", inner_steps=2, inner_grad_clip=0.0)
    task = task_for(meta, train, k=7, n_query=1)
    assert task.support
    ps = list(trainable(meta.net.base).values())
    grads = torch.autograd.grad(meta.training_step([task]), ps, allow_unused=True)
    assert all(g is None or torch.isfinite(g).all() for g in grads)
    assert any(g is not None and float(g.abs().sum()) > 0 for g in grads)


def test_seen_offset_is_differentiable_and_counts_each_item_once():
    from warmrec.models.layers import offset_items_

    value = torch.tensor(0.5, requires_grad=True)
    scores = torch.zeros(2, 5, requires_grad=True)
    out = scores * 1.0
    offset_items_(out, torch.tensor([[0, 2, 2], [3, 1, 0]]), value)
    expect = torch.tensor([[0, 0, 0.5, 0, 0], [0, 0.5, 0, 0.5, 0]])
    torch.testing.assert_close(out.detach(), expect)
    torch.nn.functional.cross_entropy(out, torch.tensor([2, 4])).backward()
    assert value.grad is not None and torch.isfinite(value.grad)


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        ({"algorithm": "fomaml", "adaptive_loss": True}, "fomaml takes first-order inner steps"),
        ({"algorithm": "reptile", "adaptive_loss": True}, "reptile takes first-order"),
        ({"algorithm": "mamlpp", "adaptive_loss": True, "meta_epochs": 2}, "first order for all 2"),
        ({"algorithm": "reptile", "learn_inner_lr": True}, "does not reach the inner"),
    ],
)
def test_meta_parts_that_could_never_learn_are_refused(settings, needle):
    """The loss network stayed exactly 0 under fomaml, and Reptile's inner rates as set."""
    from warmrec.config import build_config
    from warmrec.errors import ConfigError
    from warmrec.meta.maml import MetaConfig

    with pytest.raises(ConfigError, match=needle):
        build_config(MetaConfig, settings)


def test_reptiles_default_step_is_the_papers_epsilon():
    """The Adam rate 1e-3 as Reptile's SGD step moved the weights by 3e-4 of their norm."""
    from warmrec.config import build_config
    from warmrec.meta.maml import MetaConfig

    assert build_config(MetaConfig, {"algorithm": "reptile"}).outer_rate == 1.0
    assert build_config(MetaConfig, {"algorithm": "maml"}).outer_rate == 1e-3
    assert build_config(MetaConfig, {"algorithm": "reptile", "outer_lr": 0.5}).outer_rate == 0.5


def test_the_learned_loss_keeps_only_an_epoch_that_trained_its_network():
    """MAML++ with the learned loss: meta-valid may not keep an epoch within the first-order
    ones, whose loss network never had a gradient (its head all zeros: every example weighing
    1); the seed-0 run below scored best, tied, at epoch 1 and had kept it."""
    train, valid = split_cyclic(n_sessions=40, n_items=12, length=8, n_train=30, last_only=True)
    cfg = {**get_model("sasrec").test_config, "d": 8, "ffn_dim": 16}
    torch.manual_seed(0)
    m = get_model("sasrec", cfg).fit(train, epochs=1, progress=False, seed=0)
    settings = {"algorithm": "mamlpp", "adaptive_loss": True, "meta_epochs": 3,
                "first_order_epochs": 2, "inner_steps": 2, "train_shots": (2, 3),
                "outer_lr": 0.05, "seed": 0}  # fmt: skip
    meta = meta_train(m, train, settings, valid=valid)
    res = meta.train_result
    assert res.best_epoch == 3 and res.extra["adaptive_loss_trained"] is True
    assert float(meta.net.loss_net.head.weight.abs().sum()) > 0


def test_the_learned_loss_starts_from_the_config_seed_whatever_ran_before():
    """The loss network's hidden layer was drawn from the global torch generator: two MAML++
    runs with the learned loss and the same seed differed with what had run before them (a
    resumed cold-start study, another method first)."""
    m, train, _ = tiny()
    m.net.float()
    settings = {"algorithm": "mamlpp", "adaptive_loss": True, "first_order_epochs": 0,
                "meta_epochs": 1, "meta_batch_size": 8, "inner_steps": 2,
                "train_shots": (2, 3), "seed": 3}  # fmt: skip
    torch.manual_seed(0)
    a = MetaModel(m, settings)
    state = torch.random.get_rng_state()
    torch.manual_seed(1)
    b = MetaModel(m, settings)
    for k, v in a.net.loss_net.state_dict().items():
        torch.testing.assert_close(b.net.loss_net.state_dict()[k], v, rtol=0, atol=0)
    torch.manual_seed(0)
    MetaModel(m, settings)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global generator untouched
    runs = []
    for before in (0, 1):
        torch.manual_seed(before)
        runs.append(meta_train(m, train, settings).net.state_dict())
    for k, v in runs[0].items():
        torch.testing.assert_close(runs[1][k], v, rtol=0, atol=0)


@pytest.mark.parametrize(("override", "field"), [({"inner_steps": 3}, "inner_steps"),
                                                  ({"loss_hidden": 4}, "loss_hidden")])  # fmt: skip
def test_an_override_that_reshapes_a_learned_tensor_names_the_field(tmp_path, override, field):
    """MetaModel.load(path, inner_steps=3) of a MAML++ model with 2 learned per-step rates
    raised torch's RuntimeError listing every size mismatch."""
    from warmrec.errors import ModelError

    m, train, _ = tiny()
    m.net.float()
    meta = MetaModel(m, algorithm="mamlpp", inner_steps=2, adaptive_loss=True, loss_hidden=8)
    meta.save(tmp_path / "mm")
    with pytest.raises(ModelError, match=rf"learned with {field} = \d+ .*found {field} = "):
        MetaModel.load(tmp_path / "mm", **override)
    assert MetaModel.load(tmp_path / "mm", inner_lr=0.2).config.inner_lr == 0.2  # others load


def test_train_shots_longer_than_every_history_is_named_in_the_error():
    """It said "no user has at least 21 events": not which setting asked for 21."""
    from warmrec.errors import ModelError

    m, train, _ = tiny()
    longest = int(train.sequences.lengths.max())
    with pytest.raises(ModelError, match=rf"train_shots \[20\] .*the longest has {longest}"):
        meta_train(m, train, algorithm="fomaml", meta_epochs=1, train_shots=(20,))


def test_early_stopping_counts_from_the_first_epoch_that_trains_the_learned_loss():
    """MAML++ with the learned loss and first_order_epochs = 4: a validation plateau over the
    first-order epochs stopped the loop after 1 + patience of them, before any second-order
    epoch; the loss network came back all zeros (every example weighing 1) as "learned"."""
    from warmrec.meta.maml import fit_meta

    train, valid = split_cyclic(n_sessions=20, n_items=12, length=8, n_train=15, last_only=True)
    cfg = {**get_model("sasrec").test_config, "d": 8, "ffn_dim": 16}
    torch.manual_seed(0)
    m = get_model("sasrec", cfg).fit(train, epochs=1, progress=False, seed=0)
    settings = {"algorithm": "mamlpp", "adaptive_loss": True, "meta_epochs": 8,
                "first_order_epochs": 4, "inner_steps": 1, "train_shots": (2,),
                "meta_batch_size": 16, "outer_lr": 1e-7, "seed": 0}  # fmt: skip
    meta = MetaModel(copy.deepcopy(m), settings)
    res = fit_meta(meta, train, valid, trainer={"patience": 2})
    scores = [h["valid_ndcg@10"] for h in res.history]
    assert len(set(scores)) == 1  # the planted plateau: no epoch improves on the first
    # kept: epoch 5, the first second-order one; stopped 2 evaluations after it
    assert (res.epochs_run, res.best_epoch) == (7, 5)
    assert res.extra["adaptive_loss_trained"] is True
    assert float(meta.net.loss_net.head.weight.detach().abs().sum()) > 0


def test_a_meta_model_trained_on_a_gpu_loads_and_scores_on_the_cpu(tmp_path):
    """The saved config's device ("cuda", where it was meta-trained) came back with the net
    on the CPU: scoring moved the batch to CUDA (no CUDA: AssertionError; a GPU: tensors on two
    devices)."""
    m, train, valid = tiny()
    m.net.float()
    meta = MetaModel(m, algorithm="mamlpp", inner_steps=2, device="cuda")  # as trained there
    meta.save(tmp_path / "mm")
    back = MetaModel.load(tmp_path / "mm")
    assert back.device.type == "cpu" and back.config.device == "cpu"
    assert next(back.net.parameters()).device.type == "cpu"
    b = valid.subset(np.arange(2)).batch(np.arange(2), back.history_len)
    here = MetaModel(m, algorithm="mamlpp", inner_steps=2)
    torch.testing.assert_close(back.score(b), here.score(b))


@pytest.mark.parametrize("algorithm", ["maml", "fomaml", "reptile"])
def test_session_parallel_gru4rec_is_refused_in_one_line_naming_windows(algorithm):
    """Session-parallel batches walk one event per step: an inner step saw one transition (the
    support's first ``inner_steps``, never its latest events) and second order failed inside the
    GRU's fused step with torch's "differentiate twice"; window batches adapt on the support."""
    from warmrec.errors import ModelError

    train, _ = split_cyclic(n_sessions=30, n_items=12, length=8, n_train=24, last_only=True)
    cfg = {**get_model("gru4rec").test_config, "hidden_size": 8}
    base = get_model("gru4rec", {**cfg, "training": "session_parallel"}).fit(
        train, epochs=1, progress=False, seed=0
    )
    meta_cfg = {"algorithm": algorithm, "meta_epochs": 1, "inner_steps": 2, "train_shots": (2, 3)}
    with pytest.raises(ModelError, match="training='windows'"):
        meta_train(base, train, meta_cfg)
    per_user = MetaModel(base, algorithm="finetune", inner_steps=2)
    with pytest.raises(ModelError, match="training='windows'"):
        per_user.adapt(np.array([1, 2, 3, 4, 5, 6]))
    windows = get_model("gru4rec", {**cfg, "training": "windows"}).fit(
        train, epochs=1, progress=False, seed=0
    )
    meta_train(windows, train, meta_cfg)
    per_user = MetaModel(windows, algorithm="finetune", inner_steps=2)
    a, b = per_user.adapt(np.array([1, 2, 3, 4, 5, 6])), per_user.adapt(np.array([1, 2, 9, 8, 7]))
    assert any(not torch.equal(a.params[n], b.params[n]) for n in a.params)


@pytest.mark.parametrize("algorithm", ["finetune", "mamlpp"])
def test_a_meta_model_over_a_partly_frozen_base_scores_the_same_after_loading(tmp_path, algorithm):
    """Frozen parameters (a transferred model's encoder under adapters) are not adapted; the
    model file did not keep them frozen, so the loaded meta-learner adapted them too (other
    scores) and MAML++'s learned rates, saved for the trainable ones only, did not load."""
    from warmrec.models.base import Recommender

    m, train, valid = tiny()
    m.net.float()
    for name, p in m.net.named_parameters():
        p.requires_grad_(not name.startswith("encoder."))
    frozen = sorted(n for n, p in m.net.named_parameters() if not p.requires_grad)
    cfg = {"algorithm": algorithm, "meta_epochs": 1, "inner_steps": 2, "inner_lr": 0.5}
    meta = meta_train(m, train, {**cfg, "train_shots": (2, 3)})
    batch = valid.batch(np.arange(len(valid)), 8)
    want = meta.score(batch)
    meta.save(tmp_path / "meta")
    loaded = Recommender.load(tmp_path / "meta")
    assert torch.equal(loaded.score(batch), want)
    assert sorted(n for n, p in loaded.base.net.named_parameters() if not p.requires_grad) == frozen
