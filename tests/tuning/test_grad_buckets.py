"""Bucketed gradient averaging (GradBuckets): two gloo processes average their gradients in fewer
collectives than parameters and get the mean of the per-worker gradients, dense and sparse alike,
matching the former one-all-reduce-per-parameter hooks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from warmrec.errors import ConfigError
from warmrec.tuning.distributed import GradBuckets, average_gradients


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.table = nn.Embedding(20, 8)  # sparse lookups
        self.emb = nn.Embedding(20, 8)
        self.l1 = nn.Linear(8, 16)
        self.l2 = nn.Linear(16, 8)
        self.unused = nn.Linear(2, 2)  # no gradient in any step

    def loss(self, items: torch.Tensor) -> torch.Tensor:
        x = nn.functional.embedding(items, self.table.weight, sparse=True) + self.emb(items)
        return self.l2(torch.tanh(self.l1(x))).pow(2).mean()


def _items(rank: int) -> torch.Tensor:
    return torch.arange(6) * (rank + 1) % 20


def _grads(net: _Net) -> dict[str, torch.Tensor | None]:
    return {
        n: None if p.grad is None else p.grad.to_dense().clone() for n, p in net.named_parameters()
    }


def _worker(rank: int, store: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        results = {}
        for mode in ("buckets", "plain"):
            net = _Net()
            if mode == "buckets":
                calls = []

                def counted(t, calls=calls, **kw):
                    calls.append(t.numel())
                    return dist.all_reduce(t, **kw)

                gb = GradBuckets(
                    net.parameters(), 2, bucket_mb=0.0004, sparse=[net.table.weight],
                    all_reduce=counted,
                )  # fmt: skip
            else:
                hooks = average_gradients(net, 2)
            result = {}
            for step in range(2):  # twice: the state resets between backward passes
                net.zero_grad(set_to_none=True)
                net.loss(_items(rank + step)).backward()
                result[step] = _grads(net)
            if mode == "buckets":
                result["collectives"] = gb.collectives
                result["buckets"] = len(gb.buckets)
                result["calls"] = len(calls)
                gb.remove()
            else:
                for h in hooks:
                    h.remove()
            results[mode] = result
        if rank == 0:
            torch.save(results, out)
    finally:
        dist.destroy_process_group()


def _run(tmp_path: Path) -> dict:
    out = tmp_path / "grads.pt"
    mp.spawn(_worker, args=(str(tmp_path / "store"), str(out)), nprocs=2, join=True)
    return torch.load(out)


def _expected(step: int) -> dict[str, torch.Tensor | None]:
    per = []
    for rank in range(2):
        net = _Net()
        net.loss(_items(rank + step)).backward()
        per.append(_grads(net))
    return {n: None if g is None else (g + per[1][n]) / 2 for n, g in per[0].items()}


def test_buckets_average_like_per_parameter_hooks_in_fewer_collectives(tmp_path: Path) -> None:
    res = _run(tmp_path)
    buckets, plain = res["buckets"], res["plain"]
    n_params = len(list(_Net().parameters()))
    # 400 bytes per bucket: the sparse table alone, then the dense ones grouped
    assert buckets["buckets"] < n_params
    assert buckets["collectives"] == buckets["calls"] / 2 == buckets["buckets"]
    for step in range(2):
        want = _expected(step)
        for name, g in want.items():
            got, old = buckets[step][name], plain[step][name]
            if g is None:  # the unused layer: no gradient, as with the per-parameter hooks
                assert got is None and old is None, name
                continue
            torch.testing.assert_close(got, g, rtol=1e-5, atol=1e-6, msg=name)
            torch.testing.assert_close(got, old, rtol=1e-5, atol=1e-6, msg=name)


def test_bucket_layout_reverse_order_and_caps() -> None:
    net = _Net()
    gb = GradBuckets(net.parameters(), 2, bucket_mb=1.0, sparse=[net.table.weight])
    try:
        names = {id(p): n for n, p in net.named_parameters()}
        layout = [[names[id(p)] for p in b] for b in gb.buckets]
        # reverse registration order; the sparse table in a bucket of its own
        assert layout == [
            ["unused.bias", "unused.weight", "l2.bias", "l2.weight", "l1.bias", "l1.weight",
             "emb.weight"],
            ["table.weight"],
        ]  # fmt: skip
        small = GradBuckets(net.parameters(), 2, bucket_mb=0.0004, sparse=[net.table.weight])
        sizes = [sum(p.numel() * 4 for p in b) for b in small.buckets]
        small.remove()
        # at most 0.0004 MB (419 bytes) per dense bucket unless one parameter is larger
        assert all(s <= 0.0004 * 2**20 or len(b) == 1 for s, b in zip(sizes, small.buckets))
        assert len(small.buckets) > 2
    finally:
        gb.remove()
    with pytest.raises(ConfigError, match="bucket_mb: expected a number >= 0"):
        GradBuckets(net.parameters(), 2, bucket_mb=-1)
