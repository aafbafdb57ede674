"""Ray Train data parallelism: two workers at the same global batch reach the validation metric
of one worker (within noise) on synthetic data; the sharding gives every worker its own batches."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import cyclic_log
from warmrec.tuning.distributed import ShardedData


class _Batches:
    def n_batches(self, batch_size: int) -> int:
        return 7

    def batches(self, batch_size: int, rng):
        yield from range(7)


def test_shards_split_the_common_order_evenly() -> None:
    rng = np.random.default_rng(0)
    a = list(ShardedData(_Batches(), 0, 2).batches(4, rng))
    b = list(ShardedData(_Batches(), 1, 2).batches(4, rng))
    assert a == [0, 2, 4] and b == [1, 3, 5]  # the 7th batch dropped: equal steps per worker
    assert ShardedData(_Batches(), 0, 2).n_batches(4) == 3


def test_every_worker_gets_as_many_batches_when_an_epoch_has_fewer_than_counted() -> None:
    """``random_phase`` windows vary in number by epoch, so ``n_batches`` is an estimate: the
    shards took it as the count and, where an epoch had fewer batches, worker 0 got 7 and
    worker 1 got 6 (its partner then waits on the 7th gradient all-reduce)."""
    from tests.conftest import ranged_sequences
    from warmrec.models.neural import WindowData

    class Fewer(_Batches):
        def n_batches(self, batch_size: int) -> int:
            return 9  # an estimate above the 7 this epoch has

    a = list(ShardedData(Fewer(), 0, 2).batches(4, None))
    b = list(ShardedData(Fewer(), 1, 2).batches(4, None))
    assert a == [0, 2, 4] and b == [1, 3, 5]
    seqs = ranged_sequences([11, 12, 13, 14, 15, 16, 17] * 20)
    for seed in range(5):
        counts = [
            len(list(ShardedData(WindowData(seqs, 8, random_phase=True), r, 3).batches(4, rng)))
            for r, rng in ((r, np.random.default_rng(seed)) for r in range(3))
        ]
        assert len(set(counts)) == 1 and counts[0] > 0


class _SlowEnd:
    """A shard whose epochs end ``pause`` seconds after their last batch: time counted by this
    worker's clock, after the epoch's last gradient all-reduce."""

    def __init__(self, inner, pause: float) -> None:
        self.inner, self.pause = inner, pause

    def n_batches(self, batch_size: int) -> int:
        return self.inner.n_batches(batch_size)

    def batches(self, batch_size: int, rng):
        yield from self.inner.batches(batch_size, rng)
        time.sleep(self.pause)


def _budget_worker(rank: int, store: str, out: str) -> None:
    import datetime

    import torch.distributed as dist

    from tests.conftest import split_cyclic, tiny_net
    from warmrec import get_model
    from warmrec.training.loop import train
    from warmrec.tuning.distributed import DataParallelHooks

    timeout = datetime.timedelta(seconds=60)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2,
                            timeout=timeout)  # fmt: skip
    try:
        train_ds, valid = split_cyclic(120, n_items=30, length=10, seed=2, n_train=100,
                                       last_only=True)  # fmt: skip
        hooks = DataParallelHooks(rank, 2, bucket_mb=25.0)
        shard = hooks.wrap_data
        hooks.wrap_data = lambda data: _SlowEnd(shard(data), 3.0 if rank == 1 else 0.0)
        model = get_model("sasrec", tiny_net("sasrec", ffn_dim=32))
        dist.barrier()  # both start their first epoch together
        try:
            res = train(model, train_ds, valid, epochs=5, batch_size=16, time_budget_s=5.0,
                        progress=False, hooks=hooks)  # fmt: skip
            line = f"{res.epochs_run} {res.train_seconds:.2f}"
        except Exception as e:  # noqa: BLE001 - the test reads what each worker met
            line = f"error {type(e).__name__}: {str(e)[:200]}"
        Path(f"{out}.{rank}").write_text(line)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_workers_stop_together_when_the_time_budget_is_spent(tmp_path: Path) -> None:
    """Each data-parallel worker measures its own training time. Worker 1's epochs end 3 s
    after its last gradient all-reduce, which worker 0 waits for at the start of its next
    epoch: after epoch 2 worker 1 had spent the 5 s budget (6.3 s) and stopped, worker 0
    (0.3 s) started epoch 3 and failed in its first all-reduce ("Connection closed by peer";
    under Ray Train, where worker 1 goes on to a barrier, the collectives no longer match).
    The workers now agree: spent for one, spent for all."""
    import torch.multiprocessing as mp

    out = tmp_path / "res"
    try:
        mp.spawn(_budget_worker, args=(str(tmp_path / "store"), str(out)), nprocs=2, join=True)
    except Exception:  # noqa: BLE001 - a worker that raised: its line says what
        pass
    lines = [Path(f"{out}.{r}").read_text() for r in range(2)]
    assert not any(x.startswith("error") for x in lines), lines
    epochs = [int(x.split()[0]) for x in lines]
    assert epochs[0] == epochs[1] and epochs[0] < 5, lines  # the budget ended both at once


def _fit_one_and_two_workers(tmp: str) -> tuple[dict, dict]:
    """Both fits in a fresh process with RAY_AUTH_MODE=disabled set before Ray's import: a local
    Ray started and shut down earlier in the same process (auto's actor test, in the same xdist
    worker) leaves RAY_AUTH_MODE=token in os.environ, and Ray Train's controller was then
    cancelled before it ran. ``warmrec train --workers`` always runs in its own process."""
    # before Ray's import: a Ray started earlier in the parent (auto's actor test) leaves
    # RAY_AUTH_MODE=token in the environment this process inherits
    os.environ["RAY_AUTH_MODE"] = "disabled"
    import ray

    from warmrec.tuning.distributed import train_distributed

    tmp_path = Path(tmp)
    data = tmp_path / "log.csv"
    cyclic_log(n_sessions=300, n_items=30, length=8).write_csv(data)
    cfg = {
        "data": {"path": str(data)},
        "model": {"name": "gru4rec", "hidden_size": 16, "n_negatives": 0},
        "train": {"epochs": 4, "batch_size": 32, "lr": 5e-3, "patience": 0},
    }
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        one = train_distributed(cfg, tmp_path / "one", workers=1)
        two = train_distributed(cfg, tmp_path / "two", workers=2)
    finally:
        ray.shutdown()
    return dict(one), dict(two)


@pytest.mark.slow
@pytest.mark.xdist_group("ray")  # one Ray at a time under --dist loadgroup
def test_two_workers_match_one_at_the_same_global_batch(tmp_path: Path) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pytest.importorskip("ray")
    data = tmp_path / "log.csv"
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        one, two = pool.submit(_fit_one_and_two_workers, str(tmp_path)).result()
    assert (tmp_path / "two" / "config.json").is_file()
    assert one["best_metric"] > 0.5 and two["best_metric"] > 0.5
    assert abs(one["best_metric"] - two["best_metric"]) < 0.05, (one, two)
    # the saved model records its run (the global batch, not a worker's share): evaluate and
    # predict need nothing but its directory
    from click.testing import CliRunner

    from warmrec.cli.main import cli
    from warmrec.models.base import Recommender

    run = Recommender.load(tmp_path / "two").meta.run
    assert run.spec["train"]["batch_size"] == 32 and run.data.path == str(data)
    assert run.valid and run.n_valid > 0
    ev = CliRunner().invoke(cli, ["evaluate", str(tmp_path / "two"), "--json"])
    assert ev.exit_code == 0, ev.output
    pred = tmp_path / "pred.csv"
    pr = CliRunner().invoke(cli, ["predict", str(tmp_path / "two"), "-k", "3", "--out", str(pred)])
    assert pr.exit_code == 0, pr.output
    assert pred.is_file()


def test_train_workers_refuses_bad_settings_before_starting_ray(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from warmrec.cli.main import cli

    log = tmp_path / "log.csv"
    cyclic_log(n_sessions=20).write_csv(log)
    base = ["train", "--data", str(log), "--out", str(tmp_path / "m")]
    r = CliRunner().invoke(cli, [*base, "--model", "gru4rec", "--workers", "0"])
    assert r.exit_code == 2 and "--workers: expected an integer >= 1" in r.output
    r = CliRunner().invoke(cli, [*base, "--model", "pop", "--workers", "2"])
    assert r.exit_code == 2 and "no training loop to distribute" in r.output


@pytest.mark.xdist_group("ray")  # one Ray at a time under --dist loadgroup
def test_train_workers_fails_fast_on_an_unreachable_address(tmp_path: Path) -> None:
    """Issue 18: an unreachable Ray --address hung for minutes in Ray's retry messages."""
    import socket
    import time

    from click.testing import CliRunner

    from warmrec.cli.main import cli

    pytest.importorskip("ray")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "log.csv"
    cyclic_log(n_sessions=20).write_csv(log)
    t0 = time.monotonic()
    r = CliRunner().invoke(
        cli,
        [
            "train",
            "--data",
            str(log),
            "--out",
            str(tmp_path / "m"),
            "--model",
            "gru4rec",
            "--workers",
            "2",
            "--address",
            f"127.0.0.1:{port}",
        ],  # fmt: skip
    )
    assert r.exit_code == 2, r.output
    assert f"--address 127.0.0.1:{port}: no Ray cluster answers there" in r.output
    assert time.monotonic() - t0 < 60  # ray's import is most of it


@pytest.mark.slow
@pytest.mark.xdist_group("ray")  # one Ray at a time under --dist loadgroup
def test_train_workers_prints_epochs_and_refits_on_every_event(tmp_path: Path) -> None:
    """``--workers`` was silent until the end (no epoch line in a log file), and
    ``--refit-all`` refitted each worker alone at its share of the batch."""
    import subprocess
    import sys

    pytest.importorskip("ray")
    from warmrec.models.base import Recommender

    log = tmp_path / "log.csv"
    cyclic_log(n_sessions=120, n_items=20, length=6).write_csv(log)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "warmrec", "train", "--model", "gru4rec", "--data", str(log)]
    cmd += ["--set", "model.hidden_size=16", "--set", "train.epochs=3", "--set", "train.patience=0"]
    cmd += ["--workers", "2", "--refit-all", "--out", str(tmp_path / "m")]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    both = res.stdout + res.stderr  # Ray forwards the worker's stderr to the driver's stdout
    assert "train gru4rec: epoch 1/3" in both and "train gru4rec: epoch 3/3" in both
    assert "refit on all 720 events" in res.stdout
    run = Recommender.load(tmp_path / "m").meta.run
    assert run.refit and run.refit["events"] == 720 and run.refit["epochs"] >= 1
