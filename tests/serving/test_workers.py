"""A real ``warmrec serve --workers 2 --session-store redis://... --admin-token-file F`` on
127.0.0.1: sessions are seen by every worker, ``POST /admin/reload`` (with the token) reaches both,
and sessions outlive the workers."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.serving.conftest import free_port, save_model
from warmrec.serving.sessions import RedisSessionStore

ROOT = Path(__file__).resolve().parents[2]
FRESH = {"Connection": "close"}  # a new connection per request: any worker may take it
TOKEN = "t0ken-for-the-tests-0123456789"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


SERVER_LOG: list[collections.deque[str]] = []
"""The output of the server the running test started (its last lines, for failure messages)."""


def until(what: str, cond: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() >= deadline:
            tail = "".join(SERVER_LOG[-1]) if SERVER_LOG else "(no server output)"
            pytest.fail(f"{what}: not within {timeout} s; the server's last output:\n{tail}")
        time.sleep(0.05)


def worker_ids(c: httpx.Client, n: int = 2, timeout: float = 30) -> set[str]:
    """The ids of the workers that answer, once ``n`` distinct ones have answered."""
    seen: set[str] = set()

    def enough() -> bool:
        try:  # while workers start, a connection may wait in the backlog longer than c's timeout
            seen.add(c.get("/metadata").json()["worker"]["id"])
        except httpx.TimeoutException:
            pass
        return len(seen) >= n

    until(f"{n} workers answering", enough, timeout)
    return seen


@pytest.fixture
def two_workers(tmp_path, redis_url):
    model = save_model("pop", tmp_path / "model")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "WARMREC_SERVE_RELOAD_TIMEOUT": "3"}
    token = tmp_path / "admin-token"
    token.write_text(TOKEN)
    args = ["--workers", "2", "--session-store", redis_url, "--port", str(port)]
    args += ["--admin-token-file", str(token)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "warmrec", "serve", str(model), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    # the server's output is read as it comes (a full pipe would block the supervisor's
    # logging, and with it the restart of dead workers) and shown when a wait fails
    log: collections.deque[str] = collections.deque(maxlen=60)
    threading.Thread(
        target=lambda: [log.append(line.decode(errors="replace")) for line in proc.stdout],
        daemon=True,
    ).start()
    SERVER_LOG.append(log)

    def healthy() -> bool:
        if proc.poll() is not None:
            time.sleep(0.5)
            pytest.fail(f"server exited: {''.join(log)}")
        try:
            return httpx.get(f"{url}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        until("the server answering /health", healthy, 45)
        yield url, model, redis_url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_two_workers_share_sessions_reload_together_and_outlive_restarts(two_workers):
    url, model, redis_url = two_workers
    with httpx.Client(base_url=url, timeout=10, headers=FRESH) as c:
        first = worker_ids(c)

        # events appended through any worker accumulate in one session
        for n, items in enumerate(([1, 2], [3], ["zz", 4]), start=1):
            r = c.post("/sessions/s1/events", json={"items": items})
            assert r.status_code == 200 and r.json()["n_total"] == [2, 3, 5][n - 1]

        def read_all(times: int, until: set[str] | None = None) -> set[str]:
            """Read the session ``times`` times (every read must see all five events), and on,
            up to 10x as many, until every worker in ``until`` has answered; the workers that
            answered /metadata between the reads. (Which worker accepts a connection is the
            kernel's choice: on a busy host one may take dozens in a row.)"""
            answered: set[str] = set()
            n = 0
            while n < times or (until and not until <= answered and n < 10 * times):
                r = c.get("/sessions/s1/recommendations", params={"k": 3})
                assert r.status_code == 200, r.text
                assert r.json()["n_events"] == 5 and r.json()["unknown"] == ["zz"]
                answered.add(c.get("/metadata").json()["worker"]["id"])
                n += 1
            return answered

        # both workers took reads; no read missed the session
        assert read_all(40, until=first) == first

        # without the token no worker reloads
        assert c.post("/admin/reload").status_code == 401
        assert {c.get("/metadata").json()["worker"]["generation"] for _ in range(10)} == {None}

        # a reload through one worker reaches both; every later answer is the new model's
        save_model("markov", model)
        r = c.post("/admin/reload", headers=ADMIN)
        assert r.status_code == 200, r.text
        gen = r.json()["generation"]
        assert isinstance(gen, str) and gen  # a token unique to this reload
        assert r.json()["workers"] == {"confirmed": sorted(first), "failed": {}, "missing": []}
        for _ in range(40):
            assert c.post("/recommend", json={"items": [1], "k": 3}).json()["model"] == "markov"
        metas = [c.get("/metadata").json() for _ in range(20)]
        assert {m["worker"]["id"] for m in metas} == first
        assert {m["worker"]["generation"] for m in metas} == {gen}

        # both workers killed: uvicorn starts new ones, and the session is still there
        store = RedisSessionStore(redis_url)
        pids = {w: info["pid"] for w, info in store.live_workers(60).items()}
        assert set(pids) == first
        for pid in pids.values():
            os.kill(pid, signal.SIGKILL)
        second = worker_ids(c, timeout=90)  # only new workers can answer now (slow on a busy host)
        assert not second & first
        assert read_all(20) <= second  # no read misses the session (one worker may take all 20)

        # a reload now reaches the new workers; the killed ones, until they are given up for
        # gone, are named as not answering (never as confirmed)
        save_model("pop", model)
        r = c.post("/admin/reload", headers=ADMIN)
        workers = r.json()["workers"]
        assert set(workers["confirmed"]) == second and not workers["failed"]
        assert set(workers["missing"]) <= first
        assert r.status_code == (504 if workers["missing"] else 200)
        for _ in range(20):
            assert c.post("/recommend", json={"items": [1], "k": 3}).json()["model"] == "pop"
        store.close()
