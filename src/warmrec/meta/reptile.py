"""Reptile (Nichol, Achiam & Schulman 2018, "On First-Order Meta-Learning Algorithms") as a
pre-training of a *source* model: the one Reptile of warmrec, seen from transfer.

The algorithm is :class:`~warmrec.meta.maml.MetaModel` with ``algorithm="reptile"`` (first-order
inner steps of :class:`~warmrec.meta.learner.MetaLearner`, then the surrogate
``0.5 * ||theta - stopgrad(phi)||^2`` whose SGD step is Reptile's update), trained by THE
training loop (:func:`warmrec.meta.maml.fit_meta` -> :func:`warmrec.training.loop.train`, the
only ``backward()``). This module adds what source pre-training needs on top:

- :func:`reptile_pretrain` meta-learns an *initialisation* of a fresh neural model on
  source-domain tasks (users or sequences, :func:`warmrec.meta.tasks.make_tasks`, each with its
  own support size) so that a few gradient steps on a new user's first events fit that user's
  later events. Each outer iteration ``t``::

      theta = current weights
      for each of meta_batch_size sampled tasks i:
          phi_i = theta, then inner_steps SGD steps (gradient clipped to grad_clip) of
                  model.training_step on the task's support batches, at inner_lr
      theta <- theta + eps_t * mean_i(phi_i - theta)

  with ``eps_t`` decaying linearly from ``outer_lr`` to 0 (the loop's ``"linear"`` schedule over
  ``ceil(meta_iterations / eval_every) * eval_every`` steps; the paper's code anneals the same
  way). Only trainable parameters move; buffers keep their values. With ``source_valid`` the
  initialisation itself (no adaptation: ``adapt_when_scoring=False``) is evaluated with
  :func:`warmrec.evaluate` every ``eval_every`` iterations (one loop epoch) and at the end, and
  the best one is kept (validation selects, nothing else).
- :func:`reptile_then_transfer` then moves the meta-learned weights to the target domain with
  :func:`warmrec.transfer.transfer` (``strategy="finetune"``), the ``"reptile"`` option.

:class:`ReptileConfig` holds Reptile's own knobs and takes every field it shares with the
meta-learners (:class:`~warmrec.meta.maml.MetaConfig`: ``inner_steps``, ``inner_lr``,
``meta_batch_size``, ``outer_lr``) or the loop (:class:`~warmrec.training.loop.TrainerConfig`:
``valid_metric``, ``valid_batch_size``, ``device``, ``seed``) from those configs' own field
definitions: one declaration each (Reptile's defaults differ where measured, see the class).

Deviations from the paper, on purpose: tasks are few-shot *sequences* and the inner loop trains
on the support part only; the meta-batch is averaged (the paper's "batched" Reptile).

Randomness: ``seed`` seeds torch (init, dropout, negatives) and the numpy ``Generator`` that
samples tasks and orders support batches. Same seed, same machine, same threads -> same weights.
The initial weights are drawn under :func:`warmrec.rng.seeded_global` and the steps from the
fit's own generators (:mod:`warmrec.rng`), so a run in a thread beside other fits (``warmrec
tune --n-jobs 2``) gives the weights it gives alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator
from pydantic.fields import FieldInfo

from warmrec.config import ConfigModel, build_config, config_dict
from warmrec.data.dataset import EvalSet, SequenceDataset
from warmrec.errors import ModelError
from warmrec.evaluation.metrics import parse_metric
from warmrec.meta.maml import MetaConfig, MetaModel, fit_meta
from warmrec.meta.tasks import Episodes, TaskSet, make_tasks
from warmrec.models.neural import NeuralRecommender
from warmrec.registry import get_model
from warmrec.rng import seeded_global
from warmrec.training.loop import TrainerConfig, check_metric, resolve_device


def _shared(config: type[ConfigModel], name: str, **changes: Any) -> Any:
    """Field ``name`` of ``config`` as declared there (constraints, description), with
    ``changes`` (:func:`pydantic.Field` arguments: another default, a tighter bound)."""
    info = config.model_fields[name]
    if not changes:
        return info
    changes.setdefault("description", info.description)
    return FieldInfo.merge_field_infos(info, Field(**changes))


INNER_OPTIMIZERS = ("sgd",)


class ReptileConfig(ConfigModel):
    """Settings of :func:`reptile_pretrain` (unknown keys are rejected).

    Outer loop: ``meta_iterations``, ``meta_batch_size`` (tasks per outer step), ``outer_lr``
    (epsilon) decaying linearly to 0. Inner loop: ``inner_steps`` SGD steps at ``inner_lr`` on
    batches of ``inner_batch_size`` support windows, gradients clipped to ``grad_clip`` (0 =
    off). Tasks (unless given to :func:`reptile_pretrain`): ``tasks_by``, ``min_len``,
    ``support_frac`` or ``n_support`` (0 = use the fraction). Validation: every ``eval_every``
    iterations (0 = only at the end), ``valid_metric``.

    The inner-loop defaults (plain SGD at 0.5, gradients clipped to norm 1) are the ones measured
    on real pairs (``benchmarks/transfer_pairs.py``). Adam moved every row of a tied full-softmax
    item table by about its learning rate at every inner step, whether or not the row had a
    gradient; summed over Reptile's outer updates the table drifted to a std of 0.4-3 and
    fine-tuning never recovered from it: the inner loop is SGD only (``inner_optimizer``
    accepts ``"sgd"``; ``"adam"`` is refused). Without clipping, SGD at 0.5 diverged on
    nowplaying.
    """

    meta_iterations: int = Field(500, ge=1)
    """Outer (meta) steps."""
    meta_batch_size: int = _shared(MetaConfig, "meta_batch_size", default=5)
    inner_steps: int = _shared(
        MetaConfig, "inner_steps", default=5, ge=1, description="Inner SGD steps on each support."
    )
    inner_lr: float = _shared(MetaConfig, "inner_lr", default=0.5)
    inner_optimizer: Literal["sgd"] = "sgd"
    """The inner loop's optimizer: SGD (the meta-learners' step; Adam is no longer offered)."""
    inner_batch_size: int = Field(32, ge=1)
    """Support windows per inner batch."""
    outer_lr: float = _shared(MetaConfig, "outer_lr", default=1.0)
    outer_lr_final: float = Field(0.0, ge=0, le=0)
    """Outer step size at the end: 0 (the loop's linear schedule ends there)."""
    grad_clip: float = _shared(MetaConfig, "inner_grad_clip")
    tasks_by: Literal["user", "sequence"] = "sequence"
    """What a task is (unless tasks are given)."""
    min_len: int = Field(4, ge=1)
    """Tasks with fewer events are left out (at least 3 are always needed)."""
    support_frac: float = Field(0.5, gt=0, lt=1)
    """Share of a task's events in its support set."""
    n_support: int = Field(0, ge=0)
    """Support events per task (0 = use ``support_frac``)."""
    eval_every: int = Field(0, ge=0)
    """Validate every this many iterations (0 = only at the end)."""
    valid_metric: str = _shared(TrainerConfig, "valid_metric")
    valid_batch_size: int = _shared(TrainerConfig, "valid_batch_size")
    device: str = _shared(TrainerConfig, "device")
    seed: int = _shared(TrainerConfig, "seed")

    @field_validator("inner_optimizer", mode="before")
    @classmethod
    def _sgd_only(cls, v: Any) -> Any:
        v = v.lower() if isinstance(v, str) else v
        if v == "adam":
            raise ValueError(
                "'adam' is no longer offered: Reptile's inner loop is the meta-learners' SGD "
                "step (Adam drifted the tied item table; benchmarks/results/transfer_pairs.md); "
                "use 'sgd'"
            )
        return v

    @field_validator("outer_lr_final", mode="before")
    @classmethod
    def _final(cls, v: Any) -> Any:
        if isinstance(v, int | float) and not isinstance(v, bool) and v != 0:
            raise ValueError(
                f"only 0 is supported (the training loop's linear schedule decays the outer "
                f"step to 0), found {v}"
            )
        return v

    @field_validator("valid_metric")
    @classmethod
    def _metric(cls, v: str) -> str:
        check_metric(v)
        return v

    @property
    def iterations_per_epoch(self) -> int:
        """Outer steps between validations: one loop epoch."""
        return (
            min(self.eval_every, self.meta_iterations)
            if self.eval_every
            else (self.meta_iterations)
        )

    @property
    def epochs(self) -> int:
        return math.ceil(self.meta_iterations / self.iterations_per_epoch)

    def meta_config(self) -> MetaConfig:
        """The :class:`MetaConfig` of this Reptile (``algorithm="reptile"``)."""
        return MetaConfig(
            algorithm="reptile",
            inner_steps=self.inner_steps,
            inner_lr=self.inner_lr,
            inner_grad_clip=self.grad_clip,
            meta_batch_size=self.meta_batch_size,
            outer_lr=self.outer_lr,
            meta_epochs=self.epochs,
            seed=self.seed,
            device=str(resolve_device(self.device)),
            adapt_when_scoring=False,
        )

    def trainer(self) -> dict[str, Any]:
        """The outer loop's :class:`TrainerConfig` settings beyond the meta config's: the
        linear decay of epsilon, validation every epoch, no early stopping."""
        return {
            "schedule": "linear",
            "patience": 0,
            "eval_every": 1,
            "valid_metric": self.valid_metric,
            "valid_metrics": (),
            "valid_batch_size": self.valid_batch_size,
        }

    def epsilon(self, iteration: int) -> float:
        """Outer step size at ``iteration`` (0-based): linear from outer_lr to 0 over the
        loop's steps."""
        total = self.epochs * self.iterations_per_epoch
        return self.outer_lr * (1.0 - iteration / total)


@dataclass
class ReptileResult:
    """Per-iteration history (mean inner loss, epsilon, validation metric when evaluated)."""

    history: list[dict[str, Any]]
    best_iteration: int
    best_metric: float
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def reptile_step(
    model: NeuralRecommender,
    tasks: TaskSet,
    task_ids: np.ndarray,
    config: ReptileConfig | Mapping[str, Any],
    epsilon: float,
    rng: np.random.Generator,
) -> float:
    """One outer Reptile update of ``model``'s net over ``task_ids``; returns the mean inner loss.

    ``theta <- theta + epsilon * mean_i(phi_i - theta)``, ``phi_i`` = weights after
    ``config.inner_steps`` steps on task ``i``'s support starting from ``theta``: one
    :func:`warmrec.training.loop.optimizer_step` of the meta-learner's surrogate with SGD at
    ``epsilon`` (the same code :func:`reptile_pretrain` runs every iteration)."""
    from warmrec.training.loop import make_optimizer, optimizer_step

    cfg = build_config(ReptileConfig, config)
    meta = _reptile_model(model, cfg, tasks)
    device = next(model.net.parameters()).device
    episodes = [
        tasks.episode(int(t), model, cfg.inner_steps, rng, meta.episodes()) for t in task_ids
    ]
    opt = make_optimizer(meta.optimizer_groups(0.0), TrainerConfig(optimizer="sgd", lr=epsilon))
    optimizer_step(meta, episodes, opt, device=device)
    return meta.last_stats["inner_loss"]


def _reptile_model(model: NeuralRecommender, cfg: ReptileConfig, tasks: TaskSet) -> MetaModel:
    """``model`` (trained in place) as the Reptile :class:`MetaModel` over ``tasks``."""
    meta = MetaModel(
        model,
        cfg.meta_config(),
        tasks=tasks,
        episodes=Episodes(n_query=1, batch_size=cfg.inner_batch_size),
        iterations_per_epoch=cfg.iterations_per_epoch,
        iterations=cfg.meta_iterations,
    )
    meta.device = next(model.net.parameters()).device
    return meta


def reptile_pretrain(
    model: NeuralRecommender,
    source_train: SequenceDataset,
    source_valid: EvalSet | None = None,
    config: ReptileConfig | Mapping[str, Any] | None = None,
    *,
    tasks: TaskSet | None = None,
    keep_weights: bool = False,
    **overrides: Any,
) -> NeuralRecommender:
    """Meta-train ``model``'s initialisation on ``source_train`` with Reptile (module docstring).

    The model is bound to the source vocabulary and gets a new net (as ``fit`` does); ``tasks``
    defaults to :func:`make_tasks` with the config's task settings. ``keep_weights``: start
    from the model's trained net instead (a pre-trained source meta-trained further, e.g. the
    shared encoder of a multi-source model); its vocabulary must be ``source_train``'s. Sets
    ``model.reptile_result`` and ``model.meta.reptile`` / ``meta.item_counts`` (for
    :func:`warmrec.transfer.transfer`); returns the model, net in eval mode.
    """
    cfg = build_config(ReptileConfig, config, **overrides)
    if not isinstance(model, NeuralRecommender):
        raise ModelError(f"reptile needs a neural model, found '{getattr(model, 'name', model)}'")
    if tasks is None:
        tasks = make_tasks(
            source_train,
            by=cfg.tasks_by,
            min_len=cfg.min_len,
            support_frac=cfg.support_frac,
            n_support=cfg.n_support or None,
        )
    elif len(tasks.dataset.vocab) != len(source_train.vocab):
        raise ModelError("reptile: the tasks are built on a different vocabulary than source_train")
    model.device = resolve_device(cfg.device)
    if keep_weights:
        if model.net is None or model.vocab is None:
            raise ModelError(f"reptile keep_weights: model '{model.name}' has no trained network")
        if len(model.vocab) != len(source_train.vocab) or not model.vocab.ids.equals(
            source_train.vocab.ids
        ):
            raise ModelError(
                f"reptile keep_weights: model '{model.name}' was trained on another vocabulary "
                f"({len(model.vocab) - 1} items) than source_train ({len(source_train.vocab) - 1})"
            )
    # the initial weights: torch's global generators seeded and this thread's alone meanwhile
    # (module constructors draw from them); the outer loop (fit_meta -> the training loop)
    # seeds them again and draws its steps from the fit's own generators (warmrec.rng)
    with seeded_global(cfg.seed):
        if keep_weights:
            model.net.to(model.device)
        else:
            model._bind(source_train)
            model.init_net()
        model.prepare(source_train)
        meta = _reptile_model(model, cfg, tasks)
    res = fit_meta(meta, source_train, source_valid, cfg.trainer())
    key = f"valid_{parse_metric(cfg.valid_metric).label}"
    per = cfg.iterations_per_epoch
    history: list[dict[str, Any]] = []  # one row per outer step, the metric where validated
    for rec in res.history:
        steps = rec.get("step_stats", [])
        for j, st in enumerate(steps):
            it = (rec["epoch"] - 1) * per + j + 1
            row = {"iteration": it, "inner_loss": st["inner_loss"], "epsilon": cfg.epsilon(it - 1)}
            if j == len(steps) - 1 and key in rec:
                row[key] = rec[key]
            history.append(row)
    validated = source_valid is not None
    best_iter = min(res.best_epoch * per, cfg.meta_iterations) if validated else cfg.meta_iterations
    model.net.eval()
    model.reptile_result = ReptileResult(
        history,
        best_iter,
        res.best_metric if validated else math.nan,
        res.train_seconds,
        {"n_tasks": len(tasks)},
    )
    model.meta.item_counts = source_train.item_counts().astype(np.int64).tolist()
    model.meta.role = "source"
    model.meta.reptile = {
        **config_dict(cfg),
        "n_tasks": len(tasks),
        "best_iteration": best_iter,
    }
    return model


def reptile_then_transfer(
    source_model_name: str,
    source_train: SequenceDataset,
    target_train: SequenceDataset,
    target_valid: EvalSet | None = None,
    *,
    source_valid: EvalSet | None = None,
    model_config: Mapping[str, Any] | None = None,
    reptile_config: ReptileConfig | Mapping[str, Any] | None = None,
    init: str = "mean",
    trainer: Mapping[str, Any] | Any = None,
    strategy: str = "finetune",
    seed: int = 0,
    **transfer_options: Any,
) -> NeuralRecommender:
    """The ``"reptile"`` option: Reptile pre-training on the source, then
    :func:`warmrec.transfer.transfer` (default ``strategy="finetune"``) to the target.

    ``reptile_config``'s ``seed`` defaults to ``seed``; ``transfer_options`` go to ``transfer``
    (``max_len``, ``init_options``, ``strategy_options``, ...). The target records
    ``meta.transfer.source.pretraining = "reptile"`` and the Reptile settings; the
    meta-trained source model is attached as ``target.reptile_source``.
    """
    from warmrec.transfer.transfer import transfer

    if isinstance(reptile_config, ReptileConfig):
        r_cfg = reptile_config
    else:
        r_cfg = build_config(ReptileConfig, {"seed": seed, **dict(reptile_config or {})})
    source = get_model(source_model_name, dict(model_config or {}))
    if not isinstance(source, NeuralRecommender):
        raise ModelError(f"reptile needs a neural model, '{source_model_name}' is not one")
    reptile_pretrain(source, source_train, source_valid, r_cfg)
    target = transfer(
        source,
        target_train,
        target_valid,
        strategy=strategy,
        init=init,
        trainer=trainer,
        seed=seed,
        **transfer_options,
    )
    target.meta.transfer.source.pretraining = "reptile"
    target.meta.transfer.source.reptile = source.meta.reptile
    target.reptile_source = source
    return target
