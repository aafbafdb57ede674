"""Bootstrap intervals, paired tests, comparison tables and seed summaries with known answers."""

from __future__ import annotations

import itertools
import math

import numpy as np
import polars as pl
import pytest
from scipy import stats as sps

from warmrec.errors import ConfigError, DataError
from warmrec.evaluation.evaluate import EvalResult
from warmrec.evaluation.stats import (
    METHODS,
    adjust_pvalues,
    bootstrap_ci,
    compare,
    mean_over_seeds,
    metric_bounds,
    paired_test,
    seed_summary,
    summarize_seeds,
)


def test_bootstrap_ci_binary_matches_normal_theory():
    # HR-like values (2 distinct values): the multinomial path
    x = np.zeros(10000)
    x[:3000] = 1.0
    mean, lo, hi = bootstrap_ci(x, n_boot=4000)
    assert mean == 0.3
    half = 1.96 * math.sqrt(0.3 * 0.7 / 10000)
    assert lo < mean < hi
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.1)
    assert (mean - lo) == pytest.approx(hi - mean, rel=0.15)


def test_bootstrap_ci_continuous_matches_normal_theory():
    # distinct values: the index-resampling path
    x = np.random.default_rng(0).normal(size=2000)
    mean, lo, hi = bootstrap_ci(x, n_boot=4000)
    assert mean == pytest.approx(x.mean())
    assert (hi - lo) / 2 == pytest.approx(1.96 * x.std(ddof=1) / math.sqrt(2000), rel=0.1)


def test_bootstrap_ci_shrinks_with_n_and_is_reproducible():
    rng = np.random.default_rng(1)
    small, big = rng.random(100), rng.random(10000)
    w_small = np.diff(bootstrap_ci(small, n_boot=2000)[1:])[0]
    w_big = np.diff(bootstrap_ci(big, n_boot=2000)[1:])[0]
    assert w_big < w_small / 5  # ~ 1/sqrt(100) of it
    assert bootstrap_ci(small, seed=3) == bootstrap_ci(small, seed=3)
    assert bootstrap_ci(small, seed=3) != bootstrap_ci(small, seed=4)
    gen = np.random.default_rng(3)
    assert bootstrap_ci(small, seed=gen)[0] == pytest.approx(small.mean())


def test_bootstrap_ci_edge_cases():
    assert bootstrap_ci([0.25] * 50) == (0.25, 0.25, 0.25)
    assert bootstrap_ci([0.5]) == (0.5, 0.5, 0.5)
    mean, lo, hi = bootstrap_ci([1.0, np.nan, 0.0, np.nan], n_boot=500)
    assert mean == 0.5 and 0.0 <= lo <= hi <= 1.0
    with pytest.raises(DataError, match="no values"):
        bootstrap_ci([np.nan, np.nan])
    with pytest.raises(DataError):
        bootstrap_ci(np.ones((3, 2)))
    with pytest.raises(ConfigError, match="alpha"):
        bootstrap_ci([1.0, 2.0], alpha=1.5)
    with pytest.raises(ConfigError, match="interval"):
        bootstrap_ci([1.0, 2.0], method="student")


def test_bca_shifts_towards_the_long_tail():
    x = np.random.default_rng(2).exponential(size=60)
    m, plo, phi = bootstrap_ci(x, n_boot=20000, method="percentile")
    _, blo, bhi = bootstrap_ci(x, n_boot=20000, method="bca")
    assert blo < m < bhi
    # right-skewed data: BCa moves both limits up relative to the percentile interval
    assert blo > plo and bhi > phi
    sym = np.linspace(-1, 1, 201)
    p = bootstrap_ci(sym, n_boot=20000)
    b = bootstrap_ci(sym, n_boot=20000, method="bca")
    np.testing.assert_allclose(b, p, atol=0.01)


@pytest.mark.parametrize("method", METHODS)
def test_identical_arrays_give_zero_and_p_one(method):
    a = np.random.default_rng(0).random(300)
    t = paired_test(a, a.copy(), method)
    assert (t.mean_diff, t.ci, t.p_value, t.method, t.n) == (0.0, (0.0, 0.0), 1.0, method, 300)
    assert not t.significant


