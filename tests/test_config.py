"""Typed configs: unknown keys rejected, TOML literals in --set, type checks."""

from dataclasses import dataclass

import pytest

from warmrec.config import apply_overrides, build_config, load_toml, parse_value
from warmrec.errors import ConfigError


@dataclass
class Cfg:
    d: int = 64
    lr: float = 1e-3
    tied: bool = True
    name: str = "x"


def test_build_and_unknown_key():
    assert build_config(Cfg, {"d": 32}).d == 32
    assert build_config(Cfg, {"lr": 1}).lr == 1.0
    with pytest.raises(ConfigError, match="'dd'.*valid keys: d, lr, name, tied"):
        build_config(Cfg, {"dd": 3})
    with pytest.raises(ConfigError, match="true/false"):
        build_config(Cfg, {"tied": "yes"})
    with pytest.raises(ConfigError, match="integer"):
        build_config(Cfg, {"d": 1.5})


def test_overrides_parse_toml_literals():
    cfg = apply_overrides(
        {"model": {"d": 1}}, ["model.d=32", "train.lr=0.01", "name=abc", "x=[1, 2]"]
    )
    assert cfg == {"model": {"d": 32}, "train": {"lr": 0.01}, "name": "abc", "x": [1, 2]}
    assert parse_value("true") is True
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["novalue"])


def test_load_toml_errors(tmp_path):
    p = tmp_path / "a.toml"
    p.write_text("[model]\nd = \n")
    with pytest.raises(ConfigError, match="a.toml: invalid TOML"):
        load_toml(p)
    with pytest.raises(ConfigError, match="not found"):
        load_toml(tmp_path / "missing.toml")
