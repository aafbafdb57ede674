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


def test_meta_epochs_are_chosen_by_the_valid_score_and_its_best_weights_kept(rating_setup):
    """A scripted meta-valid score that peaks at epoch 2 of 3: the model ends with the weights
    it had after epoch 2 (not the last), and each epoch's record holds its score."""
    from warmrec.meta.maml import meta_train

    _, train, _, gm = rating_setup
    scores, snapshots = iter([0.1, 0.5, 0.2]), []

    def score(meta):
        snapshots.append({k: v.detach().clone() for k, v in meta.net.state_dict().items()})
        return next(scores)

    cfg = {"algorithm": "fomaml", "inner_steps": 1, "inner_lr": 0.3, "meta_epochs": 3}
    cfg |= {"train_shots": (3,), "meta_batch_size": 8, "outer_lr": 1e-2}
    meta = meta_train(gm, train, cfg, cls=RatingMetaModel, valid_score=score)
    res = meta.train_result
    assert res.best_epoch == 2 and res.best_metric == 0.5
    assert [h["valid_score"] for h in res.history] == [0.1, 0.5, 0.2]
    final = meta.net.state_dict()
    assert all(torch.equal(final[k], snapshots[1][k]) for k in final)
    assert not all(torch.equal(final[k], snapshots[2][k]) for k in final)


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


