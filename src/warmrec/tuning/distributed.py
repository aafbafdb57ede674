"""Data-parallel training of the neural models with Ray Train (``TorchTrainer``; gloo on CPU, NCCL
on GPU).

:func:`train_distributed` runs ``workers`` copies of the ordinary training run
(:func:`warmrec.training.loop.train`, the only ``backward()``) under a ``TorchTrainer``. Each
worker reads and splits the data itself, builds the same model from the same seed, and:

- takes every ``world``-th batch of the common batch order (all workers draw the order from the
  same seed), each batch ``global batch / world`` examples, so one optimizer step sees the same
  number of examples as a single worker at the global batch size;
- averages the gradients across workers during ``backward()`` in **buckets**, as torch's
  ``DistributedDataParallel`` does (:class:`GradBuckets`): the dense parameters are grouped, in
  reverse registration order (roughly the order backward produces their gradients), into buckets
  of about ``bucket_mb`` MB; a ``register_post_accumulate_grad_hook`` marks a parameter ready, and
  a bucket whose parameters are all ready is flattened into one buffer and all-reduced
  asynchronously while backward goes on; a callback queued on the autograd engine launches what
  is left at the end of backward, waits for every reduction and writes the means back. Buckets
  are launched in a fixed order on every worker (the collectives must match). Sparse gradients
  (GRU4Rec's item table) cannot be flattened: each is all-reduced on its own, as DDP does.
  The net is not wrapped in ``DistributedDataParallel`` itself: the models call their nets'
  submodules and attributes directly (not only ``forward``), which DDP's reducer does not see;
  ``bucket_mb=0`` keeps the former one all-reduce per parameter (for comparison);
- validates like a single run (every worker computes the same numbers, so early stopping agrees).

Each worker runs the ordinary run (:func:`~warmrec.experiments.spec.prepare_run`,
:func:`~warmrec.experiments.spec.fit_run`) with :class:`DataParallelHooks` (the training loop's
hooks: its shard and the gradient averaging); worker 0 saves the model with the run record, so
``evaluate``/``predict`` need only its directory.
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr
from pathlib import Path
from typing import Any

from warmrec.errors import ConfigError
from warmrec.io import atomic_write_text
from warmrec.training.loop import epoch_lines


class ShardedData:
    """Every ``world``-th batch of ``inner``'s batch order, from position ``rank``; every worker
    gets the same number of batches: the epoch's batches are taken in groups of ``world``, an
    incomplete last group left out. The count comes from the epoch itself, not from
    ``n_batches`` (an estimate where it varies by epoch: ``random_phase`` windows): a worker
    with one batch more would wait for ever on its gradient all-reduce."""

    def __init__(self, inner: Any, rank: int, world: int) -> None:
        self.inner, self.rank, self.world = inner, rank, world

    def n_batches(self, batch_size: int) -> int:
        return self.inner.n_batches(batch_size) // self.world

    def batches(self, batch_size: int, rng: Any) -> Iterator[Any]:
        group: list[Any] = []
        for batch in self.inner.batches(batch_size, rng):
            group.append(batch)
            if len(group) == self.world:
                yield group[self.rank]
                group = []


def average_gradients(net: Any, world: int) -> list[Any]:
    """Hooks that all-reduce (mean) each parameter's gradient once it is accumulated (one
    collective per parameter; :class:`GradBuckets` with ``bucket_mb=0``)."""
    import torch.distributed as dist

    def hook(p: Any) -> None:
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad.div_(world)

    return [p.register_post_accumulate_grad_hook(hook) for p in net.parameters() if p.requires_grad]


DEFAULT_BUCKET_MB = 25.0
"""DDP's default bucket size (``bucket_cap_mb``)."""


