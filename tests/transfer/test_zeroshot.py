"""Zero-shot transfer (``strategy="zeroshot"``): a text-aware source ranks a target catalogue it
never saw, from the target's item text alone, with no target interaction.

Known answer: the source catalogue holds ``"unit<t> part<s>"`` (8 units x 4 parts); every source
sequence walks the units in order (``t -> t + 1``, any part). The target catalogue has other raw
ids and other words around the same tokens in the same positions (``"unit<t> part<s> video"``);
its histories end in unit ``t`` and the target is an item of unit ``t + 1``. Only a model that
reads the target's text can put the 4 items of unit ``t + 1`` first (chance: HR@4 = 4 / 32).
The hashing encoder (bag of words and word pairs) stands in for MiniLM.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from tests.conftest import tiny_net
from warmrec import evaluate
from warmrec.data.dataset import EvalSet, SequenceDataset
from warmrec.data.vocab import ItemVocab
from warmrec.errors import ConfigError, ModelError
from warmrec.models.text import HASHING_DIM, _hashing, register_text_encoder
from warmrec.transfer import pretrain, transfer

N_UNITS, N_PARTS = 8, 4
COLS = ["user_id", "item_id", "timestamp"]


def catalogue(offset: int, suffix: str) -> pl.DataFrame:
    rows = [
        (offset + t * N_PARTS + s, f"unit{t} part{s}{suffix}")
        for t in range(N_UNITS)
        for s in range(N_PARTS)
    ]
    return pl.DataFrame(rows, schema=["item_id", "title"], orient="row")


def walks(offset: int, n: int, length: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n):
        t = int(rng.integers(N_UNITS))
        for step in range(length):
            rows.append((u, offset + t * N_PARTS + int(rng.integers(N_PARTS)), float(step)))
            t = (t + 1) % N_UNITS
    return pl.DataFrame(rows, schema=COLS, orient="row")


@pytest.fixture(scope="module")
def zs(tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("zs-cache"))
    src_items = catalogue(1, "")
    tgt_items = catalogue(1001, " video")
    src = SequenceDataset.from_frame(
        walks(1, 300, 6, 0), ItemVocab.from_ids(src_items["item_id"]), item_features=src_items
    )
    t_vocab = ItemVocab.from_ids(tgt_items["item_id"])
    log = walks(1001, 48, 4, 1)
    # the target's "training" part: only its vocabulary and item text are used
    tgt = SequenceDataset.from_frame(log.filter(pl.col("timestamp") < 3), t_vocab,
                                     item_features=tgt_items)  # fmt: skip
    test = EvalSet.from_frames(
        log.filter(pl.col("timestamp") < 3), log.filter(pl.col("timestamp") == 3), t_vocab
    )
    return src, tgt, test, cache


@pytest.fixture(scope="module")
def text_source(zs):
    src, _, _, cache = zs
    return source_model(src, cache)


def source_model(src, cache, item_repr="text", seed=0, epochs=30, **extra):
    cfg = tiny_net("sasrec", dropout_all=0.0, d=32, n_heads=2, ffn_dim=32)
    cfg.update(item_repr=item_repr, text_encoder="hashing", text_cache=cache, text_dropout=0.0)
    cfg.update(extra)
    torch.manual_seed(seed)
    return pretrain("sasrec", src, None, cfg, {"epochs": epochs, "lr": 1e-2, "seed": seed})


def hr(model, test, k=N_PARTS) -> float:
    return float(evaluate(model, test, [f"hr@{k}"]).summary[f"hr@{k}"])


def test_zeroshot_ranks_the_next_unit_of_an_unseen_catalogue(zs, text_source):
    src, tgt, test, cache = zs
    source = text_source
    model = transfer(source, tgt, None, strategy="zeroshot", init="random", refit_whitening="off")
    assert model.train_result is None
    assert model.meta.transfer.strategy == "zeroshot" and model.meta.transfer.n_trainable == 0
    assert model.meta.transfer.init == "item text (zero-shot)"  # not the unused init="random"
    assert model.vocab is tgt.vocab and model.net.item.text.shape[0] == len(tgt.vocab)
    # the encoder and adaptor are the source's, bit for bit
    s, t = source.net.state_dict(), model.net.state_dict()
    for key in ("encoder.blocks.0.attn.qkv.weight", "item.adaptor.proj.weight"):
        if key in s:
            assert torch.equal(s[key], t[key])
    assert torch.equal(s["item.adaptor.proj.weight"], t["item.adaptor.proj.weight"])
    got = hr(model, test)
    print(f"zero-shot HR@4 {got:.3f}")
    assert got >= 0.8  # chance: 4 / 32
    # the same source's weights, without reading the target text, are at chance: a random
    # catalogue (the text buffer zeroed) cannot be ranked
    with torch.no_grad():
        model.net.item.text.zero_()
        model.net.item.has_text.zero_()
    blind = hr(model, test)
    print(f"blind HR@4 {blind:.3f}")
    assert blind <= 0.35


def test_zeroshot_uses_no_target_interaction(zs, text_source):
    src, tgt, test, cache = zs
    source = text_source
    a = transfer(source, tgt, None, strategy="zeroshot", init="popularity")
    sub = SequenceDataset.from_frame(
        pl.DataFrame([(0, 1001, 0.0), (0, 1002, 1.0)], schema=COLS, orient="row"),
        tgt.vocab,
        item_features=tgt.item_features,
    )
    b = transfer(source, sub, None, strategy="zeroshot", init="popularity")
    # other target interactions, the same model: none of them entered it
    for ka, va in a.net.state_dict().items():
        assert torch.equal(va, b.net.state_dict()[ka]), ka
    assert a.meta.item_counts is None
    assert hr(a, test) == hr(b, test)
    # nothing trains, as the strategy says: every parameter is frozen (they stayed trainable)
    assert not any(p.requires_grad for p in a.net.parameters())
    assert a.meta.transfer.n_trainable == 0


def test_zeroshot_needs_a_text_only_source(zs):
    src, tgt, _, cache = zs
    source = source_model(src, cache, item_repr="id", epochs=1)
    with pytest.raises(ModelError, match="zero-shot transfer needs a text item representation"):
        transfer(source, tgt, None, strategy="zeroshot", init="random")


def test_reset_domain_zeroes_the_seen_bias(zs, text_source):
    src, tgt, _, cache = zs
    source = text_source
    learned = float(source.net.seen.value.detach())
    assert learned != 0.0
    kept = transfer(source, tgt, None, strategy="zeroshot", init="random", reset_domain=False)
    reset = transfer(source, tgt, None, strategy="zeroshot", init="random", reset_domain=True)
    assert float(kept.net.seen.value.detach()) == learned
    assert float(reset.net.seen.value.detach()) == 0.0
    assert reset.meta.transfer.reset_domain and "seen.value" in reset.meta.transfer.target_specific


def test_finetune_of_a_text_source_takes_the_target_text(zs, text_source):
    src, tgt, test, cache = zs
    source = text_source
    model = transfer(source, tgt, None, strategy="finetune", init="random",
                     trainer={"epochs": 1, "lr": 1e-3})  # fmt: skip
    assert model.train_result is not None
    assert model.net.item.text.shape[0] == len(tgt.vocab)
    assert hr(model, test) >= 0.6


# -- refit_whitening: a target catalogue whose text vectors are shifted and shrunk --------------
OFFSET, SCALE = 3.0, 0.3


def _shifted_encoder():
    """The hashing encoder, except that texts of the target catalogue (those with "video") get
    ``SCALE * x + OFFSET * v``: one fixed direction added and the spread shrunk, as a
    catalogue written in another style (MARS's long descriptions against movie titles)."""
    base = _hashing()
    v = np.random.default_rng(7).normal(size=HASHING_DIM).astype(np.float32)
    v /= np.linalg.norm(v)

    def encode(texts):
        x = base(texts)
        shifted = np.array(["video" in t for t in texts])[:, None]
        return np.where(shifted, SCALE * x + OFFSET * v, x).astype(np.float32)

    return encode


register_text_encoder("test-shifted", HASHING_DIM, _shifted_encoder, f"{OFFSET}-{SCALE}")


@pytest.fixture(scope="module")
def shifted_source(zs):
    src, _, _, _ = zs
    cfg = tiny_net("sasrec", dropout_all=0.0, d=32, n_heads=2, ffn_dim=32)
    cfg.update(item_repr="text", text_encoder="test-shifted", text_cache="", text_dropout=0.0)
    torch.manual_seed(0)
    return pretrain("sasrec", src, None, cfg, {"epochs": 30, "lr": 1e-2, "seed": 0})


def test_refit_whitening_carries_the_source_to_a_shifted_catalogue(zs, shifted_source):
    _, tgt, test, _ = zs
    got = {}
    for how in ("off", "mean", "diag", "full"):
        model = transfer(shifted_source, tgt, None, strategy="zeroshot", init="random",
                         refit_whitening=how)  # fmt: skip
        assert model.meta.transfer.refit_whitening == how
        got[how] = hr(model, test)
    print(f"zero-shot HR@4 on the shifted catalogue: {got}")
    # the same words as the source, in shifted vectors: the adaptor sees inputs off its training
    # distribution and ranks near chance (4 / 32); re-fitted on the target text it reads them
    assert got["off"] <= 0.5
    assert got["mean"] >= 0.75 and got["diag"] >= 0.85 and got["full"] >= 0.85


def test_refit_whitening_defaults_to_diag_for_zeroshot_only(zs, text_source):
    _, tgt, _, _ = zs
    zero = transfer(text_source, tgt, None, strategy="zeroshot", init="random")
    assert zero.meta.transfer.refit_whitening == "diag"
    s, t = text_source.net.state_dict(), zero.net.state_dict()
    assert not torch.equal(s["item.adaptor.bias"], t["item.adaptor.bias"])
    for key in s:  # the rest of the network is the source's, bit for bit
        if not key.startswith("item.") and key != "seen.value":
            assert torch.equal(s[key], t[key]), key
    tuned = transfer(text_source, tgt, None, strategy="finetune", init="random",
                     trainer={"epochs": 1})  # fmt: skip
    assert tuned.meta.transfer.refit_whitening == "off"
    with pytest.raises(ConfigError, match="refit_whitening: expected one of"):
        transfer(text_source, tgt, None, strategy="zeroshot", init="random", refit_whitening="x")


# -- encoder_weight at transfer time: [transfer] model_options ----------------------------------
@pytest.fixture(scope="module")
def prior_source(zs):
    src, _, _, cache = zs
    return source_model(src, cache, epochs=5, text_prior=2)


@pytest.mark.parametrize("refit", ["off", "diag"])
def test_zeroshot_encoder_weight_from_model_options(zs, prior_source, refit):
    _, tgt, test, _ = zs
    kw = dict(strategy="zeroshot", init="random", reset_domain=True, refit_whitening=refit)
    plain = transfer(prior_source, tgt, None, **kw)
    one = transfer(prior_source, tgt, None, model_options={"encoder_weight": 1.0}, **kw)
    off = transfer(prior_source, tgt, None, model_options={"encoder_weight": 0.0}, **kw)
    assert off.config.encoder_weight == 0.0 and plain.config.encoder_weight == 1.0
    assert off.meta.transfer.model_options == {"encoder_weight": 0.0}
    assert off.meta.transfer.refit_whitening == refit
    # the same weights either way: the option changes the scoring, not the transferred model
    for key, value in plain.net.state_dict().items():
        assert torch.equal(value, off.net.state_dict()[key]), key
    batch = test.batch(np.arange(len(test)), plain.history_len)
    assert torch.equal(one.score(batch), plain.score(batch))
    items = batch.items[:, -off.config.max_len :]
    with torch.no_grad():
        prior = off.net.item.prior_logits(items)
    # weight 0 (seen bias reset to 0): the text prior's scores exactly, whatever the refit
    assert torch.equal(off.score(batch), prior)
    assert not torch.equal(plain.score(batch), prior)


def test_zeroshot_resets_the_seen_bias_by_default(zs, text_source):
    # the source's repeat habit is its domain's: a zero-shot target has nothing to correct it
    # with, so it starts from "no offset" unless reset_domain=False says otherwise (above)
    src, tgt, _, cache = zs
    assert float(text_source.net.seen.value.detach()) != 0.0
    plain = transfer(text_source, tgt, None, strategy="zeroshot", init="random")
    assert plain.meta.transfer.reset_domain and float(plain.net.seen.value.detach()) == 0.0
