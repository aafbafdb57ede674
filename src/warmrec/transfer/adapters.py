"""Adapter-only directories: save the adapter/LoRA weights of a transferred model, and load
them back on top of their base model.

The adapters themselves (configs, layers, injection, merge/unload) are network code and live in
:mod:`warmrec.models.adapters`; this module is the transfer workflow's use of them. An adapter
directory is an artifact of kind ``"adapter"`` (:mod:`warmrec.artifacts`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from warmrec.artifacts import (
    CONFIG_FILE,
    USERS_FILE,
    VOCAB_FILE,
    build_model,
    freeze,
    inside,
    read_info,
    read_vocab,
    read_weights,
    write_artifact,
)
from warmrec.config import config_dict
from warmrec.errors import ModelError
from warmrec.models.adapters import (
    adapter_configs,
    adapter_state_dict,
    inject_adapters,
    inject_lora,
    is_adapter_name,
    load_adapter_state,
)
from warmrec.models.base import Recommender


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch(name, p) for p in patterns)


def save_adapters(model: Any, path: str | Path, *, include: Sequence[str] | None = None) -> Path:
    """Write the adapter-only weights of a NeuralRecommender to directory ``path``.

    The directory is an artifact of kind ``"adapter"`` (:mod:`warmrec.artifacts`):
    ``model.safetensors`` holds the adapter/LoRA weights plus the state entries matching the
    ``include`` glob patterns; by default ``include`` is every non-adapter parameter that trains
    (``requires_grad``) plus the entries a transfer made target-specific
    (``model.meta.transfer.target_specific``: item tables, users, cropped positions...).
    ``config.json`` holds the model name and config, the adapter/LoRA configs and the meta; the
    vocabularies are saved when target-specific tables are included.
    """
    net = model.net
    if net is None:
        raise ModelError(f"model '{model.name}' has no network")
    a_cfg, l_cfg = adapter_configs(net)
    if a_cfg is None and l_cfg is None:
        raise ModelError(f"model '{model.name}' has no adapters or LoRA to save")
    if include is None:
        trainable = [n for n, p in net.named_parameters() if p.requires_grad]
        transfer = model.meta.transfer
        specific = list(transfer.target_specific) if transfer is not None else []
        include = [n for n in trainable if not is_adapter_name(n)] + specific
    state = net.state_dict()
    out = adapter_state_dict(net)
    extra = sorted(k for k in state if not is_adapter_name(k) and _matches(k, include))
    out.update({k: state[k].detach() for k in extra})
    return write_artifact(
        path,
        kind="adapter",
        model=model.name,
        config=config_dict(model.config),
        weights=out,
        meta=model.meta,
        vocab=model.vocab if extra else None,
        user_vocab=model.user_vocab if extra else None,
        adapter=config_dict(a_cfg) if a_cfg is not None else None,
        lora=config_dict(l_cfg) if l_cfg is not None else None,
        extra_keys=extra,
        frozen=[n for n, p in net.named_parameters() if not p.requires_grad],
    )


def load_adapters(base_model_dir: str | Path, adapter_dir: str | Path) -> Any:
    """A model = the base model directory's weights + the adapter directory's weights.

    The network is built from the adapter directory's model config (and vocabulary, when saved),
    filled with the base weights whose shapes fit, the adapters are injected and every
    adapter-file entry loaded. Where the adapter directory saved the target's vocabulary, its
    users are its own (none without a ``users.json``: a target without users), never the base's.
    Raises :class:`ModelError` naming the adapter directory when the two do not fit or some
    weight is in neither.
    """
    art = read_info(adapter_dir)
    a_dir = art.path
    if art.info.kind != "adapter":
        raise ModelError(f"{a_dir}: a model directory, not an adapter directory")
    base = Recommender.load(base_model_dir)
    if art.info.model != base.name:
        raise ModelError(f"{a_dir}: adapters for a '{art.info.model}' model, base is '{base.name}'")
    model = build_model(art)
    vocab = read_vocab(inside(a_dir, VOCAB_FILE), art.info.vocab, required=False)
    users = read_vocab(inside(a_dir, USERS_FILE), art.info.users, required=False)
    if vocab is not None:  # the target's vocabularies: no user record means no users
        model.vocab, model.user_vocab = vocab, users
    else:  # adapters only: the base model's vocabularies
        model.vocab, model.user_vocab = base.vocab, base.user_vocab
    model.device = base.device
    state = read_weights(art.weights_path, art.info.weights_sha256)
    try:
        _fill(model, base, state, a_dir, art)
    except (RuntimeError, ValueError, KeyError, IndexError) as e:
        raise ModelError(
            f"{a_dir}: the adapter folder does not fit its base model {base_model_dir}: "
            + " ".join(line.strip() for line in str(e).splitlines() if line.strip())
        ) from None
    freeze(art, model)  # what did not train when the adapters were saved (the base's weights)
    model.net.eval()
    return model


def _n(vocab: Any) -> int:
    """Ids of a vocabulary (padding excluded); 0 for none."""
    return len(vocab) - 1 if vocab is not None else 0


def _fill(model: Any, base: Any, state: dict[str, Any], a_dir: Path, art: Any) -> None:
    """Build ``model``'s net, fill it with the base's fitting weights and the adapter file's.
    Everything is checked on a net built on the meta device first (no memory:
    :meth:`~warmrec.models.neural.NeuralRecommender.meta_net`), so an adapter folder whose
    config was edited to huge sizes is one error, not a hang or an exhausted memory."""
    base_state = base.net.state_dict()
    try:
        own = model.meta_net(len(base_state) + len(state)).state_dict()
    except ModelError as e:
        raise ModelError(f"{a_dir / CONFIG_FILE}: {e}") from None
    fill = {
        k: base_state[k] for k in own if k in base_state and base_state[k].shape == own[k].shape
    }
    fill.update({k: v for k, v in state.items() if k in own})
    bad = [k for k, v in fill.items() if v.shape != own[k].shape]
    if bad:
        found = "; ".join(
            f"{k!r} {tuple(fill[k].shape)}, needs {tuple(own[k].shape)}" for k in bad[:4]
        )
        raise ModelError(
            f"{a_dir}: weights of the adapter file do not fit the '{model.name}' model of its "
            f"{CONFIG_FILE} and vocabularies ({_n(model.vocab)} items, {_n(model.user_vocab)} "
            f"users): {found}" + (f" (and {len(bad) - 4} more)" if len(bad) > 4 else "")
        )
    uncovered = sorted(k for k in own if k not in fill)
    if uncovered:
        raise ModelError(
            f"{a_dir}: weights {uncovered[:5]} are neither in the base model (same shape) nor "
            "in the adapter file; save the adapters with include= patterns that cover them"
        )
    del own  # the meta net's state holds real copies of data tensors (item text): not kept

    def inject(net: Any) -> None:
        if art.info.adapter is not None:
            inject_adapters(net, art.info.adapter)
        if art.info.lora is not None:
            inject_lora(net, art.info.lora)
        try:
            load_adapter_state(net, state)
        except ModelError as e:
            raise ModelError(f"{art.weights_path}: {e}") from None

    model.meta_net(len(base_state) + len(state), inject)  # an edited bottleneck or rank
    model.net = model.build_net(model.n_items)
    model.net.load_state_dict(fill)
    inject(model.net)