@pytest.mark.parametrize("method", METHODS)
def test_clearly_shifted_arrays_are_significant(method):
    rng = np.random.default_rng(0)
    b = rng.random(400)
    a = b + 0.05 + rng.normal(0, 0.1, size=400)
    t = paired_test(a, b, method, n_boot=2000)
    assert t.mean_diff == pytest.approx(a.mean() - b.mean())
    assert t.mean_a == pytest.approx(a.mean()) and t.mean_b == pytest.approx(b.mean())
    assert t.p_value < 0.01 and t.significant
    assert t.ci[0] < t.mean_diff < t.ci[1] and t.ci[0] > 0
    r = paired_test(b, a, method, n_boot=2000)
    assert r.mean_diff == pytest.approx(-t.mean_diff) and r.ci[1] < 0


@pytest.mark.parametrize("method", METHODS)
def test_no_difference_is_not_significant(method):
    # a and b differ per example but have exactly the same mean
    rng = np.random.default_rng(5)
    b = rng.random(500)
    a = b + np.where(np.arange(500) % 2 == 0, 0.2, -0.2)
    assert paired_test(a, b, method, n_boot=2000).p_value > 0.5


def test_t_test_matches_scipy_and_formula():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.1, 1, 50), rng.normal(0, 1, 50)
    t = paired_test(a, b, "t", alpha=0.1)
    d = a - b
    assert t.p_value == pytest.approx(sps.ttest_rel(a, b).pvalue)
    h = sps.t.ppf(0.95, 49) * d.std(ddof=1) / math.sqrt(50)
    assert t.ci == pytest.approx((d.mean() - h, d.mean() + h))
    q = np.arange(50) / 4  # exact in binary: every difference is exactly 0.5
    const = paired_test(q + 0.5, q, "t")
    assert const.p_value == 0.0 and const.ci == (0.5, 0.5)
    with pytest.raises(DataError, match="at least 2"):
        paired_test([1.0], [0.0], "t")


def test_wilcoxon_matches_scipy():
    rng = np.random.default_rng(4)
    a, b = rng.random(80), rng.random(80)
    assert paired_test(a, b, "wilcoxon").p_value == pytest.approx(sps.wilcoxon(a - b).pvalue)


def test_permutation_p_matches_exact_enumeration():
    d = np.array([1.0, 2.0, 3.0, -1.0, 4.0, 0.5, -0.5])
    sums = [abs(np.dot(s, d)) for s in itertools.product([-1, 1], repeat=len(d))]
    exact = np.mean(np.array(sums) >= abs(d.sum()) - 1e-12)
    t = paired_test(d, np.zeros_like(d), "permutation", n_boot=40000, seed=1)
    assert t.p_value == pytest.approx(exact, abs=0.01)


def test_bootstrap_p_close_to_t_for_large_n():
    rng = np.random.default_rng(6)
    b = rng.random(3000)
    a = b + rng.normal(0.0, 0.2, size=3000)  # realised mean difference ~0.006
    pb = paired_test(a, b, "bootstrap", n_boot=20000).p_value
    pt = paired_test(a, b, "t").p_value
    assert 0.001 < pt < 0.2 and pb == pytest.approx(pt, abs=0.02)


def test_paired_test_pairs_and_arguments():
    a = np.array([1.0, np.nan, 0.0, 1.0])
    b = np.array([0.0, 1.0, np.nan, 0.0])
    t = paired_test(a, b, n_boot=200)
    assert t.n == 2 and t.mean_diff == 1.0
    assert paired_test(a, b, seed=7, n_boot=200) == paired_test(a, b, seed=7, n_boot=200)
    with pytest.raises(DataError, match="same examples"):
        paired_test([1.0, 2.0], [1.0])
    with pytest.raises(ConfigError, match="unknown test"):
        paired_test([1.0, 2.0], [1.0, 2.0], "anova")


