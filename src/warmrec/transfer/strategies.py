"""Transfer strategies: which parameters of a NeuralRecommender train, and at which learning rate.

A strategy is applied to a model that already has its network (e.g. a target model made by
:func:`warmrec.transfer.transfer`), before the one training loop runs with ``fresh=False``. It
sets ``requires_grad`` (the loop's optimizer leaves frozen parameters out, so they stay
bit-identical) and, for per-layer rates, sets the model's ``lr_scales`` (read by its
``optimizer_groups``). It never replaces a method or adds an attribute to the model: adapters
are wrapper modules inside the net (:mod:`warmrec.models.adapters`).

Parameters are sorted into **roles** by the module that holds them (:func:`parameter_roles`):
``"item"`` (every :class:`~warmrec.models.layers.ItemEmbedding` -- input table, untied output
table, output bias -- and a root ``input`` embedding such as GRU4Rec's untied one),
``"position"`` (:class:`~warmrec.models.layers.PositionalEmbedding`), ``"feature"``
(:class:`~warmrec.models.features.FeatureEmbedder` side-feature tables), ``"user"`` (a root
``user`` embedding, SSE-PT), ``"adapter"`` (adapter/LoRA layers), ``"domain"`` (the
:class:`~warmrec.models.layers.SeenItemBias` scalar: how the domain treats repeats, and a
multi-source model's :class:`~warmrec.models.layers.DomainToken` vector; both train under every
strategy) and ``"encoder"`` (everything else: transformer/GRU blocks, norms, heads).

Strategies (:data:`STRATEGIES`):

- ``"scratch"`` -- a new network with random init, everything trains (the baseline);
- ``"finetune"`` -- everything trains;
- ``"freeze"`` -- parameters matching the ``freeze`` glob patterns (``fnmatch`` on names such as
  ``encoder.blocks.0.qkv.weight``) are frozen;
- ``"freeze_embeddings"`` -- item, position and feature tables frozen, the rest trains (with a
  tied output layer the output is the frozen item table);
- ``"freeze_encoder"`` -- the reverse: only item, position, feature and user tables train;
- ``"adapters"`` -- bottleneck adapters are injected (:mod:`warmrec.models.adapters`); only
  they, the item tables (input/output/bias) and user tables (target users are new) train;
- ``"lora"`` -- the same with LoRA on the attention projections;
- ``"discriminative"`` -- everything trains, at ``lr * lr_decay ** depth`` where ``depth`` counts
  layers from the top: the top block and the head (final norm, attention pooling, MLP) have
  depth 0, block ``i`` of ``L`` has ``L - 1 - i``, the embeddings (and SASRec's embedding
  LayerNorm ``emb_norm``) ``L`` (ULMFiT's
  discriminative fine-tuning). Item and user tables are new in a transferred model, so by
  default (``new_tables_full_lr``) they train at the full rate; positions and feature tables
  take the embedding depth;
- ``"zeroshot"`` -- nothing trains: every parameter is frozen (``warmrec.transfer.transfer``
  then skips the training loop; with a text-aware source the target catalogue is ranked by its
  item text through the source's encoder and adaptor, with no target interaction; by default
  the adaptor's whitening statistics are first re-fitted on the target's item text,
  ``refit_whitening``).

For every strategy ``train`` patterns force parameters to train and extra ``freeze`` patterns
freeze them (``train`` wins).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatch
from typing import Any, Literal, get_args

import torch
from pydantic import Field
from torch import nn

from warmrec.config import ConfigModel, build_config
from warmrec.errors import ConfigError, ModelError
from warmrec.models.adapters import (
    AdapterConfig,
    LoraConfig,
    inject_adapters,
    inject_lora,
    is_adapter_name,
)
from warmrec.models.features import FeatureEmbedder
from warmrec.models.layers import (
    DomainToken,
    GRUBlock,
    ItemEmbedding,
    PositionalEmbedding,
    SeenItemBias,
    TransformerBlock,
)
from warmrec.rng import isolated

ROLES = ("item", "position", "feature", "user", "adapter", "domain", "encoder")


StrategyName = Literal[
    "scratch",
    "finetune",
    "freeze",
    "freeze_embeddings",
    "freeze_encoder",
    "adapters",
    "lora",
    "discriminative",
    "zeroshot",
]
STRATEGIES: tuple[str, ...] = get_args(StrategyName)


class StrategyOptions(ConfigModel):
    """Options of :func:`apply_strategy` (unknown keys are rejected)."""

    freeze: tuple[str, ...] = ()
    """Glob patterns of parameter names to freeze (strategy ``"freeze"``)."""
    train: tuple[str, ...] = ()
    """Glob patterns kept trainable whatever else freezes them (``train`` wins)."""
    lr_decay: float = Field(0.5, gt=0, le=1)
    """``"discriminative"``: each layer further from the output gets ``lr_decay`` times the
    learning rate of the layer above."""
    new_tables_full_lr: bool = True
    """``"discriminative"``: newly initialised tables train at the full learning rate."""
    adapter: AdapterConfig = Field(default_factory=AdapterConfig)
    """Bottleneck adapter settings (strategy ``"adapters"``)."""
    lora: LoraConfig = Field(default_factory=LoraConfig)
    """LoRA settings (strategy ``"lora"``)."""
    seed: int = Field(0, ge=0, lt=2**63)
    """Seed of adapter and scratch initialisation: an integer in [0, 2**63), as ``train.seed``
    (torch's generators take no larger one)."""


@dataclass
class StrategyReport:
    """What a strategy did: trainable and frozen parameter names, adapted modules, lr scales."""

    strategy: str
    trainable: list[str]
    frozen: list[str]
    injected: list[str] = field(default_factory=list)
    lr_scales: dict[str, float] = field(default_factory=dict)


# -- roles and depths ----------------------------------------------------------------------------
def _module_roles(net: nn.Module) -> dict[str, str]:
    roles: dict[str, str] = {}
    for name, mod in net.named_modules():
        if isinstance(mod, ItemEmbedding):
            roles[name] = "item"
        elif isinstance(mod, PositionalEmbedding):
            roles[name] = "position"
        elif isinstance(mod, FeatureEmbedder):
            roles[name] = "feature"
        elif isinstance(mod, (SeenItemBias, DomainToken)):
            roles[name] = "domain"
        elif name == "input" and isinstance(mod, nn.Embedding):
            roles[name] = "item"
        elif name == "user" and isinstance(mod, nn.Embedding):
            roles[name] = "user"
    return roles


def parameter_roles(net: nn.Module) -> dict[str, str]:
    """``{parameter name: role}`` for every parameter of ``net`` (see the module docstring)."""
    mods = _module_roles(net)
    out = {}
    for name, _ in net.named_parameters():
        if is_adapter_name(name):
            out[name] = "adapter"
            continue
        role = "encoder"
        for prefix, r in mods.items():
            if name.startswith(prefix + "."):
                role = r
                break
        out[name] = role
    return out


def role_patterns(net: nn.Module, roles: tuple[str, ...]) -> list[str]:
    """Glob patterns covering the modules of the given roles (``"item.*"``, ``"pos.*"``...)."""
    return sorted(f"{p}.*" for p, r in _module_roles(net).items() if r in roles)


def layer_depths(net: nn.Module, new_tables_top: bool = True) -> dict[str, int]:
    """``{parameter name: depth from the top}`` used by ``"discriminative"`` (module doc)."""
    blocks: list[tuple[str, int]] = []  # (prefix, GRU layer or -1)
    for name, mod in net.named_modules():
        if isinstance(mod, TransformerBlock):
            blocks.append((name, -1))
        elif isinstance(mod, GRUBlock):
            blocks.extend((f"{name}.gru", k) for k in range(mod.gru.num_layers))
    n = len(blocks)
    roles = parameter_roles(net)
    depths = {}
    for pname, role in roles.items():
        if role in ("item", "user") and new_tables_top:
            depths[pname] = 0
            continue
        if role in ("item", "user", "position", "feature") or pname.startswith("emb_norm."):
            depths[pname] = n
            continue
        depth = 0  # the head / final norm / pooling go with the top block
        for i, (prefix, k) in enumerate(blocks):
            if not pname.startswith(prefix + "."):
                continue
            rest = pname[len(prefix) + 1 :]
            if k < 0 or rest.endswith(f"_l{k}") or rest.startswith(f"adapters.{k}."):
                depth = n - 1 - i
                break
        depths[pname] = depth
    return depths


def layerwise_groups(
    net: nn.Module, weight_decay: float, lr_decay: float, new_tables_top: bool = True
) -> list[dict[str, Any]]:
    """Optimizer groups with ``lr_scale = lr_decay ** depth``; weight decay on matrices only."""
    depths = layer_depths(net, new_tables_top)
    params = dict(net.named_parameters())
    groups: dict[tuple[int, bool], list[torch.Tensor]] = {}
    for name, depth in depths.items():
        p = params[name]
        if p.requires_grad:
            groups.setdefault((depth, p.dim() >= 2), []).append(p)
    return [
        {
            "params": ps,
            "weight_decay": weight_decay if matrix else 0.0,
            "lr_scale": lr_decay**depth,
        }
        for (depth, matrix), ps in sorted(groups.items())
    ]


# -- applying -----------------------------------------------------------------------------------
def _set_trainable(net: nn.Module, frozen_patterns: list[str], train_patterns: tuple) -> None:
    for name, p in net.named_parameters():
        frozen = any(fnmatch(name, pat) for pat in frozen_patterns)
        keep = any(fnmatch(name, pat) for pat in train_patterns)
        p.requires_grad_(keep or not frozen)


def apply_strategy(
    model: Any, strategy: str, options: StrategyOptions | dict[str, Any] | None = None
) -> StrategyReport:
    """Apply ``strategy`` to ``model`` (a NeuralRecommender with a network) in place."""
    if strategy not in STRATEGIES:
        raise ConfigError(
            f"transfer strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}"
        )
    opts = build_config(StrategyOptions, options)
    if strategy == "zeroshot":  # nothing trains: the source as it is, on the target's catalogue
        frozen_all = [n for n, _ in model.net.named_parameters()]
        _set_trainable(model.net, frozen_all, ())
        return StrategyReport(strategy, [], frozen_all)
    if strategy == "freeze" and not opts.freeze:
        raise ConfigError("strategy 'freeze' needs freeze= glob patterns")
    if strategy == "scratch":
        model._check_fitted()
        with isolated(opts.seed):
            model.init_net()
    net = model.net
    if net is None:
        raise ModelError(f"model '{model.name}' has no network: fit, load or transfer it first")
    model.lr_scales = None  # drop an earlier "discriminative" setting
    injected: list[str] = []
    if strategy == "adapters":
        injected = inject_adapters(net, opts.adapter, seed=opts.seed)
    elif strategy == "lora":
        injected = inject_lora(net, opts.lora, seed=opts.seed)
    roles = parameter_roles(net)
    names = [n for n, _ in net.named_parameters()]
    for label, patterns in (("freeze", opts.freeze), ("train", opts.train)):
        idle = [pat for pat in patterns if not any(fnmatch(n, pat) for n in names)]
        if idle:  # a typo would silently make the strategy another (freeze -> finetune)
            shown = ", ".join(names[:12]) + (
                f", ... ({len(names)} in all)" if len(names) > 12 else ""
            )
            raise ConfigError(
                f"strategy option {label}: the pattern(s) {', '.join(map(repr, idle))} match no "
                f"parameter of '{model.name}' (its parameters: {shown})"
            )
    frozen: list[str] = list(opts.freeze)
    if strategy == "freeze_embeddings":
        frozen += role_patterns(net, ("item", "position", "feature"))
    elif strategy == "freeze_encoder":
        keep = {"item", "position", "feature", "user", "domain"}
        frozen += [n for n, r in roles.items() if r not in keep]
    elif strategy in ("adapters", "lora"):
        keep = {"adapter", "item", "user", "domain"}
        frozen += [n for n, r in roles.items() if r not in keep]
    _set_trainable(net, frozen, opts.train)
    report = StrategyReport(
        strategy,
        [n for n, p in net.named_parameters() if p.requires_grad],
        [n for n, p in net.named_parameters() if not p.requires_grad],
        injected,
    )
    if strategy == "discriminative":
        depths = layer_depths(net, opts.new_tables_full_lr)
        report.lr_scales = {n: opts.lr_decay**d for n, d in depths.items()}
        model.lr_scales = dict(report.lr_scales)
    if not report.trainable:
        raise ModelError(f"strategy {strategy!r} left nothing to train")
    return report
