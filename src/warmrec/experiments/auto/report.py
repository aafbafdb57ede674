"""``warmrec auto``, 5: the final step (:func:`finish`: the winner scored on test and saved, the
others while time is left) and what it writes: leaderboard, trials, plot, report, summary."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from warmrec.errors import WarmrecError
from warmrec.experiments.auto.plan import FAMILIES, HYBRID, Trial
from warmrec.experiments.auto.profile import LogProfile
from warmrec.experiments.auto.search import AutoSearch
from warmrec.experiments.auto.steps import _ci, warnings_quiet


def _fmt(v: float | None, ci: list[float] | None = None) -> str:
    """A figure (and its interval) as the other reports write it
    (:func:`~warmrec.reports.tables.format_value`): 4 decimals, ``3.00e-05`` where those would
    show a nonzero value as ``0.0000``."""
    from warmrec.reports.tables import format_value

    if v is None:
        return "-"
    v = float(v)
    return format_value(v) + (
        f" [{format_value(float(ci[0]))}, {format_value(float(ci[1]))}]" if ci else ""
    )


def _tried(trials: list[Trial]) -> str:
    kinds = {"defaults": 0, "variants": 0, "sampled": 0, "formed": 0}
    for t in trials:
        if t.origin == "defaults":
            kinds["defaults"] += 1
        elif t.origin.startswith("defaults,"):
            kinds["variants"] += 1
        elif t.origin == "sampled":
            kinds["sampled"] += 1
        else:
            kinds["formed"] += 1
    states: dict[str, int] = {}
    for t in trials:
        states[t.status] = states.get(t.status, 0) + 1
    what = ", ".join(f"{n} {k}" for k, n in kinds.items() if n)
    how = ", ".join(f"{n} {k}" for k, n in sorted(states.items()))
    return f"{what} ({how})"


def _short(t: Trial) -> str:
    if t.family == HYBRID:
        return f"weight {t.weight:.1f}" if t.weight is not None else ""
    if t.members:  # Fresh over a saved model: the weights it chose
        keys = (("cold_weight", "a"), ("affinity_weight", "b"), ("order_weight", "o"))
        return ", ".join(f"{s} {t.model[k]:g}" for k, s in keys if t.model.get(k) is not None)
    cfg = {k.split(".", 1)[1]: v for k, v in t.params.items()} if t.params else {}
    if not cfg and t.origin.startswith("defaults,"):
        return t.origin.split(",", 1)[1].strip()
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in cfg.items())


def _plot(search: AutoSearch, path: Path, winner: Trial | None) -> None:
    """The best validation score over time per family, as PNG: through the object API of
    :mod:`warmrec.reports.plots` (``matplotlib.use("Agg")`` here switched the caller's
    backend, a notebook's inline one included, for the rest of its session)."""
    from matplotlib import colormaps

    from warmrec.reports.plots import new_figure, save_figure

    fig, ax = new_figure((7, 4.5))
    ax.grid(False)
    fams = [f.name for f in FAMILIES] + [HYBRID]
    colours = colormaps["tab20"].colors
    for i, fam in enumerate(fams):
        pts = sorted(p for t in search.of(fam) for p in t.curve)
        if not pts:
            continue
        xs, ys, best = [], [], -math.inf
        for x, y in pts:
            best = max(best, y)
            xs.append(x)
            ys.append(best)
        style = "--" if fam == HYBRID else "-"
        c = colours[(2 * i) % 20 + (2 * i) // 20]
        ax.step(xs, ys, where="post", ls=style, lw=1.4, label=fam, color=c)
        ax.plot(xs, ys, ".", ms=4, color=c)
    if winner is not None:
        ax.axhline(winner.value, color="k", lw=0.6, ls=":")
    ax.set_xlabel("seconds since the start")
    ax.set_ylabel(f"best validation {search.ctx.metric}")
    ax.set_title("best validation score over time, per family")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, ncol=2, loc="lower right")
    save_figure(fig, path, dpi=100)


def finish(search: AutoSearch, plan_notes: list[str], profile: LogProfile) -> dict[str, Any]:
    """Score the winner on test, save it, score the other families' bests on test while time is
    left, and write the leaderboard, plot, report and summary (package docstring, Output)."""
    from warmrec.experiments.spec import evaluate_run, record_run, save_run
    from warmrec.io import atomic_write_text
    from warmrec.models.base import Recommender
    from warmrec.models.catalogue import growable
    from warmrec.tuning.results import dump_toml

    if search.state.get("consensus_note"):
        plan_notes = [*plan_notes, search.state["consensus_note"]]

    s = search
    out = s.out
    t0 = time.time()
    s.state["phase"] = "final"
    s.save()
    prepared = s.ctx.prepared
    label = s.label
    ranked = s.ranked()

    final_errors: dict[str, str] = {}  # the final step's, shown in the leaderboard's status

    def load(t: Any) -> Any:
        """The trial's saved model, or None (said, and kept in ``t.error``) where it does not
        load: the final step goes on with the others rather than end the whole command."""
        try:
            return Recommender.load(s.ctx.work / "models" / t.id)
        except WarmrecError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            t.error = final_errors[t.id] = f"its saved model does not load: {first}"[:300]
            s.say(f"{t.id}: {t.error}; left out of the final step")
            return None

    def test_score(t: Any, model: Any) -> Any:
        """``t``'s test scoring, or None (said, and kept in ``t.error``) where it raises: one
        candidate failing there must not end the command (the search's steps are guarded
        alike), the others still have their test figures and the report is written."""
        try:
            with warnings_quiet():
                return evaluate_run(model, prepared.test, s.clean_spec(t), prepared)
        except Exception as e:  # noqa: BLE001 - as a failed step of the search
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            t.error = f"its test scoring failed: {type(e).__name__}: {msg}"[:300]
            final_errors[t.id] = t.error
            s.say(f"{t.id}: {t.error}; left out of the final step")
            return None

    scored: dict[str, Any] = {}
    while ranked:  # the pick is the best trial whose model loads and scores on test
        model = load(ranked[0])
        res = None if model is None else test_score(ranked[0], model)
        if res is not None:
            scored[ranked[0].id] = (model, res)
            break
        ranked.pop(0)
    winner = ranked[0] if ranked else None
    winner_slices: dict[str, Any] = {}
    winner_growable: str | None = None
    model_dir = out / "model"
    toml_path = out / "winner.toml"
    for t in ranked:
        if t is not winner and time.time() + s.test_cost(t) > s.end:
            continue  # no time left for this one: its test column stays empty
        if t.id in scored:
            model, res = scored.pop(t.id)
        else:
            model = load(t)
            res = None if model is None else test_score(t, model)
        if res is None:
            continue  # its test column stays empty, its error in the report
        spec = s.clean_spec(t)
        t.test = {k: float(v) for k, v in res.summary.items()}
        t.test_ci = _ci(res.per_example[label], res.units)
        if t is winner:
            winner_slices = _slices(res, prepared, label)
            record_run(
                model,
                spec,
                prepared,
                fit_seconds=t.seconds,
                valid=t.valid,
                n_valid=len(prepared.valid),
            )
            if model.meta.run is not None and t.loss:
                model.meta.run.loss = t.loss
            save_run(model, model_dir)
            winner_growable = growable(model)
            head = [
                f"# warmrec auto's pick: {t.id} ({t.origin}), validation {label} "
                f"{_fmt(t.value)}, test {_fmt(t.test.get(label, float('nan')))}",
                f"# `warmrec train --config {toml_path.name} --out DIR` fits it again from "
                "scratch; the fitted model is in model/",
            ]
            if t.network:
                head.append(
                    f"# (the search trained it {t.epochs} epochs, paused and resumed by the "
                    "scheduler; the refit trains up to train.epochs with early stopping)"
                )
            atomic_write_text(
                toml_path, "\n".join(head) + "\n" + dump_toml(spec.to_config(absolute=True))
            )
            s.say(f"winner {t.id}: test {label} {t.test[label]:.4f}, saved to {model_dir}")
        s.save()
    final_s = time.time() - t0
    # -- tables --------------------------------------------------------------------------------
    dropped = s.state.get("dropped", {})
    rows = []
    for rank, t in enumerate(ranked, 1):
        fam_trials = s.of(t.family)
        rows.append(
            {
                "rank": rank,
                "family": t.family,
                "trial": t.id,
                "origin": t.origin,
                "settings": _short(t),
                f"valid_{label}": t.value,
                "valid_ci": t.ci,
                f"test_{label}": t.test.get(label),
                "test_ci": t.test_ci,
                "valid": t.valid,
                "test": t.test,
                "seconds": t.seconds,
                "family_seconds": sum(x.seconds for x in fam_trials),
                "epochs": t.epochs,
                "seen_items": "excluded" if t.exclude_seen else "kept",
                "tried": _tried(fam_trials),
                "status": final_errors.get(t.id) or dropped.get(t.family, "to the end"),
            }
        )
    scored = {t.family for t in ranked}
    for fam in s.state["families"] + [HYBRID]:
        if fam in scored or not s.of(fam):
            continue
        fam_trials = s.of(fam)
        errs = [t.error for t in fam_trials if t.error]
        rows.append(
            {
                "rank": None,
                "family": fam,
                "trial": "-",
                "origin": "-",
                "settings": "",
                f"valid_{label}": None,
                "valid_ci": None,
                f"test_{label}": None,
                "test_ci": None,
                "valid": {},
                "test": {},
                "seconds": 0.0,
                "family_seconds": sum(x.seconds for x in fam_trials),
                "epochs": 0,
                "seen_items": "-",
                "tried": _tried(fam_trials),
                "status": (errs[0] if errs else dropped.get(fam, "no time")),
            }
        )
    weighed = _weighed(s)  # the validation column is then the re-weighted figure
    md = [
        f"| rank | family | best trial | settings | valid {label}{weighed} [95 % CI] | test "
        f"{label} [95 % CI] | best's time (s) | family's time (s) | epochs | seen items | "
        "tried | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            "| "
            + " | ".join(
                [
                    str(r["rank"] or "-"),
                    r["family"],
                    f"{r['trial']} ({r['origin']})" if r["trial"] != "-" else "-",
                    r["settings"].replace("|", "/"),
                    _fmt(r[f"valid_{label}"], r["valid_ci"]),
                    _fmt(r[f"test_{label}"], r["test_ci"]),
                    f"{r['seconds']:.1f}",
                    f"{r['family_seconds']:.1f}",
                    str(r["epochs"] or "-"),
                    r["seen_items"],
                    r["tried"],
                    str(r["status"]).replace("|", "/"),
                ]
            )
            + " |"
        )
    for fam, why in s.state.get("left_out", {}).items():
        md.append(f"| - | {fam} | - | - | - | - | - | - | - | - | left out | {why} |")
    table = "\n".join(md) + "\n"
    atomic_write_text(out / "leaderboard.md", table)
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    cols = ["rank", "family", "trial", "origin", "settings", f"valid_{label}", "valid_lo"]
    cols += ["valid_hi", f"test_{label}", "test_lo", "test_hi", "seconds", "family_seconds"]
    cols += ["epochs", "seen_items", "tried", "status"]
    w.writerow(cols)
    for r in rows:
        vci, tci = r["valid_ci"] or [None, None], r["test_ci"] or [None, None]
        w.writerow(
            [r["rank"], r["family"], r["trial"], r["origin"], r["settings"]]
            + [r[f"valid_{label}"], vci[0], vci[1], r[f"test_{label}"], tci[0], tci[1]]
            + [round(r["seconds"], 3), round(r["family_seconds"], 3), r["epochs"]]
            + [r["seen_items"], r["tried"], r["status"]]
        )
    atomic_write_text(out / "leaderboard.csv", buf.getvalue())
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(
        ["trial", "family", "origin", "status", f"valid_{label}", "seen_items", "epochs"]
        + ["seconds", "round", "settings", "error"]
    )
    for t in s.trials.values():
        w.writerow(
            [t.id, t.family, t.origin, t.status, t.value, "excluded" if t.exclude_seen else "kept"]
            + [t.epochs, round(t.seconds, 3), t.round, json.dumps(t.model), t.error or ""]
        )
    atomic_write_text(out / "trials.csv", buf.getvalue())
    plotted = True
    if time.time() + 2.0 < s.end + 0.02 * s.budget_s:
        _plot(s, out / "progress.png", winner)
    else:
        plotted = False
    # -- report and summary --------------------------------------------------------------------
    elapsed = s.clock()
    timings = dict(s.state.get("timings", {}))
    timings.update({"final_s": final_s, "elapsed_s": elapsed})
    load = list(s.state.get("load", []))
    with contextlib.suppress(OSError):
        load.append(round(__import__("os").getloadavg()[0], 2))
    summary = {
        "data": s.state["data"],
        "metric": s.ctx.metric,
        "valid_weighed": _weighed(s).strip(" ()") or None,
        "budget_s": s.budget_s,
        "elapsed_s": elapsed,
        "timings": timings,
        "load_1min": load,
        "rounds": s.state["round"],
        "winner": None
        if winner is None
        else {
            "trial": winner.id,
            "family": winner.family,
            "origin": winner.origin,
            "valid": winner.valid,
            "valid_value": winner.value,
            "valid_ci": winner.ci,
            "test": winner.test,
            "test_ci": winner.test_ci,
            "seen_items": "excluded" if winner.exclude_seen else "kept",
            "slices": winner_slices,
            "takes_new_items": winner_growable is None,
            "new_items_note": winner_growable,
            "model_dir": str(model_dir),
            "config": str(toml_path),
        },
        "leaderboard": rows,
        "profile": asdict(profile),
        "notes": plan_notes,
        "exclusion": s.state.get("exclusion", {}),
        "trials": len(s.trials),
        "plot": str(out / "progress.png") if plotted else None,
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    atomic_write_text(out / "report.md", _report(s, summary, profile, plan_notes, table))
    s.state["phase"] = "done" if winner is not None else "search"
    s.save()
    if winner is not None:  # a finished run is not resumed: its checkpoints can go
        shutil.rmtree(s.ctx.work / "ckpt", ignore_errors=True)
    return summary


def new_items_line(w: dict[str, Any]) -> str:
    """The report's line on items added after training, for the summary's winner ``w``."""
    if w.get("takes_new_items"):
        return (
            f"- new items join it without retraining: `warmrec add-items {w['model_dir']} "
            "--items FILE` (then `POST /admin/reload` on a server)"
        )
    return f"- new items need a refit: {w.get('new_items_note')}"


def _slices(res: Any, prepared: Any, label: str) -> dict[str, Any]:
    """The winner's test ``label`` on each cold-start slice, read from its test scoring
    (:mod:`warmrec.evaluation.slices`): ``{slice: {"n": ..., label: value or None}}``; none
    under the coldstart scenario (``--split coldstart``: no row split to read returning and new
    users and items from, and every held-out user is new by construction), whose refusal had
    ended the command at the final step, after the whole search, with no leaderboard, no
    model and a folder that failed the same way on every resume."""
    from warmrec.evaluation.slices import cold_slices, split_result

    if getattr(prepared, "split", None) is None:
        return {}
    out = {}
    for name, r in split_result(res, cold_slices(prepared)).items():
        v = r.summary.get(label)
        out[name] = {"n": r.n_examples, label: None if v is None or math.isnan(v) else v}
    return out


def _weighed(s: AutoSearch) -> str:
    """`` (weighed: ...)`` after a validation figure chosen under ``--cold-target-share``."""
    share = s.state["args"].get("cold_target_share")
    return "" if share is None else f" (new-item targets weighed as {share})"


def _report(s: AutoSearch, summary: dict, profile: LogProfile, notes: list[str], table: str) -> str:
    label = s.label
    t = summary["timings"]
    lines = [
        f"# warmrec auto: {summary['data'].get('path', 'data given in Python')}",
        "",
        f"Budget {summary['budget_s']:.0f} s, metric {s.ctx.metric} on validation; ended after "
        f"{summary['elapsed_s']:.1f} s (reading and describing {t.get('prepare_s', 0):.1f} s"
        + (f", of which encoding the item texts {t['text_s']:.1f} s" if t.get("text_s") else "")
        + ", "
        f"final step {t.get('final_s', 0):.1f} s); {summary['rounds']} rounds, "
        f"{summary['trials']} trials; 1-minute load average "
        + " -> ".join(f"{x:g}" for x in summary["load_1min"])
        + f" on {__import__('os').cpu_count()} cores.",
        "",
        "## The log",
        "",
        *[f"- {x}" for x in profile.lines()],
        "",
        "## How it steered the search",
        "",
        *[f"- {x}" for x in notes],
    ]
    for fam, v in sorted(summary["exclusion"].items()):
        lines.append(
            f"- {fam}: seen items kept {_fmt(v['kept'])}, excluded {_fmt(v['excluded'])} "
            f"-> {'excluded' if v['excluded'] > v['kept'] else 'kept'}"
        )
    lines += ["", "## Leaderboard", "", table]
    w = summary["winner"]
    if w is None:
        lines.append("No trial was fitted and scored within the budget.")
    else:
        lines += [
            "## The pick",
            "",
            f"{w['trial']} ({w['origin']}): validation {label}{_weighed(s)} "
            f"{_fmt(w['valid_value'], w['valid_ci'])}, "
            f"test {_fmt(w['test'].get(label), w['test_ci'])}; seen items {w['seen_items']}.",
            "",
            f"- model directory: `{w['model_dir']}`: `warmrec evaluate {w['model_dir']}`, "
            f"`warmrec predict {w['model_dir']} --out top.csv"
            + (" --exclude-seen`" if w["seen_items"] == "excluded" else "`")
            + f", `warmrec serve {w['model_dir']}`"
            + (' (requests with `"exclude_seen": true`)' if w["seen_items"] == "excluded" else ""),
            f"- its RunSpec: `{w['config']}`",
            *(
                ["- best validation score over time per family: `progress.png`"]
                if summary.get("plot")
                else []
            ),
            new_items_line(w),
        ]
        parts = [
            f"{name.replace('_', ' ')} {_fmt(v[label])} (n {v['n']:,})"
            for name, v in (w.get("slices") or {}).items()
            if name != "all" and v["n"] and v[label] is not None
        ]
        if parts:
            lines.append(
                f"- test {label} by slice (`warmrec evaluate --slices`): " + "; ".join(parts)
            )
    return "\n".join(lines) + "\n"
