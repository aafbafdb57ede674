"""Adapter-only directories: save the adapters of a transferred model, load them on the base;
strategies that inject adapters leave the model's own state alone."""

from __future__ import annotations

import json
import shutil
import warnings

import polars as pl
import pytest
import torch

from tests.conftest import cyclic_log, tiny_net
from tests.models.test_adapters import TRANSFORMER, bound, perturb, scores
from warmrec import EvalSet, SequenceDataset, get_model
from warmrec.data.vocab import ItemVocab
from warmrec.errors import ModelError
from warmrec.models.adapters import inject_adapters, inject_lora
from warmrec.models.base import Recommender
from warmrec.transfer.adapters import load_adapters, save_adapters


@pytest.fixture(scope="module")
def data():
    df = cyclic_log(n_sessions=40, n_items=12, length=6, seed=0)
    vocab = ItemVocab.from_ids(df["item_id"])
    return SequenceDataset.from_frame(df, vocab), EvalSet.from_sessions(df.head(60), vocab)


def test_save_adapters_only_and_load_on_the_base(data, tmp_path):
    train, valid = data
    model = get_model("sasrec", {**TRANSFORMER, "d": 32, "ffn_dim": 64})
    model.fit(train, epochs=1, batch_size=64)
    model.save(tmp_path / "base")
    inject_adapters(model.net, {"bottleneck": 2}, seed=0)
    inject_lora(model.net, {"r": 1}, seed=0)
    perturb(model.net, "up")
    perturb(model.net, "lora_B")
    for p in model.net.parameters():  # adapter-only training: the base is frozen
        p.requires_grad_(False)
    want = scores(model, valid)
    save_adapters(model, tmp_path / "ad")
    size = (tmp_path / "ad" / "model.safetensors").stat().st_size
    assert size * 4 < (tmp_path / "base" / "model.safetensors").stat().st_size
    loaded = load_adapters(tmp_path / "base", tmp_path / "ad")
    assert torch.equal(scores(loaded, valid), want)
    with pytest.raises(ModelError, match="no adapters"):
        save_adapters(Recommender.load(tmp_path / "base"), tmp_path / "none")
    with pytest.raises(ModelError, match="not an adapter directory"):
        load_adapters(tmp_path / "base", tmp_path / "base")
    with pytest.raises(ModelError, match="load_adapters"):
        Recommender.load(tmp_path / "ad")
    # a format-1 adapter directory (adapter_config.json + adapters.safetensors) still loads
    old = tmp_path / "old"
    old.mkdir()
    info = json.loads((tmp_path / "ad" / "config.json").read_text())
    keep = ("model", "config", "adapter", "lora", "extra_keys", "meta", "warmrec_version")
    legacy = {"format": 1, **{k: info[k] for k in keep}}
    (old / "adapter_config.json").write_text(json.dumps(legacy))
    shutil.copy(tmp_path / "ad" / "model.safetensors", old / "adapters.safetensors")
    assert torch.equal(scores(load_adapters(tmp_path / "base", old), valid), want)


def test_tampered_adapter_weights_are_one_line(data, tmp_path):
    train, _ = data
    model = bound("sasrec", train)
    model.save(tmp_path / "base")
    inject_adapters(model.net, {"bottleneck": 2}, seed=0)
    save_adapters(model, tmp_path / "ad")
    weights = tmp_path / "ad" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelError) as e:
        load_adapters(tmp_path / "base", tmp_path / "ad")
    msg = str(e.value)
    assert str(weights) in msg and "truncated" in msg and "\n" not in msg


