"""Shared fixtures: tiny data with a known next item, tiny network configs, and paths to the
shared real datasets."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch

from warmrec import Batch, EvalSet, SequenceData, SequenceDataset, evaluate
from warmrec.data.vocab import ItemVocab
from warmrec.models.base import Recommender
from warmrec.rng import seeded_global

os.environ.setdefault("OMP_NUM_THREADS", "1")
# torch is imported above, so the variable alone comes too late for this process: the tests run
# two xdist workers on 2 cores, one torch thread each (2 threads each oversubscribed the machine)
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

SHARED = Path(
    os.environ.get("WARMREC_SHARED_DATA")
    or os.environ.get("WARMREC_DATA")
    or Path(__file__).resolve().parents[2] / "shared" / "data"
)
"""The shared real datasets (``../shared/data``; ``WARMREC_SHARED_DATA``, or ``WARMREC_DATA`` as
the recipes read it, points elsewhere, e.g. from a worktree)."""


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


def split_cyclic(
    n_sessions: int = 200,
    n_items: int = 20,
    length: int = 8,
    seed: int = 0,
    *,
    n_train: int = 160,
    last_only: bool = False,
) -> tuple[SequenceDataset, EvalSet]:
    """``(train, valid)`` of a ``cyclic_log``: its first ``n_train`` sessions, and the rest held
    out (every position, or the last one only)."""
    df = cyclic_log(n_sessions=n_sessions, n_items=n_items, length=length, seed=seed)
    vocab = ItemVocab.from_ids(df["item_id"])
    train = SequenceDataset.from_frame(df.filter(pl.col("session_id") < n_train), vocab)
    held = df.filter(pl.col("session_id") >= n_train)
    return train, EvalSet.from_sessions(held, vocab, last_only=last_only)


@pytest.fixture(scope="module")
def cyclic_split() -> tuple[SequenceDataset, EvalSet]:
    """``(train, valid)`` of ``cyclic_log()``: sessions 0-159 train, 160-199 held out."""
    return split_cyclic()


def growing_catalogue_log(k_new: int = 0, n_users: int = 40) -> pl.DataFrame:
    """A user log over a time split at ``valid_start=100``, ``test_start=150``: each user walks
    the cycle of items 1-10 in training (8 events, t < 100); in validation (2 events) the odd
    users move to items 11-14, new then (no training event: cold), the even ones go on with
    the cycle; in test (2 events) every user walks items 1-14. ``k_new`` more test events, on
    items 1000, 1001, ... each, bring items that only the test part holds; the training and
    validation parts do not depend on ``k_new``."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(n_users):
        cur = int(rng.integers(1, 11))
        for s in range(12):
            if s < 8:
                item, t = cur % 10 + 1, 10.0 * s
            elif s < 10:
                item, t = (10 + (u + s) % 4 + 1) if u % 2 else cur % 10 + 1, 100.0 + s
            else:
                item, t = cur % 14 + 1, 150.0 + s
            rows.append((u, item, t))
            cur = item
    rows += [(j % n_users, 1000 + j, 200.0 + j) for j in range(k_new)]
    return pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")


GROWING_SPLIT = {"test_start": 150.0, "valid_start": 100.0, "drop_unseen": False}
"""The ``temporal`` split options of :func:`growing_catalogue_log`."""


def session_frame(rows: list[tuple[str, str, float]]) -> pl.DataFrame:
    """A log from ``(session_id, item_id, timestamp)`` rows."""
    df = pl.DataFrame(rows, schema=["session_id", "item_id", "timestamp"], orient="row")
    return df.with_columns(pl.col("timestamp").cast(pl.Float64))


HAND_MADE = [
    ("s1", "a", 1),
    ("s1", "b", 2),
    ("s1", "c", 3),
    ("s2", "b", 10),
    ("s2", "c", 11),
    ("s2", "d", 12),
    ("s3", "a", 20),
    ("s3", "c", 21),
    ("s3", "a", 22),
    ("s3", "d", 23),
]


def hand_made() -> SequenceDataset:
    """The hand-made sessions of the popularity, rule and kNN tests (a=1, b=2, c=3, d=4):
    ``s1: a b c`` (t 1-3), ``s2: b c d`` (t 10-12), ``s3: a c a d`` (t 20-23)."""
    return SequenceDataset.from_frame(session_frame(HAND_MADE))


def padded_batch(histories: list[list[int]]) -> Batch:
    """Encoded histories as one left-padded batch (an empty history is all padding)."""
    width = max(1, max(len(h) for h in histories))
    mat = np.zeros((len(histories), width), dtype=np.int64)
    for i, h in enumerate(histories):
        if h:
            mat[i, width - len(h) :] = h
    return Batch(torch.from_numpy(mat))


