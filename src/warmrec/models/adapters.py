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

How they attach (as peft's layer wrappers): the adapted module is replaced in its parent by a
wrapper that holds it -- :class:`AdaptedLinear` for a Linear (``lora`` and/or ``adapter``
children), :class:`AdaptedGRU` for a GRU (``adapters.<layer>``). A wrapper registers the base
layer's own Parameters under their own names, so **no base parameter is renamed**
(``proj.weight``, ``proj.adapter.down.weight``, ``qkv.lora.lora_A``, ``gru.weight_ih_l0``,
``gru.adapters.0.up.bias``): name-pattern freezing, ``load_state_dict`` of base weights and
``deepcopy``/``functional_call`` keep working. The one hook (the GRU's top adapter on the
``GRUBlock`` output) is registered through a handle the wrapper keeps; :func:`unload` removes
it and puts the original module objects back, holding the current Parameters. Nothing is stored
on the net or the model besides the wrappers (:func:`adapter_configs` reads the configs back
from them). Adapter weights are every state entry with an ``adapter``, ``adapters`` or ``lora``
name part (:func:`adapter_state_dict`). The artifact format (:mod:`warmrec.artifacts`) uses
this module to save and load a model whole with adapters in its net; adapter-only directories
are written and read by :mod:`warmrec.transfer.adapters`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from warmrec.config import ConfigModel, build_config
from warmrec.errors import ModelError
from warmrec.models.layers import Dropout, GRUBlock, TransformerBlock
from warmrec.rng import dropout as fit_dropout

ADAPTER_PARTS = ("adapter", "adapters", "lora")
_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "tanh": nn.Tanh}
_LORA_TARGETS = ("q", "k", "v", "out")


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
        self.drop = Dropout(dropout)
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
        self.drop = Dropout(dropout)

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


# -- wrappers ------------------------------------------------------------------------------------
class AdaptedLinear(nn.Linear):
    """A Linear wrapped with LoRA (``lora``) and/or a bottleneck adapter (``adapter``):
    ``adapter(W x + b + lora(x))``.

    It holds the base layer (:attr:`base_layer`, restored by :func:`unload`) and registers the
    base layer's own ``weight``/``bias`` Parameters under their own names, so the wrapped net's
    parameter names are the base net's plus ``.lora.*``/``.adapter.*``: name-pattern freezing,
    ``load_state_dict`` of base weights, ``deepcopy`` and ``functional_call`` keep working.
    It is a Linear (``in_features``/``out_features``), so an adapter and LoRA can share one.
    """

    def __init__(self, base: nn.Linear) -> None:
        nn.Module.__init__(self)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight
        self.bias = base.bias
        self.base_layer = base  # replaced by a plain attribute below (not a registered child)
        self.lora: LoraLayer | None = None
        self.adapter: BottleneckAdapter | None = None
        self.lora_config: LoraConfig | None = None
        self.adapter_config: AdapterConfig | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "base_layer":  # held, not registered: its parameters are ours already
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight, self.bias)
        if self.lora is not None:
            out = out + self.lora(x)
        if self.adapter is not None:
            out = self.adapter(out)
        return out

    def restored(self) -> nn.Linear:
        """The base layer with this wrapper's (possibly trained or merged) Parameters."""
        base = self.base_layer
        base.weight = self.weight
        base.bias = self.bias
        return base


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
            fit_dropout(out.data, p, True),
            out.batch_sizes,
            out.sorted_indices,
            out.unsorted_indices,
        )
    return fit_dropout(out, p, True)


_GRU_PARAMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


