"""Config schemas and up-front validation of a run's settings.

:func:`config_schema` gives the JSON Schema of a model's config (or of the trainer's), for
``warmrec models --schema NAME``, search spaces and serving metadata. :func:`check_configs`
builds a model's config and its trainer settings without touching any data, so a bad value is
reported in one line before a log is read.
"""

from __future__ import annotations

from typing import Any

from warmrec.config import ConfigModel
from warmrec.errors import ConfigError
from warmrec.registry import model_class
from warmrec.training.loop import TrainerConfig

TRAINER_NAMES = ("train", "trainer")


def config_schema(name: str) -> dict[str, Any]:
    """The JSON Schema of a registered model's config, of the trainer's for ``"train"``, or of
    a whole run config (:class:`~warmrec.experiments.spec.RunSpec`) for ``"run"``."""
    if name.lower() in TRAINER_NAMES:
        return TrainerConfig.model_json_schema()
    if name.lower() == "run":
        from warmrec.experiments.spec import run_schema

        return run_schema()
    return model_class(name).Config.model_json_schema()


def check_configs(
    name: str,
    model_config: dict[str, Any] | None = None,
    train_config: dict[str, Any] | None = None,
) -> tuple[ConfigModel, TrainerConfig | None]:
    """Build and validate a model's config and its trainer settings without touching any data:
    the ``(model config, TrainerConfig or None)``. The same rule as a run's
    (:class:`~warmrec.experiments.spec.ModelSpec`): a model whose ``fit`` takes a trainer (neural
    models, hybrids) takes training settings, any other refuses them. Raises a one-line
    ConfigError or ModelError."""
    from warmrec.experiments.spec import ModelSpec

    spec = ModelSpec(name=name, config=dict(model_config or {}))
    cfg = spec.typed()
    if not spec.takes_trainer():
        if train_config:
            raise ConfigError(
                f"model '{name}' takes no training settings; got {', '.join(sorted(train_config))}"
            )
        return cfg, None
    return cfg, spec.trainer(train_config or {})
