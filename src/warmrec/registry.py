"""One small registry: model name -> Recommender class."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from warmrec.errors import ModelError

_MODELS: dict[str, type] = {}


def register_model(name: str) -> Callable[[type], type]:
    """Class decorator: make a Recommender available as ``name`` (case-insensitive)."""

    def deco(cls: type) -> type:
        key = name.lower()
        if key in _MODELS and _MODELS[key] is not cls:
            raise ModelError(f"model name '{name}' registered twice")
        cls.name = key
        _MODELS[key] = cls
        return cls

    return deco


def _ensure_loaded() -> None:
    import warmrec.models  # noqa: F401  (registers the built-in models)


def model_class(name: str) -> type:
    _ensure_loaded()
    try:
        return _MODELS[name.lower()]
    except KeyError:
        raise ModelError(
            f"unknown model '{name}'; available: {', '.join(sorted(_MODELS))}"
        ) from None


def get_model(name: str, config: dict[str, Any] | None = None, **overrides: Any):
    """A new, unfitted model by registered name."""
    return model_class(name)(config, **overrides)


def available_models() -> list[str]:
    _ensure_loaded()
    return sorted(_MODELS)
