"""GRU4Rec training speed (and accuracy) side by side with the official implementation.

Both train on nowplaying-1m's own ``train.csv`` at the same settings: 100 GRU units, tied
("constrained") embedding, 256 session-parallel lanes, BPR-max over the mini-batch's other
targets plus 2,048 shared negatives drawn by ``count ** 0.5``, score regularisation 1.0, ELU 0.5,
no dropout, Adagrad with learning rate 0.05 (the official ``IndexedAdagradM`` with momentum 0;
warmrec's ``RowAdagrad`` on the item table and torch's fused Adagrad on the GRU), one torch
thread. warmrec runs without its seen-item bias (``seen_bias=False``), i.e. the official model.

The official code (``../shared/peers/gru4rec-official``, research-only licence: run, never
copied) is started as its own process and its printed per-epoch events/s are read back; warmrec
trains through its shared loop (``warmrec.training.loop.train``) in this process, timed per epoch
by the loop. Events = (input, target) pairs trained. With ``--test`` both score every next item
of each ``test.csv`` session given its prefix (test items unknown to training dropped, as the
official evaluation does; ties counted against the model, the official ``-e conservative``).

    python benchmarks/gru4rec_speed.py --epochs 1 --test

The run writes its own section of ``benchmarks/results/gru4rec_speed.md`` (between the
``gru4rec_speed`` markers; ``--out`` names another file, ``--no-write`` none): the command, the
machine (CPU model, cache sizes), the load sampled during the runs and whether that counts as
quiet, the fused BPR-max's chunk size in force, and the tables. Its figures are also kept in
``benchmarks/_work/gru4rec_speed/last.json`` (read by ``benchmarks/bench_quick.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from _bench import SHARED, LoadSampler, write_section

DATA = SHARED / "data" / "nowplaying-1m"
PEER = SHARED / "peers" / "gru4rec-official"
WORK = Path(__file__).resolve().parent / "_work" / "gru4rec_speed"
OUT = Path(__file__).resolve().parent / "results" / "gru4rec_speed.md"
BEGIN, END = "<!-- gru4rec_speed:begin -->", "<!-- gru4rec_speed:end -->"
TITLE = "# GRU4Rec training speed: warmrec vs the official implementation\n\n"

OFFICIAL_PARAMS = (
    "loss=bpr-max,constrained_embedding=True,embedding=0,elu_param=0.5,layers=100,"
    "n_epochs={epochs},batch_size=256,dropout_p_embed=0.0,dropout_p_hidden=0.0,"
    "learning_rate=0.05,momentum=0.0,n_sample=2048,sample_alpha=0.5,bpreg=1.0,logq=0.0"
)
WARMREC_CONFIG = {
    "loss": "bpr-max",
    "n_negatives": 2048,
    "negative_sampling": "pop",
    "pop_alpha": 0.5,
    "bpr_reg": 1.0,
    "elu_param": 0.5,
    "in_batch": True,
    "hidden_size": 100,
    "tied": True,
    "seen_bias": False,
    "max_len": 50,
}
TRAINER = {"batch_size": 256, "optimizer": "adagrad", "lr": 0.05, "num_threads": 1, "seed": 0}


def load() -> float:
    return os.getloadavg()[0]


def tsv_for_official(name: str) -> Path:
    """The official reader wants a ``SessionId ItemId Time`` header."""
    WORK.mkdir(parents=True, exist_ok=True)
    out = WORK / f"np_{name}.tsv"
    if not out.exists():
        lines = (DATA / f"{name}.csv").read_text().splitlines()
        out.write_text("\n".join(["SessionId\tItemId\tTime", *lines[1:]]) + "\n")
    return out


def n_pairs() -> int:
    """(input, target) pairs of ``train.csv``: events minus sessions (no session is empty)."""
    lines = (DATA / "train.csv").read_text().splitlines()[1:]
    return len(lines) - len({line.split("\t", 1)[0] for line in lines})


MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "268435456"}
"""glibc's environment form of the settings ``warmrec.training.memory`` makes with ``mallopt``."""


def official_python() -> str:
    """The interpreter for the official code: ``.peers/gru4rec-official/bin/python`` where that
    venv exists (see the peer's README), else this one (it needs torch, numpy and pandas)."""
    peer = Path(__file__).resolve().parents[1] / ".peers" / "gru4rec-official" / "bin" / "python"
    return str(peer) if peer.exists() else sys.executable


