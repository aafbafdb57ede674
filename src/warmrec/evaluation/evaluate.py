"""One ``evaluate()`` for the CLI, tuning, tests and benchmarks.

Protocols:

- ``"full"`` (default): the target is ranked against the whole catalogue.
- ``"sampled-uniform-N"`` / ``"sampled-pop-N"``: the target is ranked against N sampled items
  (uniformly, or in proportion to training popularity; never the target itself). Sampled metrics
  are known to disagree with full ranking; they exist only under these explicit names.

In every protocol the target's rank counts ties against the model, padding is never ranked, and
NaN scores rank last. With ``exclude_seen=True`` every item of the (whole) history is removed
before ranking -- including the target if it was seen, which then counts as a miss.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import torch
from tqdm.auto import tqdm

from warmrec.data.dataset import EvalSet
from warmrec.data.sequences import pad_windows
from warmrec.errors import ConfigError
from warmrec.evaluation import metrics as M

DEFAULT_METRICS = ("hr@10", "ndcg@10", "mrr@10", "hr@20", "ndcg@20", "mrr@20")

_SAMPLED = re.compile(r"^sampled-(uniform|pop)-(\d+)$")


@dataclass
class EvalResult:
    """Metric values (``summary``), per-example values (``per_example``) and raw ranks."""

    summary: dict[str, float]
    per_example: dict[str, np.ndarray]
    ranks: np.ndarray
    protocol: str
    n_examples: int
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def table(self) -> pl.DataFrame:
        """Tidy table: one row per metric (``metric``, ``k``, ``value``)."""
        rows = [(lbl.split("@")[0], int(lbl.split("@")[1]), v) for lbl, v in self.summary.items()]
        return pl.DataFrame(rows, schema=["metric", "k", "value"], orient="row")

    def __getitem__(self, label: str) -> float:
        return self.summary[label.lower()]


def _sample_protocol(protocol: str) -> tuple[str, int] | None:
    if protocol == "full":
        return None
    m = _SAMPLED.match(protocol)
    if not m:
        raise ConfigError(
            f"unknown protocol '{protocol}'; expected 'full', 'sampled-uniform-N' or 'sampled-pop-N'"
        )
    return m.group(1), int(m.group(2))


def _sample_negatives(
    targets: np.ndarray, n: int, n_items: int, probs: np.ndarray | None, rng: np.random.Generator
) -> np.ndarray:
    """``[B, n]`` item indices in ``1..n_items-1``, none equal to its row's target."""
    b = len(targets)
    if probs is None:
        # draw from n_items - 2 values and shift past the target: exact uniform over the rest
        draw = rng.integers(1, n_items - 1, size=(b, n))
        return np.where(draw >= targets[:, None], draw + 1, draw)
    out = rng.choice(n_items, size=(b, n), p=probs)
    bad = out == targets[:, None]
    while bad.any():
        out[bad] = rng.choice(n_items, size=int(bad.sum()), p=probs)
        bad = out == targets[:, None]
    return out


