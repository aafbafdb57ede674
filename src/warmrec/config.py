"""Typed configs: dataclasses built from mappings, unknown keys rejected; TOML files; ``--set`` overrides.

A model's config is a dataclass beside the model. :func:`build_config` fills it from a mapping
and names any unknown key with the valid ones; :func:`apply_overrides` applies ``a.b=c`` strings
(values parsed as TOML literals, falling back to plain strings).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from warmrec.errors import ConfigError

T = TypeVar("T")


def build_config(cls: type[T], values: Mapping[str, Any] | T | None = None, **overrides: Any) -> T:
    """An instance of dataclass ``cls`` from ``values`` and ``overrides``; unknown keys raise."""
    if values is not None and dataclasses.is_dataclass(values) and not isinstance(values, Mapping):
        values = dataclasses.asdict(values)
    merged = dict(values or {})
    merged.update(overrides)
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(merged) - set(names))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(repr(u) for u in unknown)} for {cls.__name__}; "
            f"valid keys: {', '.join(sorted(names))}"
        )
    for k, v in list(merged.items()):
        default = names[k].default
        if isinstance(v, list) and isinstance(default, tuple):
            merged[k] = tuple(v)
        if isinstance(default, bool) and not isinstance(v, bool):
            raise ConfigError(f"{cls.__name__}.{k}: expected true/false, found {v!r}")
        if isinstance(default, int) and not isinstance(default, bool) and isinstance(v, float):
            if not v.is_integer():
                raise ConfigError(f"{cls.__name__}.{k}: expected an integer, found {v!r}")
            merged[k] = int(v)
        if isinstance(default, float) and isinstance(v, int) and not isinstance(v, bool):
            merged[k] = float(v)
    try:
        return cls(**merged)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{cls.__name__}: {e}") from e


def config_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-friendly dict of a dataclass config."""
    return dataclasses.asdict(cfg)


def parse_value(text: str) -> Any:
    """Parse a ``--set`` value as a TOML literal (``3``, ``0.1``, ``true``, ``[1, 2]``, ``"x"``);
    anything else is kept as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(config: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``a.b=c`` overrides to a nested dict (in place and returned)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, found {item!r}")
        key, value = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ConfigError(f"--set expects key=value, found {item!r}")
        node = config
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {key}: '{p}' is a value, not a table")
            node = nxt
        node[parts[-1]] = parse_value(value.strip())
    return config


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML experiment file, with errors that name the file and line."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError as e:
        raise ConfigError(f"{p}: config file not found") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: invalid TOML: {e}") from e