@pytest.mark.parametrize("strategy", ["adapters", "lora", "discriminative", "freeze_encoder"])
def test_strategies_add_no_attribute_to_the_model_or_its_modules(strategy, data):
    from warmrec.transfer.strategies import apply_strategy

    train, _ = data
    for key in ("sasrec", "gru4rec-2layers"):
        if strategy == "lora" and key != "sasrec":
            continue
        model = bound(key, train)
        attrs = set(model.__dict__)
        mods = {n: set(m.__dict__) for n, m in model.net.named_modules()}
        apply_strategy(model, strategy, {"adapter": {"bottleneck": 4}, "lora": {"r": 2}})
        assert set(model.__dict__) == attrs
        assert not [k for k in model.net.__dict__ if "warmrec" in k]
        for name, keys in mods.items():
            mod = model.net.get_submodule(name) if name else model.net
            if type(mod).__module__ == "warmrec.models.adapters":
                continue  # the wrapper modules themselves
            assert set(mod.__dict__) == keys, name  # no replaced forward, no stray state


@pytest.mark.parametrize("name", ["vocab.json", "users.json"])
def test_an_adapter_vocabulary_linked_to_outside_is_refused(tmp_path, name):
    """An adapter folder's vocab.json and users.json were read through links leading outside
    (a model folder's went through the inside-the-directory check)."""
    df = cyclic_log(n_sessions=30, n_items=12, length=5, seed=0)
    df = df.with_columns(user_id=df["session_id"] % 7)
    train = SequenceDataset.from_frame(df)
    model = get_model("ssept", {**tiny_net("ssept"), "max_len": 4}).fit(train, epochs=1)
    model.save(tmp_path / "base")
    inject_lora(model.net, {"r": 1}, seed=0)
    save_adapters(model, tmp_path / "ad", include=["item.*", "user.*"])
    load_adapters(tmp_path / "base", tmp_path / "ad")  # loads as saved
    (tmp_path / "ad" / name).rename(tmp_path / name)
    (tmp_path / "ad" / name).symlink_to(tmp_path / name)
    with pytest.raises(ModelError, match="leads outside the model directory") as e:
        load_adapters(tmp_path / "base", tmp_path / "ad")
    assert name in str(e.value)


def _user_log(n_users: int) -> pl.DataFrame:
    df = cyclic_log(n_sessions=n_users, n_items=12, length=5, seed=1)
    return df.with_columns(user_id=df["session_id"]).drop("session_id")


def test_adapters_of_a_target_without_users_load_without_users(tmp_path):
    """An SSE-PT source with users, a target without (a session log): no users.json is saved,
    and loading fell back to the source's users, built a user table of their size and failed
    with a bare RuntimeError naming no file."""
    from warmrec.transfer import transfer

    source = get_model("ssept", {**tiny_net("ssept"), "max_len": 4})
    source.fit(SequenceDataset.from_frame(_user_log(20)), epochs=1, progress=False)
    assert source.user_vocab is not None and len(source.user_vocab) == 21
    source.save(tmp_path / "base")
    target_log = cyclic_log(n_sessions=30, n_items=12, length=5, seed=2)
    target_train = SequenceDataset.from_frame(target_log)
    assert target_train.user_vocab is None
    target = transfer(source, target_train, strategy="lora", init="random",
                      trainer={"epochs": 1, "progress": False})  # fmt: skip
    save_adapters(target, tmp_path / "ad")
    assert not (tmp_path / "ad" / "users.json").exists()
    loaded = load_adapters(tmp_path / "base", tmp_path / "ad")
    assert loaded.user_vocab is None and loaded.net.user.num_embeddings == 1
    valid = EvalSet.from_sessions(target_log.head(40), target_train.vocab)
    assert torch.equal(scores(loaded, valid), scores(target, valid))


def test_adapters_that_do_not_fit_their_base_name_the_adapter_folder(tmp_path):
    """A user table of another size than the adapter file's (here: users.json and its record
    removed by hand) was a bare RuntimeError; it is one ModelError line naming the folder."""
    from warmrec.transfer import transfer

    source = get_model("ssept", {**tiny_net("ssept"), "max_len": 4})
    source.fit(SequenceDataset.from_frame(_user_log(20)), epochs=1, progress=False)
    source.save(tmp_path / "base")
    target = transfer(source, SequenceDataset.from_frame(_user_log(9)), strategy="lora",
                      init="random", trainer={"epochs": 1, "progress": False})  # fmt: skip
    save_adapters(target, tmp_path / "ad")
    (tmp_path / "ad" / "users.json").unlink()
    info = json.loads((tmp_path / "ad" / "config.json").read_text())
    info["users"] = None
    (tmp_path / "ad" / "config.json").write_text(json.dumps(info))
    with pytest.raises(ModelError) as e:
        load_adapters(tmp_path / "base", tmp_path / "ad")
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 'ad'}: weights of the adapter file do not fit")
    assert "(12 items, 0 users)" in msg and "'user.weight' (10, 8), needs (1, 8)" in msg
    assert "\n" not in msg