def test_adjust_pvalues_by_hand():
    p = [0.01, 0.04, 0.03]
    np.testing.assert_allclose(adjust_pvalues(p, "holm"), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(adjust_pvalues(p, "bonferroni"), [0.03, 0.12, 0.09])
    np.testing.assert_allclose(adjust_pvalues(p, "none"), p)
    assert adjust_pvalues([], "holm").size == 0
    with pytest.raises(ConfigError):
        adjust_pvalues(p, "fdr")


def result(values: np.ndarray, protocol: str = "full") -> EvalResult:
    return EvalResult(
        {"hr@10": float(values.mean()), "coverage@10": 0.5},
        {"hr@10": values},
        np.ones(len(values), dtype=np.int64),
        protocol,
        len(values),
    )


def test_compare_table():
    rng = np.random.default_rng(0)
    base = (rng.random(2000) < 0.2).astype(float)
    better = np.where(rng.random(2000) < 0.15, 1.0, base)
    res = {"same": result(base.copy()), "pop": result(base), "better": result(better)}
    tab = compare(res, "pop", "HR@10", n_boot=2000)
    assert tab.columns == [
        "model",
        "metric",
        "n",
        "mean",
        "lo",
        "hi",
        "diff",
        "diff_lo",
        "diff_hi",
        "p_value",
        "p_adjusted",
    ]
    assert tab["model"].to_list() == ["pop", "same", "better"]
    assert tab["metric"].unique().to_list() == ["hr@10"] and tab["n"].to_list() == [2000] * 3
    rows = {r["model"]: r for r in tab.iter_rows(named=True)}
    assert rows["pop"]["diff"] == 0.0 and rows["pop"]["p_value"] is None
    assert rows["same"]["diff"] == 0.0 and rows["same"]["p_value"] == 1.0
    assert rows["better"]["diff"] == pytest.approx(better.mean() - base.mean())
    assert rows["better"]["p_value"] < 0.01 and rows["better"]["diff_lo"] > 0
    assert rows["better"]["p_adjusted"] == pytest.approx(min(1.0, 2 * rows["better"]["p_value"]))
    for r in rows.values():
        assert r["lo"] <= r["mean"] <= r["hi"]
    assert tab["mean"].to_list() == pytest.approx([base.mean(), base.mean(), better.mean()])


def test_compare_rejects_bad_inputs():
    v = np.ones(10)
    res = {"a": result(v), "b": result(v)}
    with pytest.raises(ConfigError, match="baseline"):
        compare(res, "c", "hr@10")
    with pytest.raises(ConfigError, match="per-example"):
        compare(res, "a", "coverage@10")
    with pytest.raises(ConfigError, match="unknown metric"):
        compare(res, "a", "auc@10")
    with pytest.raises(DataError, match="same examples"):
        compare({"a": result(v), "b": result(np.ones(11))}, "a", "hr@10")
    with pytest.raises(DataError, match="same examples"):
        compare({"a": result(v), "b": result(v, "sampled-uniform-100")}, "a", "hr@10")


def test_seed_summary_by_hand():
    s = seed_summary([1.0, 2.0, 3.0])
    h = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2) * std / sqrt(n), std = 1
    assert (s.mean, s.std, s.n) == (2.0, 1.0, 3)
    assert s.lo == pytest.approx(2 - h) and s.hi == pytest.approx(2 + h)
    wide = seed_summary([1.0, 2.0, 3.0], alpha=0.01)
    assert wide.lo < s.lo and wide.hi > s.hi
    one = seed_summary([0.4])
    assert one.mean == 0.4 and math.isnan(one.std) and math.isnan(one.lo) and one.n == 1
    with pytest.raises(DataError):
        seed_summary([])


def test_seed_summary_clips_to_the_metric_range():
    """Two seeds of HR@10 0.62 and 0.92: the t-interval reached 2.6, printed as is."""
    raw = seed_summary([0.62, 0.92])
    assert raw.hi > 1 and raw.lo < 0
    s = seed_summary([0.62, 0.92], bounds=metric_bounds("hr@10"))
    assert (s.lo, s.hi) == (0.0, 1.0) and s.mean == pytest.approx(0.77)
    assert metric_bounds("ndcg@20") == (0.0, 1.0) and metric_bounds("rmse") == (0.0, math.inf)
    assert metric_bounds("loss") == (-math.inf, math.inf)
    # evaluate's category metrics are shares too, and a mean training count is never negative
    assert metric_bounds("cat_hr@10") == metric_bounds("cat_map@10") == (0.0, 1.0)
    assert metric_bounds("popularity@10") == (0.0, math.inf)
    cat = seed_summary([0.95, 0.995], bounds=metric_bounds("cat_hr@10"))
    assert cat.hi == 1.0  # the t-interval reached 1.26
    inside = seed_summary([0.5, 0.52, 0.51], bounds=(0.0, 1.0))
    assert (inside.lo, inside.hi) == (
        seed_summary([0.5, 0.52, 0.51]).lo,
        seed_summary([0.5, 0.52, 0.51]).hi,
    )


