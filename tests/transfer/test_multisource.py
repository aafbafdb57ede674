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

from tests.conftest import global_generator_meddler, tiny_net
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


def domain(name: str, offset: int, jump: int, n: int = 120, n_items: int = 12) -> Domain:
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


@pytest.mark.parametrize("order", ["joint", "sequential"])
def test_same_weights_whatever_another_thread_draws(order):
    """Beside another thread that keeps seeding torch's global generator (under the lock, as a
    fit's setup does) and drawing from it, a run gives what it gives alone: the nets are built
    under :func:`warmrec.rng.seeded_global` and the steps (dropout, sampled negatives) draw
    from the run's own generators. Before, every step drew from the global generator, which the
    other thread kept re-seeding."""
    cfg = tiny_net("sasrec", dropout_all=0.3, d=16, n_heads=1, ffn_dim=32, max_len=5,
                   loss="sampled_ce", n_negatives=4)  # fmt: skip
    multi = {"order": order, "steps": 20, "batch_size": 16, "lr": 1e-2, "warmup_steps": 2}

    def weights() -> dict[str, torch.Tensor]:
        res = pretrain_multisource("sasrec", [domain("a", 1, 1), domain("b", 101, 2)], cfg, multi)
        return {
            f"{d}/{k}": v.clone()
            for d, m in res.models.items()
            for k, v in m.net.state_dict().items()
        }

    alone = weights()
    with global_generator_meddler():
        beside = weights()
    assert [k for k in alone if not torch.equal(alone[k], beside[k])] == []


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


