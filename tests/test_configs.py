"""The example configs in configs/ stay valid: known sections and keys, buildable model and
trainer settings, an existing split method."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from warmrec.config import build_config, load_toml
from warmrec.data.split import METHODS
from warmrec.experiments.spec import spec_from_config
from warmrec.registry import get_model
from warmrec.training.loop import TrainerConfig

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.toml"))


def test_there_are_example_configs():
    assert len(CONFIGS) >= 3


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_example_config_is_valid(path):
    cfg = load_toml(path)
    assert set(cfg) <= {"data", "split", "model", "train", "eval"}
    assert path.name.split("_")[0] == cfg["model"]["name"]  # the file is named for its model
    model = dict(cfg["model"])
    get_model(model.pop("name"), model)  # unknown or invalid model keys raise ConfigError
    build_config(TrainerConfig, cfg.get("train", {}))
    split = dict(cfg.get("split", {}))
    method = METHODS[split.pop("method", "loo")]
    assert split.pop("resplit", False) in (True, False)  # split folders: merge and split again
    assert set(split) <= set(inspect.signature(method).parameters)
    spec_from_config(cfg)  # the whole run: sections, model, trainer, split, eval
    assert f"--config configs/{path.name}" in path.read_text().splitlines()[0]


# -- errors before any data is read; schemas; TOML paths -----------------------------------------
@pytest.mark.parametrize(
    ("setting", "line"),
    [
        ("model.d=abc", "SASRecConfig.d: expected an integer > 0, found 'abc'"),
        ("train.epochs=abc", "--epochs: expected an integer >= 1, found 'abc'"),
        ('model.loss="nope"', "SASRecConfig.loss: expected one of 'ce', "),
        ("model.n_heads=3", "SASRecConfig.n_heads: expected a divisor of d = 64, found 3"),
        ("model.dropout=1.5", "SASRecConfig.dropout: expected a number >= 0 and < 1, found 1.5"),
        ("train.lr=0", "train.lr: expected a number > 0, found 0"),
        ('train.schedule="step"', "train.schedule: expected one of 'none'"),
    ],
)
def test_train_refuses_a_bad_setting_in_one_line_before_reading_data(tmp_path, setting, line):
    """The data path does not exist: the config error must come first (today a torch
    traceback after the data is loaded)."""
    from click.testing import CliRunner

    from warmrec.cli.main import cli

    missing = tmp_path / "no-such-log.csv"
    args = ["train", "--model", "sasrec", "--data", str(missing), "--out", str(tmp_path / "m")]
    res = CliRunner().invoke(cli, [*args, "--set", setting])
    assert res.exit_code == 2
    err = res.output.strip()
    assert len(err.splitlines()) == 1 and line in err, err
    assert "no-such-log" not in err


def test_model_configs_reject_bad_values_at_construction():
    from warmrec.errors import ConfigError

    bad = ({"loss": "nope"}, {"n_heads": 3, "d": 64}, {"seen_bias": "yes"}, {"shared_negatives": 1})
    for values in bad:
        with pytest.raises(ConfigError, match=r"^SASRecConfig\.\w+: expected"):
            get_model("sasrec", values)
    with pytest.raises(ConfigError, match="SSEPTConfig.n_heads: expected a divisor of"):
        get_model("ssept", {"n_heads": 3})
    with pytest.raises(ConfigError, match="unknown key 'x' for GRU4RecConfig"):
        get_model("gru4rec", {"x": 1})
    with pytest.raises(
        ConfigError, match=r"BSTConfig.mlp\[1\]: expected a list, each an integer >= 1, found 0"
    ):
        get_model("bst", {"mlp": [64, 0]})


def test_models_schema_prints_the_json_schema():
    from click.testing import CliRunner

    from warmrec.cli.main import cli
    from warmrec.schema import config_schema

    res = CliRunner().invoke(cli, ["models", "--schema", "sasrec"])
    assert res.exit_code == 0, res.output
    schema = json.loads(res.stdout)
    assert schema == config_schema("sasrec")
    props = schema["properties"]
    assert schema["additionalProperties"] is False
    assert props["d"]["exclusiveMinimum"] == 0 and props["d"]["description"]
    assert set(props["loss"]["enum"]) == {"ce", "sampled_ce", "bce", "gbce", "bpr-max", "auto"}
    assert all(p.get("description") for p in props.values())  # one docstring per field
    train = config_schema("train")["properties"]
    assert train["optimizer"]["enum"] == ["adamw", "adam", "adagrad", "sgd"]
    assert all(p.get("description") for p in train.values())
    res = CliRunner().invoke(cli, ["models", "--schema", "nosuchmodel"])
    assert res.exit_code == 2 and "unknown model 'nosuchmodel'" in res.output


def test_config_file_paths_resolve_against_the_file(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from tests.conftest import cyclic_log
    from warmrec.cli.main import cli

    exp = tmp_path / "exp"
    exp.mkdir()
    cyclic_log(n_sessions=30, n_items=8, length=5).write_csv(exp / "log.csv")
    (exp / "pop.toml").write_text('[data]\npath = "log.csv"\n[model]\nname = "pop"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    res = CliRunner().invoke(
        cli, ["train", "--config", str(exp / "pop.toml"), "--out", "m", "--json"]
    )
    assert res.exit_code == 0, res.output
    assert (elsewhere / "m" / "config.json").is_file()
