"""MARS exploratory analysis with warmrec's own data commands: stats, inactivity gaps, sessions.

Runs ``warmrec data stats``, ``warmrec data gaps`` and ``warmrec data sessionize`` on the MARS
folder (no ``--col``, no ``--format``: the folder is recognised) and compares sessions cut at
several inactivity gaps with whole learner histories; adds the catalogue and the 2019-07-01
time cut. Writes the ``eda`` section of ``benchmarks/results/mars.md``::

    python benchmarks/mars_eda.py [--data ../shared/data/mars]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import write_section  # noqa: E402

from warmrec.data.readers import load_interactions  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "mars"
OUT = ROOT / "benchmarks" / "results" / "mars.md"
TITLE = "# MARS (MOOC) results\n"
BEGIN, END = "<!-- begin: eda -->", "<!-- end: eda -->"
GAPS = (1800.0, 3600.0, 86400.0)
CUT = "2019-07-01"


def warmrec(*args: str) -> dict:
    """Run a ``warmrec`` command with ``--json`` and return its output."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "warmrec", *args, "--json"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if res.returncode:
        raise SystemExit(f"{' '.join(args)} failed: {res.stderr.strip() or res.stdout.strip()}")
    return json.loads(res.stdout)


def seq_summary(df: pl.DataFrame, key: str, label: str) -> dict:
    """Sequences of ``key`` in time order: sizes, singletons, next-item pairs, repeats."""
    df = df.sort([key, "timestamp"], maintain_order=True)
    lens = df.group_by(key).len()["len"]
    prev = pl.col("item_id").shift(1).over(key)
    rep = df.select((pl.col("item_id") == prev).sum()).item()
    pairs = df.height - lens.len()
    return {
        "sequences": label,
        "n": lens.len(),
        "mean length": round(float(lens.mean()), 2),
        "median": float(lens.median()),
        "p90": float(lens.quantile(0.9, "nearest")),
        "single-event share": round(float((lens == 1).mean()), 3),
        "next-item pairs": pairs,
        "pairs repeating the previous item": round(rep / pairs, 3) if pairs else 0.0,
    }


def md_table(rows: list[dict]) -> str:
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append(
            "| "
            + " | ".join(f"{r[c]:,}" if isinstance(r[c], int) else str(r[c]) for c in cols)
            + " |"
        )
    return "\n".join(lines)


