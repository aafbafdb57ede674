"""Pre-train on a source domain, transfer to a data-scarce target domain.

:func:`transfer` turns a trained source model into a target model and trains it with the shared
loop (:func:`warmrec.training.loop.train` with ``fresh=False``):

1. **Same model, target vocabulary.** A model of the source's class and config (``max_len``
   optionally changed) is bound to the target training data (item and user vocabularies).
2. **Every non-item weight is copied** from the source (transformer/GRU blocks, norms, heads,
   side-feature value tables, BERT4Rec's ``[MASK]`` row, ...).
3. **Item tables are initialised** by :func:`warmrec.transfer.embeddings.init_item_embeddings`:
   the input table, and for untied models the output table, output bias and GRU4Rec's separate
   input table. The tables are stacked column-wise and initialised together, so every method
   keeps an item's input and output rows consistent (one rank match, one set of text
   neighbours, one linear map); ``"random"`` draws each table at its own scale and sets output
   biases to zero (the models' own bias init). Items present in both domains copy their rows.
4. **Users are new.** SSE-PT's user table is re-drawn, normal with the standard deviation of the
   source's user rows; as after ``fit``, only the users with target training sequences are
   marked trained (the others score as unknown users: the trained users' mean). BST's and SSE-PT's side features are encoded with the *source's* feature
   encoding so that the copied feature embeddings mean the same values; a target without those
   columns, or whose values the source never saw, raises :class:`~warmrec.errors.ModelError`.
5. **Positions.** With a different target ``max_len`` the learned positions (last row = most
   recent item) are cropped to the most recent ``max_len`` rows, or extended to older positions
   by ``position_init``: ``"repeat"`` (default; new older positions copy the oldest learned one,
   every learned position keeps its vector) or ``"interpolate"`` (the learned rows are
   stretched linearly over the new length, so recent positions move slightly too).
6. **Target model settings** (``model_options``, optional) override the source's config, e.g.
   ``{"item_repr": "text", "text_prior": 5}``: an ID source's encoder under a text-aware item
   representation. When the item representation changes, only the item tables present on both
   sides (an ``id+text`` target's id table) are initialised from the source (step 3); the rest
   of the target's item layer (text adaptor, prior weight) keeps its fresh seeded init. Every
   other weight is still copied, so the overrides must leave its shape alone (``d``, layers...).
7. **Strategy** (:mod:`warmrec.transfer.strategies`) decides what trains and at which rate;
   ``"scratch"`` ignores the source weights (a fresh net of the same config: the baseline).

The returned model trains further with ``warmrec.training.loop.train(model, data, valid, cfg,
fresh=False)``; its ``fit`` starts a new network, as for any model.

``model.meta.transfer`` (:class:`~warmrec.artifacts.TransferInfo`) records the provenance: source model and name, strategy and options,
init and options, position handling, shared items, and the names of the target-specific state
entries (used by :func:`warmrec.transfer.adapters.save_adapters`).
:func:`pretrain` is the thin source-side counterpart (it stores training item counts in
``meta.item_counts`` for the popularity-based inits).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from warmrec.config import build_config, config_dict
from warmrec.data.dataset import EvalSet, SequenceDataset
from warmrec.data.schema import ITEM, USER
from warmrec.errors import ConfigError, ModelError
from warmrec.models.base import Recommender
from warmrec.models.features import (
    EncodedFeatures,
    FeatureEmbedder,
    SideFeatures,
    encode_features,
)
from warmrec.models.layers import (
    DomainToken,
    ItemEmbedding,
    PositionalEmbedding,
    SeenItemBias,
)
from warmrec.models.neural import NeuralRecommender
from warmrec.models.settings import HistorySettings, TextSettings
from warmrec.registry import get_model
from warmrec.rng import isolated
from warmrec.transfer.embeddings import METHODS, init_item_embeddings, shared_items
from warmrec.transfer.strategies import StrategyOptions, apply_strategy

POSITION_INITS = ("repeat", "interpolate")


def _max_len(config: Any) -> int | None:
    return config.max_len if isinstance(config, HistorySettings) else None


# -- pieces --------------------------------------------------------------------------------------
def item_table_keys(net: nn.Module) -> list[str]:
    """State keys of the item-indexed tables: ItemEmbedding input/output/bias, root ``input``."""
    keys = []
    for name, mod in net.named_modules():
        if isinstance(mod, ItemEmbedding):
            if mod.embed is not None:  # a text-only layer (item_repr="text") has no id table
                keys.append(f"{name}.embed.weight")
            if mod.out is not None:
                keys.append(f"{name}.out")
            if mod.bias is not None:
                keys.append(f"{name}.bias")
        elif name == "input" and isinstance(mod, nn.Embedding):
            keys.append("input.weight")
    return keys


def resize_positions(weight: torch.Tensor, max_len: int, how: str = "repeat") -> torch.Tensor:
    """Positions ``[L, d]`` (last row = most recent) -> ``[max_len, d]`` (see module doc)."""
    if how not in POSITION_INITS:
        raise ConfigError(f"position_init {how!r}: expected one of {', '.join(POSITION_INITS)}")
    length = weight.shape[0]
    if max_len <= length:
        return weight[length - max_len :].clone()
    if how == "repeat":
        return torch.cat([weight[:1].expand(max_len - length, -1), weight], 0).clone()
    return F.interpolate(weight.T[None], size=max_len, mode="linear", align_corners=True)[0].T


def _transfer_features(source: Recommender, target: Recommender, train: SequenceDataset) -> None:
    """Encode the target's side features with the source's encoding (see module doc)."""
    feats = source.meta.features
    if feats is None or not hasattr(target, "_features"):
        return
    item_specs, user_specs = SideFeatures.specs_from_meta(feats)
    encoded: dict[str, EncodedFeatures | None] = {"item": None, "user": None}
    for what, specs, frame, vocab, key in (
        ("item", item_specs, train.item_features, target.vocab, ITEM),
        ("user", user_specs, train.user_features, target.user_vocab, USER),
    ):
        if not specs:
            continue
        names = [s.name for s in specs]
        if frame is None or vocab is None or any(n not in frame.columns for n in names):
            found = "no table" if frame is None else ", ".join(frame.columns)
            if frame is not None and vocab is None:
                found = "no user ids in the target log"
            raise ModelError(
                f"{source.name}: the source model uses {what} features {names}; the target "
                f"data does not have them (found: {found}); features must match to transfer"
            )
        codes = encode_features(frame, vocab, specs, key=key)
        col = 0
        for s in specs:
            block = codes[1:, col : col + s.width]
            col += s.width
            if block.size and s.kind != "numeric" and not block.any():
                raise ModelError(
                    f"{source.name}: no value of {what} feature '{s.name}' in the target data is "
                    "known to the source model; features must match to transfer"
                )
        encoded[what] = EncodedFeatures(specs, codes)
    target._features = SideFeatures(encoded["item"], encoded["user"])
    target.meta.features = feats.model_copy(deep=True)


def _item_layers(net: nn.Module) -> list[ItemEmbedding]:
    return [m for m in net.modules() if isinstance(m, ItemEmbedding)]


def _bind_text(source: Recommender, target: Recommender, train: SequenceDataset) -> None:
    """A text-aware source: the target's item text through the source's encoder and fields
    (the adaptor that reads the vectors is copied with the other weights)."""
    from warmrec.models.text import text_vectors

    cfg = target.config
    if not isinstance(cfg, TextSettings) or cfg.item_repr == "id":
        return
    src_meta = source.meta.text
    vec, meta = text_vectors(train, cfg)
    if src_meta is not None and (src_meta.encoder, src_meta.dim) != (meta.encoder, meta.dim):
        raise ModelError(
            f"{source.name}: the source read item text with {src_meta.encoder} "
            f"({src_meta.dim}-d), the target's with {meta.encoder} ({meta.dim}-d)"
        )
    if meta.n_with_text == 0:
        raise ModelError(
            f"{source.name}: a text-aware source needs target item text; none of the target's "
            f"{len(train.vocab) - 1} items has any in the fields {', '.join(cfg.text_fields)}"
        )
    target._text, target.meta.text = vec, meta


def _item_repr(model: Recommender) -> str:
    return str(getattr(model.config, "item_repr", "id"))


def _jsonable(options: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in options.items():
        try:
            json.dumps(v)
            out[k] = v
        except (TypeError, ValueError):
            out[k] = f"<{type(v).__name__}>"
    return out


def _init_tables(
    init: str,
    src_state: dict[str, torch.Tensor],
    keys: list[str],
    source: NeuralRecommender,
    target: NeuralRecommender,
    target_train: SequenceDataset,
    init_kwargs: dict[str, Any],
    seed: int,
    match_items: str = "auto",
) -> dict[str, torch.Tensor]:
    n_src, n_tgt = len(source.vocab), len(target.vocab)
    parts, extras, widths, vectors = [], [], [], []
    for key in keys:
        t = src_state[key].detach().float().cpu()
        vectors.append(t.ndim == 1)
        t = t[:, None] if t.ndim == 1 else t
        parts.append(t[:n_src])
        extras.append(t[n_src:])
        widths.append(t.shape[1])
    if init == "random":
        rows = []
        for i, (part, is_bias) in enumerate(zip(parts, vectors)):
            if is_bias:  # the models' own bias init (zero); shared items still copy theirs
                bias = torch.zeros(n_tgt, 1)
                t_idx, s_idx = shared_items(source.vocab, target.vocab, match_items)
                bias[torch.from_numpy(t_idx)] = part[torch.from_numpy(s_idx)]
                rows.append(bias)
            else:
                rows.append(
                    init_item_embeddings(
                        "random", part, source.vocab, target.vocab, seed=seed + i,
                        match_items=match_items,
                    )
                )  # fmt: skip
        wide = torch.cat(rows, 1)
    else:
        wide = init_item_embeddings(
            init,
            torch.cat(parts, 1),
            source.vocab,
            target.vocab,
            target_train=target_train,
            seed=seed,
            match_items=match_items,
            **init_kwargs,
        )
    out = {}
    for key, piece, extra, is_bias in zip(keys, wide.split(widths, 1), extras, vectors):
        full = torch.cat([piece, extra], 0)  # special rows (BERT4Rec [MASK]) copied
        out[key] = full[:, 0] if is_bias else full
    return out


def build_target_model(
    source_model: NeuralRecommender,
    target_train: SequenceDataset,
    *,
    init: str,
    max_len: int | None = None,
    position_init: str = "repeat",
    init_options: Mapping[str, Any] | None = None,
    source_counts: np.ndarray | None = None,
    source_titles: Mapping[Any, str] | None = None,
    target_titles: Mapping[Any, str] | None = None,
    copy_weights: bool = True,
    reset_domain: bool = False,
    zero_shot: bool = False,
    refit_whitening: str = "off",
    model_options: Mapping[str, Any] | None = None,
    seed: int = 0,
    match_items: str = "auto",
) -> tuple[NeuralRecommender, dict[str, Any]]:
    """Steps 1-6 of the module docstring, without training: ``(target model, info)``.

    ``match_items``: which items are one item in both domains and copy their source rows
    (:func:`warmrec.transfer.embeddings.shared_items`: ``"auto"``, text ids only; ``"ids"``;
    ``"none"``).

    ``model_options``: the target's model settings over the source's (step 6).

    ``reset_domain``: the domain-specific parameters (the seen-item bias, a multi-source
    model's domain vector) start at their initial value (0) instead of the source's;
    ``zero_shot``: the target's training counts are not used (text layers rank every item;
    nothing of the target's interactions enters the model);
    ``refit_whitening``: the text adaptors' whitening statistics are re-fitted on the
    target's item text (:func:`warmrec.models.text.refit_whitening`; ``"off"``, ``"mean"``,
    ``"diag"``, ``"full"``)."""
    from warmrec.models.text import REFIT_MODES, TextItemEmbedding
    from warmrec.models.text import refit_whitening as refit_whitening_

    if refit_whitening not in REFIT_MODES:
        raise ConfigError(
            f"refit_whitening: expected one of {', '.join(REFIT_MODES)}, found {refit_whitening!r}"
        )

    source = source_model
    if not isinstance(source, NeuralRecommender):
        raise ModelError(
            f"transfer needs a neural model, found '{getattr(source, 'name', source)}'"
        )
    if source.net is None or source.vocab is None:
        raise ModelError(f"source model '{source.name}' has no trained network")
    if init not in METHODS:
        raise ConfigError(f"init {init!r}: expected one of {', '.join(METHODS)}")
    if position_init not in POSITION_INITS:
        raise ConfigError(
            f"position_init {position_init!r}: expected one of {', '.join(POSITION_INITS)}"
        )
    cfg = config_dict(source.config)
    if max_len is not None:
        if "max_len" not in cfg:
            raise ConfigError(f"model '{source.name}' has no max_len setting")
        cfg["max_len"] = int(max_len)
    overrides = dict(model_options or {})
    bad = sorted(k for k in overrides if k not in cfg)
    if bad:
        raise ConfigError(
            f"transfer model_options: {', '.join(bad)} not a setting of model "
            f"'{source.name}' (expected some of {', '.join(sorted(cfg))})"
        )
    cfg.update(overrides)
    target = type(source)(cfg)
    # the base bind (vocabularies, counts, the model's _bind_users: SSE-PT's trained users);
    # side features take the source's encoding below, not a fit of their own
    Recommender._bind(target, target_train)
    if zero_shot:
        target.meta.item_counts = None  # no target interaction is used: every item is ranked
    _transfer_features(source, target, target_train)
    _bind_text(source, target, target_train)
    with isolated(seed):
        target.net = target.build_net(target.n_items)
    info: dict[str, Any] = {"n_shared_items": 0, "target_specific": []}
    if not copy_weights:
        return target, info
    src_state = _plain_state(source)
    tgt_state = target.net.state_dict()
    new: dict[str, torch.Tensor] = {}
    specific: list[str] = []

    keys = item_table_keys(source.net)
    repr_changed = _item_repr(source) != _item_repr(target)
    if repr_changed:
        if zero_shot:
            raise ModelError(
                f"{source.name}: zero-shot transfer needs the source's own item representation; "
                f"model_options change it from {_item_repr(source)!r} to {_item_repr(target)!r}"
            )
        # the item tables both sides have start from the source; the rest of the target's
        # item layer (text adaptor, prior weight, its buffers) keeps its fresh init
        t_keys = item_table_keys(target.net)
        keys = [k for k in t_keys if k in keys and src_state[k].shape[1:] == tgt_state[k].shape[1:]]
        item_mods = [n for n, m in target.net.named_modules() if isinstance(m, ItemEmbedding)]
        for key, value in tgt_state.items():
            if key not in keys and any(key.startswith(f"{n}.") for n in item_mods):
                new[key] = value
                specific.append(key)
    elif keys != item_table_keys(target.net):
        raise ModelError(f"{source.name}: source and target nets have different item tables")
    if zero_shot:
        text_only = all(isinstance(m, TextItemEmbedding) for m in _item_layers(target.net))
        if not text_only or any(not k.endswith(".bias") for k in keys):
            raise ModelError(
                f"{source.name}: zero-shot transfer needs a text item representation without id "
                f"vectors (item_repr='text'); the source has item_repr="
                f"{getattr(source.config, 'item_repr', 'id')!r}"
            )
        for key in keys:  # output biases: no target interactions to start them from
            new[key] = torch.zeros_like(tgt_state[key])
        keys = []
    init_kwargs = dict(init_options or {})
    allowed = INIT_OPTIONS.get(init, ())
    unknown = sorted(set(init_kwargs) - set(allowed))
    if unknown:
        takes = f"takes {', '.join(allowed)}" if allowed else "takes no options"
        raise ConfigError(
            f"init_options: {', '.join(unknown)} not an option of init {init!r} (it {takes})"
        )
    if init in ("popularity", "item2vec"):
        counts = source_counts if source_counts is not None else source.meta.item_counts
        if counts is None:
            raise ConfigError(
                f"init {init!r} needs the source's item counts: pass source_counts= or "
                "pre-train with warmrec.transfer.pretrain (which stores them)"
            )
        init_kwargs.setdefault("source_counts", np.asarray(counts, dtype=np.float64))
    if init == "text":
        init_kwargs.setdefault("source_titles", source_titles)
        init_kwargs.setdefault("target_titles", target_titles)
    if keys:
        new.update(
            _init_tables(
                init,
                src_state,
                keys,
                source,
                target,
                target_train,
                init_kwargs,
                seed,
                match_items,
            )  # fmt: skip
        )
    specific += keys

    for name, mod in target.net.named_modules():
        if isinstance(mod, PositionalEmbedding):
            key = f"{name}.embed.weight"
            new[key] = resize_positions(src_state[key], mod.embed.num_embeddings, position_init)
            if new[key].shape != src_state[key].shape:
                specific.append(key)
        elif isinstance(mod, FeatureEmbedder):
            key = f"{name}.codes"
            new[key] = tgt_state[key]  # the target's items/users, source encoding
            specific.append(key)
        elif isinstance(mod, TextItemEmbedding) and not repr_changed:
            for buf in ("text", "has_text", "trained"):  # the target's own catalogue
                new[f"{name}.{buf}"] = tgt_state[f"{name}.{buf}"]
                specific.append(f"{name}.{buf}")
        elif isinstance(mod, (SeenItemBias, DomainToken)) and reset_domain:
            new[f"{name}.value"] = tgt_state[f"{name}.value"]  # their initial value: 0
            specific.append(f"{name}.value")
        elif name == "user" and isinstance(mod, nn.Embedding):
            key = "user.weight"
            g = torch.Generator().manual_seed(seed + 7919)
            std = src_state[key][1:].std() if src_state[key].shape[0] > 2 else torch.tensor(0.02)
            new[key] = torch.randn(mod.weight.shape, generator=g) * std
            specific.append(key)
            if "trained" in tgt_state:  # SSE-PT: which of the target's users have sequences
                new["trained"] = tgt_state["trained"]
                specific.append("trained")
    for key, value in tgt_state.items():
        if key in new:
            continue
        if key not in src_state or src_state[key].shape != value.shape:
            found = tuple(src_state[key].shape) if key in src_state else "absent"
            raise ModelError(
                f"{source.name}: cannot copy weight {key!r} from the source (source shape "
                f"{found}, target {tuple(value.shape)})"
            )
        new[key] = src_state[key]
    target.net.load_state_dict(new)
    if refit_whitening != "off":
        if repr_changed:
            raise ConfigError(
                f"refit_whitening={refit_whitening!r} re-fits the source's own text adaptor; "
                f"model_options change the item representation from {_item_repr(source)!r} to "
                f"{_item_repr(target)!r} (the target's adaptor is new): leave it 'off'"
            )
        src_layers = dict(source.net.named_modules())
        refits = {}
        for name, mod in target.net.named_modules():
            if isinstance(mod, TextItemEmbedding):
                refits[name] = refit_whitening_(mod, src_layers[name].text, refit_whitening)
        if not refits:
            raise ModelError(
                f"{source.name}: refit_whitening={refit_whitening!r} needs a text item "
                f"representation (item_repr 'text' or 'id+text'); the source has item_repr="
                f"{getattr(source.config, 'item_repr', 'id')!r}"
            )
        info["refit_whitening"] = refits
    info["n_shared_items"] = int(len(shared_items(source.vocab, target.vocab, match_items)[0]))
    info["match_items"] = match_items
    info["target_specific"] = specific
    return target, info


def _plain_state(source: NeuralRecommender) -> dict[str, torch.Tensor]:
    """The source net's state as a plain net of its class holds it: LoRA updates of a model
    transferred with ``lora`` folded into their weights (they were dropped, silently, with
    what the first transfer learned); bottleneck adapters, which do not fold, refused."""
    import copy

    from warmrec.models.adapters import is_adapter_name, merge_and_unload

    state = source.net.state_dict()
    if not any(is_adapter_name(k) for k in state):
        return {k: v.detach().cpu() for k, v in state.items()}
    net = copy.deepcopy(source.net)
    merge_and_unload(net)
    left = [k for k in net.state_dict() if is_adapter_name(k)]
    if left:
        raise ModelError(
            f"{source.name}: the source carries bottleneck adapters ({left[0]}, ...; a model "
            "transferred with strategy 'adapters'), which cannot be folded into its weights: "
            "transfer from the model it was adapted from, or from one fine-tuned without them"
        )
    return {k: v.detach().cpu() for k, v in net.state_dict().items()}


INIT_OPTIONS: dict[str, tuple[str, ...]] = {
    "random": (),
    "mean": ("noise",),
    "popularity": ("noise", "overflow", "source_counts", "target_counts"),
    "text": ("noise", "top_k", "text_encoder", "source_titles", "target_titles"),
    "item2vec": (
        "noise", "item2vec_config", "target_vectors", "n_anchors", "ridge", "source_counts",
        "target_counts",
    ),
}  # fmt: skip
"""The ``init_options`` each init method reads (:func:`init_item_embeddings`' keywords)."""


# -- the API -------------------------------------------------------------------------------------
def _refit_mode(value: str | bool | None, strategy: str, source: Recommender) -> str:
    """``refit_whitening`` as a mode: None is ``"diag"`` for a zero-shot text source (its
    adaptor meets a catalogue it was not trained on, with nothing to re-train it; ``"diag"``,
    AdaBN's per-dimension statistics, was the best of the modes on one held-out half of
    ml-100k's catalogue; over three halves ``"off"``, ``"mean"`` and ``"diag"`` are within the
    halves' spread of each other and ``"full"`` the worst: ``benchmarks/results/mars.md``,
    zeroshot; ``"diag"`` is kept for catalogues whose text statistics are shifted, where
    ``"off"`` ranks near chance: ``tests/transfer/test_zeroshot.py``), else ``"off"``; True is
    ``"full"``."""
    if value is None:
        text = getattr(source.config, "item_repr", "id") != "id"
        return "diag" if strategy == "zeroshot" and text else "off"
    if isinstance(value, bool):
        return "full" if value else "off"
    return str(value)


TRANSFER_TRAINER = "model-default"
"""How :func:`transfer` resolves its trainer, kept in the keys of studies' run files: it once
took the training loop's defaults and now takes the target model's default trainer (as ``fit``
does), so a study refuses run files of the older resolution instead of reusing them."""


def transfer(
    source_model: NeuralRecommender,
    target_train: SequenceDataset,
    target_valid: EvalSet | None = None,
    *,
    strategy: str,
    init: str,
    trainer: Mapping[str, Any] | Any = None,
    max_len: int | None = None,
    position_init: str = "repeat",
    strategy_options: Mapping[str, Any] | None = None,
    init_options: Mapping[str, Any] | None = None,
    source_counts: np.ndarray | None = None,
    source_titles: Mapping[Any, str] | None = None,
    target_titles: Mapping[Any, str] | None = None,
    source_name: str | None = None,
    reset_domain: bool | None = None,
    refit_whitening: str | bool | None = None,
    model_options: Mapping[str, Any] | None = None,
    seed: int = 0,
    match_items: str = "auto",
) -> NeuralRecommender:
    """Transfer ``source_model`` to the target domain and train it (see the module docstring).

    ``strategy="zeroshot"`` trains nothing: a text-aware source (``item_repr="text"``) gets the
    target's item text through its encoder and adaptor, and is returned as it is (no target
    interaction enters the model; ``train_result`` is None). ``reset_domain``: the seen-item
    bias starts at 0 instead of the source's (see :func:`build_target_model`); None (default)
    is True for ``"zeroshot"`` (nothing on the target can correct the source's repeat habit:
    on MARS a movie source's negative bias pushes the learners' repeats down) and False
    otherwise.
    ``refit_whitening``: re-fit the text adaptor's whitening statistics on the target's item
    text (item text only; :func:`warmrec.models.text.refit_whitening`): ``"off"``, ``"mean"``,
    ``"diag"``, ``"full"`` (``True``); None (default) is ``"diag"`` for a zero-shot text
    source and ``"off"`` otherwise.
    ``model_options``: target model settings over the source's (module docstring, step 6).

    ``trainer``: :class:`~warmrec.training.loop.TrainerConfig` fields over the target model's
    :attr:`~warmrec.models.neural.NeuralRecommender.default_trainer` (as ``fit`` resolves them;
    its ``seed`` defaults to ``seed``); ``strategy_options``:
    :class:`~warmrec.transfer.strategies.StrategyOptions`;
    ``init_options``: keyword options of :func:`init_item_embeddings` (``noise``, ``overflow``,
    ``top_k``, ``text_encoder``, ``item2vec_config``, ``n_anchors``, ``ridge``, ...);
    ``source_counts`` defaults to ``source_model.meta.item_counts``; titles map raw ids to
    text (``init="text"``). Returns the trained target model (``train_result`` set).
    """
    from warmrec.training.loop import TrainerConfig
    from warmrec.training.loop import train as run_training

    refit = _refit_mode(refit_whitening, strategy, source_model)
    if reset_domain is None:
        reset_domain = strategy == "zeroshot"
    s_opts = build_config(StrategyOptions, {"seed": seed, **dict(strategy_options or {})})
    target, info = build_target_model(
        source_model,
        target_train,
        init=init,
        max_len=max_len,
        position_init=position_init,
        init_options=init_options,
        source_counts=source_counts,
        source_titles=source_titles,
        target_titles=target_titles,
        copy_weights=strategy != "scratch",
        reset_domain=reset_domain,
        zero_shot=strategy == "zeroshot",
        refit_whitening=refit,
        model_options=model_options,
        seed=seed,
        match_items=match_items,
    )
    apply_strategy(target, strategy, s_opts)  # zeroshot: every parameter frozen, as documented
    t_cfg = (
        trainer.model_dump(exclude_unset=True)
        if isinstance(trainer, TrainerConfig)
        else dict(trainer or {})
    )
    t_cfg.setdefault("seed", seed)
    cfg = type(target).trainer_config(t_cfg)  # the model's default trainer, as ``fit`` takes it
    if strategy != "zeroshot":
        target.meta.item_counts = target_train.item_counts().astype(np.int64).tolist()
    target.meta.transfer = {
        "source": {
            "model": source_model.name,
            "name": source_name,
            "n_items": source_model.vocab.n_ids,
            "max_len": _max_len(source_model.config),
        },
        "strategy": strategy,
        "strategy_options": _jsonable(config_dict(s_opts)),
        "init": _init_label(strategy, init),
        "init_options": _jsonable(dict(init_options or {})),
        "position_init": position_init,
        "max_len": _max_len(target.config),
        "n_shared_items": info["n_shared_items"],
        "match_items": match_items,
        "target_specific": info["target_specific"],
        "n_trainable": 0
        if strategy == "zeroshot"
        else int(sum(p.numel() for p in target.net.parameters() if p.requires_grad)),
        "reset_domain": reset_domain,
        "refit_whitening": refit,
        "model_options": _jsonable(dict(model_options or {})),
        "trainer": {} if strategy == "zeroshot" else _jsonable(config_dict(cfg)),
        "seed": seed,
    }
    if strategy == "zeroshot":
        target.train_result = None
        target.net.eval()
        return target
    target.train_result = run_training(target, target_train, target_valid, cfg, fresh=False)
    return target


def _init_label(strategy: str, init: str) -> str:
    """What started the target's item table, as recorded: a zero-shot target's items are its
    item text through the source's adaptor (no item table is initialised or trained)."""
    if strategy == "scratch":
        return "random (scratch)"
    if strategy == "zeroshot":
        return "item text (zero-shot)"
    return init


def pretrain(
    model_name: str,
    source_train: SequenceDataset,
    source_valid: EvalSet | None = None,
    model_config: Mapping[str, Any] | None = None,
    trainer: Mapping[str, Any] | Any = None,
) -> NeuralRecommender:
    """Fit a neural model on the source domain; stores ``meta.item_counts`` for transfer."""
    model = get_model(model_name, dict(model_config or {}))
    if not isinstance(model, NeuralRecommender):
        raise ModelError(f"pretrain needs a neural model, '{model_name}' is not one")
    model.fit(source_train, source_valid, trainer=trainer)
    model.meta.item_counts = source_train.item_counts().astype(np.int64).tolist()
    model.meta.role = "source"
    return model
