"""User cold start on ml-100k (issue #10), measured with the library's cold-start study.

Part 1 runs :func:`warmrec.experiments.studies.coldstart.run_coldstart_study` (the code behind ``warmrec study
coldstart``; nothing here re-implements a run, a metric or a test): SASRec pre-trained on the
meta-train users (early stopping on meta-valid users), then every method at k = 1, 3, 5, 10
revealed events per meta-test user, full-catalogue ranking of the next event. Sizes are cut for
a shared 2-core CPU (small SASRec, capped meta-valid / meta-test users, few meta-epochs): the
flags below say what was run, the Markdown records them.

Part 2 measures time per meta-iteration (one outer step of ``--meta-batch`` tasks, through the
training loop's ``optimizer_step``) and the extra peak resident memory of each algorithm, each in
its own subprocess (``ru_maxrss`` after the run minus before it): second order (MAML, MAML++ in
its second-order phase) against first order (FO-MAML, Reptile).

    OMP_NUM_THREADS=1 python benchmarks/coldstart.py --seeds 1

Other logs: ``--data`` / ``--format`` (e.g. ``--data ../shared/data/mars --format mars``),
``--shots``, ``--max-events`` (hold out only cold users), the held-out shares and
``--model-config`` (JSON merged into the model's settings); ``--protocol melo`` with
``--rating-scale`` for ratings not on 1-5 (MARS's 1-10).
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "ml-100k"
RESULTS = ROOT / "benchmarks" / "results" / "coldstart.md"
MODELS = {
    "sasrec": {"d": 32, "n_layers": 1, "n_heads": 1, "ffn_dim": 64, "max_len": 50},
    "gru4rec": {"hidden_size": 64, "training": "windows", "loss": "ce", "max_len": 50},
}


def study(args: argparse.Namespace) -> dict:
    from warmrec.data.prepared import read
    from warmrec.experiments.studies.coldstart import MELO_METHODS, METHODS, run_coldstart_study

    log = read(args.data, format=args.format).interactions
    settings = {
        "shots": tuple(args.shots),
        "max_valid_users": args.valid_users,
        "max_test_users": args.test_users,
        "valid_users": args.valid_share,
        "test_users": args.test_share,
        "max_events": args.max_events,
        "lr_grid": tuple(args.lr_grid),
        "pretrain": {"epochs": args.pretrain_epochs, "patience": 3},
        "meta": {
            "meta_epochs": args.meta_epochs,
            "inner_steps": args.inner_steps,
            "meta_batch_size": args.meta_batch,
            "first_order_epochs": 1,
            "msl_epochs": max(args.meta_epochs, 1),
            **({"train_shots": tuple(args.train_shots)} if args.train_shots else {}),
            **json.loads(args.meta_config),
        },
    }
    if args.protocol == "melo":
        settings.update(
            protocol="melo",
            melo_test_users=args.melo_test_users,
            rating_trainer={"epochs": args.rating_epochs, "lr": 1e-3, "batch_size": 128},
            melo_min_item=args.melo_min_item,
            melo_min_user=args.melo_min_user,
        )
        if args.rating_scale:
            settings["melo_rating_scale"] = tuple(args.rating_scale)
        for key in ("max_test_users", "max_events", "test_users"):
            settings.pop(key)
    t0 = time.perf_counter()
    res = run_coldstart_study(
        log,
        model=args.model,
        model_config=model_config(args),
        methods=(
            args.methods or ",".join(MELO_METHODS if args.protocol == "melo" else METHODS)
        ).split(","),
        seeds=tuple(range(args.seed_from, args.seeds)),
        settings=settings,
        out_dir=args.out,
        progress=True,
    )
    return {
        "table": res.table,
        "summary": res.summary,
        "seconds": time.perf_counter() - t0,
        "settings": settings,
        "records": res.records,
    }


def model_config(args: argparse.Namespace) -> dict:
    """The model's settings: :data:`MODELS` with ``--model-config`` (JSON) merged in."""
    return {**MODELS[args.model], **json.loads(args.model_config)}


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def from_runs(args: argparse.Namespace) -> dict:
    """The table of whatever (seed, method) runs ``args.out/runs`` holds (an interrupted study:
    nothing is computed; each row's n_seeds says how many seeds it has)."""
    from warmrec.experiments.studies.coldstart import (
        MELO_METRICS,
        METRICS,
        display_table,
        summarize,
    )

    melo = args.protocol == "melo"
    runs = sorted(Path(args.out, "runs").glob("*-*.json"))
    records = [json.loads(f.read_text()) for f in runs if not f.name.endswith("-lr.json")]
    metrics = MELO_METRICS if melo else METRICS
    summary = summarize(records, tuple(args.shots), metrics, higher_better=not melo)
    return {
        "table": display_table(summary, metrics),
        "summary": summary,
        "seconds": float("nan"),
        "settings": {"from_runs": str(Path(args.out, "runs")), "runs": [f.stem for f in runs]},
        "records": records,
    }