def raw_scores(model, histories: list[list[int]]) -> np.ndarray:
    """``model.score`` of encoded histories, as a ``[len(histories), n_items + 1]`` array."""
    return model.score(padded_batch(histories)).numpy()


def ranged_sequences(lengths: list[int]) -> SequenceData:
    """``SequenceData`` of sequences with these lengths, holding items ``1, 2, 3, ...`` in order."""
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    items = np.arange(1, offsets[-1] + 1, dtype=np.int64)
    return SequenceData(offsets, items, pl.Series("k", list(range(len(lengths)))))


def assert_learns_cycle(model: Recommender, valid: EvalSet, history: tuple[int, ...] = (3, 4, 5)):
    """On held-out ``cyclic_log`` sessions: HR@10 >= 0.9, and ``history``'s next item on top."""
    assert evaluate(model, valid, ["hr@10"])["hr@10"] >= 0.9
    assert model.recommend([list(history)], k=1) == [[history[-1] + 1]]


def assert_roundtrip(model: Recommender, valid: EvalSet, path: Path, n: int = 10) -> Recommender:
    """Save then load gives the same class, config and scores on ``n`` held-out histories."""
    loaded = Recommender.load(model.save(path))
    assert type(loaded) is type(model) and loaded.config == model.config
    batch = valid.batch(np.arange(n), loaded.history_len)
    assert torch.equal(model.score(batch), loaded.score(batch))
    return loaded


# The one tiny network per neural model that tests train in about a second. Tests that need
# another size say so with overrides of ``tiny_net``.
TINY_NETS: dict[str, dict[str, Any]] = {
    "sasrec": {"d": 16, "n_layers": 1, "n_heads": 1, "ffn_dim": 16, "max_len": 8},
    "bert4rec": {"d": 16, "n_layers": 1, "n_heads": 1, "ffn_dim": 16, "max_len": 8},
    "ssept": {"d_item": 16, "d_user": 8, "n_layers": 1, "n_heads": 1, "max_len": 8},
    "bst": {"d": 16, "n_heads": 1, "ffn_dim": 16, "max_len": 8, "mlp": (16,)},
    "gru4rec": {"hidden_size": 16, "max_len": 8},
    "narm": {"embedding_dim": 16, "hidden_size": 16, "max_len": 8},
}
# Every dropout rate of each model's config (``dropout_all`` sets them together).
DROPOUT_KEYS: dict[str, tuple[str, ...]] = {
    "sasrec": ("dropout", "attn_dropout"),
    "bert4rec": ("dropout", "attn_dropout"),
    "ssept": ("dropout", "attn_dropout"),
    "bst": ("dropout", "attn_dropout", "mlp_dropout"),
    "gru4rec": ("dropout_embed", "dropout_hidden"),
    "narm": ("dropout_embed", "dropout_context"),
}


def tiny_net(
    model: str = "sasrec", *, dropout_all: float | None = None, **overrides: Any
) -> dict[str, Any]:
    """A fresh config dict for a tiny ``model`` network (``TINY_NETS``).

    ``dropout_all`` sets every dropout rate of the model (``None``: the model's defaults);
    ``overrides`` replace or add single keys and win over ``dropout_all``.
    """
    cfg = dict(TINY_NETS[model])
    if dropout_all is not None:
        cfg.update(dict.fromkeys(DROPOUT_KEYS[model], dropout_all))
    cfg.update(overrides)
    return cfg


@contextmanager
def global_generator_meddler() -> Iterator[None]:
    """Within: another thread keeps doing what another fit's setup does -- seed torch's global
    generator (under :data:`warmrec.rng.GLOBAL_LOCK`, :func:`~warmrec.rng.seeded_global`) and
    draw from it -- with the interpreter switching threads every microsecond, so that any draw
    of this thread from the global generator outside the lock meets the other thread's seeds."""
    stop = threading.Event()
    ready = threading.Event()

    def meddle() -> None:
        i = 0
        while not stop.is_set():
            with seeded_global(1000 + i):
                torch.rand(64)
            ready.set()
            i += 1
            time.sleep(1e-4)  # outside the lock: the other thread gets it too

    interval = sys.getswitchinterval()
    other = threading.Thread(target=meddle, daemon=True)
    sys.setswitchinterval(1e-6)
    try:
        other.start()
        ready.wait(5)
        yield
    finally:
        stop.set()
        other.join()
        sys.setswitchinterval(interval)


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