CPU_CLOCK = (
    "import os, runpy, sys, time; time.time = time.process_time; sys.argv = sys.argv[1:]; "
    "sys.path.insert(0, os.path.dirname(sys.argv[0])); "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)
"""Runs a script with ``time.time`` replaced by the process's CPU time (the official code times
its epochs with ``time.time``), so its printed epoch seconds are CPU seconds; its code is run
unchanged."""


def run_official(
    epochs: int,
    test: bool,
    extra_env: dict | None = None,
    python: str | None = None,
    clock: str = "cpu",
) -> dict:
    """The official code in its own process; its printed per-epoch seconds are CPU seconds with
    ``clock="cpu"`` (see ``CPU_CLOCK``), wall seconds with ``"wall"``."""
    args = [
        str(PEER / "run.py"),
        str(tsv_for_official("train")),
        "-m",
        "20",
        "-e",
        "conservative",
        "-d",
        "cpu",
        "-ps",
        OFFICIAL_PARAMS.format(epochs=epochs),
    ]
    if test:
        args[2:2] = ["-t", str(tsv_for_official("test"))]
    py = python or official_python()
    cmd = [py, "-c", CPU_CLOCK, *args] if clock == "cpu" else [py, *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **(extra_env or {})}
    l0, t0 = load(), time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    out = {"wall": time.perf_counter() - t0, "load": (l0, load()), "pairs": n_pairs()}
    ep = re.findall(r"Epoch(\d+) --> loss: ([\d.]+) \t\(([\d.]+)s\) .*\| (\d+) e/s\]", res.stdout)
    # its own "e/s" counts every lane of every mini-batch (256 x steps), idle lanes included
    # (and is per CPU second with clock="cpu")
    key = "cpu_s" if clock == "cpu" else "wall_s"
    out["epochs"] = [{key: float(sec), "printed_eps": int(e)} for _, _, sec, e in ep]
    m = re.search(r"Recall@20: ([\d.]+) MRR@20: ([\d.]+)", res.stdout)
    if m:
        out["recall"], out["mrr"] = float(m.group(1)), float(m.group(2))
    return out


def run_warmrec(epochs: int, test: bool, config: dict, trainer: dict) -> dict:
    import polars as pl
    import torch

    from warmrec.data.dataset import EvalSet, SequenceDataset
    from warmrec.evaluation.evaluate import evaluate
    from warmrec.models.gru4rec import GRU4Rec

    torch.set_num_threads(1)
    schema = {"session_id": pl.Utf8, "item_id": pl.Utf8, "timestamp": pl.Int64}
    train = pl.read_csv(DATA / "train.csv", separator="\t", schema_overrides=schema)
    ds = SequenceDataset.from_frame(train)
    model = GRU4Rec(**config)
    l0, t0 = load(), time.perf_counter()
    model.fit(ds, epochs=epochs, **trainer)
    out: dict = {"wall": time.perf_counter() - t0, "load": (l0, load())}
    out["pairs"] = int((ds.sequences.lengths - 1).clip(0).sum())
    out["epochs"] = [
        {"wall_s": h["train_seconds"], "cpu_s": h.get("train_cpu_seconds")}
        for h in model.train_result.history
    ]
    if test:
        te = pl.read_csv(DATA / "test.csv", separator="\t", schema_overrides=schema)
        te = te.filter(pl.col("item_id").is_in(train["item_id"].unique().implode()))
        ev = EvalSet.from_sessions(te, ds.vocab)
        res = evaluate(model, ev, ["hr@20", "mrr@20"], batch_size=512)
        out["recall"], out["mrr"] = res.summary["hr@20"], res.summary["mrr@20"]
        out["n_test"] = len(ev)
    return out