def timing_child(algorithm: str, n_iter: int, meta_batch: int, model: str, data: str) -> None:
    """Run in a subprocess: print JSON with seconds per meta-iteration and memory.

    Memory, two ways: ``graph_mib`` = bytes of the tensors autograd saves for the backward of
    one meta-iteration (``saved_tensors_hooks``, storages counted once: exact and independent
    of the machine's load; this is what second order keeps and first order drops), and
    ``extra_peak_mib`` = the process's resident high-water mark during the timed steps above its
    resident size before them (glibc arenas trimmed, ``VmHWM`` reset through
    ``/proc/self/clear_refs``, so earlier pre-training does not hide the peak)."""
    import ctypes

    import numpy as np
    import torch

    from warmrec.data.prepared import read
    from warmrec.experiments.studies.coldstart import ColdStartSettings, split_users, user_sequences
    from warmrec.meta.maml import MetaModel, TaskStream
    from warmrec.registry import get_model
    from warmrec.training.loop import make_optimizer, optimizer_step

    torch.manual_seed(0)
    torch.set_num_threads(1)
    data_ = user_sequences(read(data).interactions)
    split = split_users(data_, ColdStartSettings(), 0)
    train = split.subset(split.train)
    m = get_model(model, MODELS[model])
    m.fit(train, epochs=1, progress=False)
    cfg = {"algorithm": algorithm, "inner_steps": 3, "meta_batch_size": meta_batch}
    if algorithm == "mamlpp":
        cfg["first_order_epochs"] = 0  # measure the second-order phase
    meta = MetaModel(m, cfg)
    meta.prepare(train)
    stream = TaskStream(meta, train)
    rng = np.random.default_rng(0)
    batches = stream.batches(meta_batch, rng)
    tasks = [next(batches) for _ in range(n_iter + 1)]
    opt = make_optimizer(meta.optimizer_groups(0.0), _cfg())
    optimizer_step(meta, tasks[0], opt)  # warm-up

    seen: set[int] = set()
    saved = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        if st.data_ptr() not in seen:
            seen.add(st.data_ptr())
            saved[0] += st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        optimizer_step(meta, tasks[0], opt)
    graph_mib = saved[0] / 2**20
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        reset = True
    except OSError:
        reset = False
    before = _rss_kib("VmRSS")
    t0 = time.perf_counter()
    for t in tasks[1:]:
        optimizer_step(meta, t, opt)
    sec = (time.perf_counter() - t0) / n_iter
    after = _rss_kib("VmHWM")
    print(
        json.dumps(
            {
                "algorithm": algorithm,
                "s_per_iter": sec,
                "graph_mib": graph_mib,
                "extra_peak_mib": (after - before) / 1024 if reset else None,
                "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def _cfg():
    from warmrec.training.loop import TrainerConfig

    return TrainerConfig(optimizer="adam", lr=1e-3)


def timings(args: argparse.Namespace) -> list[dict]:
    rows = []
    for alg in ("maml", "mamlpp", "fomaml", "reptile"):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                alg,
                "--iters",
                str(args.iters),
                "--meta-batch",
                str(args.meta_batch),
                "--model",
                args.model,
                "--data",
                str(args.data),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="sasrec", choices=sorted(MODELS))
    p.add_argument("--data", default=str(DATA), help="Interaction log (default ml-100k).")
    p.add_argument("--format", default=None)
    p.add_argument("--results", default=str(RESULTS), help="Markdown file written.")
    p.add_argument("--skip-timing", action="store_true")
    p.add_argument("--methods", default=None, help="Default: every method of the protocol.")
    p.add_argument("--protocol", default="ranking", choices=["ranking", "melo"])
    p.add_argument("--melo-test-users", type=int, default=1000)
    p.add_argument("--rating-epochs", type=int, default=5)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument(
        "--seed-from",
        type=int,
        default=0,
        help="Run seeds seed-from .. seeds - 1 only (a second process sharing --out).",
    )
    p.add_argument("--shots", type=int, nargs="+", default=[1, 3, 5, 10])
    p.add_argument(
        "--max-events",
        type=int,
        default=0,
        help="Hold out only users with at most this many events (0: any).",
    )
    p.add_argument("--valid-share", type=float, default=0.1, help="Eligible users in meta-valid.")
    p.add_argument("--test-share", type=float, default=0.2, help="Eligible users in meta-test.")
    p.add_argument("--train-shots", type=int, nargs="+", default=None)
    p.add_argument("--model-config", default="{}", help="JSON merged into the model settings.")
    p.add_argument("--meta-config", default="{}", help="JSON merged into the meta settings.")
    p.add_argument("--title", default=None, help="Heading of the Markdown file.")
    p.add_argument("--melo-min-item", type=int, default=50)
    p.add_argument("--melo-min-user", type=int, default=5)
    p.add_argument(
        "--rating-scale",
        type=float,
        nargs=2,
        default=None,
        metavar=("LOW", "HIGH"),
        help="melo: the rating scale (default: read from the data).",
    )
    p.add_argument("--valid-users", type=int, default=60)
    p.add_argument("--test-users", type=int, default=150)
    p.add_argument("--lr-grid", type=float, nargs="+", default=[0.002, 0.01, 0.05, 0.2])
    p.add_argument("--pretrain-epochs", type=int, default=20)
    p.add_argument("--meta-epochs", type=int, default=10)
    p.add_argument("--inner-steps", type=int, default=3)
    p.add_argument("--meta-batch", type=int, default=16)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--out", default=str(ROOT / "warmrec-out" / "bench-coldstart"))
    p.add_argument("--child", default=None)
    p.add_argument("--skip-study", action="store_true")
    p.add_argument(
        "--from-runs",
        action="store_true",
        help="Only tabulate the finished runs in --out (an interrupted study).",
    )
    args = p.parse_args()
    if args.child:
        timing_child(args.child, args.iters, args.meta_batch, args.model, args.data)
        return
    import os

    load = os.getloadavg()
    if args.from_runs:
        res = from_runs(args)
    else:
        res = study(args) if not args.skip_study else None
    times = timings(args) if not args.skip_timing else []
    results = Path(args.results)
    lines = [
        args.title or f"# Cold start on {Path(args.data).name} (issue #10)",
        "",
        "```",
        "OMP_NUM_THREADS=1 python benchmarks/coldstart.py " + shlex.join(sys.argv[1:]),
        "```",
        "",
        f"Machine: 2 CPU cores, 1-minute load average at start {load[0]:.1f} (above about 1, "
        "other jobs shared the cores and wall times are inflated).",
        "",
    ]
    if res is not None:
        lines += [
            f"## Study ({args.model}, {args.seeds} seed(s), "
            + (
                "tabulated from the finished runs)"
                if args.from_runs
                else f"{res['seconds']:.0f} s)"
            ),
            "",
            f"Model {json.dumps(model_config(args))}; settings {json.dumps(res['settings'])}.",
            "",
            _markdown(res["table"]),
            "",
        ]
        if args.protocol == "ranking":
            small = tuple(k for k in args.shots if k <= 5) or tuple(args.shots)
            lines += goal_lines(res["records"], small)
    if times:
        lines += [
            "## Time per meta-iteration and memory (CPU)",
            "",
            f"One outer step of {args.meta_batch} tasks, 3 inner steps, mean of {args.iters} "
            "steps, one torch thread, each algorithm in its own process. graph = tensors autograd "
            "saves for the backward of one meta-iteration (exact); extra peak RSS = resident "
            "high-water mark during the timed steps minus the resident size before them.",
            "",
            "| algorithm | order | s / meta-iteration | graph (MiB) | extra peak RSS (MiB) "
            "| process peak RSS (MiB) |",
            "|---|---|---|---|---|---|",
        ]
    for r in times:
        order = "second" if r["algorithm"] in ("maml", "mamlpp") else "first"
        extra = "n/a" if r["extra_peak_mib"] is None else f"{r['extra_peak_mib']:.1f}"
        lines.append(
            f"| {r['algorithm']} | {order} | {r['s_per_iter']:.3f} | {r['graph_mib']:.1f} | "
            f"{extra} | {r['peak_mib']:.0f} |"
        )
    notes = ""
    if results.is_file() and "<!-- notes -->" in results.read_text():
        notes = results.read_text().split("<!-- notes -->", 1)[1]
    from warmrec.io import atomic_write_text  # a crash never leaves a half-written results file

    atomic_write_text(results, "\n".join(lines) + "\n\n<!-- notes -->" + notes)
    print(results.read_text())


def goal_lines(records: list[dict], shots: tuple[int, ...] = (1, 3, 5)) -> list[str]:
    """Issue #10's goal, pooled over k <= 5: each meta-test user's NDCG@10 averaged over k, every
    seed's users, each method against per-user fine-tuning on the same users (paired
    bootstrap over users)."""
    import numpy as np

    from warmrec.evaluation.stats import mean_over_seeds, paired_test
    from warmrec.experiments.studies.coldstart import BASELINE

    by: dict[str, dict[int, dict]] = {}
    for r in records:
        if "per_user" in r:
            by.setdefault(r["method"], {})[r["seed"]] = r
    base = by.get(BASELINE)
    if not base:
        return []

    def same_users(seeds: list[int]) -> bool:
        """Every seed (and method) scored the same users (``order = "time"``)."""
        got = {
            tuple(r.get("user_keys", {}).get(str(k)) for k in shots)
            for m in by.values() for s in seeds if s in m for r in [m[s]]
        }  # fmt: skip
        return len(seeds) > 1 and len(got) == 1 and None not in next(iter(got))

    def pooled(runs: dict[int, dict], seeds: list[int]) -> np.ndarray:
        # one value per user: the mean over k, so the bootstrap resamples users (a user's
        # k = 1, 3, 5 results are not independent draws); over the seeds, each user's mean
        # where every seed scored the same users, else the seeds' users pooled
        per = [np.mean([runs[s]["per_user"][str(k)] for k in shots], axis=0) for s in seeds]
        return mean_over_seeds(per) if same_users(seeds) else np.concatenate(per)

    lines = [
        f"## The goal, pooled over k in {{{', '.join(map(str, shots))}}}",
        "",
        "Each meta-test user's NDCG@10 averaged over these k (and over the seeds where every "
        "seed tested the same users; else the users of every seed pooled), "
        "against per-user fine-tuning on the same users; diff = mean difference with its 95 % "
        "paired-bootstrap interval (5,000 resamples of users).",
        "",
        "| method | users | NDCG@10 | fine-tuning | ratio | diff [95% CI] | p_value "
        "| ratio to global |",
        "|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    rows = []
    for method, runs in by.items():
        seeds = sorted(s for s in runs if s in base)
        if method == BASELINE or not seeds:
            continue
        a, b = pooled(runs, seeds), pooled(base, seeds)
        t = paired_test(a, b, n_boot=5000, seed=0)
        g = pooled(by["global"], seeds).mean() if "global" in by else float("nan")
        rows.append((a.mean() / b.mean(), method, len(a), a.mean(), b.mean(), t, a.mean() / g))
    for ratio, method, n, am, bm, t, to_global in sorted(rows, key=lambda r: -r[0]):
        lines.append(
            f"| {method} | {n} | {am:.4f} | {bm:.4f} | {ratio:.3f} | {t.mean_diff:+.4f} "
            f"[{t.ci[0]:+.4f}, {t.ci[1]:+.4f}] | {t.p_value:.4f} | {to_global:.3f} |"
        )
    return lines + [""]


def _markdown(df) -> str:
    from warmrec.reports.tables import to_markdown

    return to_markdown(df)


if __name__ == "__main__":
    main()
