"""THE training loop: every neural model, transfer strategy and meta-learner trains through it.

``train(model, train_data, valid_set, config)`` takes a
:class:`~warmrec.models.neural.NeuralRecommender` and runs epochs of

    for batch in model.training_data(train).batches(batch_size, rng):
        loss = model.training_step(batch); loss.backward(); clip; step; schedule

-- the only ``backward()`` in warmrec. After every ``eval_every`` epochs it evaluates the model on
the validation :class:`~warmrec.data.dataset.EvalSet` with :func:`warmrec.evaluate` (full ranking),
keeps the best weights by ``valid_metric``, stops after ``patience`` evaluations without
improvement and restores the best weights at the end. Validation is the only thing that selects.

Randomness: ``seed`` seeds torch (weight init, dropout, negative sampling) and a numpy
``Generator`` passed explicitly to the batch iterators. Same seed, same machine, same thread count
-> same result, also while other fits run in other threads (``warmrec tune --n-jobs``): the net
is built under :data:`warmrec.rng.GLOBAL_LOCK` from the seeded global generator (the model's
``setup_training``, or ``prepare`` for ``fresh=False``), and everything after it draws from the
fit's own generators (:mod:`warmrec.rng`) with the lock free for other fits: the hooks, the
training data, the optimizer and scheduler, the steps, and a resume, whose checkpoint RNG
states go straight into the fit's own generators. (The lock once covered the whole setup, so
trials in threads built their data one at a time; a fit draws the same numbers either way.)
With ``checkpoint_dir`` the full state (weights, optimizer, scheduler, RNG states, best
weights, history) is written atomically every ``checkpoint_every`` epochs; ``resume=True``
continues from it and ends exactly where an uninterrupted run would (with other ``epochs``, a
decaying or warming-up learning-rate schedule is planned over the new length from the next step
on, and a :class:`ResumeWarning` says how the rate changes; one also says so where a checkpoint
of an older warmrec, which did not record its schedule's steps, trained ``random_phase``
windows, whose batches per epoch were counted otherwise then). A callback that returns
:data:`PAUSE` ends the fit after that epoch with a checkpoint that is *not* marked finished: the
same run resumed from it goes on (a scheduler's cheap rungs: ``warmrec auto``); returning True
stops the run for good.

Logging: one JSON object per epoch (loss, wall and CPU seconds of training, learning rate,
validation metrics) appended to ``log_path``; TensorBoard scalars under
``tensorboard_dir`` when the ``tensorboard`` package is installed; a tqdm bar (epoch, loss,
validation metric, best so far, elapsed time) with ``progress``, by default when stderr is a
terminal.
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator
from tqdm.auto import tqdm

from warmrec.config import ConfigModel, build_config
from warmrec.data.dataset import EvalSet, SequenceDataset
from warmrec.errors import ConfigError, ModelError
from warmrec.evaluation.evaluate import evaluate
from warmrec.evaluation.metrics import parse_metric
from warmrec.rng import FitGenerators, seeded_global, using
from warmrec.training.checkpoint import (
    ResumeWarning,
    RunState,
    has_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from warmrec.training.memory import keep_freed_memory
from warmrec.training.threads import apply_threads

OPTIMIZERS = ("adamw", "adam", "adagrad", "sgd")
PAUSE = "pause"
"""A callback's answer that ends this fit after the epoch, resumable from its checkpoint."""
SCHEDULES = ("none", "cosine", "linear")
EPOCHS_VALIDATED = 100  # the cap when validation can stop training early
EPOCHS_UNVALIDATED = 20
WARMUP_SHARE = 10  # warm-up takes at most 1 / WARMUP_SHARE of a run's optimizer steps