def _melo_cli(
    tmp_path, methods: str, factor: float = 1.0, extra: str = ""
) -> tuple[list[str], object]:
    log = tmp_path / "ratings.csv"
    offset_ratings(n_users=40).with_columns(pl.col("rating") * factor).write_csv(log)
    cfg = tmp_path / "melo.toml"
    cfg.write_text(
        "[model]\nd = 8\nn_layers = 1\nn_heads = 1\nffn_dim = 16\nmax_len = 30\n"
        "[pretrain]\nepochs = 1\n"
        "[meta]\nmeta_epochs = 1\ninner_steps = 2\ntrain_shots = [2, 3]\nmeta_batch_size = 8\n"
        "[coldstart]\nlr_grid = [0.3]\nmelo_min_item = 1\nmelo_test_users = 6\n"
        f"max_valid_users = 4\n{extra}[coldstart.rating_trainer]\nepochs = 3\nlr = 0.01\n"
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

    out = json.loads(r.stdout)
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
    assert again.exit_code == 0 and json.loads(again.stdout)["computed"] == []


def test_melo_rejects_ranking_only_methods_in_one_line(tmp_path):
    from click.testing import CliRunner

    from warmrec.cli.main import cli

    args, _ = _melo_cli(tmp_path, "pop,finetune")
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2
    assert "pop" in r.output and "melo" in r.output and len(r.output.strip().splitlines()) == 1


# -- rating scales other than 1-5 (MARS: 1-10) ------------------------------------------------

TEN = [  # a tiny hand-made log on a 1-10 scale: (user, item, rating, time)
    *[
        (1, i, r, float(t))
        for t, (i, r) in enumerate(zip([1, 2, 3, 1, 2, 3], [10, 8, 6, 10, 9, 7]))
    ],
    *[(2, i, r, float(t)) for t, (i, r) in enumerate(zip([2, 3, 1, 2, 3, 1], [1, 2, 3, 4, 5, 6]))],
    *[(3, i, r, float(t)) for t, (i, r) in enumerate(zip([3, 1, 2, 3, 1], [10, 10, 10, 10, 10]))],
]


def _ten_file(tmp_path):
    from warmrec.data.prepared import read

    path = tmp_path / "ten.csv"
    pl.DataFrame(TEN, schema=["user_id", "item_id", "rating", "timestamp"], orient="row").write_csv(
        path
    )
    return read(path).interactions


@pytest.mark.parametrize(
    "ratings, scale",
    [
        ([1, 2, 10], (1.0, 10.0)),  # MARS's 1-10
        ([1, 3, 5], (1.0, 5.0)),  # MELO's stars
        ([1.25, 4.25], (1.0, 5.0)),  # inside the stars: still 1-5
        ([0.5, 4.5], (0.5, 5.0)),  # half stars
        ([3, 7.5], (1.0, 8.0)),  # the top rounded up
    ],
)
def test_rating_scale_is_read_from_the_data(ratings, scale):
    from warmrec.meta.rating import rating_scale

    assert rating_scale(np.array(ratings, float)) == scale


@pytest.mark.parametrize(
    "scale, words",
    [
        ((1.0, 5.0), ["outside the 1-5 scale", "[1, 10]"]),
        ((5.0, 1.0), ["bad rating scale", "[5, 1]"]),
    ],
)
def test_a_scale_that_cannot_hold_the_ratings_is_one_line(tmp_path, scale, words):
    from warmrec.errors import DataError

    with pytest.raises(DataError) as e:
        melo_ratings(_ten_file(tmp_path), min_user=5, min_item=1, scale=scale)
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


class _Constant:
    """Predicts ``value`` (on the rating / top scale) for every event after the k revealed."""

    def __init__(self, value: float) -> None:
        self.value = value

    def predict_user(self, items, ratings, k, max_len):
        return np.full(len(items) - k, self.value, dtype=np.float32)


def test_a_1_to_10_file_is_divided_by_10_and_scored_in_its_units(tmp_path):
    data = melo_ratings(_ten_file(tmp_path), min_user=5, min_item=1)
    assert data.scale == (1.0, 10.0)
    np.testing.assert_allclose(data.user(0)[1], [1.0, 0.8, 0.6, 1.0, 0.9, 0.7], rtol=1e-6)
    assert data.subset(np.array([1])).scale == (1.0, 10.0)
    # predicting 5 (0.5 * 10) for every rating after the first 2, users 1 and 2
    after = np.array([6, 10, 9, 7, 3, 4, 5, 6], float)
    res = evaluate_ratings(_Constant(0.5), data, np.array([0, 1]), 2)
    assert res["summary"]["rmse"] == pytest.approx(np.sqrt(((after - 5) ** 2).mean()), rel=1e-5)
    assert res["summary"]["mae"] == pytest.approx(np.abs(after - 5).mean(), rel=1e-5)
    assert res["summary"]["n_ratings"] == 8
    # a prediction below the scale is clipped to its bottom, 1 (0.1 of the top)
    low = evaluate_ratings(_Constant(-3.0), data, np.array([2]), 2)["summary"]
    assert low["mae"] == pytest.approx(9.0, rel=1e-5)


def test_melo_study_on_a_1_to_10_scale_reports_errors_in_its_units(tmp_path):
    """The planted log doubled (ratings 2.5-8.5, offsets +-2.5): the study reads the 1-10 scale
    from its TOML, and adapting to 3 revealed ratings beats the global model by more than the
    1-5 log's offset could."""
    import json

    from click.testing import CliRunner

    from warmrec.cli.main import cli

    args, _ = _melo_cli(tmp_path, "global,finetune", 2.0, "melo_rating_scale = [1, 10]\n")
    r = CliRunner().invoke(cli, [*args, "--json"])
    assert r.exit_code == 0, r.output
    rows = {(d["shots"], d["method"]): d for d in json.loads(r.stdout)["summary"]}
    assert rows[(3, "global")]["rmse"] > 2.0  # the +-2.5 offset, unseen by the global model
    assert rows[(3, "finetune")]["rmse"] < rows[(3, "global")]["rmse"]
    assert "1-10 scale" in (tmp_path / "out" / "report.md").read_text()


def test_rating_predictions_repeat_whatever_was_scored_before():
    """The inner steps ran dropout on the global torch generator, unseeded: the same model gave
    RMSE 0.713, then 0.694, then 0.740 with the users in another order."""
    data = melo_ratings(offset_ratings(n_users=40), min_user=5, min_item=1, max_len=30)
    train, test = data.subset(np.arange(30)), np.arange(30, 40)
    backbone = get_model("sasrec", tiny_net("sasrec", dropout_all=0.3, max_len=30))
    backbone.fit(train.sequences(), epochs=1, seed=0, progress=False)
    gm = fit_rating_model(backbone, train, {"epochs": 2, "lr": 1e-2, "seed": 0})
    ft = RatingMetaModel(gm, {"algorithm": "finetune", "inner_steps": 3, "inner_lr": 0.3})
    a = evaluate_ratings(ft, data, test, 5)
    torch.manual_seed(123)  # the caller's generator must not matter
    b = evaluate_ratings(ft, data, test[::-1], 5)
    assert a["summary"]["rmse"] == pytest.approx(b["summary"]["rmse"], rel=1e-6)
    assert a["per_user"] == pytest.approx(b["per_user"][::-1], rel=1e-6)
    still = RatingMetaModel(gm, {"algorithm": "finetune", "inner_steps": 3, "inner_lr": 0.3,
                                 "adapt_when_scoring": False})  # fmt: skip
    glob = RatingMetaModel(gm, {"algorithm": "finetune", "inner_steps": 0})
    assert evaluate_ratings(still, data, test, 5)["summary"]["rmse"] == pytest.approx(
        evaluate_ratings(glob, data, test, 5)["summary"]["rmse"], rel=1e-6
    )


def test_melo_refuses_a_split_by_time(tmp_path):
    """--order time was ignored under --protocol melo (its users are split at random)."""
    from warmrec.errors import ConfigError
    from warmrec.experiments.studies.coldstart import ColdStartSettings, split_rating_users

    data = melo_ratings(offset_ratings(n_users=20), min_user=5, min_item=1, max_len=30)
    with pytest.raises(ConfigError, match="splits its users at random"):
        split_rating_users(data, ColdStartSettings(order="time"), seed=0)


def test_the_global_rating_model_is_the_same_for_a_seed_whatever_ran_before():
    """The rating head's init was drawn from the global torch generator: the trainer's seed
    left the global rating model (and every MELO figure built on it) to what had run before."""
    import copy

    data = melo_ratings(offset_ratings(n_users=30), min_user=5, min_item=1, max_len=30)
    backbone = get_model("sasrec", tiny_net("sasrec", dropout_all=0.0, max_len=30))
    backbone.fit(data.sequences(), epochs=1, seed=0, progress=False)
    heads = []
    for before in (0, 1):
        torch.manual_seed(before)
        gm = fit_rating_model(copy.deepcopy(backbone), data, {"epochs": 1, "seed": 5})
        heads.append(gm.net.head.state_dict())
    for k, v in heads[0].items():
        torch.testing.assert_close(heads[1][k], v, rtol=0, atol=0)


def test_rating_train_shots_longer_than_every_user_is_named_in_the_error(rating_setup):
    from warmrec.errors import ModelError
    from warmrec.meta.maml import meta_train

    _, train, _, gm = rating_setup
    with pytest.raises(ModelError, match=r"train_shots \[40\] needs a user with at least 41"):
        meta_train(gm, train, {"algorithm": "fomaml", "train_shots": (40,)}, cls=RatingMetaModel)


def test_melo_lr_grid_where_every_rate_diverges_is_one_clear_line(tmp_path):
    """Every fine-tuning rate of the grid diverging (NaN RMSE on meta-valid users) left the rate
    None: the error was MetaConfig's 'inner_lr: ... found None', and ``{seed}-lr.json`` held a
    null that a resume read back. Now one line naming lr_grid and the RMSE of each rate."""
    from click.testing import CliRunner

    from warmrec.cli.main import cli

    args, _ = _melo_cli(tmp_path, "finetune")
    cfg = tmp_path / "melo.toml"
    cfg.write_text(cfg.read_text().replace("lr_grid = [0.3]", "lr_grid = [1e30]"))
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2
    assert "lr_grid" in r.output and "1e+30: nan" in r.output and "None" not in r.output
    assert not (tmp_path / "out" / "runs" / "0-lr.json").exists()
