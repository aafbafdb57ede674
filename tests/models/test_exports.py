"""``warmrec.models`` re-exports every built-in model of the registry, lazily and by its class."""

import importlib

import warmrec.models as models
from warmrec.registry import BUILTIN_MODELS


def test_every_builtin_model_is_exported_by_its_class() -> None:
    for name, where in BUILTIN_MODELS.items():
        module, cls = where.split(":")
        assert cls in models.__all__, f"{name}: {cls} missing from warmrec.models.__all__"
        assert getattr(models, cls) is getattr(importlib.import_module(module), cls)
