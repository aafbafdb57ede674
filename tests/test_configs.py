"""The example configs in configs/ stay valid: known sections and keys, buildable model and
trainer settings, an existing split method."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from warmrec.config import build_config, load_toml
from warmrec.data.split import METHODS
from warmrec.experiments.run import eval_options
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
    eval_options(cfg)
    assert f"--config configs/{path.name}" in path.read_text().splitlines()[0]
