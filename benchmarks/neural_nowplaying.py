"""Neural session models on nowplaying-1m against V-SKNN, SKNN, Item2Vec and Pop.

Data and protocol are exactly those of ``benchmarks/baselines.py`` (its ``prepare``): the union of
the three nowplaying-1m files as one log; ``last_session`` holds out the sessions that start in
the last 30 days (test) and the 30 days before (valid), ``temporal`` cuts at the 80 % / 90 %
quantiles of session start times. Every next item of a held-out session is a target given the
session's prefix; full-catalogue ranking (~121K items), ties against the model, seen items not
excluded (repeats are legitimate in listening sessions).

Neural models (SASRec, GRU4Rec, NARM) are built from the registry and trained by the shared loop
(``warmrec.training.loop.train``) with early stopping on validation MRR@20 (best weights kept);
the test set is scored once, with the selected weights. A full softmax over 121K items at every
position is too slow on 2 CPU cores, so SASRec and NARM use sampled softmax (1,024 negatives
shared across the batch, drawn by ``count ** 0.75``, with logQ correction) and GRU4Rec its own
BPR-max (2,048 negatives by ``count ** 0.5`` plus the other targets of the mini-batch). Each
neural run has a training-time budget: after each epoch it stops when one more epoch of the same
length would overrun the budget (a callback of the loop), so an epoch is never cut short.
Item2Vec keeps the epoch with the best validation MRR@20 (its own callback); SKNN, V-SKNN and
Pop use the library defaults, as in ``baselines.py``. Nothing is tuned on test.

Each model runs in its own process, one after another (peak RSS is that process's maximum).
Test ranks are paired across models, so each model's difference to V-SKNN gets a bootstrap CI.

    python benchmarks/neural_nowplaying.py --budget 540
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from baselines import PROTOCOLS, prepare

METRICS = ("mrr@20", "hr@20", "ndcg@10")
MODELS = ("pop", "sknn", "vsknn", "item2vec", "sasrec", "gru4rec", "narm", "hybrid")
NEURAL = ("sasrec", "gru4rec", "narm")
TRAINED = (*NEURAL, "hybrid")  # rows with a training loop (and a budget)
BASELINE = "vsknn"
WORK = Path(__file__).resolve().parent / "_work" / "neural_nowplaying"

# sampled softmax with logQ correction: the loss of SASRec and NARM on a 121K-item catalogue
SAMPLED_CE = {
    "loss": "sampled_ce",
    "n_negatives": 1024,
    "negative_sampling": "pop",
    "pop_alpha": 0.75,
    "logq": 1.0,
}
# model -> model config (trainer settings: TRAINER plus the per-model dict)
CONFIGS: dict[str, dict] = {
    "pop": {},
    "sknn": {},
    "vsknn": {},
    "item2vec": {"eval_k": 20, "epochs": 10},
    "sasrec": {"max_len": 20, **SAMPLED_CE},
    "narm": {"max_len": 20, **SAMPLED_CE},
    "gru4rec": {
        "loss": "bpr-max",
        "n_negatives": 2048,
        "pop_alpha": 0.5,
        "bpr_reg": 1.0,
        "elu_param": 0.5,
        "max_len": 20,
    },
    # SASRec (its row's config, trained under the same budget) fused with V-SKNN (defaults):
    # per-list z-scores, the network's weight chosen on validation MRR@20 from 0, 0.1, ..., 1
    "hybrid": {
        "network": "sasrec",
        "network_config": {"max_len": 20, **SAMPLED_CE},
        "neighbours": "vsknn",
        "neighbours_config": {},
        "fusion": "zscore",
        "select_metric": "mrr@20",
    },
}
TRAINER = {
    "epochs": 100,
    "batch_size": 256,
    "lr": 1e-3,
    "patience": 3,
    "valid_metric": "mrr@20",
    "valid_metrics": ["hr@20", "ndcg@10"],
    "valid_batch_size": 512,
}


def budget_callback(budget: float, clock: str = "wall"):
    """Loop callback: stop once another epoch as long as the last one would overrun ``budget``
    (``clock="cpu"``: seconds of the process's CPU time, which other jobs on a shared machine do
    not inflate; with one torch thread that is the wall time of a quiet machine)."""
    spent = [0.0]
    key = "train_cpu_seconds" if clock == "cpu" else "train_seconds"

    def callback(epoch: int, record: dict, model) -> bool:
        spent[0] += record[key]
        return spent[0] + record[key] > budget

    return callback


def train_neural(
    name: str, config: dict, prep, seed: int, budget: float, threads: int, clock: str = "wall"
):
    """Fit a registered neural model with the shared loop; returns the model and a summary."""
    from warmrec.config import build_config
    from warmrec.registry import get_model
    from warmrec.training.loop import TrainerConfig, train

    cfg = build_config(
        TrainerConfig,
        {
            **TRAINER,
            "seed": seed,
            "num_threads": threads,
            "time_budget_s": budget if clock == "wall" else 0.0,
        },
    )
    model = get_model(name, config)
    res = train(model, prep.train, prep.valid, cfg, callbacks=[budget_callback(budget, clock)])
    model.train_result = res
    h = res.history
    if len(h) == cfg.epochs:
        stop = "epochs"
    elif len(h) - res.best_epoch >= TRAINER["patience"]:
        stop = "patience"
    else:
        stop = "budget"
    return model, {
        "epochs": len(h),
        "best_epoch": res.best_epoch,
        "s_per_epoch": res.seconds_per_epoch,
        "train_s": res.train_seconds,
        "train_cpu_s": sum(x.get("train_cpu_seconds", 0.0) for x in h),
        "clock": clock,
        "valid_eval_s": sum(x.get("eval_seconds", 0.0) for x in h),
        "stop": stop,
        "history": [
            {k: round(v, 5) if isinstance(v, float) else v for k, v in x.items()} for x in h
        ],
    }


def train_hybrid(config: dict, prep, seed: int, budget: float, threads: int, clock: str = "wall"):
    """The network trained as its own row is (same loop, budget, seed), V-SKNN fitted, then the
    fusion weight chosen on validation (:class:`warmrec.models.hybrid.Hybrid`)."""
    from warmrec.registry import get_model

    net, info = train_neural(
        config["network"], config["network_config"], prep, seed, budget, threads, clock
    )
    net.save(WORK / "hybrid_network")  # kept for a re-render or a re-fusion without retraining
    knn = get_model(config["neighbours"], config["neighbours_config"]).fit(prep.train)
    from warmrec.models.hybrid import Hybrid

    rest = {k: v for k, v in config.items() if not k.startswith(("network", "neighbours"))}
    t0 = time.perf_counter()
    model = Hybrid.from_members(net, knn, **rest).fit(prep.train, prep.valid)
    info.update(
        select_s=time.perf_counter() - t0,
        weight=model.weight_,
        weight_curve=model.meta.history,
    )
    return model, info


def child(protocol: str, name: str, seed: int, budget: float, config: dict) -> dict:
    import torch

    from warmrec.experiments.spec import evaluate_model, fit_model

    threads = int(os.environ.get("WARMREC_THREADS", "1"))
    clock = os.environ.get("WARMREC_CLOCK", "wall")
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    prep = prepare(protocol)
    prep_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    if name in NEURAL:
        model, info = train_neural(name, config, prep, seed, budget, threads, clock)
    elif name == "hybrid":
        model, info = train_hybrid(config, prep, seed, budget, threads, clock)
    else:
        model = fit_model(name, prep, config)
        info = {}
        if name == "item2vec":
            hist = model.meta.history
            info = {
                "epochs": len(hist),
                "best_epoch": model.meta.best_epoch,
                "stop": "epochs",
                "history": hist,
            }
    fit_s = time.perf_counter() - t0
    valid = evaluate_model(model, prep.valid, prep, metrics=METRICS)
    t0 = time.perf_counter()
    test = evaluate_model(model, prep.test, prep, metrics=METRICS)
    eval_s = time.perf_counter() - t0
    member_rows = []
    if name == "hybrid":  # the network alone, as trained inside the hybrid: its own row
        net = model.members["network"]
        t1 = time.perf_counter()
        net_test = evaluate_model(net, prep.test, prep, metrics=METRICS)
        member_rows.append(
            {
                "protocol": protocol,
                "model": config["network"],
                "seed": seed,
                "config": config["network_config"],
                "test": net_test.summary,
                "valid": evaluate_model(net, prep.valid, prep, metrics=METRICS).summary,
                "fit_s": fit_s - info["select_s"],
                "test_eval_s": time.perf_counter() - t1,
                "prep_s": prep_s,
                "n_valid": valid.n_examples,
                "n_test": net_test.n_examples,
                "train_seqs": len(prep.train.sequences),
                "train_events": int(prep.train.sequences.n_events),
                "items": prep.vocab.n_ids,
                "threads": threads,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "test_ranks": net_test.ranks.tolist(),
                **{
                    k: v for k, v in info.items() if k not in ("select_s", "weight", "weight_curve")
                },
            }
        )
    return {
        "protocol": protocol,
        "model": name,
        "seed": seed,
        "config": config,
        "test": test.summary,
        "valid": valid.summary,
        "fit_s": fit_s,
        "test_eval_s": eval_s,
        "prep_s": prep_s,
        "n_valid": valid.n_examples,
        "n_test": test.n_examples,
        "train_seqs": len(prep.train.sequences),
        "train_events": int(prep.train.sequences.n_events),
        "items": prep.vocab.n_ids,
        "threads": threads,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "test_ranks": test.ranks.tolist(),
        "member_rows": member_rows,
        **info,
    }


def in_child(
    protocol: str,
    name: str,
    seed: int,
    budget: float,
    threads: int,
    config: dict,
    clock: str = "wall",
) -> dict:
    env = {
        **os.environ,
        "WARMREC_THREADS": str(threads),
        "OMP_NUM_THREADS": str(threads),
        "WARMREC_CLOCK": clock,
    }
    cmd = [sys.executable, __file__, "--child", protocol, name, str(seed), str(budget)]
    cmd.append(json.dumps(config))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(f"{protocol} {name} failed:\n{proc.stderr[-3000:]}")
    return json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])


def machine() -> str:
    import torch

    cpu = platform.machine()
    try:
        names = [
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ]
        cpu = f"{names[0]} ({len(names)} logical cores)" if names else cpu
    except OSError:
        pass
    return f"{cpu}, Python {platform.python_version()}, torch {torch.__version__}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", nargs=5, default=None)
    ap.add_argument("--protocols", default="nowplaying-1m/last_session")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget", type=float, default=540.0, help="training seconds per neural run")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run")
    ap.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="what the budget counts: wall seconds, or the run's CPU seconds (shared machines)",
    )
    ap.add_argument(
        "--tag",
        default="",
        help="add these runs to the last untagged run's results, labelled (e.g. a longer budget)",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="MODEL.KEY=VALUE",
        help="override a model setting (VALUE as JSON), e.g. --set narm.init_std=0.02",
    )
    ap.add_argument("--render", action="store_true", help="only rewrite the Markdown from _work")
    ap.add_argument("--out", default="benchmarks/results/neural_nowplaying.md")
    a = ap.parse_args()
    if a.child:
        proto, name, seed, budget, config = a.child
        result = child(proto, name, int(seed), float(budget), json.loads(config))
        print("RESULT " + json.dumps(result))
        return
    if not a.render:
        run(a)
    rows = [json.loads(ln) for ln in (WORK / "rows.jsonl").read_text().splitlines()]
    runs = [json.loads(ln) for ln in (WORK / "runs.jsonl").read_text().splitlines()]
    write(a.out, rows, runs)


def run(a) -> None:
    """Run every (protocol, model) in its own process; rows go to ``_work`` as they finish."""
    WORK.mkdir(parents=True, exist_ok=True)
    if not a.tag:  # a fresh benchmark; tagged runs add to it
        for name in ("rows.jsonl", "runs.jsonl"):
            (WORK / name).unlink(missing_ok=True)
    command = (
        f"python benchmarks/neural_nowplaying.py --protocols {a.protocols} --models {a.models} "
        f"--seed {a.seed} --budget {a.budget:g} --threads {a.threads}"
        + (f" --clock {a.clock}" if a.clock != "wall" else "")
        + "".join(f" --set {shlex.quote(x)}" for x in a.set)
        + (f" --tag {shlex.quote(a.tag)}" if a.tag else "")
    )
    configs = {m: dict(c) for m, c in CONFIGS.items()}
    for item in a.set:
        key, _, value = item.partition("=")
        model, _, field = key.partition(".")
        if model not in configs or not field or not value:
            raise SystemExit(f"--set {item}: expected MODEL.KEY=VALUE with MODEL in {MODELS}")
        configs[model][field] = json.loads(value)
    t_start = time.perf_counter()
    load = [os.getloadavg()[0]]
    for proto in a.protocols.split(","):
        if proto not in PROTOCOLS or not proto.startswith("nowplaying-1m/"):
            raise SystemExit(f"unknown protocol {proto}")
        for name in a.models.split(","):
            r = in_child(proto, name, a.seed, a.budget, a.threads, configs[name], a.clock)
            load.append(os.getloadavg()[0])
            for row in [r, *r.pop("member_rows", [])]:
                row.update(tag=a.tag, budget=a.budget if row["model"] in TRAINED else None)
                slim = {k: v for k, v in row.items() if k not in ("test_ranks", "history")}
                print(json.dumps(slim), flush=True)
                with (WORK / "rows.jsonl").open("a") as f:
                    f.write(json.dumps(row) + "\n")
    info = {
        "command": command,
        "tag": a.tag,
        "budget": a.budget,
        "threads": a.threads,
        "seed": a.seed,
        "total_s": time.perf_counter() - t_start,
        "load": [min(load), max(load)],
    }
    with (WORK / "runs.jsonl").open("a") as f:
        f.write(json.dumps(info) + "\n")


def label(r: dict) -> str:
    return f"{r['model']} [{r['tag']}]" if r.get("tag") else r["model"]


def fmt(v, nd: int = 4) -> str:
    if v is None:
        return "-"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def paired_rows(sub: list[dict]) -> list[str]:
    """Each model's test MRR@20 / HR@20 difference to V-SKNN, with a paired bootstrap 95 % CI."""
    from warmrec.evaluation.metrics import RANK_METRICS
    from warmrec.evaluation.stats import paired_test

    base = next((r for r in sub if r["model"] == BASELINE), None)
    if base is None:
        return []
    out = [
        f"Paired differences to V-SKNN on the {base['n_test']:,} test examples (bootstrap, "
        "10,000 resamples, 95 % CI; p two-sided, not adjusted):",
        "",
        "| model | MRR@20 - V-SKNN [95 % CI] | p | HR@20 - V-SKNN [95 % CI] | p |",
        "|---|---|---|---|---|",
    ]
    b = np.asarray(base["test_ranks"])
    for r in sub:
        if r is base:
            continue
        x = np.asarray(r["test_ranks"])
        cells = []
        for metric in ("mrr", "hr"):
            f = RANK_METRICS[metric]
            t = paired_test(f(x, 20), f(b, 20), n_boot=10_000, seed=0)
            cells.append(f"{t.mean_diff:+.4f} [{t.ci[0]:+.4f}, {t.ci[1]:+.4f}] | {t.p_value:.4f}")
        out.append(f"| {label(r)} | " + " | ".join(cells) + " |")
    return out + [""]


