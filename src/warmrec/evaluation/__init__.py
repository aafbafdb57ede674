"""Honest offline evaluation: full-catalogue ranking metrics, protocols, cold-start slices,
statistics."""

from warmrec.evaluation.evaluate import DEFAULT_METRICS, EvalResult, evaluate
from warmrec.evaluation.slices import SLICES, cold_slices, evaluate_slices, slices_table
from warmrec.evaluation.stats import (
    PairedTest,
    SeedSummary,
    bootstrap_ci,
    compare,
    paired_test,
    seed_summary,
    summarize_seeds,
)

__all__ = [
    "evaluate",
    "EvalResult",
    "DEFAULT_METRICS",
    "SLICES",
    "cold_slices",
    "evaluate_slices",
    "slices_table",
    "bootstrap_ci",
    "paired_test",
    "PairedTest",
    "compare",
    "seed_summary",
    "SeedSummary",
    "summarize_seeds",
]
