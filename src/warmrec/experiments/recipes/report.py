"""A recipe's report: ``OUT/report.md`` and ``OUT/report.html`` through :mod:`warmrec.reports`.

Sections: the source project; its figures beside ours (with the protocol and why they differ);
the protocols; the steps with their times and memory; one results table of the runs (validation
and each test protocol); the recipe's own blocks (plots, tables); how to reproduce it.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from warmrec.reports.tables import format_value

if TYPE_CHECKING:  # base imports this module when a run ends
    from warmrec.experiments.recipes.base import Recipe, Step


def fmt(v: Any, digits: int = 4) -> str:
    """A figure for a table: floats as the other reports write them
    (:func:`~warmrec.reports.tables.format_value`: ``digits`` places, in scientific notation
    where those would round a nonzero value to zero, ``3.00e-05`` and not ``0.0000``), None as
    ``-``."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return format_value(v, digits)
    return str(v)


def claims_frame(recipe: Recipe, records: Mapping[str, Any]) -> pl.DataFrame:
    rows = []
    for c in recipe.claims(records):
        rows.append(
            {
                "figure": c.what,
                "source project": c.theirs,
                "warmrec": fmt(c.our_value(records)),
                "protocol": c.protocol,
                "why they differ": c.why,
            }
        )
    schema = ["figure", "source project", "warmrec", "protocol", "why they differ"]
    return pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)


def steps_frame(steps: Sequence[Step], state: Mapping[str, Any]) -> pl.DataFrame:
    ran = set((state.get("last_run") or {}).get("ran", []))
    rows = []
    for s in steps:
        st = state["steps"].get(s.name, {})
        rows.append(
            {
                "step": s.name,
                "kind": s.kind,
                "what": s.about,
                "seconds": fmt(st.get("seconds"), 1),
                "CPU s": fmt(st.get("cpu_s"), 1),
                "peak memory (MiB)": fmt(st.get("peak_rss_mb"), 0),
                "this run": "ran" if s.name in ran else "resumed (finished earlier)",
            }
        )
    return pl.DataFrame(rows)


def results_frame(steps: Sequence[Step], records: Mapping[str, Any]) -> pl.DataFrame:
    """One row per (run step, test protocol): model, fit seconds, validation and test metrics."""
    rows: list[dict[str, Any]] = []
    metric_cols: list[str] = []
    for s in steps:
        rec = records.get(s.name)
        if not hasattr(s, "run_config") or not rec:  # run steps only
            continue
        for protocol, summary in rec.get("test", {}).items():
            if protocol == "subgroups":
                continue
            row = {
                "step": s.name,
                "model": rec.get("model"),
                "protocol": protocol,
                "fit s": fmt(rec.get("fit_s"), 1),
                "n test": rec.get("n_test"),
            }
            for k, v in summary.items():
                col = f"test {k}"
                row[col] = v
                if col not in metric_cols:
                    metric_cols.append(col)
            rows.append(row)
    if not rows:
        return pl.DataFrame()
    cols = ["step", "model", "protocol", "fit s", "n test", *metric_cols]
    return pl.DataFrame([{c: r.get(c) for c in cols} for r in rows], infer_schema_length=None)


EDA_COLUMNS = (
    "events",
    "sequences",
    "items",
    "users",
    "length_median",
    "length_mean",
    "item_gini",
    "time_span_days",
)


def data_blocks(steps: Sequence[Step], records: Mapping[str, Any]) -> list[Any]:
    """The statistics and plots of the recipe's ``eda`` steps."""
    from warmrec.reports.report import Heading, Image, Table, Text

    blocks: list[Any] = []
    for s in steps:
        rec = records.get(s.name) or {}
        if s.kind != "eda" or not rec.get("datasets"):
            continue
        rows = []
        for label, d in rec["datasets"].items():
            row = {"data": label, **{c: d.get(c) for c in EDA_COLUMNS}}
            gaps = d.get("gaps")
            row["suggested session gap (s)"] = gaps.get("suggested_threshold_s") if gaps else None
            rows.append(row)
        blocks += [Heading("The data"), Table(pl.DataFrame(rows, infer_schema_length=None))]
        feats = [
            f"{label}: item features {', '.join(d['item_features']) or 'none'}; user features "
            f"{', '.join(d['user_features']) or 'none'}"
            for label, d in rec["datasets"].items()
        ]
        blocks.append(Text("\n\n".join(feats)))
        for p in rec.get("plots", []):
            if Path(p).is_file():
                blocks.append(Image(p, alt=Path(p).stem, caption=Path(p).stem))
    return blocks


def command_line(recipe: Recipe, out: Path, quick: bool, data: Mapping[str, str]) -> str:
    parts = ["warmrec", "recipe", "run", recipe.name]
    if quick:
        parts.append("--quick")
    for k, v in data.items():
        parts += ["--data", f"{k}={v}"]
    parts += ["--out", str(out)]
    return " ".join(shlex.quote(p) for p in parts)


def write_recipe_report(
    recipe: Recipe, steps: Sequence[Step], state: Mapping[str, Any], out: Path, *, quick: bool
) -> dict[str, Path]:
    """Write ``report.md`` and ``report.html`` into ``out``; returns their paths."""
    from warmrec.reports.report import Heading, Table, Text, write_report

    records = {k: v.get("record", {}) for k, v in state["steps"].items()}
    mode = (
        "quick mode (--quick: tiny epochs and samples; a smoke test of the pipeline, its "
        "figures are not the recipe's results)"
        if quick
        else "full run"
    )
    blocks: list[Any] = [
        Text(f"{recipe.description}\n\nThis report: {mode}."),
        Heading("The source project"),
        Text(recipe.source),
        Heading("Its figures beside ours"),
    ]
    claims = claims_frame(recipe, records)
    if claims.height:
        blocks.append(Table(claims))
    else:
        blocks.append(Text("The source project published no figure to set beside ours."))
    protocols = recipe.protocols()
    if protocols:
        blocks += [Heading("Protocols"), Text("\n\n".join(protocols))]
    res = results_frame(steps, records)
    if res.height:
        blocks += [
            Heading("Results of the runs"),
            Text(
                "Each run selected on its validation part; the test part scored once per "
                "protocol. 'fit s' is the wall time of fitting (training and validation)."
            ),
            Table(res),
        ]
    blocks += recipe.report_blocks(records, out)
    blocks += data_blocks(steps, records)
    blocks += [Heading("Steps"), Table(steps_frame(steps, state))]
    last = state.get("last_run") or {}
    data = state.get("data") or {}
    blocks += [
        Heading("Reproduce"),
        Text(
            f"{command_line(recipe, out, quick, data)}\n\n"
            f"This run: {fmt(last.get('seconds'), 1)} s "
            f"({len(last.get('ran', []))} steps ran, {len(last.get('skipped', []))} resumed). "
            "The steps as TOML: warmrec recipe show "
            f"{recipe.name}{' --quick' if quick else ''}."
        ),
    ]
    title = f"Recipe {recipe.name}: {recipe.title}"
    return {
        "report_md": write_report(out / "report.md", title, blocks),
        "report_html": write_report(out / "report.html", title, blocks),
    }
