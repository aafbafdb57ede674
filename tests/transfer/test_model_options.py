"""``model_options`` of :func:`warmrec.transfer.transfer`: an ID source's encoder under a
text-aware target item representation.

Known answers (the zero-shot test's catalogue: source and target items carry text, the hashing
encoder stands in for MiniLM): every encoder and position weight of the target equals the ID
source's; the text adaptor and the prior weight are exactly those of a fresh target net drawn
with the same seed (the source has none); with ``item_repr = "id+text"`` and ``init = "mean"``
at zero noise every target id row is the mean of the source's item rows.
"""

from __future__ import annotations

import pytest
import torch

from tests.transfer.test_zeroshot import (  # noqa: F401  (fixtures)
    prior_source,
    source_model,
    text_source,
    zs,
)
from warmrec.errors import ConfigError, ModelError
from warmrec.transfer import transfer
from warmrec.transfer.transfer import build_target_model

TEXT = {"item_repr": "text", "text_prior": 2}


@pytest.fixture(scope="module")
def id_source(zs):  # noqa: F811
    src, _, _, cache = zs
    return source_model(src, cache, item_repr="id", epochs=3)


def _state(net) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def test_id_source_encoder_under_a_text_target(id_source, zs):  # noqa: F811
    _, tgt, _, _ = zs
    target, info = build_target_model(
        id_source, tgt, init="popularity", model_options=TEXT, reset_domain=True, seed=3
    )
    fresh, _ = build_target_model(
        id_source, tgt, init="popularity", model_options=TEXT, copy_weights=False, seed=3
    )
    assert target.config.item_repr == "text" and target.config.text_prior == 2
    src, got, new = _state(id_source.net), _state(target.net), _state(fresh.net)
    shared = [k for k in src if k.startswith(("encoder.", "pos.", "emb_norm."))]
    assert shared and all(torch.equal(got[k], src[k]) for k in shared)
    item = [k for k in got if k.startswith("item.")]
    assert "item.adaptor.proj.weight" in item and "item.prior_weight" in item
    assert all(torch.equal(got[k], new[k]) for k in item)
    assert float(got["item.prior_weight"]) == 1.0
    assert not any(k.startswith("item.") for k in src if k != "item.embed.weight")
    assert set(info["target_specific"]) >= set(item)
    # the source's trained encoder is not a fresh one
    assert not torch.equal(got["encoder.blocks.0.qkv.weight"], new["encoder.blocks.0.qkv.weight"])


def test_id_plus_text_target_starts_its_id_table_from_the_source(id_source, zs):  # noqa: F811
    _, tgt, _, _ = zs
    target, info = build_target_model(
        id_source, tgt, init="mean", init_options={"noise": 0.0},
        model_options={"item_repr": "id+text"},
    )  # fmt: skip
    src_rows = id_source.net.state_dict()["item.embed.weight"][1:]
    rows = target.net.state_dict()["item.embed.weight"][1:]
    assert torch.allclose(rows, src_rows.mean(0).expand_as(rows))
    assert "item.embed.weight" in info["target_specific"]
    assert "item.adaptor.proj.weight" in info["target_specific"]


def test_transfer_trains_and_records_the_options(id_source, zs):  # noqa: F811
    _, tgt, test, _ = zs
    model = transfer(
        id_source, tgt, test, strategy="finetune", init="random", model_options=TEXT,
        trainer={"epochs": 2, "lr": 1e-2}, reset_domain=True,
    )  # fmt: skip
    assert model.train_result is not None and model.train_result.epochs_run >= 1
    assert model.meta.transfer.model_options == TEXT
    assert model.meta.text is not None  # the target's own item text was read


def test_model_options_errors(id_source, text_source, zs):  # noqa: F811
    _, tgt, _, _ = zs
    with pytest.raises(ConfigError, match="no_such_setting"):
        build_target_model(id_source, tgt, init="random", model_options={"no_such_setting": 1})
    with pytest.raises(ModelError, match="cannot copy weight"):
        build_target_model(id_source, tgt, init="random", model_options={"ffn_dim": 16})
    with pytest.raises(ModelError, match="zero-shot"):
        build_target_model(id_source, tgt, init="random", model_options=TEXT, zero_shot=True)
    # the target's adaptor is new: there is no source adaptor to re-fit
    with pytest.raises(ConfigError, match="refit_whitening='diag' re-fits the source's own"):
        build_target_model(
            id_source, tgt, init="random", model_options=TEXT, refit_whitening="diag"
        )
    # a text source's adaptor still transfers when the representation does not change
    target, _ = build_target_model(text_source, tgt, init="random", model_options={"text_prior": 0})
    assert torch.equal(
        target.net.state_dict()["item.adaptor.proj.weight"],
        text_source.net.state_dict()["item.adaptor.proj.weight"],
    )


def test_encoder_weight_option_is_validated(text_source, prior_source, zs):  # noqa: F811
    _, tgt, _, _ = zs
    # the text source has no prior: there is nothing to weigh its encoder against
    with pytest.raises(ConfigError, match=r"SASRecConfig\.encoder_weight: 0\.5 weighs"):
        build_target_model(text_source, tgt, init="random", model_options={"encoder_weight": 0.5})
    with pytest.raises(ConfigError, match=r"SASRecConfig\.encoder_weight: expected a number >= 0"):
        build_target_model(prior_source, tgt, init="random", model_options={"encoder_weight": -1})
    # it leaves the item representation alone: accepted, a zero-shot refit included
    target, _ = build_target_model(
        prior_source, tgt, init="random", model_options={"encoder_weight": 0.25},
        zero_shot=True, refit_whitening="full",
    )  # fmt: skip
    assert target.config.encoder_weight == 0.25