class TrainerConfig(ConfigModel):
    """Settings of the training loop (model settings live in the model's own config).

    The defaults are generic; a model class may set ``default_trainer`` (its best-known
    settings, e.g. SASRec's batch size, learning rate and schedule), which
    :meth:`~warmrec.models.neural.NeuralRecommender.fit` merges under the caller's settings.
    ``time_budget_s > 0`` starts no epoch once that much training time is spent (not
    reproducible across machines; for benchmarks).
    """

    epochs: int | None = Field(None, ge=1)
    """Most epochs. None: 100 with a validation set (early stopping by ``patience`` ends
    training soon after validation stops improving), 20 without one."""
    batch_size: int = Field(128, ge=1)
    """Training examples (windows, lanes) per optimizer step."""
    lr: float = Field(1e-3, gt=0)
    """Learning rate."""
    weight_decay: float = Field(0.0, ge=0)
    """Weight decay on weight matrices (not on biases and norms): decoupled under ``"adamw"``
    (the default), an L2 penalty added to the gradient under ``"adam"``, ``"adagrad"`` and
    ``"sgd"`` (torch's ``weight_decay`` of each)."""
    optimizer: Literal["adamw", "adam", "adagrad", "sgd"] = "adamw"
    """The optimizer."""
    momentum: float = Field(0.0, ge=0, lt=1)
    """Momentum of ``"sgd"``."""
    grad_clip: float = Field(0.0, ge=0)
    """Max global gradient norm (0 = off)."""
    schedule: Literal["none", "cosine", "linear"] = "none"
    """Learning-rate schedule after warm-up: constant, or cosine / linear decay to 0 at the
    end of ``epochs``."""
    warmup_steps: int = Field(0, ge=0)
    """Optimizer steps of linear warm-up, at most a tenth of the run's steps (so a model's
    default warm-up cannot swallow a short run on small data)."""
    patience: int = Field(5, ge=0)
    """Evaluations without improvement of ``valid_metric`` before training stops (0 = never
    stop early). A model's ``default_trainer`` may set its own (SASRec: 30, chosen on validation
    over 5 and 15 on ml-100k and MARS, ``benchmarks/results/sasrec_patience.md``; 5 stopped it
    at early validation dips)."""
    valid_metric: str = "ndcg@10"
    """The validation metric that selects the best epoch."""
    valid_metrics: tuple[str, ...] = ("hr@10",)
    """Further validation metrics recorded per epoch."""
    valid_batch_size: int = Field(1024, ge=1)
    """Histories per validation batch."""
    exclude_seen: bool = False
    """Exclude history items when validating."""
    eval_every: int = Field(1, ge=1)
    """Validate every this many epochs (and after the last, also where the time budget ends
    the run)."""
    restore_best: bool = True
    """Keep the weights of the best validated epoch at the end."""
    seed: int = Field(0, ge=0, lt=2**63)
    """Seeds torch and the batch order: an integer in [0, 2**63) (numpy's generators take no
    negative seed, and ``-1`` failed in the fit with numpy's ``ValueError``)."""
    device: str = "auto"
    """``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ..."""
    num_threads: int = Field(0, ge=0)
    """torch CPU threads (``--threads``); 0 = the thread policy
    (:mod:`warmrec.training.threads`): the CPUs this process may use less those other work keeps
    busy when the run starts, at least 1 (``OMP_NUM_THREADS``, where set, is kept; a count set
    earlier with ``torch.set_num_threads`` is not: pass it here to keep it). Results
    are bit-identical for one seed at one thread count, not across counts (float sums split
    differently): to reproduce a run, pin it; the run's record (``trainer``) names the count
    it ran with."""
    reuse_memory: bool = True
    """Keep freed memory in the process for the next step's tensors instead of returning it to
    the OS (glibc ``mallopt``; see :mod:`warmrec.training.memory`): 14 % less CPU per GRU4Rec
    step on nowplaying-1m. The process then holds its peak heap after training."""
    log_path: str = ""
    """Append one JSON line per epoch to this file."""
    tensorboard_dir: str = ""
    """Write TensorBoard scalars here (needs the ``tensorboard`` package)."""
    progress: bool | None = None
    """Show a progress bar (epoch, loss, validation metric, time); None = when stderr is a
    terminal or in a Jupyter notebook (elsewhere, inside :func:`epoch_lines`, one line per
    epoch instead)."""
    checkpoint_dir: str = ""
    """Write the full training state here (atomically), to resume."""
    checkpoint_every: int = Field(1, ge=1)
    """Checkpoint every this many epochs (and at the end)."""
    resume: bool = False
    """Continue from ``checkpoint_dir`` when it holds a checkpoint."""
    time_budget_s: float = Field(0.0, ge=0)
    """Start no epoch once this much training time is spent (0 = no budget). The time is the
    run's: a run resumed from a checkpoint counts the epochs trained before (it ends where the
    uninterrupted run would), so a run that its budget ended goes on only under a larger one."""

    @field_validator("optimizer", "schedule", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v

    @field_validator("valid_metric")
    @classmethod
    def _metric(cls, v: str) -> str:
        check_metric(v)
        return v

    @field_validator("valid_metrics")
    @classmethod
    def _metrics(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for m in v:
            check_metric(m)
        return v

    @model_validator(mode="after")
    def _resume_needs_dir(self) -> TrainerConfig:
        if self.resume and not self.checkpoint_dir:
            raise ValueError(
                "resume needs checkpoint_dir (--checkpoint-dir or train.checkpoint_dir), found none"
            )
        return self

    def max_epochs(self, validated: bool) -> int:
        """``epochs``, or its default for a run with (``validated``) or without validation."""
        if self.epochs is not None:
            return self.epochs
        return EPOCHS_VALIDATED if validated else EPOCHS_UNVALIDATED

    def show_progress(self) -> bool:
        """``progress``, or when it is None whether stderr is a terminal or the process is a
        Jupyter kernel (whose stderr is not a terminal, but shows tqdm's notebook bar)."""
        return shows_bar(self.progress)


def shows_bar(progress: bool | None) -> bool:
    """Whether a progress bar shows: ``progress``, or when it is None whether stderr is a
    terminal or the process is a Jupyter kernel (whose stderr is not a terminal, but shows
    tqdm's notebook bar)."""
    if progress is None:
        return bool(getattr(sys.stderr, "isatty", lambda: False)()) or in_notebook()
    return progress


def prints_lines(progress: bool | None) -> bool:
    """Whether plain progress lines go to stderr instead of a bar: ``progress`` unset, no bar
    can show, and within :func:`epoch_lines` (the command line's log-file mode)."""
    return progress is None and not shows_bar(None) and _EPOCH_LINES.get()


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (an IPython ``ZMQInteractiveShell``)."""
    ipython = sys.modules.get("IPython")
    try:
        shell = ipython.get_ipython() if ipython is not None else None
    except Exception:  # an IPython too broken to ask is not a notebook to draw in
        return False
    return type(shell).__name__ == "ZMQInteractiveShell"


_EPOCH_LINES: ContextVar[bool] = ContextVar("warmrec_epoch_lines", default=False)


@contextmanager
def epoch_lines(on: bool = True) -> Iterator[None]:
    """Within: a run whose progress bar does not show because stderr is not a terminal
    (``progress`` unset: a log file, CI, nohup) prints one plain line per epoch on stderr
    instead (epoch, loss, validation metric, best, seconds). The command line turns it on for
    ``train``, ``pretrain`` and ``transfer`` without ``--json``; ``progress=False`` stays
    silent."""
    token = _EPOCH_LINES.set(on)
    try:
        yield
    finally:
        _EPOCH_LINES.reset(token)


def bar_size() -> dict[str, int]:
    """``ncols``/``nrows`` for tqdm where the terminal reports a size of 0x0 (a pseudo-terminal
    opened without a size, as ``script``, ``expect`` or some CI runners make): tqdm hides every
    bar at a position >= rows - 1, so with 0 rows it would print nothing. Elsewhere: {}."""
    import os
    import shutil

    try:
        cols, rows = os.get_terminal_size(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return {}
    if cols and rows:
        return {}
    size = shutil.get_terminal_size((100, 24))
    return {"ncols": cols or size.columns, "nrows": rows or size.lines}


def check_metric(name: str) -> None:
    """A metric name the validators accept (:func:`~warmrec.evaluation.metrics.parse_metric`),
    raised as ``ValueError`` so pydantic reports it as a one-line config error."""
    try:
        parse_metric(name)
    except ConfigError as e:
        raise ValueError(str(e)) from None


@dataclass
class TrainResult:
    """Per-epoch ``history`` (loss, seconds, validation metrics), the best epoch and metric."""

    history: list[dict[str, Any]]
    best_epoch: int
    best_metric: float
    stopped_early: bool = False
    resumed_from: int = 0
    train_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    paused: bool = False
    """A callback answered :data:`PAUSE`: the run can go on from its checkpoint."""
    trainer: dict[str, Any] = field(default_factory=dict)
    """The settings the loop ran with (the model's default trainer under the caller's, every
    field resolved; JSON-shaped)."""

    @property
    def epochs_run(self) -> int:
        return len(self.history)

    @property
    def seconds_per_epoch(self) -> float:
        times = [h["train_seconds"] for h in self.history]
        return float(np.median(times)) if times else 0.0


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; a named device must exist on this machine."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"TrainerConfig.device: {e}") from e
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0 or (dev.index is not None and dev.index >= n):
            build = "a CPU-only build" if torch.version.cuda is None else f"{n} CUDA device(s)"
            raise ConfigError(
                f"TrainerConfig.device: expected a device this machine has (cpu or auto), "
                f"found {name!r} but torch {torch.__version__} has {build}"
            )
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(
            f"TrainerConfig.device: expected a device this machine has (cpu or auto), "
            f"found {name!r} but MPS is not available"
        )
    return dev


def decay_groups(
    net: torch.nn.Module | Iterable[torch.Tensor], weight_decay: float
) -> list[dict[str, Any]]:
    """Parameter groups with weight decay on matrices only (not on biases and norms), of a
    module's parameters or of the given ones (the trained ones: ``requires_grad``)."""
    params = list(net.parameters() if isinstance(net, torch.nn.Module) else net)
    decay = [p for p in params if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in params if p.requires_grad and p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def _budget_spent(cfg: TrainerConfig, run: RunState, hooks: LoopHooks | None = None) -> bool:
    """Whether ``time_budget_s`` (0: none) is spent: no epoch starts after it. With ``hooks``,
    as its :meth:`LoopHooks.agree` makes it (data-parallel workers: spent for all where spent
    for one)."""
    if not cfg.time_budget_s:
        return False
    spent = run.train_seconds >= cfg.time_budget_s
    return spent if hooks is None else bool(hooks.agree(spent))


def make_optimizer(
    params: torch.nn.Module | list[dict[str, Any]], cfg: TrainerConfig
) -> torch.optim.Optimizer:
    """The optimizer over a module (see :func:`decay_groups`) or explicit parameter groups.

    A group may carry ``lr_scale`` (its learning rate is ``cfg.lr * lr_scale``); frozen
    parameters (``requires_grad=False``) are left out. A group with ``sparse=True`` holds tables
    whose gradients are sparse (only the rows a mini-batch touched, e.g. GRU4Rec's item table):
    it gets the sparse-aware form of ``cfg.optimizer`` (see :class:`SparseAwareOptimizer`).
    """
    if isinstance(params, torch.nn.Module):
        params = decay_groups(params, cfg.weight_decay)
    dense_groups, sparse_groups = [], []
    for g in params:
        g = dict(g)
        g["params"] = [p for p in g["params"] if p.requires_grad]
        scale = g.pop("lr_scale", None)
        if scale is not None:
            g["lr"] = cfg.lr * scale
        sparse = bool(g.pop("sparse", False))
        if g["params"]:
            (sparse_groups if sparse else dense_groups).append(g)
    if not dense_groups and not sparse_groups:
        raise ModelError("nothing to train: every parameter is frozen")
    parts = []
    if dense_groups:
        parts.append(_dense_optimizer(dense_groups, cfg))
    if sparse_groups:
        parts.append(_sparse_optimizer(sparse_groups, cfg))
    return parts[0] if len(parts) == 1 else SparseAwareOptimizer(parts)


def _dense_optimizer(groups: list[dict[str, Any]], cfg: TrainerConfig) -> torch.optim.Optimizer:
    kw: dict[str, Any] = {"lr": cfg.lr}
    if _can_fuse([p for g in groups for p in g["params"]]):
        kw["fused"] = True
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, **kw)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, **kw)
    if cfg.optimizer == "adagrad":
        return torch.optim.Adagrad(groups, **kw)
    return torch.optim.SGD(groups, momentum=cfg.momentum, **kw)


def _sparse_optimizer(groups: list[dict[str, Any]], cfg: TrainerConfig) -> torch.optim.Optimizer:
    """``cfg.optimizer`` for tables with sparse gradients, updating only the touched rows
    (:mod:`warmrec.training.rowwise`): Adagrad exactly as the dense one (an untouched row's
    update is zero under both; weight decay, its L2 term, on the touched rows); AdamW as lazy
    AdamW (the moments of a row move only when it is touched; weight decay, decoupled, on the
    touched rows); SGD is torch's (which takes sparse gradients, without weight decay). Adam's
    L2 penalty (not decoupled) and SGD's weight decay have no row-wise form here: refused
    with weight decay, where they had been dropped (Adam) or failed in torch (SGD)."""
    from warmrec.training.rowwise import RowAdagrad, RowAdam

    decayed = any(g.get("weight_decay", 0.0) > 0 for g in groups)
    if decayed and cfg.optimizer in ("adam", "sgd"):
        raise ConfigError(
            f"train.weight_decay: optimizer {cfg.optimizer!r} has no weight decay for tables "
            f"with sparse gradients (found {cfg.weight_decay:g}); expected weight_decay = 0, "
            "optimizer 'adamw' or 'adagrad', or the model's sparse_items = false"
        )
    if cfg.optimizer in ("adam", "adamw"):
        return RowAdam(groups, lr=cfg.lr)
    if cfg.optimizer == "adagrad":
        return RowAdagrad(groups, lr=cfg.lr)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)


