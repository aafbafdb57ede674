"""A learned, task-adaptive inner loss (MELO / METAL style; Baik et al. 2021).

:class:`LossNetwork` maps each support example's loss under the current fast weights, plus the
task's state, to a positive weight; the inner loss is the weighted mean

    L_inner = mean_i  w_i * l_i,      w_i = 2 * sigmoid(f([l_i, mean l, std l, step / S, log(1 + n)]))

(``l`` the per-example losses of the model's own objective, ``step / S`` the inner step's
position, ``n`` the number of support examples). The last layer starts at zero, so an untrained
network weighs every example 1 (the plain objective); the outer loop trains it through the
adapted weights' query loss.

Deviations, on purpose: MELO runs an LSTM over the task's sequence; here the task state is a
handful of loss statistics (cheap, model-agnostic; the sequence is already in each example's
loss). The network learns only through second-order steps: with first-order steps ``d phi /
d w`` is dropped with the rest of the inner graph (MAML++ with derivative-order annealing turns
second order on after its first-order epochs).
"""

from __future__ import annotations

import math

import torch
from torch import nn

N_FEATURES = 5


class LossNetwork(nn.Module):
    """Per-example weights from per-example losses and task state (module docstring)."""

    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(N_FEATURES, hidden), nn.Tanh())
        self.head = nn.Linear(hidden, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def features(self, losses: torch.Tensor, step: int, n_steps: int) -> torch.Tensor:
        n = losses.numel()
        mean = losses.mean().expand(n)
        std = (losses.std() if n > 1 else torch.zeros((), device=losses.device)).expand(n)
        pos = torch.full((n,), step / max(n_steps, 1), device=losses.device)
        size = torch.full((n,), math.log1p(n), device=losses.device)
        return torch.stack([losses, mean, std, pos, size], dim=1)

    def weights(self, losses: torch.Tensor, step: int, n_steps: int) -> torch.Tensor:
        """``[n]`` positive weights (1 at initialisation)."""
        x = self.features(losses, step, n_steps).to(self.head.weight.dtype)
        return 2.0 * torch.sigmoid(self.head(self.body(x))).squeeze(1)

    def forward(self, losses: torch.Tensor, step: int, n_steps: int) -> torch.Tensor:
        """The weighted inner loss (a scalar)."""
        return (self.weights(losses, step, n_steps) * losses).mean()
