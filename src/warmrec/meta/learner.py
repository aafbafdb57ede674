"""One meta-learner interface over any registered neural model (learn2learn style).

:class:`MetaLearner` wraps a :class:`~warmrec.models.neural.NeuralRecommender` and holds its
trainable weights as a dict of tensors ("fast weights"). Every forward pass goes through
:func:`torch.func.functional_call` on a one-line module whose ``forward`` *is* the model's own
``training_step`` (or ``forward_scores``), so the inner loss of a meta-learner is the model's
objective (causal next item for SASRec, masked item for BERT4Rec, ...) and nothing in
:mod:`warmrec.meta` knows a model's layers::

    learner = MetaLearner(model, first_order=False)
    task = learner.clone()                  # fast weights = the model's parameters (no copy)
    for _ in range(steps):
        task.adapt(task.loss(support_batch), lr=0.01)
    query_loss = task.query_loss(histories, targets)   # differentiable w.r.t. the model

``adapt`` takes one gradient step with :func:`torch.autograd.grad` -- never ``backward()``:
with ``first_order=False`` the graph of the step is kept (``create_graph=True``) so the query
loss differentiates through the inner loop (MAML); with ``first_order=True`` the inner
gradients are detached (FO-MAML: ``d phi / d theta`` taken as the identity). The only
``backward()`` remains :func:`warmrec.training.loop.optimizer_step` (contract 3): the outer
update of every meta-learner is a :class:`~warmrec.meta.maml.MetaModel` trained by
:func:`warmrec.training.loop.train`.

``lr`` is a float, or a mapping parameter name -> scalar tensor (MAML++'s learnable per-layer
learning rates, which then receive gradients through the step).

cuDNN's GRU has no double backward: a second-order learner runs its forward passes with cuDNN
disabled (:func:`no_cudnn`; harmless on CPU, where it is a flag).

Per-example losses (:meth:`MetaLearner.example_losses`, the learned adaptive loss's input)
need a batch in the common ``{"items", "targets", ...}`` form (target 0 = no target): each
target position is scored alone by the model's own ``training_step`` (one call per target;
support sets of a few events make that cheap).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from warmrec.data.dataset import Batch
from warmrec.errors import ModelError


@contextlib.contextmanager
def no_cudnn(active: bool = True) -> Iterator[None]:
    """Inside the block when ``active``: cuDNN disabled (its GRU has no double backward) and
    scaled-dot-product attention on the math kernel (the fused CPU/CUDA attention kernels have
    no double backward either: BERT4Rec's second-order steps failed without it), and losses in
    their plain autograd form (:func:`warmrec.models.losses.twice_differentiable`: BPR-max's
    fused backward has no double backward)."""
    if not active:
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from warmrec.models.losses import twice_differentiable

    with (
        torch.backends.cudnn.flags(enabled=False),
        sdpa_kernel(SDPBackend.MATH),
        twice_differentiable(),
    ):
        yield


class _Call(nn.Module):
    """``forward`` = one method of the model; ``functional_call`` swaps ``net``'s weights."""

    def __init__(self, model: Any, method: str) -> None:
        super().__init__()
        self.net = model.net
        self._model = [model]  # not a submodule
        self._method = method

    def forward(self, *args: Any) -> torch.Tensor:
        return getattr(self._model[0], self._method)(*args)


def trainable(net: nn.Module) -> dict[str, torch.Tensor]:
    """The trainable parameters of ``net`` by name (what a meta-learner adapts)."""
    return {n: p for n, p in net.named_parameters() if p.requires_grad}


class MetaLearner:
    """Fast weights of a neural model plus ``clone`` / ``adapt`` (see the module docstring)."""

    def __init__(
        self,
        model: Any,
        first_order: bool = False,
        params: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        if getattr(model, "net", None) is None:
            raise ModelError(
                f"model '{getattr(model, 'name', model)}': a meta-learner needs a neural model "
                "with a network"
            )
        self.model = model
        self.first_order = bool(first_order)
        self.params: dict[str, torch.Tensor] = dict(
            params if params is not None else trainable(model.net)
        )

    # -- learn2learn's interface ------------------------------------------------------------
    def clone(self, first_order: bool | None = None) -> MetaLearner:
        """A learner starting from the current fast weights (shared, still differentiable)."""
        fo = self.first_order if first_order is None else first_order
        return MetaLearner(self.model, fo, self.params)

    def adapt(
        self,
        loss: torch.Tensor,
        lr: float | Mapping[str, torch.Tensor] = 0.01,
        *,
        first_order: bool | None = None,
        grad_clip: float = 0.0,
    ) -> list[torch.Tensor]:
        """One SGD step of the fast weights on ``loss``; returns the gradients used."""
        fo = self.first_order if first_order is None else first_order
        names = list(self.params)
        values = [self.params[n] for n in names]
        if not loss.requires_grad:
            raise ModelError("adapt: the loss does not depend on the fast weights")
        grads = torch.autograd.grad(loss, values, create_graph=not fo, allow_unused=True)
        grads = [torch.zeros_like(v) if g is None else g for g, v in zip(grads, values)]
        if fo:
            grads = [g.detach() for g in grads]
        if grad_clip > 0:
            norm = torch.sqrt(sum((g * g).sum() for g in grads))
            scale = torch.clamp(grad_clip / (norm + 1e-12), max=1.0)
            grads = [g * scale for g in grads]
        new: dict[str, torch.Tensor] = {}
        for n, v, g in zip(names, values, grads):
            step = lr[n] if isinstance(lr, Mapping) else lr
            new[n] = v - step * g
        self.params = new
        return grads

    # -- functional forward passes ----------------------------------------------------------
    def _call(self, method: str, *args: Any) -> torch.Tensor:
        wrapper = _Call(self.model, method)
        params = {f"net.{n}": p for n, p in self.params.items()}
        with contextlib.ExitStack() as stack:
            if not self.first_order:
                stack.enter_context(no_cudnn())
            elif torch.is_grad_enabled() and not self.model.net.training:
                # a first-order query loss is taken in eval mode and back-propagated: cuDNN's
                # RNN refuses a backward outside training mode (GRU4Rec, NARM on a GPU)
                stack.enter_context(torch.backends.cudnn.flags(enabled=False))
            return functional_call(wrapper, params, args, strict=False)

    def loss(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The model's own ``training_step`` on ``batch`` with the fast weights."""
        return self._call("training_step", batch)

    def scores(self, batch: Batch) -> torch.Tensor:
        """The model's ``forward_scores`` (``[B, n_items]``) with the fast weights."""
        return self._call("forward_scores", batch)

    def query_loss(self, batch: Batch, targets: torch.Tensor) -> torch.Tensor:
        """Full-softmax cross-entropy of the model's *scores* for ``targets`` given the
        histories of ``batch``: the quantity the cold-start protocol ranks by, the same for
        every model (causal or bidirectional); padding (index 0) never counts as a class."""
        logits = self.scores(batch)
        logits = logits.masked_fill(
            torch.arange(logits.shape[1], device=logits.device) == 0, float("-inf")
        )
        return torch.nn.functional.cross_entropy(logits, targets.to(logits.device))

    def example_losses(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``[n]`` losses, one per target position of ``batch`` (row-major), each the model's
        ``training_step`` on the batch with only that target kept (a model with its own
        ``example_losses``, e.g. :class:`~warmrec.meta.rating.RatingModel`, gives them)."""
        if hasattr(self.model, "example_losses"):
            return self._call("example_losses", batch)
        if "targets" not in batch or "reset" in batch:
            raise ModelError(
                f"model '{self.model.name}': per-example losses need window batches with "
                "'targets' (GRU4Rec: training='windows')"
            )
        targets = batch["targets"]
        where = torch.nonzero(targets > 0)
        if len(where) == 0:
            raise ModelError("example_losses: the batch has no target")
        out = []
        for b, j in where.tolist():
            only = torch.zeros_like(targets)
            only[b, j] = targets[b, j]
            out.append(self.loss({**batch, "targets": only}))
        return torch.stack(out)
