"""Parameter-efficient adaptation: bottleneck adapters and LoRA, injected into a built network.

Shaped like huggingface/peft: each method is a **config** (:class:`AdapterConfig`,
:class:`LoraConfig`), a **layer** (:class:`BottleneckAdapter`, :class:`LoraLayer`) and an
**injector** (:func:`inject_adapters`, :func:`inject_lora`) that finds the blocks of
:mod:`warmrec.models.layers` in any net and attaches the new layers to them.

**Bottleneck adapters** (Houlsby et al., "Parameter-Efficient Transfer Learning for NLP", ICML
2019): ``h + up(act(down(h)))`` with ``up`` initialised to zero, so an adapted net computes
exactly what the base net does until training moves it. Where they go:

- every :class:`~warmrec.models.layers.TransformerBlock`: after the attention output projection
  (``proj``) and after the feed-forward output projection (``ffn[-1]``), i.e. on each sublayer's
  output before its residual addition (and before the block's dropout), as in Houlsby;
- every :class:`~warmrec.models.layers.GRUBlock`: after every GRU layer. A fused multi-layer
  ``nn.GRU`` has no seam between layers, so the adapted GRU runs layer by layer (the same
  weights, through ``torch.func.functional_call`` on a one-layer template) with an adapter on
  each layer's output sequence; the recurrent state itself is never adapted (session-parallel
  training carries it across steps), so the top adapter is applied to the GRU's output
  sequence and, by a hook on the ``GRUBlock``, to the last-state output of
  ``GRUBlock.forward`` (rows without history stay zero).

**LoRA** (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022) on the
attention projections of every transformer block: ``W x + (alpha / r) B A x`` with ``A``
Kaiming-uniform and ``B`` zero. The blocks use one fused ``qkv`` Linear, so ``q``/``k``/``v``
are its three row blocks, each with its own ``(A, B)`` pair (choose them with
``LoraConfig.targets``); ``out`` is ``proj``. :func:`merge_and_unload` folds ``B A`` into the
weights; :func:`unload` removes every adapter and LoRA layer without merging.

How they attach: the new layers become child modules of the module they adapt (``proj.adapter``,
``ffn.3.adapter``, ``gru.adapters.0``, ``qkv.lora``) and act through forward hooks (or, for a
multi-layer GRU, a per-instance ``forward``), so **no base parameter is renamed**: name-pattern
freezing, ``load_state_dict`` of base weights and ``deepcopy``/``functional_call`` keep working.
Adapter weights are every state entry with an ``adapter``, ``adapters`` or ``lora`` name part
(:func:`adapter_state_dict`). :func:`save_adapters` writes them (safetensors + JSON config) and
:func:`load_adapters` puts them back on a base model directory.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Sequence
from fnmatch import fnmatch
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from warmrec.config import ConfigModel, build_config, config_dict
from warmrec.data.vocab import ItemVocab
from warmrec.errors import ModelError
from warmrec.io import atomic_dir
from warmrec.models.layers import GRUBlock, TransformerBlock

ADAPTER_PARTS = ("adapter", "adapters", "lora")
_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "tanh": nn.Tanh}
_LORA_TARGETS = ("q", "k", "v", "out")
ADAPTER_FILE = "adapters.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


# -- configs -------------------------------------------------------------------------------------
class AdapterConfig(ConfigModel):
    """Bottleneck adapters and where to put them."""

    bottleneck: int = Field(16, ge=1)
    """Width of the adapter's bottleneck."""
    activation: Literal["gelu", "relu", "tanh"] = "gelu"
    """Activation inside the adapter."""
    dropout: float = Field(0.0, ge=0, lt=1)
    """Dropout inside the adapter."""
    attention: bool = True
    """Adapt the attention sublayers of transformer blocks."""
    ffn: bool = True
    """Adapt the feed-forward sublayers of transformer blocks."""
    gru: bool = True
    """Adapt GRU layers."""


