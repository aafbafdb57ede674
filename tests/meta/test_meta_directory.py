"""A meta-trained model directory (kind "meta") loads as what it is, everywhere.

``Recommender.load``, ``warmrec evaluate``, ``warmrec recommend`` and the serving bundle each get
a meta-learner that adapts to the history before scoring -- never, silently, its un-adapted
base -- and a plain model class refuses the directory in one line.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch
from click.testing import CliRunner

from tests.conftest import cyclic_log
from warmrec.artifacts import CONFIG_FILE, load_base_model, load_model, read_info
from warmrec.cli.main import cli
from warmrec.errors import ModelError
from warmrec.meta.maml import MetaModel
from warmrec.models.base import Recommender
from warmrec.models.sasrec import SASRec
from warmrec.serving.bundle import ModelBundle

HISTORY = [3, 4, 5, 6]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """``(base_dir, meta_dir)``: a 1-epoch SASRec trained by ``warmrec train`` (it records its
    data), and per-user fine-tuning over it (3 steps at 0.5) saved as a meta directory."""
    tmp = tmp_path_factory.mktemp("metadir")
    log = tmp / "log.csv"
    cyclic_log(n_sessions=60, n_items=12, length=6).with_columns(
        (pl.col("session_id") % 15).alias("user_id")
    ).write_csv(log)
    base_dir, meta_dir = tmp / "base", tmp / "meta"
    args = ["train", "--model", "sasrec", "--data", str(log), "--out", str(base_dir)]
    args += ["--epochs", "1", "--seed", "0", "--device", "cpu"]
    for kv in ("d=8", "n_layers=1", "n_heads=1", "ffn_dim=16", "max_len=8"):
        args += ["--set", f"model.{kv}"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    meta = MetaModel(Recommender.load(base_dir), algorithm="finetune", inner_steps=3, inner_lr=0.5)
    meta.save(meta_dir)
    return base_dir, meta_dir


def _scores(model, history=HISTORY):
    with torch.no_grad():
        return model.score(model.encode_histories([history]))


def test_the_directory_records_its_kind(dirs):
    _, meta_dir = dirs
    assert read_info(meta_dir).info.kind == "meta"
    assert (meta_dir / "meta.json").is_file() and (meta_dir / "meta.safetensors").is_file()


def test_recommender_load_gives_the_meta_learner_not_the_base(dirs):
    base_dir, meta_dir = dirs
    loaded = Recommender.load(meta_dir)
    assert isinstance(loaded, MetaModel) and isinstance(load_model(meta_dir), MetaModel)
    assert loaded.name == "finetune[sasrec]" and loaded.config.inner_lr == 0.5
    base = Recommender.load(base_dir)
    adapted, plain = _scores(loaded), _scores(base)
    assert not torch.allclose(adapted, plain, atol=1e-4)  # it adapted to the history
    # same weights, no adaptation -> the base's scores: the base is what it adapts from
    torch.testing.assert_close(_scores(MetaModel.load(meta_dir, inner_steps=0)), plain)
    torch.testing.assert_close(_scores(load_base_model(meta_dir)), plain)


def test_a_plain_model_class_refuses_the_directory_in_one_line(dirs):
    _, meta_dir = dirs
    with pytest.raises(ModelError) as e:
        SASRec.load(meta_dir)
    msg = str(e.value)
    assert "\n" not in msg and str(meta_dir) in msg and "kind 'meta'" in msg
    assert "MetaModel.load" in msg


def test_a_directory_written_before_the_kind_still_loads_as_meta(dirs, tmp_path):
    import shutil

    _, meta_dir = dirs
    old = tmp_path / "old"
    shutil.copytree(meta_dir, old)
    cfg = json.loads((old / CONFIG_FILE).read_text())
    cfg["kind"] = "model"  # what MetaModel.save wrote before
    (old / CONFIG_FILE).write_text(json.dumps(cfg))
    assert isinstance(Recommender.load(old), MetaModel)


def _evaluate(path):
    r = CliRunner().invoke(cli, ["evaluate", str(path), "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_warmrec_evaluate_scores_the_adapted_model(dirs):
    base_dir, meta_dir = dirs
    meta, base = _evaluate(meta_dir), _evaluate(base_dir)
    assert meta["model"] == "finetune[sasrec]" and base["model"] == "sasrec"
    assert meta["n"] == base["n"] > 0
    assert meta["metrics"] != base["metrics"]


def test_warmrec_recommend_adapts(dirs):
    base_dir, meta_dir = dirs
    items = ",".join(map(str, HISTORY))
    out = {}
    for name, d in (("meta", meta_dir), ("base", base_dir)):
        r = CliRunner().invoke(cli, ["recommend", str(d), "--items", items, "-k", "11", "--json"])
        assert r.exit_code == 0, r.output
        out[name] = json.loads(r.stdout)["items"]
    expect = Recommender.load(meta_dir).recommend([HISTORY], 11)[0]
    assert out["meta"] == expect and out["meta"] != out["base"]


def test_the_serving_bundle_adapts_under_inference_mode(dirs):
    base_dir, meta_dir = dirs
    bundle = ModelBundle.load(meta_dir, engine="auto")
    assert isinstance(bundle.model, MetaModel) and bundle.engine == "eager"
    assert bundle.metadata()["model"] == "finetune[sasrec]"
    ranked = bundle.recommend(HISTORY, k=11)
    expect = _scores(Recommender.load(meta_dir))[0]
    np.testing.assert_allclose(
        ranked.scores, [float(expect[bundle.index_of(i)]) for i in ranked.items], rtol=1e-5
    )
    plain = ModelBundle.load(base_dir).recommend(HISTORY, k=11)
    assert ranked.scores != pytest.approx(plain.scores)


def test_a_history_scores_the_same_alone_in_a_batch_and_on_every_call(dirs):
    _, meta_dir = dirs
    model = Recommender.load(meta_dir)  # dropout is on in the inner steps
    alone = _scores(model)
    with torch.no_grad():
        both = model.score(model.encode_histories([[7, 8, 9], HISTORY]))
    torch.manual_seed(123)  # the global generator plays no part
    torch.testing.assert_close(both[1], alone[0])
    torch.testing.assert_close(_scores(model), alone)


@pytest.mark.parametrize(
    "counts, found",
    [
        (torch.ones(3, 5), "found shape [3, 5]"),
        (torch.ones(3), "found shape [3]"),
        ("negative", "out of range"),
        ("nan", "found NaN or inf"),
    ],
)
def test_edited_item_counts_in_meta_safetensors_are_refused(dirs, tmp_path, counts, found):
    """meta.safetensors (no checksum) carries the training counts that rank the popularity
    fallback; they were taken unchecked: negative or NaN counts served a fallback ranked by
    nonsense (scores of -9.2e18), a wrong length made the fallback say the model was 'saved by
    an older warmrec', and a 2-D tensor raised pydantic's multi-line ValidationError."""
    import shutil

    from safetensors.torch import load_file, save_file

    _, meta_dir = dirs
    d = tmp_path / "meta"
    shutil.copytree(meta_dir, d)
    state = load_file(d / "meta.safetensors")
    n = len(state["item_counts"])
    if counts == "negative":
        counts = -torch.ones(n, dtype=torch.float64)
    elif counts == "nan":
        counts = torch.full((n,), float("nan"), dtype=torch.float64)
    save_file({**state, "item_counts": counts}, d / "meta.safetensors")
    for load in (Recommender.load, ModelBundle.load):
        with pytest.raises(ModelError) as e:
            load(d)
        msg = str(e.value)
        assert "\n" not in msg and "meta.safetensors: item_counts" in msg and found in msg, msg


@pytest.mark.parametrize(
    "field, value", [("inner_steps", 10**11), ("loss_hidden", 10**11), ("inner_steps", 10**30)]
)
def test_a_meta_json_edited_to_huge_sizes_is_refused_before_anything_is_allocated(
    dirs, tmp_path, field, value
):
    """meta.json's inner_steps (MAML++'s learned rates: [inner_steps] per parameter) and
    loss_hidden (the loss network's width) made the meta-learner allocate them before the
    learned tensors were compared with its config: 10**11 tried to allocate terabytes (a raw
    RuntimeError out of load). The shapes are now found on the meta device first."""
    import json

    base_dir, _ = dirs
    meta = MetaModel(
        Recommender.load(base_dir), algorithm="mamlpp", inner_steps=2, adaptive_loss=True
    )
    d = meta.save(tmp_path / "meta")
    cfg = json.loads((d / "meta.json").read_text())
    cfg[field] = value
    (d / "meta.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError) as e:
        Recommender.load(d)
    msg = str(e.value)
    assert "\n" not in msg and "meta.json" in msg, msg
    assert f"field '{field}': found {value}" in msg or f"{field} = {value}" in msg, msg
