"""Meta-learning of initialisations for cold, small domains.

- :mod:`warmrec.meta.tasks` -- users or sequences as few-shot tasks (support before query);
- :mod:`warmrec.meta.reptile` -- Reptile pre-training (:func:`reptile_pretrain`) and the
  ``"reptile"`` pre-training option before transfer (:func:`reptile_then_transfer`);
- :mod:`warmrec.meta.learner` -- :class:`MetaLearner`, the learn2learn-style wrapper
  (``clone`` / ``adapt`` / ``first_order``) over any neural model's own ``training_step``;
- :mod:`warmrec.meta.maml` -- MAML, FO-MAML, MAML++ and Reptile as one :class:`MetaModel`
  trained by the training loop (:func:`meta_train`);
- :mod:`warmrec.meta.adaptive_loss` -- the learned, task-adaptive inner loss (MELO / METAL);
- :mod:`warmrec.meta.coldstart` -- the user cold-start protocol and study.
"""

from warmrec.meta.adaptive_loss import LossNetwork
from warmrec.meta.learner import MetaLearner
from warmrec.meta.maml import MetaConfig, MetaModel, meta_train
from warmrec.meta.reptile import (
    ReptileConfig,
    ReptileResult,
    reptile_pretrain,
    reptile_step,
    reptile_then_transfer,
)
from warmrec.meta.tasks import TaskSet, make_tasks

__all__ = [
    "LossNetwork",
    "MetaConfig",
    "MetaLearner",
    "MetaModel",
    "meta_train",
    "ReptileConfig",
    "ReptileResult",
    "TaskSet",
    "make_tasks",
    "reptile_pretrain",
    "reptile_step",
    "reptile_then_transfer",
]