def test_with_ci_shows_an_unknown_interval_as_a_dash():
    from warmrec.reports.tables import with_ci

    df = pl.DataFrame({"mean": [0.5, 0.25], "lo": [float("nan"), 0.2], "hi": [float("nan"), 0.3]})
    assert with_ci(df)["mean_ci"].to_list() == ["0.5000 [-]", "0.2500 [0.2000, 0.3000]"]


def test_summarize_seeds_matches_seed_summary():
    df = pl.DataFrame(
        {
            "model": ["a"] * 3 + ["b"] * 4 + ["c"],
            "frac": [0.1] * 8,
            "ndcg": [1.0, 2.0, 3.0, 0.1, 0.3, 0.2, 0.2, 0.7],
        }
    )
    out = summarize_seeds(df, ["model", "frac"], "ndcg")
    assert out.columns == ["model", "frac", "mean", "std", "lo", "hi", "n"]
    assert out["model"].to_list() == ["a", "b", "c"]
    for row, vals in zip(out.iter_rows(named=True), ([1.0, 2, 3], [0.1, 0.3, 0.2, 0.2], [0.7])):
        want = seed_summary(vals)
        for k in ("mean", "std", "lo", "hi"):
            assert row[k] == pytest.approx(getattr(want, k), nan_ok=True)
        assert row["n"] == want.n
    with pytest.raises(ConfigError, match="ndcg@10"):
        summarize_seeds(df, "model", "ndcg@10")


def test_mean_over_seeds_gives_one_value_per_example():
    """Pooling two seeds of the same 3 users made 6 'users' for the paired test."""
    m = mean_over_seeds([[1.0, 0.0, 0.5], [0.0, 0.0, 1.0]])
    assert m.tolist() == [0.5, 0.0, 0.75]
    with pytest.raises(DataError, match="different examples"):
        mean_over_seeds([[1.0, 0.0], [1.0]])
    # a user's difference is mostly the user's, not the seed's: pooled, two seeds of the same
    # 60 users read as 120 users and the interval shrinks by about sqrt(2)
    rng = np.random.default_rng(0)
    user = rng.normal(0.05, 0.3, 60)
    a = [rng.random(60) for _ in range(2)]
    b = [x - user + rng.normal(0, 0.02, 60) for x in a]
    pooled = paired_test(np.concatenate(a), np.concatenate(b), n_boot=4000)
    paired = paired_test(mean_over_seeds(a), mean_over_seeds(b), n_boot=4000)
    assert paired.mean_diff == pytest.approx(pooled.mean_diff)
    width = paired.ci[1] - paired.ci[0]
    assert width > 1.3 * (pooled.ci[1] - pooled.ci[0])


