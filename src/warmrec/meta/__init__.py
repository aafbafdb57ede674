"""Meta-learning of initialisations for cold, small domains.

- :mod:`warmrec.meta.tasks` -- users or sequences as few-shot tasks (support before query);
- :mod:`warmrec.meta.reptile` -- Reptile pre-training (:func:`reptile_pretrain`) and the
  ``"reptile"`` pre-training option before transfer (:func:`reptile_then_transfer`).
"""

from warmrec.meta.reptile import (
    ReptileConfig,
    ReptileResult,
    reptile_pretrain,
    reptile_step,
    reptile_then_transfer,
)
from warmrec.meta.tasks import TaskSet, make_tasks

__all__ = [
    "ReptileConfig",
    "ReptileResult",
    "TaskSet",
    "make_tasks",
    "reptile_pretrain",
    "reptile_step",
    "reptile_then_transfer",
]
