"""The end-to-end steps behind ``warmrec train`` / ``evaluate`` / ``demo``: read, split, fit, evaluate.

The CLI is a thin face over these functions; notebooks and scripts call them directly. The
dataset step (:func:`prepare`, :class:`Prepared`, :func:`read`) lives in the data layer,
:mod:`warmrec.data.prepared` (``warmrec.prepare``); it is re-exported here for old imports.
"""

from __future__ import annotations

import inspect
import time
from typing import Any

import numpy as np
import polars as pl

from warmrec.data.dataset import EvalSet
from warmrec.data.prepared import Prepared, prepare, read
from warmrec.data.schema import ITEM
from warmrec.data.vocab import ItemVocab
from warmrec.errors import ConfigError
from warmrec.evaluation.evaluate import DEFAULT_METRICS, EvalResult, evaluate
from warmrec.registry import get_model

__all__ = [
    "Prepared",
    "prepare",
    "read",
    "fit_model",
    "evaluate_model",
    "timed",
    "results_frame",
    "item_categories",
]


def fit_model(
    name: str,
    prepared: Prepared,
    model_config: dict[str, Any] | None = None,
    train_config: dict[str, Any] | None = None,
):
    """Fit a registered model on the training part, selecting on validation only.

    ``train_config`` (epochs, lr, patience, ...) goes to the training loop of neural models; for
    models without one it must be empty.
    """
    model = get_model(name, model_config or {})
    if train_config:
        if "trainer" not in inspect.signature(model.fit).parameters:
            raise ConfigError(
                f"model '{name}' takes no training settings; got {', '.join(sorted(train_config))}"
            )
        return model.fit(prepared.train, prepared.valid, trainer=train_config)
    return model.fit(prepared.train, prepared.valid)


def evaluate_model(
    model,
    eval_set: EvalSet,
    prepared: Prepared | None = None,
    *,
    metrics: tuple[str, ...] | list[str] = DEFAULT_METRICS,
    protocol: str = "full",
    exclude_seen: bool = False,
    seed: int = 0,
) -> EvalResult:
    """``evaluate`` with training popularity filled in from ``prepared``."""
    counts = prepared.train.item_counts() if prepared is not None else None
    return evaluate(
        model, eval_set, metrics, protocol, exclude_seen=exclude_seen, item_counts=counts, seed=seed
    )


def timed(fn, *args, **kwargs) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def results_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Rows of {model, metric..., fit_s, eval_s} -> a table, floats rounded for display."""
    df = pl.DataFrame(rows)
    return df.with_columns([pl.col(c).round(4) for c, t in df.schema.items() if t == pl.Float64])


def item_categories(
    item_features: pl.DataFrame | None, column: str, vocab: ItemVocab
) -> np.ndarray | None:
    """Boolean [n_items, n_categories] matrix from a list or string feature column."""
    if item_features is None or column not in item_features.columns:
        return None
    f = item_features.select(ITEM, column)
    if f[column].dtype != pl.List(pl.Utf8):
        f = f.with_columns(pl.col(column).cast(pl.Utf8).str.split(" "))
    f = f.explode(column).drop_nulls()
    cats = sorted(set(f[column].to_list()))
    cidx = {c: i for i, c in enumerate(cats)}
    mat = np.zeros((len(vocab), len(cats)), dtype=bool)
    rows = vocab.encode(f[ITEM])
    cols = np.array([cidx[c] for c in f[column].to_list()], dtype=np.int64)
    ok = rows > 0
    mat[rows[ok], cols[ok]] = True
    return mat
