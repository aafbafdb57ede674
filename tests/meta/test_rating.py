"""MELO's rating-regression setting: data filter, the head over any backbone, adaptation."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from tests.conftest import tiny_net
from warmrec.meta.learner import MetaLearner
from warmrec.meta.rating import (
    RatingMetaModel,
    evaluate_ratings,
    fit_rating_model,
    melo_ratings,
    planted_offset_ratings,
)
from warmrec.registry import get_model


def offset_ratings(n_users: int = 80, n_items: int = 12, length: int = 14, seed: int = 0):
    """Ratings with a per-user offset of +-1.25 stars learnable only by adaptation."""
    return planted_offset_ratings(n_users, n_items, length, 0.25, seed)


def test_melo_filter_items_then_users_and_cut_to_max_len():
    rows = [(1, 10, 4.0, float(t)) for t in range(40)]  # item 10: 40 ratings by user 1
    rows += [(2, 10, 3.0, 100.0 + t) for t in range(3)]  # user 2: 3 ratings (< 5)
    rows += [(3, 11, 5.0, 200.0)]  # item 11: 1 rating (< min_item)
    rows += [(3, 10, 5.0, 201.0 + t) for t in range(6)]
    df = pl.DataFrame(rows, schema=["user_id", "item_id", "rating", "timestamp"], orient="row")
    data = melo_ratings(df, min_user=5, min_item=20, max_len=30)
    assert data.keys.to_list() == [1, 3]  # user 2 dropped; user 3 keeps 6 ratings of item 10
    np.testing.assert_array_equal(data.lengths, [30, 6])  # user 1 cut to its first 30
    assert data.vocab.n_ids == 1  # item 11 dropped
    np.testing.assert_allclose(data.ratings[:2], 0.8)  # rating / 5


def test_melo_needs_ratings():
    from warmrec.errors import DataError

    df = pl.DataFrame({"user_id": [1], "item_id": [1]})
    with pytest.raises(DataError, match="rating"):
        melo_ratings(df)


@pytest.fixture(scope="module")
def rating_setup():
    data = melo_ratings(offset_ratings(n_users=60), min_user=5, min_item=1, max_len=30)
    train, test = data.subset(np.arange(40)), np.arange(40, 60)
    backbone = get_model("sasrec", tiny_net("sasrec", dropout_all=0.0, max_len=30))
    backbone.fit(train.sequences(), epochs=1, seed=0, progress=False)
    global_model = fit_rating_model(
        backbone, train, {"epochs": 10, "lr": 1e-2, "seed": 0, "batch_size": 64}
    )
    return data, train, test, global_model


@pytest.mark.parametrize("model", ["sasrec", "gru4rec"])
def test_rating_head_is_model_agnostic_and_differentiable(model):
    data = melo_ratings(offset_ratings(n_users=6), min_user=5, min_item=1)
    backbone = get_model(
        model,
        tiny_net(model, max_len=30, **({"training": "windows"} if model == "gru4rec" else {})),
    )
    backbone.fit(data.sequences(), epochs=1, seed=0, progress=False)
    from warmrec.meta.rating import RatingModel, rating_batch

    rm = RatingModel(backbone)
    items, ratings = data.user(0)
    batch = rating_batch(items, ratings, np.zeros(4, np.int64), np.arange(4), 30)
    learner = MetaLearner(rm, first_order=False)
    loss = learner.loss(batch)
    grads = torch.autograd.grad(loss, list(learner.params.values()), allow_unused=True)
    named = dict(zip(learner.params, grads))
    assert named["head.bias"] is not None and float(named["head.bias"].abs()) > 0
    assert any(
        g is not None and float(g.abs().sum()) > 0
        for n, g in named.items()
        if n.startswith("base.")
    )
    assert learner.example_losses(batch).shape == (4,)


def test_global_model_cannot_find_the_user_offset_adaptation_can(rating_setup):
    data, _, test, gm = rating_setup
    glob = RatingMetaModel(gm, {"algorithm": "finetune", "inner_steps": 0})
    ft = RatingMetaModel(gm, {"algorithm": "finetune", "inner_steps": 3, "inner_lr": 0.3})
    g = evaluate_ratings(glob, data, test, 5)["summary"]
    f = evaluate_ratings(ft, data, test, 5)["summary"]
    # the planted offset is +-0.25 * 5 = 1.25 stars: the global model predicts the middle
    assert g["rmse"] > 1.0
    assert f["rmse"] < 0.6 * g["rmse"]
    assert f["mae"] < g["mae"]


def test_meta_training_on_ratings_runs_and_adapts(rating_setup):
    from warmrec.meta.maml import meta_train

    data, train, test, gm = rating_setup
    cfg = {
        "algorithm": "mamlpp",
        "adaptive_loss": True,
        "inner_steps": 2,
        "inner_lr": 0.3,
        "meta_epochs": 2,
        "first_order_epochs": 1,
        "train_shots": (3, 5),
        "meta_batch_size": 8,
    }
    meta = meta_train(gm, train, cfg, cls=RatingMetaModel)
    assert meta.train_result is not None and len(meta.train_result.history) == 2
    g = evaluate_ratings(
        RatingMetaModel(gm, {"inner_steps": 0, "algorithm": "finetune"}), data, test, 5
    )
    m = evaluate_ratings(meta, data, test, 5)
    assert m["summary"]["rmse"] < 0.7 * g["summary"]["rmse"]
    assert len(m["per_user"]) == len(test)


def test_rating_adaptation_sees_only_the_revealed_ratings(rating_setup):
    """Changing a user's ratings after the k revealed ones changes no prediction."""
    data, _, test, gm = rating_setup
    ft = RatingMetaModel(gm, {"algorithm": "finetune", "inner_steps": 2, "inner_lr": 0.3})
    items, ratings = data.user(int(test[0]))
    a = ft.predict_user(items, ratings, 4, 30)
    changed = ratings.copy()
    changed[4:] = 1.0 - changed[4:]
    b = ft.predict_user(items, changed, 4, 30)
    np.testing.assert_allclose(a, b, atol=1e-6)
    c = ft.predict_user(items, np.where(np.arange(len(ratings)) < 4, 1.0 - ratings, ratings), 4, 30)
    assert not np.allclose(a, c)


