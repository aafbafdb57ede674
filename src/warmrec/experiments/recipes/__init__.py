"""One recipe per source project: its pipeline as one command, its figures beside ours.

warmrec unites five research codebases; a recipe redoes what one of them did, on the data that
is here, as a list of runs (:class:`~warmrec.experiments.recipes.base.RunStep`: a
:class:`~warmrec.experiments.spec.RunSpec` each) and a few steps that call library functions
(statistics, sessionising, a search, a study: :mod:`~warmrec.experiments.recipes.steps`), run
resumably by :func:`~warmrec.experiments.recipes.base.run_recipe`, ending in one report that sets
the project's own figures beside ours (``warmrec recipe list | show | run``).

=================  ==========================================================================
recipe             source project
=================  ==========================================================================
``mooc-transfer``  transfer to a small MOOC: EDA, sessions, SASRec pre-trained on large
                   sources, fine-tuning / adapters / embedding re-init / Reptile, baselines
``ssept-wiki``     SSE-PT pre-trained on MovieLens, fine-tuned on Wiki1000 (SASRec.pytorch's
                   100-negative evaluator and full ranking)
``bst-courses``    BST with user and course context on a course platform; "seen course" and
                   "seen subgroup" mAP@50; a ``pred.csv`` of next courses
``cloudera-w2v``   association rules and gensim Word2Vec under next-event prediction from one
                   item; Ray Tune-style search (Cloudera Fast Forward FF19)
``melo-coldstart`` MAML with a learned adaptive loss (and FO-MAML) over BERT4Rec, SASRec, NARM
                   and GRU4Rec for users with few interactions (MELO); MovieLens and ratings modes
=================  ==========================================================================
"""

from __future__ import annotations

import importlib

from warmrec.errors import ConfigError
from warmrec.experiments.recipes.base import (
    CallStep,
    Claim,
    DataInput,
    Recipe,
    RecipeResult,
    RunStep,
    Step,
    run_recipe,
)

RECIPES: dict[str, str] = {
    "mooc-transfer": "warmrec.experiments.recipes.mooc_transfer",
    "ssept-wiki": "warmrec.experiments.recipes.ssept_wiki",
    "bst-courses": "warmrec.experiments.recipes.bst_courses",
    "cloudera-w2v": "warmrec.experiments.recipes.cloudera_w2v",
    "melo-coldstart": "warmrec.experiments.recipes.melo_coldstart",
}
"""Recipe name -> module (each module defines ``RECIPE``)."""


def list_recipes() -> list[str]:
    return list(RECIPES)


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; an unknown name is one line listing the known ones."""
    module = RECIPES.get(name)
    if module is None:
        raise ConfigError(f"unknown recipe {name!r}; expected one of {', '.join(RECIPES)}")
    return importlib.import_module(module).RECIPE


__all__ = [
    "RECIPES",
    "CallStep",
    "Claim",
    "DataInput",
    "Recipe",
    "RecipeResult",
    "RunStep",
    "Step",
    "get_recipe",
    "list_recipes",
    "run_recipe",
]
