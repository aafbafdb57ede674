"""Fixtures of the serving tests: small fitted models saved as directories, and a Redis server
of the tests' own (``redis-server`` on 127.0.0.1, a free port, no persistence; the tests that need
it skip when the binary is absent)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import cyclic_log, tiny_net
from warmrec import get_model
from warmrec.data.dataset import SequenceDataset


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