def _melo_cli(tmp_path, methods: str) -> tuple[list[str], object]:
    log = tmp_path / "ratings.csv"
    offset_ratings(n_users=40).write_csv(log)
    cfg = tmp_path / "melo.toml"
    cfg.write_text(
        "[model]\nd = 8\nn_layers = 1\nn_heads = 1\nffn_dim = 16\nmax_len = 30\n"
        "[pretrain]\nepochs = 1\n"
        "[meta]\nmeta_epochs = 1\ninner_steps = 2\ntrain_shots = [2, 3]\nmeta_batch_size = 8\n"
        "[coldstart]\nlr_grid = [0.3]\nmelo_min_item = 1\nmelo_test_users = 6\n"
        "max_valid_users = 4\n[coldstart.rating_trainer]\nepochs = 3\nlr = 0.01\n"
    )
    args = ["study", "coldstart", "--data", str(log), "--protocol", "melo", "--shots", "1,3"]
    args += ["--seeds", "1", "--config", str(cfg), "--out", str(tmp_path / "out")]
    return args + ["--methods", methods], log


def test_melo_study_cli_end_to_end_and_resumes(tmp_path):
    from click.testing import CliRunner

    from warmrec.cli.main import cli

    args, _ = _melo_cli(tmp_path, "global,finetune,fomaml")
    r = CliRunner().invoke(cli, [*args, "--json"])
    assert r.exit_code == 0, r.output
    import json

    out = json.loads(r.output)
    assert sorted(out["computed"]) == ["0-finetune", "0-fomaml", "0-global"]
    rows = {(d["shots"], d["method"]): d for d in out["summary"]}
    assert set(rows) == {(k, m) for k in (1, 3) for m in ("global", "finetune", "fomaml")}
    assert all(d["rmse"] > 0 and d["mae"] > 0 for d in rows.values())
    # the planted per-user offset: adapting to 3 revealed ratings beats the global model
    assert rows[(3, "finetune")]["rmse"] < rows[(3, "global")]["rmse"]
    assert rows[(3, "finetune")]["ratio"] == 1.0
    md = (tmp_path / "out" / "results.md").read_text()
    assert "rmse [95% CI]" in md and (tmp_path / "out" / "rmse_vs_shots.png").is_file()
    again = CliRunner().invoke(cli, [*args, "--json"])
    assert again.exit_code == 0 and json.loads(again.output)["computed"] == []


def test_melo_rejects_ranking_only_methods_in_one_line(tmp_path):
    from click.testing import CliRunner

    from warmrec.cli.main import cli

    args, _ = _melo_cli(tmp_path, "pop,finetune")
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2
    assert "pop" in r.output and "melo" in r.output and len(r.output.strip().splitlines()) == 1
