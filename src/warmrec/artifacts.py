"""THE directory format of models, checkpoints, adapters and meta-learners: one writer, one reader.

Every such directory holds:

``config.json``
    :class:`ArtifactInfo`: format version (:data:`FORMAT_VERSION`), ``kind`` (``"model"``,
    ``"checkpoint"`` (a model plus its trainer state; loads as the model at its last epoch),
    ``"adapter"`` or ``"meta"``), model name, model config, warmrec version, the typed :class:`ModelMeta`
    (how the data was read, the split, transfer provenance, feature encodings, ...), for each
    vocabulary file its number of ids and SHA-256, so a vocabulary changed after saving is refused,
    and (``frozen``, only where there are some) the network parameters that did not train when
    saved (a transferred model's frozen encoder), frozen again when it is loaded.
``model.safetensors``
    The weights (or statistics) by name; an adapter directory holds only the adapter weights
    (plus the target-specific entries listed in ``extra_keys``). ``config.json`` records the
    file's SHA-256 (``weights_sha256``; directories saved before it was recorded load without
    the check).
``vocab.json`` [``users.json``]
    The item (and user) vocabulary (:class:`~warmrec.data.vocab.ItemVocab`).

A checkpoint is a model directory with two more files (``trainer_state.*``, written by
:mod:`warmrec.training.checkpoint` through the ``extra`` hook of :func:`write_artifact`).

A **meta** directory (kind ``"meta"``, :class:`~warmrec.meta.maml.MetaModel`) is the
adapted-from model's directory plus ``meta.json`` (the meta-learner's config) and
``meta.safetensors`` (learned inner learning rates, loss network, training item counts):
:func:`write_meta_files` / :func:`read_meta_files`. :func:`load_model` loads it as what it is,
a meta-learner that adapts to each history before scoring (its class is named in
:data:`KIND_CLASSES` and imported by name, as the model registry does); asked for a plain model
class (``SASRec.load(dir)``) it refuses in one line. A directory written before the kind
existed (kind ``"model"`` with a ``meta.json``) is read as kind ``"meta"``. Only
:func:`load_base_model` returns the un-adapted base, by name and on purpose.

Writes go through :func:`warmrec.io.atomic_dir` (a temporary directory renamed into place), and
every file of the directory gets the same permissions (``0666`` less the umask; safetensors
writes through a private temporary file). Nothing is read with pickle.

Reading (:func:`read_info`, :func:`read_weights`, :func:`read_vocab`, :func:`load_model`) checks
each file and turns every problem -- no such directory, invalid JSON, unknown model name, weights
that are not safetensors (a pickle, a truncated file), weights that do not fit the config, a
missing or edited vocabulary, edited weights (checksum), a ``meta.item_counts`` that does not fit
the vocabulary -- into one :class:`~warmrec.errors.ModelError` line naming the file. A neural
model's config is checked against the weights before its net is allocated
(:meth:`~warmrec.models.neural.NeuralRecommender.set_state`): an edited ``n_layers`` or a huge
``d`` / ``max_len`` is that error too, not a hang or an exhausted memory. Only files
inside the directory are read (:func:`inside`, for every file: ``config.json``, weights,
vocabularies, a meta directory's files, an adapter directory's, a checkpoint's trainer state): a
``weights`` name in ``config.json`` that is a path, or a file that is a symbolic link leading
outside the directory, is refused.

Each file is opened by its name, so a directory another process replaces while it is read (a
save swapping in its new folder: ``warmrec serve`` reloading while a training run saves) could
give ``config.json`` of one save and the weights of the next, whose checksums differ:
:func:`load_model` reads it again where the directory changed during the read
(:func:`read_consistent`), and says so in one line where it keeps changing.

Format 1 (before the typed meta) is still read: its ``meta`` dict is converted to
:class:`ModelMeta` (relative data paths resolved against the working directory, unknown keys
dropped with a warning) and its vocabularies are loaded without a checksum.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from warmrec.data.vocab import ItemVocab
from warmrec.errors import ConfigError, DataError, ModelError, WarmrecError
from warmrec.io import _mode, atomic_dir, recover_dir

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
VOCAB_FILE = "vocab.json"
USERS_FILE = "users.json"
LEGACY_ADAPTER_CONFIG = "adapter_config.json"  # format-1 adapter directories
LEGACY_ADAPTER_WEIGHTS = "adapters.safetensors"
META_CONFIG_FILE = "meta.json"  # meta directories: the meta-learner's config
META_WEIGHTS_FILE = "meta.safetensors"  # and its learned tensors
Kind = Literal["model", "checkpoint", "adapter", "meta"]
KIND_CLASSES: dict[str, str] = {"meta": "warmrec.meta.maml:MetaModel"}
"""Kinds that load as their own class (``module:qualname``, imported when loaded)."""

if TYPE_CHECKING:  # torch is imported where weights are read or written, not to read a meta
    import torch


# -- the typed meta ------------------------------------------------------------------------------
class _Record(BaseModel):
    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, ser_json_inf_nan="constants"
    )


class DataSource(_Record):
    """How a log was read: enough to read it again from any working directory."""

    path: str
    """Absolute path of the file or folder (or a dataset name that is not a path)."""
    format: str | None = None
    """``--format`` (None: detected from the path)."""
    columns: dict[str, str] | None = None
    """``--col`` mapping, canonical name -> file column."""
    no_timestamp: bool = False
    """``--no-timestamp``: file order is the event order."""
    order: str | None = None
    """``--order``: the column giving the event order."""
    time_unit: str | None = None
    """``--time-unit`` of the timestamps, where given."""
    sep: str | None = None
    """``--sep``: the field separator of a delimited text file, where given."""
    names: list[str] | None = None
    """``--names``: the columns of a file without a header line, where given."""
    items: str | None = None
    """``--items``: the item feature file read beside the log, where given (absolute)."""
    users: str | None = None
    """``--users``: the user feature file read beside the log, where given (absolute)."""
    duplicates: str = "keep"
    """``--drop-duplicates``: ``"drop"`` where the exact duplicate events were dropped."""
    fingerprint: str | None = None
    """The log's size, modification time and content hash when it was read
    (:func:`warmrec.io.fingerprint`):
    reading the record's data again warns where they differ (the split may then differ)."""

    @classmethod
    def of(
        cls,
        path: str | Path,
        *,
        format: str | None = None,
        columns: Mapping[str, str] | None = None,
        no_timestamp: bool = False,
        order: str | None = None,
        time_unit: str | None = None,
        sep: str | None = None,
        names: Sequence[str] | None = None,
        items: str | Path | None = None,
        users: str | Path | None = None,
    ) -> DataSource:
        """A record of reading ``path`` (and the feature files ``items`` / ``users``) with these
        options; an existing path is made absolute, as typed (symbolic links are kept, not
        resolved: messages and ``best.toml`` show the user's path)."""
        from warmrec.io import typed_absolute

        return cls(
            path=typed_absolute(path),
            items=None if items is None else typed_absolute(items),
            users=None if users is None else typed_absolute(users),
            format=format,
            columns=dict(columns) if columns else None,
            no_timestamp=bool(no_timestamp),
            order=order,
            time_unit=time_unit,
            sep=sep,
            names=None if names is None else list(names),
        )

    def read_options(self) -> dict[str, Any]:
        """The ``[data]`` config section that reads this source again."""
        return self.model_dump(exclude_none=True, exclude={"fingerprint"})


