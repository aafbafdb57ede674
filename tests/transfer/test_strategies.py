"""Strategies: exactly which parameters train, which stay bit-identical under the real loop."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import cyclic_log, tiny_net
from warmrec import SequenceDataset, get_model
from warmrec.data.vocab import ItemVocab
from warmrec.errors import ConfigError, ModelError
from warmrec.training.loop import TrainerConfig, make_optimizer, train
from warmrec.transfer.strategies import (
    STRATEGIES,
    apply_strategy,
    layer_depths,
    parameter_roles,
)

# the pre-LN SASRec (one final LayerNorm "encoder.ln"), not the post-LN default
CFG = tiny_net("sasrec", n_layers=2, max_len=6, dropout=0.0, norm_first=True, emb_norm=False)
BLOCK = [
    "ln1.weight",
    "ln1.bias",
    "qkv.weight",
    "qkv.bias",
    "proj.weight",
    "proj.bias",
    "ln2.weight",
    "ln2.bias",
    "ffn.0.weight",
    "ffn.0.bias",
    "ffn.3.weight",
    "ffn.3.bias",
]
EMBED = {"item.embed.weight", "pos.embed.weight"}
DOMAIN = {"seen.value"}  # SeenItemBias: trains under every strategy
ENCODER = {f"encoder.blocks.{i}.{n}" for i in range(2) for n in BLOCK} | {
    "encoder.ln.weight",
    "encoder.ln.bias",
}


@pytest.fixture(scope="module")
def train_data():
    df = cyclic_log(n_sessions=24, n_items=10, length=6, seed=1)
    return SequenceDataset.from_frame(df, ItemVocab.from_ids(df["item_id"]))


def sasrec(train_data, **over):
    model = get_model("sasrec", {**CFG, **over})
    model._bind(train_data)
    torch.manual_seed(0)
    model.init_net()
    return model


def run_loop(model, train_data):
    """A few optimizer steps of the real loop on the model's own net (fine-tuning mode)."""
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    train(model, train_data, None, {"epochs": 1, "batch_size": 8, "lr": 1e-2}, fresh=False)
    after = model.net.state_dict()
    same = {k for k in before if torch.equal(before[k], after[k])}
    return same, set(before) - same


def trainable(model):
    return {n for n, p in model.net.named_parameters() if p.requires_grad}


def test_roles_of_sasrec_parameters(train_data):
    roles = parameter_roles(sasrec(train_data).net)
    assert {n for n, r in roles.items() if r == "item"} == {"item.embed.weight"}
    assert {n for n, r in roles.items() if r == "position"} == {"pos.embed.weight"}
    assert {n for n, r in roles.items() if r == "encoder"} == ENCODER
    assert {n for n, r in roles.items() if r == "domain"} == DOMAIN


@pytest.mark.parametrize(
    "strategy, want",
    [
        ("finetune", EMBED | ENCODER | DOMAIN),
        ("scratch", EMBED | ENCODER | DOMAIN),
        ("discriminative", EMBED | ENCODER | DOMAIN),
        ("freeze_embeddings", ENCODER | DOMAIN),
        ("freeze_encoder", EMBED | DOMAIN),
    ],
)
def test_plain_strategies_train_exactly_their_parameters(strategy, want, train_data):
    model = sasrec(train_data)
    report = apply_strategy(model, strategy)
    assert trainable(model) == want == set(report.trainable)
    same, changed = run_loop(model, train_data)
    assert same == (EMBED | ENCODER | DOMAIN) - want  # frozen: bit-identical
    assert changed == want  # everything that trains moved


def test_freeze_by_glob_patterns_with_exceptions(train_data):
    model = sasrec(train_data)
    apply_strategy(
        model, "freeze", {"freeze": ["encoder.blocks.*"], "train": ["encoder.blocks.1.ffn.*"]}
    )
    want = EMBED | DOMAIN | {"encoder.ln.weight", "encoder.ln.bias"}
    want |= {f"encoder.blocks.1.{n}" for n in BLOCK if n.startswith("ffn.")}
    assert trainable(model) == want
    same, changed = run_loop(model, train_data)
    assert changed == want and same == (EMBED | ENCODER | DOMAIN) - want
    # frozen parameters are not in the optimizer at all
    opt = make_optimizer(model.optimizer_groups(0.0), TrainerConfig())
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    frozen = [p for p in model.net.parameters() if not p.requires_grad]
    assert frozen and not any(id(p) in in_opt for p in frozen)