class SparseAwareOptimizer(torch.optim.Optimizer):
    """Several optimizers stepped as one: the dense parameters' (fused where possible) and the
    sparse tables' (:func:`_sparse_optimizer`).

    ``param_groups`` are the parts' own group dicts, so a learning-rate scheduler that sets
    ``group["lr"]`` reaches every part; ``state_dict`` numbers parameters consecutively across
    the parts, in the standard layout (so checkpoints flatten it like any other optimizer).
    """

    def __init__(self, parts: list[torch.optim.Optimizer]) -> None:  # noqa: D107
        # no super().__init__: it would copy the parts' groups into new dicts
        self.parts = parts
        self.param_groups = [g for part in parts for g in part.param_groups]
        self.defaults = dict(parts[0].defaults)
        self._optimizer_step_pre_hooks: dict = {}
        self._optimizer_step_post_hooks: dict = {}
        self._optimizer_state_dict_pre_hooks: dict = {}
        self._optimizer_state_dict_post_hooks: dict = {}
        self._optimizer_load_state_dict_pre_hooks: dict = {}
        self._optimizer_load_state_dict_post_hooks: dict = {}

    @property
    def state(self) -> dict[torch.Tensor, Any]:  # type: ignore[override]
        return {p: s for part in self.parts for p, s in part.state.items()}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for part in self.parts:
            part.zero_grad(set_to_none=set_to_none)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = closure() if closure is not None else None
        for part in self.parts:
            part.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        state: dict[int, Any] = {}
        groups: list[dict[str, Any]] = []
        offset = 0
        for part in self.parts:
            sd = part.state_dict()
            state.update({pid + offset: s for pid, s in sd["state"].items()})
            for g in sd["param_groups"]:
                groups.append({**g, "params": [pid + offset for pid in g["params"]]})
            offset += sum(len(g["params"]) for g in sd["param_groups"])
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ModelError(
                f"optimizer state has {len(groups)} parameter groups, expected "
                f"{len(self.param_groups)}"
            )
        first, offset = 0, 0
        for part in self.parts:
            own = groups[first : first + len(part.param_groups)]
            n = sum(len(g["params"]) for g in own)
            part.load_state_dict(
                {
                    "state": {
                        pid - offset: s
                        for pid, s in state_dict["state"].items()
                        if offset <= int(pid) < offset + n
                    },
                    "param_groups": [
                        {**g, "params": [pid - offset for pid in g["params"]]} for g in own
                    ],
                }
            )
            first += len(part.param_groups)
            offset += n
        self.param_groups = [g for part in self.parts for g in part.param_groups]


