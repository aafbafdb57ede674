"""One small registry: model name -> Recommender class.

The built-in models are listed in :data:`BUILTIN_MODELS` as ``"module:Class"`` entries and imported
only when first asked for, so ``import warmrec.registry`` and :func:`available_models` load no model
code (and no torch). A model module registers its class with :func:`register_model` when it is
imported; the registry itself never imports a module that imports it back at top level.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from warmrec.models.base import Recommender

from warmrec.errors import ModelError

BUILTIN_MODELS: dict[str, str] = {
    "ar": "warmrec.models.rules:AssociationRules",
    "bert4rec": "warmrec.models.bert4rec:BERT4Rec",
    "bst": "warmrec.models.bst:BST",
    "gru4rec": "warmrec.models.gru4rec:GRU4Rec",
    "fresh": "warmrec.models.fresh:Fresh",
    "featrank": "warmrec.models.featrank:FeatRank",
    "hybrid": "warmrec.models.hybrid:Hybrid",
    "item2vec": "warmrec.models.item2vec:Item2Vec",
    "itemknn": "warmrec.models.knn:ItemKNN",
    "markov": "warmrec.models.rules:Markov",
    "narm": "warmrec.models.narm:NARM",
    "pop": "warmrec.models.popularity:Pop",
    "sasrec": "warmrec.models.sasrec:SASRec",
    "sessionpop": "warmrec.models.popularity:SessionPop",
    "sknn": "warmrec.models.knn:SKNN",
    "sr": "warmrec.models.rules:SequentialRules",
    "ssept": "warmrec.models.ssept:SSEPT",
    "tfidf": "warmrec.models.text:TfidfContent",
    "vsknn": "warmrec.models.knn:VSKNN",
}
"""Built-in model name -> ``"module:Class"``, imported on first use."""

_MODELS: dict[str, type] = {}  # registered (imported) classes


def _where(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def register_model(name: str) -> Callable[[type], type]:
    """Class decorator: make a Recommender available as ``name`` (case-insensitive).

    A built-in name can only be registered by the class :data:`BUILTIN_MODELS` names.
    """

    def deco(cls: type) -> type:
        key = name.lower()
        builtin = BUILTIN_MODELS.get(key)
        if builtin is not None and builtin != _where(cls):
            raise ModelError(
                f"model name '{name}' is the built-in {builtin}; found {_where(cls)}: choose "
                "another name"
            )
        if key in _MODELS and _MODELS[key] is not cls:
            raise ModelError(f"model name '{name}' registered twice")
        cls.name = key
        _MODELS[key] = cls
        return cls

    return deco


def model_class(name: str) -> type:
    """The Recommender class registered as ``name`` (importing a built-in model's module)."""
    key = name.lower()
    if key in _MODELS:
        return _MODELS[key]
    entry = BUILTIN_MODELS.get(key)
    if entry is None:
        raise ModelError(f"unknown model '{name}'; available: {', '.join(available_models())}")
    module, _, qualname = entry.partition(":")
    importlib.import_module(module)  # its @register_model fills _MODELS
    if key not in _MODELS:
        raise ModelError(f"built-in model '{key}': {module} did not register {qualname}")
    return _MODELS[key]


def get_model(name: str, config: dict[str, Any] | None = None, **overrides: Any) -> Recommender:
    """A new, unfitted model by registered name."""
    return model_class(name)(config, **overrides)


def available_models() -> list[str]:
    """Every registered name: the built-ins and those registered since (nothing is imported)."""
    return sorted(BUILTIN_MODELS.keys() | _MODELS.keys())
