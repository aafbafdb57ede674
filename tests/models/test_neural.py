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
