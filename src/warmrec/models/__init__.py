"""Built-in models and the layers they are made of.

The names below are re-exported lazily (PEP 562 module ``__getattr__``): importing a submodule
(``warmrec.models.layers``, ``warmrec.models.adapters``) runs no other model module, so the
artifact format can use the layers without importing the models that save through it. The
registry (:mod:`warmrec.registry`) knows every built-in model without importing it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "Recommender": "warmrec.models.base",
    "NeuralRecommender": "warmrec.models.neural",
    "Pop": "warmrec.models.popularity",
    "SessionPop": "warmrec.models.popularity",
    "SASRec": "warmrec.models.sasrec",
    "GRU4Rec": "warmrec.models.gru4rec",
    "Hybrid": "warmrec.models.hybrid",
    "NARM": "warmrec.models.narm",
    "SSEPT": "warmrec.models.ssept",
    "BERT4Rec": "warmrec.models.bert4rec",
    "BST": "warmrec.models.bst",
    "ItemKNN": "warmrec.models.knn",
    "SKNN": "warmrec.models.knn",
    "VSKNN": "warmrec.models.knn",
    "AssociationRules": "warmrec.models.rules",
    "Markov": "warmrec.models.rules",
    "SequentialRules": "warmrec.models.rules",
    "Item2Vec": "warmrec.models.item2vec",
    "TfidfContent": "warmrec.models.text",
    "Fresh": "warmrec.models.fresh",
    "FeatRank": "warmrec.models.featrank",
}

__all__ = [
    "Recommender",
    "NeuralRecommender",
    "Pop",
    "SessionPop",
    "SASRec",
    "GRU4Rec",
    "Hybrid",
    "NARM",
    "SSEPT",
    "BERT4Rec",
    "BST",
    "ItemKNN",
    "SKNN",
    "VSKNN",
    "AssociationRules",
    "Markov",
    "SequentialRules",
    "Item2Vec",
    "TfidfContent",
    "Fresh",
    "FeatRank",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'warmrec.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from warmrec.models.base import Recommender
    from warmrec.models.bert4rec import BERT4Rec
    from warmrec.models.bst import BST
    from warmrec.models.featrank import FeatRank
    from warmrec.models.fresh import Fresh
    from warmrec.models.gru4rec import GRU4Rec
    from warmrec.models.hybrid import Hybrid
    from warmrec.models.item2vec import Item2Vec
    from warmrec.models.knn import SKNN, VSKNN, ItemKNN
    from warmrec.models.narm import NARM
    from warmrec.models.neural import NeuralRecommender
    from warmrec.models.popularity import Pop, SessionPop
    from warmrec.models.rules import AssociationRules, Markov, SequentialRules
    from warmrec.models.sasrec import SASRec
    from warmrec.models.ssept import SSEPT
    from warmrec.models.text import TfidfContent
