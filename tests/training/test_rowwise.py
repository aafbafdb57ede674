"""Row-wise optimizers and the sparse-aware optimizer of the training loop."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from warmrec.training.loop import (
    SparseAwareOptimizer,
    TrainerConfig,
    clip_grad_norm,
    make_optimizer,
)
from warmrec.training.rowwise import RowAdagrad, RowAdam

LOOKUPS = [torch.tensor([1, 2, 2, 5]), torch.tensor([0, 3]), torch.tensor([2, 2, 6, 7])]


def _run(opt_cls, sparse: bool, steps=LOOKUPS, **kw) -> torch.Tensor:
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(8, 3))
    target = torch.randn(8, 3)
    opt = opt_cls([w], **kw)
    for idx in steps:
        opt.zero_grad()
        loss = (F.embedding(idx, w, sparse=sparse) * target[idx]).sum() + F.embedding(
            idx, w, sparse=sparse
        ).square().sum()
        loss.backward()
        opt.step()
    return w.detach()


def test_row_adagrad_equals_torch_adagrad():
    dense = _run(torch.optim.Adagrad, False, lr=0.1)
    torch.testing.assert_close(_run(RowAdagrad, True, lr=0.1), dense)
    torch.testing.assert_close(_run(RowAdagrad, False, lr=0.1), dense)  # dense gradients too


def test_row_adagrad_weight_decay_is_torchs_on_the_touched_rows():
    """The group's ``weight_decay`` was ignored (the tables of GRU4Rec's sparse path had no
    L2): it is Adagrad's L2 term now, on the rows a step touches (all of them: dense Adagrad
    exactly; an untouched row stays put)."""
    every = [torch.arange(8), torch.arange(8)]
    dense = _run(torch.optim.Adagrad, False, every, lr=0.1, weight_decay=0.5)
    torch.testing.assert_close(_run(RowAdagrad, True, every, lr=0.1, weight_decay=0.5), dense)
    assert not torch.allclose(_run(RowAdagrad, True, every, lr=0.1), dense)
    some = _run(RowAdagrad, True, [torch.tensor([1, 2])], lr=0.1, weight_decay=0.5)
    start = _run(RowAdagrad, True, [], lr=0.1)
    assert torch.equal(some[[0, 3, 4, 5, 6, 7]], start[[0, 3, 4, 5, 6, 7]])


def test_sparse_tables_refuse_weight_decay_they_cannot_apply():
    """SGD failed inside torch (add(sparse, dense)) and Adam dropped the decay silently."""
    from warmrec.errors import ConfigError

    table = torch.nn.Parameter(torch.randn(8, 3))
    groups = [{"params": [table], "weight_decay": 0.01, "sparse": True}]
    for name in ("sgd", "adam"):
        with pytest.raises(ConfigError, match="weight_decay.*sparse"):
            make_optimizer(groups, TrainerConfig(optimizer=name, weight_decay=0.01))
    for name in ("adamw", "adagrad"):
        make_optimizer(groups, TrainerConfig(optimizer=name, weight_decay=0.01))


def test_row_adam_is_lazy_adam():
    # first step: dense Adam exactly; afterwards an untouched row stays where it is
    first = LOOKUPS[:1]
    torch.testing.assert_close(
        _run(RowAdam, True, first, lr=0.1), _run(torch.optim.Adam, False, first, lr=0.1)
    )
    torch.testing.assert_close(
        _run(RowAdam, True, lr=0.1), _run(torch.optim.SparseAdam, True, lr=0.1)
    )
    before = _run(RowAdam, True, LOOKUPS[:1], lr=0.1)
    after = _run(RowAdam, True, [LOOKUPS[0], torch.tensor([3])], lr=0.1)
    assert torch.equal(before[[0, 1, 2, 4, 5, 6, 7]], after[[0, 1, 2, 4, 5, 6, 7]])
    assert not torch.equal(before[3], after[3])


def _groups(table: torch.nn.Parameter, other: torch.nn.Parameter) -> list[dict]:
    return [
        {"params": [other], "weight_decay": 0.0},
        {"params": [table], "weight_decay": 0.0, "sparse": True},
    ]


@pytest.mark.parametrize("name", ["adamw", "adagrad", "sgd"])
def test_make_optimizer_steps_sparse_and_dense_groups_and_restores_its_state(name):
    def setup():
        torch.manual_seed(0)
        table, other = torch.nn.Parameter(torch.randn(6, 2)), torch.nn.Parameter(torch.randn(2))
        opt = make_optimizer(_groups(table, other), TrainerConfig(optimizer=name, lr=0.1))
        return table, other, opt

    def step(table, other, opt, idx):
        opt.zero_grad()
        (F.embedding(idx, table, sparse=True).sum(1) * other.sum()).square().sum().backward()
        opt.step()

    table, other, opt = setup()
    assert isinstance(opt, SparseAwareOptimizer) and len(opt.param_groups) == 2
    step(table, other, opt, torch.tensor([1, 2]))
    state = opt.state_dict()
    assert [g["params"] for g in state["param_groups"]] == [[0], [1]]
    t2, o2, opt2 = setup()
    with torch.no_grad():
        t2.copy_(table)
        o2.copy_(other)
    opt2.load_state_dict(copy.deepcopy(state))  # a state_dict shares the live tensors
    for t, o, op in ((table, other, opt), (t2, o2, opt2)):
        step(t, o, op, torch.tensor([2, 4]))
    torch.testing.assert_close(t2, table)
    torch.testing.assert_close(o2, other)
    # a scheduler's learning rate reaches both parts
    for g in opt.param_groups:
        g["lr"] = 0.0
    frozen = table.detach().clone()
    step(table, other, opt, torch.tensor([1, 3]))
    assert torch.equal(table, frozen)


def test_clip_grad_norm_takes_sparse_gradients():
    def grads(sparse: bool) -> torch.Tensor:
        w = torch.nn.Parameter(torch.arange(12.0).reshape(4, 3))
        (F.embedding(torch.tensor([1, 1, 3]), w, sparse=sparse) * 3).sum().backward()
        total = clip_grad_norm([w], 1.0)
        return total, w.grad.to_dense()

    (t_sparse, g_sparse), (t_dense, g_dense) = grads(True), grads(False)
    torch.testing.assert_close(t_sparse, t_dense)
    torch.testing.assert_close(g_sparse, g_dense)
    assert abs(float(g_dense.norm()) - 1.0) < 1e-4