class LoraConfig(ConfigModel):
    """LoRA of rank ``r`` and scale ``alpha / r`` on attention projections."""

    r: int = Field(8, ge=1)
    """Rank of the update ``B A``."""
    alpha: float = 16.0
    """Scale numerator: the update is scaled by ``alpha / r``."""
    dropout: float = Field(0.0, ge=0, lt=1)
    """Dropout on the LoRA input."""
    targets: Annotated[tuple[Literal["q", "k", "v", "out"], ...], Field(min_length=1)] = (
        _LORA_TARGETS
    )
    """Attention projections adapted: any of ``q``, ``k``, ``v``, ``out``."""

    @property
    def scaling(self) -> float:
        return self.alpha / self.r


# -- layers --------------------------------------------------------------------------------------
class BottleneckAdapter(nn.Module):
    """``h + up(dropout(act(down(h))))``; ``up`` starts at zero (identity at init)."""

    def __init__(
        self,
        dim: int,
        bottleneck: int,
        activation: str = "gelu",
        dropout: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.act = _ACTIVATIONS[activation]()
        self.drop = nn.Dropout(dropout)
        self.up = nn.Linear(bottleneck, dim)
        with torch.no_grad():
            nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5), generator=generator)
            self.down.bias.zero_()
            self.up.weight.zero_()
            self.up.bias.zero_()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(self.drop(self.act(self.down(h))))


class LoraLayer(nn.Module):
    """Low-rank update of a Linear ``[out, in]`` on row blocks ``slices`` (``(start, stop)``).

    Block ``s`` gets ``B_s A_s`` (``A_s [r, in]``, ``B_s [stop - start, r]``, ``B`` zero at init);
    the layer adds ``scaling * (dropout(x) @ delta_weight().T)`` to the base output.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        slices: Sequence[tuple[int, int]],
        r: int,
        alpha: float,
        dropout: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        widths = {b - a for a, b in slices}
        if len(widths) != 1:
            raise ModelError(f"LoRA slices must have one width, found {sorted(widths)}")
        self.in_features, self.out_features = in_features, out_features
        self.slices = [tuple(s) for s in slices]
        self.scaling = alpha / r
        self.lora_A = nn.Parameter(torch.empty(len(slices), r, in_features))
        self.lora_B = nn.Parameter(torch.zeros(len(slices), widths.pop(), r))
        with torch.no_grad():
            for s in range(len(slices)):
                nn.init.kaiming_uniform_(self.lora_A[s], a=math.sqrt(5), generator=generator)
        self.drop = nn.Dropout(dropout)

    def delta_weight(self) -> torch.Tensor:
        """``[out, in]``: the row blocks' ``B_s A_s`` (without the scaling), zero elsewhere."""
        blocks = torch.bmm(self.lora_B, self.lora_A)  # [S, w, in]
        parts, pos = [], 0
        for (a, b), blk in zip(self.slices, blocks):
            if a > pos:
                parts.append(blk.new_zeros(a - pos, self.in_features))
            parts.append(blk)
            pos = b
        if pos < self.out_features:
            parts.append(blocks.new_zeros(self.out_features - pos, self.in_features))
        return torch.cat(parts, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.drop(x), self.delta_weight()) * self.scaling


# -- hooks (module-level functions: deepcopy- and functional_call-safe) -------------------------
def _adapter_hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    return module.adapter(output)


def _lora_hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    return output + module.lora(args[0])


def _gru_block_hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    lengths = args[1]
    adapted = module.gru.adapters[-1](output)
    return torch.where((lengths > 0).to(output.device)[:, None], adapted, output)


def _apply_seq(adapter: nn.Module, out: torch.Tensor | PackedSequence) -> Any:
    if isinstance(out, PackedSequence):
        return PackedSequence(
            adapter(out.data), out.batch_sizes, out.sorted_indices, out.unsorted_indices
        )
    return adapter(out)


def _dropout_seq(out: torch.Tensor | PackedSequence, p: float, training: bool) -> Any:
    if not p or not training:
        return out
    if isinstance(out, PackedSequence):
        return PackedSequence(
            F.dropout(out.data, p, True), out.batch_sizes, out.sorted_indices, out.unsorted_indices
        )
    return F.dropout(out, p, True)


