"""Hyperparameter search: TOML search spaces (one built in per model family), Optuna on this
machine, Ray Tune on a cluster (:func:`warmrec.tuning.run.run_tune`, ``warmrec tune``)."""

from warmrec.tuning.space import builtin_space_path, builtin_spaces, load_space

__all__ = ["builtin_space_path", "builtin_spaces", "load_space"]
