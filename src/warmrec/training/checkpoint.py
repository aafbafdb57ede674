"""Training checkpoints: safetensors + JSON, written atomically, never pickled.

A checkpoint is one directory, replaced as a whole by :func:`warmrec.io.atomic_dir` (a crash leaves
the previous checkpoint intact):

``model.safetensors``, ``config.json``, ``vocab.json`` [``users.json``]
    The model directory exactly as ``Recommender.save`` writes it (loadable with ``load``), by
    the one artifact writer :func:`warmrec.artifacts.save_model`.
``trainer_state.safetensors``
    Every tensor of the trainer state: ``optimizer/<param>/<key>`` (the optimizer's per-parameter
    state), ``best/<name>`` (the best weights so far) and ``rng/torch`` (``rng/cuda/<i>``).
``trainer_state.json``
    Everything else: epoch, history, best epoch and metric, patience counter, the optimizer's
    param groups and non-tensor state, the LR scheduler's state, the numpy generator's
    ``bit_generator.state``, the trainer and model configs.

The optimizer state dict is flattened into tensors plus a JSON structure, so loading needs no
pickle (and no ``torch.load``).

Resuming (:func:`load_checkpoint`) checks that the model name and config and the trainer
settings that shape the result (:func:`resume_mismatch`: everything but :data:`RESUME_FREE`,
which are where and how to run: device, threads, logging, checkpointing, and ``epochs`` to
train longer, after which the training loop warns where that replans a learning-rate schedule)
are those of the checkpoint, and refuses with a :class:`ConfigError` naming the
keys that differ: a changed ``seed`` or ``lr`` never silently returns the old model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from warmrec.artifacts import inside, read_weights, save_model, save_weights
from warmrec.config import config_dict
from warmrec.errors import ConfigError, ModelError, WarmrecWarning
from warmrec.io import recover_dir
from warmrec.rng import FitGenerators

CHECKPOINT_FORMAT = 1
LATEST = "latest"
RESUME_FREE = frozenset(
    {
        "epochs",
        "device",
        "num_threads",
        "log_path",
        "tensorboard_dir",
        "progress",
        "checkpoint_dir",
        "checkpoint_every",
        "resume",
        "valid_batch_size",
        "time_budget_s",
    }
)
"""Trainer settings that may differ between a checkpoint and the run resuming from it."""


class ResumeWarning(WarmrecWarning):
    """Training resumed from a checkpoint (the message says from which epoch)."""


@dataclass
class RunState:
    """The loop's own progress: what a resumed run needs besides weights and optimizer."""

    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_metric: float = -math.inf
    best_weights: dict[str, torch.Tensor] | None = None
    bad_evals: int = 0
    stopped: bool = False
    train_seconds: float = 0.0
    schedule_steps: int | None = None
    """Optimizer steps the learning-rate schedule was planned over (batches per epoch times
    epochs); None in a checkpoint of an older warmrec."""
    saved_epochs: int | None = None
    """The checkpoint's ``epochs`` setting (None: the default), read by :func:`load_checkpoint`."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return None  # callables (scheduler lambdas) are rebuilt from the config


def _float(x: float) -> float | str:
    return x if math.isfinite(x) else repr(x)


def _unfloat(x: Any) -> float:
    return float(x)


def flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer ``state_dict`` -> (tensors by ``optimizer/<param>/<key>``, JSON structure)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in state["state"].items():
        for key, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/{pid}/{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = _jsonable(value)
    return tensors, {"param_groups": _jsonable(state["param_groups"]), "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer`."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if not name.startswith("optimizer/"):
            continue
        _, pid, key = name.split("/", 2)
        state.setdefault(int(pid), {})[key] = value
    for pid, values in info.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(values)
    groups = info["param_groups"]
    for g in groups:
        if "betas" in g and isinstance(g["betas"], list):
            g["betas"] = tuple(g["betas"])
    return {"state": state, "param_groups": groups}


def checkpoint_path(checkpoint_dir: str | Path) -> Path:
    return Path(checkpoint_dir) / LATEST


def _complete(p: Path) -> bool:
    return (p / "trainer_state.json").is_file() and (p / "trainer_state.safetensors").is_file()


def find_checkpoint(checkpoint_dir: str | Path) -> Path | None:
    """The latest complete checkpoint, or None.

    Where :func:`~warmrec.io.atomic_dir` cannot swap two directories in one step (or in an older
    warmrec), it moves the previous directory aside just before renaming the new one into place;
    a kill between the two renames leaves only the aside copy, which is renamed back
    (:func:`~warmrec.io.recover_dir`) and resumed from.
    """
    p = recover_dir(checkpoint_path(checkpoint_dir))
    return p if _complete(p) else None


def has_checkpoint(checkpoint_dir: str | Path) -> bool:
    return find_checkpoint(checkpoint_dir) is not None


def save_checkpoint(
    checkpoint_dir: str | Path,
    model: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    run: RunState,
    rng: np.random.Generator,
    trainer_config: Any,
    torch_states: Mapping[str, torch.Tensor] | None = None,
) -> Path:
    """Write the whole training state as ``<checkpoint_dir>/latest`` atomically.

    ``torch_states``: the fit's own torch generators' states by device (``"cpu"``,
    ``"cuda:0"``: :meth:`warmrec.rng.FitGenerators.states`), kept in place of the global
    generators' states of those devices (``rng/torch``, ``rng/cuda/<i>``)."""
    path = checkpoint_path(checkpoint_dir)
    tensors, opt_info = flatten_optimizer(optimizer.state_dict())
    if run.best_weights is not None:
        for k, v in run.best_weights.items():
            tensors[f"best/{k}"] = v.detach().cpu().contiguous()
    tensors["rng/torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = s
    for key, state in (torch_states or {}).items():
        tensors["rng/torch" if key == "cpu" else f"rng/cuda/{torch.device(key).index}"] = state
    info = {
        "format": CHECKPOINT_FORMAT,
        "model": model.name,
        "model_config": config_dict(model.config),
        "trainer_config": config_dict(trainer_config),
        "epoch": run.epoch,
        "history": _jsonable(run.history),
        "best_epoch": run.best_epoch,
        "best_metric": _float(run.best_metric),
        "has_best": run.best_weights is not None,
        "bad_evals": run.bad_evals,
        "stopped": run.stopped,
        "train_seconds": run.train_seconds,
        "schedule_steps": run.schedule_steps,
        "optimizer": opt_info,
        "scheduler": _jsonable(scheduler.state_dict()) if scheduler is not None else None,
        "numpy_rng": _jsonable(rng.bit_generator.state),
    }

    def trainer_files(tmp: Path) -> None:
        save_weights(tensors, tmp / "trainer_state.safetensors")
        (tmp / "trainer_state.json").write_text(json.dumps(info, indent=1))

    save_model(model, path, extra=trainer_files, kind="checkpoint")
    return path


def _diff(saved: dict[str, Any], now: dict[str, Any], ignore: frozenset = frozenset()) -> list:
    keys = sorted((set(saved) | set(now)) - ignore)
    return [
        (k, saved.get(k, "<absent>"), now.get(k, "<absent>"))
        for k in keys
        if _jsonable(saved.get(k, "<absent>")) != _jsonable(now.get(k, "<absent>"))
    ]


def resume_mismatch(info: dict[str, Any], model: Any, trainer_config: Any) -> str | None:
    """Why a run with this model and trainer config cannot resume from a checkpoint's
    ``trainer_state.json`` (``info``), or None when it can (see the module docstring)."""
    if info.get("model") != model.name:
        return f"model '{info.get('model')}' in the checkpoint, '{model.name}' now"
    parts = [
        f"model.{k}={a!r} in the checkpoint, {b!r} now"
        for k, a, b in _diff(info.get("model_config", {}), config_dict(model.config))
    ]
    if trainer_config is not None and "trainer_config" in info:
        parts += [
            f"train.{k}={a!r} in the checkpoint, {b!r} now"
            for k, a, b in _diff(info["trainer_config"], config_dict(trainer_config), RESUME_FREE)
        ]
    return "; ".join(parts) or None


def cuda_rng_states(tensors: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
    """The ``rng/cuda/<i>`` states of a checkpoint's tensors in device order (``i`` as a
    number: ``rng/cuda/2`` before ``rng/cuda/10``), as ``torch.cuda.set_rng_state_all`` takes
    them."""
    prefix = "rng/cuda/"
    keys = [k for k in tensors if k.startswith(prefix)]
    return [tensors[k] for k in sorted(keys, key=lambda k: int(k[len(prefix) :]))]


def restore_torch_states(
    tensors: Mapping[str, torch.Tensor], generators: FitGenerators | None = None
) -> None:
    """Set the checkpoint's ``rng/torch`` and ``rng/cuda/<i>`` states: into ``generators``
    (one per device, made for a device they do not have yet) or, without them, into torch's
    global generators. CUDA states are skipped where CUDA is not available, as on a machine
    without the device."""
    cuda_states = cuda_rng_states(tensors)
    cuda = bool(cuda_states) and torch.cuda.is_available()
    if generators is None:
        torch.set_rng_state(tensors["rng/torch"])
        if cuda:
            torch.cuda.set_rng_state_all(cuda_states)
        return
    by_device = {"cpu": tensors["rng/torch"]}
    if cuda:
        by_device |= {
            f"cuda:{i}": s for i, s in enumerate(cuda_states[: torch.cuda.device_count()])
        }
    for device, state in by_device.items():
        g = generators.get(device)
        if g is not None:
            g.set_state(state)


def load_checkpoint(
    checkpoint_dir: str | Path,
    model: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    rng: np.random.Generator,
    trainer_config: Any = None,
    generators: FitGenerators | None = None,
) -> RunState:
    """Restore weights, optimizer, scheduler and RNG states in place; return the run state.

    ``model`` must already be bound to the training vocabulary and have its net built. With
    ``trainer_config`` the checkpoint's trainer settings must match it (see the module doc).
    The checkpoint's torch generator states go into ``generators`` (a fit's own,
    :class:`warmrec.rng.FitGenerators`: the training loop's), leaving torch's global
    generators as they are; without them, into the global generators.
    """
    path = find_checkpoint(checkpoint_dir)
    if path is None:
        raise ModelError(f"{checkpoint_dir}: no checkpoint to resume from")
    try:
        info = json.loads(inside(path, "trainer_state.json").read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"{path}: unreadable checkpoint: {e}") from e
    if info.get("format") != CHECKPOINT_FORMAT:
        raise ModelError(
            f"{path}: checkpoint format {info.get('format')!r}, expected {CHECKPOINT_FORMAT}"
        )
    why = resume_mismatch(info, model, trainer_config)
    if why is not None:
        raise ConfigError(
            f"{path}: cannot resume, the checkpoint was made with other settings ({why}); "
            "use the same settings, another checkpoint_dir, or resume=false to start over"
        )
    weights = read_weights(inside(path, "model.safetensors"))
    try:
        model.net.load_state_dict(weights)
    except RuntimeError as e:
        raise ModelError(
            f"{path / 'model.safetensors'}: weights do not fit the model: "
            f"{str(e).strip().splitlines()[0]}"
        ) from None
    tensors = read_weights(inside(path, "trainer_state.safetensors"))
    optimizer.load_state_dict(unflatten_optimizer(tensors, info["optimizer"]))
    if scheduler is not None and info.get("scheduler") is not None:
        scheduler.load_state_dict(dict(info["scheduler"]))
    restore_torch_states(tensors, generators)
    rng.bit_generator.state = info["numpy_rng"]
    device = next(model.net.parameters()).device
    best = None
    if info.get("has_best"):
        best = {
            k[len("best/") :]: v.to(device) for k, v in tensors.items() if k.startswith("best/")
        }
    return RunState(
        epoch=int(info["epoch"]),
        history=info["history"],
        best_epoch=int(info["best_epoch"]),
        best_metric=_unfloat(info["best_metric"]),
        best_weights=best,
        bad_evals=int(info["bad_evals"]),
        stopped=bool(info["stopped"]),
        train_seconds=float(info.get("train_seconds", 0.0)),
        schedule_steps=None if info.get("schedule_steps") is None else int(info["schedule_steps"]),
        saved_epochs=(info.get("trainer_config") or {}).get("epochs"),
    )
