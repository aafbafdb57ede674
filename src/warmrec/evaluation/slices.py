"""Cold-start slices of an evaluation: figures for returning and new users, and for targets on
items nobody had interacted with, reported apart.

A small, cold domain is judged on its cold cases: a model can lead on all test targets while
failing every learner who arrives after training, or every video published since. These
slices make that visible for any split (they matter most on a global time split, where test
users and items may be new; under leave-one-out every user is returning):

- ``all``: every example;
- ``returning_users`` / ``new_users``: the example's user has / has no event in the parts
  before the evaluated one (train and valid for ``test``, train for ``valid``); only for logs
  with users (a session log has no user to return), and an anonymous session of such a log
  (no ``user_id``) is in neither;
- ``new_items``: the target item has no event in those parts (no event before the cut, on a
  time split: its ID embedding never trained); only its features or text can rank it. An item
  whose only earlier events are validation events counts as known under ``test`` (the model
  read it in histories; a model fitted on train alone never trained its ID embedding either);
- ``new_items_first``: of those, the targets not already in the example's own history (a user
  coming back to a new video they opened after the cut is a repeat, which a model that ranks
  the history's own items first gets almost for free).

:func:`evaluate_slices` scores once and reads every slice from the per-example values, so a
slice costs nothing extra; ``coverage@K`` (a property of a whole list of recommendations) is
reported for ``all`` only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl

from warmrec.data.dataset import EvalSet
from warmrec.data.schema import ITEM, USER, sequence_key
from warmrec.errors import ConfigError
from warmrec.evaluation.evaluate import EvalResult, evaluate, nan_mean

SLICES = ("all", "returning_users", "new_users", "new_items", "new_items_first")
_PARTS = ("test", "valid")


def _before(prepared: Any, part: str) -> pl.DataFrame:
    """The events of the parts before ``part``."""
    if part not in _PARTS:
        raise ConfigError(f"part: expected one of {', '.join(_PARTS)}, found {part!r}")
    if getattr(prepared, "split", None) is None:
        found = (getattr(prepared, "info", None) or {}).get("split", "no split")
        raise ConfigError(
            f"slices: expected a row split (loo, temporal, last_session, user, given), found "
            f"{found!r}: the slices read returning and new users and items from the parts' "
            "events, and every held-out user of the coldstart scenario is new by construction"
        )
    parts = [prepared.split.train] + ([prepared.split.valid] if part == "test" else [])
    return pl.concat([p for p in parts if p.height], how="diagonal_relaxed")


def _example_users(prepared: Any, es: EvalSet, part: str) -> pl.Series | None:
    """The raw user id of each example (null for an anonymous session: user index 0), or
    None where the log has no users."""
    table = prepared.split.test if part == "test" else prepared.split.valid
    if USER not in table.columns:
        return None
    if sequence_key(table) == USER:
        return es.keys
    if es.users is not None and prepared.user_vocab is not None:
        idx = np.asarray(es.users, dtype=np.int64)
        known = np.flatnonzero(idx > 0)
        raw: list[Any] = [None] * len(idx)
        for j, u in zip(known.tolist(), prepared.user_vocab.decode(idx[known])):
            raw[j] = u
        return pl.Series(raw)
    return None


def cold_slices(prepared: Any, part: str = "test") -> dict[str, np.ndarray]:
    """Example indices of ``prepared``'s ``part`` (``"test"`` or ``"valid"``) per slice
    (:data:`SLICES`; the user slices only where the log has users), in slice order.

    Raises:
        ConfigError: ``part`` is neither ``test`` nor ``valid``, or ``prepared`` has no row
            split (the coldstart scenario).
    """
    before = _before(prepared, part)
    es: EvalSet = prepared.test if part == "test" else prepared.valid
    n = len(es)
    out: dict[str, np.ndarray] = {"all": np.arange(n)}
    users = _example_users(prepared, es, part)
    if users is not None:
        known_users = before[USER].unique() if USER in before.columns else pl.Series([])
        if n:
            returning = users.is_in(known_users.implode()).fill_null(False).to_numpy()
            has_user = users.is_not_null().to_numpy()
        else:
            returning = has_user = np.zeros(0, dtype=bool)
        returning = returning.astype(bool) & has_user  # an anonymous session is in neither
        out["returning_users"] = np.flatnonzero(returning)
        out["new_users"] = np.flatnonzero(~returning & has_user)
    known_items = before[ITEM].unique()
    targets = pl.Series(prepared.vocab.decode(es.targets)) if n else pl.Series([])
    new_item = ~targets.is_in(known_items.implode()).to_numpy() if n else np.zeros(0, bool)
    repeat = es.target_in_history()
    out["new_items"] = np.flatnonzero(new_item)
    out["new_items_first"] = np.flatnonzero(new_item & ~repeat)
    return out


def subset_result(res: EvalResult, index: np.ndarray) -> EvalResult:
    """``res`` over the examples at ``index``: every per-example metric averaged there
    (``coverage@K`` has no per-example value and is left out; NaN examples -- the popularity
    of an empty list -- are skipped, as :func:`~warmrec.evaluation.evaluate.evaluate` does; an
    empty slice has NaN values, shown as null: no example, no figure)."""
    index = np.asarray(index, dtype=np.int64)
    per = {k: v[index] for k, v in res.per_example.items()}
    summary = {k: nan_mean(np.asarray(v, dtype=np.float64)) for k, v in per.items()}
    digest = (
        f"{res.examples}[{hashlib.sha256(np.asarray(index, np.int64).tobytes()).hexdigest()[:8]}]"
    )
    units = None if res.units is None else res.units[index]
    return EvalResult(
        summary, per, res.ranks[index], res.protocol, len(index), examples=digest, units=units
    )


def evaluate_slices(
    model: Any,
    eval_set: EvalSet,
    slices: Mapping[str, np.ndarray],
    metrics: tuple[str, ...] | list[str],
    **kwargs: Any,
) -> dict[str, EvalResult]:
    """:func:`~warmrec.evaluation.evaluate.evaluate` once over ``eval_set``, then each slice
    read from the per-example values (``kwargs`` go to ``evaluate``)."""
    return split_result(evaluate(model, eval_set, metrics, **kwargs), slices)


def split_result(res: EvalResult, slices: Mapping[str, np.ndarray]) -> dict[str, EvalResult]:
    """``res`` read over each slice (a slice of every example is ``res`` itself)."""
    return {
        name: res if len(idx) == res.n_examples else subset_result(res, idx)
        for name, idx in slices.items()
    }


def slices_table(results: Mapping[str, EvalResult]) -> pl.DataFrame:
    """One row per slice: ``slice``, ``n``, then one column per metric (null where a metric
    has no value for the slice, or the slice no example)."""
    labels: list[str] = []
    for r in results.values():
        labels += [k for k in r.summary if k not in labels]

    def value(r: EvalResult, k: str) -> float | None:
        v = r.summary.get(k)
        return None if v is None or v != v else v  # NaN (an empty slice) -> null

    rows = [
        {"slice": name, "n": r.n_examples, **{k: value(r, k) for k in labels}}
        for name, r in results.items()
    ]
    schema = {"slice": pl.String, "n": pl.Int64, **{k: pl.Float64 for k in labels}}
    return pl.DataFrame(rows, schema=schema)