def profile_warmrec(config: dict, trainer: dict, n_steps: int) -> str:
    """torch.profiler's top operators (self CPU time) over ``n_steps`` training steps of the
    loop (after 10 warm-up steps), from the start of the epoch."""
    import numpy as np
    import polars as pl
    import torch
    from torch.profiler import profile

    from warmrec.data.dataset import SequenceDataset
    from warmrec.models.gru4rec import GRU4Rec
    from warmrec.training.loop import make_optimizer, optimizer_step
    from warmrec.training.memory import keep_freed_memory

    torch.set_num_threads(1)
    keep_freed_memory()  # as the training loop does (TrainerConfig.reuse_memory)
    schema = {"session_id": pl.Utf8, "item_id": pl.Utf8, "timestamp": pl.Int64}
    ds = SequenceDataset.from_frame(
        pl.read_csv(DATA / "train.csv", separator="\t", schema_overrides=schema)
    )
    model = GRU4Rec(**config)
    tc = model.trainer_config(trainer)
    torch.manual_seed(0)
    model.setup_training(ds)
    it = model.training_data(ds).batches(tc.batch_size, np.random.default_rng(0))
    batches = [next(it) for _ in range(n_steps + 10)]
    opt = make_optimizer(model.optimizer_groups(0.0), tc)
    model.net.train()
    for b in batches[:10]:
        optimizer_step(model, b, opt)
    with profile() as prof:
        for b in batches[10:]:
            optimizer_step(model, b, opt)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--test", action="store_true", help="also score test.csv")
    ap.add_argument("--skip-official", action="store_true")
    ap.add_argument("--official-python", default=None, help="interpreter for the official code")
    ap.add_argument(
        "--peer-clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="the official's epoch timer: CPU seconds (default; steadier beside other work) or wall",
    )
    ap.add_argument(
        "--tune-chunk",
        action="store_true",
        help="first time the fused BPR-max's chunk sizes and keep the fastest for this machine",
    )
    ap.add_argument("--dense", action="store_true", help="also run warmrec with dense tables")
    ap.add_argument(
        "--matmul-precision",
        choices=("auto", "float32", "bfloat16"),
        default="auto",
        help="warmrec's matmul_precision (auto: bfloat16 products where the CPU has them natively)",
    )
    ap.add_argument("--profile", type=int, default=0, help="profile this many steps")
    ap.add_argument(
        "--official-malloc",
        action="store_true",
        help="also run the official code with warmrec's glibc allocator settings (a row apart)",
    )
    ap.add_argument("--out", default=str(OUT), help="results file whose section is replaced")
    ap.add_argument("--no-write", action="store_true", help="print the section only")
    args = ap.parse_args()
    sampler = LoadSampler(every=10.0)
    rows = []
    if args.tune_chunk:
        import torch

        from warmrec.models.bpr_max_linear import tune_chunk_bytes

        torch.set_num_threads(1)
        print("chunk tuning:", tune_chunk_bytes(), flush=True)
    if not args.skip_official:
        try:
            off = run_official(
                args.epochs, args.test, python=args.official_python, clock=args.peer_clock
            )
        except (OSError, subprocess.CalledProcessError) as exc:
            tail = (getattr(exc, "stderr", "") or str(exc)).strip().splitlines()[-1:]
            print(f"official GRU4Rec could not run ({'; '.join(tail)}): warmrec's side only")
        else:
            rows.append(("official GRU4Rec (PyTorch, d1fc311)", off))
            print(rows[-1], flush=True)
    WARMREC_CONFIG["matmul_precision"] = args.matmul_precision
    rows.append(("warmrec GRU4Rec", run_warmrec(args.epochs, args.test, WARMREC_CONFIG, TRAINER)))
    print(rows[-1], flush=True)
    if args.official_malloc:
        name = "official GRU4Rec + warmrec's malloc settings (not a baseline)"
        off = run_official(
            args.epochs, args.test, MALLOC_ENV, args.official_python, args.peer_clock
        )
        rows.append((name, off))
        print(rows[-1], flush=True)
    if args.dense:
        cfg = {**WARMREC_CONFIG, "sparse_items": False}
        rows.append(("warmrec GRU4Rec, dense tables", run_warmrec(1, False, cfg, TRAINER)))
        print(rows[-1], flush=True)
    profiles = {}
    if args.profile:
        profiles["row-wise tables (default)"] = profile_warmrec(
            WARMREC_CONFIG, TRAINER, args.profile
        )
        dense = {**WARMREC_CONFIG, "sparse_items": False}
        profiles["dense tables (`sparse_items=False`)"] = profile_warmrec(
            dense, TRAINER, args.profile
        )
    load = sampler.stop()
    write(rows, args, profiles, load, sampler.verdict())


def rate(r: dict, clock: str) -> float | None:
    """Mean pairs per ``clock`` (``wall``/``cpu``) second over a row's epochs (None if untimed)."""
    secs = [e.get(f"{clock}_s") for e in r["epochs"]]
    if not secs or any(x is None for x in secs):
        return None
    return sum(r["pairs"] / x for x in secs) / len(secs)


