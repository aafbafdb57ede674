"""Item2Vec tuned (warmrec tune, Optuna TPE + median pruning) against gensim's Word2Vec defaults
and against warmrec's current Item2Vec defaults.

Protocols (full-catalogue ranking, seen items not excluded by the evaluation):

- ml-100k: leave-one-out per user in RecBole's time order (the neural benchmark's protocol);
- nowplaying-1m: the union of the three files as one log, ``last_session`` by time (sessions
  starting in the last 30 days = test, the 30 before = validation; benchmarks/baselines.py's
  protocol); every next item of a held-out session is a target.

Every trial is scored on validation Recall@10; the best setting is refitted and tested once. The
two fixed settings are fitted once and tested once.

    python benchmarks/tuning_item2vec.py --trials 20 --out /tmp/tune-i2v
    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/tuning_item2vec.py --dataset nowplaying-1m \
        --trials 16 --valid-sample 2000 --max-epochs 10 --max-window 20 --out /tmp/tune-i2v-np

Bounding a search (for a large catalogue on a small machine): ``--valid-sample N`` scores the
trials (and their per-epoch pruning) on a fixed random sample of N validation examples (the refit
of the best setting and the fixed settings' validation columns use all of them); ``--max-epochs``
and ``--max-window`` lower the upper ends of the space's ``epochs`` and ``window``.

Writes benchmarks/results/tuning_item2vec_<dataset>.md and the per-epoch plot
benchmarks/results/tuning_item2vec_<dataset>_curves.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

from _bench import LoadSampler, load_range

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


PROTOCOLS = {
    "ml-100k": {"method": "loo", "time_order": "recbole"},
    "nowplaying-1m": {
        "method": "last_session",
        "test_days": 30,
        "valid_days": 30,
        "by_user": False,
        "resplit": True,
    },
}


def fixed(prep, name: str, cfg: dict, valid=None) -> dict:
    """Fit ``cfg`` once (per-epoch validation on ``valid``, if given: warmrec's keep_best) and
    score it on validation and test."""
    from warmrec.experiments.spec import evaluate_model
    from warmrec.registry import get_model

    t0 = time.perf_counter()
    model = get_model("item2vec", cfg).fit(prep.train, valid)
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
    ap.add_argument("--dataset", choices=list(PROTOCOLS), default="ml-100k")
    ap.add_argument("--valid-sample", type=int, default=0, help="trials: N validation examples")
    ap.add_argument("--max-epochs", type=int, default=0, help="lower the space's epochs high")
    ap.add_argument("--max-window", type=int, default=0, help="lower the space's window high")
    ap.add_argument("--timeout", type=float, default=0, help="stop starting trials after S s")
    ap.add_argument(
        "--part",
        choices=("all", "fixed", "search", "report"),
        default="all",
        help="fixed / search / report: one step (the first two may run at once)",
    )
    ap.add_argument("--load-log", default="", help="report: /proc/loadavg lines of the run")
    args = ap.parse_args()
    if args.dataset != "ml-100k" and args.data == ap.get_default("data"):
        args.data = str(SHARED / "data" / args.dataset)

    import numpy as np

    from warmrec.experiments.spec import prepare_run, spec_from_config
    from warmrec.tuning.run import run_tune

    load = LoadSampler()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = {"data": {"path": args.data}, "split": dict(PROTOCOLS[args.dataset])}
    space_path, bounds = bounded_space(args)
    prep = prepare_run(spec_from_config(cfg))
    search_valid = prep.valid
    if args.valid_sample and args.valid_sample < len(prep.valid):
        pick = np.random.default_rng(0).choice(len(prep.valid), args.valid_sample, replace=False)
        search_valid = prep.valid.subset(np.sort(pick))
    if args.part in ("all", "fixed"):
        rows = [
            fixed(prep, "gensim defaults", GENSIM_DEFAULTS),
            fixed(prep, "warmrec defaults", {}, search_valid),
        ]
        (out / "fixed.json").write_text(json.dumps(rows, indent=2, default=float))
    if args.part in ("all", "search"):
        t0 = time.perf_counter()
        if search_valid is prep.valid:
            run_tune(
                cfg, model="item2vec", space_path=space_path, trials=args.trials, out=args.out,
                progress=True, timeout=args.timeout or None,
            )  # fmt: skip
        else:
            sampled_search(cfg, prep, search_valid, space_path, args)
        (out / "search_wall.json").write_text(json.dumps({"wall_s": time.perf_counter() - t0}))
    if args.part not in ("all", "report"):
        return
    rows = json.loads((out / "fixed.json").read_text())
    res = json.loads((out / "summary.json").read_text())
    wall = json.loads((out / "search_wall.json").read_text())["wall_s"]
    best = res["best"]
    rows.append(
        {
            "name": f"tuned ({res['trials']} trials)",
            "cfg": best["params"],
            # on the whole validation part (the refit's), like the fixed rows; the search's
            # score may come from a sample (--valid-sample)
            "valid": best.get("refit_valid") or best["valid"],
            "test": best["test"],
            "seconds": wall,
        }
    )
    results = ROOT / "benchmarks" / "results"
    stem = f"tuning_item2vec_{args.dataset.replace('-', '')}"
    if args.dataset == "ml-100k":
        stem = "tuning_item2vec_ml100k"
    shutil.copy(Path(args.out) / "curves.png", results / f"{stem}_curves.png")
    loads = load_range(args.load_log) if args.load_log else load.stop()
    argv = " ".join(drop_options(sys.argv[1:], ("--part", "--load-log")))
    protocol = (
        "Leave-one-out (RecBole time order)"
        if args.dataset == "ml-100k"
        else f"last_session by time on the union of the three files ({len(prep.valid)} validation"
        f" and {len(prep.test)} test examples: every next item of a held-out session)"
    )
    lines = [
        f"# Item2Vec tuned vs defaults on {args.dataset}",
        "",
        *(
            [
                "Commands (the fixed settings and the search ran at the same time, as two "
                "processes; then the report):  ",
                *(
                    f"`OMP_NUM_THREADS=1 nice -n 5 python benchmarks/tuning_item2vec.py --part "
                    f"{part} {argv}`  "
                    for part in ("fixed", "search", "report")
                ),
            ]
            if args.part == "report"
            else [
                f"Command: `OMP_NUM_THREADS=1 nice -n 5 python benchmarks/tuning_item2vec.py {argv}`  "
            ]
        ),
        f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other helpers' work "
        f"and the lead (timings are noisy); 1-minute load average during the run {loads}; "
        f"Python {platform.python_version()}.",
        "",
        f"{protocol}, full ranking over {prep.train.n_items - 1:,} items, seen items not excluded by the "
        "evaluation. Trials scored on validation Recall@10 (space: "
        f"`configs/spaces/item2vec.toml`{bounds}, Optuna TPE, median pruning on the per-epoch "
        "validation Recall@10); the best setting refitted and tested once.",
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
        f"search wall time {res['wall_s']:.0f} s (time column of the tuned row: search + refit"
        f"{'; --timeout ' + format(args.timeout, 'g') + ' s: no trial started after it' if args.timeout else ''}).",
        "",
        f"Best setting (trial {best['trial']}): `{best['params']}`",
        "",
        "Parameter importance: "
        + ", ".join(
            f"{k} {v:.2f}" for k, v in sorted(res["importance"].items(), key=lambda x: -x[1])
        ),
        "",
        f"Validation Recall@10 per epoch of every trial (dotted: pruned): `{stem}_curves.png`.",
        "",
        "## Trials",
        "",
        (Path(args.out) / "trials.md").read_text(),
    ]
    (results / f"{stem}.md").write_text("\n".join(lines))
    print("\n".join(lines[:20]))


def bounded_space(args) -> tuple[str, str]:
    """The space file, with ``--max-epochs`` / ``--max-window`` applied (a copy in ``--out``)."""
    import tomllib

    from warmrec.tuning.results import dump_toml

    if not (args.max_epochs or args.max_window):
        return args.space, ""
    space = tomllib.loads(Path(args.space).read_text())
    notes = []
    for key, cap in (("epochs", args.max_epochs), ("window", args.max_window)):
        spec = space["model"][key]
        if cap and isinstance(spec, dict) and spec["high"] > cap:
            spec["high"] = cap
            spec["low"] = min(spec["low"], cap)
            notes.append(f"{key} {spec['low']}-{cap}")
    if args.valid_sample:
        notes.append(f"trials scored on {args.valid_sample} sampled validation examples")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    path = Path(args.out) / "space.toml"
    path.write_text(dump_toml(space))
    return str(path), " bounded: " + ", ".join(notes)


def sampled_search(cfg: dict, prep, search_valid, space_path: str, args) -> dict:
    """``run_tune``'s two steps with the trials scored on ``search_valid`` (a validation sample);
    the refit and the one test evaluation use the whole parts."""
    from warmrec.tuning.local import search_local
    from warmrec.tuning.results import finish
    from warmrec.tuning.space import load_space
    from warmrec.tuning.trial import SearchData

    space = load_space(space_path, "item2vec")
    t0 = time.perf_counter()
    data = SearchData(prep.train, search_valid, prep.train.item_counts())
    rows = search_local(
        "item2vec", space, data, Path(args.out), trials=args.trials, progress=True,
        timeout=args.timeout or None,
    )  # fmt: skip
    return finish(
        rows=rows, model_name="item2vec", space=space, base_cfg=cfg, prepared=prep,
        out=Path(args.out), backend="optuna", wall_s=time.perf_counter() - t0,
    )  # fmt: skip


def drop_options(argv: list[str], names: tuple[str, ...]) -> list[str]:
    """``argv`` without the options ``names`` and their values."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in names:
            skip = True
        elif not a.startswith(tuple(f"{n}=" for n in names)):
            out.append(a)
    return out


if __name__ == "__main__":
    main()
