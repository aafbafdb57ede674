"""Transfer on real domain pairs (issue #4), measured with the library's transfer study.

Two pairs, each run by :func:`warmrec.experiments.transfer_study.run_transfer_study` (the same
code as ``warmrec study transfer``; nothing here re-implements a run, a metric or a test):

- **A: nowplaying-1m -> ml-100k.** Source: the union of the three nowplaying-1m files (music
  listening sessions), capped for CPU time to items with at least ``--min-support`` events and
  then sessions with at least 2 events (one pass). Target: ml-100k, every rating one implicit
  interaction, leave-one-out per user. The catalogues are disjoint, so target item tables start
  ``random``, ``mean``, ``popularity`` (rank-matched) or ``item2vec``; ``text`` needs titles in
  both domains and nowplaying has none.
- **B: ml-100k early users -> later new users.** :func:`warmrec.data.split.new_user_domains`
  cuts ml-100k at the first-event time that makes ``--new-user-share`` of the users new: early
  users' events before the cut-off are the source, the new users' events the target (leave-one-
  out per user). Users and periods are disjoint; items are shared and copy their embedding by
  raw id (the init only matters for target items the source never saw).

Per pair: SASRec pre-trained once on the source (and, for ``reptile``, meta-trained once per
seed), then on 5/10/25/50/100 % of the target's training users x 3 seeds: Pop and SKNN, SASRec
from scratch and each transfer method, selected on validation, tested once by full-catalogue
ranking. Mean and 95 % CI over seeds and the paired bootstrap test against scratch come from the
study. Everything is cached under ``--out`` (git-ignored): an interrupted run resumes where it
stopped. The Markdown keeps whatever follows its ``<!-- notes -->`` line when it is rewritten.

    OMP_NUM_THREADS=1 python benchmarks/transfer_pairs.py
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from warmrec.data.filters import min_item_support, min_sequence_length
from warmrec.data.prepared import read
from warmrec.data.split import new_user_domains
from warmrec.experiments.transfer_study import TEST_METRIC, run_transfer_study
from warmrec.io import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
NOTES = "<!-- notes -->"

MODEL = {
    "d": 64,
    "n_layers": 1,
    "n_heads": 2,
    "ffn_dim": 128,
    "max_len": 20,
    "dropout": 0.3,
    "attn_dropout": 0.3,
}
TARGET_TRAIN = {"epochs": 40, "batch_size": 128, "lr": 5e-3, "patience": 3}
REPTILE = {
    "meta_iterations": 300,
    "meta_batch_size": 5,
    "inner_steps": 5,
    # plain SGD: with Adam (even at 1e-3) every row of the tied full-softmax item table moves
    # by ~lr per inner step, the Reptile updates add up and the table ends with std 0.4-3,
    # from which fine-tuning never recovers (measured; see the Markdown)
    "inner_optimizer": "sgd",
    "inner_lr": 0.5,
    "grad_clip": 1.0,  # without it the SGD steps blow up on nowplaying (NaN at iteration 7)
    "eval_every": 100,
    "device": "cpu",
}
FRACTIONS = (0.05, 0.1, 0.25, 0.5, 1.0)
SEEDS = (0, 1, 2)
BASELINES = ("pop", "sknn")

PAIRS: dict[str, dict[str, Any]] = {
    "A": {
        "title": "A: nowplaying-1m (music sessions) -> ml-100k (movies), disjoint items",
        # random 10 % / 10 % of the sessions held out: the log has no users, and its
        # "last_session" split keeps only the last day (85 validation examples)
        "source_split": "user",
        "source_train": {"epochs": 4, "batch_size": 256, "lr": 5e-3, "patience": 1},
        # one study folder, two grids: every init under finetune, the others with popularity
        "grids": [
            (("scratch", "finetune"), ("random", "mean", "popularity", "item2vec")),
            (("scratch", "freeze_encoder", "adapters", "reptile"), ("popularity",)),
        ],
    },
    "B": {
        "title": "B: ml-100k early users -> later new users, shared items",
        "source_split": "loo",
        "source_train": {"epochs": 40, "batch_size": 128, "lr": 5e-3, "patience": 3},
        "grids": [
            (
                (
                    "scratch",
                    "finetune",
                    "freeze_embeddings",
                    "freeze_encoder",
                    "adapters",
                    "reptile",
                ),
                ("popularity",),
            ),
        ],
    },
}


# -- the pairs -------------------------------------------------------------------------------------
def pair_a(data: Path, min_support: int) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    raw = read(data / "nowplaying-1m").interactions
    source = min_sequence_length(min_item_support(raw, min_support), 2)
    target = read(data / "ml-100k").interactions.drop("rating")
    info = {
        "source (raw)": _size(raw, "session_id"),
        f"source (items >= {min_support} events, sessions >= 2)": _size(source, "session_id"),
        "target": _size(target, "user_id"),
        "shared items": 0,
    }
    return source, target, info


def pair_b(data: Path, share: float) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    ml = read(data / "ml-100k").interactions.drop("rating")
    pair = new_user_domains(ml, new_user_share=share)
    cut = dt.datetime.fromtimestamp(pair.cutoff, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    i = pair.info
    info = {
        "cut-off": f"{cut} (first event of the newest {share:.0%} of users)",
        "source (early users, events before the cut-off)": _size(pair.source, "user_id"),
        "target (new users, all their events)": _size(pair.target, "user_id"),
        "early users' events after the cut-off (dropped)": f"{i['dropped_events']:,}",
        "target items the source never saw": f"{i['target_items_not_in_source']:,} of "
        f"{i['target_items']:,}",
    }
    return pair.source, pair.target, info


def _size(df: pl.DataFrame, key: str) -> str:
    unit = "sessions" if key == "session_id" else "users"
    return (
        f"{df.height:,} events, {df[key].n_unique():,} {unit}, {df['item_id'].n_unique():,} items"
    )


# -- running ---------------------------------------------------------------------------------------
def run_pair(name: str, args: argparse.Namespace) -> dict[str, Any]:
    cfg = PAIRS[name]
    if name == "A":
        source, target, data_info = pair_a(args.data, args.min_support)
    else:
        source, target, data_info = pair_b(args.data, args.new_user_share)
    out = args.out / name
    t0 = time.perf_counter()
    results = []
    for strategies, inits in cfg["grids"]:
        results.append(
            run_transfer_study(
                source,
                target,
                model="sasrec",
                strategies=strategies,
                inits=inits,
                fractions=args.fractions,
                seeds=args.seeds,
                model_config=MODEL,
                trainer=args.target_train,
                source_trainer=args.source_train.get(name, cfg["source_train"]),
                baselines=BASELINES,
                out_dir=out,
                split="loo",
                source_split=cfg["source_split"],
                reptile_config=args.reptile,
                progress=not args.quiet,
            )
        )
    wall = time.perf_counter() - t0
    computed = sum(len(r.computed) for r in results)
    ledger = out / "wall.json"
    history = json.loads(ledger.read_text()) if ledger.exists() else []
    history.append({"at": dt.datetime.now(dt.UTC).isoformat(), "wall_s": wall, "runs": computed})
    atomic_write_text(ledger, json.dumps(history, indent=2))
    keys = ["fraction", "method"]
    summary = pl.concat([r.summary for r in results], how="diagonal_relaxed").unique(
        keys, keep="first", maintain_order=True
    )
    runs = pl.concat([r.runs for r in results], how="diagonal_relaxed").unique(
        [*keys, "seed"], keep="first", maintain_order=True
    )
    pre = {"source": _pretrain_s(out / "source")}
    for s in args.seeds:
        pre[f"reptile s{s}"] = _pretrain_s(out / "reptile" / f"s{s}")
    return {
        "name": name,
        "title": cfg["title"],
        "data": data_info,
        "study_info": results[0].info,
        "source_train": args.source_train.get(name, cfg["source_train"]),
        "grids": cfg["grids"],
        "summary": summary.sort(["fraction", TEST_METRIC], descending=[False, True]),
        "runs": runs,
        "pretrain_s": pre,
        "wall_history": history,
        "seeds": args.seeds,
    }


def _pretrain_s(model_dir: Path) -> float | None:
    p = model_dir / "config.json"
    if not p.exists():
        return None
    return json.loads(p.read_text())["meta"].get("pretrain_seconds")


# -- the Markdown ----------------------------------------------------------------------------------
def holm(p: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (NaN stays NaN)."""
    out = np.full_like(p, np.nan, dtype=float)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok])]
    m = len(order)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def _ci(row: dict[str, Any], m: str) -> str:
    return f"{row[m]:.4f} [{row[f'{m}_lo']:.4f}, {row[f'{m}_hi']:.4f}]"


