"""SASRec training speed on ml-100k, side by side with RecTools' SASRec (issue 13), in one run.

Measures, one torch thread each, one after another on the same machine:

- the one-thread matmul peak of this CPU (torch ``mm``, float32), the floor everything is held to;
- warmrec SASRec, a few epochs without validation, in two configurations: ``matched`` (RecTools'
  size: d 64, 2 blocks, 2 heads, feed-forward 64, max_len 50, full softmax, dropout 0.2, batch 128)
  and ``default`` (warmrec's ml-100k defaults: feed-forward 256, dropout 0.5, batch 32);
- RecTools 0.19 ``SASRecModel`` (softmax loss, the same size) through
  ``../shared/peers/rectools/run_rectools_ml100k.py --train-windows``, so both train on the same
  97,171 targets (every training position once);
- a ``torch.profiler`` summary of one warmrec epoch (default configuration): the top operators.

Targets/s counts training targets (positions with a next item) per second of training (RecTools:
its per-epoch ``fit_partial`` time, evaluation excluded). GFLOP/s counts the multiply-adds the
network actually computes (every window position through the blocks, every target through the
output layer; backward = 2x forward), against the measured matmul peak.

    python benchmarks/sasrec_speed.py --epochs 3 --rectools-python .peers/rectools/bin/python

Results go to ``benchmarks/_work/sasrec_speed/<label>.json``; ``--render`` writes the Markdown
section of ``benchmarks/results/speed.md`` (between its SASRec markers) from those files, one
subsection per run label; a subsection already in the file whose JSON is not on this machine is
kept as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _bench import SHARED, write_section

WORK = Path(__file__).resolve().parent / "_work" / "sasrec_speed"
BEGIN, END = "<!-- sasrec:begin -->", "<!-- sasrec:end -->"

# (model config, trainer settings)
CONFIGS = {
    "matched": (
        {
            "d": 64,
            "n_layers": 2,
            "n_heads": 2,
            "ffn_dim": 64,
            "max_len": 50,
            "dropout": 0.2,
            "attn_dropout": 0.2,
        },
        {"batch_size": 128, "lr": 1e-3},
    ),
    "default": ({}, {"batch_size": 32, "lr": 2e-3}),
}


def matmul_peak(seconds: float = 2.0) -> dict[str, float]:
    """GFLOP per CPU second of float32 ``mm`` on one thread (the best of repeated bursts): a large
    square product, and the output-layer shape of a SASRec step ([1170, 64] @ [64, 1683])."""
    import torch

    torch.set_num_threads(1)
    out = {}
    for name, (m, k, n) in {
        "square_1024": (1024, 1024, 1024),
        "output_layer": (1170, 64, 1683),
    }.items():
        a, b = torch.randn(m, k), torch.randn(k, n)
        best = 0.0
        t_end = time.perf_counter() + seconds
        while time.perf_counter() < t_end:
            t0 = time.process_time()  # CPU time: a loaded machine's waits do not count
            for _ in range(5):
                a @ b
            best = max(best, 5 * 2 * m * k * n / max(time.process_time() - t0, 1e-9) / 1e9)
        out[name] = best
    return out


def step_flops(cfg, batch: dict, n_items: int) -> float:
    """Multiply-add FLOPs (x2) of one training step: forward over every window position, the
    output layer over the targets, backward twice the forward."""
    b, length = batch["items"].shape
    pos, d, f = b * length, cfg.d, cfg.ffn_dim
    targets = int((batch["targets"] > 0).sum())
    block = (
        2 * pos * d * 3 * d
        + 2 * pos * d * d
        + 2 * 2 * pos * d * f
        + 2 * 2 * b * length * length * d
    )
    forward = cfg.n_layers * block + 2 * targets * d * n_items
    return 3.0 * forward


def warmrec_run(name: str, epochs: int, profile: bool) -> dict:
    import torch

    from warmrec.data.prepared import prepare
    from warmrec.data.readers import load_interactions
    from warmrec.registry import get_model
    from warmrec.training.loop import TrainerConfig, make_optimizer, optimizer_step

    torch.set_num_threads(1)
    torch.manual_seed(0)
    inter = load_interactions(SHARED / "data" / "ml-100k")
    prep = prepare(inter.interactions, split="loo", split_options={"time_order": "recbole"})
    model_cfg, trainer = CONFIGS[name]
    m = get_model("sasrec", model_cfg)
    m.device = torch.device("cpu")
    m.setup_training(prep.train)
    data = m.training_data(prep.train)
    tc = TrainerConfig(**trainer)
    opt = make_optimizer(m.optimizer_groups(tc.weight_decay), tc)
    rng = np.random.default_rng(0)
    m.net.train()
    n_items = m.n_items

    def epoch() -> tuple[int, float, float, float]:
        n = flops = 0
        t0, c0 = time.perf_counter(), time.process_time()
        for batch in data.batches(tc.batch_size, rng):
            optimizer_step(m, batch, opt)
            n += int((batch["targets"] > 0).sum())
            flops += step_flops(m.config, batch, n_items)
        return n, time.perf_counter() - t0, time.process_time() - c0, flops

    rows = [epoch() for _ in range(epochs)]
    out = {
        "label": name,
        "config": {**model_cfg, **trainer},
        "targets_per_epoch": rows[0][0],
        "epoch_wall_s": [r[1] for r in rows],
        "epoch_cpu_s": [r[2] for r in rows],
        "gflop_per_epoch": float(np.mean([r[3] for r in rows])) / 1e9,
    }
    if profile:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as prof

        with prof(activities=[ProfilerActivity.CPU]) as p:
            epoch()
        ka = sorted(p.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        total = sum(e.self_cpu_time_total for e in ka)
        out["profile"] = [
            {
                "op": e.key,
                "self_s": e.self_cpu_time_total / 1e6,
                "share": e.self_cpu_time_total / total,
                "calls": e.count,
            }
            for e in ka[:12]
        ]
        out["profile_total_s"] = total / 1e6
    return out


CPU_CLOCK = (
    "import runpy, sys, time; time.perf_counter = time.process_time; "
    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


def rectools_run(python: str, epochs: int, clock: str) -> dict | None:
    """RecTools' SASRec for ``epochs`` epochs through the peer script. With ``clock="cpu"`` the
    script's timer (``time.perf_counter``) is replaced by the process's CPU time, so its
    per-epoch figure is CPU seconds like warmrec's ``CPU s / epoch`` (steadier on a loaded
    machine; on an idle one, one thread, the two agree)."""
    script = SHARED / "peers" / "rectools" / "run_rectools_ml100k.py"
    if not Path(python).exists():
        print(f"no RecTools environment at {python}: skipped", flush=True)
        return None
    out = WORK / "rectools_raw.json"
    args = [str(script), "--models", "SASRec-softmax", "--train-windows", "--threads", "1"]
    args += ["--max-epochs", str(epochs), "--patience", "1000", "--out", str(out)]
    cmd = [python, "-c", CPU_CLOCK, *args] if clock == "cpu" else [python, *args]
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    r = json.loads(out.read_text())
    mod = r["models"][0]
    times = [x["train_s"] for x in mod["log"]]
    return {
        "label": "rectools",
        "config": mod["config"],
        "targets_per_epoch": r["data_stats"]["train_targets"],
        **({"epoch_cpu_s": times} if clock == "cpu" else {"epoch_wall_s": times}),
    }


def load_avg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rectools-python", default=".peers/rectools/bin/python")
    ap.add_argument(
        "--label", default="after", help="name of this run's JSON (e.g. before / after)"
    )
    ap.add_argument("--no-rectools", action="store_true")
    ap.add_argument(
        "--peer-clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="time RecTools' epochs in CPU seconds (default) or wall seconds",
    )
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--render", action="store_true", help="only write speed.md from kept runs")
    ap.add_argument("--out", default="benchmarks/results/speed.md")
    a = ap.parse_args()
    if a.child:
        name, profile = a.child.split(":")
        print("RESULT " + json.dumps(warmrec_run(name, a.epochs, profile == "1")))
        return
    if a.render:
        render(a.out)
        return
    WORK.mkdir(parents=True, exist_ok=True)
    from warmrec.training.machine import cpu_info

    res: dict = {
        "cpu": cpu_info().describe(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "load": [load_avg()],
    }
    res["peak"] = matmul_peak()
    print("peak", res["peak"], flush=True)

    def child(spec: str) -> dict:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        proc = subprocess.run(
            [sys.executable, __file__, "--child", spec, "--epochs", str(a.epochs)],
            capture_output=True,
            text=True,
            env=env,
        )
        if proc.returncode:
            raise RuntimeError(proc.stderr[-3000:])
        return json.loads(
            [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:]
        )

    runs = [child("matched:0")]
    print(runs[-1], flush=True)
    res["load"].append(load_avg())
    if not a.no_rectools:
        rt = rectools_run(a.rectools_python, a.epochs, a.peer_clock)
        if rt:
            runs.append(rt)
            print(rt, flush=True)
    res["load"].append(load_avg())
    runs.append(child("default:1"))
    print({k: v for k, v in runs[-1].items() if k != "profile"}, flush=True)
    res["load"].append(load_avg())
    res["runs"] = runs
    res["command"] = " ".join(["python benchmarks/sasrec_speed.py", *sys.argv[1:]])
    (WORK / f"{a.label}.json").write_text(json.dumps(res, indent=1))
    render(a.out)


def _rate(r: dict, clock: str = "wall") -> float | None:
    times = r.get(f"epoch_{clock}_s")
    return r["targets_per_epoch"] / float(np.median(times)) if times else None


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def kept_runs(out_path: str) -> dict[str, str]:
    """The ``### run `label``` subsections already in the file's SASRec section, by label (runs
    whose JSON is not on this machine are kept as they are)."""
    path = Path(out_path)
    text = path.read_text() if path.exists() else ""
    if BEGIN not in text or END not in text:
        return {}
    body = text.split(BEGIN, 1)[1].split(END, 1)[0]
    out = {}
    for part in body.split("\n### run `")[1:]:
        label = part.split("`", 1)[0]
        out[label] = ("### run `" + part).rstrip() + "\n"
    return out


def render(out_path: str) -> None:
    runs = {
        p.stem: json.loads(p.read_text())
        for p in sorted(WORK.glob("*.json"))
        if p.stem != "rectools_raw"
    }
    lines = [BEGIN, "## SASRec on ml-100k against RecTools (`benchmarks/sasrec_speed.py`)", ""]
    for label, text in kept_runs(out_path).items():
        if label not in runs:
            lines += text.split("\n")
    for label, res in runs.items():
        peak = res["peak"]["square_1024"]
        lines += [
            f"### run `{label}`",
            "",
            f"Command: `{res['command']}`  ",
            *([f"Machine: {res['cpu']}  "] if "cpu" in res else []),
            f"One torch thread per run; load average (1/5/15 min) before, between and after the runs: "
            f"{' | '.join(res['load'])} (2 cores shared with other jobs: wall times are noisy). "
            f"Measured one-thread matmul peak: {peak:.1f} GFLOP/s (1024^3), "
            f"{res['peak']['output_layer']:.1f} GFLOP/s at the output layer's shape.",
            "",
            "| run | config | targets / epoch | wall s / epoch | CPU s / epoch | targets / wall s | "
            "targets / CPU s | GFLOP / epoch | GFLOP / CPU s | share of peak |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        by = {r["label"]: r for r in res["runs"]}
        for r in res["runs"]:
            wall = np.median(r["epoch_wall_s"]) if "epoch_wall_s" in r else None
            cpu = np.median(r["epoch_cpu_s"]) if "epoch_cpu_s" in r else None
            gf = r.get("gflop_per_epoch")
            cfg = ", ".join(
                f"{k}={v}" for k, v in r["config"].items() if k != "item_net_block_types"
            )
            name = "RecTools" if r["label"] == "rectools" else "warmrec " + r["label"]
            per_s = gf / cpu if gf and cpu else None
            lines.append(
                f"| {name} | {cfg} | {r['targets_per_epoch']:,} | {_fmt(wall, '.2f')} | "
                f"{_fmt(cpu, '.2f')} | {_fmt(_rate(r), ',.0f')} | {_fmt(_rate(r, 'cpu'), ',.0f')} | "
                f"{_fmt(gf, '.1f')} | {_fmt(per_s, '.1f')} | "
                f"{_fmt(per_s / peak if per_s else None, '.0%')} |"
            )
        if "rectools" in by:
            lines.append("")
            for lab in ("matched", "default"):
                for clock in ("cpu", "wall"):
                    mine, peer = (
                        _rate(by.get(lab, {}), clock) if lab in by else None,
                        _rate(by["rectools"], clock),
                    )
                    if mine and peer:
                        lines.append(
                            f"- warmrec {lab} / RecTools targets per {clock} second: "
                            f"**{mine / peer:.2f}x** (goal 2x)"
                        )
        for r in res["runs"]:
            if "profile" in r:
                lines += [
                    "",
                    f"Top operators, one epoch of warmrec `{r['label']}` under torch.profiler "
                    f"(self CPU time, {r['profile_total_s']:.1f} s in all):",
                    "",
                    "| operator | self s | share | calls |",
                    "|---|---|---|---|",
                ]
                lines += [
                    f"| `{p['op']}` | {p['self_s']:.2f} | {p['share']:.0%} | {p['calls']} |"
                    for p in r["profile"]
                ]
        lines.append("")
    lines.append(END)
    block = "\n".join(lines)
    write_section(Path(out_path), BEGIN, END, block, "# Training speed (issue 13)\n\n")
    print(block)


if __name__ == "__main__":
    main()
