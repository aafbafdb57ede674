"""Honest offline evaluation: full-catalogue ranking metrics, protocols, statistics."""

from warmrec.evaluation.evaluate import DEFAULT_METRICS, EvalResult, evaluate

__all__ = ["evaluate", "EvalResult", "DEFAULT_METRICS"]
