"""The run owner: RunSpec validation before any data is read, the default-split policy, the run
record every saved model carries, and resume with the default number of epochs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import cyclic_log
from warmrec.cli.main import cli
from warmrec.errors import ConfigError
from warmrec.experiments.run import run_evaluate
from warmrec.experiments.spec import (
    LooSplit,
    RunSpec,
    TemporalSplit,
    fit_run,
    prepare_run,
    save_run,
    spec_from_config,
    spec_of_model,
)
from warmrec.models.base import Recommender


@pytest.fixture
def log_csv(tmp_path: Path) -> Path:
    p = tmp_path / "log.csv"
    cyclic_log(n_sessions=60, n_items=12, length=6).write_csv(p)
    return p


def test_sections_are_typed_and_checked_before_reading(tmp_path: Path) -> None:
    spec = spec_from_config(
        {
            "data": {"path": str(tmp_path / "missing.csv")},
            "split": {"method": "loo", "time_order": "recbole"},
            "model": {"name": "sasrec", "d": 32},
            "train": {"epochs": 3},
            "eval": {"metrics": ["hr@5"]},
        }
    )
    assert isinstance(spec.split, LooSplit) and spec.split.time_order == "recbole"
    assert spec.model.name == "sasrec" and spec.model.typed().d == 32
    assert spec.trainer().epochs == 3
    cases = [
        ({"bogus": {}}, "unknown config section(s) bogus"),
        ({"model": {"name": "sasrec", "bogus": 1}}, "unknown key 'bogus'"),
        ({"model": {"name": "pop"}, "train": {"epochs": 2}}, "takes no training settings"),
        ({"split": {"method": "loo", "test_days": 3}}, "unknown key 'test_days'"),
        ({"split": {"method": "nope"}}, "split method: expected one of auto"),
        ({"split": {"method": "temporal"}}, "--set split.test_start="),
        ({"eval": {"metrics": ["hr@x"]}}, "hr@x"),
        ({"eval": {"protocol": "sampled-7"}}, "unknown protocol"),
    ]
    for cfg, msg in cases:
        with pytest.raises(ConfigError, match=msg.replace("(", r"\(").replace(")", r"\)")):
            spec_from_config(cfg)


def test_hybrid_takes_trainer_settings_like_its_neural_member() -> None:
    spec = spec_from_config({"model": {"name": "hybrid"}, "train": {"epochs": 2}})
    assert spec.trainer().epochs == 2  # one validator: the model's fit decides


def test_toml_round_trip_and_json_schema(tmp_path: Path) -> None:
    from warmrec.schema import config_schema

    cfg = {
        "data": {"path": "x.csv", "columns": {"timestamp": "created_at"}},
        "split": {"method": "temporal", "test_start": "2019-07-01", "valid_start": "2019-01-01"},
        "model": {"name": "gru4rec", "hidden_size": 16},
        "train": {"epochs": 2},
    }
    spec = spec_from_config(cfg)
    assert isinstance(spec.split, TemporalSplit)
    again = spec_from_config(spec.to_config())
    assert again == spec
    schema = config_schema("run")
    assert set(schema["properties"]) >= {"data", "split", "model", "train", "eval", "transfer"}
    r = CliRunner().invoke(cli, ["models", "--schema", "run"])
    assert r.exit_code == 0 and json.loads(r.stdout)["title"] == "RunSpec"


def test_one_default_split_policy(tmp_path: Path, log_csv: Path) -> None:
    """``auto``: a session log splits by last sessions; a split folder is used as given; a
    method on a split folder without resplit is refused."""
    prep = prepare_run(spec_from_config({"data": {"path": str(log_csv)}}))
    assert prep.info["split"] == "last_session"
    assert prep.info["spec"].split.method == "last_session"
    folder = tmp_path / "split"
    r = CliRunner().invoke(cli, ["data", "split", str(log_csv), "--out", str(folder)])
    assert r.exit_code == 0, r.output
    given = prepare_run(spec_from_config({"data": {"path": str(folder)}}))
    assert given.info["split"] == "given"
    with pytest.raises(ConfigError, match="used as given"):
        prepare_run(spec_from_config({"data": {"path": str(folder)}, "split": {"method": "loo"}}))


def test_fit_run_records_the_whole_run_and_evaluate_rebuilds_it(
    tmp_path: Path, log_csv: Path, monkeypatch
) -> None:
    spec = spec_from_config(
        {"data": {"path": str(log_csv)}, "model": {"name": "markov"}, "eval": {"metrics": ["hr@3"]}}
    )
    prep = prepare_run(spec)
    model = fit_run(spec, prep)
    run = model.meta.run
    assert run.spec["split"]["method"] == "last_session"  # the split as run, not "auto"
    assert run.valid["hr@3"] > 0.9 and run.n_valid == len(prep.valid)  # a cyclic log
    save_run(model, tmp_path / "m")
    monkeypatch.chdir(tmp_path.parent)  # from anywhere
    again = spec_of_model(Recommender.load(tmp_path / "m"))
    assert again.data.path == str(log_csv) and again.eval.metrics == ["hr@3"]
    r = CliRunner().invoke(cli, ["evaluate", str(tmp_path / "m"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["metrics"]["hr@3"] > 0.9


def test_resume_without_epochs_uses_the_default(tmp_path: Path, log_csv: Path) -> None:
    """``train --checkpoint-dir c --resume`` without ``--epochs`` (TrainerConfig.epochs None)."""
    sets = ["--set", "model.d=8", "--set", "model.n_heads=1", "--set", "model.n_layers=1"]
    sets += ["--set", "model.ffn_dim=8", "--set", "model.max_len=6"]
    sets += ["--patience", "1", "--set", "train.batch_size=16"]
    base = ["train", "--model", "sasrec", "--data", str(log_csv), *sets]
    ck = str(tmp_path / "ck")
    first = CliRunner().invoke(cli, [*base, "--checkpoint-dir", ck, "--out", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    again = CliRunner().invoke(
        cli, [*base, "--checkpoint-dir", ck, "--resume", "--out", str(tmp_path / "b"), "--json"]
    )
    assert again.exit_code == 0, again.output
    a = Recommender.load(tmp_path / "a").meta.run.valid
    b = Recommender.load(tmp_path / "b").meta.run.valid
    assert a == pytest.approx(b)  # a finished run resumed: the same model
    # the model file says what trainer it trained with: the given settings over SASRec's
    # default trainer (batch 32 overridden, lr and schedule its own), every field resolved
    t = Recommender.load(tmp_path / "a").meta.run.trainer
    assert (t["patience"], t["batch_size"]) == (1, 16)
    assert (t["lr"], t["schedule"], t["warmup_steps"]) == (2e-3, "cosine", 200)
    assert t["epochs"] is None and t["checkpoint_dir"] == ck
    assert Recommender.load(tmp_path / "b").meta.run.trainer["resume"] is True
    run = Recommender.load(tmp_path / "a").meta.run  # and how training ended
    assert 1 <= run.best_epoch <= run.epochs_run and isinstance(run.stopped_early, bool)
    assert run.stopped_early == (run.epochs_run < 100)  # patience 1 on a 100-epoch cap


def test_pretrain_and_transfer_models_evaluate_from_their_directory(
    tmp_path: Path, log_csv: Path
) -> None:
    tiny = ["--set", "model.d=8", "--set", "model.n_heads=1", "--set", "model.n_layers=1"]
    tiny += ["--set", "model.ffn_dim=8", "--set", "train.epochs=1"]
    pre = tmp_path / "pre"
    r = CliRunner().invoke(cli, ["pretrain", "--data", str(log_csv), *tiny, "--out", str(pre)])
    assert r.exit_code == 0, r.output
    tgt = tmp_path / "tgt"
    r = CliRunner().invoke(
        cli,
        ["transfer", "--from", str(pre), "--data", str(log_csv), "--set", "train.epochs=1",
         "--strategy", "freeze_embeddings", "--out", str(tgt)],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    run = Recommender.load(tgt).meta.run
    assert run.trainer["epochs"] == 1 and run.trainer["patience"] == 30  # SASRec's default
    assert Recommender.load(pre).meta.run.trainer["epochs"] == 1
    assert run.spec["transfer"]["strategy"] == "freeze_embeddings"
    assert run.spec["transfer"]["source"] == str(pre)
    for d in (pre, tgt):
        ev = CliRunner().invoke(cli, ["evaluate", str(d), "--json"])
        assert ev.exit_code == 0, ev.output
        pr = CliRunner().invoke(cli, ["predict", str(d), "-k", "2", "--out", str(d) + ".csv"])
        assert pr.exit_code == 0, pr.output


def test_a_runspec_without_data_fits_on_data_given_in_python(log_csv: Path) -> None:
    import polars as pl

    spec = RunSpec(model={"name": "pop"})
    prep = prepare_run(spec, data=pl.read_csv(log_csv))
    model = fit_run(spec, prep)
    assert model.meta.run.data is None and model.meta.run.spec["model"]["name"] == "pop"


def test_data_split_follows_the_policy_and_refuses_what_cannot_be_read_back(
    tmp_path: Path, log_csv: Path
) -> None:
    out = str(tmp_path / "s")
    r = CliRunner().invoke(cli, ["data", "split", str(log_csv), "--method", "loo", "--out", out])
    assert r.exit_code == 2 and "--method last_session" in r.output  # sessions in two parts
    r = CliRunner().invoke(
        cli, ["data", "split", str(log_csv), "--method", "temporal", "--out", out]
    )
    assert r.exit_code == 2 and "--set split.test_start=" in r.output
    args = ["data", "split", str(log_csv), "--method", "temporal", "--set", "test_start=50"]
    r = CliRunner().invoke(cli, [*args, "--out", out])
    assert r.exit_code == 2 and "validation part empty" in r.output and "valid_start" in r.output
    assert not Path(out).exists()


def test_train_fraction_is_a_nested_seeded_scenario(log_csv: Path) -> None:
    """``[split] train_fraction``: the DataScarcity scenario (learning curves) in a run."""
    base = {"data": {"path": str(log_csv)}}
    full = prepare_run(spec_from_config(base))
    keys = {}
    for frac in (0.25, 0.5):
        spec = spec_from_config({**base, "split": {"train_fraction": frac, "fraction_seed": 3}})
        prep = prepare_run(spec)
        assert prep.info["spec"].split.method == "last_session"  # auto resolved, fraction kept
        assert prep.info["train_units"] == round(frac * len(full.train.sequences))
        assert len(prep.test) == len(full.test) and prep.vocab is not None
        keys[frac] = set(prep.train.sequences.keys.to_list())
    assert keys[0.25] < keys[0.5]  # nested for one seed
    with pytest.raises(ConfigError, match="train_fraction"):
        spec_from_config({**base, "split": {"train_fraction": 0}})


def test_loo_new_min_new_reaches_the_split_function():
    spec = spec_from_config({"split": {"method": "loo_new", "min_new": 2}})
    assert spec.split.options() == {"min_new": 2}
    assert spec_from_config({"split": {"method": "loo_new"}}).split.options() == {"min_new": 3}
    with pytest.raises(ConfigError, match="min_new"):
        spec_from_config({"split": {"method": "loo_new", "min_new": 1}})


def test_refit_all_refits_a_neural_model_for_the_epochs_validation_kept(log_csv: Path) -> None:
    from tests.conftest import tiny_net

    spec = spec_from_config(
        {
            "data": {"path": str(log_csv)},
            "model": {"name": "sasrec", **tiny_net("sasrec")},
            "train": {"epochs": 6, "patience": 2, "seed": 0, "progress": False},
            "refit_all": True,
        }
    )
    prep = prepare_run(spec)
    model = fit_run(spec, prep)
    refit = model.meta.run.refit
    best = model.meta.run.best_epoch
    assert refit["on"] == "all" and refit["epochs"] == best >= 1
    assert refit["events"] == prep.frame.height
    assert model.train_result.epochs_run == best  # the refit's own loop: no validation left
    assert spec.to_config()["refit_all"] is True
    with pytest.raises(ConfigError, match="fits its own weights on the validation part"):
        fit_run(spec.replace(model={"name": "fresh"}, train=None), prep)


def test_item_titles_read_recbole_movie_title_token_lists():
    """ml-100k's RecBole item file names its titles movie_title (a token sequence): a source
    pre-trained on it stored no titles, and --init text refused it."""
    import polars as pl

    from warmrec.experiments.spec import item_titles

    items = pl.DataFrame({"item_id": [1, 2], "movie_title": [["Toy", "Story"], ["GoldenEye"]]})
    assert item_titles(items) == {1: "Toy Story", 2: "GoldenEye"}
    assert item_titles(pl.DataFrame({"item_id": [1], "genre": ["x"]})) is None


def test_the_loop_validates_as_the_run_is_scored(tmp_path: Path) -> None:
    """Under ``loo_new`` the figures exclude seen items: the loop's validation (early stopping,
    the best epoch) did not, and chose the epochs on another ranking. Now it follows
    ``[eval] exclude_seen`` unless ``[train]`` names its own."""
    import numpy as np
    import polars as pl

    from warmrec.experiments.spec import evaluate_run

    rng = np.random.default_rng(0)
    rows = []
    for u in range(40):  # repeats and new items, so that excluding seen items changes ranks
        items = rng.integers(1, 15, size=12)
        rows += [(u, int(i), t) for t, i in enumerate(items)]
    log = tmp_path / "log.csv"
    pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row").write_csv(log)
    base = {"data": {"path": str(log)}, "split": {"method": "loo_new"},
            "model": {"name": "sasrec", "d": 16, "n_layers": 1}}  # fmt: skip
    spec = spec_from_config({**base, "train": {"epochs": 2, "progress": False}})
    assert spec.eval.exclude_seen and spec.trainer().exclude_seen
    own = spec_from_config({**base, "train": {"epochs": 2, "exclude_seen": False}})
    assert own.trainer().exclude_seen is False  # [train] names its own: kept
    prep = prepare_run(spec)
    model = fit_run(spec, prep, evaluate_valid=False)
    best = model.train_result.best_metric
    got = evaluate_run(model, prep.valid, spec, prep).summary["ndcg@10"]
    assert best == pytest.approx(got, abs=1e-6)


def test_a_source_pre_trained_on_the_targets_test_events_is_refused(
    tmp_path: Path, log_csv: Path
) -> None:
    """A source pre-trained on the same log under another split (here: a smaller test share)
    had trained on the target's test sessions: the transferred model was scored on them."""
    from tests.conftest import tiny_net

    net = {"name": "sasrec", **tiny_net("sasrec")}
    pre_spec = spec_from_config({"data": {"path": str(log_csv)}, "model": net,
                                 "train": {"epochs": 1}, "pretrain": True,
                                 "split": {"method": "last_session", "test_share": 0.05}})  # fmt: skip
    pre = save_run(fit_run(pre_spec, prepare_run(pre_spec)), tmp_path / "pre")
    cfg = {"data": {"path": str(log_csv)}, "train": {"epochs": 1},
           "transfer": {"source": str(pre)},
           "split": {"method": "last_session", "test_share": 0.3}}  # fmt: skip
    spec = spec_from_config(cfg)
    with pytest.raises(ConfigError, match="were training events of the model"):
        fit_run(spec, prepare_run(spec))
    same = spec_from_config({**cfg, "split": {"method": "last_session", "test_share": 0.05}})
    assert fit_run(same, prepare_run(same)) is not None  # its own split: apart by construction


