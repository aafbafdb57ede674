"""MAML, FO-MAML, MAML++ and Reptile behind one interface, trained by THE training loop.

A :class:`MetaModel` wraps a fitted (pre-trained) neural model. Its ``net`` is a
:class:`MetaNet`: the model's own network plus, for MAML++, learnable per-layer per-step inner
learning rates and, with ``adaptive_loss``, a :class:`~warmrec.meta.adaptive_loss.LossNetwork`.
Its ``training_data`` streams meta-batches of tasks (one user sequence each: support = the first
``k`` events, ``k`` drawn from ``train_shots``; query = the next ``n_query`` events) and its
``training_step(tasks)`` returns the meta-objective of the meta-batch, so
:func:`warmrec.training.loop.train` does the outer update with its one ``backward()``
(contract 3). The inner loop takes its gradients with :func:`torch.autograd.grad`
(:class:`~warmrec.meta.learner.MetaLearner`).

Per task, from the current weights ``theta`` (fast weights ``phi_0 = theta``)::

    phi_{s+1} = phi_s - alpha_s * grad_phi L_inner(phi_s; support)     s = 0..S-1
    meta-loss = sum_s v_s * L_query(phi_{s+1})      (v = one-hot on the last step unless MAML++)

- ``"maml"``: second order (the graph of every inner step is kept);
- ``"fomaml"``: first order (inner gradients detached);
- ``"mamlpp"`` (Antoniou et al. 2019, "How to train your MAML"): multi-step loss whose weights
  ``v`` start uniform and anneal to the last step over ``msl_epochs`` (:func:`step_weights`,
  the paper's code), learnable ``alpha[layer, step]`` (LSLR), cosine-annealed outer learning
  rate (the loop's ``schedule="cosine"``), derivative-order annealing (first order for the first
  ``first_order_epochs`` epochs, then second order);
- ``"reptile"``: first-order inner steps, then the surrogate ``0.5 * ||theta - stopgrad(phi_S)||^2``
  whose gradient is ``theta - phi_S``: with the outer optimizer SGD at ``outer_lr`` (epsilon)
  this is Reptile's update ``theta += epsilon * (phi_S - theta)`` (averaged over the meta-batch);
- ``"finetune"``: no meta-training; :meth:`MetaModel.score` still adapts every history (the
  per-user fine-tuning baseline, same steps and learning rate as the meta methods), and
  ``inner_steps=0`` is the global model without adaptation.

``L_inner`` is the model's own ``training_step`` on the support (or, with ``adaptive_loss``, the
learned weighting of its per-example values); ``L_query`` is the full-softmax cross-entropy of
the model's *scores* of each query item given everything before it
(:meth:`~warmrec.meta.learner.MetaLearner.query_loss`), the quantity the cold-start protocol
ranks by. Inner steps run with the net in training mode, query losses and scoring in eval mode.

:meth:`MetaModel.score` adapts to each history of a scoring batch (its revealed events: the
support) and scores with the adapted weights: a query item is never given to adaptation because
a :class:`~warmrec.data.dataset.Batch` holds histories only. A one-event history has no
(input, target) pair for a next-item objective: it is scored without adaptation.

Every task is a cold user, in meta-training as at meta-test: no user id reaches an episode's
support or query, so a user-aware model (SSE-PT) reads both as its unknown user, the mean of its
trained user vectors, which the inner steps adapt. That is the choice for a user without a row
(a meta-test user has none that was trained), not a defect; the meta-training user's own row was
learned by the global model from its whole history, the query included, and is left out.

A :class:`MetaModel` is a :class:`~warmrec.models.base.Recommender` (``recommend``,
:func:`warmrec.evaluate`, the serving bundle): every history is adapted to before it is scored,
also under :func:`torch.inference_mode` (adaptation leaves inference mode for its few steps).

Saving (:meth:`MetaModel.save`): a directory of kind ``"meta"`` (:mod:`warmrec.artifacts`):
the adapted-from model's files plus ``meta.safetensors`` (learned inner learning rates, loss
network) and ``meta.json`` (the :class:`MetaConfig`), written in the same atomic directory.
:meth:`MetaModel.load`, ``Recommender.load`` and :func:`warmrec.artifacts.load_model` read it
back as a MetaModel; nothing loads it silently as its un-adapted base.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from warmrec.config import ConfigModel, build_config, config_dict
from warmrec.data.dataset import Batch, SequenceDataset
from warmrec.errors import ConfigError, ModelError
from warmrec.meta.adaptive_loss import LossNetwork
from warmrec.meta.learner import MetaLearner, trainable
from warmrec.meta.tasks import Episodes, TaskSet, to_device

# the task abstraction lives in warmrec.meta.tasks; these names are still importable from here
from warmrec.meta.tasks import Task as Task
from warmrec.meta.tasks import TaskStream as TaskStream
from warmrec.meta.tasks import make_task as make_task
from warmrec.meta.tasks import support_batches as support_batches
from warmrec.models.base import Recommender
from warmrec.models.neural import build_on_meta
from warmrec.rng import isolated

ALGORITHMS = ("maml", "fomaml", "mamlpp", "reptile", "finetune")
Algorithm = Literal["maml", "fomaml", "mamlpp", "reptile", "finetune"]


class MetaConfig(ConfigModel):
    """Settings of a meta-learner (unknown keys are rejected)."""

    algorithm: Algorithm = "mamlpp"
    """``maml``, ``fomaml``, ``mamlpp``, ``reptile`` or ``finetune`` (no meta-training)."""
    inner_steps: int = Field(3, ge=0)
    """Inner SGD steps on the support (training and adaptation; 0 = no adaptation)."""
    inner_lr: float = Field(0.05, gt=0)
    """Inner learning rate (MAML++: the initial value of every learned rate)."""
    inner_grad_clip: float = Field(1.0, ge=0)
    """Max global norm of an inner gradient (0 = off)."""
    learn_inner_lr: bool | None = None
    """Learnable per-layer per-step inner rates (None: on for ``mamlpp`` only)."""
    multi_step_loss: bool | None = None
    """Query loss after every inner step (None: on for ``mamlpp`` only)."""
    msl_epochs: int = Field(5, ge=1)
    """Epochs over which the multi-step weights anneal to the last step."""
    first_order_epochs: int = Field(2, ge=0)
    """MAML++: first-order epochs before second order."""
    adaptive_loss: bool = False
    """Learned per-example weighting of the inner loss (:mod:`warmrec.meta.adaptive_loss`)."""
    loss_hidden: int = Field(16, ge=1)
    """Hidden units of the loss network."""
    train_shots: tuple[int, ...] = (2, 3, 5, 10)
    """Support sizes drawn for meta-training tasks (each >= 2)."""
    n_query: int = Field(3, ge=1)
    """Query events per training task (MELO: number of query items)."""
    n_support_windows: int = Field(1, ge=1)
    """MELO: the support of a training task is split into up to this many contiguous
    sub-windows (separate training sequences; :func:`warmrec.meta.tasks.sub_windows`)."""
    min_window: int = Field(2, ge=2)
    """MELO: minimum sub-window size (events)."""
    max_seq_len: int = Field(0, ge=0)
    """MELO: a user's events are cut to the first this many for training tasks (0 = all)."""
    meta_epochs: int = Field(10, ge=0)
    """Outer epochs (passes over the meta-train users). 10 measured better than 3 on ml-100k
    (cold-start study, 3 seeds, ``benchmarks/results/coldstart.md``, session 6): MAML++ pooled
    NDCG@10 at k <= 5 rose from 1.06x to 1.09x per-user fine-tuning (SASRec) and from 1.08x to
    1.14x (GRU4Rec; FO-MAML 1.18x)."""
    meta_batch_size: int = Field(8, ge=1)
    """Tasks per outer step."""
    outer_lr: float | None = Field(None, gt=0)
    """Outer learning rate: Adam's for MAML, FO-MAML and MAML++ (None: 1e-3); Reptile's step
    size epsilon, with plain SGD (None: 1.0, the paper's; the Adam rate 1e-3 moved the weights
    by 3e-4 of their norm in three meta-epochs, so "Reptile" measured per-user fine-tuning)."""
    seed: int = 0
    """Seeds task sampling, support batches, the outer loop and the loss network's init."""
    device: str = "cpu"
    """Device of meta-training and adaptation."""
    adapt_when_scoring: bool = True
    """Adapt to each history before scoring (False: score with the meta-learned weights as
    they are -- how Reptile's source pre-training is validated, since the target fine-tunes
    them afterwards)."""

    def model_post_init(self, _context: Any) -> None:
        if any(k < 2 for k in self.train_shots) or not self.train_shots:
            raise ConfigError(
                f"meta train_shots: expected support sizes >= 2, found {list(self.train_shots)}"
            )
        # parts that could never learn under these settings were saved and reported as learned
        first_order_only = self.algorithm in ("fomaml", "reptile") or (
            self.algorithm == "mamlpp" and self.first_order_epochs >= self.meta_epochs > 0
        )
        if self.adaptive_loss and first_order_only:
            why = (
                f"MAML++ stays first order for all {self.meta_epochs} meta-epochs "
                f"(first_order_epochs {self.first_order_epochs})"
                if self.algorithm == "mamlpp"
                else f"{self.algorithm} takes first-order inner steps"
            )
            raise ConfigError(
                f"meta adaptive_loss: the loss network learns through second-order gradients "
                f"only, and {why}: use maml or mamlpp (with first_order_epochs < meta_epochs)"
            )
        if self.algorithm == "reptile" and self.learn_inner_lr:
            raise ConfigError(
                "meta learn_inner_lr: Reptile's update does not reach the inner learning rates "
                "(they would stay as set): use maml, fomaml or mamlpp to learn them"
            )

    @property
    def outer_rate(self) -> float:
        """``outer_lr``, or its default for the algorithm (Reptile 1.0, the others 1e-3)."""
        if self.outer_lr is not None:
            return float(self.outer_lr)
        return 1.0 if self.algorithm == "reptile" else 1e-3

    @property
    def learns_lr(self) -> bool:
        return self.algorithm == "mamlpp" if self.learn_inner_lr is None else self.learn_inner_lr

    @property
    def uses_msl(self) -> bool:
        return self.algorithm == "mamlpp" if self.multi_step_loss is None else self.multi_step_loss

    def first_order(self, epoch: int) -> bool:
        """Whether inner steps are first order during (0-based) ``epoch``."""
        if self.algorithm in ("fomaml", "reptile", "finetune"):
            return True
        if self.algorithm == "mamlpp":
            return epoch < self.first_order_epochs
        return False

    def step_weights(self, epoch: int) -> np.ndarray:
        """Query-loss weight of each inner step during (0-based) ``epoch``."""
        n = max(self.inner_steps, 1)
        if not self.uses_msl or n == 1 or epoch >= self.msl_epochs:
            w = np.zeros(n)
            w[-1] = 1.0
            return w
        return step_weights(n, epoch, self.msl_epochs)


