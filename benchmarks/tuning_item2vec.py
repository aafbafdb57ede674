"""Item2Vec tuned (warmrec tune, Optuna TPE + median pruning) against gensim's Word2Vec defaults
and against warmrec's current Item2Vec defaults.

Protocol: ml-100k, leave-one-out per user in RecBole's time order, full-catalogue ranking, seen
items not excluded by the evaluation (the neural benchmark's protocol). Every trial is scored on
validation Recall@10; the best setting is refitted and tested once. The two fixed settings are
fitted once and tested once.

    python benchmarks/tuning_item2vec.py --trials 20 --out /tmp/tune-i2v

Writes benchmarks/results/tuning_item2vec_ml100k.md and the per-epoch plot
benchmarks/results/tuning_item2vec_ml100k_curves.png.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
METRICS = ("recall@10", "mrr@10", "ndcg@10")
GENSIM_DEFAULTS = {  # gensim.models.Word2Vec's own defaults (4.x)
    "vector_size": 100,
    "window": 5,
    "min_count": 5,
    "sg": False,
    "negative": 5,
    "ns_exponent": 0.75,
    "epochs": 5,
    "alpha": 0.025,
    "min_alpha": 0.0001,
    "sample": 1e-3,
    "keep_best": False,
}


def fixed(prep, name: str, cfg: dict) -> dict:
    from warmrec.experiments.pipeline import evaluate_model
    from warmrec.registry import get_model

    t0 = time.perf_counter()
    model = get_model("item2vec", cfg).fit(prep.train, prep.valid)
    fit_s = time.perf_counter() - t0
    valid = evaluate_model(model, prep.valid, prep, metrics=METRICS).summary
    test = evaluate_model(model, prep.test, prep, metrics=METRICS).summary
    return {"name": name, "cfg": cfg, "valid": valid, "test": test, "seconds": fit_s}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(SHARED / "data" / "ml-100k"))
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--out", default="/tmp/tune-i2v")
    ap.add_argument("--space", default=str(ROOT / "configs" / "spaces" / "item2vec.toml"))
    args = ap.parse_args()

    from warmrec.experiments.run import prepare_from_config
    from warmrec.tuning.run import run_tune

    cfg = {"data": {"path": args.data}, "split": {"method": "loo", "time_order": "recbole"}}
    prep = prepare_from_config(dict(cfg))
    rows = [
        fixed(prep, "gensim defaults", GENSIM_DEFAULTS),
        fixed(prep, "warmrec defaults", {}),
    ]
    t0 = time.perf_counter()
    res = run_tune(
        cfg, model="item2vec", space_path=args.space, trials=args.trials, out=args.out,
        progress=True,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    best = res["best"]
    rows.append(
        {
            "name": f"tuned ({args.trials} trials)",
            "cfg": best["params"],
            "valid": best["valid"],
            "test": best["test"],
            "seconds": wall,
        }
    )
    results = ROOT / "benchmarks" / "results"
    shutil.copy(Path(args.out) / "curves.png", results / "tuning_item2vec_ml100k_curves.png")
    lines = [
        "# Item2Vec tuned vs defaults on ml-100k",
        "",
        f"Command: `python benchmarks/tuning_item2vec.py --trials {args.trials} --out {args.out}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with 3 other helpers' "
        f"work (timings are noisy), Python {platform.python_version()}.",
        "",
        "Leave-one-out (RecBole time order), full ranking, seen items not excluded by the "
        "evaluation. Trials scored on validation Recall@10 (space: `configs/spaces/item2vec.toml`, "
        "Optuna TPE, median pruning on the per-epoch validation Recall@10); the best setting "
        "refitted and tested once.",
        "",
        "| setting | valid Recall@10 | test Recall@10 | test MRR@10 | test NDCG@10 | time (s) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        v, t = r["valid"], r["test"]
        lines.append(
            f"| {r['name']} | {v['recall@10']:.4f} | {t['recall@10']:.4f} | {t['mrr@10']:.4f} | "
            f"{t['ndcg@10']:.4f} | {r['seconds']:.0f} |"
        )
    g = rows[0]["test"]["recall@10"]
    lines += [
        "",
        f"Tuned vs gensim defaults, test Recall@10: {rows[2]['test']['recall@10'] / g - 1:+.0%}; "
        f"vs warmrec defaults: {rows[2]['test']['recall@10'] / rows[1]['test']['recall@10'] - 1:+.0%}.",
        "",
        f"Trials: {res['trials']} ({res['n_complete']} complete, {res['n_pruned']} pruned), "
        f"search wall time {res['wall_s']:.0f} s (time column of the tuned row: search + refit).",
        "",
        f"Best setting (trial {best['trial']}): `{best['params']}`",
        "",
        "Parameter importance: "
        + ", ".join(
            f"{k} {v:.2f}" for k, v in sorted(res["importance"].items(), key=lambda x: -x[1])
        ),
        "",
        "Validation Recall@10 per epoch of every trial (dotted: pruned): "
        "`tuning_item2vec_ml100k_curves.png`.",
        "",
        "## Trials",
        "",
        (Path(args.out) / "trials.md").read_text(),
    ]
    (results / "tuning_item2vec_ml100k.md").write_text("\n".join(lines))
    print("\n".join(lines[:20]))


if __name__ == "__main__":
    main()