def evaluate(
    model,
    eval_set: EvalSet,
    metrics: tuple[str, ...] | list[str] = DEFAULT_METRICS,
    protocol: str = "full",
    *,
    exclude_seen: bool = False,
    item_counts: np.ndarray | None = None,
    item_categories: np.ndarray | None = None,
    batch_size: int = 512,
    seed: int = 0,
    progress: bool = False,
) -> EvalResult:
    """Rank each example's target and compute ``metrics``.

    Args:
        model: anything with ``score(batch) -> Tensor[B, n_items]`` and ``history_len``.
        eval_set: the examples.
        metrics: names like ``"ndcg@10"``; also ``coverage@K``, ``popularity@K`` (needs
            ``item_counts``), ``cat_hr@K`` and ``cat_map@K`` (need ``item_categories``, a boolean
            ``[n_items, n_categories]`` matrix).
        protocol: ``"full"`` or a named sampled protocol.
        exclude_seen: remove history items before ranking.
        item_counts: training count per item index (popularity metric, popularity sampling).
        seed: seed of negative sampling.
    """
    specs = [M.parse_metric(m) for m in metrics]
    sampled = _sample_protocol(protocol)
    list_specs = [s for s in specs if s.name in M.LIST_METRICS]
    if any(s.name == "popularity" for s in list_specs) and item_counts is None:
        raise ConfigError("metric popularity@K needs item_counts (training counts per item)")
    if any(s.name.startswith("cat_") for s in list_specs) and item_categories is None:
        raise ConfigError("category metrics need item_categories")
    if sampled and list_specs:
        raise ConfigError("list metrics (coverage, popularity, category) need the 'full' protocol")
    n = len(eval_set)
    n_items = eval_set.n_items
    probs = None
    if sampled and sampled[0] == "pop":
        if item_counts is None:
            raise ConfigError("protocol sampled-pop-N needs item_counts")
        w = np.asarray(item_counts, dtype=np.float64).copy()
        w[0] = 0.0
        probs = w / w.sum()
    if sampled and sampled[1] >= n_items - 1:
        raise ConfigError(f"protocol {protocol}: N must be below the catalogue size {n_items - 1}")
    rng = np.random.default_rng(seed)
    kmax = max([s.k for s in list_specs], default=0)
    ranks = np.zeros(n, dtype=np.int64)
    topk_all = np.zeros((n, kmax), dtype=np.int64) if kmax else None
    maxlen = int(getattr(model, "history_len", 50))
    was_training = getattr(model, "training", None)
    starts = range(0, n, batch_size)
    with torch.no_grad():
        for lo in tqdm(starts, desc="evaluate", disable=not progress, leave=False):
            idx = np.arange(lo, min(lo + batch_size, n))
            batch = eval_set.batch(idx, maxlen)
            scores = model.score(batch).detach().float().cpu()
            if scores.shape != (len(idx), n_items):
                raise ConfigError(
                    f"model.score returned shape {tuple(scores.shape)}, expected {(len(idx), n_items)}"
                )
            scores = torch.nan_to_num(scores, nan=-torch.inf)
            scores[:, 0] = -torch.inf
            if exclude_seen:
                hl = int((eval_set.ends[idx] - eval_set.starts[idx]).max(initial=0))
                if hl:
                    full = pad_windows(eval_set.items, eval_set.starts[idx], eval_set.ends[idx], hl)
                    scores.scatter_(1, torch.from_numpy(full), -torch.inf)
                    scores[:, 0] = -torch.inf
            tgt = torch.from_numpy(eval_set.targets[idx]).long()
            t_score = scores.gather(1, tgt[:, None])
            if sampled:
                neg = torch.from_numpy(
                    _sample_negatives(eval_set.targets[idx], sampled[1], n_items, probs, rng)
                )
                cand = scores.gather(1, neg)
                r = (cand >= t_score).sum(1) + 1
            else:
                # ties against the model: every other item scoring >= the target ranks above it
                r = (scores >= t_score).sum(1)
                r = torch.where(
                    torch.isinf(t_score[:, 0]) & (t_score[:, 0] < 0),
                    torch.full_like(r, n_items - 1),
                    r,
                )
            ranks[idx] = r.numpy()
            if kmax:
                topk_all[idx] = torch.topk(scores, kmax, dim=1).indices.numpy()
                fin = torch.isfinite(torch.topk(scores, kmax, dim=1).values).numpy()
                topk_all[idx] = np.where(fin, topk_all[idx], 0)
    if was_training is not None and hasattr(model, "train"):
        model.train(was_training)
    summary: dict[str, float] = {}
    per_example: dict[str, np.ndarray] = {}
    for s in specs:
        if s.name in M.RANK_METRICS:
            vals = M.RANK_METRICS[s.name](ranks, s.k)
        elif s.name == "coverage":
            summary[s.label] = M.coverage(topk_all[:, : s.k], n_items) if n else 0.0
            continue
        elif s.name == "popularity":
            vals = M.mean_popularity(topk_all[:, : s.k], np.asarray(item_counts, dtype=np.float64))
        else:
            hr, ap = M.category_hits(topk_all[:, : s.k], eval_set.targets, item_categories)
            vals = hr if s.name == "cat_hr" else ap
        per_example[s.label] = vals
        summary[s.label] = float(np.nanmean(vals)) if n else 0.0
    return EvalResult(summary, per_example, ranks, protocol, n)
