"""A real local Ray cluster: a head and a second node on loopback, a 2-worker search that
finishes and reports the best trial, and a worker node killed mid-trial (the trial is retried).

The test starts and stops its own cluster (``ray start --block`` in new process groups, ended by
their process-group ids, never ``ray stop``, which would end every Ray on the machine)."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import cyclic_log

ROOT = Path(__file__).resolve().parents[2]
RAY = Path(sys.executable).parent / "ray"
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]  # one Ray at a time

SPACE = """
[search]
metric = "recall@10"
[model]
vector_size = 32
window = 3
epochs = 600
sample = 0.0
n_recent = 1
negative = { type = "int", low = 2, high = 8 }
alpha = { type = "log", low = 0.01, high = 0.05 }
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "disabled",  # a throw-away cluster of this test only
        "OMP_NUM_THREADS": "1",
    }


def _start_node(args: list[str], log: Path) -> subprocess.Popen:
    agent = ["--dashboard-agent-listen-port", str(_free_port())]
    return subprocess.Popen(
        [str(RAY), "start", "--block", "--num-cpus", "1", *agent, *args],
        env=_env(),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Ray's raylet and workers leave the process group)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """End a node: its ``ray start`` process and every process it started, by their ids."""
    pids = [proc.pid, *_descendants(proc.pid)]
    for pid in reversed(pids):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        for pid in [proc.pid, *_descendants(proc.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()
    for pid in pids[1:]:  # what SIGTERM left behind
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _nodes_alive(address: str) -> int:
    code = (
        f"import ray; ray.init(address={address!r}, log_to_driver=False); "
        "print(sum(n['Alive'] for n in ray.nodes()))"
    )
    r = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True,
                       timeout=60)  # fmt: skip
    return int(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 and r.stdout.strip() else 0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    port = _free_port()
    address = f"127.0.0.1:{port}"
    head = _start_node(
        ["--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--include-dashboard=false",
         "--disable-usage-stats"],
        tmp_path / "head.log",
    )  # fmt: skip
    worker = None
    try:
        deadline = time.monotonic() + 90
        while _nodes_alive(address) < 1:
            assert time.monotonic() < deadline, (tmp_path / "head.log").read_text()[-2000:]
            time.sleep(1)
        worker = _start_node(
            [f"--address={address}", "--node-ip-address=127.0.0.1"], tmp_path / "worker.log"
        )
        while _nodes_alive(address) < 2:
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-2000:]
            time.sleep(1)
        yield address, worker
    finally:
        if worker is not None:
            _stop(worker)
        _stop(head)


def _tune(address: str, out: Path, data: Path, space: Path, trials: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "warmrec", "tune", "--backend", "ray", "--address", address,
           "--model", "item2vec", "--data", str(data), "--space", str(space), "--trials",
           str(trials), "--n-jobs", "2", "--pruner", "none", "--max-failures", "2",
           "--out", str(out), "--json"]  # fmt: skip
    return subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip


def _trial_running_on(out: Path, node: subprocess.Popen) -> bool:
    """Whether a trial of ``node`` has reported an epoch <= 360 of its 600 and is not done. Ray
    writes progress.csv in bursts (the first rows appear ~200 epochs in, ~10 s on a quiet machine):
    a trial seen near its end could finish before the kill, and then nothing would be retried."""
    pids = set(_descendants(node.pid))
    for p in (out / "ray" / "search").glob("*/progress.csv"):
        try:
            rows = list(csv.DictReader(p.read_text().splitlines()))
        except OSError:
            continue
        if (
            rows
            and rows[-1].get("finished") == "False"
            and int(rows[-1]["pid"]) in pids
            and int(float(rows[-1]["epoch"])) <= 360  # not near its end: the kill lands mid-trial
        ):
            return True
    return False


def test_two_node_search_survives_a_killed_worker_node(tmp_path: Path, cluster) -> None:
    address, worker = cluster
    data = tmp_path / "log.csv"
    cyclic_log(n_sessions=1500, n_items=100, length=10).write_csv(data)
    space = tmp_path / "space.toml"
    space.write_text(SPACE)
    out = tmp_path / "out"
    proc = _tune(address, out, data, space, trials=3)
    try:
        deadline = time.monotonic() + 240
        # a trial runs on the worker node (every node has one CPU, a trial takes one)
        while not _trial_running_on(out, worker):
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no trial ever ran on the worker node"
            time.sleep(0.2)
        _stop(worker, signal.SIGKILL)  # the worker node dies mid-trial
        stdout, stderr = proc.communicate(timeout=max(30.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr[-3000:]
    res = json.loads(stdout)
    assert res["backend"] == "ray" and res["trials"] == 3
    assert res["n_complete"] == 3, res  # the killed trial was retried and finished
    assert res["best"] is not None and res["best"]["test"]
    retried = [r for r in json.loads((out / "summary.json").read_text())["rows"] if r["retries"]]
    assert retried, stderr[-4000:]
