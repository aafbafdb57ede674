"""A real server process (``warmrec serve``) on 127.0.0.1, a real HTTP client, then stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TOKEN = "t0ken-for-the-tests-0123456789"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def server(pop_dir, request, tmp_path):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    extra = getattr(request, "param", [])
    token = tmp_path / "admin-token"
    token.write_text(TOKEN)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "warmrec",
            "serve",
            str(pop_dir),
            "--port",
            str(port),
            "--admin-token-file",
            str(token),
            *extra,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            pytest.fail(f"server exited: {proc.stdout.read().decode()}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("server did not answer /health within 60 s")
        time.sleep(0.2)
    try:
        yield url, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_real_server_answers_and_reloads_without_dropping_requests(server):
    server, _ = server
    with httpx.Client(base_url=server, timeout=10) as c:
        # the model is warm before the port opens: the first answer is a normal one
        r = c.post("/recommend", json={"items": [1, 2, "zz"], "k": 3})
        assert r.status_code == 200 and r.json()["unknown"] == ["zz"]
        assert c.post("/recommend", json={"items": ["zz"]}).status_code == 400
        assert c.post("/sessions/u1/events", json={"items": [4, 5]}).json()["n_events"] == 2
        assert c.get("/sessions/u1/recommendations", params={"k": 2}).status_code == 200
        assert c.get("/docs").status_code == 200

    statuses: list[int] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=server, timeout=10) as c:
            while not stop.is_set():
                statuses.append(c.post("/recommend", json={"items": [3], "k": 5}).status_code)

    workers = [threading.Thread(target=hammer) for _ in range(3)]
    for w in workers:
        w.start()
    try:
        time.sleep(0.3)
        with httpx.Client(base_url=server, timeout=30, headers=ADMIN) as c:
            for _ in range(3):
                assert c.post("/admin/reload").status_code == 200
        time.sleep(0.3)
    finally:
        stop.set()
        for w in workers:
            w.join()
    assert statuses and set(statuses) == {200}


def test_sighup_reloads_in_place(server):
    server, proc = server
    with httpx.Client(base_url=server, timeout=10) as c:
        before = c.get("/metadata").json()["loaded_at"]
        os.kill(proc.pid, signal.SIGHUP)  # one worker: the server is this process
        deadline = time.monotonic() + 30
        while c.get("/metadata").json()["loaded_at"] == before:
            assert time.monotonic() < deadline, "SIGHUP did not reload the model"
            time.sleep(0.1)
        assert c.post("/recommend", json={"items": [1]}).status_code == 200


@pytest.mark.slow
@pytest.mark.parametrize("server", [["--workers", "2"]], indirect=True)
def test_sighup_restarts_every_worker_without_dropping_requests(server):
    url, proc = server
    fresh = {"Connection": "close"}  # a new connection per request reaches any worker
    with httpx.Client(base_url=url, timeout=10, headers=fresh) as c:
        before = {c.get("/metadata").json()["loaded_at"] for _ in range(10)}
        proc.send_signal(signal.SIGHUP)
        codes: list[int] = []
        deadline = time.monotonic() + 120
        while True:
            assert time.monotonic() < deadline, "SIGHUP did not restart the workers"
            codes.append(c.post("/recommend", json={"items": [1], "k": 3}).status_code)
            meta = c.get("/metadata")
            codes.append(meta.status_code)
            if meta.json()["loaded_at"] not in before:
                break
            time.sleep(0.05)
    assert set(codes) == {200}
