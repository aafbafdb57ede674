"""SASRec on ml-100k: a 30-trial ``warmrec tune`` search (Optuna TPE + median pruning on the
per-epoch validation NDCG@10) against SASRec's default configuration trained the same way.

Protocol: leave-one-out per user in RecBole's time order, full-catalogue ranking, seen items not
excluded by the evaluation (benchmarks/neural_ml100k.py's protocol). Trials see train and
validation only; the best setting is refitted and tested once (by ``warmrec tune``). The default
(``SASRec()`` with ``SASRec.default_trainer``) gets the space's trainer caps (epochs, patience,
threads) and is fitted once and tested once with the same ``evaluate()`` call.

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/tuning_sasrec.py --trials 30 --out /tmp/tune-sasrec

``--part default`` and ``--part search`` run the two halves (at the same time, in two processes);
``--part report`` writes the results from their files in ``--out``.

Writes benchmarks/results/tuning_sasrec_ml100k.md (+ the optimisation history plot).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _bench import LoadSampler, load_range

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
METRICS = ("ndcg@10", "recall@10", "mrr@10")


def default_run(data: str, space_path: str) -> dict:
    """SASRec's defaults under the space's fixed trainer settings, fitted once, tested once."""
    import tomllib

    from warmrec.evaluation.evaluate import evaluate
    from warmrec.experiments.spec import prepare_run, spec_from_config
    from warmrec.registry import get_model

    space = tomllib.loads(Path(space_path).read_text())
    fixed = {k: v for k, v in space["train"].items() if not isinstance(v, dict)}
    fixed["valid_metric"] = space["search"]["metric"]
    prep = prepare_run(
        spec_from_config(
            {"data": {"path": data}, "split": {"method": "loo", "time_order": "recbole"}}
        )
    )
    t0 = time.perf_counter()
    model = get_model("sasrec", {})
    model.fit(prep.train, prep.valid, trainer=fixed)
    counts = prep.train.item_counts()
    valid = evaluate(model, prep.valid, list(METRICS), item_counts=counts).summary
    test = evaluate(model, prep.test, list(METRICS), item_counts=counts).summary
    return {
        "trainer": fixed,
        "valid": {k: float(v) for k, v in valid.items()},
        "test": {k: float(v) for k, v in test.items()},
        "epochs": model.train_result.epochs_run,
        "best_epoch": model.train_result.best_epoch,
        "seconds": time.perf_counter() - t0,
    }


def tune_command(args) -> list[str]:
    cmd = [
        "python", "-m", "warmrec", "tune", "--model", "sasrec", "--data", args.data,
        "--split", "loo", "--set", "split.time_order=recbole", "--space", args.space,
        "--trials", str(args.trials), "--out", args.out, "--json",
    ]  # fmt: skip
    if args.timeout:
        cmd += ["--timeout", f"{args.timeout:g}"]
    if args.n_jobs > 1:
        cmd += ["--n-jobs", str(args.n_jobs)]
    return cmd


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(SHARED / "data" / "ml-100k"))
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--timeout", type=float, default=0, help="the search's --timeout (seconds)")
    ap.add_argument("--n-jobs", type=int, default=1, help="the search's --n-jobs")
    ap.add_argument("--out", default="/tmp/tune-sasrec")
    ap.add_argument("--space", default=str(ROOT / "configs" / "spaces" / "sasrec.toml"))
    ap.add_argument(
        "--part",
        choices=("all", "default", "search", "report"),
        default="all",
        help="default / search / report: one step (the first two may run at once)",
    )
    ap.add_argument("--load-log", default="", help="report: /proc/loadavg lines of the run")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tune_cmd = tune_command(args)
    load = LoadSampler()
    if args.part in ("all", "default"):
        default = default_run(args.data, args.space)
        (out / "default.json").write_text(json.dumps(default, indent=2))
        print("default:", json.dumps(default), flush=True)
    if args.part in ("all", "search"):
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, *tune_cmd[1:]], env=env, stdout=subprocess.DEVNULL, check=True
        )
        (out / "search_wall.json").write_text(json.dumps({"wall_s": time.perf_counter() - t0}))
    if args.part not in ("all", "report"):
        return
    loads = load_range(args.load_log) if args.load_log else load.stop()
    default = json.loads((out / "default.json").read_text())
    res = json.loads((out / "summary.json").read_text())
    tune_wall = json.loads((out / "search_wall.json").read_text())["wall_s"]
    best = res["best"]
    results = ROOT / "benchmarks" / "results"
    for name in ("history.png", "importance.png"):
        if (out / name).exists():
            shutil.copy(out / name, results / f"tuning_sasrec_ml100k_{name}")
    rows = [
        (
            "SASRec defaults",
            default["valid"],
            default["test"],
            f"{default['seconds']:.0f} (fit + eval, {default['epochs']} epochs, best "
            f"{default['best_epoch']})",
        ),
        (
            f"tuned ({res['trials']} trials)",
            best["valid"],
            best["test"],
            f"{tune_wall:.0f} (search + refit + test)",
        ),
    ]
    rel = {m: best["test"][m] / default["test"][m] - 1 for m in ("ndcg@10", "recall@10")}
    timeout = f" --timeout {args.timeout:g}" if args.timeout else ""
    timeout += f" --n-jobs {args.n_jobs}" if args.n_jobs > 1 else ""
    lines = [
        "# SASRec on ml-100k: a tuned search vs the defaults",
        "",
        "Commands (the default fit and the search ran at the same time, as two processes):  ",
        f"`OMP_NUM_THREADS=1 nice -n 5 python benchmarks/tuning_sasrec.py --part default --out "
        f"{args.out}`  ",
        f"`OMP_NUM_THREADS=1 nice -n 5 python benchmarks/tuning_sasrec.py --part search --trials "
        f"{args.trials}{timeout} --out {args.out}`, which runs `{' '.join(tune_cmd)}`  ",
        f"`python benchmarks/tuning_sasrec.py --part report --trials {args.trials}{timeout} --out "
        f"{args.out} --load-log LOG` (this file)  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with four other helpers' "
        f"benchmarks and tests and the lead; 1-minute load average during the run {loads}; "
        f"Python {platform.python_version()}; one torch thread per trial, "
        f"{args.n_jobs} trial(s) at a time.",
        "",
        "Leave-one-out (RecBole time order), full ranking over all items, seen items not excluded "
        "by the evaluation. Trials scored on validation NDCG@10 (Optuna TPE, median pruning on the "
        "per-epoch validation NDCG@10); the best setting refitted and tested once. The default row "
        f"is `SASRec()` with its default trainer under the same caps `{default['trainer']}`, "
        "fitted once and tested once. HR@10 = Recall@10 here (one held-out item per user).",
        "",
        "| setting | valid NDCG@10 | test NDCG@10 | test HR@10 | test MRR@10 | time (s) |",
        "|---|---|---|---|---|---|",
    ]
    for name, v, t, secs in rows:
        lines.append(
            f"| {name} | {v['ndcg@10']:.4f} | {t['ndcg@10']:.4f} | {t['recall@10']:.4f} | "
            f"{t['mrr@10']:.4f} | {secs} |"
        )
    lines += [
        "",
        f"Tuned vs defaults on test: NDCG@10 {rel['ndcg@10']:+.1%}, HR@10 {rel['recall@10']:+.1%}.",
        "",
        f"Trials: {res['trials']} ({res['n_complete']} complete, {res['n_pruned']} pruned, "
        f"{res['n_failed']} failed); search wall time {res['wall_s']:.0f} s (read + split + "
        "trials; the refit and the test evaluation come after).",
        "",
        f"Best setting (trial {best['trial']}, {best['epochs']} epochs): `{best['params']}`",
        "",
        "Parameter importance: "
        + ", ".join(
            f"{k} {v:.2f}" for k, v in sorted(res["importance"].items(), key=lambda x: -x[1])
        ),
        "",
        "Plots: `tuning_sasrec_ml100k_history.png` (optimisation history), "
        "`tuning_sasrec_ml100k_importance.png`.",
        "",
        "## Trials",
        "",
        (out / "trials.md").read_text(),
    ]
    (results / "tuning_sasrec_ml100k.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:26]))


if __name__ == "__main__":
    main()