def _bad_adapter(folder, **values) -> None:
    info = json.loads((folder / "config.json").read_text())
    info["adapter"] = {**info["adapter"], **values}
    (folder / "config.json").write_text(json.dumps(info))


def _three_folders(data, tmp_path) -> None:
    """A fitted SASRec saved as ``base``, then with adapters: the adapter folder ``ad`` and the
    model folder ``full`` carrying them."""
    train, _ = data
    model = get_model("sasrec", {**TRANSFORMER, "d": 32, "ffn_dim": 64})
    model.fit(train, epochs=1, batch_size=64)
    model.save(tmp_path / "base")
    inject_adapters(model.net, {"bottleneck": 2}, seed=0)
    save_adapters(model, tmp_path / "ad")
    model.save(tmp_path / "full")


def test_a_bad_adapter_config_names_config_json_and_the_field(data, tmp_path):
    """``"adapter": {"bottleneck": 0}`` was a bare ConfigError naming no file (an adapter
    folder) or named model.safetensors (a model folder carrying its adapters)."""
    _three_folders(data, tmp_path)
    _bad_adapter(tmp_path / "ad", bottleneck=0)
    with pytest.raises(ModelError) as e:
        load_adapters(tmp_path / "base", tmp_path / "ad")
    assert str(e.value).startswith(f"{tmp_path / 'ad' / 'config.json'}: field 'adapter.bottleneck'")
    assert str(e.value).endswith("expected an integer >= 1, found 0")
    _bad_adapter(tmp_path / "full", activation="swish")
    with pytest.raises(ModelError) as e:
        Recommender.load(tmp_path / "full")
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 'full' / 'config.json'}: field 'adapter.activation'")
    assert "model.safetensors" not in msg and "found 'swish'" in msg
    _bad_adapter(tmp_path / "full", activation="gelu", width=3)
    with pytest.raises(ModelError, match=r"config.json: field 'adapter': unknown key 'width'"):
        Recommender.load(tmp_path / "full")


def test_adapter_folders_edited_to_huge_sizes_are_refused_before_anything_is_allocated(
    data, tmp_path
):
    """An adapter bottleneck edited to 10**11 allocated [10**11, d] (terabytes) while loading a
    model folder; an adapter folder's model config edited to many layers built them all from the
    config before any check (n_layers = 10**30: minutes, then the memory exhausted). Both are
    now checked on the meta device first: one error naming the file."""
    _three_folders(data, tmp_path)
    with warnings.catch_warnings():  # the check on the meta device is silent
        warnings.simplefilter("error")
        Recommender.load(tmp_path / "full")
        load_adapters(tmp_path / "base", tmp_path / "ad")
    _bad_adapter(tmp_path / "full", bottleneck=10**11)
    with pytest.raises(ModelError) as e:
        Recommender.load(tmp_path / "full")
    msg = str(e.value)
    assert "model.safetensors" in msg and "expected (100000000000, 32)" in msg, msg
    info = json.loads((tmp_path / "ad" / "config.json").read_text())
    info["config"]["n_layers"] = 10**30
    (tmp_path / "ad" / "config.json").write_text(json.dumps(info))
    with pytest.raises(ModelError) as e:
        load_adapters(tmp_path / "base", tmp_path / "ad")
    msg = str(e.value)
    assert msg.startswith(str(tmp_path / "ad" / "config.json")), msg
    assert f"n_layers = {10**30}" in msg and "\n" not in msg, msg
