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
