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


def config_schema(name: str) -> dict[str, Any]:
    """The JSON Schema of a model's config, or of the trainer's for ``name="train"``."""
    if name.lower() in ("train", "trainer"):
        from warmrec.training.loop import TrainerConfig

        return TrainerConfig.model_json_schema()
    return model_class(name).Config.model_json_schema()


def check_configs(
    name: str,
    model_config: dict[str, Any] | None = None,
    train_config: dict[str, Any] | None = None,
) -> tuple[Any, Any]:
    """Build and validate a model's config and, for a neural model, its trainer settings (the
    class's ``default_trainer`` under ``train_config``) without touching any data: the
    ``(model config, TrainerConfig or None)``. Raises a one-line ConfigError or ModelError."""
    from warmrec.config import build_config
    from warmrec.errors import ConfigError
    from warmrec.models.neural import NeuralRecommender

    klass = model_class(name)
    cfg = build_config(klass.Config, model_config or {})
    if not issubclass(klass, NeuralRecommender):
        if train_config:
            raise ConfigError(
                f"model '{name}' takes no training settings; got {', '.join(sorted(train_config))}"
            )
        return cfg, None
    return cfg, klass.trainer_config(train_config or {})