class GradBuckets:
    """Bucketed gradient averaging across the default process group during ``backward()``.

    ``params``: the trained parameters (those without ``requires_grad`` are skipped);
    ``sparse``: those whose gradients are sparse (each reduced on its own); ``all_reduce``: the
    collective (``torch.distributed.all_reduce`` by default; tests may count calls). After a
    backward, :attr:`collectives` is the number of all-reduces it launched.
    """

    def __init__(
        self,
        params: Any,
        world: int,
        *,
        bucket_mb: float = DEFAULT_BUCKET_MB,
        sparse: Any = (),
        all_reduce: Any = None,
    ) -> None:
        import torch.distributed as dist

        if bucket_mb < 0:
            raise ConfigError(f"bucket_mb: expected a number >= 0, found {bucket_mb}")
        self.world = world
        self._all_reduce = all_reduce or dist.all_reduce
        sparse_ids = {id(p) for p in sparse}
        params = [p for p in params if p.requires_grad]
        cap = bucket_mb * 2**20
        self.buckets: list[list[Any]] = []
        current: list[Any] = []
        size = 0
        for p in reversed(params):
            if id(p) in sparse_ids:  # a bucket of its own, in its place in the order
                if current:
                    self.buckets.append(current)
                    current, size = [], 0
                self.buckets.append([p])
                continue
            nbytes = p.numel() * p.element_size()
            if current and (
                size + nbytes > cap or p.dtype != current[0].dtype or p.device != current[0].device
            ):
                self.buckets.append(current)
                current, size = [], 0
            current.append(p)
            size += nbytes
        if current:
            self.buckets.append(current)
        self.sparse = sparse_ids
        self._bucket_of = {id(p): i for i, b in enumerate(self.buckets) for p in b}
        self._hooks = [p.register_post_accumulate_grad_hook(self._ready) for p in params]
        self.collectives = 0
        self._reset()

    def _reset(self) -> None:
        self._pending = [len(b) for b in self.buckets]
        self._next = 0  # the next bucket to launch (launches go in bucket order)
        self._works: list[tuple[int, Any, Any]] = []
        self._queued = False

    def remove(self) -> None:
        """Remove the hooks."""
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def _ready(self, p: Any) -> None:
        if not self._queued:  # first gradient of this backward: finish when backward ends
            import torch

            self.collectives = 0
            torch.autograd.Variable._execution_engine.queue_callback(self._finish)
            self._queued = True
        self._pending[self._bucket_of[id(p)]] -= 1
        while self._next < len(self.buckets) and self._pending[self._next] == 0:
            self._launch(self._next)

    def _launch(self, i: int) -> None:
        import torch
        import torch.distributed as dist

        self._next = i + 1
        self.collectives += 1
        bucket = self.buckets[i]
        p = bucket[0]
        if id(p) in self.sparse:  # a sparse (or absent) gradient: on its own, synchronously
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            self._all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(self.world)
            return
        flat = torch.cat(
            [(q.grad if q.grad is not None else torch.zeros_like(q)).reshape(-1) for q in bucket]
        )
        work = self._all_reduce(flat, op=dist.ReduceOp.SUM, async_op=True)
        self._works.append((i, flat, work))

    def _finish(self) -> None:
        try:
            while self._next < len(self.buckets):  # parameters without a gradient this step
                self._launch(self._next)
            for i, flat, work in self._works:
                if work is not None:
                    work.wait()
                flat.div_(self.world)
                offset = 0
                for q in self.buckets[i]:
                    n = q.numel()
                    if q.grad is not None:
                        q.grad.copy_(flat[offset : offset + n].view_as(q.grad))
                    offset += n
        finally:
            self._reset()


