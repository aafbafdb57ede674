"""Row-wise optimizers for tables with sparse gradients (only the rows a mini-batch touched).

A session model over a 121K-item catalogue touches a few thousand rows of its item table per
mini-batch (inputs, targets, shared negatives). A dense optimizer step reads and writes all
121K rows (and autograd first fills a dense zero gradient of the same size); these optimizers
read and write only the touched rows, with a handful of ``gather`` / ``scatter_add_`` (Adagrad)
or ``index_select`` / ``index_copy_`` / ``index_add_`` (Adam) calls on ``[rows, d]`` blocks. torch's own ``Adagrad`` and ``SparseAdam`` take
sparse gradients too, but build several dense temporaries per step (measured 5.8 and 9.3 ms a
step against about 1 ms here, ``benchmarks/results/speed.md``).

- :class:`RowAdagrad` -- exactly torch's Adagrad update (``lr_decay = 0``): an untouched row's
  update is zero under both, so sparse and dense steps agree. ``weight_decay`` (Adagrad's L2
  term, added to the gradient) applies to the touched rows only ("lazy" L2: dense Adagrad
  also moves every untouched row by it, which is what a sparse step saves).
- :class:`RowAdam` -- "lazy" Adam (as TensorFlow's LazyAdam and torch's SparseAdam): the
  moments of a row move only when the row is touched, the bias correction uses the table's step
  count. On the first step it equals dense Adam; afterwards dense Adam keeps moving untouched
  rows by their decaying momentum, lazy Adam does not. ``weight_decay`` is decoupled (AdamW)
  and applied to the touched rows only.

A dense gradient is accepted too (every row counts as touched).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch


def touched_rows(grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rows[k], values[k, ...])`` of a gradient: a sparse one coalesced (a row looked up
    several times gets its summed gradient once), a dense one as every row."""
    if grad.is_sparse:
        g = grad.coalesce()
        return g.indices()[0], g.values()
    return torch.arange(grad.shape[0], device=grad.device), grad


class RowAdagrad(torch.optim.Optimizer):
    """Adagrad updating only the touched rows (see the module docstring)."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        eps: float = 1e-10,
        initial_accumulator_value: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        defaults = {
            "lr": lr,
            "eps": eps,
            "initial_accumulator_value": initial_accumulator_value,
            "weight_decay": weight_decay,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros(())
                    state["sum"] = torch.full_like(p, group["initial_accumulator_value"])
                state["step"] += 1
                rows, g = touched_rows(p.grad)
                at = rows.view(-1, *([1] * (g.dim() - 1))).expand_as(g)
                if group["weight_decay"]:  # L2 on the touched rows (lazy)
                    g = g + group["weight_decay"] * p.gather(0, at)
                # scatter_add_/gather: 20 % less time than index_select/index_copy_/index_add_
                state["sum"].scatter_add_(0, at, g * g)
                acc = state["sum"].gather(0, at).sqrt_().add_(group["eps"])
                p.scatter_add_(0, at, torch.div(g, acc, out=acc).mul_(-group["lr"]))
        return loss


class RowAdam(torch.optim.Optimizer):
    """Lazy Adam(W) updating only the touched rows (see the module docstring)."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2 = group["betas"]
            lr, wd = group["lr"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros(())
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = float(state["step"])
                rows, g = touched_rows(p.grad)
                m = state["exp_avg"].index_select(0, rows).lerp_(g, 1 - b1)
                v = state["exp_avg_sq"].index_select(0, rows).mul_(b2).addcmul_(g, g, value=1 - b2)
                state["exp_avg"].index_copy_(0, rows, m)
                state["exp_avg_sq"].index_copy_(0, rows, v)
                denom = v.div_(1 - b2**t).sqrt_().add_(group["eps"])
                update = m.div_(denom).mul_(1 / (1 - b1**t))
                if wd:
                    update.add_(p.index_select(0, rows), alpha=wd)
                p.index_add_(0, rows, update, alpha=-lr)
        return loss