# -- the domain token -------------------------------------------------------------------------
def pick_log(offset: int, pick: int, n: int, seed: int, n_items: int = 40) -> pl.DataFrame:
    """Sequences ``x1 x2 x3 y`` of three distinct random items, then ``y = x[pick]``."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n):
        x = rng.choice(n_items, 3, replace=False)
        for t, i in enumerate([*x, x[pick]]):
            rows.append((u, offset + int(i), float(t)))
    return pl.DataFrame(rows, schema=COLS, orient="row")


def pick_domain(name: str, offset: int, pick: int) -> Domain:
    vocab = ItemVocab.from_ids(list(range(offset, offset + 40)))
    train = SequenceDataset.from_frame(pick_log(offset, pick, 300, offset), vocab)
    ev = pick_log(offset, pick, 60, offset + 1)
    valid = EvalSet.from_frames(
        ev.filter(pl.col("timestamp") < 3), ev.filter(pl.col("timestamp") == 3), vocab
    )
    return Domain(name, train, valid)


TOKEN_CFG = tiny_net("sasrec", dropout_all=0.0, d=32, n_heads=1, ffn_dim=32, max_len=5)
TOKEN_RUN = {
    "steps": 1500,
    "batch_size": 32,
    "lr": 5e-3,
    "warmup_steps": 10,
    "seed": 0,
    "num_threads": 1,
}


def test_domain_token_lets_the_shared_encoder_learn_rules_that_differ_only_by_domain():
    # both domains: three random distinct items, then one of them again -- the first in a, the
    # second in b. The histories look alike, so only the domain says which one to repeat; the
    # token says it at every position. (Without it the item tables could in principle carry a
    # domain mark too, but within this budget the shared encoder settles for one rule.)
    def run(token: bool) -> dict[str, float]:
        doms = [pick_domain("a", 1, 0), pick_domain("b", 1001, 1)]
        res = pretrain_multisource("sasrec", doms, TOKEN_CFG, {**TOKEN_RUN, "domain_token": token})
        return {k: v["ndcg@10"] for k, v in res.valid.items()}

    without, with_token = run(False), run(True)
    # (seeds 0, 1, 2 by hand: without the token the worse domain reaches 0.68-0.91, with it
    # 0.96-1.0; the mean gains 0.06-0.17)
    assert min(with_token.values()) > 0.95, with_token
    assert np.mean(list(with_token.values())) - np.mean(list(without.values())) > 0.05


def test_domain_token_is_kept_per_domain_saved_and_transferred(tmp_path):
    from warmrec.models.base import Recommender
    from warmrec.models.layers import DomainToken
    from warmrec.transfer.strategies import parameter_roles
    from warmrec.transfer.transfer import build_target_model

    doms = [pick_domain("a", 1, 0), pick_domain("b", 1001, 1)]
    res = pretrain_multisource(
        "sasrec", doms, TOKEN_CFG, {"steps": 60, "lr": 1e-2, "domain_token": True}
    )
    a, b = res.models["a"], res.models["b"]
    assert isinstance(a.net.domain, DomainToken) and a.net.domain is not b.net.domain
    assert "domain" not in res.shared and a.net.encoder is b.net.encoder
    va, vb = a.net.domain.value.detach(), b.net.domain.value.detach()
    assert float(va.abs().sum()) > 0 and not torch.allclose(va, vb)
    # the token changes what the shared encoder computes: a's history with b's vector differs
    items = torch.tensor([[0, 0, 1, 2, 3]])
    h = a.net(items)
    with torch.no_grad():
        a.net.domain.value.copy_(vb)
        assert not torch.allclose(a.net(items), h)
        a.net.domain.value.copy_(va)

    # a saved per-domain model carries its own vector and scores identically when loaded
    b.save(tmp_path / "b")
    loaded = Recommender.load(tmp_path / "b")
    assert loaded.config.domain_token
    assert torch.equal(loaded.net.domain.value.detach(), vb)
    hist = doms[1].valid
    b.net.eval()
    x = torch.tensor([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]])
    with torch.no_grad():
        want = b.net.item.logits(b.net(x)[:, -1])
        got = loaded.net.item.logits(loaded.net(x)[:, -1])
    assert torch.equal(got, want)
    from warmrec.evaluation.evaluate import evaluate

    ra = evaluate(b, hist, ["ndcg@10"]).per_example["ndcg@10"]
    rb = evaluate(loaded, hist, ["ndcg@10"]).per_example["ndcg@10"]
    np.testing.assert_array_equal(np.asarray(ra), np.asarray(rb))

    # transferred: the anchor's vector, or 0 with reset_domain; it trains under every strategy
    tgt = pick_domain("t", 5001, 0)
    kept, _ = build_target_model(b, tgt.train, init="random")
    assert torch.equal(kept.net.domain.value.detach(), vb)
    fresh, _ = build_target_model(b, tgt.train, init="random", reset_domain=True)
    assert float(fresh.net.domain.value.detach().abs().sum()) == 0.0
    assert parameter_roles(fresh.net)["domain.value"] == "domain"
    model = transfer(b, tgt.train, tgt.valid, strategy="freeze_encoder", init="random",
                     reset_domain=True, trainer={"epochs": 1})  # fmt: skip
    assert model.net.domain.value.requires_grad
    assert float(model.net.domain.value.detach().abs().sum()) > 0  # it trained from 0


def test_domain_token_needs_a_model_that_has_one():
    doms = [pick_domain("a", 1, 0), pick_domain("b", 1001, 1)]
    with pytest.raises(ConfigError, match="domain_token"):
        pretrain_multisource(
            "gru4rec", doms, tiny_net("gru4rec"), {"steps": 1, "domain_token": True}
        )


def test_pretraining_reports_its_steps_in_a_log(capsys):
    from warmrec.training.loop import epoch_lines

    doms = [domain("a", 1, 1, n=40), domain("b", 101, 2, n=40)]
    with epoch_lines():
        pretrain_multisource("sasrec", doms, CFG, {"steps": 30, "batch_size": 16})
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 10, lines
    assert lines[2].startswith("pretrain-multi: step 9/30, loss a ") and ", b " in lines[2]
    # outside the log mode (the library's default away from a terminal): nothing
    pretrain_multisource("sasrec", doms, CFG, {"steps": 30, "batch_size": 16})
    assert capsys.readouterr().err == ""


def test_a_temperature_without_temperature_sampling_is_refused():
    """--sampling size --temperature 7 recorded temperature 7 and drew by size (T = 1)."""
    from warmrec.config import build_config
    from warmrec.transfer.multisource import MultiSourceConfig

    with pytest.raises(ConfigError, match="applies to sampling 'temperature' only"):
        build_config(MultiSourceConfig, {"sampling": "size", "temperature": 7})
    assert build_config(MultiSourceConfig, {"temperature": 3}).temperature == 3


# -- per-domain tables ----------------------------------------------------------------------------
def test_ssept_users_stay_with_their_domain():
    """Two domains with as many users each: SSE-PT's user table was shared (the domains' users
    taken for the same people); with different numbers of users the run was refused."""
    cfg = tiny_net("ssept", dropout_all=0.0, sse_item=0.0, sse_user=0.0)
    for n_b in (120, 90):
        doms = [domain("a", 1, 1), domain("b", 101, 2, n=n_b)]
        res = pretrain_multisource("ssept", doms, cfg, {"steps": 4, "batch_size": 16})
        a, b = res.models["a"].net, res.models["b"].net
        assert "user" not in res.shared and "encoder" in res.shared
        assert a.user is not b.user and a.encoder is b.encoder
        assert b.user.num_embeddings == n_b + 1


@pytest.mark.parametrize("training", ["session_parallel", "windows"])
def test_gru4rec_pretrains_with_its_input_table_per_domain(training):
    """GRU4Rec: session-parallel data had no ``n_targets_total`` (AttributeError), and the untied
    input table ``input`` was shared (refused where the catalogues differ in size)."""
    cfg = tiny_net("gru4rec", tied=False, embedding_dim=8, dropout_all=0.0, training=training)
    doms = [domain("a", 1, 1), domain("b", 101, 2, n_items=10)]
    res = pretrain_multisource("gru4rec", doms, cfg, {"steps": 200, "lr": 1e-2, "batch_size": 16})
    a, b = res.models["a"].net, res.models["b"].net
    assert "input" not in res.shared and "gru" in res.shared
    assert a.input is not b.input and a.gru is b.gru
    assert a.input.num_embeddings != b.input.num_embeddings
    assert sum(res.steps.values()) == 200
    assert res.valid["a"]["hr@10"] > 0.8 and res.valid["b"]["hr@10"] > 0.5


def test_gru4rec_with_sparse_item_tables_is_refused_up_front():
    cfg = tiny_net("gru4rec", loss="sampled_ce", n_negatives=4)
    with pytest.raises(ConfigError, match="sparse_items = false"):
        pretrain_multisource("gru4rec", [domain("a", 1, 1), domain("b", 101, 2)], cfg)


def test_sequential_counts_sum_to_the_steps_and_none_is_negative():
    """Rounding each share on its own gave [2, 2, 2, -1] here (np.repeat's ValueError)."""
    from warmrec.transfer.multisource import sequential_counts

    p = list(domain_probabilities({"a": 750, "b": 750, "c": 750, "d": 5}, "size").values())
    assert sequential_counts(p, 5) == [2, 2, 1, 0]
    assert sequential_counts([0.5, 0.5], 40) == [20, 20]
    rng = np.random.default_rng(0)
    for _ in range(200):
        q = rng.dirichlet(np.full(int(rng.integers(1, 6)), 0.3))
        steps = int(rng.integers(1, 50))
        counts = sequential_counts(q.tolist(), steps)
        assert sum(counts) == steps and min(counts) >= 0
        assert all(abs(c - x * steps) < 1 for c, x in zip(counts, q))


def test_a_sequential_run_with_a_tiny_domain_trains():
    """Four domains of 750, 750, 750 and 5 targets, 5 steps: the last domain's count came out
    -1 (np.repeat raised ValueError)."""
    doms = [
        domain(k, 100 * i + 1, 1, n=n) for i, (k, n) in enumerate(zip("abcd", (150,) * 3 + (1,)))
    ]
    res = pretrain_multisource(
        "sasrec", doms, CFG, {"order": "sequential", "sampling": "size", "steps": 5}
    )
    assert res.steps == {"a": 2, "b": 2, "c": 1, "d": 0}


def test_weight_decay_falls_on_matrices_only(monkeypatch):
    """As the training loop's ``decay_groups``: biases and norms are not decayed (one group
    decayed every parameter, LayerNorm gains and biases pulled towards 0)."""
    import warmrec.transfer.multisource as ms

    seen: list[list[dict]] = []
    real = torch.optim.Adam

    def spy(groups, **kw):
        groups = list(groups)
        seen.append(groups)
        return real(groups, **kw)

    monkeypatch.setattr(ms.torch.optim, "Adam", spy)
    doms = [domain("a", 1, 1), domain("b", 101, 2)]
    pretrain_multisource("sasrec", doms, CFG, {"steps": 2, "weight_decay": 0.1})
    (groups,) = seen
    decay = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert decay and {d for d in decay.values()} == {0.0, 0.1}
    for g in groups:
        for p in g["params"]:
            assert g["weight_decay"] == (0.1 if p.dim() >= 2 else 0.0)


@pytest.mark.parametrize(
    ("cfg", "where", "found"),
    [
        ({"sources": 3}, "[sources.<label>] tables", "int 3"),
        ({"sources": {"a": "log.csv"}}, "sources.a:", "str 'log.csv'"),
        ({"model": "sasrec", "sources": {"a": {"data": {}}}}, "model:", "str 'sasrec'"),
        ({"sources": {"a": {"data": {}, "model": 3}}}, "sources.a.model:", "int 3"),
    ],
)
def test_a_config_section_that_is_no_table_is_one_config_error(cfg, where, found, tmp_path):
    """A section given a value instead of a table (``--set sources=3``, ``--set
    sources.a=log.csv``) was a TypeError/ValueError traceback: one ConfigError naming it."""
    from warmrec.transfer.multisource import run_multisource

    with pytest.raises(ConfigError, match="expected") as e:
        run_multisource(cfg, tmp_path / "out")
    assert where in str(e.value) and found in str(e.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("seed", [-1, 2**64])
def test_a_multisource_seed_out_of_range_is_a_config_error(seed):
    """multi.seed = -1 (numpy: 'expected non-negative integer') or 2**64 (torch: 'Overflow when
    unpacking long long') were tracebacks: the seed is bounded as train.seed, [0, 2**63)."""
    from warmrec.config import build_config
    from warmrec.transfer.multisource import MultiSourceConfig

    with pytest.raises(ConfigError, match=r"seed.*9223372036854775808"):
        build_config(MultiSourceConfig, {"seed": seed})