class RunInfo(_Record):
    """What the run that made a model did (written by
    :func:`warmrec.experiments.spec.fit_run` for every command): the whole
    :class:`~warmrec.experiments.spec.RunSpec` as run, data, split, fit time, validation metrics."""

    data: DataSource | None = None
    split: dict[str, Any] = {}
    """Split method and options (``{"method": "loo", ...}``)."""
    spec: dict[str, Any] | None = None
    """The run's spec (``RunSpec.model_dump``, split resolved, data path absolute); None in
    models saved before the spec was recorded (their data and split are rebuilt from the
    fields above)."""
    fit_seconds: float | None = None
    valid: dict[str, float] = {}
    """Validation metrics of the saved model."""
    n_valid: int = 0
    """Validation examples scored."""
    loss: str | None = None
    """The training loss the model used (``loss = "auto"`` resolved by catalogue size)."""
    trainer: dict[str, Any] | None = None
    """The training loop's settings as run (the model's default trainer under the spec's
    ``[train]``, every field resolved); None for models without the loop and models saved
    before it was recorded."""
    epochs_run: int | None = None
    """Epochs the loop ran (None: no loop, or saved before it was recorded)."""
    best_epoch: int | None = None
    """The validated epoch whose weights were kept (``restore_best``)."""
    stopped_early: bool | None = None
    """Whether early stopping (``patience``) ended training before the epoch cap."""
    choices: dict[str, str] = {}
    """What the fit chose on its own (:meth:`warmrec.models.base.Recommender.fit_choices`)."""
    refit: dict[str, Any] | None = None
    """Where the saved model was fitted again on the whole log after its settings were chosen
    on validation (``--refit-all``): the events and sequences it trained on, the epochs (those
    the validated run kept) and its fit time; ``valid`` and the loop facts above are the
    validated run's. None: the model is the validated fit."""


class ReptileInfo(_Record):
    """Reptile pre-training: its :class:`~warmrec.meta.ReptileConfig` fields plus the outcome."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)
    n_tasks: int | None = None
    best_iteration: int | None = None


class TransferSource(_Record):
    """The source model a transferred model started from."""

    model: str
    name: str | None = None
    """The source's directory or label, where known."""
    n_items: int
    max_len: int | None = None
    pretraining: str | None = None
    """``"reptile"`` when the source was meta-trained."""
    reptile: ReptileInfo | None = None


