"""Meta-learning of initialisations for cold, small domains: one interface, one loop.

- :mod:`warmrec.meta.tasks` -- THE task abstraction: :class:`TaskSet` (users or sequences as
  few-shot tasks, support before query), :class:`Task` (one episode), :class:`Episodes` (how an
  episode is cut), :class:`TaskStream` (meta-batches for the training loop);
- :mod:`warmrec.meta.learner` -- :class:`MetaLearner`, the learn2learn-style wrapper
  (``clone`` / ``adapt`` / ``first_order``) over any neural model's own ``training_step``;
- :mod:`warmrec.meta.maml` -- MAML, FO-MAML, MAML++ and Reptile as one :class:`MetaModel`
  trained by THE training loop (:func:`meta_train`, :func:`fit_meta`); a saved MetaModel is an
  artifact of kind ``"meta"`` and loads back as one;
- :mod:`warmrec.meta.reptile` -- that Reptile as a source pre-training (:func:`reptile_pretrain`)
  and the ``"reptile"`` option before transfer (:func:`reptile_then_transfer`);
- :mod:`warmrec.meta.adaptive_loss` -- the learned, task-adaptive inner loss (MELO / METAL);
- :mod:`warmrec.meta.rating` -- MELO's rating-regression setting.

The cold-start *study* is in :mod:`warmrec.experiments.studies.coldstart` (its user split is the
:class:`~warmrec.experiments.scenarios.ColdStartUsers` scenario); ``warmrec.meta.coldstart``
still resolves its names with a deprecation warning.
"""

from warmrec.meta.adaptive_loss import LossNetwork
from warmrec.meta.learner import MetaLearner
from warmrec.meta.maml import MetaConfig, MetaModel, fit_meta, meta_train
from warmrec.meta.reptile import (
    ReptileConfig,
    ReptileResult,
    reptile_pretrain,
    reptile_step,
    reptile_then_transfer,
)
from warmrec.meta.tasks import Episodes, Task, TaskSet, TaskStream, make_tasks

__all__ = [
    "Episodes",
    "LossNetwork",
    "MetaConfig",
    "MetaLearner",
    "MetaModel",
    "fit_meta",
    "meta_train",
    "ReptileConfig",
    "ReptileResult",
    "Task",
    "TaskSet",
    "TaskStream",
    "make_tasks",
    "reptile_pretrain",
    "reptile_step",
    "reptile_then_transfer",
]