def _adapted_gru_forward(self: nn.GRU, input: Any, hx: torch.Tensor | None = None) -> Any:
    """``nn.GRU.forward`` with an adapter on every layer's output sequence (see module doc)."""
    if self.num_layers == 1:
        out, h = nn.GRU.forward(self, input, hx)
        return _apply_seq(self.adapters[0], out), h
    x, states = input, []
    for k, template in enumerate(self._warmrec_templates):
        params = {
            f"{n}_l0": getattr(self, f"{n}_l{k}")
            for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            if hasattr(self, f"{n}_l{k}")
        }
        h0 = None if hx is None else hx[k : k + 1]
        with warnings.catch_warnings():  # cuDNN: per-layer weights are not one flat buffer
            warnings.filterwarnings("ignore", message=".*contiguous chunk of memory.*")
            out, h = torch.func.functional_call(template, params, (x, h0))
        x = _apply_seq(self.adapters[k], out)
        if k < self.num_layers - 1:
            x = _dropout_seq(x, self.dropout, self.training)
        states.append(h)
    return x, torch.cat(states, 0)


def _templates(gru: nn.GRU) -> list[nn.GRU]:
    """One-layer GRUs (unregistered; their own weights are never used) for layer-wise runs."""
    sizes = [gru.input_size] + [gru.hidden_size] * (gru.num_layers - 1)
    return [
        nn.GRU(s, gru.hidden_size, 1, bias=gru.bias, batch_first=gru.batch_first) for s in sizes
    ]


# -- injectors -----------------------------------------------------------------------------------
def _generator(seed: int | None) -> torch.Generator | None:
    return None if seed is None else torch.Generator().manual_seed(int(seed))


def _device_of(module: nn.Module) -> torch.device:
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _register(module: nn.Module, hook: Any, prepend: bool = False) -> None:
    module.register_forward_hook(hook, prepend=prepend)


def _remove(module: nn.Module, hook: Any) -> None:
    """Drop ``hook`` from ``module``'s forward hooks (found by identity: copies stay safe)."""
    for hid, fn in list(module._forward_hooks.items()):
        if fn is hook:
            del module._forward_hooks[hid]


def inject_adapters(
    net: nn.Module, config: AdapterConfig | dict[str, Any] | None = None, *, seed: int | None = None
) -> list[str]:
    """Attach bottleneck adapters to every transformer and GRU block of ``net``; returns the
    names of the adapted modules. Raises :class:`ModelError` when nothing can be adapted or the
    net already has adapters."""
    cfg = build_config(AdapterConfig, config)
    if getattr(net, "_warmrec_adapter_config", None) is not None:
        raise ModelError("the net already has bottleneck adapters")
    gen = _generator(seed)
    done: list[str] = []

    def make(dim: int) -> BottleneckAdapter:
        return BottleneckAdapter(dim, cfg.bottleneck, cfg.activation, cfg.dropout, gen)

    for name, mod in net.named_modules():
        if isinstance(mod, TransformerBlock):
            targets = []
            if cfg.attention:
                targets.append(("proj", mod.proj))
            if cfg.ffn:
                targets.append((f"ffn.{len(mod.ffn) - 1}", mod.ffn[-1]))
            for sub, lin in targets:
                lin.adapter = make(lin.out_features).to(_device_of(lin))
                _register(lin, _adapter_hook)
                done.append(f"{name}.{sub}")
        elif isinstance(mod, GRUBlock) and cfg.gru:
            gru = mod.gru
            gru.adapters = nn.ModuleList(make(gru.hidden_size) for _ in range(gru.num_layers)).to(
                _device_of(gru)
            )
            if gru.num_layers > 1:
                gru._warmrec_templates = _templates(gru)
            gru.forward = _adapted_gru_forward.__get__(gru)
            _register(mod, _gru_block_hook)
            done.append(f"{name}.gru")
    if not done:
        raise ModelError(
            f"{type(net).__name__} has no transformer or GRU block to adapt "
            "(or the AdapterConfig switched every place off)"
        )
    net._warmrec_adapter_config = cfg
    return done


