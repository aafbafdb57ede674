"""User cold start on ml-100k (issue #10), measured with the library's cold-start study.

Part 1 runs :func:`warmrec.meta.coldstart.run_coldstart_study` (the code behind ``warmrec study
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
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "ml-100k"
RESULTS = ROOT / "benchmarks" / "results" / "coldstart.md"
MODEL = {"d": 32, "n_layers": 1, "n_heads": 1, "ffn_dim": 64, "max_len": 50}


def study(args: argparse.Namespace) -> dict:
    from warmrec.data.prepared import read
    from warmrec.meta.coldstart import run_coldstart_study

    log = read(DATA, format=None).interactions
    settings = {
        "shots": (1, 3, 5, 10),
        "max_valid_users": args.valid_users,
        "max_test_users": args.test_users,
        "lr_grid": tuple(args.lr_grid),
        "pretrain": {"epochs": args.pretrain_epochs, "patience": 3},
        "meta": {
            "meta_epochs": args.meta_epochs,
            "inner_steps": args.inner_steps,
            "meta_batch_size": args.meta_batch,
            "first_order_epochs": 1,
            "msl_epochs": max(args.meta_epochs, 1),
        },
    }
    t0 = time.perf_counter()
    res = run_coldstart_study(
        log,
        model=args.model,
        model_config=MODEL,
        methods=args.methods.split(","),
        seeds=tuple(range(args.seeds)),
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


def timing_child(algorithm: str, n_iter: int, meta_batch: int, model: str) -> None:
    """Run in a subprocess: print JSON with seconds per meta-iteration and extra peak RSS."""
    import numpy as np
    import torch

    from warmrec.data.prepared import read
    from warmrec.meta.coldstart import ColdStartSettings, split_users, user_sequences
    from warmrec.meta.maml import MetaModel, TaskStream
    from warmrec.registry import get_model
    from warmrec.training.loop import make_optimizer, optimizer_step

    torch.manual_seed(0)
    data = user_sequences(read(DATA).interactions)
    split = split_users(data, ColdStartSettings(), 0)
    train = split.subset(split.train)
    m = get_model(model, MODEL)
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
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    for t in tasks[1:]:
        optimizer_step(meta, t, opt)
    sec = (time.perf_counter() - t0) / n_iter
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "algorithm": algorithm,
                "s_per_iter": sec,
                "extra_peak_mib": (after - before) / 1024,
                "peak_mib": after / 1024,
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
    p.add_argument("--model", default="sasrec")
    p.add_argument(
        "--methods", default="pop,sknn,global,finetune,reptile,fomaml,maml,mamlpp,mamlpp_loss"
    )
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--valid-users", type=int, default=60)
    p.add_argument("--test-users", type=int, default=150)
    p.add_argument("--lr-grid", type=float, nargs="+", default=[0.05, 0.2, 0.5])
    p.add_argument("--pretrain-epochs", type=int, default=20)
    p.add_argument("--meta-epochs", type=int, default=2)
    p.add_argument("--inner-steps", type=int, default=3)
    p.add_argument("--meta-batch", type=int, default=16)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--out", default=str(ROOT / "warmrec-out" / "bench-coldstart"))
    p.add_argument("--child", default=None)
    p.add_argument("--skip-study", action="store_true")
    args = p.parse_args()
    if args.child:
        timing_child(args.child, args.iters, args.meta_batch, args.model)
        return
    import os

    load = os.getloadavg()
    res = study(args) if not args.skip_study else None
    times = timings(args)
    lines = [
        "# Cold start on ml-100k (issue #10)",
        "",
        "```",
        "OMP_NUM_THREADS=1 python benchmarks/coldstart.py " + " ".join(sys.argv[1:]),
        "```",
        "",
        f"Machine: 2 shared CPU cores, load average at start {load[0]:.1f} (other helpers' jobs "
        "ran at the same time: wall times are inflated and noisy).",
        "",
    ]
    if res is not None:
        lines += [
            f"## Study ({args.model}, {args.seeds} seed(s), {res['seconds']:.0f} s)",
            "",
            f"Model {json.dumps(MODEL)}; settings {json.dumps(res['settings'])}.",
            "",
            _markdown(res["table"]),
            "",
        ]
    lines += [
        "## Time per meta-iteration and peak memory (CPU)",
        "",
        f"One outer step of {args.meta_batch} tasks, 3 inner steps, mean of {args.iters} steps; "
        "extra peak RSS = ru_maxrss after minus before the timed steps (its own process).",
        "",
        "| algorithm | order | s / meta-iteration | extra peak RSS (MiB) | peak RSS (MiB) |",
        "|---|---|---|---|---|",
    ]
    for r in times:
        order = "second" if r["algorithm"] in ("maml", "mamlpp") else "first"
        lines.append(
            f"| {r['algorithm']} | {order} | {r['s_per_iter']:.3f} | {r['extra_peak_mib']:.1f} | "
            f"{r['peak_mib']:.0f} |"
        )
    notes = ""
    if RESULTS.is_file() and "<!-- notes -->" in RESULTS.read_text():
        notes = RESULTS.read_text().split("<!-- notes -->", 1)[1]
    RESULTS.write_text("\n".join(lines) + "\n\n<!-- notes -->" + notes)
    print(RESULTS.read_text())


def _markdown(df) -> str:
    from warmrec.reports.tables import to_markdown

    return to_markdown(df)


if __name__ == "__main__":
    main()
