"""Data-layer scale benchmark: a YOOCHOOSE-sized click log through warmrec vs plain pandas.

Steps timed (each pipeline in its own process, peak RSS from the OS):
read Parquet -> sessionise (30-minute gaps inside each click session) -> filter (sessions >= 2,
items >= 5 events, sessions >= 2) -> split (sessions starting in the last day = test, the day
before = valid; held-out items unseen in training removed, held-out sessions < 2 dropped) ->
build sequences (vocabulary, compact offsets + items of the training sessions in time order,
test next-item examples).

    python benchmarks/data_scale.py                  # full size: 33M events, 9.25M sessions
    python benchmarks/data_scale.py --scale 0.05     # a quick run
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DAY = 86400.0
GAP = 1800.0


def run_warmrec(path: str) -> dict:
    import polars as pl

    from warmrec.data.dataset import EvalSet, SequenceDataset
    from warmrec.data.filters import min_item_support, min_sequence_length
    from warmrec.data.readers import load_interactions
    from warmrec.data.sessionize import sessionize
    from warmrec.data.split import last_session_split
    from warmrec.data.vocab import ItemVocab

    t = {}
    t0 = time.perf_counter()
    df = load_interactions(path).interactions
    t["read"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    df = sessionize(df.rename({"session_id": "click_session"}), GAP, key="click_session")
    df = df.drop("click_session")
    t["sessionise"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    df = min_sequence_length(df, 2)
    df = min_item_support(df, 5)
    df = min_sequence_length(df, 2)
    t["filter"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    sp = last_session_split(df, test_days=1, valid_days=1, by_user=False)
    t["split"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    vocab = ItemVocab.from_ids(sp.train["item_id"])
    train = SequenceDataset.from_frame(sp.train, vocab)
    test = EvalSet.from_sessions(sp.test, vocab)
    t["sequences"] = time.perf_counter() - t1
    t["total"] = time.perf_counter() - t0
    return {
        "times": t,
        "train_sessions": len(train.sequences),
        "train_events": train.sequences.n_events,
        "items": vocab.n_ids,
        "test_examples": len(test),
        "checksum": int(train.sequences.items[::9973].sum()),
        "polars": pl.__version__,
    }


def run_pandas(path: str) -> dict:
    """The same steps written the straightforward way in pandas."""
    import pandas as pd

    t = {}
    t0 = time.perf_counter()
    df = pd.read_parquet(path, columns=["session_id", "item_id", "timestamp"])
    t["read"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    df = df.sort_values(["session_id", "timestamp"], kind="mergesort")
    gap = df.groupby("session_id")["timestamp"].diff()
    new = gap.isna() | (gap > GAP)
    df["session_id"] = new.cumsum() - 1
    t["sessionise"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    df = df[df.groupby("session_id")["item_id"].transform("size") >= 2]
    df = df[df.groupby("item_id")["item_id"].transform("size") >= 5]
    df = df[df.groupby("session_id")["item_id"].transform("size") >= 2]
    t["filter"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    start = df.groupby("session_id")["timestamp"].transform("min")
    tmax = df["timestamp"].max()
    test_cut, valid_cut = tmax - DAY, tmax - 2 * DAY
    end = df.groupby("session_id")["timestamp"].transform("max")
    train = df[end < valid_cut]
    test = df[start >= test_cut]
    known = set(train["item_id"].unique())
    test = test[test["item_id"].isin(known)]
    test = test[test.groupby("session_id")["item_id"].transform("size") >= 2]
    t["split"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    codes, uniques = pd.factorize(train["item_id"], sort=True)
    train = train.assign(
        idx=codes + 1, first=train.groupby("session_id")["timestamp"].transform("min")
    )
    train = train.sort_values(["first", "session_id", "timestamp"], kind="mergesort")
    lens = train.groupby("session_id", sort=False).size().to_numpy()
    offsets = np.concatenate([[0], np.cumsum(lens)])
    items = train["idx"].to_numpy()
    mapping = pd.Series(np.arange(1, len(uniques) + 1), index=uniques)
    test_idx = test["item_id"].map(mapping).to_numpy()
    n_test = int(len(test_idx) - test["session_id"].nunique())
    t["sequences"] = time.perf_counter() - t1
    t["total"] = time.perf_counter() - t0
    return {
        "times": t,
        "train_sessions": len(lens),
        "train_events": int(offsets[-1]),
        "items": len(uniques),
        "test_examples": n_test,
        "checksum": int(items[::9973].sum()),
        "pandas": pd.__version__,
    }


def child(which: str, path: str) -> None:
    fn = run_warmrec if which == "warmrec" else run_pandas
    out = fn(path)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(out))


def in_child(which: str, path: str) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", which, "--data", path],
        capture_output=True,
        text=True,
        check=True,
    )
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])


def generate(path: Path, scale: float) -> dict:
    from warmrec.data.synthetic import generate_sessions
    from warmrec.io import write_parquet

    t0 = time.perf_counter()
    df = generate_sessions(large=True, scale=scale, seed=0).drop("user_id")
    gen_s = time.perf_counter() - t0
    write_parquet(df, path)
    return {
        "events": df.height,
        "sessions": df["session_id"].n_unique(),
        "items": df["item_id"].n_unique(),
        "generate_s": gen_s,
        "write_s": time.perf_counter() - t0 - gen_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--work", default="benchmarks/_work")
    ap.add_argument("--out", default="benchmarks/results/data_scale.md")
    ap.add_argument("--child", default=None)
    ap.add_argument("--data", default=None)
    ap.add_argument("--skip-pandas", action="store_true")
    a = ap.parse_args()
    if a.child:
        child(a.child, a.data)
        return
    path = Path(a.work) / f"yoochoose_like_{a.scale:g}.parquet"
    gen = generate(path, a.scale)
    print("generated", gen, flush=True)
    w = in_child("warmrec", str(path))
    print("warmrec", w, flush=True)
    p = None if a.skip_pandas else in_child("pandas", str(path))
    if p:
        print("pandas", p, flush=True)
    write_report(a, gen, w, p)


def write_report(a, gen: dict, w: dict, p: dict | None) -> None:
    from warmrec.io import atomic_write_text

    steps = ["read", "sessionise", "filter", "split", "sequences", "total"]
    lines = [
        "# Data-layer scale benchmark",
        "",
        f"Command: `python benchmarks/data_scale.py --scale {a.scale:g}`  ",
        f"Machine: {platform.machine()}, {platform.processor() or 'cpu'}, 2 cores, "
        f"Python {platform.python_version()}, polars {w.get('polars')}"
        + (f", pandas {p.get('pandas')}" if p else ""),
        "",
        f"Synthetic YOOCHOOSE-sized click log: {gen['events']:,} events, "
        f"{gen['sessions']:,} sessions, {gen['items']:,} items "
        f"(generated in {gen['generate_s']:.1f} s, Parquet written in {gen['write_s']:.1f} s).",
        "",
        "| step | warmrec s | pandas s | pandas / warmrec |",
        "|---|---|---|---|",
    ]
    for s in steps:
        ws = w["times"][s]
        ps = p["times"][s] if p else float("nan")
        lines.append(f"| {s} | {ws:.2f} | {ps:.2f} | {ps / ws:.1f}x |")
    lines += [
        f"| peak RSS MB | {w['peak_rss_mb']:,.0f} | "
        + (f"{p['peak_rss_mb']:,.0f}" if p else "-")
        + " | |",
        "",
        "| output | warmrec | pandas |",
        "|---|---|---|",
    ]
    for k in ("train_sessions", "train_events", "items", "test_examples", "checksum"):
        lines.append(f"| {k} | {w[k]:,} | {p[k]:,} |" if p else f"| {k} | {w[k]:,} | - |")
    lines += [
        "",
        "Targets: warmrec total under 30 s, peak RSS under 6 GB, at least 5x faster than pandas.",
        "",
    ]
    atomic_write_text(a.out, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