def step_weights(n_steps: int, epoch: int, msl_epochs: int) -> np.ndarray:
    """MAML++'s multi-step loss weights (Antoniou et al.'s code): uniform at epoch 0; every
    epoch the first ``n - 1`` lose ``1 / n / msl_epochs`` (down to ``0.03 / n``) and the last
    gains what they lose (up to ``1 - (n - 1) * 0.03 / n``)."""
    w = np.full(n_steps, 1.0 / n_steps)
    decay = 1.0 / n_steps / msl_epochs
    floor = 0.03 / n_steps
    w[:-1] = np.maximum(w[:-1] - epoch * decay, floor)
    w[-1] = min(w[-1] + epoch * (n_steps - 1) * decay, 1.0 - (n_steps - 1) * floor)
    return w


FROZEN_KEY = "frozen"
"""``meta.json``'s list of the base's parameters that the meta-learner leaves alone (those
without ``requires_grad`` when saved; absent: none)."""


def _key(name: str) -> str:
    return name.replace(".", "__")


class MetaNet(nn.Module):
    """The model's network plus the meta-learned extras (inner rates, loss network)."""

    def __init__(self, base: nn.Module, cfg: MetaConfig) -> None:
        super().__init__()
        self.base = base
        self.lrs = nn.ParameterDict()
        if cfg.learns_lr and cfg.inner_steps:
            for name in trainable(base):
                self.lrs[_key(name)] = nn.Parameter(torch.full((cfg.inner_steps,), cfg.inner_lr))
        self.loss_net = None
        if cfg.adaptive_loss:
            # its hidden layer's random init is drawn from the config's seed (the global torch
            # generator left as it was): drawn from the global state, the learned loss -- and so
            # every MAML++ run with it -- depended on what had run before in the process
            with isolated(cfg.seed):
                self.loss_net = LossNetwork(cfg.loss_hidden)

    def extras(self) -> dict[str, torch.Tensor]:
        """The meta-learned tensors that are not the model's weights."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("base.")}


class MetaModel(Recommender):
    """A meta-learner over a fitted neural model (module docstring); trained by
    :func:`warmrec.training.loop.train` (:func:`meta_train`), scored by :func:`warmrec.evaluate`
    and ``recommend`` after adapting to each history."""

    Config = MetaConfig

    def __init__(
        self,
        base: Any,
        config: MetaConfig | Mapping[str, Any] | None = None,
        *,
        tasks: TaskSet | None = None,
        episodes: Episodes | None = None,
        iterations_per_epoch: int = 0,
        iterations: int = 0,
        **kw: Any,
    ):
        """``config`` (and ``kw``): :class:`MetaConfig`. Meta-training draws its tasks from
        ``tasks`` (default: the training data's sequences with enough events), cut by
        ``episodes`` (default :meth:`episodes`); ``iterations_per_epoch`` > 0 makes an epoch that
        many meta-batches drawn at random, ``iterations`` the most in all (Reptile's sampling;
        :class:`~warmrec.meta.tasks.TaskStream`)."""
        if getattr(base, "net", None) is None:
            raise ModelError(
                f"model '{getattr(base, 'name', base)}': meta-learning needs a fitted neural model"
            )
        self.config = build_config(MetaConfig, config, **kw)
        self.base = base
        self.net = MetaNet(base.net, self.config)
        self.name = f"{self.config.algorithm}[{base.name}]"
        self.vocab = base.vocab
        self.user_vocab = getattr(base, "user_vocab", None)
        self.meta = base.meta  # the base's record (data, run, item counts): one object
        self.device = torch.device(self.config.device)
        self.tasks = tasks
        self._episodes = episodes
        self.iterations_per_epoch, self.iterations = iterations_per_epoch, iterations
        self.epoch = 0
        self.train_result = None
        self.last_stats: dict[str, float] = {}
        self.step_stats: list[dict[str, float]] = []
        """``last_stats`` of every meta-iteration since the list was last emptied."""
        self.item_counts: torch.Tensor | None = None
        """Training counts per item (the loss's ``prepare`` input; saved for adaptation)."""
        if getattr(base, "loss_fn", None) is None and hasattr(base, "prepare"):
            counts = base.meta.item_counts if base.meta.item_counts else None
            self.item_counts = torch.as_tensor(
                counts if counts is not None else np.ones(len(base.vocab)), dtype=torch.float64
            )
            base.prepare(_Counts(self.item_counts.numpy()))

    def fit(self, train: SequenceDataset, valid: Any = None) -> MetaModel:
        raise ModelError(
            f"model '{self.name}': a meta-learner is trained with warmrec.meta.meta_train(base, "
            "train, config), not fit()"
        )

    # -- what the training loop uses ------------------------------------------------------
    @property
    def history_len(self) -> int:
        return self.base.history_len

    def to(self, device: torch.device | str) -> MetaModel:
        self.device = torch.device(device)
        self.base.to(self.device)
        self.net.to(self.device)
        return self

    def prepare(self, train: SequenceDataset) -> None:
        self.base.prepare(train)
        self.item_counts = torch.as_tensor(train.item_counts(), dtype=torch.float64)

    def episodes(self) -> Episodes:
        """How a meta-training episode is cut: the ``episodes`` given, else the config's
        ``train_shots``, ``n_query``, sub-windows and ``max_seq_len``."""
        if self._episodes is not None:
            return self._episodes
        c = self.config
        return Episodes(
            shots=tuple(c.train_shots),
            n_query=c.n_query,
            n_windows=c.n_support_windows,
            min_window=c.min_window,
            max_len=c.max_seq_len,
        )

    def training_data(self, train: SequenceDataset) -> TaskStream:
        source: TaskSet | SequenceDataset = train
        if self.tasks is not None:
            if len(self.tasks.dataset.vocab) != len(train.vocab):
                raise ModelError(
                    f"model '{self.name}': the tasks are built on a different vocabulary than "
                    "the training data"
                )
            source = self.tasks
        return TaskStream(self, source, per_epoch=self.iterations_per_epoch, total=self.iterations)

    def optimizer_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        return [{"params": list(self.net.parameters()), "weight_decay": weight_decay}]

    def _lr(self, step: int) -> float | dict[str, torch.Tensor]:
        if len(self.net.lrs):
            return {n: self.net.lrs[_key(n)][step] for n in trainable(self.net.base)}
        return self.config.inner_lr

    def inner_loss(
        self, learner: MetaLearner, batch: dict[str, torch.Tensor], step: int
    ) -> torch.Tensor:
        self.net.base.train()
        if self.net.loss_net is not None:
            losses = learner.example_losses(batch)
            return self.net.loss_net(losses, step, self.config.inner_steps)
        return learner.loss(batch)

    def query_loss(self, learner: MetaLearner, task: Task) -> torch.Tensor:
        """The meta-objective of one task under the learner's fast weights (next-item
        cross-entropy of the query items; subclasses change it, e.g. rating MSE)."""
        return learner.query_loss(task.hist, task.targets)

    def run_task(
        self,
        task: Task,
        first_order: bool,
        weights: np.ndarray | None = None,
        inner_losses: list[float] | None = None,
    ) -> tuple[MetaLearner, torch.Tensor | None]:
        """Adapt to the task's support; with ``weights``, also the weighted query loss after
        each step (the query is used for nothing else). ``inner_losses`` collects the value of
        every inner loss."""
        learner = MetaLearner(self.base, first_order)
        meta_loss = None
        if weights is not None and not task.support:
            self.net.base.eval()
            meta_loss = self.query_loss(learner, task)
        for step, batch in enumerate(task.support):
            loss = self.inner_loss(learner, batch, step)
            if inner_losses is not None:
                inner_losses.append(float(loss.detach()))
            learner.adapt(loss, self._lr(step), grad_clip=self.config.inner_grad_clip)
            if weights is not None and (weights[step] > 0 or step == len(task.support) - 1):
                w = (
                    float(weights[step])
                    if step < len(task.support) - 1
                    else float(weights[step:].sum())
                )
                if w > 0:
                    self.net.base.eval()
                    q = w * self.query_loss(learner, task)
                    meta_loss = q if meta_loss is None else meta_loss + q
        return learner, meta_loss

    def training_step(self, tasks: list[Task]) -> torch.Tensor:
        cfg = self.config
        if cfg.algorithm == "finetune":
            raise ModelError("algorithm 'finetune' has no meta-training (meta_epochs must be 0)")
        fo = cfg.first_order(self.epoch)
        total = None
        q_losses: list[float] = []
        inner: list[float] = []
        for task in tasks:
            task = task.to(self.device)
            if cfg.algorithm == "reptile":
                # the surrogate whose gradient is theta - phi: SGD on it at epsilon is Reptile's
                # theta += epsilon * mean_i(phi_i - theta)
                learner, _ = self.run_task(task, True, inner_losses=inner)
                loss = sum(
                    0.5 * ((p - learner.params[n].detach()) ** 2).sum()
                    for n, p in trainable(self.net.base).items()
                )
            else:
                _, loss = self.run_task(task, fo, cfg.step_weights(self.epoch), inner)
                q_losses.append(float(loss.detach()))
            total = loss if total is None else total + loss
        self.last_stats = {
            "query_loss": float(np.mean(q_losses)) if q_losses else math.nan,
            "inner_loss": float(np.mean(inner)) if inner else math.nan,
        }
        self.step_stats.append(self.last_stats)
        return total / len(tasks)

    # -- scoring: adapt to each history, then score --------------------------------------------
    def adapt(self, history: np.ndarray, rng: np.random.Generator | None = None) -> MetaLearner:
        """A learner adapted to one history (its revealed events, oldest first)."""
        rng = rng or np.random.default_rng(self.config.seed)
        items = np.asarray(history, dtype=np.int64)
        items = items[items > 0]
        # adaptation takes gradients: leave inference mode (a server scores under it)
        with torch.inference_mode(False), torch.enable_grad():
            sup = support_batches(
                self.base, items, self.config.inner_steps, rng, self.vocab, "user_id"
            )
            sup = [_to(b, self.device) for b in sup]
            learner, _ = self.run_task(Task(sup, None, None), True)  # type: ignore[arg-type]
        return learner

    def score(self, batch: Batch) -> torch.Tensor:
        """Scores after adapting to each history separately. Each adaptation starts from the
        config's ``seed`` (numpy and torch: dropout in the inner steps), so a history's scores
        depend on nothing but the weights, the config and the history -- not on the other rows
        of the batch nor on earlier calls (the global torch generator is left as it was)."""
        if not self.config.adapt_when_scoring:
            self.base.net.eval()
            with torch.no_grad():
                return self.base.score(batch)
        rows = []
        batch = batch.to(self.device)
        forked = [self.device] if self.device.type == "cuda" else []
        for i in range(len(batch)):
            one = Batch(
                batch.items[i : i + 1], None if batch.users is None else batch.users[i : i + 1]
            )
            with isolated(self.config.seed, forked):
                rng = np.random.default_rng(self.config.seed)
                learner = self.adapt(one.items[0].cpu().numpy(), rng)
            self.net.base.eval()
            with torch.no_grad():
                rows.append(learner.scores(one))
        return torch.cat(rows).float().cpu()

    # -- files ------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """A directory of kind ``"meta"``: the base model's files plus ``meta.safetensors``
        and ``meta.json`` (:func:`warmrec.artifacts.write_meta_files`; with the names of the
        base's frozen parameters, which adaptation leaves alone, under ``frozen``)."""
        from warmrec.artifacts import save_model, write_meta_files

        extras = self.net.extras()
        if self.item_counts is not None:
            extras["item_counts"] = self.item_counts
        cfg = config_dict(self.config)
        frozen = [n for n, p in self.net.base.named_parameters() if not p.requires_grad]
        if frozen:  # what adaptation leaves alone: a model file does not keep requires_grad
            cfg[FROZEN_KEY] = frozen
        return save_model(
            self.base, path, extra=lambda tmp: write_meta_files(tmp, cfg, extras), kind="meta"
        )

    @classmethod
    def load(cls, path: str | Path, **overrides: Any) -> MetaModel:
        """Read a directory written by :meth:`save` (``overrides`` change e.g. ``inner_lr`` --
        not the shapes of learned tensors: ``inner_steps`` with learned per-step rates,
        ``loss_hidden``, refused as a :class:`ModelError` naming the field). The model loads on
        the CPU, as every warmrec model does, whatever ``device`` it was meta-trained on;
        ``device="cuda"`` moves it there."""
        from warmrec.artifacts import (
            META_CONFIG_FILE,
            META_WEIGHTS_FILE,
            load_base_model,
            read_meta_files,
        )

        p = Path(path)
        cfg, state = read_meta_files(p)
        frozen = cfg.pop(FROZEN_KEY, [])
        base = load_base_model(p)
        # the parameters the meta-learner did not adapt stay so: loaded trainable, a frozen
        # part (a transferred model's encoder under adapters or LoRA) was adapted to every
        # history when scoring, and MAML++'s rates for it were missing from the file
        params = dict(base.net.named_parameters())
        unknown = [n for n in frozen if not isinstance(n, str) or n not in params]
        if not isinstance(frozen, list) or unknown:
            raise ModelError(
                f"{p / META_CONFIG_FILE}: {FROZEN_KEY} names no parameter of the "
                f"'{base.name}' model ({unknown[:3] if isinstance(frozen, list) else frozen!r})"
            )
        for name in frozen:
            params[name].requires_grad_(False)
        counts = state.pop("item_counts", None)
        if counts is not None:
            # checked as config.json's meta.item_counts is (meta.safetensors has no checksum):
            # they rank the popularity fallback and weigh the adaptation loss
            n, c = len(base.vocab), counts.double()
            if c.ndim != 1 or len(c) != n or not bool(torch.isfinite(c).all()):
                found = f"shape {list(c.shape)}" if c.ndim != 1 or len(c) != n else "NaN or inf"
            elif bool(((c < 0) | (c >= 2**63)).any()):
                found = "a count out of range (negative or beyond 2**63)"
            else:
                found = None
            if found is not None:
                raise ModelError(
                    f"{p / META_WEIGHTS_FILE}: item_counts: found {found}, expected {n} "
                    "non-negative counts (one per item index, padding included; changed after "
                    "saving?)"
                )
            base.meta.item_counts = counts.to(torch.int64).tolist()
        # the saved device is where it was meta-trained: the weights load on the CPU (a model
        # meta-trained on "cuda" was scored there with its net on the CPU, and failed)
        settings = {**cfg, "device": "cpu", **overrides}
        try:
            probe = build_config(cls.Config, settings)
        except ConfigError as e:
            raise ModelError(f"{p / META_CONFIG_FILE}: {e}") from None
        # the learned tensors' shapes, on the meta device (no memory): an inner_steps or
        # loss_hidden edited to a huge value is one error below, not an allocation
        want = build_on_meta(
            lambda: MetaNet(base.net, probe),
            len(state),
            f"{p / META_CONFIG_FILE}: the '{probe.algorithm}' meta-learner",
            probe,
        ).extras()
        for k, v in state.items():
            if k in want and tuple(want[k].shape) != tuple(v.shape):
                # an override that reshapes a learned tensor raised torch's size-mismatch dump
                field = "loss_hidden" if k.startswith("loss_net.") else "inner_steps"
                saved = cfg.get(field, MetaConfig.model_fields[field].default)
                if field not in overrides:  # meta.json itself does not fit the tensors
                    raise ModelError(
                        f"{p / META_CONFIG_FILE}: field '{field}': found {saved} (shape "
                        f"{list(want[k].shape)} for {k}), {p / META_WEIGHTS_FILE} holds shape "
                        f"{list(v.shape)} (edited after saving?)"
                    )
                raise ModelError(
                    f"{p / 'meta.safetensors'}: {k} was learned with {field} = {saved} (shape "
                    f"{list(v.shape)}), found {field} = {getattr(probe, field)} (shape "
                    f"{list(want[k].shape)}): leave {field} as saved"
                )
        model = cls(base, settings)
        missing, unexpected = model.net.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("base.")]
        if missing or unexpected:
            raise ModelError(
                f"{p / 'meta.safetensors'}: does not fit {p / META_CONFIG_FILE} (missing "
                f"{missing[:5]}, unexpected {list(unexpected)[:5]})"
            )
        if model.device.type != "cpu":
            model.to(model.device)
        model.net.eval()
        return model


class _Counts:
    """What a model's ``prepare`` reads of its training data: the item counts."""

    def __init__(self, counts: np.ndarray) -> None:
        self.counts = np.asarray(counts, dtype=np.float64)
        self.n_items = len(self.counts)

    def item_counts(self) -> np.ndarray:
        return self.counts


_to = to_device  # the name :mod:`warmrec.meta.rating` and older code import


def meta_train(
    base: Any,
    train: SequenceDataset,
    config: MetaConfig | Mapping[str, Any] | None = None,
    *,
    cls: type[MetaModel] | None = None,
    valid: Any = None,
    valid_score: Callable[[Any], float] | None = None,
    **overrides: Any,
) -> MetaModel:
    """Meta-train a copy of ``base`` (a fitted neural model; left unchanged) on the users
    (sequences) of ``train`` through :func:`warmrec.training.loop.train`; returns the
    :class:`MetaModel` (or ``cls``, e.g. :class:`~warmrec.meta.rating.RatingMetaModel` with
    ``train`` a :class:`~warmrec.meta.rating.RatingData`). ``valid``: meta-valid users' examples
    (an :class:`~warmrec.data.dataset.EvalSet`): the loop scores the adapted model on them after
    every meta-epoch and keeps the best, so the number of meta-epochs (up to ``meta_epochs``) is
    chosen on meta-valid users, never on meta-test ones. ``valid_score`` does the same for a
    task without a ranking (e.g. ratings): the meta-model -> a score, higher better
    (:func:`fit_meta`)."""
    import copy

    meta = (cls or MetaModel)(copy.deepcopy(base), config, **overrides)
    cfg = meta.config
    if cfg.meta_epochs == 0 or cfg.algorithm == "finetune" or cfg.inner_steps == 0:
        return meta
    fit_meta(meta, train, valid, valid_score=valid_score)
    return meta


def outer_trainer(cfg: MetaConfig) -> dict[str, Any]:
    """The outer loop's :class:`~warmrec.training.loop.TrainerConfig` settings for ``cfg``:
    ``meta_epochs`` epochs of ``meta_batch_size`` tasks at ``outer_lr``; Reptile takes plain SGD
    (its surrogate's gradient is ``theta - phi``), the others Adam, MAML++ a cosine schedule."""
    return {
        "epochs": cfg.meta_epochs,
        "batch_size": cfg.meta_batch_size,
        "lr": cfg.outer_rate,
        "optimizer": "sgd" if cfg.algorithm == "reptile" else "adam",
        "schedule": "cosine" if cfg.algorithm == "mamlpp" else "none",
        "warmup_steps": 0,
        "seed": cfg.seed,
        "device": cfg.device,
        "progress": False,
    }


def fit_meta(
    meta: MetaModel,
    train: Any,
    valid: Any = None,
    trainer: Mapping[str, Any] | None = None,
    valid_score: Callable[[Any], float] | None = None,
) -> Any:
    """Train ``meta`` in place through :func:`warmrec.training.loop.train` (the only
    ``backward()``): :func:`outer_trainer` settings updated by ``trainer``; with ``valid`` the
    loop validates ``meta`` (its ``score``) and keeps the best weights. Each epoch's record gets
    the mean of the meta-iterations' ``step_stats`` and (``"step_stats"``) the list. Returns the loop's result (also
    ``meta.train_result``); the net ends in eval mode. ``valid_score`` (the meta-model -> a
    score, higher better; e.g. minus the meta-valid users' RMSE) is called after every epoch
    (``valid_score`` in the epoch's record) and the weights of its best epoch are kept
    (``best_epoch`` and ``best_metric`` of the result).

    With MAML++'s learned loss (``adaptive_loss``) only the epochs after the first-order ones
    can be kept: the loss network learns through second-order gradients alone, so an epoch
    within ``first_order_epochs`` carries it untrained (every example weighing 1), and keeping
    one had reported MAML++ with a fixed loss as the learned loss. ``adaptive_loss_trained``
    in the result's ``extra`` says whether the kept epoch trained it. Early stopping on
    ``valid`` then counts its ``patience`` from the first of those epochs (the loop's, counting
    from the first epoch, stopped on a plateau within the first-order epochs, before the loss
    network had a gradient)."""
    from warmrec.training.loop import TrainerConfig, parse_metric
    from warmrec.training.loop import train as run_training

    cfg = meta.config
    first = cfg.first_order_epochs + 1 if cfg.adaptive_loss and cfg.algorithm == "mamlpp" else 1
    settings = {**outer_trainer(cfg), **dict(trainer or {})}
    loop_cfg = TrainerConfig(**settings)
    key = f"valid_{parse_metric(loop_cfg.valid_metric).label}"
    # the loop's early stopping counted the first-order epochs too: with first_order_epochs >=
    # patience + 1 a validation plateau there stopped training before the loss network had a
    # gradient. Here the patience runs from the first epoch that can be kept.
    patience = 0
    if first > 1 and valid is not None and valid_score is None:
        patience, settings["patience"] = loop_cfg.patience, 0

    def on_epoch(epoch: int, record: dict[str, Any], model: Any) -> bool:
        model.epoch = epoch  # epochs completed: the schedules' next (0-based) epoch
        for name in model.step_stats[0] if model.step_stats else ():
            values = [s[name] for s in model.step_stats if math.isfinite(s[name])]
            if values:
                record[name] = float(np.mean(values))
        record["step_stats"] = list(model.step_stats)
        model.step_stats.clear()
        value = None
        if valid_score is not None:
            value = float(valid_score(model))
            record["valid_score"] = value
        elif first > 1 and key in record:  # the loop's own choice could keep an earlier epoch
            value = float(record[key])
        if value is None or epoch < first:
            return False
        if best["epoch"] == 0 or value > best["score"]:
            best.update(epoch=epoch, score=value, bad=0)
            best["weights"] = {k: v.detach().clone() for k, v in model.net.state_dict().items()}
        else:
            best["bad"] += 1
        return bool(patience and best["bad"] >= patience)  # True: the loop stops

    best: dict[str, Any] = {"epoch": 0, "score": -math.inf, "weights": None, "bad": 0}
    meta.epoch = 0
    meta.step_stats.clear()
    meta.train_result = run_training(
        meta, train, valid, settings, fresh=False, callbacks=[on_epoch]
    )
    if cfg.adaptive_loss:
        kept = best["epoch"] if best["weights"] is not None else meta.train_result.best_epoch
        meta.train_result.extra["adaptive_loss_trained"] = bool(kept >= first)
    if best["weights"] is not None:
        meta.net.load_state_dict(best["weights"])
        meta.train_result.best_epoch = best["epoch"]
        meta.train_result.best_metric = best["score"]
    meta.net.eval()
    return meta.train_result
