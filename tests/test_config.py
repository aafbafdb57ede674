"""Typed configs: unknown keys rejected, TOML literals in --set, one-line errors, TOML paths."""

from typing import Literal

import pytest
from pydantic import Field

from warmrec.config import (
    ConfigModel,
    apply_overrides,
    build_config,
    config_dict,
    load_toml,
    parse_value,
)
from warmrec.errors import ConfigError


class Cfg(ConfigModel):
    d: int = Field(64, gt=0)
    """Width."""
    lr: float = 1e-3
    """Learning rate."""
    tied: bool = True
    """Tied."""
    name: str = "x"
    """Name."""
    kind: Literal["a", "b"] = "a"
    """Kind."""
    widths: tuple[int, ...] = (1,)
    """Widths."""


def test_build_and_unknown_key():
    assert build_config(Cfg, {"d": 32}).d == 32
    assert build_config(Cfg, {"lr": 1}).lr == 1.0
    assert build_config(Cfg, {"widths": [2, 3]}).widths == (2, 3)
    assert build_config(Cfg, build_config(Cfg, {"d": 8}), name="y").d == 8
    with pytest.raises(ConfigError, match="'dd'.*valid keys: d, kind, lr, name, tied, widths"):
        build_config(Cfg, {"dd": 3})
    with pytest.raises(ConfigError, match=r"'width' for Cfg \(did you mean 'widths'\?\)"):
        build_config(Cfg, {"width": 3})  # a typo: the close key is named
    with pytest.raises(ConfigError) as e:
        build_config(Cfg, {"zzz": 3})
    assert "did you mean" not in str(e.value)
    with pytest.raises(ConfigError, match="true or false"):
        build_config(Cfg, {"tied": "yes"})
    with pytest.raises(ConfigError, match="integer"):
        build_config(Cfg, {"d": 1.5})


@pytest.mark.parametrize(
    ("values", "line"),
    [
        ({"d": "abc"}, "Cfg.d: expected an integer > 0, found 'abc'"),
        ({"d": 0}, "Cfg.d: expected an integer > 0, found 0"),
        ({"kind": "c"}, "Cfg.kind: expected one of 'a', 'b', found 'c'"),
        ({"tied": 1}, "Cfg.tied: expected true or false, found 1"),
        ({"lr": "fast"}, "Cfg.lr: expected a number, found 'fast'"),
        # numbers are numbers: pydantic read true as 1.0 and "16" as 16 (saved as given)
        ({"lr": True}, "Cfg.lr: expected a number, found True"),
        ({"lr": "0.01"}, "Cfg.lr: expected a number, found '0.01'"),
        ({"d": "16"}, "Cfg.d: expected an integer > 0, found '16'"),
        ({"d": False}, "Cfg.d: expected an integer > 0, found False"),
    ],
)
def test_errors_are_one_line_with_key_found_expected(values, line):
    with pytest.raises(ConfigError) as e:
        build_config(Cfg, values)
    assert str(e.value) == line


def test_assignment_is_validated_and_dict_is_json():
    c = build_config(Cfg)
    with pytest.raises(ConfigError, match=r"^Cfg.d: expected an integer > 0, found -1$"):
        c.d = -1
    with pytest.raises(ConfigError, match=r"^Cfg.kind: expected one of 'a', 'b', found 'z'$"):
        Cfg(kind="z")
    assert config_dict(c) == {
        "d": 64,
        "lr": 1e-3,
        "tied": True,
        "name": "x",
        "kind": "a",
        "widths": [1],
    }


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


def test_load_toml_resolves_relative_paths_against_the_file(tmp_path, monkeypatch):
    folder = tmp_path / "exp"
    folder.mkdir()
    p = folder / "run.toml"
    p.write_text(
        '[data]\npath = "../data/log.csv"\n[train]\nlog_path = "logs/x.jsonl"\n'
        'checkpoint_dir = "/abs/ckpt"\nlr = 0.1\n[model]\nname = "sasrec"\n'
    )
    monkeypatch.chdir(tmp_path.parent)  # a cwd unrelated to the file
    cfg = load_toml(p)
    assert cfg["data"]["path"] == str(folder / "../data/log.csv")
    assert cfg["train"]["log_path"] == str(folder / "logs/x.jsonl")
    assert cfg["train"]["checkpoint_dir"] == "/abs/ckpt"
    assert cfg["model"]["name"] == "sasrec" and cfg["train"]["lr"] == 0.1
    assert load_toml(p, resolve=False)["data"]["path"] == "../data/log.csv"


def test_load_toml_resolves_feature_files_sources_and_caches_against_the_file(
    tmp_path, monkeypatch
):
    """[data] items / users and [transfer] source (names that say nothing of a path) and a
    text_cache folder were read from the working directory, not the config file's folder."""
    folder = tmp_path / "exp"
    folder.mkdir()
    p = folder / "run.toml"
    p.write_text(
        '[data]\npath = "log.csv"\nitems = "items.csv"\nusers = "~/users.csv"\n'
        'format = "csv"\n[transfer]\nsource = "../pre"\nstrategy = "finetune"\n'
        'model_options = { text_cache = "cache", item_repr = "text" }\n'
        '[model]\nname = "sasrec"\ntext_cache = ""\n[eval]\nitems = "not a path"\n'
    )
    monkeypatch.chdir(tmp_path.parent)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cfg = load_toml(p)
    assert cfg["data"]["items"] == str(folder / "items.csv")
    assert cfg["data"]["users"] == str(tmp_path / "home" / "users.csv")
    assert cfg["transfer"]["source"] == str(folder / "../pre")
    assert cfg["transfer"]["model_options"]["text_cache"] == str(folder / "cache")
    assert cfg["transfer"]["model_options"]["item_repr"] == "text"
    assert cfg["model"]["text_cache"] == ""  # "": no cache, not a folder
    assert cfg["data"]["format"] == "csv" and cfg["transfer"]["strategy"] == "finetune"
    assert cfg["eval"]["items"] == "not a path"  # only [data] items names a file