def inject_lora(
    net: nn.Module, config: LoraConfig | dict[str, Any] | None = None, *, seed: int | None = None
) -> list[str]:
    """Attach LoRA to the attention projections of every transformer block; returns the names
    of the adapted Linear layers."""
    cfg = build_config(LoraConfig, config)
    if getattr(net, "_warmrec_lora_config", None) is not None:
        raise ModelError("the net already has LoRA layers")
    gen = _generator(seed)
    done: list[str] = []
    for name, mod in net.named_modules():
        if not isinstance(mod, TransformerBlock):
            continue
        d = mod.proj.out_features
        qkv = [(i * d, (i + 1) * d) for i, t in enumerate(("q", "k", "v")) if t in cfg.targets]
        todo = [("qkv", mod.qkv, qkv)] if qkv else []
        if "out" in cfg.targets:
            todo.append(("proj", mod.proj, [(0, d)]))
        for sub, lin, slices in todo:
            lin.lora = LoraLayer(
                lin.in_features, lin.out_features, slices, cfg.r, cfg.alpha, cfg.dropout, gen
            ).to(_device_of(lin))
            _register(lin, _lora_hook, prepend=True)  # inside the Linear: before adapters
            done.append(f"{name}.{sub}")
    if not done:
        raise ModelError(f"{type(net).__name__} has no attention layer for LoRA")
    net._warmrec_lora_config = cfg
    return done


def merge_and_unload(net: nn.Module) -> int:
    """Fold every LoRA update into its base weight and remove the LoRA layers; returns how many
    were merged. The merged net computes the same function with plain Linear layers."""
    n = 0
    for mod in list(net.modules()):
        if isinstance(mod, nn.Linear) and isinstance(getattr(mod, "lora", None), LoraLayer):
            with torch.no_grad():
                mod.weight += mod.lora.scaling * mod.lora.delta_weight().to(mod.weight.dtype)
            _remove(mod, _lora_hook)
            del mod.lora
            n += 1
    net.__dict__.pop("_warmrec_lora_config", None)
    return n


def unload(net: nn.Module) -> None:
    """Remove every adapter and LoRA layer without merging: the net is its base again."""
    for mod in list(net.modules()):
        if isinstance(mod, nn.Linear):
            for key, hook in (("adapter", _adapter_hook), ("lora", _lora_hook)):
                if key in mod._modules:
                    _remove(mod, hook)
                    del mod._modules[key]
        elif isinstance(mod, GRUBlock):
            _remove(mod, _gru_block_hook)
            gru = mod.gru
            gru.__dict__.pop("forward", None)
            gru.__dict__.pop("_warmrec_templates", None)
            gru._modules.pop("adapters", None)
    net.__dict__.pop("_warmrec_adapter_config", None)
    net.__dict__.pop("_warmrec_lora_config", None)


# -- adapter-only state ---------------------------------------------------------------------------
def is_adapter_name(name: str) -> bool:
    """Whether a parameter/state name belongs to an adapter or LoRA layer."""
    return any(part in ADAPTER_PARTS for part in name.split("."))


