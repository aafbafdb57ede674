"""The thread policy on a busy machine: the default SASRec run on ml-100k timed quiet and beside
four busy single-thread processes, with the default thread policy and with the old behaviour
(torch's default thread count), written to its section of ``benchmarks/results/speed.md``.

The run is the user's command, ``warmrec train --model sasrec --data ml-100k --split loo``, with
a short fixed number of epochs (``--epochs``, validation after each, as by default), each in a
fresh process (wall time from start to exit: start-up, data, training, validation, saving).
Two thread settings:

- ``policy``: no ``--threads`` (``TrainerConfig.num_threads = 0``, :mod:`warmrec.training.threads`:
  the CPUs this process may use less those other work keeps busy);
- ``torch default``: ``--threads N`` with N = what torch picks in a fresh process (one thread per
  core), the behaviour before the policy;
- ``one thread``: ``--threads 1``, quiet only: with it the section states the fair-share floor of
  the ratio, what a one-thread run would take if it got exactly its share of the CPUs beside the
  busy processes (``CPUs / (busy + 1)`` of a CPU) over the quiet policy run.

``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` are removed from the runs' environment (they would
override the policy). The busy processes are ``python -c "while True: pass"`` (one thread each),
started by this script, given ``--settle`` seconds so that the load average sees them (as on a
machine that was already busy), and stopped by their process ids when the busy runs end (also
on an error or Ctrl-C). A run that takes more than ``--cap`` times the first quiet run is
stopped and shown as a lower bound ("> N s"). Order per repeat: quiet policy, quiet torch default, then busy policy,
busy torch default. The load is sampled through the whole run and printed per run; quiet runs
only count as quiet when the machine was (see ``_bench.load_verdict``).

Goal (issue 22): beside four busy processes the default run takes at most 3x its quiet time.

    python benchmarks/busy_machine.py --epochs 2 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _bench import SHARED, LoadSampler, load_verdict, quiet_limit, write_section

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / "_work" / "busy_machine"
OUT = HERE / "results" / "speed.md"
BEGIN, END = "<!-- busy_machine:begin -->", "<!-- busy_machine:end -->"
GOAL = 3.0
SPIN = "while True: pass"


def run_env() -> dict[str, str]:
    """This environment less the thread variables that would override the policy."""
    return {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}


def torch_default_threads() -> int:
    """The intra-op thread count torch picks in a fresh process left to itself."""
    out = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
        capture_output=True,
        text=True,
        env=run_env(),
        check=True,
    )
    return int(out.stdout.split()[-1])


def train_command(data: Path, epochs: int, out: Path, threads: int | None) -> list[str]:
    cmd = [sys.executable, "-m", "warmrec", "train", "--model", "sasrec", "--data", str(data)]
    cmd += ["--split", "loo", "--epochs", str(epochs), "--out", str(out)]
    return cmd + (["--threads", str(threads)] if threads else [])


def timed_run(cmd: list[str], cap: float | None = None) -> dict:
    """Wall and CPU seconds of one run (a fresh process), and the load at its start and end. A
    run still going after ``cap`` seconds is stopped (killed) and recorded as ``stopped``: its
    wall time is then a lower bound."""
    from warmrec.training.threads import policy_threads

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    l0, t0 = os.getloadavg()[0], time.perf_counter()
    guess = policy_threads()  # what the run's policy will see (this process is idle meanwhile)
    stopped = False
    try:
        res = subprocess.run(
            cmd, capture_output=True, text=True, env=run_env(), cwd=ROOT, timeout=cap
        )
    except subprocess.TimeoutExpired:  # subprocess.run has killed and reaped the run
        stopped = True
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if not stopped and res.returncode:
        raise RuntimeError(f"{shlex.join(cmd)} failed:\n{res.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "load": [l0, os.getloadavg()[0]],
        "policy_sees": guess,
        "stopped": stopped,
    }


class Busy:
    """``n`` busy single-thread processes, stopped by their ids on exit of the ``with``."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> Busy:
        for _ in range(self.n):
            self.procs.append(subprocess.Popen([sys.executable, "-c", SPIN]))
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(SHARED / "data" / "ml-100k"))
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--busy", type=int, default=4, help="busy single-thread processes")
    ap.add_argument("--settle", type=float, default=60.0, help="seconds between start and timing")
    ap.add_argument(
        "--cap",
        type=float,
        default=20.0,
        help="stop a run after this many times the first quiet run's wall time (a lower bound)",
    )
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--render", action="store_true", help="only rewrite the section from last.json")
    a = ap.parse_args()
    if a.render:
        res = json.loads((WORK / "last.json").read_text())
        block = render(res)
        write_section(Path(a.out), BEGIN, END, block, "# Training speed\n\n", load=res["load"])
        print(block)
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the busy processes are stopped
    data = Path(a.data)
    if not data.exists():
        sys.exit(f"busy_machine: no ml-100k at {data} (set WARMREC_SHARED or --data)")
    old = torch_default_threads()
    settings = {"policy": None, "torch default": old, "one thread": 1}
    quiet_only = {"one thread"}  # for the fair-share floor (see render)
    sampler = LoadSampler(every=5.0)
    runs: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:

        def one(state: str, name: str) -> None:
            cmd = train_command(data, a.epochs, Path(tmp) / "model", settings[name])
            cap = a.cap * runs[0]["wall_s"] if runs else None
            r = {"state": state, "setting": name, **timed_run(cmd, cap)}
            r["threads"] = settings[name] or r["policy_sees"]
            runs.append(r)
            print(json.dumps(r), flush=True)

        for _ in range(a.repeats):
            for name in settings:
                one("quiet", name)
            with Busy(a.busy):
                time.sleep(a.settle)
                for name in settings:
                    if name not in quiet_only:
                        one(f"{a.busy} busy", name)
    load = sampler.stop()
    result = {
        "command": "python benchmarks/busy_machine.py " + shlex.join(sys.argv[1:]),
        "run": shlex.join(train_command(Path("DATA"), a.epochs, Path("OUT"), None)[1:]),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "epochs": a.epochs,
        "busy": a.busy,
        "torch_default_threads": old,
        "cpus": len(os.sched_getaffinity(0)),
        "load": load,
        "verdict": sampler.verdict(),
        "runs": runs,
    }
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "last.json").write_text(json.dumps(result, indent=1))
    block = render(result)
    if not a.no_write:
        write_section(Path(a.out), BEGIN, END, block, "# Training speed\n\n", load=load)
    print(block)