def _p(p: float | None) -> str:
    if p is None or np.isnan(p):
        return "-"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def pair_markdown(res: dict[str, Any]) -> list[str]:
    summ: pl.DataFrame = res["summary"]
    lines = [f"## Pair {res['title']}", ""]
    lines += [f"- {k}: {v}" for k, v in res["data"].items()]
    si = res["study_info"]
    lines += [
        f"- split: target {si['split']} (valid = second-last, test = last event of each user; "
        f"{si['test_examples']:,} test examples, {si['target_items']:,} items ranked), "
        f"source {si['source_split']}",
        f"- source pre-training: {json.dumps(res['source_train'])}",
        "- grid: " + "; ".join(f"{{{', '.join(s)}}} x {{{', '.join(i)}}}" for s, i in res["grids"]),
    ]
    pre = res["pretrain_s"]
    lines.append(
        "- pre-training time: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in pre.items() if v is not None)
    )
    fit = res["runs"]["fit_s"].sum()
    walls = res["wall_history"]
    lines.append(
        f"- target runs: {res['runs'].height} (fit time, training + validation, summed: "
        f"{fit / 60:.1f} min); wall time of the study calls: "
        + " + ".join(f"{w['wall_s'] / 60:.1f} min ({w['runs']} runs)" for w in walls if w["runs"])
    )
    lines += [
        "",
        f"Mean over {len(res['seeds'])} seeds [95 % t-interval over seeds]; ratio = mean "
        "NDCG@10 / scratch's; p: paired bootstrap test against scratch on per-user NDCG@10 "
        "pooled over seeds (unadjusted); fit_s: mean training time of one run.",
        "",
        "| fraction | method | NDCG@10 [95 % CI] | HR@10 [95 % CI] | ratio | p | fit_s |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in summ.iter_rows(named=True):
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}"
        lines.append(
            f"| {row['fraction']:g} | {row['method']} | {_ci(row, 'ndcg@10')} | "
            f"{_ci(row, 'hr@10')} | {ratio} | {_p(row['p_value'])} | {row['fit_s']:.1f} |"
        )
    lines += [
        "",
        "### Who wins, per fraction of target training users",
        "",
        "Best transfer method by mean test NDCG@10 (a descriptive pick among the transfer "
        "methods, so its p-value is also given Holm-adjusted over all transfer methods at that "
        "fraction); diff = mean per-user NDCG@10 difference to scratch [95 % bootstrap CI].",
        "",
        "| fraction | scratch | best transfer | NDCG@10 | ratio | diff [95 % CI] | p | p (Holm) "
        "| transfer methods better / worse than scratch (p < 0.05) | best of Pop, SKNN | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in sorted(set(summ["fraction"].to_list())):
        at = summ.filter(pl.col("fraction") == f)
        scratch = at.filter(pl.col("method") == "scratch").row(0, named=True)
        tr = at.filter(pl.col("kind") == "transfer").sort(TEST_METRIC, descending=True)
        p_all = tr["p_value"].to_numpy().astype(float)
        p_holm = holm(p_all)
        best = tr.row(0, named=True)
        up = int(((p_all < 0.05) & (tr["diff"].to_numpy() > 0)).sum())
        down = int(((p_all < 0.05) & (tr["diff"].to_numpy() < 0)).sum())
        base = at.filter(pl.col("kind") == "baseline").sort(TEST_METRIC, descending=True)
        b = base.row(0, named=True) if base.height else None
        if best["p_value"] is not None and best["p_value"] < 0.05 and best["diff"] > 0:
            verdict = "transfer helps" + ("" if p_holm[0] < 0.05 else " (not after Holm)")
        elif best["diff"] is not None and best["diff"] < 0 and best["p_value"] < 0.05:
            verdict = "transfer hurts (even the best method)"
        else:
            verdict = "no significant difference"
        if b is not None and b[TEST_METRIC] > max(best[TEST_METRIC], scratch[TEST_METRIC]):
            verdict += f"; {b['method']} beats every SASRec"
        lines.append(
            f"| {f:g} | {scratch[TEST_METRIC]:.4f} | {best['method']} | {best[TEST_METRIC]:.4f} "
            f"| {best['ratio']:.2f} | {best['diff']:+.4f} [{best['diff_lo']:+.4f}, "
            f"{best['diff_hi']:+.4f}] | {_p(best['p_value'])} | {_p(p_holm[0])} | "
            f"{up} / {down} of {tr.height} | "
            + (f"{b['method']} {b[TEST_METRIC]:.4f}" if b else "-")
            + f" | {verdict} |"
        )
    return lines


def write_markdown(path: Path, results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    notes = ""
    if path.exists() and NOTES in path.read_text():
        notes = path.read_text().split(NOTES, 1)[1].strip("\n")
    cmd = "OMP_NUM_THREADS=1 python " + " ".join(
        [str(Path(sys.argv[0]).resolve().relative_to(ROOT)), *sys.argv[1:]]
    )
    lines = [
        "# Transfer on real domain pairs (issue #4)",
        "",
        f"Command: `{cmd}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other jobs, Python "
        f"{platform.python_version()}, torch {torch.__version__} (CPU), one torch thread, runs one "
        f"after another; {dt.date.today().isoformat()}.  ",
        "Code: `warmrec.experiments.transfer_study.run_transfer_study` (the study behind "
        "`warmrec study transfer`); pair B's domains from `warmrec.data.split.new_user_domains`.",
        "",
        "## Settings (both pairs)",
        "",
        f"- model: SASRec {json.dumps(MODEL)}, other fields at their defaults (full-softmax "
        "cross-entropy, tied item table, the learned seen-item score offset `seen_bias`); one "
        "`max_len` for source and target (nowplaying sessions: median 7 events, 90th "
        "percentile 16)",
        f"- target training: {json.dumps(args.target_train)} over SASRec's default trainer "
        "(its cosine decay over the epoch cap and 200 warm-up steps: every target run, scratch "
        "and transfer alike, resolves the trainer as `fit` does; early stopping on validation "
        "NDCG@10, best epoch restored)",
        f"- Reptile (`reptile`: meta-trained from a random init once per seed, tasks = source "
        f"sequences: sessions in A, users in B; then fine-tuned like `finetune`): "
        f"{json.dumps(args.reptile)}",
        f"- fractions of the target's training users: {', '.join(f'{f:g}' for f in args.fractions)}"
        f" (nested per seed); seeds {', '.join(map(str, args.seeds))}; valid and test always "
        "every target user (their full earlier history is the model's input)",
        "- evaluation: full-catalogue ranking of the target's items, ties counted against the "
        "model, seen items not excluded; NDCG@10 and HR@10 on the test event",
        "- baselines from the study: `pop` (training popularity) and `sknn` (session kNN over "
        "the users' training sequences), fitted on the same subsample",
        "- budget: chosen so that both pairs run in about an hour on this machine; the model is "
        "smaller than in `neural_ml100k.md` (1 block, `max_len` 20, batch 128) and nowplaying "
        "is capped, so absolute figures are below a tuned SASRec's",
        "",
    ]
    for res in results:
        lines += pair_markdown(res) + [""]
    lines += [NOTES, "", notes or "## Reading these figures", ""]
    atomic_write_text(path, "\n".join(lines).rstrip("\n") + "\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", default="A,B")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "_work" / "transfer_pairs")
    ap.add_argument(
        "--md", type=Path, default=ROOT / "benchmarks" / "results" / "transfer_pairs.md"
    )
    ap.add_argument("--min-support", type=int, default=20, help="Pair A source item cap.")
    ap.add_argument("--new-user-share", type=float, default=0.3, help="Pair B target users.")
    ap.add_argument("--fractions", default=",".join(f"{f:g}" for f in FRACTIONS))
    ap.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    ap.add_argument("--smoke", action="store_true", help="Tiny budgets, to check the script.")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    args.fractions = tuple(float(f) for f in args.fractions.split(","))
    args.seeds = tuple(int(s) for s in args.seeds.split(","))
    args.target_train, args.reptile, args.source_train = dict(TARGET_TRAIN), dict(REPTILE), {}
    if args.smoke:
        args.target_train.update(epochs=1)
        args.reptile.update(meta_iterations=3, eval_every=0)
        args.source_train = {k: {**v["source_train"], "epochs": 1} for k, v in PAIRS.items()}
    results = [run_pair(name.strip(), args) for name in args.pairs.split(",")]
    write_markdown(args.md, results, args)
    print(f"written {args.md}")


if __name__ == "__main__":
    main()