def test_transfer_spec_names_the_transfer_modules_choices() -> None:
    """[transfer] init and position_init are Literal types (checked when the spec is built):
    the same names as the transfer module's."""
    from typing import get_args

    from warmrec.experiments.spec import TransferSpec
    from warmrec.transfer.embeddings import METHODS
    from warmrec.transfer.transfer import POSITION_INITS

    fields = TransferSpec.model_fields
    assert get_args(fields["init"].annotation) == METHODS
    assert get_args(fields["position_init"].annotation) == POSITION_INITS
    for bad, match in [
        ({"init": "bogus"}, "init: expected one of"),
        ({"init": "random", "init_options": {"noise": 0.1}}, "it takes no options"),
        ({"strategy_options": {"adapter": {"bottleneck": 0}}}, "adapter.bottleneck: expected"),
    ]:
        with pytest.raises(ConfigError, match=match):
            spec_from_config({"data": {"path": "x.csv"}, "transfer": {"source": "s", **bad}})
    # scratch starts no item table from the source: the init's options are not read
    spec_from_config(
        {"data": {"path": "x.csv"}, "transfer": {"source": "s", "strategy": "scratch",
                                                  "init_options": {"noise": 0.1}}}
    )  # fmt: skip


@pytest.fixture
def user_log_csv(tmp_path: Path) -> Path:
    """60 users x 8 events on 30 items (user_id, item_id, timestamp), drawn at random."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(0)
    n_users, length = 60, 8
    p = tmp_path / "users.csv"
    pl.DataFrame(
        {
            "user_id": np.repeat(np.arange(n_users), length),
            "item_id": rng.integers(1, 31, size=n_users * length),
            "timestamp": np.repeat(np.arange(n_users) * 1000, length)
            + np.tile(np.arange(length) * 10, n_users),
        }
    ).write_csv(p)
    return p


@pytest.mark.parametrize(
    "split", [{"method": "loo_new"}, {"method": "time_new_learners", "cut": 40_000}]
)
def test_an_explicit_exclude_seen_false_survives_the_rebuild(
    tmp_path: Path, user_log_csv: Path, split: dict
) -> None:
    """loo_new / time_new_learners turn exclude_seen on unless [eval] names it; an explicit
    false equals the field's default and was dropped by to_config, so evaluate (and tuning
    trials, --workers, studies: all rebuild from to_config) scored with seen items excluded."""
    cfg = {"data": {"path": str(user_log_csv)}, "split": split, "model": {"name": "pop"},
           "eval": {"exclude_seen": False}}  # fmt: skip
    spec = spec_from_config(cfg)
    assert spec.eval.exclude_seen is False
    assert spec_from_config(spec.to_config()).eval.exclude_seen is False
    forced = spec_from_config({k: v for k, v in cfg.items() if k != "eval"})
    assert spec_from_config(forced.to_config()).eval.exclude_seen is True  # the default kept
    if split["method"] != "loo_new":
        return
    out = save_run(fit_run(spec, prep := prepare_run(spec)), tmp_path / "m")
    assert len(prep.valid)
    recorded = Recommender.load(out).meta.run.valid["hr@10"]
    res, info = run_evaluate(out, part="valid")
    assert info["exclude_seen"] is False
    assert res.summary["hr@10"] == pytest.approx(recorded)


def test_the_coldstart_split_refuses_a_training_fraction(user_log_csv: Path) -> None:
    """train_fraction < 1 under the coldstart scenario was recorded but never applied (the
    scenario returned before DataScarcity): the run said it trained on half the users."""
    cfg = {"data": {"path": str(user_log_csv)}, "model": {"name": "pop"},
           "split": {"method": "coldstart", "scenario": {"shots": [1, 3]}}}  # fmt: skip
    with pytest.raises(ConfigError, match=r"train_fraction: expected 1 with split method "
                       r"'coldstart' .* found 0\.5"):  # fmt: skip
        spec_from_config({**cfg, "split": {**cfg["split"], "train_fraction": 0.5}})
    r = CliRunner().invoke(cli, ["train", "--model", "pop", "--data", str(user_log_csv),
                                 "--split", "coldstart", "--set", "split.scenario.shots=[1,3]",
                                 "--set", "split.train_fraction=0.5", "--out",
                                 str(user_log_csv.parent / "m")])  # fmt: skip
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "train_fraction" in r.output
    assert not (user_log_csv.parent / "m").exists()
    assert spec_from_config(cfg).split.train_fraction == 1.0


def test_the_coldstart_scenario_is_checked_for_training_events(
    tmp_path: Path, user_log_csv: Path
) -> None:
    """The coldstart scenario has no row split: evaluating a loo model with it skipped the
    training-event check (its targets were training events), and a coldstart model evaluated
    with another split stopped on an AttributeError."""
    shots = {"method": "coldstart", "scenario": {"shots": [1, 3]}}
    models = {}
    for name, split in (("loo", {"method": "loo"}), ("cs", shots)):
        spec = spec_from_config(
            {"data": {"path": str(user_log_csv)}, "split": split, "model": {"name": "pop"}}
        )
        models[name] = save_run(fit_run(spec, prepare_run(spec)), tmp_path / name)
    leak = "were training events of the model (it was trained with the {} split"
    with pytest.raises(ConfigError, match=re.escape(leak.format("loo"))):
        run_evaluate(models["loo"], {"split": shots})
    with pytest.raises(ConfigError, match=re.escape(leak.format("coldstart"))):
        run_evaluate(models["cs"], {"split": {"method": "loo"}})
    with pytest.raises(ConfigError, match=re.escape(leak.format("coldstart"))):
        run_evaluate(models["cs"], {"split": {**shots, "seed": 1}})  # other meta-train users
    own, info = run_evaluate(models["cs"])
    assert info["split"] == "coldstart" and own.n_examples > 0
    fewer, _ = run_evaluate(models["cs"], {"split": {**shots, "shot": 1}})  # same users
    assert fewer.n_examples == own.n_examples


def test_slices_refuse_the_coldstart_scenario_before_scoring(
    tmp_path: Path, user_log_csv: Path
) -> None:
    """evaluate --slices on a coldstart model stopped on an AttributeError (no row split)."""
    spec = spec_from_config({"data": {"path": str(user_log_csv)}, "model": {"name": "pop"},
                             "split": {"method": "coldstart", "scenario": {"shots": [1, 3]}}})  # fmt: skip
    out = save_run(fit_run(spec, prepare_run(spec)), tmp_path / "cs")
    with pytest.raises(ConfigError, match="slices: expected a row split .* found 'coldstart'"):
        run_evaluate(out, slices=True)
    r = CliRunner().invoke(cli, ["evaluate", str(out), "--slices"])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "row split" in r.output
