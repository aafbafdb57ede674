"""MARS learning curve: SASRec from scratch vs SASRec pre-trained on ml-100k, over fractions.

::

    OMP_NUM_THREADS=1 python benchmarks/mars_curve.py [--data ../shared/data/mars] \\
        [--source-data ../shared/data/ml-100k] [--fractions 0.05,0.1,1] [--seeds 2] \\
        [--epochs 10] [--budget 60] [--out warmrec-out/mars-curve]

Pre-trains SASRec on ml-100k (``pretrain = true``, the same architecture as the scratch arm)
into ``OUT/source`` unless it is there, then runs :func:`warmrec.experiments.studies.curve.run_curve`
(the run owner's ``prepare_run`` / ``fit_run`` / ``evaluate_run`` per run; resumable in
``OUT``) with arms ``scratch`` and ``ml100k=transfer:OUT/source`` (fine-tune, popularity
init), and writes ``benchmarks/results/mars_curve.md`` with the protocol, the table, the
machine load and the times. The equivalent CLI::

    warmrec pretrain ... ; warmrec study curve --data ../shared/data/mars --split loo \\
        --model sasrec --arms scratch,ml100k=transfer:OUT/source --fractions 0.05,0.1,1 --seeds 2
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
if not SHARED.exists():
    SHARED = Path("/work/shared/data")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(SHARED / "mars"))
    ap.add_argument("--source-data", default=str(SHARED / "ml-100k"))
    ap.add_argument("--fractions", default="0.05,0.1,1")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--budget", type=float, default=60.0, help="Seconds per fit (time budget).")
    ap.add_argument("--out", default="warmrec-out/mars-curve")
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "mars_curve.md"))
    args = ap.parse_args()

    from warmrec.experiments.spec import fit_run, prepare_run, save_run, spec_from_config
    from warmrec.experiments.studies.curve import run_curve
    from warmrec.io import atomic_write_text
    from warmrec.reports.tables import to_markdown

    load0 = os.getloadavg()
    t_all = time.perf_counter()
    model = {"name": "sasrec", "d": 64, "max_len": 50}
    # patience 5: SASRec's default when mars_curve.md was made (30 since 2026-12-05)
    train = {"epochs": args.epochs, "time_budget_s": args.budget, "num_threads": 1, "patience": 5}
    out = Path(args.out)
    src_dir = out / "source"
    pre_s = 0.0
    if not src_dir.is_dir():
        sp = spec_from_config(
            {"data": {"path": args.source_data}, "model": model, "train": train, "pretrain": True}
        )
        t0 = time.perf_counter()
        save_run(fit_run(sp, prepare_run(sp)), src_dir)
        pre_s = time.perf_counter() - t0
        print(f"pre-trained on {args.source_data} in {pre_s:.0f} s", flush=True)
    base = spec_from_config(
        {
            "data": {"path": args.data},
            "split": {"method": "loo"},
            "model": model,
            "train": train,
            "transfer": {"source": str(src_dir), "strategy": "finetune", "init": "popularity"},
        }
    )
    fractions = [float(x) for x in args.fractions.split(",")]
    res = run_curve(
        base,
        ["scratch", f"ml100k=transfer:{src_dir}"],
        fractions=fractions,
        seeds=tuple(range(args.seeds)),
        out_dir=out / "curve",
        progress=True,
    )
    wall = time.perf_counter() - t_all
    load1 = os.getloadavg()
    fit_s = sum(r["fit_seconds"] for r in res.records)
    cmd = "OMP_NUM_THREADS=1 python benchmarks/mars_curve.py " + " ".join(sys.argv[1:])
    md = [
        "# MARS learning curve: SASRec scratch vs pre-trained on ml-100k",
        "",
        f"Command: `{cmd}` (written by `benchmarks/mars_curve.py`).",
        "",
        f"Protocol: {res.protocol}.",
        "",
        f"Model: SASRec {model}, training {train} (both arms; the source the same on ml-100k, "
        "`pretrain = true`, default split); transfer = fine-tune, popularity init of the MARS "
        "item table. Fractions of the MARS training learners (DataScarcity, nested per seed); "
        "validation and test unchanged. Mean over seeds with 95 % t-interval; ratio to scratch "
        "with a 95 % per-user paired bootstrap interval (test learners pooled over seeds).",
        "",
        to_markdown(res.table),
        f"Machine: shared 2-CPU box, load average {load0[0]:.1f} at the start and "
        f"{load1[0]:.1f} at the end (other engineers' jobs); one torch thread. Runs computed "
        f"now: {len(res.computed)}; fit time of all runs {fit_s:.0f} s; pre-training "
        f"{pre_s:.0f} s (0 = reused); wall {wall:.0f} s. Small epochs and a time budget per fit: "
        "a smoke-sized curve, not the issue's 5-fraction x 3-seed figure.",
        "",
    ]
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.results, "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
