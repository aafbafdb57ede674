"""The steps of recipes that are not one run: each calls existing library functions.

Every function here is ``fn(ctx, name, **params) -> record`` (see
:class:`~warmrec.experiments.recipes.base.CallStep`): ``ctx`` gives the output folder and the
records of earlier steps, ``name`` the step's name (its files go to ``OUT/steps/<name>``), and the
record is what the report reads. Logs are read with
:class:`~warmrec.experiments.spec.DataSpec` (``read`` parameters are ``[data]`` tables), so
reading is the same as in a run.

- :func:`eda` -- :func:`warmrec.data.stats.describe`, the length and popularity plots, and
  :func:`warmrec.data.sessionize.gap_analysis` with its plot (``warmrec data stats`` / ``gaps``);
- :func:`sessionize_log` -- :func:`warmrec.data.sessionize.sessionize` at a gap (or the one
  ``gap_analysis`` suggests), written as Parquet for the runs after it (``warmrec data
  sessionize``);
- :func:`tune` -- :func:`warmrec.tuning.run.run_tune` (``warmrec tune``) with a space given
  inline; its ``best.toml`` feeds a later run (``config_from``);
- :func:`transfer_study` -- :func:`warmrec.experiments.transfer_study.run_transfer_study`;
- :func:`coldstart_study` -- :func:`warmrec.experiments.studies.coldstart.run_coldstart_study`
  (both studies resume their own finished runs inside the step's folder);
- :func:`predict_top` -- :func:`warmrec.serving.predict.run_predict` (``warmrec predict``).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from typing import Any

from warmrec.experiments.recipes.base import Context


def _read(read: Mapping[str, Any]) -> Any:
    from warmrec.experiments.spec import DataSpec

    return DataSpec(**dict(read)).read()


def eda(
    ctx: Context, name: str, *, data: Mapping[str, Mapping[str, Any]], gaps: Sequence[str] = ()
) -> dict[str, Any]:
    """Statistics and plots of each log in ``data`` (``{label: [data] table}``); inactivity gaps
    of those named in ``gaps`` (logs with users and times in seconds)."""
    import numpy as np

    from warmrec.data.schema import USER
    from warmrec.data.sessionize import gap_analysis
    from warmrec.data.stats import describe, item_counts, length_counts
    from warmrec.reports.plots import plot_gap_histogram, plot_length_distribution, plot_popularity

    folder = ctx.step_dir(name)
    out: dict[str, Any] = {"datasets": {}, "plots": []}
    for label, read in data.items():
        log = _read(read)
        df = log.interactions
        d = describe(df, log.time_unit)
        d["source"] = str(read.get("path"))
        d["item_features"] = (
            [c for c in log.item_features.columns] if log.item_features is not None else []
        )
        d["user_features"] = (
            [c for c in log.user_features.columns] if log.user_features is not None else []
        )
        lp = plot_length_distribution(
            length_counts(df), folder / f"{label}-lengths.png", f"{label}: sequence lengths"
        )
        pp = plot_popularity(item_counts(df), folder / f"{label}-popularity.png", f"{label}: items")
        out["plots"] += [str(lp), str(pp)]
        if label in gaps and USER in df.columns and log.time_unit != "ordinal":
            g = gap_analysis(df, USER)
            d["gaps"] = {
                "quantiles": g.quantiles,
                "suggested_threshold_s": g.suggested_threshold,
                "rule": g.rule,
                "zero_gaps": g.n_zero,
            }
            gp = plot_gap_histogram(
                np.asarray(g.bin_edges),
                np.asarray(g.counts),
                g.suggested_threshold,
                folder / f"{label}-gaps.png",
                f"{label}: inactivity gaps between a user's events",
            )
            out["plots"].append(str(gp))
        out["datasets"][label] = d
    return out


def sessionize_log(
    ctx: Context,
    name: str,
    *,
    read: Mapping[str, Any],
    gap: float | str = "suggested",
    out: str,
) -> dict[str, Any]:
    """Cut each user's events into sessions at ``gap`` seconds (``"suggested"``: the threshold
    of :func:`~warmrec.data.sessionize.gap_analysis`) and write the log to ``out`` (Parquet)."""
    from warmrec.data.schema import SESSION, USER
    from warmrec.data.sessionize import gap_analysis, sessionize
    from warmrec.errors import ConfigError
    from warmrec.io import write_parquet

    log = _read(read)
    df = log.interactions
    if gap == "suggested":
        report = gap_analysis(df, USER)
        seconds, rule = float(report.suggested_threshold), report.rule
    elif isinstance(gap, int | float) and not isinstance(gap, bool):
        seconds, rule = float(gap), "given"
    else:
        raise ConfigError(f"step {name}: gap: expected seconds or 'suggested', found {gap!r}")
    s = sessionize(df, seconds, USER)
    write_parquet(s, out)
    lengths = s.group_by(SESSION).len()["len"]
    return {
        "gap_s": seconds,
        "rule": rule,
        "events": s.height,
        "users": s[USER].n_unique(),
        "sessions": s[SESSION].n_unique(),
        "session_length_mean": float(lengths.mean()),
        "session_length_median": float(lengths.median()),
        "sessions_of_one_event": int((lengths == 1).sum()),
        "out": out,
    }


def tune(
    ctx: Context,
    name: str,
    *,
    run: Mapping[str, Any],
    space: Mapping[str, Any],
    trials: int,
    timeout: float | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """A search (``warmrec tune``, Optuna) over ``space`` (a space file's tables, inline) on the
    run config ``run``'s data, split and validation; writes ``OUT/steps/<name>/search/best.toml``
    (the best setting as a run config) and refits it once on the test part, as ``tune`` does.
    A half-finished search of a killed recipe starts over."""
    from warmrec.io import atomic_write_text
    from warmrec.tuning.results import dump_toml
    from warmrec.tuning.run import run_tune

    folder = ctx.step_dir(name)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    space_path = folder / "space.toml"
    atomic_write_text(space_path, dump_toml({k: dict(v) for k, v in space.items()}))
    summary = run_tune(
        dict(run),
        model=None,
        space_path=space_path,
        trials=trials,
        out=folder / "search",
        timeout=timeout,
        seed=seed,
    )
    keep = ("model", "metric", "trials", "n_complete", "n_pruned", "n_failed", "wall_s", "best")
    rec = {k: summary.get(k) for k in keep if k in summary}
    rec["curves"] = [
        {"trial": r["number"], "state": r["state"], "curve": r["curve"]}
        for r in summary.get("rows", [])
    ]
    rec["best_toml"] = str(folder / "search" / "best.toml")
    return rec


def transfer_study(
    ctx: Context,
    name: str,
    *,
    source: Mapping[str, Any],
    target: Mapping[str, Any],
    **settings: Any,
) -> dict[str, Any]:
    """:func:`~warmrec.experiments.transfer_study.run_transfer_study` from ``source`` to
    ``target`` (``[data]`` tables; item titles are used where the logs have them) with
    ``settings`` (its keyword arguments), into ``OUT/steps/<name>``."""
    from warmrec.experiments.spec import item_titles
    from warmrec.experiments.transfer_study import run_transfer_study

    src, tgt = _read(source), _read(target)
    res = run_transfer_study(
        src.interactions,
        tgt.interactions,
        out_dir=ctx.step_dir(name),
        source_titles=item_titles(src.item_features),
        target_titles=item_titles(tgt.item_features),
        progress=ctx.progress,
        **settings,
    )
    return {
        "summary": res.summary.to_dicts(),
        "info": {k: str(v) for k, v in res.info.items()},
        "report": str(res.paths.get("report_md", "")),
        "plots": [str(v) for k, v in res.paths.items() if k.startswith("plot_")],
    }


def coldstart_study(
    ctx: Context,
    name: str,
    *,
    data: Mapping[str, Any],
    model: str,
    model_config: Mapping[str, Any] | None = None,
    methods: Sequence[str],
    seeds: Sequence[int] = (0,),
    settings: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """:func:`~warmrec.experiments.studies.coldstart.run_coldstart_study` on ``data`` (a
    ``[data]`` table) into ``OUT/steps/<name>``."""
    from warmrec.experiments.studies.coldstart import run_coldstart_study

    log = _read(data)
    res = run_coldstart_study(
        log.interactions,
        model=model,
        model_config=dict(model_config or {}),
        methods=list(methods),
        seeds=tuple(seeds),
        settings=dict(settings or {}),
        out_dir=ctx.step_dir(name),
        progress=ctx.progress,
    )
    return {
        "summary": res.summary.to_dicts(),
        "report": str(res.paths.get("report_md", "")),
        "plots": [str(v) for k, v in res.paths.items() if str(v).endswith(".png")],
    }


def predict_top(
    ctx: Context,
    name: str,
    *,
    model: str,
    out: str,
    k: int = 10,
    part: str = "all",
    exclude_seen: bool = False,
) -> dict[str, Any]:
    """``warmrec predict``: the top ``k`` of every history of the model's own data to ``out``
    (CSV or Parquet by its suffix)."""
    from warmrec.serving.predict import run_predict

    s = run_predict(model, None, out, part=part, k=k, exclude_seen=exclude_seen, progress=False)
    return s.as_dict()
