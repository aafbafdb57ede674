"""Uncertainty of offline results: bootstrap CIs, paired tests, model comparison, seed summaries.

Everything works on per-example metric values (``EvalResult.per_example["ndcg@10"]``): one value
per test example, the same examples for every model, so two models are compared *paired*.

Bootstrap means are exact resamples of the data, drawn in one of two vectorised ways that give the
same distribution: when the values take few distinct values (HR: 2, NDCG@10 or MRR@10: 11, their
paired differences: a few hundred) the counts of each distinct value are drawn from one
multinomial per replicate (cost ``n_boot x distinct``, independent of the number of examples);
otherwise example indices are drawn in blocks (cost ``n_boot x n``, memory bounded).

NaN values (for instance the mean popularity of an empty top-K list) are left out; in paired
functions a pair is left out when either value is NaN.

Where one user gives several examples (session and time splits: one per prefix or per event),
the examples are not independent, and resampling them gives intervals too narrow and p-values
too small. With ``units`` (per example its user, ``EvalResult.units``) :func:`bootstrap_ci` and
:func:`paired_test` resample users (a cluster bootstrap: each replicate draws users with
replacement and takes the mean over all their examples, so the estimate stays the mean over
examples); the permutation test flips the sign of each user's differences together, the t-test
takes a cluster-robust standard error of the mean over examples (users' residual sums, ``G - 1``
degrees of freedom), and the Wilcoxon test runs on the per-user mean differences.
:func:`compare` passes the results' units.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from scipy import stats as sps

from warmrec.errors import ConfigError, DataError
from warmrec.evaluation.evaluate import EvalResult, example_units
from warmrec.evaluation.metrics import parse_metric

_BLOCK = 1 << 22  # random draws held in memory at once
METHODS = ("bootstrap", "permutation", "t", "wilcoxon")


def _clean(values, name: str = "values") -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise DataError(
            "expected a 1-D array of per-example values",
            field=name,
            expected="1-D",
            found=str(x.shape),
        )
    x = x[~np.isnan(x)]
    if x.size == 0:
        raise DataError("no values", field=name, expected="at least one non-NaN value", found="0")
    return x


def _check_alpha(alpha: float, n_boot: int | None = None) -> None:
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha}")
    if n_boot is not None and n_boot < 1:
        raise ConfigError(f"n_boot must be at least 1, got {n_boot}")


def _boot_means(x: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``n_boot`` means of resamples (with replacement, size ``len(x)``) of ``x``."""
    n = len(x)
    uniq, counts = np.unique(x, return_counts=True)
    if len(uniq) == 1:
        return np.full(n_boot, uniq[0])
    if len(uniq) * 8 <= n:
        out = np.empty(n_boot)
        step = max(1, _BLOCK // len(uniq))
        for lo in range(0, n_boot, step):
            m = rng.multinomial(n, counts / n, size=min(step, n_boot - lo))
            out[lo : lo + len(m)] = m @ uniq / n
        return out
    out = np.empty(n_boot)
    step = max(1, _BLOCK // n)
    for lo in range(0, n_boot, step):
        idx = rng.integers(0, n, size=(min(step, n_boot - lo), n))
        out[lo : lo + len(idx)] = x[idx].mean(axis=1)
    return out


def _unit_sums(values: np.ndarray, units: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """Per unit the sum and count of the (non-NaN) ``values``; None where every unit holds one
    example (the resampling of examples is then already the resampling of units)."""
    u = np.asarray(units)
    if u.shape != values.shape:
        raise DataError(
            "units must give one unit per value",
            field="units",
            expected=str(values.shape),
            found=str(u.shape),
        )
    ok = ~np.isnan(values)
    _, inv = np.unique(u[ok], return_inverse=True)
    if inv.size == 0 or inv.max(initial=-1) + 1 == inv.size:
        return None
    sums = np.bincount(inv, weights=values[ok])
    return sums, np.bincount(inv).astype(np.float64)


def _boot_ratio(
    sums: np.ndarray, counts: np.ndarray, n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """``n_boot`` cluster-bootstrap means: units drawn with replacement (multinomial weights),
    the mean over every example of the drawn units."""
    n = len(sums)
    out = np.empty(n_boot)
    step = max(1, _BLOCK // n)
    p = np.full(n, 1.0 / n)
    for lo in range(0, n_boot, step):
        w = rng.multinomial(n, p, size=min(step, n_boot - lo)).astype(np.float64)
        out[lo : lo + len(w)] = (w @ sums) / (w @ counts)
    return out


def _interval(x: np.ndarray, boot: np.ndarray, alpha: float, method: str) -> tuple[float, float]:
    """Percentile or BCa interval of the mean from bootstrap means ``boot``."""
    theta = float(x.mean())
    q = np.array([alpha / 2, 1 - alpha / 2])
    if method == "bca" and len(x) > 2 and boot.min() < boot.max():
        # bias correction: where the estimate sits in its bootstrap distribution (ties split)
        frac = (np.sum(boot < theta) + 0.5 * np.sum(boot == theta)) / len(boot)
        # acceleration from the jackknife, closed form for the mean
        d = x - theta
        s2 = float(np.sum(d**2))
        if 0.0 < frac < 1.0 and s2 > 0:
            z0 = sps.norm.ppf(frac)
            a = float(np.sum(d**3)) / (6.0 * s2**1.5)
            z = sps.norm.ppf(q)
            q = sps.norm.cdf(z0 + (z0 + z) / (1.0 - a * (z0 + z)))
    elif method not in ("percentile", "bca"):
        raise ConfigError(f"unknown bootstrap interval '{method}'; expected 'percentile' or 'bca'")
    lo, hi = np.quantile(boot, q)
    # a CI of the mean always contains the mean (guards one-ulp disagreements)
    return float(min(lo, theta)), float(max(hi, theta))


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    n_boot: int = 10000,
    alpha: float = 0.05,
    seed: int | np.random.Generator = 0,
    method: str = "percentile",
    units: Sequence[Any] | np.ndarray | None = None,
) -> tuple[float, float, float]:
    """Mean of ``values`` and its ``1 - alpha`` bootstrap confidence interval.

    Args:
        values: per-example values (NaN left out).
        n_boot: bootstrap replicates.
        alpha: 0.05 gives a 95% interval.
        seed: seed or generator of the resampling.
        method: ``"percentile"`` or ``"bca"`` (bias-corrected and accelerated; the acceleration of
            the mean has a closed-form jackknife, so BCa costs no more than the percentile
            interval). BCa falls back to the percentile interval when the bootstrap distribution
            is degenerate.
        units: per value its unit (user): units are resampled, not values (the module
            docstring); the interval is then the percentile one.

    Returns:
        ``(mean, lo, hi)``.
    """
    _check_alpha(alpha, n_boot)
    if method not in ("percentile", "bca"):
        raise ConfigError(f"unknown bootstrap interval '{method}'; expected 'percentile' or 'bca'")
    raw = np.asarray(values, dtype=np.float64)
    x = _clean(values)
    rng = np.random.default_rng(seed)
    grouped = _unit_sums(raw, units) if units is not None else None
    if grouped is not None:
        boot = _boot_ratio(*grouped, n_boot, rng)
        lo, hi = _interval(x, boot, alpha, "percentile")
        return float(x.mean()), lo, hi
    boot = _boot_means(x, n_boot, rng)
    lo, hi = _interval(x, boot, alpha, method)
    return float(x.mean()), lo, hi


@dataclass(frozen=True)
class PairedTest:
    """Result of a paired comparison of ``a`` against ``b`` (difference ``a - b``).

    ``ci`` is the ``1 - alpha`` interval of the mean difference: a t-interval for ``method="t"``,
    a percentile bootstrap interval otherwise.
    """

    mean_diff: float
    ci: tuple[float, float]
    p_value: float
    method: str
    n: int
    mean_a: float
    mean_b: float
    alpha: float = 0.05

    @property
    def significant(self) -> bool:
        return self.p_value < self.alpha


def _pairs(a, b) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise DataError(
            "paired values must be two 1-D arrays over the same examples",
            field="a, b",
            expected="equal 1-D shapes",
            found=f"{x.shape} and {y.shape}",
        )
    ok = ~(np.isnan(x) | np.isnan(y))
    if not ok.any():
        raise DataError("no pairs", field="a, b", expected="at least one non-NaN pair", found="0")
    return x[ok], y[ok]


def _sign_flip_p(d: np.ndarray, n_boot: int, rng: np.random.Generator) -> float:
    """Two-sided p-value of the paired randomisation (sign-flip) test of mean ``d`` = 0.

    Flipping the signs of the ``c`` differences equal to ``+-v`` adds ``v * (2 Bin(c, 1/2) - c)``
    to the sum, so the null is drawn per distinct absolute value.
    """
    v, c = np.unique(np.abs(d[d != 0]), return_counts=True)
    observed = abs(float(d.sum()))
    tol = 1e-9 * max(observed, 1e-300)
    hits = 0
    step = max(1, _BLOCK // max(len(v), 1))
    for lo in range(0, n_boot, step):
        k = rng.binomial(c, 0.5, size=(min(step, n_boot - lo), len(v)))
        null = np.abs((2 * k - c) @ v)
        hits += int(np.sum(null >= observed - tol))
    return (hits + 1) / (n_boot + 1)


def paired_test(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    method: str = "bootstrap",
    *,
    n_boot: int = 10000,
    alpha: float = 0.05,
    seed: int | np.random.Generator = 0,
    units: Sequence[Any] | np.ndarray | None = None,
) -> PairedTest:
    """Is the mean of ``a`` different from the mean of ``b`` on the same examples?

    Methods (all two-sided):

    - ``"bootstrap"``: bootstrap of the mean difference; p-value from the bootstrap distribution
      shifted to the null, ``(1 + #{|m* - m| >= |m|}) / (n_boot + 1)``.
    - ``"permutation"``: paired randomisation test (random sign flips of the differences), the
      test recommended for IR metrics by Smucker, Allan & Carterette (2007).
    - ``"t"``: paired t-test (``scipy.stats.ttest_rel``) with a t-interval.
    - ``"wilcoxon"``: Wilcoxon signed-rank test (``scipy.stats.wilcoxon``; zero differences are
      dropped). It tests the location of the differences, not their mean; the CI reported is
      the bootstrap interval of the mean difference.

    Identical inputs give ``mean_diff = 0`` and ``p_value = 1`` for every method; so does a
    single differing pair (or user, with ``units``) for every method but ``"t"``, which refuses
    it: one unit says nothing about the spread (interval ``(-inf, inf)``). Randomised
    methods are reproducible from ``seed``; their smallest p-value is ``1 / (n_boot + 1)``.
    With ``units`` (per example its user) users are the unit of every method (module docstring).
    """
    if method not in METHODS:
        raise ConfigError(f"unknown test '{method}'; expected one of {', '.join(METHODS)}")
    _check_alpha(alpha, n_boot)
    x, y = _pairs(a, b)
    if units is not None:
        raw = np.asarray(a, np.float64)
        if np.shape(units) != raw.shape:  # as bootstrap_ci says it (was an IndexError)
            raise DataError(
                "units must give one unit per value",
                field="units",
                expected=str(raw.shape),
                found=str(np.shape(units)),
            )
    d = x - y
    n = len(d)
    m = float(d.mean())
    means = float(x.mean()), float(y.mean())
    if not np.any(d != 0):
        return PairedTest(0.0, (0.0, 0.0), 1.0, method, n, *means, alpha)
    grouped = None
    if units is not None:
        both = ~(np.isnan(np.asarray(a, np.float64)) | np.isnan(np.asarray(b, np.float64)))
        grouped = _unit_sums(d, np.asarray(units)[both])
    if method != "t" and (n if grouped is None else len(grouped[0])) < 2:
        # one pair (or one user): nothing to resample, so no evidence either way (the sign
        # flip's exact answer); a bootstrap of it had a zero-width interval and p 1/(n_boot+1)
        return PairedTest(m, (-math.inf, math.inf), 1.0, method, n, *means, alpha)
    if grouped is not None:
        return _paired_units(d, *grouped, method, n_boot, alpha, seed, means)
    if method == "t":
        if n < 2:
            raise DataError("a paired t-test needs at least 2 pairs", field="a, b", found=str(n))
        sd = float(d.std(ddof=1))
        if sd == 0.0:  # every difference equal and non-zero: no doubt at all
            return PairedTest(m, (m, m), 0.0, method, n, *means, alpha)
        p = float(sps.ttest_rel(x, y).pvalue)
        h = float(sps.t.ppf(1 - alpha / 2, n - 1)) * sd / math.sqrt(n)
        return PairedTest(m, (m - h, m + h), p, method, n, *means, alpha)
    rng = np.random.default_rng(seed)
    boot = _boot_means(d, n_boot, rng)
    ci = _interval(d, boot, alpha, "percentile")
    if method == "bootstrap":
        tol = 1e-9 * abs(m)
        p = (1 + int(np.sum(np.abs(boot - m) >= abs(m) - tol))) / (n_boot + 1)
    elif method == "permutation":
        p = _sign_flip_p(d, n_boot, rng)
    else:
        p = float(sps.wilcoxon(d).pvalue)
    return PairedTest(m, ci, float(p), method, n, *means, alpha)


def _paired_units(
    d: np.ndarray,
    sums: np.ndarray,
    counts: np.ndarray,
    method: str,
    n_boot: int,
    alpha: float,
    seed: int | np.random.Generator,
    means: tuple[float, float],
) -> PairedTest:
    """:func:`paired_test` with users as the unit: ``sums``/``counts`` of the differences ``d``
    per user."""
    m, n = float(d.mean()), len(d)
    if method == "t":  # cluster-robust: the example mean's standard error from users' residuals
        g = len(sums)
        if g < 2:
            raise DataError("a paired t-test needs at least 2 users", field="units", found=str(g))
        resid = sums - m * counts  # per user, the sum of (d - m) over their examples
        se = math.sqrt(g / (g - 1) * float(np.sum(resid**2))) / n
        if se == 0.0:
            return PairedTest(m, (m, m), 0.0, method, n, *means, alpha)
        p = float(2 * sps.t.sf(abs(m) / se, g - 1))
        h = float(sps.t.ppf(1 - alpha / 2, g - 1)) * se
        return PairedTest(m, (m - h, m + h), p, method, n, *means, alpha)
    if method == "wilcoxon":  # the location of the per-user mean differences
        p = paired_test(sums / counts, np.zeros(len(sums)), method, n_boot=n_boot).p_value
        boot = _boot_ratio(sums, counts, n_boot, np.random.default_rng(seed))
        return PairedTest(m, _interval(d, boot, alpha, "percentile"), p, method, n, *means, alpha)
    rng = np.random.default_rng(seed)
    boot = _boot_ratio(sums, counts, n_boot, rng)
    ci = _interval(d, boot, alpha, "percentile")
    if method == "bootstrap":
        tol = 1e-9 * abs(m)
        p = (1 + int(np.sum(np.abs(boot - m) >= abs(m) - tol))) / (n_boot + 1)
    else:  # the signs of each user's differences flipped together: the users' sums flipped
        p = _sign_flip_p(sums, n_boot, rng)
    return PairedTest(m, ci, float(p), method, n, *means, alpha)


def adjust_pvalues(p: Sequence[float] | np.ndarray, correction: str = "holm") -> np.ndarray:
    """Multiple-comparison adjustment: ``"holm"`` (step-down), ``"bonferroni"`` or ``"none"``."""
    p = np.asarray(p, dtype=np.float64)
    m = len(p)
    if correction == "none" or m == 0:
        return p.copy()
    if correction == "bonferroni":
        return np.minimum(1.0, p * m)
    if correction != "holm":
        raise ConfigError(
            f"unknown correction '{correction}'; expected 'holm', 'bonferroni' or 'none'"
        )
    order = np.argsort(p, kind="stable")
    adj = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out = np.empty(m)
    out[order] = adj
    return out


def compare(
    results: Mapping[str, EvalResult],
    baseline: str,
    metric: str,
    *,
    method: str = "bootstrap",
    n_boot: int = 10000,
    alpha: float = 0.05,
    seed: int = 0,
    correction: str = "holm",
) -> pl.DataFrame:
    """Each model's mean of ``metric`` with its CI, and its paired difference to ``baseline``.

    All results must come from the same examples (same ``EvalSet``, same order); where a user
    gives several examples (``EvalResult.units``), users are resampled, not examples. Columns:
    ``model, metric, n, mean, lo, hi, diff, diff_lo, diff_hi, p_value, p_adjusted`` -- the
    baseline's row first, with ``diff = 0`` and null p-values; ``p_adjusted`` corrects the other
    models' p-values for multiple comparisons (``correction``).
    """
    label = parse_metric(metric).label
    if baseline not in results:
        raise ConfigError(f"baseline '{baseline}' is not among the results: {', '.join(results)}")
    base = results[baseline]
    for name, res in results.items():
        if label not in res.per_example:
            why = (
                "catalogue-level metrics such as coverage cannot be compared per example"
                if label in res.summary
                else "it was not computed: evaluate with it among the metrics"
            )
            raise ConfigError(
                f"result '{name}' has no per-example values of {label} ({why}); it has: "
                f"{', '.join(res.per_example) or 'none'}"
            )
        if res.n_examples != base.n_examples or res.protocol != base.protocol:
            raise DataError(
                "results to compare must come from the same examples and protocol",
                field=name,
                expected=f"{base.n_examples} examples, protocol {base.protocol}",
                found=f"{res.n_examples} examples, protocol {res.protocol}",
            )
        if res.examples and base.examples and res.examples != base.examples:
            raise DataError(
                "results to compare must come from the same examples: these have as many "
                "but other ones (another part, split or data)",
                field=name,
                expected=f"the examples of '{baseline}' ({base.examples})",
                found=res.examples,
            )
    units = base.units
    rows = []
    for name, res in results.items():
        vals = res.per_example[label]
        mean, lo, hi = bootstrap_ci(vals, n_boot, alpha, seed, units=units)
        row = {"model": name, "metric": label, "n": int(np.sum(~np.isnan(vals)))}
        row.update(mean=mean, lo=lo, hi=hi)
        if name == baseline:
            row.update(diff=0.0, diff_lo=0.0, diff_hi=0.0, p_value=None)
        else:
            t = paired_test(
                vals,
                base.per_example[label],
                method,
                n_boot=n_boot,
                alpha=alpha,
                seed=seed,
                units=units,
            )
            row.update(diff=t.mean_diff, diff_lo=t.ci[0], diff_hi=t.ci[1], p_value=t.p_value)
        rows.append(row)
    rows.sort(key=lambda r: r["model"] != baseline)  # stable: baseline first, then given order
    others = [r for r in rows if r["p_value"] is not None]
    adj = adjust_pvalues([r["p_value"] for r in others], correction)
    for r, pa in zip(others, adj):
        r["p_adjusted"] = float(pa)
    schema = {
        "model": pl.String,
        "metric": pl.String,
        "n": pl.Int64,
        **{c: pl.Float64 for c in ("mean", "lo", "hi", "diff", "diff_lo", "diff_hi")},
        "p_value": pl.Float64,
        "p_adjusted": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema, orient="row")


@dataclass(frozen=True)
class SeedSummary:
    """Mean over seeds, sample standard deviation and the t-interval of the mean."""

    mean: float
    std: float
    lo: float
    hi: float
    n: int


def mean_over_seeds(per_seed: Sequence[Sequence[float] | np.ndarray]) -> np.ndarray:
    """Per-example values of several seeds' runs on the same test examples (in the same
    order) as one value per example, their mean over the seeds.

    A paired test of two methods then resamples the examples, each once: pooling the seeds'
    arrays instead counts every example once per seed, as if the seeds' scores of one user
    were independent users, and reads a difference as far more certain than it is (p 0.003
    between methods whose intervals over seeds overlap). Arrays of different lengths are not
    the same examples: a :class:`DataError`."""
    arrays = [np.asarray(x, dtype=np.float64) for x in per_seed]
    if not arrays:
        raise DataError("no runs to average", expected="at least one run", found="none")
    lengths = sorted({len(x) for x in arrays})
    if len(lengths) > 1:
        raise DataError(
            "the runs were scored on different examples",
            expected="one value per test example in every run",
            found=f"runs of {', '.join(map(str, lengths))} values",
        )
    return np.mean(np.stack(arrays), axis=0)


def metric_bounds(name: str) -> tuple[float, float]:
    """The range a metric's value can take: ``[0, 1]`` for the ranking metrics (``hr@10``,
    ``ndcg@10``, ``mrr``, recall, precision, MAP, coverage, the category metrics ``cat_hr``
    and ``cat_map``), ``[0, inf)`` for errors (RMSE, MAE, MSE) and ``popularity`` (a mean
    training count), unbounded otherwise."""
    base = name.split("@", 1)[0].strip().lower()
    unit = ("hr", "hit", "ndcg", "mrr", "recall", "precision", "map", "coverage", "auc")
    if base in unit or base in ("cat_hr", "cat_map"):
        return 0.0, 1.0
    if base in ("rmse", "mae", "mse", "popularity"):
        return 0.0, math.inf
    return -math.inf, math.inf


def seed_summary(
    values_per_seed: Sequence[float] | np.ndarray,
    alpha: float = 0.05,
    bounds: tuple[float, float] | None = None,
) -> SeedSummary:
    """Summarise one metric over training seeds (one value per seed).

    The interval is ``mean +- t(1 - alpha/2, n - 1) * std / sqrt(n)``, clipped to ``bounds``
    (the metric's range, :func:`metric_bounds`: with two or three seeds a t-interval of a
    metric in [0, 1] can reach past 1); with a single seed the spread is unknown and ``std``,
    ``lo`` and ``hi`` are NaN.
    """
    _check_alpha(alpha)
    x = _clean(values_per_seed, "values_per_seed")
    n = len(x)
    mean = float(x.mean())
    if n < 2:
        return SeedSummary(mean, float("nan"), float("nan"), float("nan"), n)
    sd = float(x.std(ddof=1))
    h = float(sps.t.ppf(1 - alpha / 2, n - 1)) * sd / math.sqrt(n)
    lo, hi = mean - h, mean + h
    if bounds is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return SeedSummary(mean, sd, lo, hi, n)


def summarize_seeds(
    df: pl.DataFrame, by: str | Sequence[str], value: str = "value", alpha: float = 0.05
) -> pl.DataFrame:
    """:func:`seed_summary` of ``value`` for every group of ``by`` (one row per seed in ``df``).

    Returns ``by`` columns plus ``mean, std, lo, hi, n``, groups in order of first appearance.
    """
    _check_alpha(alpha)
    by = [by] if isinstance(by, str) else list(by)
    missing = [c for c in [*by, value] if c not in df.columns]
    if missing:
        raise ConfigError(
            f"column(s) {', '.join(missing)} not in the table; it has: {', '.join(df.columns)}"
        )
    g = (
        df.filter(pl.col(value).is_not_null() & pl.col(value).is_not_nan())
        .group_by(by, maintain_order=True)
        .agg(
            pl.col(value).mean().alias("mean"),
            pl.col(value).std(ddof=1).alias("std"),
            pl.len().alias("n"),
        )
    )
    n = g["n"].to_numpy()
    tq = np.where(n > 1, sps.t.ppf(1 - alpha / 2, np.maximum(n - 1, 1)), np.nan)
    h = pl.Series("h", tq * g["std"].fill_null(np.nan).to_numpy() / np.sqrt(n))
    return g.with_columns(
        pl.col("std").fill_null(np.nan),
        (pl.col("mean") - h).alias("lo"),
        (pl.col("mean") + h).alias("hi"),
        pl.col("n").cast(pl.Int64),
    ).select([*by, "mean", "std", "lo", "hi", "n"])


def per_user_values(es: Any, values: Any) -> np.ndarray:
    """The mean of ``values`` (one per example of ``es``) over each user's examples, users in
    the order of their first example (NaN examples left out; a user with only NaN is NaN).
    Under leave-one-out each user has one example; under session or time splits a user has
    many, correlated, and the bootstrap resamples users, not examples."""
    idx, n_units = example_units(es)
    v = np.asarray(values, np.float64)
    ok = ~np.isnan(v)
    sums = np.bincount(idx[ok], weights=v[ok], minlength=n_units)
    counts = np.bincount(idx[ok], minlength=n_units)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
