"""Bottleneck adapters and LoRA: identity at init, where they act, merge/unload, saved whole."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.conftest import cyclic_log, tiny_net
from warmrec import EvalSet, SequenceDataset, get_model
from warmrec.data.vocab import ItemVocab
from warmrec.errors import ConfigError, ModelError
from warmrec.models.adapters import (
    AdapterConfig,
    LoraConfig,
    adapter_state_dict,
    inject_adapters,
    inject_lora,
    load_adapter_state,
    merge_and_unload,
    unload,
)
from warmrec.models.base import Recommender

TRANSFORMER = tiny_net("sasrec", n_layers=2, n_heads=2, ffn_dim=32)
MODELS = {
    "sasrec": TRANSFORMER,
    "sasrec-postln": {**TRANSFORMER, "norm_first": False},
    "bert4rec": TRANSFORMER,
    "ssept": tiny_net("ssept"),
    "bst": tiny_net("bst", n_heads=2, ffn_dim=32),
    "gru4rec": tiny_net("gru4rec"),
    "gru4rec-2layers": tiny_net("gru4rec", n_layers=2),
    "narm": tiny_net("narm"),
    "narm-2layers": tiny_net("narm", n_layers=2),
}


@pytest.fixture(scope="module")
def data():
    df = cyclic_log(n_sessions=40, n_items=12, length=6, seed=0)
    vocab = ItemVocab.from_ids(df["item_id"])
    return SequenceDataset.from_frame(df, vocab), EvalSet.from_sessions(df.head(60), vocab)


def bound(key: str, train: SequenceDataset):
    model = get_model(key.split("-")[0], MODELS[key])
    model._bind(train)
    torch.manual_seed(0)
    model.init_net()
    model.net.eval()
    return model


def scores(model, valid: EvalSet) -> torch.Tensor:
    return model.score(valid.batch(torch.arange(len(valid)).numpy(), 8))


def perturb(net: torch.nn.Module, part: str) -> None:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if part in name.split("."):
                p.add_(torch.randn(p.shape, generator=g) * 0.3)


@pytest.mark.parametrize("key", list(MODELS))
def test_adapters_start_as_the_base_and_then_change_it(key, data):
    train, valid = data
    model = bound(key, train)
    base = scores(model, valid)
    places = inject_adapters(model.net, {"bottleneck": 4}, seed=0)
    assert places
    assert torch.allclose(scores(model, valid), base, atol=1e-5)
    perturb(model.net, "up")
    assert not torch.allclose(scores(model, valid), base, atol=1e-3)
    unload(model.net)
    assert not adapter_state_dict(model.net)
    assert torch.allclose(scores(model, valid), base, atol=1e-6)


def test_adapter_places_and_names(data):
    model = bound("sasrec", data[0])
    places = inject_adapters(model.net, AdapterConfig(bottleneck=4, ffn=False))
    assert places == ["encoder.blocks.0.proj", "encoder.blocks.1.proj"]
    names = sorted(adapter_state_dict(model.net))
    assert names[0] == "encoder.blocks.0.proj.adapter.down.bias"
    assert len(names) == 8  # 2 blocks x (down, up) x (weight, bias)
    # base parameter names are untouched
    assert "encoder.blocks.0.proj.weight" in dict(model.net.named_parameters())
    with pytest.raises(ModelError, match="already"):
        inject_adapters(model.net)
    gru = bound("gru4rec-2layers", data[0])
    assert inject_adapters(gru.net) == ["gru.gru"]
    assert len(gru.net.gru.gru.adapters) == 2
    with pytest.raises(ConfigError, match="bottleneck"):
        AdapterConfig(bottleneck=0)


def test_gru_adapters_agree_between_step_training_and_scoring(data):
    """Session-parallel steps (training) and the packed forward (scoring) see the same adapters."""
    train, _ = data
    model = bound("gru4rec-2layers", train)
    inject_adapters(model.net, {"bottleneck": 4})
    perturb(model.net, "up")
    items = torch.tensor([[3, 4, 5, 6], [7, 8, 1, 2]])
    block = model.net.gru
    h = block.init_state(2, "cpu")
    for t in range(items.shape[1]):
        out, h = block.step(model.net.embed(items[:, t]), h)
    lengths = torch.tensor([4, 4])
    assert torch.allclose(block(model.net.embed(items), lengths), out, atol=1e-5)


def test_layerwise_gru_equals_the_fused_gru_with_zero_adapters(data):
    model = bound("narm-2layers", data[0])
    x = torch.randn(3, 5, 16)
    ref, h_ref = model.net.gru.gru(x)
    inject_adapters(model.net)
    out, h = model.net.gru.gru(x)
    assert torch.allclose(out, ref, atol=1e-6) and torch.allclose(h, h_ref, atol=1e-6)


@pytest.mark.parametrize("key", ["sasrec", "bert4rec", "ssept", "bst"])
def test_lora_starts_as_the_base_and_merges_exactly(key, data):
    train, valid = data
    model = bound(key, train)
    base = scores(model, valid)
    places = inject_lora(model.net, LoraConfig(r=2, alpha=4.0), seed=0)
    assert all(p.endswith((".qkv", ".proj")) for p in places)
    assert torch.allclose(scores(model, valid), base, atol=1e-6)
    perturb(model.net, "lora_B")
    adapted = scores(model, valid)
    assert not torch.allclose(adapted, base, atol=1e-3)
    assert merge_and_unload(model.net) == len(places)
    assert not adapter_state_dict(model.net)
    assert torch.allclose(scores(model, valid), adapted, atol=1e-4)


def test_lora_targets_only_the_chosen_projections(data):
    model = bound("sasrec", data[0])
    inject_lora(model.net, {"r": 2, "targets": ["q", "v"]})
    perturb(model.net, "lora_B")
    block = model.net.encoder.blocks[0]
    delta = block.qkv.lora.delta_weight()
    assert delta.shape == (48, 16)
    assert delta[:16].abs().sum() > 0 and delta[32:].abs().sum() > 0
    assert torch.equal(delta[16:32], torch.zeros(16, 16))  # k untouched
    assert not hasattr(block.proj, "lora")
    with pytest.raises(ModelError, match="no attention"):
        inject_lora(bound("gru4rec", data[0]).net)
    with pytest.raises(ConfigError, match="targets"):
        LoraConfig(targets=("w",))


def test_adapters_survive_deepcopy(data):
    train, valid = data
    model = bound("sasrec", train)
    inject_adapters(model.net)
    perturb(model.net, "up")
    before = scores(model, valid)
    clone = copy.deepcopy(model)
    assert torch.allclose(scores(clone, valid), before)
    perturb(clone.net, "up")  # the copy's hooks use the copy's adapters
    assert torch.allclose(scores(model, valid), before)
    assert not torch.allclose(scores(clone, valid), before, atol=1e-3)


def test_adapter_state_round_trip(data):
    train, valid = data
    a, b = bound("sasrec", train), bound("sasrec", train)
    inject_adapters(a.net)
    inject_lora(a.net)
    perturb(a.net, "up")
    perturb(a.net, "lora_B")
    inject_adapters(b.net)
    inject_lora(b.net)
    load_adapter_state(b.net, adapter_state_dict(a.net))
    assert torch.equal(scores(a, valid), scores(b, valid))
    with pytest.raises(ModelError, match="do not match"):
        load_adapter_state(bound("sasrec", train).net, adapter_state_dict(a.net))


def _structure(net: torch.nn.Module) -> list[tuple[str, type, int]]:
    return [(n, type(m), id(m)) for n, m in net.named_modules()]


def _hooks(net: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in net.modules())


@pytest.mark.parametrize("key", ["sasrec", "gru4rec", "gru4rec-2layers", "narm"])
def test_unload_restores_the_exact_original_modules_and_outputs(key, data):
    train, valid = data
    model = bound(key, train)
    before = _structure(model.net)
    params = [(n, id(p)) for n, p in model.net.named_parameters()]
    text = repr(model.net)
    base = scores(model, valid)
    inject_adapters(model.net, {"bottleneck": 4}, seed=0)
    if key == "sasrec":
        inject_lora(model.net, {"r": 2}, seed=0)
        perturb(model.net, "lora_B")
    perturb(model.net, "up")
    assert not torch.allclose(scores(model, valid), base, atol=1e-3)
    assert _structure(model.net) != before
    unload(model.net)
    assert _structure(model.net) == before  # the very same module objects, in place
    assert [(n, id(p)) for n, p in model.net.named_parameters()] == params
    assert repr(model.net) == text and _hooks(model.net) == 0
    assert torch.equal(scores(model, valid), base)


def test_unloading_a_copy_leaves_the_original_adapted(data):
    train, valid = data
    model = bound("gru4rec-2layers", train)
    inject_adapters(model.net, {"bottleneck": 4}, seed=0)
    perturb(model.net, "up")
    want = scores(model, valid)
    twin = copy.deepcopy(model)
    unload(twin.net)
    assert _hooks(twin.net) == 0 and _hooks(model.net) == 1
    assert torch.equal(scores(model, valid), want)
    assert not torch.allclose(scores(twin, valid), want, atol=1e-3)


@pytest.mark.parametrize("key", ["sasrec", "gru4rec-2layers"])
def test_a_model_saved_with_adapters_loads_as_a_whole(key, data, tmp_path):
    """Issue 9: a directory made by ``transfer --strategy adapters`` must load for evaluate."""
    train, valid = data
    model = bound(key, train)
    inject_adapters(model.net, {"bottleneck": 3}, seed=0)
    if key == "sasrec":
        inject_lora(model.net, {"r": 2, "targets": ("q", "v")}, seed=0)
        perturb(model.net, "lora_B")
    perturb(model.net, "up")
    want = scores(model, valid)
    model.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    assert torch.equal(scores(loaded, valid), want)
    assert sorted(loaded.net.state_dict()) == sorted(model.net.state_dict())