def ratios(rows: list) -> dict[str, dict[str, float]]:
    """Per clock, each row's mean pairs per second relative to the first official row's (a clock
    only where both are timed by it)."""
    official = [r for n, r in rows if n.startswith("official")]
    out: dict[str, dict[str, float]] = {}
    for clock in ("wall", "cpu"):
        base = rate(official[0], clock) if official else None
        if base:
            out[clock] = {n: rate(r, clock) / base for n, r in rows if rate(r, clock)}
    return out


def write(rows: list, args: argparse.Namespace, profiles: dict, load: str, verdict: str) -> None:
    import torch

    from warmrec.models.bpr_max_linear import chunk_bytes, matmul_dtype, native_bf16

    size, source = chunk_bytes()
    cmd = "python benchmarks/gru4rec_speed.py " + shlex.join(sys.argv[1:])
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "last.json").write_text(
        json.dumps(
            {
                "command": cmd,
                "when": when,
                "load": load,
                "verdict": verdict,
                "rows": [[n, r] for n, r in rows],
                "ratios": ratios(rows),
            },
            indent=1,
        )  # fmt: skip
    )
    lines = [
        BEGIN,
        f"## Latest run ({when}; written by the script)",
        "",
        f"- `{cmd}`",
        f"- **{verdict}**.",
        f"- {os.cpu_count()} logical CPUs, Python {platform.python_version()}, torch "
        f"{torch.__version__}; one torch thread per run, runs one after another in the same "
        f"window; fused BPR-max row chunks of {size:,} bytes per score buffer ({source}); "
        f"warmrec's training products in "
        f"{str(matmul_dtype(args.matmul_precision)).removeprefix('torch.')} "
        f"(`matmul_precision={args.matmul_precision}`; native bfloat16 products on this CPU: "
        f"{'yes' if native_bf16() else 'no'}).",
        "- Data: nowplaying-1m `train.csv` (489,367 events, 121K items); settings: see the "
        "script's docstring (official: `" + OFFICIAL_PARAMS.format(epochs=args.epochs) + "`).",
        "",
        "Events/s = (input, target) pairs trained per second: 440,406 pairs per epoch for both "
        "(the official's own printed figure counts all 256 lanes of each of its 2,737 "
        "mini-batches, idle lanes of the epoch's long tail included, ~700K; shown apart). Wall "
        "seconds are the goal's measure on a quiet machine; CPU seconds (the official's epoch "
        "timer run on the process's CPU clock with `--peer-clock cpu`, warmrec's loop's own "
        "`train_cpu_seconds`) move less when other work shares the machine. '-': not timed "
        "by that clock in this run.",
        "",
        "| implementation | epoch | wall s | CPU s | events/s (wall) | events/CPU s | "
        "official's printed e/s | load (start, end) |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def num(x: float | None, spec: str) -> str:
        return "-" if x is None else format(x, spec)

    for name, r in rows:
        for i, e in enumerate(r["epochs"], 1):
            wall, cpu, own = e.get("wall_s"), e.get("cpu_s"), e.get("printed_eps")
            lines.append(
                f"| {name} | {i} | {num(wall, '.1f')} | {num(cpu, '.1f')} | "
                f"{num(wall and r['pairs'] / wall, ',.0f')} | "
                f"{num(cpu and r['pairs'] / cpu, ',.0f')} | {num(own, ',')} "
                f"| {r['load'][0]:.1f}, {r['load'][1]:.1f} |"
            )
    for clock, rel in ratios(rows).items():
        unit = "wall second" if clock == "wall" else "CPU second"
        lines += ["", f"Mean events per {unit} relative to the official (same pairs):", ""]
        for name, r in rows:
            if name in rel:
                lines.append(
                    f"- {name}: {rate(r, clock):,.0f} events/{clock} s, **{rel[name]:.2f}x**"
                )
    if any("recall" in r for _, r in rows):
        lines += ["", "| implementation | Recall@20 | MRR@20 |", "|---|---|---|"]
        for name, r in rows:
            if "recall" in r:
                lines.append(f"| {name} | {r['recall']:.4f} | {r['mrr']:.4f} |")
    for name, table in profiles.items():
        lines += ["", f"Top operators, warmrec, {name}, {args.profile} steps:", "", "```"]
        lines += [table.rstrip(), "```"]
    lines += ["", END]
    block = "\n".join(lines)
    if not args.no_write:
        write_section(Path(args.out), BEGIN, END, block, TITLE, load=load)
    print(block)


if __name__ == "__main__":
    main()