def test_compare_refuses_results_of_other_examples_of_the_same_count():
    """Markov on validation and Pop on test (200 examples each) were paired: p 0.0001."""
    import polars as pl

    from warmrec.data.prepared import prepare
    from warmrec.evaluation.evaluate import evaluate
    from warmrec.registry import get_model

    rows = [(u, (u + t) % 7, float(t)) for u in range(40) for t in range(5)]
    p = prepare(pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row"))
    pop, markov = get_model("pop").fit(p.train), get_model("markov").fit(p.train)
    same = compare(
        {"pop": evaluate(pop, p.test), "markov": evaluate(markov, p.test)}, "pop", "ndcg@10"
    )
    assert same.height == 2
    other = {"pop": evaluate(pop, p.test), "markov": evaluate(markov, p.valid)}
    assert other["pop"].n_examples == other["markov"].n_examples == 40
    with pytest.raises(DataError, match="these have as many but other ones"):
        compare(other, "pop", "ndcg@10")
    with pytest.raises(ConfigError, match=r"ndcg@5 \(it was not computed"):
        compare({"pop": evaluate(pop, p.test), "markov": evaluate(markov, p.test)}, "pop", "ndcg@5")


def _clustered(n_units: int = 40, per: int = 10, seed: int = 0):
    """Values constant within each unit (a user's prefixes scored alike): ``n_units * per``
    examples carry only ``n_units`` independent values."""
    rng = np.random.default_rng(seed)
    unit_vals = rng.random(n_units)
    units = np.repeat(np.arange(n_units), per)
    return unit_vals, np.repeat(unit_vals, per), units


def test_bootstrap_ci_resamples_units_not_examples():
    unit_vals, x, units = _clustered()
    mean, lo, hi = bootstrap_ci(x, 4000, units=units)
    _, ulo, uhi = bootstrap_ci(unit_vals, 4000)  # the same distribution, drawn on the units
    assert mean == pytest.approx(x.mean())
    assert hi - lo == pytest.approx(uhi - ulo, rel=0.15)
    _, elo, ehi = bootstrap_ci(x, 4000)  # examples as if independent: about sqrt(10) narrower
    assert (hi - lo) / (ehi - elo) > 2.5
    # one example per unit: exactly the resampling of examples
    assert bootstrap_ci(x, 500, units=np.arange(len(x))) == bootstrap_ci(x, 500)


def test_paired_test_with_units_flips_and_resamples_users():
    rng = np.random.default_rng(1)
    unit_d = rng.normal(0.02, 0.2, 40)
    per = 10
    units = np.repeat(np.arange(40), per)
    b = rng.random(400)
    a = b + np.repeat(unit_d, per)
    for method in METHODS:
        clustered = paired_test(a, b, method, n_boot=4000, units=units)
        on_units = paired_test(unit_d, np.zeros(40), method, n_boot=4000)
        naive = paired_test(a, b, method, n_boot=4000)
        assert clustered.mean_diff == pytest.approx(a.mean() - b.mean())
        assert clustered.n == 400
        assert clustered.p_value == pytest.approx(on_units.p_value, abs=0.03), method
        assert naive.p_value < clustered.p_value, method


def test_compare_resamples_the_users_of_the_results():
    unit_vals, x, units = _clustered()
    y = np.clip(x + 0.01, 0, 1)
    res = {
        "a": EvalResult(
            {"ndcg@10": x.mean()}, {"ndcg@10": x}, np.ones(400), "full", 400, units=units
        ),
        "b": EvalResult(
            {"ndcg@10": y.mean()}, {"ndcg@10": y}, np.ones(400), "full", 400, units=units
        ),
    }
    tab = compare(res, "a", "ndcg@10", n_boot=2000)
    row = tab.row(0, named=True)
    assert (row["lo"], row["hi"]) == pytest.approx(bootstrap_ci(x, 2000, units=units)[1:])


@pytest.mark.parametrize("method", [m for m in METHODS if m != "t"])
def test_one_pair_or_one_user_is_no_evidence(method):
    """A single differing pair (or every pair of a single user) cannot be resampled: p 1 and
    an unbounded interval, as the exact sign flip says; the bootstrap said p = 1 / (n_boot + 1)
    with a zero-width interval. The t-test refuses it."""
    for a, b, units in (([0.8], [0.1], None), ([0.8, 0.6, 0.9], [0.1, 0.2, 0.0], [7, 7, 7])):
        t = paired_test(a, b, method, n_boot=500, units=units)
        assert t.p_value == 1.0 and not t.significant
        assert t.ci == (-math.inf, math.inf)
        assert t.mean_diff == pytest.approx(np.mean(a) - np.mean(b))
    with pytest.raises(DataError, match="at least 2"):
        paired_test([0.8, 0.6], [0.1, 0.2], "t", units=[7, 7])
    # two users: resampled as before
    assert paired_test([0.8, 0.6], [0.1, 0.2], method, n_boot=500, units=[1, 2]).ci[0] > 0


def test_paired_test_refuses_units_of_another_length():
    """Units that do not give one unit per pair: the DataError that bootstrap_ci gives, not
    NumPy's 'boolean index did not match' IndexError."""
    a, b = np.array([1.0, 0, 1, 0]), np.array([0.0, 0, 1, 1])
    for units in ([1, 2, 3], [1, 1, 2, 2, 3]):
        with pytest.raises(DataError, match="one unit per value"):
            paired_test(a, b, units=units)
        with pytest.raises(DataError, match="one unit per value"):
            bootstrap_ci(a, units=units)


def test_paired_t_with_units_is_centred_on_the_example_mean():
    """One user with 100 examples, ten with one: the t-interval of the mean over examples
    (cluster-robust) holds that mean; the t-test of the users' means did not (CI -0.22, 0.22
    around a difference of 0.9)."""
    a = np.array([1.0] * 100 + [0.0] * 10)
    b = np.array([0.0] * 100 + [0.1] * 10)
    units = np.array([0] * 100 + list(range(1, 11)))
    t = paired_test(a, b, "t", units=units)
    assert t.mean_diff == pytest.approx(a.mean() - b.mean())
    assert t.ci[0] < t.mean_diff < t.ci[1]