NOTES = "<!-- notes: written by hand after the run; kept when the tables are re-rendered -->"


def write(out_path: str, rows: list[dict], runs: list[dict]) -> None:
    """The results Markdown from the rows of the last untagged run and any tagged runs after it.

    Text after the ``NOTES`` marker of an existing file (the hand-written discussion) is kept.
    """
    from warmrec.io import atomic_write_text

    main_run = next(r for r in runs if not r["tag"])
    threads = ", ".join(sorted({str(r["threads"]) for r in runs}))
    out = [
        "# Neural models vs kNN on nowplaying-1m (session data)",
        "",
        "Commands (from the repository root):",
        "",
    ]
    for r in runs:
        out.append(
            f"- `{r['command']}` -- {r['total_s'] / 60:.1f} min, 1-minute load average "
            f"{r['load'][0]:.1f}-{r['load'][1]:.1f}"
            + (" (the benchmark)" if not r["tag"] else f" (extra rows tagged [{r['tag']}])")
        )
    out += [
        "",
        f"Machine: {machine()}; 2 cores shared with other jobs during the run (load averages "
        f"above); {threads} torch thread(s) per run, runs one after another, each in its own "
        "process (peak RSS is that process's maximum).",
        "",
        "Protocol (the data preparation of `benchmarks/baselines.py`, imported): the union of "
        "the three nowplaying-1m files as one log; every next item of a held-out session is a "
        "target given the session's prefix; full-catalogue ranking, ties against the model, "
        "seen items not excluded. Model selection on validation MRR@20 only; test scored once.",
        "",
        "Settings (chosen before the run, not tuned):",
        "",
        f"- Neural models: the shared training loop, AdamW lr {TRAINER['lr']:g}, batch "
        f"{TRAINER['batch_size']} (GRU4Rec: {TRAINER['batch_size']} session-parallel lanes), "
        f"early stopping on validation MRR@20 with patience {TRAINER['patience']}, best "
        f"weights kept, seed {main_run['seed']}, training budget {main_run['budget']:g} s per "
        "model: after each epoch the run stops if one more epoch of the same length would "
        "overrun the budget (an epoch is never cut, so a first epoch longer than the budget "
        "still completes).",
        "- Losses: a full softmax over 121K items at every position is too slow on this CPU, so "
        "SASRec and NARM use sampled softmax with logQ correction (1,024 negatives shared "
        "across the batch, drawn by count^0.75) and GRU4Rec its BPR-max (2,048 negatives by "
        "count^0.5 plus the batch's other targets, score regularisation 1.0, ELU 0.5).",
        "- SASRec and NARM train on windows of 20 items (90 % of training sessions have at most "
        "16 events) and score from the last 20 items; GRU4Rec trains on whole sessions "
        "(session-parallel) and scores from the last 20. Model sizes are the library defaults "
        "(SASRec d=64, 2 blocks; NARM 50/100; GRU4Rec 100 hidden units, tied embedding).",
        "- Item2Vec: library defaults (skip-gram, d=64, window 5, ns_exponent 0.75), 10 epochs, "
        "the epoch with the best validation MRR@20 kept. SKNN, V-SKNN, Pop: library defaults "
        "(k=100, sample 500), as in `baselines.py`.",
        "",
        "Configs as run: "
        + "; ".join(
            f"`{label(r)}` {json.dumps(r['config'])}"
            for r in sorted(rows, key=lambda r: bool(r.get("tag")))
        )
        + ".",
        "",
    ]
    for proto in dict.fromkeys(r["protocol"] for r in rows):
        sub = [r for r in rows if r["protocol"] == proto]
        r0 = sub[0]
        out += [
            f"## {proto}",
            "",
            f"{r0['train_seqs']:,} training sessions ({r0['train_events']:,} events), "
            f"{r0['items']:,} items, {r0['n_valid']:,} validation and {r0['n_test']:,} test "
            "examples. Sorted by test MRR@20; `stop`: what ended training (budget, patience).",
            "",
            "| model | test MRR@20 | test HR@20 | test NDCG@10 | valid MRR@20 | valid HR@20 | "
            "epochs (best) | stop | s / epoch | train s | fit wall s | test eval s | "
            "peak RSS MB |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in sorted(sub, key=lambda r: -r["test"]["mrr@20"]):
            epochs = f"{r['epochs']} ({r['best_epoch']})" if "epochs" in r else "-"
            out.append(
                f"| {label(r)} | {r['test']['mrr@20']:.4f} | {r['test']['hr@20']:.4f} | "
                f"{r['test']['ndcg@10']:.4f} | {r['valid']['mrr@20']:.4f} | "
                f"{r['valid']['hr@20']:.4f} | {epochs} | {r.get('stop', '-')} | "
                f"{fmt(r.get('s_per_epoch'), 1)} | {fmt(r.get('train_s'), 0)} | "
                f"{r['fit_s']:.1f} | {r['test_eval_s']:.1f} | {r['peak_rss_mb']:.0f} |"
            )
        out.append("")
        out += paired_rows(sub)
        out += verdict(sub)
        hist = [r for r in sub if r["model"] in TRAINED or r["model"] == "item2vec"]
        out += curves(hist)
        out += weight_curves([r for r in sub if r["model"] == "hybrid"])
    notes = ""
    path = Path(out_path)
    if path.exists() and NOTES in path.read_text():
        notes = path.read_text().split(NOTES, 1)[1]
    atomic_write_text(out_path, "\n".join(out) + "\n" + NOTES + notes)
    print("\n".join(out))


def curves(rows: list[dict]) -> list[str]:
    """Validation MRR@20 after each epoch (the learning curves behind the selection)."""
    if not rows:
        return []
    out = ["Validation MRR@20 after each epoch (selected epoch in bold):", ""]
    for r in rows:
        key = "valid_mrr@20" if r["model"] in TRAINED else "mrr@20"
        vals = [
            f"**{h[key]:.4f}**" if h["epoch"] == r["best_epoch"] else f"{h[key]:.4f}"
            for h in r.get("history", [])
        ]
        out.append(f"- {label(r)}: " + ", ".join(vals))
    return out + [""]


def weight_curves(rows: list[dict]) -> list[str]:
    """The hybrid's validation MRR@20 at each fusion weight (the chosen one in bold)."""
    if not rows:
        return []
    out = ["Hybrid: validation MRR@20 by the network's fusion weight (chosen weight in bold):", ""]
    for r in rows:
        vals = [
            f"**{c['weight']:g}: {c['mrr@20']:.4f}**"
            if c["weight"] == r["weight"]
            else f"{c['weight']:g}: {c['mrr@20']:.4f}"
            for c in r.get("weight_curve", [])
        ]
        out.append(f"- {label(r)} (selection {r.get('select_s', 0):.0f} s): " + ", ".join(vals))
    return out + [""]


def paired_diff(r: dict, base: dict, metric: str):
    """The paired bootstrap test of ``r``'s per-example ``metric`` (``"mrr"``/``"hr"``, @20)
    minus the baseline's, as :func:`warmrec.evaluation.stats.paired_test` computes it."""
    from warmrec.evaluation.metrics import RANK_METRICS
    from warmrec.evaluation.stats import paired_test

    f = RANK_METRICS[metric]
    x, b = np.asarray(r["test_ranks"]), np.asarray(base["test_ranks"])
    return paired_test(f(x, 20), f(b, 20), n_boot=10_000, seed=0)


def verdict(sub: list[dict]) -> list[str]:
    """Plain statements of who wins on test, from the figures: the best single neural model and
    the best hybrid (all runs, tagged included), each with its paired 95 % CI against V-SKNN."""
    base = next((r for r in sub if r["model"] == BASELINE and not r.get("tag")), None)
    if base is None:
        return []
    lines = []
    for kind, models in (("neural model", NEURAL), ("hybrid", ("hybrid",))):
        rows = [r for r in sub if r["model"] in models]
        if not rows:
            continue
        for metric in ("mrr@20", "hr@20"):
            best = max(rows, key=lambda r: r["test"][metric])
            b, n = base["test"][metric], best["test"][metric]
            t = paired_diff(best, base, metric.split("@")[0])
            word = "beats" if t.ci[0] > 0 else ("ties" if t.ci[1] >= 0 else "loses to")
            lines.append(
                f"- Test {metric.upper()}: the best {kind} ({label(best)}, {n:.4f}) {word} "
                f"V-SKNN ({b:.4f}); ratio {n / b:.2f}, difference {t.mean_diff:+.4f} "
                f"[95 % CI {t.ci[0]:+.4f}, {t.ci[1]:+.4f}]."
            )
    return lines + [""]


if __name__ == "__main__":
    main()
