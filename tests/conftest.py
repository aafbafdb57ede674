"""Shared fixtures: tiny data with a known next item, and paths to the shared real datasets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def cyclic_log(
    n_sessions: int = 200, n_items: int = 20, length: int = 8, seed: int = 0
) -> pl.DataFrame:
    """Sessions that walk a cycle ``i -> i + 1 (mod n_items)`` from a random start.

    The next item is always (last item + 1) mod n_items, shifted to ids 1..n_items.
    """
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n_items, size=n_sessions)
    sess = np.repeat(np.arange(n_sessions), length)
    step = np.tile(np.arange(length), n_sessions)
    items = (np.repeat(starts, length) + step) % n_items + 1
    ts = sess * 10_000.0 + step * 60.0
    return pl.DataFrame({"session_id": sess, "item_id": items, "timestamp": ts})


@pytest.fixture
def cyclic() -> pl.DataFrame:
    return cyclic_log()


def require_shared(name: str) -> Path:
    p = SHARED / name
    if not p.exists():
        pytest.skip(f"shared dataset {name} not found at {p} (../shared is absent)")
    return p


@pytest.fixture
def ml100k() -> Path:
    return require_shared("ml-100k")


@pytest.fixture
def nowplaying() -> Path:
    return require_shared("nowplaying-1m")
