"""Multi-source pre-training: per-domain item tables around one shared encoder.

Two synthetic sources with disjoint catalogues and one rule each (``a``: item ``i`` is followed
by ``i + 1``; ``b``: by ``i + 2``, both cyclic): the shared encoder must serve both, and each
domain's valid HR@1 (the rule's next item) is known to be reachable.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from tests.conftest import tiny_net
from warmrec.data.dataset import EvalSet, SequenceDataset
from warmrec.data.vocab import ItemVocab
from warmrec.errors import ConfigError
from warmrec.transfer import transfer
from warmrec.transfer.multisource import Domain, domain_probabilities, pretrain_multisource

COLS = ["user_id", "item_id", "timestamp"]


def rule_log(offset: int, n_items: int, jump: int, n: int, length: int, seed: int):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n):
        i = int(rng.integers(n_items))
        for step in range(length):
            rows.append((u, offset + i, float(step)))
            i = (i + jump) % n_items
    return pl.DataFrame(rows, schema=COLS, orient="row")


def domain(name: str, offset: int, jump: int, n: int = 120) -> Domain:
    n_items = 12
    vocab = ItemVocab.from_ids(list(range(offset, offset + n_items)))
    log = rule_log(offset, n_items, jump, n, 6, seed=offset)
    train = SequenceDataset.from_frame(log, vocab)
    ev = rule_log(offset, n_items, jump, 24, 4, seed=offset + 1)
    valid = EvalSet.from_frames(
        ev.filter(pl.col("timestamp") < 3), ev.filter(pl.col("timestamp") == 3), vocab
    )
    return Domain(name, train, valid)


CFG = tiny_net("sasrec", dropout_all=0.0, d=16, n_heads=1, ffn_dim=32, max_len=5)


def test_domain_probabilities():
    sizes = {"a": 100, "b": 400}
    assert domain_probabilities(sizes, "size") == pytest.approx({"a": 0.2, "b": 0.8})
    assert domain_probabilities(sizes, "uniform") == pytest.approx({"a": 0.5, "b": 0.5})
    # temperature 2: sqrt sizes 10 and 20
    assert domain_probabilities(sizes, "temperature", 2.0) == pytest.approx(
        {"a": 1 / 3, "b": 2 / 3}
    )
    with pytest.raises(ConfigError, match="sampling"):
        domain_probabilities(sizes, "bogus")


def test_joint_pretraining_shares_the_encoder_and_learns_both_rules():
    doms = [domain("a", 1, 1), domain("b", 101, 2)]
    res = pretrain_multisource(
        "sasrec", doms, CFG, {"steps": 300, "batch_size": 32, "lr": 1e-2, "warmup_steps": 10}
    )
    a, b = res.models["a"], res.models["b"]
    assert res.shared and "item" not in res.shared and "seen" not in res.shared
    for child in res.shared:
        assert getattr(a.net, child) is getattr(b.net, child)
    assert a.net.item is not b.net.item and a.net.seen is not b.net.seen
    assert sum(res.steps.values()) == 300 and min(res.steps.values()) > 50
    # each domain's valid target is its rule's next item: learned for both (chance HR@10 ~ 0.83
    # of 12, so judge HR@1 via NDCG@10 near 1)
    assert res.valid["a"]["ndcg@10"] > 0.9 and res.valid["b"]["ndcg@10"] > 0.9
    assert res.peak_rss_mb > 0 and res.seconds > 0
    assert a.meta.role == "source" and len(a.meta.item_counts) == len(doms[0].train.vocab)


def test_sequential_trains_one_domain_at_a_time():
    doms = [domain("a", 1, 1), domain("b", 101, 2)]
    res = pretrain_multisource(
        "sasrec", doms, CFG,
        {"order": "sequential", "sampling": "uniform", "steps": 40, "lr": 1e-2},
    )  # fmt: skip
    assert res.steps == {"a": 20, "b": 20}


def test_item_tables_move_only_on_their_own_batches():
    doms = [domain("a", 1, 1), domain("b", 101, 2, n=2)]
    torch.manual_seed(0)
    res = pretrain_multisource(
        "sasrec", doms, CFG,
        {"order": "sequential", "sampling": "size", "steps": 1, "lr": 1e-2, "warmup_steps": 0},
    )  # fmt: skip
    assert res.steps == {"a": 1, "b": 0}
    # b never trained: its item table is still its initial one (zero padding row, small normal)
    w = res.models["b"].net.item.embed.weight.detach()
    assert float(w.std()) < 0.05


def test_shape_keys_cannot_differ_per_domain():
    a, b = domain("a", 1, 1), domain("b", 101, 2)
    b.config = {"d": 32}
    with pytest.raises(ConfigError, match="shape the shared encoder"):
        pretrain_multisource("sasrec", [a, b], CFG, {"steps": 1})


def test_a_domain_model_transfers_like_any_source():
    doms = [domain("a", 1, 1), domain("b", 101, 2)]
    res = pretrain_multisource("sasrec", doms, CFG, {"steps": 100, "lr": 1e-2})
    tgt = domain("t", 501, 1)
    model = transfer(res.models["b"], tgt.train, tgt.valid, strategy="freeze_encoder",
                     init="random", trainer={"epochs": 1})  # fmt: skip
    src = res.models["b"].net.state_dict()
    for k, v in model.net.state_dict().items():
        if k.startswith("encoder."):
            assert torch.equal(v, src[k]), k
