"""SASRec's early-stopping patience: the trainer's default 5 against 15 and 30.

Evidence for SASRec's default trainer (``SASRec.default_trainer``; patience is the loop's
default, 5): on MARS at 10 % of the learners the ID SASRec from scratch stops at an early
validation dip under patience 5 (``benchmarks/results/mars.md``, ``strategies``). This runs
SASRec with its default trainer and every other setting at its default, changing only the
patience, on ml-100k (leave-one-out), MARS (leave-one-out) and MARS with 10 % of its training
learners; validation NDCG@10 is what a choice may read, test NDCG@10 is reported beside it.

    OMP_NUM_THREADS=1 python benchmarks/sasrec_patience.py [--seeds 0 1] [--work DIR]

Each run is stored as JSON in ``--work`` (resumed by its key: dataset, patience, seed); the
section ``sasrec-patience`` of ``benchmarks/results/sasrec_patience.md`` is written at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import SHARED, LoadSampler, write_section  # noqa: E402

from warmrec.experiments.spec import evaluate_run, fit_run, prepare_run, spec_from_config  # noqa: E402
from warmrec.io import atomic_write_text  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "sasrec_patience.md"
TITLE = "# SASRec's early-stopping patience\n\n"
DATASETS = {
    "ml-100k": {"path": "ml-100k", "split": {"method": "loo"}},
    "mars": {"path": "mars", "split": {"method": "loo"}},
    "mars-10%": {"path": "mars", "split": {"method": "loo", "train_fraction": 0.1}},
}


def run_one(name: str, patience: int, seed: int) -> dict[str, Any]:
    d = DATASETS[name]
    split = dict(d["split"])
    if "train_fraction" in split:
        split["fraction_seed"] = seed
    spec = spec_from_config(
        {
            "data": {"path": str(SHARED / "data" / d["path"])},
            "split": split,
            "model": {"name": "sasrec"},
            "train": {"patience": patience, "seed": seed, "num_threads": 1},
            "eval": {"metrics": ["ndcg@10", "hr@10"]},
        }
    )
    prep = prepare_run(spec)
    t0 = time.perf_counter()
    model = fit_run(spec, prep)
    fit_s = time.perf_counter() - t0
    test = evaluate_run(model, prep.test, spec, prep)
    tr = model.train_result
    return {
        "dataset": name,
        "patience": patience,
        "seed": seed,
        "valid_ndcg@10": float(model.meta.run.valid["ndcg@10"]),
        "test_ndcg@10": float(test.summary["ndcg@10"]),
        "test_hr@10": float(test.summary["hr@10"]),
        "epochs_run": int(tr.epochs_run),
        "best_epoch": int(tr.best_epoch),
        "fit_s": fit_s,
        "n_train": len(prep.train.sequences),
    }


def default_command(work: Path, datasets: list[str], out: Path) -> None:
    """Run ``warmrec train --model sasrec --data DIR --split loo`` (no config: every default,
    torch's thread policy) and ``warmrec evaluate`` on each dataset; write section
    ``sasrec-default-command``."""
    import subprocess

    from warmrec.training.defaults import trainer_defaults_key

    load = LoadSampler()
    rows = []
    for name in datasets:
        data = SHARED / "data" / DATASETS[name]["path"]
        model_dir = work / f"default-{name}"
        stamp = work / f"default-{name}.json"
        key = {"data": str(data), "trainer_defaults": trainer_defaults_key()}
        done = json.loads(stamp.read_text()) if stamp.is_file() else {}
        if done.get("key") != key or not (model_dir / "config.json").is_file():
            train = [sys.executable, "-m", "warmrec", "train", "--model", "sasrec", "--data",
                     str(data), "--split", "loo", "--out", str(model_dir)]  # fmt: skip
            print(f"[default] {' '.join(train[1:])}", flush=True)
            t0 = time.perf_counter()
            subprocess.run(train, check=True, capture_output=True, text=True)
            done = {"key": key, "wall_s": time.perf_counter() - t0}
            atomic_write_text(stamp, json.dumps(done))
        ev = subprocess.run([sys.executable, "-m", "warmrec", "evaluate", str(model_dir), "--json"],
                            check=True, capture_output=True, text=True)  # fmt: skip
        meta = json.loads((model_dir / "config.json").read_text())["meta"]
        rows.append((name, json.loads(ev.stdout)["metrics"], meta, done["wall_s"]))
    lines = [
        "<!-- begin: sasrec-default-command -->",
        "## The default command under the current defaults",
        "",
        f"Command: `python benchmarks/sasrec_patience.py --default-command --datasets "
        f"{' '.join(datasets)}`, which runs `warmrec train --model sasrec --data DIR --split loo "
        f"--out MODEL` (no config: the model's and trainer's defaults, patience "
        f"{_default_patience()}, torch's thread policy) and `warmrec evaluate MODEL --json` per "
        f"dataset (1-minute load average {load.stop()} on the shared 2-core machine; fit s: "
        "the training as the model file records it; wall s: the whole train command; a model "
        "made earlier under the same trainer defaults is evaluated again, not retrained).",
        "",
        "| dataset | test ndcg@10 | test hr@10 | valid ndcg@10 | patience | fit s | wall s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m, meta, wall in rows:
        run = meta.get("run") or {}
        lines.append(
            f"| {name} | {m['ndcg@10']:.4f} | {m['hr@10']:.4f} | {run['valid']['ndcg@10']:.4f} | "
            f"{(run.get('trainer') or {}).get('patience', '?')} | "
            f"{run['fit_seconds']:.0f} | {wall:.0f} |"
        )
    lines += ["", "<!-- end: sasrec-default-command -->"]
    write_section(out, lines[0], lines[-1], "\n".join(lines), TITLE)
    print("\n".join(lines))


def _default_patience() -> int:
    from warmrec.models.sasrec import SASRec

    return int(SASRec.trainer_config().patience)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--default-command", action="store_true",
                   help="run the CLI's default command per dataset instead (ml-100k, mars)")  # fmt: skip
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--patience", type=int, nargs="+", default=[5, 15, 30])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--work", default="/tmp/warmrec-sasrec-patience")
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.default_command:
        names = [n for n in args.datasets if "train_fraction" not in DATASETS[n]["split"]]
        default_command(work, names, Path(args.out))
        return
    load = LoadSampler()
    t_all = time.perf_counter()
    recs: list[dict[str, Any]] = []
    computed = 0
    for name in args.datasets:
        for pat in args.patience:
            for seed in args.seeds:
                path = work / f"{name}-p{pat}-s{seed}.json"
                if path.is_file():
                    recs.append(json.loads(path.read_text()))
                    continue
                print(f"[patience] {name} patience {pat} seed {seed} ...", flush=True)
                rec = run_one(name, pat, seed)
                atomic_write_text(path, json.dumps(rec))
                recs.append(rec)
                computed += 1
    took = (time.perf_counter() - t_all) / 60
    lines = [
        "<!-- begin: sasrec-patience -->",
        "## SASRec's default trainer, patience 5 (the default until 2026-12-05) against 15 and 30",
        "",
        f"Command: `OMP_NUM_THREADS=1 python benchmarks/sasrec_patience.py --seeds "
        f"{' '.join(map(str, args.seeds))}` ({took:.0f} min for the {computed} runs computed by "
        f"this invocation, {len(recs) - computed} read from its work folder; 1-minute load "
        f"average {load.stop()} on the shared 2-core machine, one torch thread).",
        "",
        "SASRec with every other setting at its default (model and `default_trainer`: batch 32, "
        "lr 2e-3, cosine decay over the 100-epoch cap, 200 warm-up steps), only `patience` (early "
        "stopping on validation NDCG@10, best epoch restored) changed. Splits: leave-one-out "
        "per user (last event test, the one before validation), full ranking, seen items kept; "
        "`mars-10%`: 10 % of MARS's training learners (`train_fraction` 0.1, drawn with the "
        "seed), validated and tested on every learner. Mean over the seeds (per seed in "
        "brackets).",
        "",
        "| dataset | patience | valid ndcg@10 | test ndcg@10 | test hr@10 | epochs (best) | fit s |",
        "|---|---:|---|---|---:|---|---:|",
    ]
    best: dict[str, tuple[list[int], float]] = {}  # every patience at the best validation
    for name in args.datasets:
        for pat in args.patience:
            rs = sorted(
                (r for r in recs if r["dataset"] == name and r["patience"] == pat),
                key=lambda r: r["seed"],
            )
            if not rs:
                continue
            v = [r["valid_ndcg@10"] for r in rs]
            t = [r["test_ndcg@10"] for r in rs]
            if name not in best or np.mean(v) > best[name][1]:
                best[name] = ([pat], float(np.mean(v)))
            elif np.mean(v) == best[name][1]:  # the same validation: validation cannot choose
                best[name][0].append(pat)
            lines.append(
                f"| {name} | {pat} | {np.mean(v):.4f} ({', '.join(f'{x:.4f}' for x in v)}) | "
                f"{np.mean(t):.4f} ({', '.join(f'{x:.4f}' for x in t)}) | "
                f"{np.mean([r['test_hr@10'] for r in rs]):.4f} | "
                + ", ".join(f"{r['epochs_run']} ({r['best_epoch']})" for r in rs)
                + f" | {max(r['fit_s'] for r in rs):.0f} |"
            )
    lines += ["", "Chosen on validation (mean over the seeds):", ""]
    for name, (pats, v) in best.items():
        tie = ": a tie, the same validation at each" if len(pats) > 1 else ""
        lines.append(
            f"- {name}: patience {' or '.join(map(str, pats))} (valid NDCG@10 {v:.4f}{tie})."
        )
    lines += ["", "<!-- end: sasrec-patience -->"]
    write_section(Path(args.out), lines[0], lines[-1], "\n".join(lines), TITLE)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