def clip_grad_norm(params: Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` that also takes sparse gradients (coalesced first:
    a row looked up twice counts once, with its summed gradient)."""
    params = [p for p in params if p.grad is not None]
    if not any(p.grad.is_sparse for p in params):
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    norms = []
    for p in params:
        if p.grad.is_sparse:
            p.grad = p.grad.coalesce()
            norms.append(torch.linalg.vector_norm(p.grad._values()))
        else:
            norms.append(torch.linalg.vector_norm(p.grad))
    total = torch.linalg.vector_norm(torch.stack(norms))
    scale = (max_norm / (total + 1e-6)).clamp_max(1.0)
    for p in params:
        p.grad.mul_(scale)
    return total


def _can_fuse(params: list[torch.Tensor]) -> bool:
    """Whether torch's fused optimizer kernels apply: dense floating-point tensors, all on one
    CPU or CUDA device. They do the same update in one kernel per parameter group instead of a
    handful of small ops per tensor (about 5x less optimizer time per step on CPU)."""
    devices = {p.device for p in params}
    return (
        len(devices) == 1
        and next(iter(devices)).type in ("cpu", "cuda")
        and all(p.is_floating_point() and not p.is_sparse for p in params)
    )


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of the base learning rate after ``step`` optimizer steps."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "none":
        return 1.0
    span = max(total - warmup, 1)
    progress = min(max(step - warmup, 0) / span, 1.0)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - progress


def replanned_schedule(cfg: TrainerConfig, planned: int, total: int, step: int) -> str | None:
    """What changes where a run resumed after ``step`` optimizer steps plans its learning-rate
    schedule over ``total`` steps instead of the checkpoint's ``planned`` (another ``epochs``, or
    another number of batches per epoch): the rate at the next step under both plans, as shares
    of the base rate; None where the plans give the same rates from here on (no decay and no
    warm-up left, or no decay and the same warm-up in both)."""
    if planned == total:
        return None
    w_old = min(cfg.warmup_steps, planned // WARMUP_SHARE)
    w_new = min(cfg.warmup_steps, total // WARMUP_SHARE)
    # without decay only the warm-up depends on the plan: the same warm-up, or one over, is
    # the same rate at every step from here on
    if cfg.schedule == "none" and (w_old == w_new or step >= max(w_old, w_new)):
        return None
    before = lr_factor(step, planned, w_old, cfg.schedule)
    after = lr_factor(step, total, w_new, cfg.schedule)
    what = f"{cfg.schedule} decay" if cfg.schedule != "none" else "warm-up"
    return (
        f"the learning-rate schedule ({what}) was planned over {planned:,} optimizer steps and "
        f"is now planned over {total:,}: at step {step + 1:,} the rate is {after:.1%} of the "
        f"base rate instead of {before:.1%}"
    )


def guessed_phase_plan(cfg: TrainerConfig, data: Any, n_batches: int, step: int) -> str | None:
    """What a resume from a checkpoint that did not record its schedule's steps (an older
    warmrec) cannot know with ``random_phase`` windows, or None: the warmrec that saved it may
    have counted more batches per epoch (one window more per long sequence, before the mean
    over the phases), so a decay, or a warm-up not yet over, planned again from the checkpoint's
    epochs at today's ``n_batches`` may not be the plan the run had."""
    inner, phased = data, False
    while inner is not None and not phased:  # through wrappers (ShardedData.inner)
        phased = bool(getattr(inner, "random_phase", False))
        inner = getattr(inner, "inner", None)
    if not phased or (cfg.schedule == "none" and step >= cfg.warmup_steps):
        return None
    return (
        "the checkpoint, of an older warmrec, does not record the optimizer steps its "
        "learning-rate schedule was planned over, and with random_phase that warmrec may have "
        f"counted more batches per epoch than the {n_batches:,} counted now: the schedule is "
        "planned again from its epochs at today's count, so this run may differ from an "
        "uninterrupted one"
    )


def make_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainerConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = min(cfg.warmup_steps, total_steps // WARMUP_SHARE)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total_steps, warmup, cfg.schedule)
    )


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def optimizer_step(
    model: Any,
    batch: Any,
    optimizer: torch.optim.Optimizer,
    grad_clip: float = 0.0,
    device: torch.device | None = None,
) -> torch.Tensor:
    """One optimisation step: ``training_step`` -> ``backward`` -> clip -> ``step``.

    The only ``backward()`` in warmrec; :func:`train` and :func:`inner_steps` both call it.
    Returns the (attached) loss.
    """
    if device is not None:
        batch = _to_device(batch, device)
    loss = model.training_step(batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        clip_grad_norm(model.net.parameters(), grad_clip)
    optimizer.step()
    return loss


def inner_steps(
    model: Any,
    batches: Iterable[Any] | Callable[[], Iterable[Any]],
    optimizer_cfg: TrainerConfig | Mapping[str, Any] | None,
    n_steps: int,
    *,
    optimizer: torch.optim.Optimizer | None = None,
) -> list[float]:
    """``n_steps`` optimisation steps of ``model`` (which has its net) on the given batches.

    For meta-learning (Reptile's inner loop) and few-shot adaptation: no epochs, no validation,
    no schedule. ``batches`` is a re-iterable (a list) or a callable returning a fresh iterator
    (a new pass, e.g. ``lambda: data.batches(bs, rng)``); passes repeat until ``n_steps`` steps
    are done. ``optimizer_cfg`` supplies ``optimizer``, ``lr``, ``momentum``, ``weight_decay``
    and ``grad_clip`` (:class:`TrainerConfig` fields); a new optimizer over
    ``model.optimizer_groups`` is made unless ``optimizer`` is given. The net is put in training
    mode and stays there. Returns the loss of every step.
    """
    cfg = build_config(TrainerConfig, optimizer_cfg)
    if model.net is None:
        raise ModelError(f"model '{model.name}': inner_steps needs a model with a network")
    if optimizer is None:
        optimizer = make_optimizer(model.optimizer_groups(cfg.weight_decay), cfg)
    device = next(model.net.parameters()).device
    model.net.train()
    losses: list[float] = []
    while len(losses) < n_steps:
        before = len(losses)
        for batch in batches() if callable(batches) else batches:
            loss = optimizer_step(model, batch, optimizer, cfg.grad_clip, device)
            losses.append(float(loss.detach()))
            if len(losses) >= n_steps:
                break
        if len(losses) == before:
            raise ModelError(f"model '{model.name}': inner_steps got no batches")
    return losses


class LoopHooks:
    """Extension points of :func:`train` for code that changes *how* a run trains without
    forking the loop (data-parallel workers, profilers). The defaults do nothing.

    - :meth:`wrap_data` gets the model's training data (what ``model.training_data`` made) and
      returns what the loop iterates (e.g. one worker's shard of every epoch);
    - :meth:`on_ready` runs once the net exists and is on its device, before the optimizer is
      built (e.g. to hook gradient all-reduce);
    - :meth:`agree` turns this run's decision that its time budget is spent into the one every
      run in step with it takes (data-parallel workers each measure their own time: one that
      stopped while another started an epoch left that one waiting in a gradient all-reduce);
    - :meth:`close` runs when training ends, normally or not.
    """

    def wrap_data(self, data: Any) -> Any:
        return data

    def agree(self, spent: bool) -> bool:
        """The decision that the time budget is spent (called once per epoch and once before
        the first, on every worker alike, only where the run has a time budget)."""
        return spent

    def on_ready(self, model: Any) -> None:
        return None

    def close(self) -> None:
        return None


class _Loggers:
    """JSON-lines file and optional TensorBoard writer."""

    def __init__(self, cfg: TrainerConfig) -> None:
        self.log_path = Path(cfg.log_path) if cfg.log_path else None
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.tb = None
        if cfg.tensorboard_dir:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                warnings.warn("tensorboard is not installed; tensorboard_dir ignored", stacklevel=3)
            else:
                self.tb = SummaryWriter(cfg.tensorboard_dir)

    def log(self, record: dict[str, Any]) -> None:
        if self.log_path is not None:
            with self.log_path.open("a") as f:
                f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if k != "epoch" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, record["epoch"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def train(
    model: Any,
    train_data: SequenceDataset,
    valid_set: EvalSet | None = None,
    config: TrainerConfig | Mapping[str, Any] | None = None,
    *,
    fresh: bool = True,
    callbacks: Sequence[Callable[[int, dict[str, Any], Any], bool | None]] = (),
    hooks: LoopHooks | None = None,
    **overrides: Any,
) -> TrainResult:
    """Train ``model`` (a NeuralRecommender) on ``train_data``; see the module docstring.

    ``fresh=True`` binds the training vocabulary and builds a new net; ``fresh=False`` trains
    the net the model already has (fine-tuning: the caller has set the vocabulary, weights and
    any frozen parameters). The optimizer covers ``model.optimizer_groups(weight_decay)``.
    Each callback is called as ``callback(epoch, record, model)`` after every epoch; returning
    True stops training (callbacks are not part of checkpoints); returning :data:`PAUSE` ends
    this fit after the epoch, saving a checkpoint (with ``checkpoint_dir``) from which the same
    run resumes and goes on. ``hooks``: a :class:`LoopHooks`.
    """
    hooks = hooks or LoopHooks()
    try:
        return _train(model, train_data, valid_set, config, fresh, callbacks, hooks, overrides)
    finally:
        hooks.close()


def _train(
    model: Any,
    train_data: SequenceDataset,
    valid_set: EvalSet | None,
    config: TrainerConfig | Mapping[str, Any] | None,
    fresh: bool,
    callbacks: Sequence[Callable[[int, dict[str, Any], Any], bool | None]],
    hooks: LoopHooks,
    overrides: dict[str, Any],
) -> TrainResult:
    cfg = build_config(TrainerConfig, config, **overrides)
    threads = apply_threads(cfg.num_threads)
    if cfg.reuse_memory:
        keep_freed_memory()
    device = resolve_device(cfg.device)
    # the net's init: the global generators, this thread's alone meanwhile (warmrec.rng); the
    # rest of the setup and the steps draw from the fit's own copy, the lock free for others
    with seeded_global(cfg.seed):
        if fresh:
            model.device = device
            model.setup_training(train_data)
        else:
            if model.net is None or model.vocab is None:
                raise ModelError(f"model '{model.name}': fresh=False needs a model with a network")
            if len(model.vocab) != train_data.n_items:
                raise ModelError(
                    f"model '{model.name}' has {len(model.vocab)} item indices but the training "
                    f"data has {train_data.n_items}: build the data with the model's vocabulary"
                )
            model.to(device)
            model.prepare(train_data)
        gens = FitGenerators.from_global(device)
    with using(gens):
        return _run(model, train_data, valid_set, cfg, callbacks, hooks, device, threads, gens)


def _run(
    model: Any,
    train_data: SequenceDataset,
    valid_set: EvalSet | None,
    cfg: TrainerConfig,
    callbacks: Sequence[Callable[[int, dict[str, Any], Any], bool | None]],
    hooks: LoopHooks,
    device: torch.device,
    threads: int,
    gens: FitGenerators,
) -> TrainResult:
    """The fit after its net is built, drawing from its own generators ``gens`` (current):
    the rest of the setup (hooks, training data, optimizer, a checkpoint to resume from) and
    the epochs."""
    rng = np.random.default_rng(cfg.seed)
    hooks.on_ready(model)
    loss_name = getattr(getattr(model, "loss_fn", None), "name", None)  # "auto" resolved
    data = hooks.wrap_data(model.training_data(train_data))
    n_batches = data.n_batches(cfg.batch_size)
    if n_batches == 0:
        raise ModelError(
            f"model '{model.name}': no training examples (every sequence is shorter than 2 items)"
        )
    optimizer = make_optimizer(model.optimizer_groups(cfg.weight_decay), cfg)
    n_epochs = cfg.max_epochs(valid_set is not None)
    show = cfg.show_progress()
    lines = not show and prints_lines(cfg.progress)
    scheduler = make_scheduler(optimizer, cfg, n_batches * n_epochs)
    metrics = [cfg.valid_metric] + [m for m in cfg.valid_metrics if m != cfg.valid_metric]
    key_metric = parse_metric(cfg.valid_metric).label

    run = RunState()
    resumed_from = 0
    paused = False
    if cfg.resume and has_checkpoint(cfg.checkpoint_dir):
        run = load_checkpoint(
            cfg.checkpoint_dir, model, optimizer, scheduler, rng, cfg, generators=gens
        )
        resumed_from = run.epoch
        done = run.stopped or run.epoch >= n_epochs
        spent = not done and _budget_spent(cfg, run)  # it counts the earlier runs' training
        warnings.warn(
            f"resumed {model.name} from checkpoint {cfg.checkpoint_dir} at epoch {run.epoch}"
            + (" (already finished: no epoch to run)" if done else "")
            + (
                f" (its time budget is spent: no epoch to run; time_budget_s "
                f"{cfg.time_budget_s:g} counts the training of every run from this checkpoint, "
                f"{run.train_seconds:.1f} s so far: raise it to train on)"
                if spent
                else ""
            ),
            ResumeWarning,
            stacklevel=3,
        )
        if not (done or spent):
            planned = run.schedule_steps
            guessed = None
            if planned is None:  # a checkpoint of an older warmrec: from its epochs setting
                saved = run.saved_epochs
                if saved is None:
                    saved = TrainerConfig().max_epochs(valid_set is not None)
                planned = n_batches * int(saved)
                guessed = guessed_phase_plan(cfg, data, n_batches, scheduler.last_epoch)
            why = replanned_schedule(cfg, planned, n_batches * n_epochs, scheduler.last_epoch)
            if why:
                warnings.warn(
                    f"{cfg.checkpoint_dir}: {why}; this run differs from an uninterrupted run "
                    f"of {n_epochs} epochs (resume with the checkpoint's epochs to follow the "
                    "schedule as planned)" + (f"; {guessed}" if guessed else ""),
                    ResumeWarning,
                    stacklevel=3,
                )
            elif guessed:
                warnings.warn(f"{cfg.checkpoint_dir}: {guessed}", ResumeWarning, stacklevel=3)
    run.schedule_steps = n_batches * n_epochs
    loggers = _Loggers(cfg)
    epochs = tqdm(
        range(run.epoch + 1, n_epochs + 1),
        desc=f"train {model.name}",
        disable=not show,
        initial=run.epoch,
        total=n_epochs,
        unit="epoch",
        **(size := bar_size() if show else {}),
    )
    spent = _budget_spent(cfg, run, hooks)
    try:
        for epoch in epochs:
            if run.stopped:
                break
            if spent:
                break
            model.net.train()
            t0, c0 = time.perf_counter(), time.process_time()
            total = torch.zeros((), device=device)
            steps = 0
            batches = tqdm(
                data.batches(cfg.batch_size, rng),
                total=n_batches,
                leave=False,
                desc=f"epoch {epoch}",
                disable=not show,
                **size,
            )
            for batch in batches:
                loss = optimizer_step(model, batch, optimizer, cfg.grad_clip, device)
                scheduler.step()
                total += loss.detach()
                steps += 1
            mean_loss = float(total) / max(steps, 1)
            if not math.isfinite(mean_loss):
                raise ModelError(
                    f"model '{model.name}': training loss is {mean_loss} at epoch "
                    f"{epoch}; lower the learning rate or clip gradients"
                )
            seconds = time.perf_counter() - t0
            run.train_seconds += seconds
            record: dict[str, Any] = {
                "epoch": epoch,
                "loss": mean_loss,
                "train_seconds": seconds,
                "train_cpu_seconds": time.process_time() - c0,
                "lr": optimizer.param_groups[0]["lr"],
            }
            # the time budget ends the run after this epoch: validate and checkpoint it as the last
            spent = _budget_spent(cfg, run, hooks)
            last = epoch == n_epochs or spent
            if valid_set is not None and (epoch % cfg.eval_every == 0 or last):
                t1 = time.perf_counter()
                res = evaluate(
                    model,
                    valid_set,
                    metrics,
                    exclude_seen=cfg.exclude_seen,
                    batch_size=cfg.valid_batch_size,
                )
                record.update({f"valid_{k}": v for k, v in res.summary.items()})
                record["eval_seconds"] = time.perf_counter() - t1
                value = res.summary[key_metric]
                if value > run.best_metric:
                    run.best_metric, run.best_epoch, run.bad_evals = value, epoch, 0
                    run.best_weights = {
                        k: v.detach().clone() for k, v in model.net.state_dict().items()
                    }
                else:
                    run.bad_evals += 1
                    if cfg.patience and run.bad_evals >= cfg.patience:
                        run.stopped = True
            elif valid_set is None:
                run.best_epoch = epoch
            run.epoch = epoch
            run.history.append(record)
            loggers.log(record)
            shown = {"loss": f"{mean_loss:.4f}"}
            if f"valid_{key_metric}" in record:
                shown[key_metric] = f"{record[f'valid_{key_metric}']:.4f}"
                shown["best"] = f"{run.best_metric:.4f} (epoch {run.best_epoch})"
            epochs.set_postfix(shown)
            if lines:
                print(
                    f"train {model.name}: epoch {epoch}/{n_epochs}, "
                    + ", ".join(f"{k} {v}" for k, v in shown.items())
                    + f", {seconds:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
            answers = [cb(epoch, record, model) for cb in callbacks]
            if any(isinstance(a, str) and a == PAUSE for a in answers):
                paused = True
            if any(bool(a) for a in answers if not (isinstance(a, str) and a == PAUSE)):
                run.stopped = True
            if cfg.checkpoint_dir and (
                epoch % cfg.checkpoint_every == 0 or last or run.stopped or paused
            ):
                save_checkpoint(
                    cfg.checkpoint_dir,
                    model,
                    optimizer,
                    scheduler,
                    run,
                    rng,
                    cfg,
                    gens.states(),
                )
            if paused and not run.stopped:
                break
    finally:
        loggers.close()
        epochs.close()
    if cfg.restore_best and run.best_weights is not None:
        model.net.load_state_dict(run.best_weights)
    model.net.eval()
    return TrainResult(
        history=run.history,
        best_epoch=run.best_epoch,
        best_metric=run.best_metric if run.best_weights is not None else math.nan,
        stopped_early=run.stopped,
        resumed_from=resumed_from,
        train_seconds=run.train_seconds,
        extra={"loss": loss_name} if loss_name else {},
        paused=paused and not run.stopped,
        # the thread count in force, not 0 (the policy's pick): a run's float results are
        # bit-identical for a seed at one thread count, so its record must name it
        trainer={**cfg.model_dump(mode="json"), "num_threads": threads},
    )
