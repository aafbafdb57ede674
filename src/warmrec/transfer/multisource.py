"""Multi-source pre-training: one sequence encoder shared by several source domains.

Catalogues of different sources are disjoint, so what several sources can share is everything
but the item side: :func:`pretrain_multisource` builds one model per domain (the same model class
and config, each bound to its own training data: its own item table and its own seen-item bias,
which learns how the domain treats repeats) and makes them share **one** network for the rest
(SASRec: positions, embedding norm, transformer blocks; GRU4Rec: the GRU). Every table of a
domain's items or users stays with the domain (:data:`DOMAIN_MODULES`: SSE-PT's users, side
features, GRU4Rec's input table). A GRU4Rec with sparse item tables (``sparse_items`` under a
sampled loss) is refused: the one Adam optimizer takes dense gradients. A domain's config may
override item-side keys (``item_repr``, the loss, ``n_negatives``: e.g. a sampled softmax on a
100,000-item source), never the shared shapes.

**Domain token** (``domain_token = true``): each domain's model also gets its own learned vector
(:class:`~warmrec.models.layers.DomainToken`, starting at 0) added to every position's input of
the shared encoder, so the one encoder can learn domain-dependent behaviour (the same history
read differently in two domains). It is added rather than prepended as an extra token: the window
length, the positions, the causal mask and the scoring position stay those of the plain model.
It belongs to the domain (:data:`DOMAIN_MODULES`), so each saved per-domain model carries its
own. Transferred to a new target (``warmrec transfer --from OUT/<domain>``), the target starts
from the anchor domain's vector, or from 0 with ``reset_domain = true`` (as the seen-item bias:
a new domain has no learned offset yet; the MARS benchmarks reset it); either way it trains
under every strategy (role ``"domain"``).

Training (:class:`MultiSourceConfig`):

- ``order = "joint"`` -- every step draws one domain and trains on one batch of it; domain ``k``
  is drawn with probability ``p_k`` proportional to ``n_k ** (1 / temperature)`` where ``n_k``
  is its number of training targets (``sampling = "size"``: temperature 1, proportional to size;
  ``"uniform"``: equal; ``"temperature"``: the given temperature, 2 by default, flattening the
  size differences as in multilingual language-model pre-training);
- ``order = "sequential"`` -- the domains one after the other in the given order, each for its
  share ``p_k`` of the steps and of the time budget (the last domain is the freshest in the
  shared encoder).

One Adam optimizer covers the union of the parameters (each domain's item table only moves on
its own batches); the learning rate warms up and decays (cosine) over all the steps. At the end
each domain's validation set is scored. Each domain's model is a plain model of the registry
(save it, transfer it: :func:`~warmrec.transfer.transfer` takes any of them as a source, its
encoder being the shared one), with ``meta.item_counts`` and ``meta.role = "source"`` set.

Randomness: domain ``k``'s net (0-based) draws its initial weights from torch's global
generators seeded with ``seed + k`` (:func:`warmrec.rng.seeded_global`), and ``seed`` seeds the
numpy generator that draws the domains and orders the batches. The steps (dropout, sampled
negatives) draw from generators of the run's own that continue the global generators' streams
where the nets left them, as a fit of the training loop does (:mod:`warmrec.rng`): a run in a
thread beside other fits gives the weights it gives alone.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from warmrec.artifacts import check_model_target, is_artifact, same_modes
from warmrec.config import ConfigModel, build_config
from warmrec.data.dataset import EvalSet, SequenceDataset
from warmrec.errors import ConfigError, ModelError
from warmrec.io import atomic_dir
from warmrec.models.neural import NeuralRecommender
from warmrec.registry import get_model
from warmrec.rng import FitGenerators, seeded_global, using
from warmrec.training.memory import peak_rss_mb

SUMMARY_FILE = "multisource.json"
"""The summary :func:`run_multisource` writes beside the domain folders."""
DOMAIN_MODULES = ("item", "input", "item_feat", "user", "user_feat", "seen", "domain")
"""Child modules of a network that belong to one domain; every other child is shared: the item
tables (``item``; GRU4Rec's untied input table ``input``), the side-feature tables and codes
(``item_feat``, ``user_feat``: each domain encodes its own values), SSE-PT's user table
(``user``: the domains' users are different people, even where their numbers match), the
seen-item bias and the domain token."""
SHAPE_KEYS = (
    "d",
    "n_layers",
    "n_heads",
    "ffn_dim",
    "max_len",
    "norm_first",
    "emb_norm",
    "domain_token",
)
"""Config keys a domain may not override (they shape the shared network)."""


class MultiSourceConfig(ConfigModel):
    """How several sources train one shared encoder (module docstring)."""

    order: Literal["joint", "sequential"] = "joint"
    """``"joint"``: batches of the domains mixed; ``"sequential"``: one domain after another."""
    sampling: Literal["size", "temperature", "uniform"] = "temperature"
    """How often each domain is drawn (joint) or how long it trains (sequential)."""
    temperature: float = Field(2.0, gt=0)
    """``p_k ~ n_k ** (1 / temperature)`` under ``sampling = "temperature"``."""
    steps: int = Field(2000, ge=1)
    """Optimizer steps in all."""
    time_budget_s: float | None = Field(None, gt=0)
    """Stop after this many seconds of training (None: no limit)."""
    batch_size: int = Field(64, ge=1)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    """L2 weight decay of Adam on the weight matrices (not on biases and norms, as in the
    training loop)."""
    warmup_steps: int = Field(100, ge=0)
    grad_clip: float = Field(1.0, ge=0)
    """Clip the gradient norm of the whole step at this value (0: off)."""
    seed: int = Field(0, ge=0, lt=2**63)
    """Seeds the nets (domain ``k``: ``seed + k``) and the draws: an integer in [0, 2**63), as
    ``train.seed``."""
    num_threads: int | None = Field(None, ge=1)
    """torch threads (None: torch's default)."""
    domain_token: bool = False
    """Give each domain a learned vector added to every position's input of the shared encoder
    (the model's ``domain_token`` option, :class:`~warmrec.models.layers.DomainToken`), kept
    per domain like the item tables (module docstring)."""
    progress: bool | None = None
    """Show a progress bar over the steps (each domain's smoothed loss); None = when stderr is
    a terminal or in a Jupyter notebook (elsewhere, inside
    :func:`~warmrec.training.loop.epoch_lines`, a line per tenth of the steps instead)."""

    @model_validator(mode="after")
    def _temperature_needs_its_sampling(self) -> MultiSourceConfig:
        if "temperature" in self.model_fields_set and self.sampling != "temperature":
            raise ValueError(
                f"temperature {self.temperature} applies to sampling 'temperature' only; "
                f"sampling {self.sampling!r} draws by "
                + ("size (temperature 1)" if self.sampling == "size" else "equal shares")
            )
        return self


@dataclass
class Domain:
    """One source: its name, training data, validation set and config overrides."""

    name: str
    train: SequenceDataset
    valid: EvalSet | None = None
    config: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class MultiSourceResult:
    """The models (one per domain, sharing the encoder) and what training did."""

    models: dict[str, NeuralRecommender]
    probabilities: dict[str, float]
    steps: dict[str, int]
    losses: dict[str, float]
    valid: dict[str, dict[str, float]]
    seconds: float
    peak_rss_mb: float
    shared: list[str]
    config: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        return {
            "domains": list(self.models),
            "probabilities": self.probabilities,
            "steps": self.steps,
            "final_loss": self.losses,
            "valid": self.valid,
            "seconds": round(self.seconds, 2),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "shared_modules": self.shared,
            "config": self.config,
        }


def domain_probabilities(sizes: Mapping[str, int], sampling: str, temperature: float = 2.0):
    """``{domain: p}``: proportional to ``size ** (1 / T)`` (``"size"``: T = 1; ``"uniform"``:
    equal)."""
    if not sizes:
        raise ConfigError("multi-source pre-training: expected at least one domain, found none")
    if sampling == "uniform":
        t = math.inf
    elif sampling == "size":
        t = 1.0
    elif sampling == "temperature":
        t = float(temperature)
    else:
        raise ConfigError(f"sampling: expected size, temperature or uniform, found {sampling!r}")
    w = {k: (1.0 if math.isinf(t) else float(n) ** (1.0 / t)) for k, n in sizes.items()}
    total = sum(w.values())
    return {k: v / total for k, v in w.items()}


def sequential_counts(probabilities: Sequence[float], steps: int) -> list[int]:
    """Each domain's steps of a sequential run: its share ``p_k`` of ``steps`` by largest
    remainder (every domain its whole steps, the left-over steps to the largest fractions,
    earlier domains first on ties): they sum to ``steps`` and none is negative."""
    shares = np.asarray(probabilities, dtype=np.float64) * steps
    counts = np.floor(shares).astype(np.int64)
    left = int(steps - counts.sum())
    if left > 0:
        order = np.argsort(-(shares - counts), kind="stable")
        counts[order[:left]] += 1
    return [int(c) for c in counts]


def build_domain_models(
    model_name: str,
    domains: Sequence[Domain],
    model_config: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> tuple[dict[str, NeuralRecommender], list[str]]:
    """One model per domain, bound to its data, sharing every child module of the first
    domain's network except :data:`DOMAIN_MODULES` -> ``(models, shared child names)``.

    Domain ``i``'s net draws its initial weights from torch's global generators seeded with
    ``seed + i`` (:func:`warmrec.rng.seeded_global`: this thread's alone meanwhile)."""
    names = [d.name for d in domains]
    if len(set(names)) != len(names) or not names:
        raise ConfigError(f"domains: expected distinct names, found {names}")
    base = dict(model_config or {})
    models: dict[str, NeuralRecommender] = {}
    for i, dom in enumerate(domains):
        bad = sorted(k for k in dom.config if k in SHAPE_KEYS and dom.config[k] != base.get(k))
        if bad:
            raise ConfigError(
                f"domain {dom.name!r}: config keys {', '.join(bad)} shape the shared encoder; "
                "set them for all domains in the model config"
            )
        model = get_model(model_name, {**base, **dict(dom.config)})
        if not isinstance(model, NeuralRecommender):
            raise ModelError(f"multi-source pre-training needs a neural model, '{model_name}'")
        with seeded_global(seed + i):
            model.setup_training(dom.train)
        if model.sparse_parameters():
            raise ConfigError(
                f"domain {dom.name!r}: model '{model_name}' looks its item tables up with "
                "sparse gradients (sparse_items with session-parallel training and loss "
                f"{getattr(model.config, 'loss', '?')!r}), which the one Adam optimizer of "
                "multi-source pre-training does not take; set model.sparse_items = false"
            )
        models[dom.name] = model
    first = models[names[0]].net
    shared = [n for n, _ in first.named_children() if n not in DOMAIN_MODULES]
    for name in names[1:]:
        net = models[name].net
        for child in shared:
            mine, theirs = getattr(net, child), getattr(first, child)
            a = {k: v.shape for k, v in mine.state_dict().items()}
            b = {k: v.shape for k, v in theirs.state_dict().items()}
            if a != b:
                raise ModelError(
                    f"domain {name!r}: module {child!r} differs in shape from domain "
                    f"{names[0]!r}'s; it cannot be shared"
                )
            setattr(net, child, theirs)
    return models, shared


def pretrain_multisource(
    model_name: str,
    domains: Sequence[Domain],
    model_config: Mapping[str, Any] | None = None,
    config: MultiSourceConfig | Mapping[str, Any] | None = None,
) -> MultiSourceResult:
    """Pre-train one shared encoder on every domain (module docstring)."""
    from warmrec.evaluation.evaluate import evaluate
    from warmrec.training.loop import decay_groups, lr_factor, optimizer_step
    from warmrec.training.progress import StepProgress
    from warmrec.training.threads import apply_threads

    cfg = build_config(MultiSourceConfig, config)
    if cfg.num_threads:
        apply_threads(cfg.num_threads)
    rng = np.random.default_rng(cfg.seed)
    model_config = dict(model_config or {})
    if cfg.domain_token:
        model_config["domain_token"] = True
    # the nets' initial weights: torch's global generators, this thread's alone meanwhile; the
    # steps then draw from this run's own copy of them, as a fit of the training loop does
    # (warmrec.rng), so that another fit in a thread neither takes nor re-seeds their stream
    with seeded_global(cfg.seed):
        # a model without the option refuses the key (its config names it): no check of our own
        models, shared = build_domain_models(model_name, domains, model_config, cfg.seed)
        names = list(models)
        data = {n: models[n].training_data(d.train) for n, d in zip(names, domains, strict=True)}
        gens = FitGenerators.from_global(*(m.device for m in models.values()))
    sizes = {n: max(int(data[n].n_targets_total), 1) for n in names}
    probs = domain_probabilities(sizes, cfg.sampling, cfg.temperature)

    params: dict[int, torch.Tensor] = {}
    for m in models.values():
        for p in m.net.parameters():
            if p.requires_grad:
                params.setdefault(id(p), p)
    plist = list(params.values())
    # weight decay on matrices only, as every fit: not on biases and norms
    opt = torch.optim.Adam(decay_groups(plist, cfg.weight_decay), lr=cfg.lr)
    warmup = min(cfg.warmup_steps, cfg.steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, cfg.steps, warmup, "cosine")
    )
    iters: dict[str, Any] = {}

    def next_batch(name: str) -> dict[str, torch.Tensor]:
        for _ in range(2):
            it = iters.get(name)
            if it is not None:
                batch = next(it, None)
                if batch is not None:
                    return batch
            iters[name] = iter(data[name].batches(cfg.batch_size, rng))
        raise ModelError(f"domain {name!r}: no training batches (sequences shorter than 2)")

    if cfg.order == "joint":
        schedule = rng.choice(len(names), size=cfg.steps, p=[probs[n] for n in names])
    else:
        counts = sequential_counts([probs[n] for n in names], cfg.steps)
        schedule = np.repeat(np.arange(len(names)), counts)
    for m in models.values():
        m.net.train()
    steps = dict.fromkeys(names, 0)
    ema: dict[str, float] = {}  # each domain's smoothed loss, in the domains' order once set
    # the time budget: all of it for a joint run; domain k's share p_k of it for its phase of a
    # sequential run (so that a budget shorter than the steps still reaches every domain)
    deadline = {n: cfg.time_budget_s for n in names}
    if cfg.time_budget_s and cfg.order == "sequential":
        acc = 0.0
        for n in names:
            acc += probs[n] * cfg.time_budget_s
            deadline[n] = acc
    progress = StepProgress(len(schedule), cfg.progress, "pretrain-multi")
    t0 = time.perf_counter()
    with using(gens):  # the steps draw from this run's own generators
        for k in schedule:
            name = names[int(k)]
            if deadline[name] and time.perf_counter() - t0 >= deadline[name]:
                if cfg.order == "joint":
                    break
                progress.skip()
                continue
            # the loop's one step (training_step -> backward -> clip over this domain's net ->
            # step); the other domains' item tables get no gradient from this batch
            loss = optimizer_step(models[name], next_batch(name), opt, cfg.grad_clip)
            sched.step()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise ModelError(f"domain {name!r}: training loss is {value}; lower the lr")
            if name in ema:
                ema[name] = 0.98 * ema[name] + 0.02 * value
            else:
                ema[name] = value
                ema = {n: ema[n] for n in names if n in ema}
            steps[name] += 1
            progress.step(ema, time.perf_counter() - t0)
    seconds = time.perf_counter() - t0
    progress.close(ema, seconds, sum(steps.values()))
    valid: dict[str, dict[str, float]] = {}
    for dom in domains:
        m = models[dom.name]
        m.net.eval()
        m.meta.role = "source"
        m.meta.item_counts = dom.train.item_counts().astype(np.int64).tolist()
        if dom.valid is not None and len(dom.valid):
            res = evaluate(m, dom.valid, ["hr@10", "ndcg@10"])
            valid[dom.name] = {k: float(v) for k, v in res.summary.items()}
    return MultiSourceResult(
        models, probs, steps, ema, valid, seconds, peak_rss_mb(), shared, cfg.model_dump()
    )


# -- from a run config (``warmrec pretrain-multi``) ---------------------------------------------
def run_multisource(cfg: Mapping[str, Any], out: str | Any) -> dict[str, Any]:
    """Pre-train on the sources of a config and save one model directory per domain under
    ``out`` (``out/<label>``, each a transfer source) with ``out/multisource.json``.

    ``cfg``: ``[model]`` (name and config keys shared by all domains), ``[multi]``
    (:class:`MultiSourceConfig`) and ``[sources.<label>]`` tables, each with ``data`` (as a run's
    ``[data]``), optional ``split`` (as a run's ``[split]``; default ``auto``; ``train_fraction``
    subsamples a large source) and optional ``model`` (item-side overrides for that domain,
    e.g. ``loss = "sampled_ce"``). Returns the summary written to the JSON file.

    ``out`` is written as one unit (:func:`~warmrec.io.atomic_dir`): the domain folders and the
    JSON file in a temporary folder renamed over ``out`` at once, so a run that fails midway
    leaves the earlier output whole. An existing ``out`` must be empty or an earlier output
    (:func:`check_multisource_target`, checked before any training).
    """
    from warmrec.experiments.spec import prepare_run, spec_from_config

    unknown = sorted(set(cfg) - {"model", "multi", "sources"})
    if unknown:
        raise ConfigError(
            f"multi-source config: unknown section(s) {', '.join(unknown)}; valid: model, "
            "multi, sources"
        )
    model = _table(cfg.get("model"), "model")
    name = model.pop("name", None) or "sasrec"
    sources = cfg.get("sources") or {}
    if not isinstance(sources, Mapping) or len(sources) < 1:
        raise ConfigError(
            "multi-source config: expected [sources.<label>] tables (--source LABEL=PATH), "
            f"found {_shown(sources) if sources else 'none'}"
        )
    for label in sources:  # before any training: a label that is no folder name is refused
        _check_label(label)
    check_multisource_target(out)  # and so is an --out that the output would wrongly replace
    domains = []
    for label, src in sources.items():
        src = _table(src, f"sources.{label}")
        bad = sorted(set(src) - {"data", "split", "model"})
        if bad or "data" not in src:
            raise ConfigError(
                f"sources.{label}: expected data (and split, model), found {', '.join(src)}"
            )
        overrides = _table(src.get("model"), f"sources.{label}.model")
        spec = spec_from_config({"data": src["data"], "split": src.get("split") or {}})
        prep = prepare_run(spec)
        domains.append(Domain(str(label), prep.train, prep.valid, overrides))
    res = pretrain_multisource(name, domains, model, cfg.get("multi"))
    info = {"model": name, **res.summary()}
    # one unit: every domain folder and the JSON in one temporary folder, renamed over ``out``
    # at once (a crash midway leaves the earlier output whole, not domains of two runs)
    with atomic_dir(out) as tmp:
        for label, m in res.models.items():
            m.save(tmp / label)
        (tmp / SUMMARY_FILE).write_text(json.dumps(info, indent=2, default=str))
        same_modes(tmp)
    return info


def _shown(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _table(value: Any, where: str) -> dict[str, Any]:
    """A config table (None: empty); anything else is one ConfigError naming ``where``."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"multi-source config: {where}: expected a table of settings, found {_shown(value)}"
        )
    return dict(value)


def _check_label(label: Any) -> None:
    """A source label names its folder under ``out``: a plain folder name, not the summary."""
    text = str(label)
    if (
        not text
        or text in (".", "..")
        or text.startswith(".")
        or any(c in text for c in "/\\\x00")
        or text == SUMMARY_FILE
    ):
        raise ConfigError(
            f"sources: expected a label that names a folder under --out (no '/' or '\\', "
            f"not starting with '.', not {SUMMARY_FILE}), found {text!r}"
        )


def check_multisource_target(path: str | Path) -> None:
    """Refuse an ``out`` that writing the pre-training's output would destroy: the output
    replaces ``out`` as a whole, so an existing folder must be empty or an earlier output
    (model directories and ``multisource.json``)."""
    p = Path(path)
    try:
        if not p.is_dir():
            return
        entries = sorted(p.iterdir())
    except OSError:
        return  # unreadable: the write itself reports it
    for entry in entries:
        if entry.name == SUMMARY_FILE and entry.is_file():
            continue
        if entry.is_dir() and is_artifact(entry):
            try:
                check_model_target(entry)
                continue
            except ConfigError:
                pass
        what = "a folder that is not a model directory" if entry.is_dir() else "a file"
        raise ConfigError(
            f"{p}: refusing to replace it with the pre-trained sources (expected a new folder, "
            f"an empty one or an earlier pretrain-multi output: model directories and "
            f"{SUMMARY_FILE}; found {entry.name!r}, {what})"
        )