class DataParallelHooks:
    """The training loop's :class:`~warmrec.training.loop.LoopHooks` of one worker: its shard of
    every epoch's batches, and gradient averaging hooked on the net once it exists."""

    def __init__(self, rank: int, world: int, bucket_mb: float) -> None:
        self.rank, self.world, self.bucket_mb = rank, world, bucket_mb
        self.handles: list[Any] = []
        self.device: Any = "cpu"

    def wrap_data(self, data: Any) -> Any:
        return ShardedData(data, self.rank, self.world)

    def agree(self, spent: bool) -> bool:
        """The time budget is spent for every worker once it is for one (each measures its own
        time: a worker that stopped while another started an epoch left it waiting in its
        first gradient all-reduce, or failing there once the stopped one had exited)."""
        import torch
        import torch.distributed as dist

        # on the gradients' device (NCCL reduces only CUDA tensors)
        flag = torch.tensor([1.0 if spent else 0.0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item() > 0)

    def on_ready(self, model: Any) -> None:
        self.device = next(model.net.parameters()).device
        if self.bucket_mb > 0:
            self.handles.append(
                GradBuckets(
                    model.net.parameters(), self.world, bucket_mb=self.bucket_mb,
                    sparse=model.sparse_parameters(),
                )
            )  # fmt: skip
        else:
            self.handles.extend(average_gradients(model.net, self.world))

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()


def worker_spec(spec: Any, world: int) -> Any:
    """The spec one of ``world`` workers runs: the global batch split across workers, on the
    CPU, without a progress bar (worker 0 prints a line per epoch where the command line asks,
    which Ray forwards to the driver)."""
    trainer = spec.trainer()
    if trainer.batch_size % world:
        raise ConfigError(
            f"--workers {world}: the batch size {trainer.batch_size} must be a multiple of it"
        )
    train = {
        **spec.train,
        "batch_size": trainer.batch_size // world,
        "device": "cpu",
        "progress": None if spec.train.get("progress") is None else False,
    }
    return spec.model_copy(update={"train": train})


@contextmanager
def _stderr_to(path: str | None) -> Iterator[None]:
    """Within: this worker's stderr (its epoch lines, warnings) appended to ``path``, which the
    driver copies to its own stderr as lines arrive (:class:`_Tail`); nothing where None."""
    if path is None:
        yield
        return
    with open(path, "a", encoding="utf-8", buffering=1) as f, redirect_stderr(f):
        yield


class _Tail:
    """Copies the complete lines appended to a file onto stderr, from a thread, until closed."""

    def __init__(self, path: Path) -> None:
        self.path, self.pos, self.done = path, 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _copy(self, final: bool = False) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                chunk = f.read()
        except OSError:
            return
        end = len(chunk) if final else chunk.rfind(b"\n") + 1
        if end > 0:
            sys.stderr.write(chunk[:end].decode("utf-8", "replace"))
            sys.stderr.flush()
            self.pos += end

    def _run(self) -> None:
        while not self.done.wait(0.5):
            self._copy()

    def close(self) -> None:
        self.done.set()
        self.thread.join()
        self._copy(final=True)


def _worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: the ordinary run (``prepare_run``/``fit_run``) on its shard."""
    import torch.distributed as dist
    from ray import train as ray_train

    from warmrec.experiments.spec import (
        _refit_all,
        fit_run,
        prepare_run,
        save_run,
        spec_from_config,
    )

    ctx = ray_train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    spec = spec_from_config(config["spec"])
    prep = prepare_run(spec)
    hooks = DataParallelHooks(rank, world, float(config.get("bucket_mb", DEFAULT_BUCKET_MB)))
    mine = worker_spec(spec, world).model_copy(update={"refit_all": False})
    lines = config.get("lines") if rank == 0 else None
    with _stderr_to(lines), epoch_lines(lines is not None):
        model = fit_run(mine, prep, hooks=hooks)
        # the record is of the run as asked (the global batch), not of one worker's share
        run = model.meta.run
        run.spec = {**run.spec, "train": dict(spec.train)}
        result = model.train_result
        if spec.refit_all:  # on every event, data-parallel as the validated fit
            model = _refit_all(mine, prep, model, hooks)
    record = {
        "best_metric": result.best_metric,
        "best_epoch": result.best_epoch,
        "epochs": result.epochs_run,
        "train_seconds": result.train_seconds,
        "fit_s": run.fit_seconds,
        "valid": dict(run.valid),
        "n_valid": run.n_valid,
        "split": prep.info["split"],
        "history": result.history,
        "refit": model.meta.run.refit,
    }
    if rank == 0:
        save_run(model, config["out"])
        atomic_write_text(config["record"], json.dumps(record, default=float))
    dist.barrier()
    ray_train.report({k: v for k, v in record.items() if k not in ("history", "valid")})


def train_distributed(
    cfg: dict[str, Any] | Any,
    out: str | Path,
    *,
    workers: int,
    address: str | None = None,
    use_gpu: bool = False,
    cpus_per_worker: float = 1.0,
    bucket_mb: float = DEFAULT_BUCKET_MB,
    lines: bool = False,
) -> dict[str, Any]:
    """Train the run ``cfg`` (a config dict or RunSpec) describes on ``workers`` Ray Train
    workers; returns worker 0's record (validation metrics, best epoch, history, the refit on
    every event where ``refit_all``). ``bucket_mb``: the gradient bucket size (0: one
    all-reduce per parameter); ``lines``: worker 0 prints a line per epoch on its stderr
    (``progress`` unset), which Ray forwards to the driver's."""
    from warmrec.experiments.spec import refuse_model_with_transfer, spec_from_config

    if workers < 1:
        raise ConfigError(f"--workers: expected an integer >= 1, found {workers}")
    if bucket_mb < 0:
        raise ConfigError(f"bucket_mb: expected a number >= 0, found {bucket_mb}")
    spec = spec_from_config(cfg)
    refuse_model_with_transfer(spec, "train --workers")
    if spec.model is None:
        raise ConfigError("no model: give --model NAME or [model] name in the config")
    name = spec.model.name
    if not spec.model.is_neural():
        raise ConfigError(f"--workers: model '{name}' has no training loop to distribute")
    worker_spec(spec, workers)  # the batch size must split evenly, checked before Ray starts
    if spec.data is None:
        raise ConfigError("no data path: give --data PATH or [data] path in the config")
    spec = spec.model_copy(update={"data": spec.data.absolute()})
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from warmrec.tuning.cluster import start_ray, stop_ray

    # a cluster is probed first: fail fast, not after minutes of Ray's retries
    ray_env = start_ray(address, num_cpus=int(workers * cpus_per_worker))
    typed, out = str(out), Path(out).resolve()
    work = out.parent / f".{out.name}.ray"
    record = work / "record.json"
    tail = None
    if lines:
        work.mkdir(parents=True, exist_ok=True)
        (work / "lines.log").write_text("")
        tail = _Tail(work / "lines.log")
    try:
        trainer = TorchTrainer(
            _worker,
            train_loop_config={
                "spec": spec.to_config(),
                "out": str(out),
                "record": str(record),
                "bucket_mb": bucket_mb,
                "lines": str(work / "lines.log") if lines else None,
            },
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
        if tail is not None:
            tail.close()
        stop_ray(ray_env)
    rec = json.loads(record.read_text())
    shutil.rmtree(work, ignore_errors=True)
    return {"model": name, "out": typed, "workers": workers, **rec}  # the path as typed
