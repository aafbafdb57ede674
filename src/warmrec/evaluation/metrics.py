"""Ranking metrics as pure functions of the target's 1-based rank (or of top-k lists).

With one relevant item per example, Recall@K equals HR@K and AP@K equals 1/rank within K. Ranks
count ties against the model: a target tied with ``t`` other items has rank ``greater + t + 1``.
A target that was not ranked at all (removed with the seen items, or scored NaN or -inf, which no
top-k list returns) has rank :data:`UNRANKED`, beyond every cut-off: a miss at any K.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from warmrec.errors import ConfigError

UNRANKED = np.iinfo(np.int64).max
"""The rank of a target no ranking holds (a miss at every cut-off, even K >= the catalogue)."""


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


def parse_rank_metric(text: str, what: str) -> MetricSpec:
    """:func:`parse_metric` of a metric something maximises (a search's, a selection's): a
    rank metric at a cut-off, never a list property (``popularity@10`` would pick the most
    popular lists); ``what`` names the setting in the error."""
    m = parse_metric(text)
    if m.name not in RANK_METRICS:
        raise ConfigError(
            f"{what}: expected a rank metric ({', '.join(RANK_METRICS)}) at a cut-off, "
            f"found {text!r}"
        )
    return m


def coverage(topk: np.ndarray, n_items: int) -> float:
    """Share of the catalogue (excluding padding) that appears in any top-K list."""
    seen = np.unique(topk[topk > 0])
    return float(len(seen)) / max(n_items - 1, 1)


def mean_popularity(topk: np.ndarray, item_counts: np.ndarray) -> np.ndarray:
    """Mean training count of the recommended items, per example (NaN for an empty list)."""
    valid = topk > 0
    vals = np.where(valid, item_counts[np.clip(topk, 0, None)], 0.0)
    n = valid.sum(axis=1)
    return np.where(n > 0, vals.sum(axis=1) / np.maximum(n, 1), np.nan)


def _n_related(item_cats: np.ndarray, targets: np.ndarray, block: int = 1 << 22) -> np.ndarray:
    """Per target: how many real items share at least one category with it.

    Computed once per distinct category pattern of the targets, in blocks of patterns, so memory
    stays at about ``block`` floats whatever the number of examples.
    """
    patterns, inv = np.unique(item_cats[targets], axis=0, return_inverse=True)
    cats = item_cats[1:].astype(np.float32)
    step = max(1, block // max(len(cats), 1))
    counts = [
        ((cats @ patterns[i : i + step].T.astype(np.float32)) > 0).sum(axis=0)
        for i in range(0, len(patterns), step)
    ]
    return np.concatenate(counts)[np.ravel(inv)]


def category_hits(
    topk: np.ndarray, targets: np.ndarray, item_cats: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Category-level HR@K and AP@K.

    ``item_cats`` is a boolean ``[n_items, n_categories]`` matrix. A recommended item is relevant
    when it shares a category with the target. HR@K: any relevant item in the top K. AP@K: the
    sum of precision@i over relevant positions i, divided by ``min(K, relevant items in the
    catalogue)``. Padding slots (0) in ``topk`` are never relevant.
    """
    item_cats = np.asarray(item_cats, dtype=bool)
    targets = np.asarray(targets)
    b, k = topk.shape
    hr = np.zeros(b, dtype=np.float64)
    ap = np.zeros(b, dtype=np.float64)
    if b == 0:
        return hr, ap
    n_rel = _n_related(item_cats, targets)
    step = max(1, (1 << 24) // max(k * item_cats.shape[1], 1))  # bound the [rows, K, C] block
    for lo in range(0, b, step):
        sl = slice(lo, lo + step)
        tc = item_cats[targets[sl]]  # [B, C]
        rec = item_cats[np.clip(topk[sl], 0, None)]  # [B, K, C]
        rel = (rec & tc[:, None, :]).any(axis=2) & (topk[sl] > 0)  # [B, K]
        hr[sl] = rel.any(axis=1)
        prec = np.cumsum(rel, axis=1) / np.arange(1, k + 1)
        denom = np.minimum(k, n_rel[sl]).astype(np.float64)
        ap[sl] = np.where(denom > 0, (prec * rel).sum(axis=1) / np.maximum(denom, 1), 0.0)
    return hr, ap
