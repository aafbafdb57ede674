"""warmrec: session-based and sequential next-item recommendation for small, cold domains.

The public API is re-exported here lazily (PEP 562 module ``__getattr__``): ``import warmrec``
loads no submodule, and each name imports its module on first use, so ``warmrec --help`` and
``--version`` start without torch, scipy or polars.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from warmrec._version import __version__

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "Batch": "warmrec.data.dataset",
    "EvalSet": "warmrec.data.dataset",
    "SequenceDataset": "warmrec.data.dataset",
    "SequenceData": "warmrec.data.sequences",
    "ItemVocab": "warmrec.data.vocab",
    "Interactions": "warmrec.data.readers",
    "load_interactions": "warmrec.data.readers",
    "load_dataset": "warmrec.data.datasets",
    "list_datasets": "warmrec.data.datasets",
    "download": "warmrec.data.datasets",
    "gap_analysis": "warmrec.data.sessionize",
    "sessionize": "warmrec.data.sessionize",
    "Split": "warmrec.data.split",
    "split": "warmrec.data.split",
    "default_split": "warmrec.data.split",
    "Prepared": "warmrec.data.prepared",
    "prepare": "warmrec.data.prepared",
    "evaluate": "warmrec.evaluation",
    "get_model": "warmrec.registry",
    "available_models": "warmrec.registry",
    "load_model": "warmrec.artifacts",
    "RunSpec": "warmrec.experiments.spec",
    "spec_from_config": "warmrec.experiments.spec",
    "prepare_run": "warmrec.experiments.spec",
    "fit_run": "warmrec.experiments.spec",
    "save_run": "warmrec.experiments.spec",
    "auto": "warmrec.experiments.auto",
}

__all__ = [
    "__version__",
    "Batch",
    "EvalSet",
    "SequenceDataset",
    "SequenceData",
    "ItemVocab",
    "Interactions",
    "load_interactions",
    "load_dataset",
    "list_datasets",
    "download",
    "gap_analysis",
    "sessionize",
    "Split",
    "split",
    "default_split",
    "Prepared",
    "prepare",
    "evaluate",
    "get_model",
    "available_models",
    "load_model",
    "RunSpec",
    "spec_from_config",
    "prepare_run",
    "fit_run",
    "save_run",
    "auto",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'warmrec' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from warmrec.artifacts import load_model
    from warmrec.data.dataset import Batch, EvalSet, SequenceDataset
    from warmrec.data.datasets import download, list_datasets, load_dataset
    from warmrec.data.prepared import Prepared, prepare
    from warmrec.data.readers import Interactions, load_interactions
    from warmrec.data.sequences import SequenceData
    from warmrec.data.sessionize import gap_analysis, sessionize
    from warmrec.data.split import Split, default_split, split
    from warmrec.data.vocab import ItemVocab
    from warmrec.evaluation import evaluate
    from warmrec.experiments.auto import auto
    from warmrec.experiments.spec import (
        RunSpec,
        fit_run,
        prepare_run,
        save_run,
        spec_from_config,
    )
    from warmrec.registry import available_models, get_model
