"""transfer(): source -> target model on tiny synthetic cross-domain data, every strategy."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import tiny_net
from warmrec import EvalSet, SequenceDataset, get_model
from warmrec.data.synthetic import generate_cross_domain
from warmrec.data.vocab import ItemVocab
from warmrec.errors import ConfigError, ModelError
from warmrec.models.base import Recommender
from warmrec.transfer import (
    build_target_model,
    load_adapters,
    pretrain,
    save_adapters,
    titles_from_frame,
    transfer,
)
from warmrec.transfer.transfer import resize_positions

TRAINER = {"epochs": 1, "batch_size": 32, "lr": 1e-2}
CONFIGS = {
    "sasrec": tiny_net("sasrec"),
    "ssept": tiny_net("ssept"),
    "bert4rec": tiny_net("bert4rec"),
    "gru4rec": tiny_net("gru4rec", n_negatives=8, tied=False, embedding_dim=8),
    "narm": tiny_net("narm"),
    "bst": tiny_net("bst", item_features=("topic",), user_features=()),
}


@pytest.fixture(scope="module")
def domains():
    cd = generate_cross_domain(200, 60, 60, 30, seed=0)
    s_vocab = ItemVocab.from_ids(cd.source_items["item_id"])
    t_vocab = ItemVocab.from_ids(cd.target_items["item_id"])
    s_feat = cd.source_items.select("item_id", "topic")
    t_feat = cd.target_items.select("item_id", "topic")
    src = SequenceDataset.from_frame(cd.source, s_vocab, item_features=s_feat)
    tgt = SequenceDataset.from_frame(cd.target, t_vocab, item_features=t_feat)
    valid = EvalSet.from_sessions(cd.target.filter(pl.col("session_id") % 4 == 0), t_vocab)
    return cd, src, tgt, valid


@pytest.fixture(scope="module")
def sources(domains):
    _, src, _, _ = domains
    return {name: pretrain(name, src, None, cfg, TRAINER) for name, cfg in CONFIGS.items()}


def state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.net.state_dict().items()}


def eval_scores(model, valid: EvalSet) -> torch.Tensor:
    return model.score(valid.batch(np.arange(len(valid)), 8))


def test_pretrain_records_item_counts(sources, domains):
    _, src, _, _ = domains
    m = sources["sasrec"]
    assert m.meta.role == "source"
    assert m.meta.item_counts == src.item_counts().astype(int).tolist()


ITEM = {"item.embed.weight"}
POS = {"pos.embed.weight"}


@pytest.mark.parametrize(
    "strategy, frozen",
    [
        ("finetune", set()),
        ("discriminative", set()),
        ("freeze_embeddings", ITEM | POS),
        ("freeze_encoder", "encoder"),
        ("adapters", "all but item"),
        ("lora", "all but item"),
    ],
)
def test_each_strategy_trains_only_what_it_should(strategy, frozen, sources, domains):
    _, _, tgt, valid = domains
    source = sources["sasrec"]
    start, _ = build_target_model(source, tgt, init="popularity", seed=3)
    before = state(start)
    names = set(before)
    if frozen == "encoder":
        frozen = {n for n in names if n.startswith(("encoder.", "emb_norm."))}
    elif frozen == "all but item":
        frozen = names - ITEM - {"seen.value"}  # the domain's repeat bias always trains
    model = transfer(
        source, tgt, valid, strategy=strategy, init="popularity", trainer=TRAINER, seed=3
    )
    after = state(model)
    same = {k for k in names if torch.equal(before[k], after[k])}
    assert same == frozen
    extra = set(after) - names  # adapters / LoRA only
    assert all(("adapter" in k or "lora" in k) for k in extra)
    assert bool(extra) == (strategy in ("adapters", "lora"))
    # the copied encoder weights are the source's
    src_state = state(source)
    assert torch.equal(
        before["encoder.blocks.0.qkv.weight"], src_state["encoder.blocks.0.qkv.weight"]
    )
    meta = model.meta.transfer
    assert meta.strategy == strategy and meta.init == "popularity"
    assert meta.source.model == "sasrec" and meta.source.n_items == 60
    s = eval_scores(model, valid)
    assert s.shape == (len(valid), 31) and torch.isfinite(s).all()


@pytest.mark.parametrize("name", ["sasrec", "gru4rec"])
def test_transfer_trains_with_the_models_default_trainer(name, sources, domains):
    # as fit does: the model's default trainer under the caller's settings (transfer once took
    # the loop's generic defaults: batch 128, lr 1e-3, constant)
    _, _, tgt, valid = domains
    klass = type(sources[name])
    m = transfer(sources[name], tgt, valid, strategy="finetune", init="random",
                 trainer={"epochs": 1, "seed": 3})  # fmt: skip
    want = klass.trainer_config({"epochs": 1, "seed": 3}).model_dump(mode="json")
    assert m.meta.transfer.trainer == want
    assert klass.default_trainer and all(want[k] == v for k, v in klass.default_trainer.items())
    m = transfer(sources[name], tgt, valid, strategy="finetune", init="random",
                 trainer={"epochs": 1, "lr": 0.05})  # fmt: skip
    assert m.meta.transfer.trainer["lr"] == 0.05  # the caller's settings win


def test_scratch_ignores_the_source(sources, domains):
    _, _, tgt, valid = domains
    source = sources["sasrec"]
    model = transfer(source, tgt, valid, strategy="scratch", init="popularity", trainer=TRAINER)
    assert model.meta.transfer.init == "random (scratch)"
    w = model.net.state_dict()["encoder.blocks.0.qkv.weight"]
    assert not torch.allclose(w, source.net.state_dict()["encoder.blocks.0.qkv.weight"], atol=0.01)
    assert model.train_result.epochs_run == 1


@pytest.mark.parametrize("name", ["ssept", "bert4rec", "gru4rec", "narm", "bst"])
def test_every_model_transfers(name, sources, domains):
    _, _, tgt, valid = domains
    source = sources[name]
    start, info = build_target_model(source, tgt, init="popularity")
    s_state, t_state = state(source), state(start)
    copied = [k for k in t_state if k not in info["target_specific"]]
    assert copied and all(torch.equal(t_state[k], s_state[k]) for k in copied)
    for key in info["target_specific"]:
        if key.endswith("embed.weight") or key.endswith(".out"):
            assert t_state[key].shape[0] - len(tgt.vocab) == s_state[key].shape[0] - 60 - 1
    if name == "bert4rec":  # the [MASK] row is copied
        assert torch.equal(t_state["item.embed.weight"][-1], s_state["item.embed.weight"][-1])
    if name == "ssept":  # target users are new: a fresh table of the target's size
        assert t_state["user.weight"].shape[0] == len(tgt.user_vocab)
    if name == "gru4rec":  # untied: input table, output table and bias all initialised
        assert {"input.weight", "item.out", "item.bias"} <= set(info["target_specific"])
    model = transfer(source, tgt, valid, strategy="finetune", init="popularity", trainer=TRAINER)
    s = eval_scores(model, valid)
    assert s.shape == (len(valid), 31) and torch.isfinite(s[:, 1:]).all()
    assert model.train_result.epochs_run == 1


def test_bst_needs_matching_features(sources, domains):
    cd, _, tgt, _ = domains
    source = sources["bst"]
    no_topic = SequenceDataset.from_frame(
        cd.target, tgt.vocab, item_features=cd.target_items.select("item_id", "rank")
    )
    with pytest.raises(ModelError, match="features must match"):
        build_target_model(source, no_topic, init="mean")
    alien = cd.target_items.select("item_id", (pl.col("topic") + 100).alias("topic"))
    unseen = SequenceDataset.from_frame(cd.target, tgt.vocab, item_features=alien)
    with pytest.raises(ModelError, match="known to the source"):
        build_target_model(source, unseen, init="mean")
    model, _ = build_target_model(source, tgt, init="mean")
    codes = model.net.item_feat.codes
    want = tgt.item_features.sort("item_id")["topic"].to_numpy() + 1  # levels "0".."9" -> 1..10
    assert codes[1:, 0].tolist() == want.tolist()


def test_positions_are_cropped_or_extended(sources, domains):
    _, _, tgt, _ = domains
    source = sources["sasrec"]
    pos = source.net.pos.embed.weight.detach()
    short, info = build_target_model(source, tgt, init="mean", max_len=5)
    assert torch.equal(short.net.pos.embed.weight, pos[-5:])  # the most recent positions
    assert short.config.max_len == 5 and "pos.embed.weight" in info["target_specific"]
    long, _ = build_target_model(source, tgt, init="mean", max_len=12)
    w = long.net.pos.embed.weight
    assert w.shape == (12, 16) and torch.equal(w[4:], pos)
    assert torch.equal(w[:4], pos[:1].expand(4, -1))
    interp = resize_positions(pos, 15, "interpolate")
    assert torch.allclose(interp[0], pos[0]) and torch.allclose(interp[-1], pos[-1])
    assert torch.allclose(interp[7], (pos[3] + pos[4]) / 2, atol=1e-6)  # 7 * 7 / 14 = 3.5
    assert torch.allclose(resize_positions(pos, 8, "interpolate"), pos)
    model = transfer(
        source, tgt, None, strategy="finetune", init="mean", trainer=TRAINER, max_len=12
    )
    assert model.meta.transfer.max_len == 12


def test_items_present_in_both_domains_copy_their_source_rows(sources, domains):
    cd, _, _, _ = domains
    source = sources["sasrec"]
    renamed = cd.target.with_columns(pl.col("item_id").replace({"t1": "s5", "t2": "s9"}))
    vocab = ItemVocab.from_ids(renamed["item_id"])
    tgt = SequenceDataset.from_frame(renamed, vocab)
    src_w = source.net.item.embed.weight.detach()
    for init in ("random", "popularity", "mean", "item2vec"):
        model, info = build_target_model(source, tgt, init=init)
        assert info["n_shared_items"] == 2
        w = model.net.item.embed.weight
        for raw in ("s5", "s9"):
            i, j = vocab.encode([raw])[0], source.vocab.encode([raw])[0]
            assert torch.equal(w[i], src_w[j])
    _, none = build_target_model(source, tgt, init="mean", match_items="none")
    assert none["n_shared_items"] == 0
    gru = sources["gru4rec"]  # untied: input table, output table and output bias
    s_state = state(gru)
    for init in ("random", "popularity"):
        model, _ = build_target_model(gru, tgt, init=init)
        t_state = state(model)
        for key in ("input.weight", "item.out", "item.bias"):
            i, j = vocab.encode(["s5"])[0], gru.vocab.encode(["s5"])[0]
            assert torch.equal(t_state[key][i], s_state[key][j])


def test_text_init_through_transfer_uses_titles(sources, domains):
    cd, _, tgt, _ = domains
    source = sources["sasrec"]
    words = sorted({w for t in cd.source_items["title"].to_list() for w in t.split()})
    index = {w: i for i, w in enumerate(words)}

    def encode(texts):
        out = np.zeros((len(texts), len(words)), dtype=np.float32)
        for r, t in enumerate(texts):
            for w in t.split():
                if w in index:
                    out[r, index[w]] += 1
        return out

    model = transfer(
        source,
        tgt,
        None,
        strategy="freeze_embeddings",
        init="text",
        trainer=TRAINER,
        init_options={"text_encoder": encode, "top_k": 1},
        source_titles=titles_from_frame(cd.source_items),
        target_titles=titles_from_frame(cd.target_items),
    )
    assert model.meta.transfer.init_options == {"text_encoder": "<function>", "top_k": 1}
    # item tables were frozen: each row is still exactly one source row (top-1 neighbour)
    w, src_w = model.net.item.embed.weight[1:], source.net.item.embed.weight[1:]
    assert all(bool((src_w == row).all(1).any()) for row in w)


def test_saved_transferred_models_load_back(sources, domains, tmp_path):
    _, _, tgt, valid = domains
    source = sources["sasrec"]
    plain = transfer(source, tgt, valid, strategy="finetune", init="mean", trainer=TRAINER)
    plain.save(tmp_path / "plain")
    loaded = Recommender.load(tmp_path / "plain")
    assert torch.equal(eval_scores(loaded, valid), eval_scores(plain, valid))
    assert loaded.meta.transfer.strategy == "finetune"
    # adapters: the base is the *source* model; the adapter dir carries the target tables
    source.save(tmp_path / "source")
    adapted = transfer(source, tgt, valid, strategy="adapters", init="mean", trainer=TRAINER)
    save_adapters(adapted, tmp_path / "ad")
    back = load_adapters(tmp_path / "source", tmp_path / "ad")
    assert back.vocab == tgt.vocab
    assert torch.equal(eval_scores(back, valid), eval_scores(adapted, valid))


def frozen_names(model) -> list[str]:
    return [n for n, p in model.net.named_parameters() if not p.requires_grad]


def test_a_saved_transferred_model_loads_with_its_frozen_parameters_frozen(
    sources, domains, tmp_path
):
    """Saved and loaded, a transferred model had every parameter trainable: training it
    further (train(..., fresh=False)) trained its frozen encoder, and save_adapters of it wrote
    the whole encoder into the adapter-only folder."""
    from warmrec.training.loop import train

    _, _, tgt, valid = domains
    source = sources["sasrec"]
    model = transfer(source, tgt, valid, strategy="freeze_encoder", init="mean", trainer=TRAINER)
    frozen = frozen_names(model)
    assert frozen and "encoder.blocks.0.qkv.weight" in frozen
    loaded = Recommender.load(model.save(tmp_path / "m"))
    assert frozen_names(loaded) == frozen
    before = state(loaded)
    train(loaded, tgt, None, type(loaded).trainer_config(TRAINER), fresh=False)
    after = state(loaded)
    assert all(torch.equal(before[n], after[n]) for n in frozen)
    assert not torch.equal(before["item.embed.weight"], after["item.embed.weight"])
    # LoRA: the adapter folder of the loaded model is the one of the model before saving
    lora = transfer(source, tgt, valid, strategy="lora", init="mean", trainer=TRAINER)
    want = save_adapters(lora, tmp_path / "ad1")
    got = save_adapters(Recommender.load(lora.save(tmp_path / "l")), tmp_path / "ad2")
    assert (
        load_file(got / "model.safetensors").keys() == load_file(want / "model.safetensors").keys()
    )
    source.save(tmp_path / "source")
    back = load_adapters(tmp_path / "source", want)
    assert frozen_names(back) == frozen_names(lora)
    # an edited record is one error naming the field
    info = json.loads((tmp_path / "m" / "config.json").read_text())
    info["frozen"] = ["no.such.weight"]
    (tmp_path / "m" / "config.json").write_text(json.dumps(info))
    with pytest.raises(
        ModelError, match=r"config.json: field 'frozen': found \['no.such.weight'\]"
    ):
        Recommender.load(tmp_path / "m")


def test_transfer_errors(sources, domains):
    _, src, tgt, _ = domains
    plain_source = get_model("sasrec", CONFIGS["sasrec"]).fit(src, epochs=1, batch_size=64)
    assert plain_source.meta.item_counts == src.item_counts().tolist()  # stored at fit
    plain_source.meta.item_counts = None
    with pytest.raises(ConfigError, match="item counts"):
        build_target_model(plain_source, tgt, init="popularity")
    counts = src.item_counts()
    model, _ = build_target_model(plain_source, tgt, init="popularity", source_counts=counts)
    assert model.net.item.embed.weight.shape == (31, 16)
    with pytest.raises(ConfigError, match="init"):
        build_target_model(plain_source, tgt, init="nearest")
    with pytest.raises(ConfigError, match="position_init"):
        build_target_model(plain_source, tgt, init="mean", position_init="zero")
    with pytest.raises(ModelError, match="neural"):
        build_target_model(get_model("pop"), tgt, init="mean")
    with pytest.raises(ModelError, match="no trained network"):
        build_target_model(get_model("sasrec"), tgt, init="mean")


def test_init_options_are_checked_against_the_init_method(sources, domains):
    """An unknown key ended in a raw TypeError; under init random every option was ignored."""
    _, _, tgt, _ = domains
    source = sources["sasrec"]
    with pytest.raises(ConfigError, match="init_options: bogus not an option of init 'mean'"):
        build_target_model(source, tgt, init="mean", init_options={"bogus": 1})
    with pytest.raises(ConfigError, match="init 'random' \\(it takes no options\\)"):
        build_target_model(source, tgt, init="random", init_options={"noise": -1})
    build_target_model(source, tgt, init="mean", init_options={"noise": 0.0})


def test_a_lora_source_is_merged_and_an_adapter_source_refused(sources, domains):
    """A model transferred with lora, transferred again, lost its LoRA updates silently."""
    import copy

    from warmrec.models.adapters import is_adapter_name, merge_and_unload

    _, _, tgt, valid = domains
    lora = transfer(sources["sasrec"], tgt, valid, strategy="lora", init="mean", trainer=TRAINER)
    assert any(is_adapter_name(k) for k in lora.net.state_dict())
    merged = copy.deepcopy(lora.net)
    merge_and_unload(merged)
    want = merged.state_dict()
    again, _ = build_target_model(lora, tgt, init="mean")
    got = again.net.state_dict()
    enc = [k for k in got if k.startswith("encoder.") and k in want]
    assert enc and all(torch.equal(got[k], want[k]) for k in enc)
    base = {k: v for k, v in sources["sasrec"].net.state_dict().items() if k in enc}
    assert any(not torch.equal(got[k], base[k]) for k in base)  # the updates are in
    adapted = transfer(sources["sasrec"], tgt, valid, strategy="adapters", init="mean",
                       trainer=TRAINER)  # fmt: skip
    with pytest.raises(ModelError, match="bottleneck adapters"):
        build_target_model(adapted, tgt, init="mean")


@pytest.mark.parametrize("strategy", ["finetune", "scratch"])
def test_ssept_target_users_without_sequences_are_unknown(strategy, sources, tmp_path):
    """A target whose user vocabulary covers users without training sequences (the even users
    train, the odd ones do not): as after ``fit``, only the training users are marked trained,
    and an untrained user scores as an unknown user (the trained users' mean), saved and
    loaded. The target once marked every user trained (its net built without SSE-PT's bind)."""
    from warmrec.data.dataset import Batch

    df = cyclic_user_log(60)
    users = ItemVocab.from_ids(df["user_id"])
    vocab = ItemVocab.from_ids(df["item_id"])
    even = df.filter(pl.col("user_id") % 2 == 0)
    train = SequenceDataset.from_frame(even, vocab, user_vocab=users)
    n_train_users = len(np.unique(train.users))
    assert n_train_users == 30 and len(users) == 61
    fitted = get_model("ssept", CONFIGS["ssept"]).fit(train, epochs=1, progress=False)
    assert int(fitted.net.trained.sum()) == n_train_users
    target = transfer(sources["ssept"], train, strategy=strategy, init="random", trainer=TRAINER)
    trained = target.net.trained
    assert int(trained.sum()) == n_train_users
    assert bool(trained[torch.from_numpy(np.unique(train.users))].all())
    odd = users.encode(pl.Series([1, 3, 5]))
    items = target.encode_histories([[3, 4, 5], [7, 8], [1]]).items
    unknown = target.score(Batch(items, torch.zeros(3, dtype=torch.long)))
    torch.testing.assert_close(target.score(Batch(items, torch.tensor(odd))), unknown)
    loaded = Recommender.load(target.save(tmp_path / "t"))
    assert torch.equal(loaded.net.trained, trained)


def cyclic_user_log(n_users: int, length: int = 6) -> pl.DataFrame:
    """One sequence per user ``0..n_users-1`` walking the cycle of 20 items."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(n_users):
        start = int(rng.integers(0, 20))
        rows += [(u, (start + j) % 20 + 1, float(u * 100 + j)) for j in range(length)]
    return pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