def adapter_state_dict(net: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter and LoRA entries of ``net.state_dict()`` (detached)."""
    return {k: v.detach() for k, v in net.state_dict().items() if is_adapter_name(k)}


def load_adapter_state(net: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load adapter/LoRA weights into a net that has the same adapters injected."""
    own = {k: v for k, v in net.state_dict().items() if is_adapter_name(k)}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(k for k in state if is_adapter_name(k) and k not in own)
    if missing or unexpected:
        raise ModelError(
            f"adapter weights do not match the net (missing {missing[:5]}, "
            f"unexpected {unexpected[:5]})"
        )
    bad = [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
    if bad:
        raise ModelError(
            f"adapter weight {bad[0]!r} has shape {tuple(state[bad[0]].shape)}, "
            f"expected {tuple(own[bad[0]].shape)}"
        )
    net.load_state_dict({k: state[k] for k in own}, strict=False)


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch(name, p) for p in patterns)


def save_adapters(model: Any, path: str | Path, *, include: Sequence[str] | None = None) -> Path:
    """Write the adapter-only weights of a NeuralRecommender to directory ``path``.

    ``adapters.safetensors`` holds the adapter/LoRA weights plus the state entries matching the
    ``include`` glob patterns; by default ``include`` is every non-adapter parameter that trains
    (``requires_grad``) plus the entries a transfer made target-specific
    (``model.meta["transfer"]["target_specific"]``: item tables, users, cropped positions...).
    ``adapter_config.json`` holds the model name and config, the adapter/LoRA configs and the
    meta; the vocabularies are saved when target-specific tables are included.
    """
    net = model.net
    if net is None:
        raise ModelError(f"model '{model.name}' has no network")
    a_cfg = getattr(net, "_warmrec_adapter_config", None)
    l_cfg = getattr(net, "_warmrec_lora_config", None)
    if a_cfg is None and l_cfg is None:
        raise ModelError(f"model '{model.name}' has no adapters or LoRA to save")
    if include is None:
        trainable = [n for n, p in net.named_parameters() if p.requires_grad]
        specific = list(model.meta.get("transfer", {}).get("target_specific", []))
        include = [n for n in trainable if not is_adapter_name(n)] + specific
    state = net.state_dict()
    out = adapter_state_dict(net)
    extra = sorted(k for k in state if not is_adapter_name(k) and _matches(k, include))
    out.update({k: state[k].detach() for k in extra})
    out = {k: v.cpu().contiguous() for k, v in out.items()}
    from warmrec import __version__

    info = {
        "format": 1,
        "model": model.name,
        "config": config_dict(model.config),
        "adapter": config_dict(a_cfg) if a_cfg is not None else None,
        "lora": config_dict(l_cfg) if l_cfg is not None else None,
        "extra_keys": extra,
        "meta": model.meta,
        "warmrec_version": __version__,
    }
    with atomic_dir(path) as tmp:
        save_file(out, str(tmp / ADAPTER_FILE))
        (tmp / ADAPTER_CONFIG).write_text(json.dumps(info, indent=2, default=str))
        if extra and model.vocab is not None:
            model.vocab.save(tmp / "vocab.json")
            if model.user_vocab is not None:
                model.user_vocab.save(tmp / "users.json")
    return Path(path)


def load_adapters(base_model_dir: str | Path, adapter_dir: str | Path) -> Any:
    """A model = the base model directory's weights + the adapter directory's weights.

    The network is built from the adapter directory's model config (and vocabulary, when saved),
    filled with the base weights whose shapes fit, the adapters are injected and every
    adapter-file entry loaded. Raises :class:`ModelError` when the two do not fit or some weight
    is in neither.
    """
    from warmrec.models.base import Recommender
    from warmrec.registry import model_class

    a_dir = Path(adapter_dir)
    cfg_path = a_dir / ADAPTER_CONFIG
    if not cfg_path.is_file():
        raise ModelError(f"{a_dir}: not an adapter directory (no {ADAPTER_CONFIG})")
    try:
        info = json.loads(cfg_path.read_text())
    except ValueError as e:
        raise ModelError(f"{cfg_path}: invalid JSON: {e}") from e
    base = Recommender.load(base_model_dir)
    if info.get("model") != base.name:
        raise ModelError(
            f"{a_dir}: adapters for a '{info.get('model')}' model, base is '{base.name}'"
        )
    model = model_class(info["model"])(info.get("config", {}))
    model.meta = dict(info.get("meta") or base.meta)
    model.vocab = (
        ItemVocab.load(a_dir / "vocab.json") if (a_dir / "vocab.json").is_file() else (base.vocab)
    )
    model.user_vocab = (
        ItemVocab.load(a_dir / "users.json")
        if (a_dir / "users.json").is_file()
        else base.user_vocab
    )
    model.device = base.device
    model.net = model.build_net(model.n_items)
    state = load_file(str(a_dir / ADAPTER_FILE))
    own = model.net.state_dict()
    base_state = base.net.state_dict()
    fill = {
        k: base_state[k] for k in own if k in base_state and base_state[k].shape == own[k].shape
    }
    fill.update({k: v for k, v in state.items() if k in own})
    uncovered = sorted(k for k in own if k not in fill)
    if uncovered:
        raise ModelError(
            f"{a_dir}: weights {uncovered[:5]} are neither in the base model (same shape) nor "
            "in the adapter file; save the adapters with include= patterns that cover them"
        )
    model.net.load_state_dict(fill)
    if info.get("adapter") is not None:
        inject_adapters(model.net, info["adapter"])
    if info.get("lora") is not None:
        inject_lora(model.net, info["lora"])
    load_adapter_state(model.net, state)
    model.net.eval()
    return model
