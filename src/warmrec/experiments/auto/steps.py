"""``warmrec auto``: one step of a trial (:func:`run_step`: a fit, or a model formed from saved
members: the hybrid of two, Fresh over one), the same on every executor, and the deadline that
cuts it."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from warmrec.errors import WarmrecError
from warmrec.experiments.auto.plan import _OWNED_TRAIN, NETWORKS

BOOT = 2000
"""Bootstrap replicates of every confidence interval."""


class _Deadline(Exception):
    """The search's deadline came in the middle of a step."""


class _DeadlineData:
    """Data whose batches end (raising :class:`_Deadline`) at a deadline: a model's training
    data (``batches``, so an epoch that runs into the search's deadline is cut) or an
    evaluation set (``batch``, so a one-shot step that scores for long -- the hybrid: its
    members, its weight grid, itself -- is cut there instead of running past the budget)."""

    def __init__(self, data: Any, deadline: float) -> None:
        self._data = data
        self._deadline = deadline

    def __getattr__(self, name: str) -> Any:
        return getattr(self._data, name)

    def __len__(self) -> int:
        return len(self._data)

    def _check(self) -> None:
        if time.time() >= self._deadline:
            raise _Deadline

    def batches(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        for batch in self._data.batches(*args, **kwargs):
            self._check()
            yield batch

    def batch(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return self._data.batch(*args, **kwargs)


def _deadline_hooks(deadline: float) -> Any:
    from warmrec.training.loop import LoopHooks

    class _DeadlineHooks(LoopHooks):
        """Cuts an epoch that runs into the search's deadline (the trial keeps its last
        checkpoint: the epoch is lost, the budget holds)."""

        def wrap_data(self, data: Any) -> Any:
            return _DeadlineData(data, deadline)

    return _DeadlineHooks()


@dataclass
class StepContext:
    """What a step needs: the prepared data, the search's base spec, the work folder, and how
    the validation targets on items without training events are weighed (``cold_share``:
    None, as they come; a share in [0, 1]; ``"catalogue"``, the catalogue's share of such
    items: :func:`cold_weights`)."""

    prepared: Any
    base: Any
    work: Path
    metric: str
    cold_share: float | str | None = None

    def __post_init__(self) -> None:
        self.weights = (
            None if self.cold_share is None else cold_weights(self.prepared, self.cold_share)
        )

    def spec(self, family: str, model: dict, train: dict, exclude_seen: bool) -> Any:
        from warmrec.tuning.trial import eval_metrics

        cfg = self.base.to_config()
        cfg["model"] = {"name": family, **model}
        cfg["train"] = dict(train)
        cfg["eval"] = {"metrics": eval_metrics(self.metric), "exclude_seen": exclude_seen}
        from warmrec.experiments.spec import spec_from_config

        return spec_from_config(cfg)


def resolve_cold_share(prepared: Any, share: float | str) -> float:
    """``share``, or for ``"catalogue"`` the share of the catalogue's items without an event in
    ``prepared.train`` (the items that only test events bring are not counted:
    :func:`~warmrec.experiments.auto.profile.known_items`)."""
    if share != "catalogue":
        return float(share)
    from warmrec.experiments.auto.profile import cold_item_share, known_items

    return cold_item_share(prepared.train, known_items(prepared))


def cold_weights(prepared: Any, share: float | str) -> Any:
    """Per-example weights of the validation set (mean 1) under which a metric's weighted mean
    is ``share`` x its mean over the targets on items without a training event plus ``1 -
    share`` x its mean over the others; ``share="catalogue"``: the share of such items in the
    catalogue. None when validation has no such target or only such targets."""
    import numpy as np

    from warmrec.experiments.auto.profile import cold_targets

    share = resolve_cold_share(prepared, share)
    cold = cold_targets(prepared.train, prepared.valid)
    n, n_cold = len(cold), int(cold.sum())
    if n_cold in (0, n):
        return None
    return np.where(cold, share * n / n_cold, (1.0 - share) * n / (n - n_cold))


def _value(ctx: StepContext, res: Any, label: str) -> tuple[float, list[float] | None]:
    """The validation value of a scoring and its CI (weighed by ``ctx.weights`` if set)."""
    v = res.per_example[label]
    w = ctx.weights
    units = getattr(res, "units", None)
    if w is None or len(w) != len(v):
        return float(res.summary[label]), _ci(v, units)
    x = v * w
    return float(x.mean()), _ci(x, units)


def _label(metric: str) -> str:
    from warmrec.evaluation.metrics import parse_metric

    return parse_metric(metric).label


def _ci(values: Any, units: Any = None) -> list[float] | None:
    """The 95 % bootstrap interval of the mean of ``values`` (users resampled where ``units``
    gives each example's user: a user's examples are not independent)."""
    from warmrec.evaluation.stats import bootstrap_ci

    try:
        _, lo, hi = bootstrap_ci(values, n_boot=BOOT, seed=0, units=units)
    except WarmrecError:
        return None
    return [lo, hi]


def _score(
    ctx: StepContext, model: Any, spec: Any, part: str = "valid", eval_set: Any = None
) -> tuple[Any, float]:
    from warmrec.experiments.spec import evaluate_run

    t0 = time.perf_counter()
    es = getattr(ctx.prepared, part) if eval_set is None else eval_set
    res = evaluate_run(model, es, spec, ctx.prepared)
    return res, time.perf_counter() - t0


def network_train(
    train: Mapping[str, Any], ckpt: Path, metric: str, exclude_seen: bool, every: int = 5
) -> dict:
    """A network trial's ``[train]``: the trial's settings plus what auto owns (a checkpoint
    written at every pause and every ``every`` epochs, resumed at every step, selection on the
    search metric)."""
    out = {k: v for k, v in train.items() if k not in _OWNED_TRAIN}
    out.update(
        checkpoint_dir=str(ckpt),
        checkpoint_every=max(1, int(every)),
        resume=True,
        progress=False,
        valid_metric=metric,
        exclude_seen=exclude_seen,
    )
    return out


def run_step(ctx: StepContext, step: Mapping[str, Any]) -> dict[str, Any]:
    """Run one step of a trial and return its outcome (plain JSON-able values).

    ``step``: ``trial``, ``family``, ``kind`` (``fit``, ``hybrid`` or ``fresh_over``),
    ``model``, ``train``, ``exclude_seen``, ``eval_both`` (also score with seen items treated
    the other way), ``spent`` (the trial's seconds so far), ``allowance`` (seconds it may reach
    in this step), ``deadline`` (``time.time()`` at which the step is cut: the search's end; for
    the search's first score, the budget's), ``pause_at`` (optional, the search's end where
    ``deadline`` is later: a network pauses after an epoch when the next would not end before
    it), ``members`` (the trials whose saved models a hybrid or Fresh is formed from)."""
    t0 = time.time()
    base = {"trial": step["trial"], "family": step["family"]}
    try:
        if step["kind"] in ("hybrid", "fresh_over"):
            out = _composite_step(ctx, step)
        else:
            out = _fit_step(ctx, step, t0)
    except _Deadline:
        out = {"status": "cut"}
    except Exception as e:  # noqa: BLE001 - one family failing on a log must not end the search
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        out = {"status": "failed", "error": f"{type(e).__name__}: {msg}"[:300]}
    out.update(base)
    out["seconds"] = time.time() - t0
    return out


def deadline_value(
    best_metric: float, cold_share: Any, train_exclude: bool, exclude: bool
) -> float | None:
    """A network stopped past the deadline: the training loop's validation of its best epoch
    as its value, where that is the figure every other trial gets; None (the trial keeps
    its earlier value and model) where the loop's figure is another one: with a
    ``cold_share`` (the loop weighs no cold target) or seen items ranked otherwise in training
    than in the trial's scoring."""
    if math.isnan(best_metric) or cold_share is not None or train_exclude != exclude:
        return None
    return float(best_metric)


def warming(lr: float, prev: float | None, base_lr: float) -> bool:
    """Whether a network's learning rate ``lr`` after an epoch (``prev`` after the one before)
    is still in its warm-up: below 0.9 of the base rate and rising (or the first epoch's). A
    rate below it and falling is the schedule's decay (SASRec's cosine is under 0.9 of its
    base from a fifth of its epochs on), not a warm-up: that network had been kept from every
    halving and given 3x its time."""
    return lr < 0.9 * base_lr and (prev is None or lr > prev)


def _fit_step(ctx: StepContext, step: Mapping[str, Any], t0: float) -> dict[str, Any]:
    from warmrec.experiments.spec import fit_run, save_run
    from warmrec.training.loop import PAUSE

    fam = step["family"]
    neural = fam in NETWORKS
    ex = bool(step["exclude_seen"])
    train = dict(step["train"])
    ckpt = ctx.work / "ckpt" / step["trial"]
    if neural:
        train_ex = step.get("train_exclude")
        ex_t = ex if train_ex is None else bool(train_ex)
        train = network_train(train, ckpt, ctx.metric, ex_t, step.get("checkpoint_every", 5))
    spec = ctx.spec(fam, step["model"], train, ex)
    deadline = float(step["deadline"])
    label = _label(ctx.metric)
    curve: list[list[float]] = []
    callbacks: list[Callable[..., Any]] = []
    hooks = None
    if neural:
        spent, allowance = float(step["spent"]), float(step["allowance"])
        pause_at = float(step.get("pause_at", deadline))
        base_lr = float(spec.trainer().lr)
        lrs: list[float] = []

        def on_epoch(epoch: int, record: dict[str, Any], model: Any) -> Any:
            now = time.time()
            v = record.get(f"valid_{label}")
            if v is not None:
                curve.append([float(epoch), float(v), now])
            last = float(record.get("train_seconds", 0.0)) + float(record.get("eval_seconds", 0.0))
            if now + 1.1 * last >= pause_at:
                return PAUSE  # the next epoch would not end before the search's deadline
            used = spent + (now - t0)
            # a network is not judged during its learning-rate warm-up (SASRec's 200 steps
            # are 10 epochs of a small log), unless it has used 3x its allowance
            lr = float(record.get("lr", base_lr))
            warm = not warming(lr, lrs[-1] if lrs else None, base_lr)
            lrs.append(lr)
            if used >= allowance and (warm or used >= 3 * allowance):
                return PAUSE
            return None

        callbacks = [on_epoch]
        hooks = _deadline_hooks(deadline)
    elif fam == "item2vec":

        def on_i2v_epoch(epoch: int, record: dict[str, Any], model: Any) -> None:
            if time.time() >= deadline:
                raise _Deadline

        callbacks = [on_i2v_epoch]
    with warnings_quiet():
        model = fit_run(spec, ctx.prepared, callbacks=callbacks, hooks=hooks, evaluate_valid=False)
    fit_s = time.time() - t0
    out: dict[str, Any] = {"fit_s": fit_s, "curve": curve}
    result = getattr(model, "train_result", None)
    if neural and result is not None:
        out["status"] = "paused" if result.paused else "done"
        out["epochs"] = result.epochs_run
        out["loss"] = result.extra.get("loss")
        if result.history:  # still in its learning-rate warm-up: not yet comparable
            lrs = [float(h.get("lr", 0.0)) for h in result.history]
            prev = lrs[-2] if len(lrs) > 1 else None
            out["warming"] = warming(lrs[-1], prev, float(spec.trainer().lr))
        if result.history:
            secs = [
                h.get("train_seconds", 0.0) + h.get("eval_seconds", 0.0) for h in result.history
            ]
            out["epoch_s"] = float(sum(secs[-3:]) / len(secs[-3:]))
    else:
        out["status"] = "done"
        out["epochs"] = 0
    if neural and time.time() >= deadline and result is not None:
        # past the deadline: the loop's own validation of the best epoch is the value, where
        # it is the figure every other trial gets (the loop weighs no cold target and ranks
        # seen items as the network trains): else the trial keeps its earlier value and model
        out["value"] = deadline_value(result.best_metric, ctx.cold_share, ex_t, ex)
        out["valid"] = {label: out["value"]} if out["value"] is not None else {}
    else:
        res, eval_s = _score(ctx, model, spec)
        out["value"], out["ci"] = _value(ctx, res, label)
        out["valid"] = {k: float(v) for k, v in res.summary.items()}
        out["eval_s"] = eval_s
        if step.get("eval_both"):
            other = ctx.spec(fam, step["model"], train, not ex)
            res2, _ = _score(ctx, model, other)
            out["value_other"], out["ci_other"] = _value(ctx, res2, label)
            out["valid_other"] = {k: float(v) for k, v in res2.summary.items()}
        if not neural and getattr(model, "fits_on_validation", False):
            _value_out_of_fold(ctx, spec, out, step, deadline)
    if out.get("value") is not None:
        save_run(model, ctx.work / "models" / step["trial"])
        out["kept"] = True
    return out


def _value_out_of_fold(
    ctx: StepContext, spec: Any, out: dict[str, Any], step: Mapping[str, Any], deadline: float
) -> None:
    """A trial whose fit fits weights to the validation targets (FeatRank, Fresh:
    ``fits_on_validation``) is valued as a formed model is (:func:`_out_of_fold`): its in-sample
    figures are kept as ``*_in_sample``, the search compares the out-of-fold ones."""
    from warmrec.registry import get_model

    specs = [spec]
    if step.get("eval_both"):
        specs.append(
            ctx.spec(
                step["family"], step["model"], dict(step["train"]), not bool(step["exclude_seen"])
            )
        )
    oof = _out_of_fold(
        ctx,
        lambda: get_model(spec.model.name, spec.model.config),
        specs,
        _label(ctx.metric),
        deadline,
    )
    if oof is None:  # a single validation sequence: nothing to hold out
        return
    out["value_in_sample"], out["valid_in_sample"] = out["value"], out["valid"]
    out["value"], out["ci"], out["valid"] = oof[0]
    if step.get("eval_both"):
        out["value_other_in_sample"] = out["value_other"]
        out["value_other"], out["ci_other"], out["valid_other"] = oof[1]


def _composite_step(ctx: StepContext, step: Mapping[str, Any]) -> dict[str, Any]:
    """A hybrid of two saved members (``members``: the partner trial -- a session kNN or
    FeatRank -- then the network), or Fresh over one (``kind`` ``fresh_over``), its weights
    chosen on validation; the step's ``model`` is the composite's config with the members'
    configs (``*_config``)."""
    from warmrec.experiments.spec import record_run, save_run
    from warmrec.models.base import Recommender
    from warmrec.models.fresh import Fresh
    from warmrec.models.hybrid import Hybrid

    t0 = time.time()
    members = [Recommender.load(ctx.work / "models" / m) for m in step["members"]]
    label = _label(ctx.metric)
    fresh = step["kind"] == "fresh_over"
    ex = bool(step["exclude_seen"])
    # the weights are chosen as the trial is scored: seen items excluded or kept
    select = {"select_metric": label, "select_exclude_seen": ex}

    def build() -> Any:
        if fresh:
            own = {k: v for k, v in step["model"].items() if k not in ("base", "base_config")}
            return Fresh.from_base(members[0], **{**own, **select})
        return Hybrid.from_members(members[1], members[0], **select)

    # every scoring of the step is cut at the search's deadline
    deadline = float(step["deadline"])
    valid = _DeadlineData(ctx.prepared.valid, deadline)
    model = build()
    model.fit(ctx.prepared.train, valid)
    # the spec names the members by what differs from their defaults (as their own trials do)
    chosen = model.chosen_config() if fresh else {"weight": model.weight_}
    cfg = {**step["model"], **chosen}
    family = step["family"]
    spec = ctx.spec(family, cfg, dict(step.get("train") or {}), ex)
    record_run(model, spec, ctx.prepared, fit_seconds=time.time() - t0)
    res, eval_s = _score(ctx, model, spec, eval_set=valid)
    value, ci = _value(ctx, res, label)
    specs = [spec]
    if step.get("eval_both"):
        specs.append(ctx.spec(family, cfg, dict(step.get("train") or {}), not ex))
    oof = _out_of_fold(ctx, build, specs, label, deadline)
    out: dict[str, Any] = {
        "status": "done",
        "value": value,
        "valid": {k: float(v) for k, v in res.summary.items()},
        "ci": ci,
        "eval_s": eval_s,
        "fit_s": time.time() - t0,
        "weight": None if fresh else model.weight_,
        "model": cfg,
    }
    if oof is not None:  # what the search compares: its weights chosen on other learners
        out["value_in_sample"] = value
        out["valid_in_sample"] = out["valid"]
        out["value"], out["ci"], out["valid"] = oof[0]
        if step.get("eval_both"):
            out["value_other"], out["ci_other"], out["valid_other"] = oof[1]
    elif step.get("eval_both"):
        res2, _ = _score(ctx, model, specs[1], eval_set=valid)
        out["value_other"], out["ci_other"] = _value(ctx, res2, label)
        out["valid_other"] = {k: float(v) for k, v in res2.summary.items()}
    save_run(model, ctx.work / "models" / step["trial"])
    out["kept"] = True
    return out


OOF_SEED = 0
"""Seed of the random halves of the validation sequences a formed model is scored on."""


def validation_halves(valid: Any, seed: int = OOF_SEED) -> Any:
    """A boolean mask over the validation examples: their sequences (learners, sessions) in two
    random halves, so that no sequence has examples on both sides; None where there is only
    one sequence."""
    import numpy as np

    from warmrec.data.dataset import sequence_halves

    return sequence_halves(valid.keys, np.random.default_rng(seed))


def _out_of_fold(
    ctx: StepContext, build: Callable[[], Any], specs: list[Any], label: str, deadline: float
) -> list[tuple[float, list[float] | None, dict[str, float]]] | None:
    """The validation value, its CI and every metric of a formed model under each of
    ``specs``, out of fold: the model is built and fitted (its weights chosen) on one half of
    the validation sequences and scored on the other, both ways; the search metric's
    per-example values are weighed as :func:`_value` weighs them, the other metrics are their
    plain means (as ``evaluate``'s summary; a catalogue-level metric such as coverage, which has
    no per-example value, is the mean of the two halves'). A hybrid's weight or Fresh's weights
    chosen on the very targets they are scored on would lift it above its members by the luck
    of the grid (Fresh's grid holds its base: in sample it can only tie or beat it); out of
    fold it beats them only where the combination carries to other learners. None with a
    single validation sequence."""
    import numpy as np

    from warmrec.evaluation.evaluate import example_units, nan_mean

    full = ctx.prepared.valid
    half = validation_halves(full)
    if half is None:
        return None
    per: list[dict[str, np.ndarray]] = [{} for _ in specs]
    whole: list[dict[str, list[float]]] = [{} for _ in specs]
    for side in (half, ~half):
        model = build()
        fit_on = _DeadlineData(full.subset(np.flatnonzero(~side)), deadline)
        model.fit(ctx.prepared.train, fit_on)
        rows = np.flatnonzero(side)
        scored = _DeadlineData(full.subset(rows), deadline)
        for k, spec in enumerate(specs):
            res, _ = _score(ctx, model, spec, eval_set=scored)
            for m, v in res.summary.items():
                if m in res.per_example:
                    col = per[k].setdefault(m, np.full(len(full), np.nan))
                    col[rows] = np.asarray(res.per_example[m], dtype=float)
                else:
                    whole[k].setdefault(m, []).append(float(v))
    units = example_units(full)[0]
    out = []
    for k in range(len(specs)):
        v = per[k][label]
        x = v if ctx.weights is None or len(ctx.weights) != len(v) else v * ctx.weights
        valid = {m: nan_mean(col) for m, col in per[k].items()}
        valid.update({m: float(np.mean(vs)) for m, vs in whole[k].items()})
        out.append((float(x.mean()), _ci(x, units), valid))
    return out


@contextlib.contextmanager
def warnings_quiet() -> Iterator[None]:
    """Resume notices and similar warnings of every step stay out of the progress lines."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