class AdaptedGRU(nn.Module):
    """An ``nn.GRU`` with a bottleneck adapter on every layer's output sequence (module doc).

    Holds the base GRU (:attr:`base_layer`) and registers its Parameters under their own names
    (``weight_ih_l0``, ...), so no parameter is renamed; the adapters are ``adapters.<layer>``.
    A fused multi-layer GRU has no seam between layers, so it runs layer by layer (the same
    weights, through ``torch.func.functional_call`` on one-layer templates). The top adapter is
    also applied to the last-state output of the enclosing ``GRUBlock.forward`` by a forward hook
    whose handle this wrapper keeps and :func:`unload` removes.
    """

    def __init__(self, base: nn.GRU, adapters: nn.ModuleList, config: AdapterConfig) -> None:
        super().__init__()
        for k in range(base.num_layers):
            for n in _GRU_PARAMS:
                p = getattr(base, f"{n}_l{k}", None)
                if p is not None:
                    self.register_parameter(f"{n}_l{k}", p)
        self.input_size, self.hidden_size = base.input_size, base.hidden_size
        self.num_layers, self.bias = base.num_layers, base.bias
        self.batch_first, self.dropout = base.batch_first, base.dropout
        self.adapters = adapters
        self.adapter_config = config
        object.__setattr__(self, "base_layer", base)
        # one-layer GRUs run with this wrapper's weights (their own are never used): the base
        # GRU itself when it has one layer, else unregistered one-layer templates
        sizes = [base.input_size] + [base.hidden_size] * (base.num_layers - 1)
        templates = (
            [base]
            if base.num_layers == 1
            else [
                nn.GRU(s, base.hidden_size, 1, bias=base.bias, batch_first=base.batch_first)
                for s in sizes
            ]
        )
        object.__setattr__(self, "_templates", templates)
        self._block_handle: Any = None

    def forward(self, input: Any, hx: torch.Tensor | None = None) -> Any:
        x, states = input, []
        for k, template in enumerate(self._templates):
            params = {
                f"{n}_l0": getattr(self, f"{n}_l{k}")
                for n in _GRU_PARAMS
                if f"{n}_l{k}" in self._parameters
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

    def adapt_block_output(
        self, block: nn.Module, args: tuple, output: torch.Tensor
    ) -> torch.Tensor:
        """Forward hook of the enclosing ``GRUBlock``: the top adapter on its last-state output
        (rows without history stay zero)."""
        lengths = args[1]
        adapted = self.adapters[-1](output)
        return torch.where((lengths > 0).to(output.device)[:, None], adapted, output)

    def restored(self) -> nn.GRU:
        """The base GRU with this wrapper's (possibly trained) Parameters."""
        base = self.base_layer
        for name, p in self._parameters.items():
            setattr(base, name, p)
        return base


# -- injectors -----------------------------------------------------------------------------------
def _generator(seed: int | None) -> torch.Generator | None:
    return None if seed is None else torch.Generator().manual_seed(int(seed))


def _device_of(module: nn.Module) -> torch.device:
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _wrap_linear(parent: nn.Module, name: str) -> AdaptedLinear:
    """``parent.<name>`` as an :class:`AdaptedLinear` (wrapping it on first use)."""
    lin = parent._modules[name]
    if not isinstance(lin, AdaptedLinear):
        lin = AdaptedLinear(lin)
        setattr(parent, name, lin)
    return lin


def adapter_configs(net: nn.Module) -> tuple[AdapterConfig | None, LoraConfig | None]:
    """The bottleneck-adapter and LoRA configs injected into ``net`` (None where absent)."""
    a_cfg = l_cfg = None
    for mod in net.modules():
        if isinstance(mod, (AdaptedLinear, AdaptedGRU)) and mod.adapter_config is not None:
            a_cfg = mod.adapter_config
        if isinstance(mod, AdaptedLinear) and mod.lora_config is not None:
            l_cfg = mod.lora_config
    return a_cfg, l_cfg


def inject_adapters(
    net: nn.Module, config: AdapterConfig | dict[str, Any] | None = None, *, seed: int | None = None
) -> list[str]:
    """Wrap the sublayers of every transformer and GRU block of ``net`` with bottleneck adapters;
    returns the names of the adapted modules. Raises :class:`ModelError` when nothing can be
    adapted or the net already has adapters."""
    cfg = build_config(AdapterConfig, config)
    if adapter_configs(net)[0] is not None:
        raise ModelError("the net already has bottleneck adapters")
    gen = _generator(seed)
    done: list[str] = []

    def make(dim: int) -> BottleneckAdapter:
        return BottleneckAdapter(dim, cfg.bottleneck, cfg.activation, cfg.dropout, gen)

    for name, mod in list(net.named_modules()):
        if isinstance(mod, TransformerBlock):
            targets = []
            if cfg.attention:
                targets.append((mod, "proj", "proj"))
            if cfg.ffn:
                last = str(len(mod.ffn) - 1)
                targets.append((mod.ffn, last, f"ffn.{last}"))
            for parent, child, sub in targets:
                lin = _wrap_linear(parent, child)
                lin.adapter = make(lin.out_features).to(_device_of(lin))
                lin.adapter_config = cfg
                done.append(f"{name}.{sub}")
        elif isinstance(mod, GRUBlock) and cfg.gru:
            gru = mod.gru
            adapters = nn.ModuleList(make(gru.hidden_size) for _ in range(gru.num_layers))
            wrapper = AdaptedGRU(gru, adapters.to(_device_of(gru)), cfg)
            mod.gru = wrapper
            wrapper._block_handle = mod.register_forward_hook(wrapper.adapt_block_output)
            done.append(f"{name}.gru")
    if not done:
        raise ModelError(
            f"{type(net).__name__} has no transformer or GRU block to adapt "
            "(or the AdapterConfig switched every place off)"
        )
    return done


def inject_lora(
    net: nn.Module, config: LoraConfig | dict[str, Any] | None = None, *, seed: int | None = None
) -> list[str]:
    """Wrap the attention projections of every transformer block with LoRA; returns the names
    of the adapted Linear layers."""
    cfg = build_config(LoraConfig, config)
    if adapter_configs(net)[1] is not None:
        raise ModelError("the net already has LoRA layers")
    gen = _generator(seed)
    done: list[str] = []
    for name, mod in list(net.named_modules()):
        if not isinstance(mod, TransformerBlock):
            continue
        d = mod.proj.out_features
        qkv = [(i * d, (i + 1) * d) for i, t in enumerate(("q", "k", "v")) if t in cfg.targets]
        todo = [("qkv", qkv)] if qkv else []
        if "out" in cfg.targets:
            todo.append(("proj", [(0, d)]))
        for sub, slices in todo:
            lin = _wrap_linear(mod, sub)
            lin.lora = LoraLayer(
                lin.in_features, lin.out_features, slices, cfg.r, cfg.alpha, cfg.dropout, gen
            ).to(_device_of(lin))
            lin.lora_config = cfg
            done.append(f"{name}.{sub}")
    if not done:
        raise ModelError(f"{type(net).__name__} has no attention layer for LoRA")
    return done


def _parents(net: nn.Module, kind: type) -> list[tuple[nn.Module, str, nn.Module]]:
    """``(parent, child name, child)`` for every submodule of type ``kind``."""
    return [
        (parent, child_name, child)
        for parent in list(net.modules())
        for child_name, child in list(parent._modules.items())
        if isinstance(child, kind)
    ]


def _unwrap_linear(parent: nn.Module, name: str, lin: AdaptedLinear) -> None:
    if lin.lora is None and lin.adapter is None:
        setattr(parent, name, lin.restored())


def merge_and_unload(net: nn.Module) -> int:
    """Fold every LoRA update into its base weight and remove the LoRA layers; returns how many
    were merged. The merged net computes the same function with plain Linear layers (or
    adapter-only wrappers where bottleneck adapters remain)."""
    n = 0
    for parent, name, lin in _parents(net, AdaptedLinear):
        if lin.lora is None:
            continue
        with torch.no_grad():
            lin.weight += lin.lora.scaling * lin.lora.delta_weight().to(lin.weight.dtype)
        lin.lora = None
        lin.lora_config = None
        _unwrap_linear(parent, name, lin)
        n += 1
    return n


def unload(net: nn.Module) -> None:
    """Remove every adapter and LoRA layer without merging: the net is its base again (the
    original module objects, holding the current base Parameters)."""
    for parent, name, lin in _parents(net, AdaptedLinear):
        lin.lora = lin.adapter = None
        lin.lora_config = lin.adapter_config = None
        _unwrap_linear(parent, name, lin)
    for parent, name, gru in _parents(net, AdaptedGRU):
        if gru._block_handle is not None:
            gru._block_handle.remove()
        setattr(parent, name, gru.restored())


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
