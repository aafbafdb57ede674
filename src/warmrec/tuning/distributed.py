"""Data-parallel training of the neural models with Ray Train (``TorchTrainer``; gloo on CPU, NCCL
on GPU).

:func:`train_distributed` runs ``workers`` copies of the ordinary training run
(:func:`warmrec.training.loop.train`, the only ``backward()``) under a ``TorchTrainer``. Each
worker reads and splits the data itself, builds the same model from the same seed, and:

- takes every ``world``-th batch of the common batch order (all workers draw the order from the
  same seed), each batch ``global batch / world`` examples, so one optimizer step sees the same
  number of examples as a single worker at the global batch size;
- averages the gradients across workers as they are accumulated during ``backward()``
  (``Tensor.register_post_accumulate_grad_hook`` + ``all_reduce``), so every worker takes the
  same step and the weights stay identical -- without wrapping the net in ``DistributedDataParallel``
  (which would hide the net's attributes from the model's own methods);
- validates like a single run (every worker computes the same numbers, so early stopping agrees).

Worker 0 saves the model. This is DDP in its simplest form (one all-reduce per parameter instead
of DDP's buckets): correct and enough for two or a few CPU workers; on many GPUs use DDP's
bucketing (a wrapper that forwards attribute access) -- see the module's notes in the report.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from warmrec.errors import ConfigError
from warmrec.io import atomic_write_text


class ShardedData:
    """Every ``world``-th batch of ``inner``'s batch order, from position ``rank``; every worker
    gets the same number of batches."""

    def __init__(self, inner: Any, rank: int, world: int) -> None:
        self.inner, self.rank, self.world = inner, rank, world

    def n_batches(self, batch_size: int) -> int:
        return self.inner.n_batches(batch_size) // self.world

    def batches(self, batch_size: int, rng: Any) -> Iterator[Any]:
        n = self.n_batches(batch_size) * self.world
        for i, batch in enumerate(self.inner.batches(batch_size, rng)):
            if i >= n:
                break
            if i % self.world == self.rank:
                yield batch


def average_gradients(net: Any, world: int) -> list[Any]:
    """Hooks that all-reduce (mean) each parameter's gradient once it is accumulated."""
    import torch.distributed as dist

    def hook(p: Any) -> None:
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad.div_(world)

    return [p.register_post_accumulate_grad_hook(hook) for p in net.parameters() if p.requires_grad]


def _worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: the ordinary training run on its shard of every epoch."""
    import torch.distributed as dist
    from ray import train as ray_train

    from warmrec.experiments.run import prepare_from_config
    from warmrec.registry import get_model
    from warmrec.training.loop import train as run_training

    ctx = ray_train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    cfg = config["cfg"]
    prep = prepare_from_config(dict(cfg))
    m = dict(cfg.get("model", {}))
    name = m.pop("name")
    model = get_model(name, m)
    trainer = model.trainer_config(cfg.get("train", {}))
    if trainer.batch_size % world:
        raise ConfigError(
            f"--workers {world}: the batch size {trainer.batch_size} must be a multiple of it"
        )
    trainer = trainer.model_copy(
        update={"batch_size": trainer.batch_size // world, "device": "cpu", "progress": False}
    )
    inner = model.training_data
    model.training_data = lambda data: ShardedData(inner(data), rank, world)
    hooks: list[Any] = []
    orig_prepare = model.prepare

    def prepare(data: Any) -> None:  # the net exists now: hook its gradients
        orig_prepare(data)
        hooks.extend(average_gradients(model.net, world))

    model.prepare = prepare
    try:
        result = run_training(model, prep.train, prep.valid, trainer)
    finally:
        for h in hooks:
            h.remove()
        del model.training_data, model.prepare
    model.train_result = result
    record = {
        "best_metric": result.best_metric,
        "best_epoch": result.best_epoch,
        "epochs": result.epochs_run,
        "train_seconds": result.train_seconds,
        "history": result.history,
    }
    if rank == 0:
        model.save(config["out"])
        atomic_write_text(config["record"], json.dumps(record, default=float))
    dist.barrier()
    ray_train.report({k: v for k, v in record.items() if k != "history"})


def train_distributed(
    cfg: dict[str, Any],
    out: str | Path,
    *,
    workers: int,
    address: str | None = None,
    use_gpu: bool = False,
    cpus_per_worker: float = 1.0,
) -> dict[str, Any]:
    """Train ``cfg``'s neural model on ``workers`` Ray Train workers; returns worker 0's record."""
    from warmrec.models.neural import NeuralRecommender
    from warmrec.registry import model_class
    from warmrec.schema import check_configs

    if workers < 1:
        raise ConfigError(f"--workers: expected an integer >= 1, found {workers}")
    name = cfg.get("model", {}).get("name")
    if not name:
        raise ConfigError("no model: give --model NAME or [model] name in the config")
    if not issubclass(model_class(name), NeuralRecommender):
        raise ConfigError(f"--workers: model '{name}' has no training loop to distribute")
    m = {k: v for k, v in cfg["model"].items() if k != "name"}
    check_configs(name, m, cfg.get("train", {}))
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(address="local", num_cpus=int(workers * cpus_per_worker), include_dashboard=False,
                     log_to_driver=False)  # fmt: skip
        started = True
    out = Path(out).resolve()
    work = out.parent / f".{out.name}.ray"
    record = work / "record.json"
    try:
        trainer = TorchTrainer(
            _worker,
            train_loop_config={"cfg": cfg, "out": str(out), "record": str(record)},
            scaling_config=ScalingConfig(
                num_workers=workers,
                use_gpu=use_gpu,
                resources_per_worker={"CPU": cpus_per_worker},
            ),
            torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
            run_config=RunConfig(storage_path=str(work)),
        )
        trainer.fit()
    finally:
        if started:
            ray.shutdown()
    rec = json.loads(record.read_text())
    shutil.rmtree(work, ignore_errors=True)
    return {"model": name, "out": str(out), "workers": workers, **rec}