class TransferInfo(_Record):
    """Provenance of a transferred model (:func:`warmrec.transfer.transfer`)."""

    source: TransferSource
    strategy: str
    strategy_options: dict[str, Any] = {}
    init: str
    init_options: dict[str, Any] = {}
    position_init: str = "repeat"
    max_len: int | None = None
    n_shared_items: int = 0
    """Target items that copied a source item's rows (matched by ``match_items``)."""
    match_items: str = "ids"
    """How items were matched across domains (``auto``, ``ids``, ``none``; model files
    written before the option matched every shared raw id: ``ids``)."""
    target_specific: list[str] = []
    """State entries made for the target (item tables, users, cropped positions, ...)."""
    n_trainable: int = 0
    reset_domain: bool = False
    """The seen-item bias started at 0, not at the source's value."""
    refit_whitening: str = "off"
    """The text adaptor's whitening statistics re-fitted on the target's item text
    (``"off"``, ``"mean"``, ``"diag"``, ``"full"``)."""
    model_options: dict[str, Any] = {}
    """Target model settings over the source's (e.g. ``item_repr``)."""
    trainer: dict[str, Any] = {}
    """The resolved trainer settings the target trained with (the target model's default
    trainer under the caller's; empty for ``zeroshot`` and in model files written before it
    was recorded)."""
    seed: int = 0


class FeatureSpecRecord(_Record):
    """One encoded side-feature column (:class:`~warmrec.models.features.FeatureSpec`)."""

    name: str
    kind: str
    levels: list[str] = []
    edges: list[float] = []
    width: int = 1


class FeatureSide(_Record):
    """The encoded item or user features: specs, and the asked-for columns that were absent."""

    specs: list[FeatureSpecRecord] = []
    skipped: list[str] = []


class FeaturesMeta(_Record):
    """Side-feature encodings of a model (:meth:`SideFeatures.to_meta`)."""

    item: FeatureSide | None = None
    user: FeatureSide | None = None


class TextMeta(_Record):
    """The item-text vectors of a text-aware model (:mod:`warmrec.models.text`): the encoder, the
    vector width, the item fields the texts were made of, how many items had text, and the
    SHA-256 of the texts and encoder (the cache key). The vectors themselves are weights."""

    encoder: str
    dim: int
    fields: list[str] = []
    n_with_text: int = 0
    sha256: str = ""


class ModelMeta(_Record):
    """What a model records besides its config and weights (``model.meta``); saved in
    ``config.json``. Every field is optional; assignments are validated."""

    run: RunInfo | None = None
    transfer: TransferInfo | None = None
    features: FeaturesMeta | None = None
    text: TextMeta | None = None
    item_titles: list[tuple[int | str, str]] | None = None
    """``[raw id, title]`` pairs of the training items (for text-similarity transfer)."""
    item_counts: list[int] | None = None
    """Training interaction count per item index (for popularity-matched transfer)."""
    role: str | None = None
    """``"source"`` for a model pre-trained to be transferred."""
    pretrain_seconds: float | None = None
    reptile: ReptileInfo | None = None
    history: list[dict[str, Any]] | None = None
    """Per-epoch records of models that train outside the loop (item2vec)."""
    best_epoch: int | None = None
    kept_epoch: int | None = None

    @classmethod
    def from_legacy(cls, meta: Mapping[str, Any] | None, where: str = "") -> ModelMeta:
        """Convert a format-1 ``meta`` dict (see the module docstring)."""
        d = dict(meta or {})
        unknown = sorted(set(d) - set(cls.model_fields))
        if unknown:
            warnings.warn(
                f"{where}: meta key(s) {', '.join(unknown)} are not part of ModelMeta; dropped",
                stacklevel=3,
            )
            for k in unknown:
                d.pop(k)
        run = d.get("run")
        if isinstance(run, Mapping) and isinstance(run.get("data"), Mapping):
            data = dict(run["data"])
            if "path" in data:
                p = Path(str(data["path"])).expanduser()
                data["path"] = str(p if p.is_absolute() else Path.cwd() / p)
                d["run"] = {**run, "data": data}
            else:
                d["run"] = {**run, "data": None}
        return cls.model_validate(d)


class VocabRecord(_Record):
    """A vocabulary file as saved: its number of ids and the SHA-256 of its bytes."""

    n_ids: int
    sha256: str