def human(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DATA), help="the MARS folder")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    data = Path(args.data)
    if not data.is_dir():
        raise SystemExit(f"no MARS folder at {data} (pass --data)")
    t0 = time.perf_counter()
    stats = warmrec("data", "stats", str(data))
    gaps = warmrec("data", "gaps", str(data))
    inter = load_interactions(data)
    log = inter.interactions
    rows = [seq_summary(log, "user_id", "whole learner histories")]
    with tempfile.TemporaryDirectory() as tmp:
        for g in GAPS:
            out = Path(tmp) / f"s{int(g)}.parquet"
            res = warmrec("data", "sessionize", str(data), "--gap", str(g), "--out", str(out))
            sess = pl.read_parquet(out)
            assert sess["session_id"].n_unique() == res["sessions"]
            row = seq_summary(sess, "session_id", f"sessions, gap {human(g)}")
            per_user = sess.group_by("user_id").agg(pl.col("session_id").n_unique().alias("n"))
            row["learners with >= 2 sessions"] = int((per_user["n"] >= 2).sum())
            rows.append(row)
        out = Path(tmp) / "collapsed.parquet"
        res = warmrec(
            "data",
            "sessionize",
            str(data),
            "--gap",
            "1800",
            "--collapse-repeats",
            "--out",
            str(out),
        )
        collapsed = seq_summary(
            pl.read_parquet(out), "session_id", "sessions, 30 min, repeats collapsed"
        )
        collapsed["learners with >= 2 sessions"] = "-"
        rows.append(collapsed)
    rows[0]["learners with >= 2 sessions"] = "-"

    # the catalogue
    items = inter.item_features
    viewed = set(log["item_id"].unique().to_list())
    text_len = items.select(
        pl.col("title").str.len_chars() + pl.col("description").fill_null("").str.len_chars()
    ).to_series()
    tag_cover = {
        c: round(float((items[c].list.len() > 0).mean()), 3) for c in ("software", "job", "theme")
    }
    # the time cut
    cut = datetime.fromisoformat(CUT).replace(tzinfo=UTC).timestamp()
    before, after = log.filter(pl.col("timestamp") < cut), log.filter(pl.col("timestamp") >= cut)
    old_users = set(before["user_id"].unique().to_list())
    old_items = set(before["item_id"].unique().to_list())
    new_users = after.filter(~pl.col("user_id").is_in(list(old_users)))["user_id"].n_unique()
    new_item_events = after.filter(~pl.col("item_id").is_in(list(old_items)))
    took = time.perf_counter() - t0

    q = gaps["quantiles"]
    edges, counts = gaps["bin_edges"], gaps["counts"]
    decades = {}
    for lo, c in zip(edges[:-1], counts):
        d = 10 ** math.floor(round(math.log10(lo), 6))
        decades[d] = decades.get(d, 0) + c
    gap_rows = [
        {
            "gap (s)": f"{d:g} - {d * 10:g} ({human(d)} - {human(d * 10)})",
            "gaps": n,
            "share": round(n / gaps["n_gaps"], 3),
        }
        for d, n in sorted(decades.items())
    ]
    g = (
        log.sort(["user_id", "timestamp"], maintain_order=True)
        .select(pl.col("timestamp").diff().over("user_id").alias("g"))
        .drop_nulls()["g"]
    )
    short, day = float((g < 900).mean()), float((g > 86400).mean())
    dups = log.height - log.unique().height
    whole, s30 = rows[0], rows[1]
    cmd = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    block = (
        f"""{BEGIN}
## Data: stats, gaps, sessions (EDA)

Command: `{cmd}` ({took:.0f} s; it runs `warmrec data stats {data}`, `warmrec data gaps {data}`
and `warmrec data sessionize {data} --gap G` with no `--col` or `--format`: the folder is read
as the `mars` dataset).

### `warmrec data stats`

| stat | value |
|---|---|
"""
        + "\n".join(
            f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
            for k, v in stats.items()
            if k not in ("time_min", "time_max", "sessions", "sequence_key")
        )
        + f"""

{dups} of the events are exact duplicate rows (kept: the `n_zero` gaps below). Catalogue
(`items_en.csv`): {items.height:,} videos, {len(viewed):,} of them viewed in the log,
{items.height - len(viewed):,} never viewed; title + description {int(text_len.median()):,}
characters (median), {int(text_len.quantile(0.9, "nearest")):,} (p90); descriptions missing for
{items["description"].null_count()} videos; tag lists non-empty: software {tag_cover["software"]:.0%},
job {tag_cover["job"]:.0%}, theme {tag_cover["theme"]:.0%}. Learner table: {inter.user_features.height:,}
learners, job known for {inter.user_features["job"].drop_nulls().len():,}. Explicit ratings
(`Interactions.ratings`): {inter.ratings.height:,} ratings by {inter.ratings["user_id"].n_unique():,}
learners, {int((inter.ratings["rating"] == 10).sum()):,} of them 10.

### `warmrec data gaps` (per learner)

{gaps["n_gaps"]:,} gaps between consecutive events of the {gaps["n_keys"]:,} learners, {gaps["n_zero"]}
of them 0 s. Quantiles: 50 % {human(q["50%"])}, 75 % {human(q["75%"])}, 90 % {human(q["90%"])},
95 % {human(q["95%"])}, 99 % {human(q["99%"])}. Suggested threshold {human(gaps["suggested_threshold"])}
({gaps["rule"]}).

{md_table(gap_rows)}

Two populations: {short:.0%} of the gaps are under 15 minutes (one video after another within a
visit) and {day:.0%} are longer than a day (a learner coming back days to years later). The
histogram's valley is at 9 s (it separates gaps of a few seconds from those of minutes,
both within a visit), outside the trusted range, so the command falls back to 30 minutes; 1 h and 1 day cut
fewer sessions (table below) but the picture is the same.

### Sessions vs whole histories (`warmrec data sessionize`)

{md_table(rows)}

A whole history mixes visits years apart; sessions keep one visit each. Cutting at 30 minutes
gives {s30["n"] / whole["n"]:.2f}x the sequences, {s30["single-event share"]:.0%} of them single
events (no next-item pair, against {whole["single-event share"]:.0%} of the histories), and loses
one next-item pair per extra sequence: {whole["next-item pairs"] - s30["next-item pairs"]:,} of the
{whole["next-item pairs"]:,} transitions cross a visit boundary. Models below are trained on whole
histories (leave-one-out per learner), which keep those cross-visit transitions.

### The 2019-07-01 time cut

{before.height:,} events before it, {after.height:,} after; {after["user_id"].n_unique():,} learners
active after it, {new_users:,} of them new (no event before); {new_item_events["item_id"].n_unique():,}
videos first viewed after it carry {new_item_events.height:,} events ({new_item_events.height / after.height:.0%}
of the events after the cut): only their text or metadata can rank them.
{END}"""
    )
    write_section(Path(args.out), BEGIN, END, block, TITLE)
    print(f"written {args.out} ({took:.0f} s)")


if __name__ == "__main__":
    main()
