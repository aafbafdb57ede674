"""What a search leaves behind, the same for every backend.

:func:`finish` takes the finished trials (rows of :class:`TrialRow`), picks the best by its
validation score, refits that configuration on train (selected on validation, as in the search)
and evaluates it ONCE on the test part -- the only time the test part is touched -- and writes,
into the output folder as one unit:

- ``trials.csv`` / ``trials.md``: every trial, its state, parameters, validation score, epochs, time;
- ``best.toml``: the best configuration as an experiment file ``warmrec train --config`` takes;
- ``summary.json``: best trial, its validation metrics, the test metrics, counts and wall time;
- ``history.png`` (optimisation history), ``importance.png`` (parameter importance),
  ``curves.png`` (validation metric per epoch of every trial);
- ``best_model/``: the refitted best model.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from warmrec.io import atomic_write_text

STATES = ("complete", "pruned", "failed", "interrupted", "running")


@dataclass
class TrialRow:
    """One trial of a search, backend-independent."""

    number: int
    state: str
    params: dict[str, Any]
    value: float | None = None
    valid: dict[str, float] = field(default_factory=dict)
    epochs: int = 0
    seconds: float = 0.0
    curve: list[float] = field(default_factory=list)
    retries: int = 0
    error: str = ""
    """Why a failed trial failed (one line), empty otherwise."""


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return (
            "{ " + ", ".join(f"{json.dumps(str(k))} = {toml_value(x)}" for k, x in v.items()) + " }"
        )
    raise TypeError(f"cannot write {type(v).__name__} {v!r} as TOML")


def dump_toml(cfg: dict[str, dict[str, Any]]) -> str:
    """A two-level experiment config (``[section] key = value``) as TOML text."""
    lines: list[str] = []
    for section, values in cfg.items():
        if not values:
            continue
        lines.append(f"[{section}]")
        for k, v in values.items():
            if v is None:
                continue
            lines.append(f"{k} = {toml_value(v)}")
        lines.append("")
    return "\n".join(lines)


def best_row(rows: list[TrialRow]) -> TrialRow | None:
    done = [r for r in rows if r.state == "complete" and r.value is not None]
    return max(done, key=lambda r: (r.value, -r.number)) if done else None


def write_tables(rows: list[TrialRow], out: Path, metric: str) -> None:
    names = sorted({k for r in rows for k in r.params})
    header = ["trial", "state", *names, f"valid_{metric}", "epochs", "seconds", "retries"]
    header.append("error")
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(header)
    for r in rows:
        w.writerow(
            [r.number, r.state, *(r.params.get(n, "") for n in names)]
            + [
                "" if r.value is None else f"{r.value:.6f}",
                r.epochs,
                f"{r.seconds:.2f}",
                r.retries,
                r.error,
            ]
        )
    atomic_write_text(out / "trials.csv", buf.getvalue())
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [str(r.number), r.state] + [_fmt(r.params.get(n, "")) for n in names]
        cells += ["" if r.value is None else f"{r.value:.4f}", str(r.epochs), f"{r.seconds:.1f}"]
        cells += [str(r.retries), r.error.replace("|", "/")[:120]]
        md.append("| " + " | ".join(cells) + " |")
    atomic_write_text(out / "trials.md", "\n".join(md) + "\n")


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def plot(rows: list[TrialRow], out: Path, metric: str, importance: dict[str, float]) -> list[str]:
    """history.png, importance.png, curves.png; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from warmrec.reports.plots import save_figure

    written = []
    done = sorted((r for r in rows if r.value is not None), key=lambda r: r.number)
    fig, ax = plt.subplots(figsize=(6, 4))
    if done:
        xs = [r.number for r in done]
        ys = [r.value for r in done]
        best = [max(ys[: i + 1]) for i in range(len(ys))]
        colors = ["tab:blue" if r.state == "complete" else "tab:gray" for r in done]
        ax.scatter(xs, ys, c=colors, s=16, label="trial (gray: pruned)")
        ax.step(xs, best, where="post", color="tab:red", label="best so far")
        ax.legend()
    ax.set_xlabel("trial")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title("optimisation history")
    fig.tight_layout()
    save_figure(fig, out / "history.png", dpi=100)
    plt.close(fig)
    written.append("history.png")

    fig, ax = plt.subplots(figsize=(6, max(2.0, 0.4 * len(importance) + 1)))
    names = sorted(importance, key=importance.get)
    ax.barh(names, [importance[n] for n in names], color="tab:blue")
    ax.set_xlabel("importance")
    complete = [r.value for r in rows if r.state == "complete" and r.value is not None]
    why = (
        ""
        if importance
        else " (too few trials)"
        if len(complete) < 3
        else " (every trial scored the same)"
        if len(set(complete)) == 1
        else " (no parameter varied)"
    )
    ax.set_title("parameter importance" + why)
    fig.tight_layout()
    save_figure(fig, out / "importance.png", dpi=100)
    plt.close(fig)
    written.append("importance.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        if r.curve:
            style = "-" if r.state == "complete" else ":"
            # a marker on every point: a trial pruned after its first epoch is one point
            ax.plot(range(1, len(r.curve) + 1), r.curve, style, lw=1, alpha=0.7, marker=".")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title("validation per epoch, every trial (dotted: pruned)")
    fig.tight_layout()
    save_figure(fig, out / "curves.png", dpi=100)
    plt.close(fig)
    written.append("curves.png")
    return written


def importance_of(rows: list[TrialRow], space: Any = None) -> dict[str, float]:
    """Parameter importance from the completed trials: Optuna's fANOVA over the space's
    distributions when it can run, else the absolute rank correlation of each numeric parameter
    with the score; {} with fewer than 3 completed trials."""
    done = [r for r in rows if r.state == "complete" and r.value is not None]
    if len(done) < 3 or len({r.value for r in done}) == 1:
        return {}  # too few trials, or every one scored the same: nothing to attribute
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        dists = _distributions(space)
        study = optuna.create_study(direction="maximize")
        for r in done:
            params = {k: v for k, v in r.params.items() if k in dists}
            study.add_trial(
                optuna.trial.create_trial(
                    params=params, distributions={k: dists[k] for k in params}, value=r.value
                )
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            imp = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
            )
        return {k: float(v) for k, v in imp.items()}
    except Exception:  # noqa: BLE001 - importance is a diagnostic; fall back
        return _rank_importance(done)


def _distributions(space: Any) -> dict[str, Any]:
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    out: dict[str, Any] = {}
    for p in space.params:
        if p.type == "categorical":
            out[p.name] = CategoricalDistribution(list(p.choices))
        elif p.type == "int":
            out[p.name] = IntDistribution(int(p.low), int(p.high), log=p.log, step=int(p.step or 1))
        else:
            out[p.name] = FloatDistribution(float(p.low), float(p.high), log=p.log, step=p.step)
    return out


def _rank_importance(done: list[TrialRow]) -> dict[str, float]:
    """The absolute rank correlation of each parameter with the score (a categorical one: the
    correlation ratio of the score over its choices, on ranks), normalised to sum to 1."""
    import numpy as np
    from scipy.stats import rankdata, spearmanr

    out = {}
    names = sorted({k for r in done for k in r.params})
    for n in names:
        pts = [(r.params[n], r.value) for r in done if n in r.params]
        if len(pts) < 3 or len({repr(p) for p, _ in pts}) < 2:
            continue
        values = np.array([v for _, v in pts], dtype=np.float64)
        if np.ptp(values) == 0:
            continue
        if all(isinstance(p, int | float) and not isinstance(p, bool) for p, _ in pts):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rho = spearmanr([p for p, _ in pts], values).statistic
            out[n] = float(abs(rho)) if np.isfinite(rho) else 0.0
        else:  # choices: the share of the scores' rank variance their means explain (eta^2)
            ranks = rankdata(values)
            groups: dict[str, list[float]] = {}
            for (p, _), rk in zip(pts, ranks):
                groups.setdefault(repr(p), []).append(rk)
            between = sum(len(g) * (np.mean(g) - ranks.mean()) ** 2 for g in groups.values())
            total = float(((ranks - ranks.mean()) ** 2).sum())
            out[n] = float(np.sqrt(between / total)) if total > 0 else 0.0
    total = sum(out.values()) or 1.0
    return {k: v / total for k, v in out.items()}


def finish(
    *,
    rows: list[TrialRow],
    model_name: str,
    space: Any,
    base: Any,
    prepared: Any,
    out: Path,
    backend: str,
    wall_s: float,
    refit: bool = True,
) -> dict[str, Any]:
    """Write the results of a search (see the module docstring); returns the summary. ``base``:
    the search's :class:`~warmrec.experiments.spec.RunSpec` (data, split, eval)."""
    from warmrec.experiments.spec import evaluate_run, save_run
    from warmrec.tuning.trial import run_trial, trial_spec

    t_finish = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    metric = space.metric
    rows = sorted(rows, key=lambda r: r.number)
    write_tables(rows, out, metric)
    best = best_row(rows)
    counts = {s: sum(r.state == s for r in rows) for s in STATES}
    summary: dict[str, Any] = {
        "model": model_name,
        "backend": backend,
        "metric": metric,
        "trials": len(rows),
        **{f"n_{s}": n for s, n in counts.items()},
        "wall_s": wall_s,
        "best": None,
    }
    if best is not None:
        ex = base.eval.exclude_seen
        best_spec = trial_spec(model_name, space, best.params, exclude_seen=ex, base=base)
        atomic_write_text(out / "best.toml", dump_toml(best_spec.to_config(absolute=True)))
        summary["best"] = {
            "trial": best.number,
            "params": best.params,
            "valid": best.valid,
            "value": best.value,
            "epochs": best.epochs,
            "config": str(out / "best.toml"),
        }
        if refit:
            t0 = time.perf_counter()
            outcome, model = run_trial(
                model_name, space, best.params, prepared, exclude_seen=ex, base=base
            )
            # the one and only look at the test part
            test = evaluate_run(model, prepared.test, best_spec, prepared)
            save_run(model, out / "best_model")
            summary["best"]["refit_valid"] = outcome.valid
            summary["best"]["test"] = {k: float(v) for k, v in test.summary.items()}
            summary["best"]["refit_s"] = time.perf_counter() - t0
    importance = importance_of(rows, space)
    summary["importance"] = importance
    summary["plots"] = plot(rows, out, metric, importance)
    summary["rows"] = [asdict(r) for r in rows]
    summary["finish_s"] = time.perf_counter() - t_finish  # the refit, the test and the plots
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    return summary
