"""Ranking metrics as pure functions of the target's 1-based rank (or of top-k lists).

With one relevant item per example, Recall@K equals HR@K and AP@K equals 1/rank within K. Ranks
count ties against the model: a target tied with ``t`` other items has rank ``greater + t + 1``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from warmrec.errors import ConfigError


def hit_rate(ranks: np.ndarray, k: int) -> np.ndarray:
    return (ranks <= k).astype(np.float64)


def recall(ranks: np.ndarray, k: int) -> np.ndarray:
    return hit_rate(ranks, k)


def ndcg(ranks: np.ndarray, k: int) -> np.ndarray:
    r = ranks.astype(np.float64)
    return np.where(r <= k, 1.0 / np.log2(r + 1.0), 0.0)


def mrr(ranks: np.ndarray, k: int) -> np.ndarray:
    r = ranks.astype(np.float64)
    return np.where(r <= k, 1.0 / r, 0.0)


def average_precision(ranks: np.ndarray, k: int) -> np.ndarray:
    """AP@K with one relevant item: precision at its rank, 1/rank, if within K."""
    return mrr(ranks, k)


RANK_METRICS = {
    "hr": hit_rate,
    "recall": recall,
    "ndcg": ndcg,
    "mrr": mrr,
    "map": average_precision,
}
LIST_METRICS = ("coverage", "popularity", "cat_hr", "cat_map")


@dataclass(frozen=True)
class MetricSpec:
    """A parsed metric name such as ``ndcg@10``."""

    name: str
    k: int

    @property
    def label(self) -> str:
        return f"{self.name}@{self.k}"


_SPEC = re.compile(r"^\s*([a-z_]+)\s*@\s*(\d+)\s*$", re.I)


def parse_metric(text: str) -> MetricSpec:
    """``"NDCG@10"`` -> ``MetricSpec("ndcg", 10)``; unknown names raise ConfigError."""
    m = _SPEC.match(text)
    if not m:
        raise ConfigError(f"metric '{text}': expected NAME@K, e.g. ndcg@10")
    name, k = m.group(1).lower(), int(m.group(2))
    if name not in RANK_METRICS and name not in LIST_METRICS:
        raise ConfigError(
            f"unknown metric '{name}'; known: {', '.join(list(RANK_METRICS) + list(LIST_METRICS))}"
        )
    if k < 1:
        raise ConfigError(f"metric '{text}': K must be at least 1")
    return MetricSpec(name, k)


def coverage(topk: np.ndarray, n_items: int) -> float:
    """Share of the catalogue (excluding padding) that appears in any top-K list."""
    seen = np.unique(topk[topk > 0])
    return float(len(seen)) / max(n_items - 1, 1)


def mean_popularity(topk: np.ndarray, item_counts: np.ndarray) -> np.ndarray:
    """Mean training count of the recommended items, per example."""
    vals = np.where(topk > 0, item_counts[np.clip(topk, 0, None)], np.nan)
    return np.nanmean(vals, axis=1)


def category_hits(
    topk: np.ndarray, targets: np.ndarray, item_cats: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Category-level HR@K and AP@K.

    ``item_cats`` is a boolean ``[n_items, n_categories]`` matrix. A recommended item is relevant
    when it shares a category with the target. HR@K: any relevant item in the top K. AP@K: the
    mean of precision@i over relevant positions i, divided by ``min(K, relevant items in the
    catalogue)``.
    """
    tc = item_cats[targets]  # [B, C]
    rec = item_cats[np.clip(topk, 0, None)]  # [B, K, C]
    rel = (rec & tc[:, None, :]).any(axis=2) & (topk > 0)  # [B, K]
    hr = rel.any(axis=1).astype(np.float64)
    k = topk.shape[1]
    n_rel = (item_cats[1:].astype(np.int64) @ tc.T.astype(np.int64) > 0).sum(axis=0)
    prec = np.cumsum(rel, axis=1) / np.arange(1, k + 1)
    denom = np.minimum(k, n_rel).astype(np.float64)
    ap = np.where(denom > 0, (prec * rel).sum(axis=1) / np.maximum(denom, 1), 0.0)
    return hr, ap
