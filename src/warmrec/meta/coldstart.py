"""Deprecated location of the cold-start study: use :mod:`warmrec.experiments.studies.coldstart`.

The study (and its user split, now the :class:`~warmrec.experiments.scenarios.ColdStartUsers`
scenario) moved to :mod:`warmrec.experiments`; :mod:`warmrec.meta` keeps the meta-learning
algorithms. Every public name still resolves here, with a :class:`DeprecationWarning` naming
the new module.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

NEW_MODULE = "warmrec.experiments.studies.coldstart"


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    value = getattr(importlib.import_module(NEW_MODULE), name)
    warnings.warn(
        f"warmrec.meta.coldstart.{name} moved to {NEW_MODULE}.{name}; import it from there",
        DeprecationWarning,
        stacklevel=2,
    )
    return value
