"""Run recipes in full (``warmrec recipe run NAME --out DIR``) and record each in
``benchmarks/results/recipes.md``: the command, its time, peak memory, machine load, and the
recipe's figures beside the source project's (the report's table, copied from the run).

Each recipe runs in its own process (``python -m warmrec recipe run ...``); a killed run is
resumed by running this script again with the same ``--work`` folder (the recipe skips its
finished steps), so the time recorded is the sum of the steps' times from the recipe's
``state.json`` (the time of the invocation that finished it is noted beside), and the peak
memory is the largest resident size any step reached.

    python benchmarks/recipes.py --recipes cloudera-w2v --data-root ../shared/data
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

from _bench import LoadSampler, write_section

RESULTS = Path(__file__).parent / "results" / "recipes.md"
SECTIONS = (
    "## Its figures beside ours",
    "## The goal",
    "## Results of the runs",
    "## The search",
    "## BST's context and pred.csv",
    "## Sessions",
    "## Transfer study (ml-100k source)",
    "## The studies",
)
"""The report's sections copied into the results file (the rest: plots, steps, data)."""
TITLE = (
    "# Recipes: one command per source project, in full\n\n"
    "Written by `benchmarks/recipes.py`; one section per recipe, each from the run it names.\n"
)


def run_one(name: str, work: Path, data_root: str | None, quick: bool, nice: int) -> dict:
    # a quick run has its own folder: a full run's steps are neither replaced by it nor
    # resumed from it
    out = work / (f"{name}-quick" if quick else name)
    cmd = [sys.executable, "-m", "warmrec", "recipe", "run", name, "--out", str(out)]
    if quick:
        cmd.insert(5, "--quick")
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    if data_root:
        env["WARMREC_DATA"] = data_root
    if nice:
        cmd = ["nice", "-n", str(nice), *cmd]
    load = LoadSampler(30.0)
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    t0 = time.perf_counter()
    work.mkdir(parents=True, exist_ok=True)
    with open(work / f"{name}.log", "a") as log:  # the recipe's progress lines
        proc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    load_text = load.stop()
    if proc.returncode != 0:
        raise SystemExit(f"recipe {name} failed (exit {proc.returncode}): see {work / name}.log")
    state = json.loads((out / "state.json").read_text())
    steps = state["steps"]
    # this script's record of every invocation (the load during each), beside the recipe's
    log_path = work / f"{out.name}.bench.json"
    runs = json.loads(log_path.read_text()) if log_path.is_file() else []
    runs.append(
        {
            "started": started,
            "wall_s": wall,
            "ran": state["last_run"]["ran"],
            "resumed": state["last_run"]["skipped"],
            "load": load_text,
        }
    )
    from warmrec.io import atomic_write_text

    atomic_write_text(log_path, json.dumps(runs, indent=1))
    return {
        "name": name,
        "out": out,
        "cmd": cmd,
        "wall_s": wall,
        "steps_s": sum(s["seconds"] for s in steps.values()),
        "peak_mb": max(s["peak_rss_mb"] for s in steps.values()),
        "runs": runs,
        "state": state,
    }


def markers(name: str, quick: bool) -> tuple[str, str]:
    """The begin / end markers of a recipe's section: a quick run writes a section of its own
    (it had replaced the full run's, under the hand-written readings of the full figures)."""
    key = f"{name}-quick" if quick else name
    return f"<!-- begin {key} -->", f"<!-- end {key} -->"


def section(r: dict, argv: list[str], quick: bool) -> str:
    name = r["name"]
    report = (r["out"] / "report.md").read_text()
    # the report's "Its figures beside ours" table (and the goal, where the recipe has one)
    keep = []
    for head in SECTIONS:
        if head in report:
            part = report.split(head, 1)[1].split("\n## ", 1)[0]
            # images and their captions stay in the report (paths relative to it)
            lines = part.splitlines()
            part = "\n".join(
                ln
                for j, ln in enumerate(lines)
                if not ln.startswith("![")
                and not (ln.startswith("*") and j >= 2 and lines[j - 2].startswith("!["))
            )
            part = re.sub(r"\n{3,}", "\n\n", part)
            keep.append(f"### {head[3:]}\n\n{part.strip()}\n")
    steps = r["state"]["steps"]
    step_rows = "\n".join(
        f"| {k} | {v['kind']} | {v['seconds']:.1f} | "
        + (f"{v['cpu_s']:.1f}" if "cpu_s" in v else "-")
        + f" | {v['peak_rss_mb']:.0f} |"
        for k, v in steps.items()
    )
    begin, end = markers(name, quick)
    return "\n".join(
        [
            begin,
            f"## {name}{' (quick)' if quick else ''}",
            "",
            f"Command: `python benchmarks/recipes.py {' '.join(argv)}`, which runs "
            f"`warmrec recipe run {name}{' --quick' if quick else ''} --out {r['out']}` "
            f"(data root `{os.environ.get('WARMREC_DATA') or r['data_root']}`).  ",
            f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other work; "
            f"Python {platform.python_version()}; OMP_NUM_THREADS=1; runs at nice "
            f"{r['nice']}.",
            "",
            "| recipe | command | time (s, sum of steps) | peak memory (MiB) |",
            "|---|---|---:|---:|",
            f"| {name} | `warmrec recipe run {name}{' --quick' if quick else ''} --out DIR` | "
            f"{r['steps_s']:.0f} | {r['peak_mb']:.0f} |",
            "",
            "Invocations of this script (1-minute load average sampled every 30 s during each):",
            "",
            *[
                f"- {i['started']}: {i['wall_s']:.0f} s wall, {len(i['ran'])} steps ran, "
                f"{len(i['resumed'])} resumed; load {i['load']}"
                for i in r["runs"]
            ],
            "",
            "The recipe's own invocations (its `state.json`; a run started directly with "
            "`warmrec recipe run` and finished or resumed here is listed):",
            "",
            *[
                f"- {i['started']}: {i['seconds']:.0f} s, {len(i['ran'])} steps ran, "
                f"{len(i['skipped'])} resumed"
                for i in r["state"].get("invocations", [])
            ],
            "",
            "| step | kind | seconds | CPU seconds | peak memory so far (MiB) |",
            "|---|---|---:|---:|---:|",
            step_rows,
            "",
            *keep,
            end,
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", required=True, help="comma-separated recipe names")
    ap.add_argument("--data-root", default=None, help="folder of the datasets ($WARMREC_DATA)")
    ap.add_argument("--work", default="/tmp/warmrec-recipes", help="output folders (resume)")
    ap.add_argument("--quick", action="store_true", help="the quick runs (a smoke test)")
    ap.add_argument("--nice", type=int, default=10, help="niceness of the runs (shared machine)")
    ap.add_argument("--results", default=str(RESULTS))
    a = ap.parse_args()
    argv = sys.argv[1:]
    for name in [n.strip() for n in a.recipes.split(",") if n.strip()]:
        r = run_one(name, Path(a.work), a.data_root, a.quick, a.nice)
        r["data_root"] = a.data_root or "../shared/data"
        r["nice"] = a.nice
        block = section(r, argv, a.quick)
        write_section(Path(a.results), *markers(name, a.quick), block, TITLE)
        print(f"{name}: {r['steps_s']:.0f} s, peak {r['peak_mb']:.0f} MiB", flush=True)


if __name__ == "__main__":
    main()
