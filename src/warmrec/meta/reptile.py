"""Reptile (Nichol, Achiam & Schulman 2018, "On First-Order Meta-Learning Algorithms").

:func:`reptile_pretrain` meta-learns an *initialisation* of a neural model on source-domain
tasks (users or sequences, :mod:`warmrec.meta.tasks`) so that a few gradient steps on a new
user's first events fit that user's later events. Each outer iteration ``t``:

    theta = current weights
    for each of meta_batch_size sampled tasks i:
        phi_i = theta, then inner_steps optimisation steps of model.training_step on the
                task's support batches (fresh inner optimizer: SGD or Adam at inner_lr)
    theta <- theta + eps_t * mean_i(phi_i - theta)

with ``eps_t`` annealed linearly from ``outer_lr`` to ``outer_lr_final`` (``t / T`` done, as
in the paper's code). The inner steps go through :func:`warmrec.training.loop.inner_steps`, so
the one ``backward()`` of :mod:`warmrec.training.loop` does all the optimisation. Only
trainable parameters move; buffers keep their values. With ``source_valid`` the initialisation
itself (no adaptation) is evaluated with :func:`warmrec.evaluate` every ``eval_every``
iterations and at the end, and the best one is kept (validation selects, nothing else).

Deviations from the paper, on purpose: tasks are few-shot *sequences* and the inner loop trains
on the support part only (the query is held for measuring adaptation); the meta-batch is
averaged (the paper's "batched" Reptile).

Then :func:`warmrec.transfer.transfer` (``strategy="finetune"``) moves the meta-learned weights
to the target domain as for any pre-trained source; :func:`reptile_then_transfer` does both
(the ``"reptile"`` pre-training option).

Randomness: ``seed`` seeds torch (init, dropout, negatives) and a numpy ``Generator`` that
samples tasks and orders support batches. Same seed, same machine, same threads -> same weights.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator

from warmrec.config import ConfigModel, build_config, config_dict
from warmrec.data.dataset import EvalSet, SequenceDataset
from warmrec.errors import ModelError
from warmrec.evaluation.evaluate import evaluate
from warmrec.evaluation.metrics import parse_metric
from warmrec.meta.tasks import TaskSet, make_tasks
from warmrec.models.neural import NeuralRecommender
from warmrec.registry import get_model
from warmrec.training.loop import TrainerConfig, check_metric, inner_steps, resolve_device

INNER_OPTIMIZERS = ("sgd", "adam")


class ReptileConfig(ConfigModel):
    """Settings of :func:`reptile_pretrain` (unknown keys are rejected).

    Outer loop: ``meta_iterations``, ``meta_batch_size`` (tasks per outer step), ``outer_lr``
    (epsilon) annealed linearly to ``outer_lr_final``. Inner loop: ``inner_steps`` steps of
    ``inner_optimizer`` (``"sgd"`` or ``"adam"``) at ``inner_lr`` on batches of
    ``inner_batch_size`` support windows, ``grad_clip`` (0 = off). Tasks (unless given to
    :func:`reptile_pretrain`): ``tasks_by``, ``min_len``, ``support_frac`` or ``n_support``
    (0 = use the fraction). Validation: ``eval_every`` iterations (0 = only at the end),
    ``valid_metric``.

    The inner-loop defaults (plain SGD at 0.5, gradients clipped to norm 1) are the ones measured
    on real pairs (``benchmarks/transfer_pairs.py``). Adam moves every row of a tied full-softmax
    item table by about its learning rate at every inner step, whether or not the row had a
    gradient; summed over Reptile's outer updates the table drifted to a std of 0.4-3 and
    fine-tuning never recovered from it. Without clipping, SGD at 0.5 diverged on nowplaying.
    """

    meta_iterations: int = Field(500, ge=1)
    """Outer (meta) steps."""
    meta_batch_size: int = Field(5, ge=1)
    """Tasks per outer step."""
    inner_steps: int = Field(5, ge=1)
    """Optimizer steps on each task's support set."""
    inner_lr: float = Field(0.5, gt=0)
    """Learning rate of the inner loop."""
    inner_optimizer: Literal["sgd", "adam"] = "sgd"
    """Optimizer of the inner loop."""
    inner_batch_size: int = Field(32, ge=1)
    """Support windows per inner batch."""
    outer_lr: float = Field(1.0, gt=0)
    """Outer step size epsilon at the start."""
    outer_lr_final: float = Field(0.0, ge=0)
    """Outer step size at the end (annealed linearly)."""
    grad_clip: float = Field(1.0, ge=0)
    """Max global gradient norm of inner steps (0 = off)."""
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
    valid_metric: str = "ndcg@10"
    """The validation metric."""
    valid_batch_size: int = Field(1024, ge=1)
    """Histories per validation batch."""
    device: str = "auto"
    """``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ..."""
    seed: int = 0
    """Seeds task sampling and the inner loops."""

    @field_validator("inner_optimizer", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v

    @field_validator("valid_metric")
    @classmethod
    def _metric(cls, v: str) -> str:
        check_metric(v)
        return v

    def inner_trainer(self) -> TrainerConfig:
        """The inner loop's optimizer settings as :class:`TrainerConfig` fields."""
        return TrainerConfig(
            optimizer=self.inner_optimizer,
            lr=self.inner_lr,
            grad_clip=self.grad_clip,
            batch_size=self.inner_batch_size,
            seed=self.seed,
        )

    def epsilon(self, iteration: int) -> float:
        """Outer step size at ``iteration`` (0-based): linear from outer_lr to outer_lr_final."""
        done = iteration / self.meta_iterations
        return (1.0 - done) * self.outer_lr + done * self.outer_lr_final


@dataclass
class ReptileResult:
    """Per-iteration history (mean inner loss, epsilon, validation metric when evaluated)."""

    history: list[dict[str, Any]]
    best_iteration: int
    best_metric: float
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def _trainable(model: NeuralRecommender) -> list[torch.nn.Parameter]:
    return [p for p in model.net.parameters() if p.requires_grad]


def reptile_step(
    model: NeuralRecommender,
    tasks: TaskSet,
    task_ids: np.ndarray,
    config: ReptileConfig,
    epsilon: float,
    rng: np.random.Generator,
) -> float:
    """One outer Reptile update of ``model``'s net over ``task_ids``; returns the mean inner loss.

    ``theta <- theta + epsilon * mean_i(phi_i - theta)``, ``phi_i`` = weights after
    ``config.inner_steps`` steps on task ``i``'s support starting from ``theta``.
    """
    params = _trainable(model)
    theta = [p.detach().clone() for p in params]
    delta = [torch.zeros_like(p) for p in params]
    inner_cfg = config.inner_trainer()
    losses: list[float] = []
    for t in task_ids:
        with torch.no_grad():
            for p, th in zip(params, theta):
                p.copy_(th)
        data = model.training_data(tasks.support_dataset(int(t)))
        losses += inner_steps(
            model,
            lambda data=data: data.batches(config.inner_batch_size, rng),
            inner_cfg,
            config.inner_steps,
        )
        with torch.no_grad():
            for d, p, th in zip(delta, params, theta):
                d += p - th
    scale = epsilon / max(len(task_ids), 1)
    with torch.no_grad():
        for p, th, d in zip(params, theta, delta):
            p.copy_(th + scale * d)
    return float(np.mean(losses)) if losses else math.nan


def reptile_pretrain(
    model: NeuralRecommender,
    source_train: SequenceDataset,
    source_valid: EvalSet | None = None,
    config: ReptileConfig | Mapping[str, Any] | None = None,
    *,
    tasks: TaskSet | None = None,
    **overrides: Any,
) -> NeuralRecommender:
    """Meta-train ``model``'s initialisation on ``source_train`` with Reptile (module docstring).

    The model is bound to the source vocabulary and gets a new net (as ``fit`` does); ``tasks``
    defaults to :func:`make_tasks` with the config's task settings. Sets
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
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model.device = resolve_device(cfg.device)
    model._bind(source_train)
    model.init_net()
    model.prepare(source_train)
    key = parse_metric(cfg.valid_metric).label
    history: list[dict[str, Any]] = []
    best_metric, best_iter, best_state = -math.inf, cfg.meta_iterations, None
    t0 = time.perf_counter()
    for it in range(cfg.meta_iterations):
        eps = cfg.epsilon(it)
        ids = tasks.sample(cfg.meta_batch_size, rng)
        loss = reptile_step(model, tasks, ids, cfg, eps, rng)
        if not math.isfinite(loss):
            raise ModelError(
                f"model '{model.name}': Reptile inner loss is {loss} at iteration {it + 1}; "
                "lower inner_lr or set grad_clip"
            )
        record: dict[str, Any] = {"iteration": it + 1, "inner_loss": loss, "epsilon": eps}
        last = it + 1 == cfg.meta_iterations
        if source_valid is not None and (
            last or (cfg.eval_every and (it + 1) % cfg.eval_every == 0)
        ):
            res = evaluate(model, source_valid, [cfg.valid_metric], batch_size=cfg.valid_batch_size)
            value = res.summary[key]
            record[f"valid_{key}"] = value
            if value > best_metric:
                best_metric, best_iter = value, it + 1
                best_state = [p.detach().clone() for p in _trainable(model)]
        history.append(record)
    if best_state is not None:
        with torch.no_grad():
            for p, b in zip(_trainable(model), best_state):
                p.copy_(b)
    model.net.eval()
    model.reptile_result = ReptileResult(
        history,
        best_iter,
        best_metric if best_state is not None else math.nan,
        time.perf_counter() - t0,
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
