"""Fixtures of the serving tests: small fitted models saved as directories, a Redis server of the
tests' own (``redis-server`` on 127.0.0.1, a free port, no persistence; the tests that need it
skip when the binary is absent), an in-process stand-in for what the reloads use of Redis
(:class:`FakeRedis`, :func:`fake_redis`: no server needed), and a real ``warmrec serve``
process (:func:`running_server`)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import cyclic_log, tiny_net
from warmrec import get_model
from warmrec.data.dataset import SequenceDataset

ROOT = Path(__file__).resolve().parents[2]


def save_model(name: str, path: Path, n_items: int = 20, **config) -> Path:
    """Fit ``name`` on ``cyclic_log`` (raw ids 1..n_items) and save it to ``path``."""
    train = SequenceDataset.from_frame(cyclic_log(n_items=n_items))
    model = get_model(name, config)
    if hasattr(model, "training_step"):
        model.fit(train, trainer={"epochs": 1, "seed": 0})
    else:
        model.fit(train)
    return model.save(path)


@pytest.fixture(scope="session")
def pop_dir(tmp_path_factory) -> Path:
    return save_model("pop", tmp_path_factory.mktemp("models") / "pop")


@pytest.fixture(scope="session")
def sasrec_dir(tmp_path_factory) -> Path:
    return save_model("sasrec", tmp_path_factory.mktemp("models") / "sasrec", **tiny_net("sasrec"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_redis(binary: str, workdir: Path) -> tuple[subprocess.Popen, int]:
    """A ``redis-server`` on 127.0.0.1 at a free port (tried a few times: another process may
    take the port between the probe and the bind)."""
    redis = pytest.importorskip("redis", reason="the redis package is not installed")
    last = ""
    for _ in range(5):
        port = free_port()
        proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(workdir),
                "--protected-mode",
                "yes",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                client.ping()
                client.close()
                return proc, port
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
        last = proc.communicate()[0].decode(errors="replace").strip()
    raise RuntimeError(f"redis-server did not start: {last}")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[str]:
    """The URL of a Redis server of this test session's own (stopped at the end)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    proc, port = _start_redis(binary, tmp_path_factory.mktemp("redis"))
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def redis_url(redis_server) -> str:
    """The test Redis server's URL, its database emptied first."""
    import redis

    client = redis.Redis.from_url(redis_server)
    client.flushdb()
    client.close()
    return redis_server


class FakeRedis:
    """What :class:`~warmrec.serving.sessions.RedisSessionStore` uses of Redis for reloads (the
    model generation, the worker registry), in this process: ``GET``, ``SET``, ``INCR``,
    ``FLUSHDB``, a pipeline, and the registry's and the generation's scripts emulated in Python
    (the session scripts are not: a session endpoint fails). Thread-safe; stores bytes as
    Redis does."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.lock = threading.RLock()

    # -- commands --------------------------------------------------------------------------
    def get(self, key: str) -> bytes | None:
        with self.lock:
            return self.data.get(key)

    def set(self, key: str, value: Any) -> bool:
        with self.lock:
            self.data[key] = str(value).encode()
            return True

    def incr(self, key: str) -> int:
        with self.lock:
            n = int(self.data.get(key, b"0")) + 1
            self.data[key] = str(n).encode()
            return n

    def hdel(self, key: str, field: str) -> int:
        with self.lock:
            return int(self.data.get(key, {}).pop(field, None) is not None)

    def zrem(self, key: str, member: str) -> int:
        return self.hdel(key, member)

    def flushdb(self) -> bool:
        """Everything gone, as after a Redis restart without persistence or ``FLUSHDB``."""
        with self.lock:
            self.data.clear()
            return True

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        return None

    def pipeline(self, transaction: bool = True) -> Any:
        fake, calls = self, []

        class Pipeline:
            def __getattr__(self, name: str) -> Any:
                return lambda *a: calls.append((getattr(fake, name), a))

            def execute(self) -> list[Any]:
                with fake.lock:
                    return [fn(*a) for fn, a in calls]

        return Pipeline()

    # -- scripts ----------------------------------------------------------------------------
    def register_script(self, text: str) -> Any:
        from warmrec.serving import sessions

        emulated = {
            sessions._REPORT: self._report,
            sessions._LIVE: self._live,
            getattr(sessions, "_PUBLISH", None): self._publish,
        }
        fn = emulated.get(text)

        def run(keys: list[str] = (), args: list[Any] = (), client: Any = None) -> Any:
            if fn is None:
                import redis

                raise redis.exceptions.ResponseError("script not emulated by FakeRedis")
            with self.lock:
                return fn(list(keys), [str(a) for a in args])

        return run

    def _report(self, keys: list[str], args: list[str]) -> int:
        info, seen = self.data.setdefault(keys[0], {}), self.data.setdefault(keys[1], {})
        info[args[0]], seen[args[0]] = args[1].encode(), time.time()
        return 1

    def _live(self, keys: list[str], args: list[str]) -> list[bytes]:
        info, seen = self.data.get(keys[0], {}), self.data.get(keys[1], {})
        cut = time.time() - int(args[0]) / 1000
        live = [w for w, t in seen.items() if t >= cut]
        return [x for w in live for x in (w.encode(), info.get(w, b"{}"))]

    def _publish(self, keys: list[str], args: list[str]) -> bytes:
        us = time.time_ns() // 1000
        gen = f"{us // 10**6}{us % 10**6:06d}-{args[0]}".encode()
        self.data[keys[0]] = gen
        return gen


@pytest.fixture
def fake_redis(monkeypatch) -> tuple[str, FakeRedis]:
    """A Redis URL every :class:`~warmrec.serving.sessions.RedisSessionStore` of the test
    reaches as one :class:`FakeRedis` (``redis.Redis.from_url`` patched), and that fake."""
    redis = pytest.importorskip("redis", reason="the redis package is not installed")
    fake = FakeRedis()
    monkeypatch.setattr(redis.Redis, "from_url", staticmethod(lambda url, **kw: fake))
    return "redis://fake.invalid:6379/0", fake


@contextmanager
def running_server(model_dir: Path, *args: str, timeout: float = 60) -> Iterator[tuple[str, Any]]:
    """``warmrec serve model_dir`` in a subprocess on a free port of 127.0.0.1, stopped after:
    yields its base URL and the process (stdout and stderr merged into ``proc.stdout``)."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "warmrec", "serve", str(model_dir), "--port", str(port), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited: {proc.stdout.read().decode()}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server did not answer /health within {timeout} s")
            time.sleep(0.2)
        yield url, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
