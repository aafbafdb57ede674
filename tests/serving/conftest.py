"""Fixtures of the serving tests: small fitted models saved as directories."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
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
