"""User-aware training windows (the base of SSE-PT and BST)."""

from __future__ import annotations

import numpy as np
import polars as pl
import torch

from warmrec.data.sequences import SequenceData
from warmrec.models.user_features import UserWindowData


def test_user_windows_carry_the_sequence_user():
    seqs = SequenceData(np.array([0, 3, 3, 9]), np.arange(1, 10), pl.Series("k", [0, 1, 2]))
    wd = UserWindowData(seqs, np.array([4, 5, 6]), max_len=4)
    batch = next(wd.batches(10, np.random.default_rng(0)))
    by_target = {}
    for t, u in zip(batch["targets"], batch["users"]):
        for v in t[t > 0].tolist():
            by_target[v] = int(u)
    assert by_target == {2: 4, 3: 4, 5: 6, 6: 6, 7: 6, 8: 6, 9: 6}
    moving = UserWindowData(seqs, np.array([4, 5, 6]), max_len=2, random_phase=True)
    for seed in range(3):  # windows move every epoch; each keeps its sequence's user
        for b in moving.batches(2, np.random.default_rng(seed)):
            first = b["items"][:, -1]
            assert (b["users"] == torch.where(first <= 3, 4, 6)).all()