class ArtifactInfo(_Record):
    """The content of ``config.json`` (see the module docstring)."""

    format: int = FORMAT_VERSION
    kind: Kind = "model"
    model: str
    config: dict[str, Any] = {}
    warmrec_version: str = "?"
    meta: ModelMeta = ModelMeta()
    weights: str = WEIGHTS_FILE
    weights_sha256: str | None = None
    """SHA-256 of the weights file (None: saved by a warmrec that did not record it)."""
    vocab: VocabRecord | None = None
    users: VocabRecord | None = None
    adapter: dict[str, Any] | None = None
    """Bottleneck-adapter config (adapter directories)."""
    lora: dict[str, Any] | None = None
    """LoRA config (adapter directories)."""
    extra_keys: list[str] = []
    """Non-adapter state entries an adapter directory carries."""
    frozen: list[str] = []
    """Network parameters that did not train when the model was saved (``requires_grad``
    false: a transferred model's frozen encoder, a zero-shot model's every weight); frozen
    again when it is loaded, so that training it further (``train(..., fresh=False)``,
    ``meta_train``) or ``save_adapters`` treat it as before saving. Empty in directories
    saved before it was recorded (everything loads trainable)."""

    @field_validator("weights")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if not v or v in (".", "..") or "/" in v or "\\" in v or "\x00" in v:
            raise ValueError(f"expected a file name inside the model directory, found {v!r}")
        return v

    @field_validator("format")
    @classmethod
    def _known_format(cls, v: int) -> int:
        if v not in READABLE_FORMATS:
            raise ValueError(f"format {v} is not one this warmrec reads ({READABLE_FORMATS})")
        return v


# -- writing -------------------------------------------------------------------------------------
def same_modes(folder: Path) -> None:
    """Give every file under ``folder`` mode ``0666`` less the umask (what ``open`` gives)."""
    mode = _mode(0o666)
    for f in folder.rglob("*"):
        if f.is_file() and not f.is_symlink():
            f.chmod(mode)


def save_weights(state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Write tensors as safetensors (contiguous CPU copies)."""
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(path))


def file_sha256(path: Path) -> str:
    """The SHA-256 (hex) of a file's bytes, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_vocab(vocab: ItemVocab, path: Path) -> VocabRecord:
    data = json.dumps(vocab.to_dict()).encode("utf-8")
    path.write_bytes(data)
    return VocabRecord(n_ids=vocab.n_ids, sha256=hashlib.sha256(data).hexdigest())


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=str)


