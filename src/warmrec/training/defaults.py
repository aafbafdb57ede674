"""The trainer defaults that runs resolve, as one key for the stores that resume runs.

A neural run that leaves a trainer setting open takes it from its model's ``default_trainer``
(:attr:`~warmrec.models.neural.NeuralRecommender.default_trainer`) over the training loop's
:class:`~warmrec.training.loop.TrainerConfig` defaults. The run stores that resume work (curve
run files, transfer and cold-start studies, recipe steps, ``warmrec tune`` and ``warmrec auto``
folders) key what they keep by the settings a caller gave, so a changed default (SASRec's
patience went from 5 to 30 on 2026-12-05) would otherwise have them reuse results made under the
old one. :func:`trainer_defaults_key` is part of those keys: a change to any model's default
trainer, or to the loop's, makes them run again (or refuse the folder) instead.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def trainer_defaults() -> dict[str, Any]:
    """``{"loop": TrainerConfig's defaults, "models": {name: default_trainer}}`` over every
    built-in and registered model that has a default trainer (importing the built-ins)."""
    from warmrec.registry import available_models, model_class
    from warmrec.training.loop import TrainerConfig

    models = {}
    for name in available_models():
        dt = getattr(model_class(name), "default_trainer", None)
        if dt:
            models[name] = dict(dt)
    return {"loop": TrainerConfig().model_dump(mode="json"), "models": models}


def trainer_defaults_key() -> str:
    """A short hash of :func:`trainer_defaults` (16 hex digits)."""
    text = json.dumps(trainer_defaults(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
