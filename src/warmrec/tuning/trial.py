"""One trial, the same for every backend: fit on train, report per epoch, score on validation.

:func:`run_trial` builds the model from the space's fixed values and a trial's sampled values,
fits it on the training part with a per-epoch callback (the training loop's ``callbacks``, or
Item2Vec's per-epoch hook) that hands the validation metric to the backend's ``report`` -- which
may raise the backend's pruning signal -- and scores the fitted model with
:func:`~warmrec.evaluation.evaluate.evaluate` on the validation part. A trial only ever sees a
:class:`SearchData` (train and validation): the test part is not within its reach.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from warmrec.data.dataset import EvalSet, SequenceDataset
from warmrec.errors import ConfigError, ModelError
from warmrec.evaluation.evaluate import evaluate
from warmrec.evaluation.metrics import parse_metric
from warmrec.tuning.space import SearchSpace

Report = Callable[[int, float], None]
"""``report(epoch, validation_value)``; may raise to prune the trial."""


@dataclass(frozen=True)
class SearchData:
    """What a trial may use: the training sequences and the validation set (no test)."""

    train: SequenceDataset
    valid: EvalSet
    item_counts: Any = None

    @classmethod
    def from_prepared(cls, prepared: Any) -> SearchData:
        return cls(prepared.train, prepared.valid, prepared.train.item_counts())


@dataclass
class TrialOutcome:
    """A finished trial's validation score, all validation metrics, epochs and curve."""

    value: float
    valid: dict[str, float]
    epochs: int
    seconds: float
    curve: list[float] = field(default_factory=list)


def eval_metrics(metric: str, extra: tuple[str, ...] = ()) -> list[str]:
    """The search metric first, then ``extra`` (hr@10, mrr@10, ndcg@10 by default), no repeats."""
    out = [metric]
    for m in extra or ("recall@10", "mrr@10", "ndcg@10"):
        if parse_metric(m).label != parse_metric(metric).label and m not in out:
            out.append(m)
    return out


def model_configs(
    model_name: str, space: SearchSpace, values: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """The ``[model]`` and ``[train]`` settings of a trial; a neural model's trainer selects its
    best epoch by the search metric unless the space fixes ``train.valid_metric``."""
    from warmrec.models.neural import NeuralRecommender
    from warmrec.registry import model_class

    cfgs = space.configs(values)
    if issubclass(model_class(model_name), NeuralRecommender):
        cfgs["train"].setdefault("valid_metric", space.metric)
    return cfgs


def trial_spec(
    model_name: str,
    space: SearchSpace,
    values: Mapping[str, Any],
    *,
    exclude_seen: bool = False,
    base: Any = None,
) -> Any:
    """The :class:`~warmrec.experiments.spec.RunSpec` of one trial: ``base``'s data and split
    (where given) with the trial's model and training settings, scored on the search metric
    first."""
    from warmrec.experiments.spec import spec_from_config

    cfgs = model_configs(model_name, space, values)
    cfg: dict[str, Any] = base.to_config() if base is not None else {}
    cfg["model"] = {"name": model_name, **cfgs["model"]}
    cfg["train"] = cfgs["train"]
    cfg["eval"] = {
        **cfg.get("eval", {}),
        "metrics": eval_metrics(space.metric),
        "exclude_seen": exclude_seen,
    }
    return spec_from_config(cfg)


def run_trial(
    model_name: str,
    space: SearchSpace,
    values: Mapping[str, Any],
    data: SearchData | Any,
    report: Report | None = None,
    *,
    exclude_seen: bool = False,
    base: Any = None,
) -> tuple[TrialOutcome, Any]:
    """Fit one configuration with :func:`~warmrec.experiments.spec.fit_run` and score it on
    validation: ``(outcome, fitted model)``. ``base``: the search's spec (data and split, kept
    in the fitted model's run record). Sampled values that do not go together (SASRec's
    ``d = 24`` with ``n_heads = 16``: the space checks each value, not each combination) raise
    a :class:`~warmrec.errors.ModelError`, a failed trial for the backends."""
    from warmrec.experiments.spec import fit_run
    from warmrec.schema import check_configs

    cfgs = model_configs(model_name, space, values)
    try:  # each end of each range was checked with the space; a combination may still fail
        check_configs(model_name, cfgs["model"], cfgs["train"])
    except ConfigError as e:  # a failed trial (its reason in the tables), not a failed search
        shown = ", ".join(f"{k} = {v!r}" for k, v in values.items())
        raise ModelError(f"the trial's values ({shown}) do not go together: {e}") from None
    spec = trial_spec(model_name, space, values, exclude_seen=exclude_seen, base=base)
    metric = space.metric
    label = parse_metric(metric).label
    curve: list[float] = []

    def on_epoch(epoch: int, record: dict[str, Any], model: Any) -> None:
        value = record.get(f"valid_{label}", record.get(label))
        if value is None:  # Item2Vec records recall/mrr at its own K: measure the search metric
            value = evaluate(model, data.valid, [metric], exclude_seen=exclude_seen)[label]
        curve.append(float(value))
        if report is not None:
            report(epoch, float(value))

    t0 = time.perf_counter()
    from warmrec.registry import model_class

    hooked = _takes_callbacks(model_class(model_name))
    model = fit_run(spec, data, callbacks=[on_epoch] if hooked else ())
    seconds = time.perf_counter() - t0
    valid = {k: float(v) for k, v in model.meta.run.valid.items()}
    value = float(valid[label])
    # a model fitted in one pass reports nothing on the way: its one value is final (reported
    # as an epoch, a pruner judged it after the fit and labelled a finished trial "pruned")
    outcome = TrialOutcome(
        value=value,
        valid=valid,
        epochs=len(curve) or 1,
        seconds=seconds,
        curve=curve or [value],
    )
    return outcome, model


def _takes_callbacks(klass: Any) -> bool:
    import inspect

    return "callbacks" in inspect.signature(klass.fit).parameters