def check_model_target(path: str | Path) -> None:
    """Refuse a ``path`` that writing a model directory would destroy: the directory replaces
    ``path`` as a whole, so an existing folder must be empty or an earlier warmrec model directory
    (a ``config.json`` warmrec wrote), and a file is never replaced. ``--out ~`` must not delete
    a home folder, nor ``save("results.csv")`` a file."""
    p = Path(path)
    if os.path.lexists(p) and not os.path.isdir(p):
        raise ConfigError(
            f"{p}: refusing to replace it with a model directory (expected a new folder, an "
            "empty one or an earlier model directory, found a file)"
        )
    try:
        if not p.is_dir() or not any(p.iterdir()):
            return
    except OSError:
        return  # unreadable: the write itself reports it
    for name in (CONFIG_FILE, LEGACY_ADAPTER_CONFIG):
        try:
            raw = parse_json((p / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(raw, dict) and (
            "warmrec_version" in raw or (raw.get("format") in READABLE_FORMATS and "model" in raw)
        ):
            return
    raise ConfigError(
        f"{p}: refusing to replace it with a model directory (expected a new folder, an empty one "
        "or an earlier model directory, found a folder holding other files)"
    )


def write_artifact(
    path: str | Path,
    *,
    model: str,
    config: Mapping[str, Any],
    weights: Mapping[str, torch.Tensor],
    meta: ModelMeta | None = None,
    vocab: ItemVocab | None = None,
    user_vocab: ItemVocab | None = None,
    kind: Kind = "model",
    adapter: Mapping[str, Any] | None = None,
    lora: Mapping[str, Any] | None = None,
    extra_keys: list[str] | tuple[str, ...] = (),
    extra: Callable[[Path], None] | None = None,
    frozen: Sequence[str] = (),
) -> Path:
    """Write one artifact directory atomically (see the module docstring); returns its path.

    ``extra(tmp)`` may add files to the temporary directory before it is renamed into place.
    """
    from warmrec._version import __version__

    check_model_target(path)
    with atomic_dir(path) as tmp:
        save_weights(weights, tmp / WEIGHTS_FILE)
        v_rec = _write_vocab(vocab, tmp / VOCAB_FILE) if vocab is not None else None
        u_rec = _write_vocab(user_vocab, tmp / USERS_FILE) if user_vocab is not None else None
        info = ArtifactInfo(
            kind=kind,
            model=model,
            config=dict(config),
            warmrec_version=__version__,
            meta=meta if meta is not None else ModelMeta(),
            weights_sha256=file_sha256(tmp / WEIGHTS_FILE),
            vocab=v_rec,
            users=u_rec,
            adapter=dict(adapter) if adapter is not None else None,
            lora=dict(lora) if lora is not None else None,
            extra_keys=list(extra_keys),
            frozen=list(frozen),
        )
        record = info.model_dump(mode="python")
        if not record["frozen"]:  # as before it was recorded: an older warmrec reads the file
            del record["frozen"]
        (tmp / CONFIG_FILE).write_text(_json(record))
        if extra is not None:
            extra(tmp)
        same_modes(tmp)
    return Path(path)


def model_weights(model: Any) -> dict[str, torch.Tensor]:
    """A Recommender's ``get_state()`` as contiguous CPU tensors."""
    import numpy as np
    import torch

    out = {}
    for k, v in model.get_state().items():
        t = torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v
        out[k] = t.detach().cpu().contiguous()
    return out


def save_model(
    model: Any,
    path: str | Path,
    *,
    extra: Callable[[Path], None] | None = None,
    kind: Kind = "model",
) -> Path:
    """Write a fitted Recommender's directory (``Recommender.save``); ``kind="meta"`` with an
    ``extra`` that writes :func:`write_meta_files` for a meta-learner over ``model``."""
    from warmrec.config import config_dict

    model._check_fitted()
    a_cfg = l_cfg = None
    frozen: list[str] = []
    if getattr(model, "net", None) is not None:  # neural models: adapters travel with the model
        from warmrec.models.adapters import adapter_configs

        a_cfg, l_cfg = adapter_configs(model.net)
        frozen = [n for n, p in model.net.named_parameters() if not p.requires_grad]
    return write_artifact(
        path,
        model=model.name,
        config=config_dict(model.config),
        weights=model_weights(model),
        meta=model.meta,
        vocab=model.vocab,
        user_vocab=model.user_vocab,
        adapter=config_dict(a_cfg) if a_cfg is not None else None,
        lora=config_dict(l_cfg) if l_cfg is not None else None,
        extra=extra,
        kind=kind,
        frozen=frozen,
    )


def write_meta_files(
    folder: Path, config: Mapping[str, Any], state: Mapping[str, torch.Tensor]
) -> None:
    """Write a meta-learner's ``meta.json`` and ``meta.safetensors`` into ``folder`` (the
    temporary directory of :func:`save_model`'s ``extra`` hook)."""
    import torch

    # safetensors needs at least one tensor: an empty marker entry, dropped when read
    save_weights(dict(state) or {"_none": torch.zeros(0)}, folder / META_WEIGHTS_FILE)
    (folder / META_CONFIG_FILE).write_text(_json(dict(config)))


# -- reading -------------------------------------------------------------------------------------
def parse_json(text: str | bytes) -> Any:
    """``json.loads``, with a document nested deeper than the parser allows (``[[[[...``) a
    ``ValueError`` like any other invalid JSON, not a ``RecursionError`` (whose text names
    Python's recursion limit): every reader of a model file refuses it in one line."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("it nests deeper than the JSON parser allows") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _validation_text(e: ValidationError, prefix: str = "") -> str:
    err = e.errors()[0]
    loc = ".".join([*([prefix] if prefix else []), *(str(x) for x in err["loc"])]) or "(top level)"
    more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
    return f"field '{loc}': {err['msg']}{more}"


@dataclass
class Artifact:
    """An artifact directory's ``config.json``, read and checked (weights are read on demand)."""

    path: Path
    info: ArtifactInfo
    legacy: bool = False

    @property
    def weights_path(self) -> Path:
        return inside(self.path, self.info.weights)


def inside(folder: Path, name: str) -> Path:
    """``folder / name``, refused (one line) when it leads outside ``folder`` (a symbolic link
    to elsewhere): only files inside a model directory are read."""
    p = folder / name
    try:
        p.resolve().relative_to(folder.resolve())
    except ValueError:
        raise ModelError(
            f"{p}: leads outside the model directory (to {p.resolve()}); "
            "only files inside it are read"
        ) from None
    return p


def read_info(path: str | Path) -> Artifact:
    """Read and check ``<path>/config.json`` (or a format-1 adapter's ``adapter_config.json``).

    A directory a killed writer left moved aside is renamed back first (:func:`recover_dir`)."""
    p = recover_dir(path)
    if not p.is_dir():
        if p.exists():  # m/model.safetensors: one level too deep, not a mistyped path
            raise ModelError(
                f"{p}: not a warmrec model directory (found a file; a model directory holds "
                f"{CONFIG_FILE}, {WEIGHTS_FILE} and {VOCAB_FILE})"
            )
        raise ModelError(f"{p}: not a warmrec model directory (no such directory)")
    cfg_path = p / CONFIG_FILE
    legacy_adapter = not os.path.lexists(cfg_path) and (p / LEGACY_ADAPTER_CONFIG).is_file()
    if legacy_adapter:
        cfg_path = p / LEGACY_ADAPTER_CONFIG
    cfg_path = inside(p, cfg_path.name)
    if not cfg_path.is_file():
        raise ModelError(f"{p}: not a warmrec model directory (no {CONFIG_FILE})")
    try:
        raw = parse_json(cfg_path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ModelError(f"{cfg_path}: not a text file ({e.reason})") from e
    except ValueError as e:
        raise ModelError(f"{cfg_path}: invalid JSON: {e}") from e
    if not isinstance(raw, dict):
        raise ModelError(f"{cfg_path}: expected a JSON object, found {type(raw).__name__}")
    legacy = raw.get("format") == 1
    if legacy:
        raw = dict(raw)
        meta = raw.get("meta")
        if meta is not None and not isinstance(meta, dict):  # dict(meta) raised a TypeError
            raise ModelError(
                f"{cfg_path}: field 'meta': expected an object, found {type(meta).__name__}"
            )
        try:
            raw["meta"] = ModelMeta.from_legacy(meta, str(cfg_path)).model_dump()
        except ValidationError as e:
            raise ModelError(f"{cfg_path}: {_validation_text(e, 'meta')}") from None
        if legacy_adapter:
            raw["kind"] = "adapter"
            raw["weights"] = LEGACY_ADAPTER_WEIGHTS
    try:
        info = ArtifactInfo.model_validate(raw)
    except ValidationError as e:
        raise ModelError(f"{cfg_path}: {_validation_text(e)}") from None
    _check_adapter_configs(info, cfg_path)
    return Artifact(p, info, legacy)


def _check_adapter_configs(info: ArtifactInfo, cfg_path: Path) -> None:
    """The ``adapter`` and ``lora`` configs of ``config.json``, checked as their config models
    (one line naming the file and the field, e.g. ``field 'adapter.bottleneck'``)."""
    if info.adapter is None and info.lora is None:
        return
    from warmrec.models.adapters import AdapterConfig, LoraConfig

    for name, cls in (("adapter", AdapterConfig), ("lora", LoraConfig)):
        value = getattr(info, name)
        if value is None:
            continue
        try:
            cls.model_validate(value)
        except ConfigError as e:  # "AdapterConfig.bottleneck: expected ..., found 0"
            text, prefix = str(e), cls.__name__
            head, sep, rest = text.partition(": ")
            if sep and head.startswith(f"{prefix}.") and " " not in head:
                detail = f"field '{name}{head[len(prefix) :]}': {rest}"
            else:  # an unknown key: "unknown key 'x' for AdapterConfig; valid keys: ..."
                detail = f"field '{name}': {text.replace(prefix, repr(name))}"
            raise ModelError(f"{cfg_path}: {detail}") from None


def read_weights(path: str | Path, sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Load a safetensors file; a pickle, a truncated or otherwise broken file is one error, and
    so is a file whose SHA-256 differs from ``sha256`` (when given).

    The file is read into memory, not mapped: tensors backed by a mapping of the file (what
    ``safetensors.torch.load_file`` returns) kill the process with SIGBUS when the file is
    truncated or rewritten in place while a model (a served one) still holds them."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{p}: missing (the weights of the directory)")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ModelError(f"{p}: cannot read the weights ({_first_line(e)})") from None
    try:
        state = load(data)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        head = data[:2]
        if head == b"PK" or (
            head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")
        ):
            raise ModelError(
                f"{p}: a pickle / torch.save file, not safetensors; warmrec never loads pickles"
            ) from None
        raise ModelError(
            f"{p}: not a valid safetensors file, truncated or damaged ({len(data)} bytes; "
            f"{_first_line(e)})"
        ) from None
    if sha256 is not None:  # after parsing, so a pickle or a truncated file is named as such
        digest = hashlib.sha256(data).hexdigest()
        if digest != sha256:
            raise ModelError(
                f"{p}: checksum {digest[:12]}... differs from the {sha256[:12]}... recorded in "
                f"{CONFIG_FILE} (the file was changed after saving)"
            )
    return state


def read_vocab(path: str | Path, record: VocabRecord | None, *, required: bool) -> ItemVocab | None:
    """Load a vocabulary file and check it against its record in ``config.json``."""
    p = Path(path)
    if not p.is_file():
        if required or record is not None:
            raise ModelError(f"{p}: missing (the directory's vocabulary)")
        return None
    data = p.read_bytes()
    try:
        vocab = ItemVocab.from_dict(parse_json(data))
    except (ValueError, KeyError, TypeError, DataError) as e:
        raise ModelError(f"{p}: not a valid vocabulary: {_first_line(e)}") from None
    if record is not None:
        if vocab.n_ids != record.n_ids:
            raise ModelError(
                f"{p}: {vocab.n_ids} ids, {CONFIG_FILE} records {record.n_ids} "
                "(the file was changed after saving)"
            )
        digest = hashlib.sha256(data).hexdigest()
        if digest != record.sha256:
            raise ModelError(
                f"{p}: checksum {digest[:12]}... differs from the {record.sha256[:12]}... "
                f"recorded in {CONFIG_FILE} (the file was changed after saving)"
            )
    return vocab


def _saved_config(config: Any) -> Any:
    """A saved model's config as it trained: ``in_batch = true`` with loss ``"bce"`` /
    ``"gbce"`` (refused for new configs since it was ignored: those losses use the sampled
    negatives alone) becomes false, in nested member configs too, so that a model an earlier
    warmrec saved with it still loads, unchanged."""
    from warmrec.models.settings import IN_BATCH_LOSSES

    if isinstance(config, Mapping):
        out = {k: _saved_config(v) for k, v in config.items()}
        loss = out.get("loss")
        if out.get("in_batch") is True and isinstance(loss, str):
            out["in_batch"] = loss.lower() in IN_BATCH_LOSSES  # what check_in_batch refuses
        return out
    if isinstance(config, list):
        return [_saved_config(v) for v in config]
    return config


def build_model(art: Artifact) -> Any:
    """An unfitted model of the directory's class and config (errors name ``config.json``)."""
    from warmrec.registry import model_class

    cfg_path = art.path / CONFIG_FILE
    try:
        klass = model_class(art.info.model)
    except ModelError as e:
        raise ModelError(f"{cfg_path}: {e}") from None
    try:
        model = klass(_saved_config(art.info.config))
    except (WarmrecError, TypeError, ValueError) as e:
        raise ModelError(
            f"{cfg_path}: invalid '{art.info.model}' config: {_first_line(e)}"
        ) from None
    model.meta = art.info.meta.model_copy(deep=True)
    return model


def load_vocabs(art: Artifact, model: Any) -> None:
    """Give ``model`` the directory's vocabularies (checked)."""
    model.vocab = read_vocab(inside(art.path, VOCAB_FILE), art.info.vocab, required=True)
    model.user_vocab = read_vocab(inside(art.path, USERS_FILE), art.info.users, required=False)


def check_item_counts(art: Artifact, model: Any) -> None:
    """``meta.item_counts`` (the popularity fallback's ranking), when present, holds one
    non-negative count per item index (padding included); anything else was edited."""
    counts = model.meta.item_counts
    if counts is None or model.vocab is None:
        return
    n = len(model.vocab)
    bad = next((c for c in counts if c < 0), None)
    if len(counts) != n or bad is not None:
        found = f"a negative count ({bad})" if bad is not None else f"{len(counts)} counts"
        raise ModelError(
            f"{art.path / CONFIG_FILE}: field 'meta.item_counts': found {found}, expected "
            f"{n} non-negative counts (one per item index, padding included; edited after saving?)"
        )


def set_weights(model: Any, state: dict[str, torch.Tensor], where: Path) -> None:
    """``model.set_state(state)``; a mismatch with the config is one error naming ``where``."""

    try:
        model.set_state(state)
    except (WarmrecError, RuntimeError, ValueError, KeyError, IndexError) as e:
        raise ModelError(
            f"{where}: weights do not fit the '{model.name}' model of {CONFIG_FILE}: "
            f"{_first_line(e)}"
        ) from None


def kind_of(art: Artifact) -> str:
    """The directory's kind; a ``"model"`` directory with a ``meta.json`` (written before the
    ``"meta"`` kind existed) is ``"meta"``."""
    if art.info.kind == "model" and (art.path / META_CONFIG_FILE).is_file():
        return "meta"
    return art.info.kind


def kind_class(kind: str) -> type:
    """The class a directory of ``kind`` loads as (:data:`KIND_CLASSES`)."""
    import importlib

    module, _, qualname = KIND_CLASSES[kind].partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def read_meta_files(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(config, state)`` of a meta directory's ``meta.json`` and ``meta.safetensors``."""
    p = recover_dir(path)
    cfg_path = inside(p, META_CONFIG_FILE)
    if not cfg_path.is_file():
        raise ModelError(f"{cfg_path}: missing (not a meta-trained model directory)")
    try:
        cfg = parse_json(cfg_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ModelError(f"{cfg_path}: invalid JSON: {_first_line(e)}") from None
    if not isinstance(cfg, dict):
        raise ModelError(f"{cfg_path}: expected a JSON object, found {type(cfg).__name__}")
    weights = inside(p, META_WEIGHTS_FILE)
    state = {k: v for k, v in read_weights(weights).items() if k != "_none"}
    return cfg, state


LOAD_TRIES = 5
"""Reads of a model directory that another process replaced while it was read, before
:func:`load_model` gives up (:func:`read_consistent`)."""


def _identity(path: str | Path) -> tuple | None:
    """What tells one save of a directory from the next: the folder's inode and each file's
    name, inode, size and modification time (None where it cannot be read)."""
    try:
        st = os.stat(path)
        with os.scandir(path) as it:
            files = []
            for e in it:
                f = e.stat(follow_symlinks=False)
                files.append((e.name, f.st_ino, f.st_size, f.st_mtime_ns))
    except OSError:
        return None
    return (st.st_dev, st.st_ino, tuple(sorted(files)))


def read_consistent(path: str | Path, read: Callable[[], Any]) -> Any:
    """``read()`` of the directory at ``path``, from one save of it: where the directory was
    replaced while it was read (a save swapping in a new folder, files copied over it), what was
    read may mix two saves -- whose checksums then differ, an error that blamed an edit -- so it
    is read again, up to :data:`LOAD_TRIES` times. An error of a directory that did not change
    while it was read is raised as it is."""
    import time

    last: BaseException | None = None
    for attempt in range(LOAD_TRIES):
        before = _identity(path)
        try:
            out = read()
        except (ModelError, OSError) as e:
            if _identity(path) == before:
                raise
            last = e
        else:
            if _identity(path) == before:
                return out
        time.sleep(0.02 * (attempt + 1))
    why = f"; the last read failed: {_first_line(last)}" if last is not None else ""
    raise ModelError(
        f"{path}: replaced while it was read, {LOAD_TRIES} times in a row (another save or a "
        f"copy under way?); load it again once it is complete{why}"
    )


def load_model(path: str | Path, expect: type | None = None) -> Any:
    """Load a model or meta directory (``Recommender.load``) as what it is; ``expect``: the
    class it must be (a base). A meta directory loads as its meta-learner
    (:data:`KIND_CLASSES`), or is refused in one line when ``expect`` is a plain model class.
    A directory replaced while it is read (a save of another process) is read again
    (:func:`read_consistent`)."""
    return read_consistent(path, lambda: _load_model(path, expect))


def _load_model(path: str | Path, expect: type | None) -> Any:
    art = read_info(path)
    kind = kind_of(art)
    if kind == "meta":
        klass = kind_class(kind)
        if expect is not None and not issubclass(klass, expect):
            raise ModelError(
                f"{art.path}: a meta-trained '{art.info.model}' model (kind 'meta': it adapts "
                f"to each history before scoring), not a plain "
                f"'{getattr(expect, 'name', expect)}'; load it with Recommender.load or "
                "warmrec.meta.MetaModel.load"
            )
        return klass.load(art.path)
    return _load(art, expect)


def load_base_model(path: str | Path) -> Any:
    """The model a model or meta directory holds, *without* its meta-learner: for a meta
    directory, the un-adapted base (:meth:`~warmrec.meta.maml.MetaModel.load` builds on it)."""
    return read_consistent(path, lambda: _load_base_model(path))


def _load_base_model(path: str | Path) -> Any:
    art = read_info(path)
    if kind_of(art) not in ("model", "checkpoint", "meta"):
        return _load(art, None)  # refused there, in one line
    return _load(art, None, kinds=("model", "checkpoint", "meta"))


def _load(
    art: Artifact, expect: type | None, kinds: tuple[str, ...] = ("model", "checkpoint")
) -> Any:
    if art.info.kind not in kinds:
        raise ModelError(
            f"{art.path}: holds {art.info.kind}s for a '{art.info.model}' model, not a model; "
            "load it with warmrec.transfer.load_adapters(base_dir, adapter_dir)"
        )
    model = build_model(art)
    if expect is not None and not isinstance(model, expect):
        raise ModelError(
            f"{art.path}: holds a '{art.info.model}' model, not '{getattr(expect, 'name', expect)}'"
        )
    load_vocabs(art, model)
    check_item_counts(art, model)
    state = read_weights(art.weights_path, art.info.weights_sha256)
    if art.info.adapter is None and art.info.lora is None:
        set_weights(model, state, art.weights_path)
        freeze(art, model)
        return model
    # a model saved with adapters/LoRA in its net (e.g. by `transfer --strategy adapters`)
    from warmrec.models.adapters import (
        inject_adapters,
        inject_lora,
        is_adapter_name,
        load_adapter_state,
    )

    set_weights(model, {k: v for k, v in state.items() if not is_adapter_name(k)}, art.weights_path)
    if getattr(model, "net", None) is None:  # a Pop, Markov, kNN...: no net to hold them
        field = "adapter" if art.info.adapter is not None else "lora"
        raise ModelError(
            f"{art.path / CONFIG_FILE}: field '{field}': a '{art.info.model}' model has no "
            "network to hold adapters (edited after saving?)"
        )
    adapters = {k: v for k, v in state.items() if is_adapter_name(k)}

    def inject(net: Any, seed: int | None) -> None:
        if art.info.adapter is not None:
            inject_adapters(net, art.info.adapter, seed=seed)
        if art.info.lora is not None:
            inject_lora(net, art.info.lora, seed=seed)
        load_adapter_state(net, adapters)

    try:
        # on the meta device first: an edited bottleneck or rank is one error, not an allocation
        model.meta_net(len(state), lambda net: inject(net, None))
        inject(model.net, 0)
    except WarmrecError as e:
        raise ModelError(f"{art.weights_path}: {_first_line(e)}") from None
    freeze(art, model)
    model.net.eval()
    return model


def freeze(art: Artifact, model: Any) -> None:
    """Freeze the parameters ``config.json`` records as ``frozen`` (a model that was saved
    with them frozen); a name that is no parameter of the net was edited: one error."""
    if not art.info.frozen:
        return
    net = getattr(model, "net", None)
    params = dict(net.named_parameters()) if net is not None else {}
    unknown = [n for n in art.info.frozen if n not in params]
    if unknown:
        raise ModelError(
            f"{art.path / CONFIG_FILE}: field 'frozen': found {unknown[:3]}, expected names of "
            f"parameters of the '{art.info.model}' network (edited after saving?)"
        )
    for name in art.info.frozen:
        params[name].requires_grad_(False)


def is_artifact(path: str | Path) -> bool:
    """Whether ``path`` looks like an artifact directory (has a ``config.json``)."""
    return os.path.isfile(Path(path) / CONFIG_FILE)