def render(res: dict) -> str:
    """The Markdown section of a result (see :func:`main`)."""
    runs = res["runs"]
    busy = f"{res['busy']} busy"
    quiet_loads = [x for r in runs if r["state"] == "quiet" for x in r["load"]]
    lines = [
        BEGIN,
        "## The thread policy beside busy processes (`benchmarks/busy_machine.py`)",
        "",
        f"- `{res['command']}` ({res['when']}); each run: `python {res['run']}` "
        f"(epochs: {res['epochs']}, validation after each), a fresh process, wall seconds to "
        "exit.",
        f"- Whole run: **{res['verdict']}**. Quiet runs: "
        f"**{load_verdict(quiet_loads)}**"
        + ("" if max(quiet_loads, default=0) <= quiet_limit() else " - not a quiet baseline")
        + ".",
        f"- Settings: `policy` = no `--threads` (the default); `torch default` = `--threads "
        f"{res['torch_default_threads']}` (torch's own count, the behaviour before the policy).",
        "",
        "| state | setting | threads (policy: as seen at the start) | wall s | CPU s | "
        "load (start, end) |",
        "|---|---|---|---|---|---|",
    ]
    for r in runs:
        wall = f"> {r['wall_s']:.0f} (stopped)" if r.get("stopped") else f"{r['wall_s']:.1f}"
        lines.append(
            f"| {r['state']} | {r['setting']} | {r['threads']} | {wall} | "
            f"{r['cpu_s']:.1f} | {r['load'][0]:.1f}, {r['load'][1]:.1f} |"
        )
    lines += ["", f"Busy / quiet wall time (median of repeats; goal <= {GOAL:.0f}x):", ""]
    for name in dict.fromkeys(r["setting"] for r in runs):
        q = [r["wall_s"] for r in runs if r["setting"] == name and r["state"] == "quiet"]
        bs = [r for r in runs if r["setting"] == name and r["state"] == busy]
        if q and bs:
            ratio = statistics.median(r["wall_s"] for r in bs) / statistics.median(q)
            more = any(r.get("stopped") for r in bs)
            mark = "meets" if ratio <= GOAL and not more else "misses"
            lines.append(f"- {name}: **{'> ' if more else ''}{ratio:.2f}x** ({mark} the goal)")
    one = [r["wall_s"] for r in runs if r["setting"] == "one thread" and r["state"] == "quiet"]
    pol = [r["wall_s"] for r in runs if r["setting"] == "policy" and r["state"] == "quiet"]
    cpus = res.get("cpus")
    if one and pol and cpus:
        share = min(1.0, cpus / (res["busy"] + 1))
        floor = statistics.median(one) / share / statistics.median(pol)
        lines += [
            "",
            f"Fair-share floor: a one-thread run beside {res['busy']} busy processes on {cpus} CPUs "
            f"gets {share:.2f} of a CPU; quiet it takes {statistics.median(one):.1f} s against the "
            f"policy's {statistics.median(pol):.1f} s, so exactly its share would make it "
            f"**{floor:.2f}x** the quiet policy run (below that only by taking more than its share).",
        ]
    lines += ["", END]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