@pytest.mark.parametrize("strategy", ["adapters", "lora"])
def test_adapter_strategies_train_adapters_and_item_tables_only(strategy, train_data):
    model = sasrec(train_data)
    report = apply_strategy(model, strategy, {"adapter": {"bottleneck": 4}, "lora": {"r": 2}})
    part = "adapter" if strategy == "adapters" else "lora"
    added = {n for n, _ in model.net.named_parameters() if part in n}
    assert added and report.injected
    assert trainable(model) == added | {"item.embed.weight"} | DOMAIN
    same, changed = run_loop(model, train_data)
    assert changed == added | {"item.embed.weight"} | DOMAIN
    assert same == ENCODER | {"pos.embed.weight"}


def test_discriminative_learning_rates_decay_from_the_top(train_data):
    model = sasrec(train_data)
    report = apply_strategy(model, "discriminative", {"lr_decay": 0.5})
    scales = report.lr_scales
    assert scales["encoder.blocks.1.qkv.weight"] == 1.0
    assert scales["encoder.ln.weight"] == 1.0  # the head goes with the top block
    assert scales["encoder.blocks.0.qkv.weight"] == 0.5
    assert scales["pos.embed.weight"] == 0.25
    assert scales["item.embed.weight"] == 1.0  # new item tables train at the full rate
    opt = make_optimizer(model.optimizer_groups(0.1), TrainerConfig(lr=0.01))
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    params = dict(model.net.named_parameters())
    for name, scale in scales.items():
        assert lr_of[id(params[name])] == pytest.approx(0.01 * scale)
    wd = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert wd[id(params["encoder.blocks.0.qkv.weight"])] == 0.1
    assert wd[id(params["encoder.blocks.0.qkv.bias"])] == 0.0
    # without new-table treatment the item table sits with the embeddings
    depths = layer_depths(model.net, new_tables_top=False)
    assert depths["item.embed.weight"] == depths["pos.embed.weight"] == 2
    # another strategy removes the per-layer override
    apply_strategy(model, "finetune")
    assert model.lr_scales is None and "optimizer_groups" not in model.__dict__


def test_discriminative_depths_of_a_gru(train_data):
    model = get_model("gru4rec", {"hidden_size": 8, "n_layers": 2})
    model._bind(train_data)
    model.init_net()
    depths = layer_depths(model.net)
    assert depths["gru.gru.weight_ih_l1"] == 0 and depths["gru.gru.weight_hh_l0"] == 1
    assert depths["item.embed.weight"] == 0 and depths["item.bias"] == 0


def test_freeze_encoder_on_gru4rec_trains_item_tables_and_the_seen_bias_only(train_data):
    model = get_model("gru4rec", {"hidden_size": 8, "n_negatives": 4})
    model._bind(train_data)
    model.init_net()
    apply_strategy(model, "freeze_encoder")
    tables = {"item.embed.weight", "item.bias", "seen.value"}  # the seen-item bias is "domain"
    assert trainable(model) == tables
    same, changed = run_loop(model, train_data)
    assert changed == tables
    assert {k for k in same if k.startswith("gru.")} == {
        f"gru.gru.{w}_l0" for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    }


def test_bad_strategies(train_data):
    model = sasrec(train_data)
    with pytest.raises(ConfigError, match="expected one of"):
        apply_strategy(model, "unfreeze")
    with pytest.raises(ConfigError, match="freeze= glob"):
        apply_strategy(model, "freeze")
    with pytest.raises(ConfigError, match="unknown key"):
        apply_strategy(model, "finetune", {"decay": 0.1})
    with pytest.raises(ModelError, match="nothing to train"):
        apply_strategy(model, "freeze", {"freeze": ["*"]})
    assert len(STRATEGIES) == 9 and "zeroshot" in STRATEGIES


def test_a_freeze_pattern_that_matches_nothing_is_refused(train_data):
    """strategy freeze with freeze=["nomatch.*"] trained everything, as finetune, silently."""
    from warmrec.errors import ConfigError

    model = sasrec(train_data)
    with pytest.raises(ConfigError, match=r"freeze: the pattern\(s\) 'nomatch\.\*' match no"):
        apply_strategy(model, "freeze", {"freeze": ["nomatch.*"]})


@pytest.mark.parametrize("strategy", ["scratch", "adapters"])
@pytest.mark.parametrize("seed", [2**64, -1])
def test_a_strategy_seed_out_of_range_is_a_config_error(strategy, seed, train_data):
    """strategy_options.seed = 2**64 was a ValueError traceback from torch ('Overflow when
    unpacking long long'): it is bounded as train.seed, [0, 2**63), and named."""
    model = sasrec(train_data)
    with pytest.raises(ConfigError, match=r"seed.*2\*\*63|seed.*9223372036854775808"):
        apply_strategy(model, strategy, {"seed": seed})
