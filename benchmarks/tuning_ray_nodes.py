"""The same Ray Tune search on one node and on a two-node local Ray cluster: wall time and the
best score.

Each setting starts its own throw-away cluster on 127.0.0.1 (``ray start --head`` and, for two
nodes, ``ray start --address``; ``RAY_AUTH_MODE=disabled`` as in the tests), runs

    warmrec tune --backend ray --address ADDR --model item2vec --data ml-100k --space
        configs/spaces/item2vec.toml --trials N --n-jobs 2 --cpus-per-trial 1 --out DIR --json

and stops the cluster by its process ids (never ``ray stop``, which would end every Ray on the
machine). The two settings offer the same 2 CPUs to Ray: one node with ``--num-cpus 2``, or two
nodes with ``--num-cpus 1`` each -- on this machine both nodes share the same 2 physical cores,
so the comparison measures the cost of spreading a search over nodes, not a speed-up.

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/tuning_ray_nodes.py --trials 12

Writes benchmarks/results/tuning_ray_nodes.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))

from tests.tuning.test_ray_cluster import (  # noqa: E402  (the tests' cluster helpers)
    RAY,
    _env,
    _free_port,
    _nodes_alive,
    _stop,
)


def start_node(args: list[str], cpus: int, log: Path) -> subprocess.Popen:
    agent = ["--dashboard-agent-listen-port", str(_free_port())]
    return subprocess.Popen(
        [str(RAY), "start", "--block", "--num-cpus", str(cpus), *agent, *args],
        env=_env(),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def run_setting(n_nodes: int, args, work: Path) -> dict:
    """Start a cluster of ``n_nodes`` nodes (2 CPUs in all), search, stop it."""
    port = _free_port()
    address = f"127.0.0.1:{port}"
    cpus = 2 // n_nodes
    nodes = []
    t_start = time.perf_counter()
    try:
        nodes.append(
            start_node(
                ["--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                 "--include-dashboard=false", "--disable-usage-stats"],
                cpus, work / f"head{n_nodes}.log",
            )
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while _nodes_alive(address) < 1:
            if time.monotonic() > deadline:
                raise RuntimeError((work / f"head{n_nodes}.log").read_text()[-2000:])
            time.sleep(1)
        for i in range(1, n_nodes):
            nodes.append(
                start_node(
                    [f"--address={address}", "--node-ip-address=127.0.0.1"],
                    cpus, work / f"worker{n_nodes}_{i}.log",
                )
            )  # fmt: skip
        while _nodes_alive(address) < n_nodes:
            if time.monotonic() > deadline:
                raise RuntimeError("the worker node did not join")
            time.sleep(1)
        cluster_s = time.perf_counter() - t_start
        out = work / f"nodes{n_nodes}"
        shutil.rmtree(out, ignore_errors=True)
        cmd = [
            "warmrec", "tune", "--backend", "ray", "--address", address, "--model", "item2vec",
            "--data", args.data, "--split", "loo", "--set", "split.time_order=recbole",
            "--space", args.space, "--trials", str(args.trials), "--n-jobs", "2",
            "--cpus-per-trial", "1", "--seed", "0", "--out", str(out), "--json",
        ]  # fmt: skip
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", *cmd], env=_env(), capture_output=True, text=True,
            timeout=args.limit,
        )  # fmt: skip
        wall = time.perf_counter() - t0
        if proc.returncode:
            raise RuntimeError(proc.stderr[-3000:])
        res = json.loads(proc.stdout)
        return {
            "nodes": n_nodes,
            "cpus_per_node": cpus,
            "cluster_s": cluster_s,
            "wall_s": wall,
            "search_s": res["wall_s"],
            "res": res,
            "cmd": cmd,
        }
    finally:
        for node in reversed(nodes):
            _stop(node)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(SHARED / "data" / "ml-100k"))
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--space", default=str(ROOT / "configs" / "spaces" / "item2vec.toml"))
    ap.add_argument("--work", default="/tmp/tune-ray-nodes")
    ap.add_argument("--limit", type=float, default=1500, help="seconds per search")
    ap.add_argument("--load-log", default="", help="/proc/loadavg lines of the run")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    loads = [os.getloadavg()[0]]
    runs = []
    for n in (1, 2):
        runs.append(run_setting(n, args, work))
        loads.append(os.getloadavg()[0])
        print(json.dumps({k: v for k, v in runs[-1].items() if k != "res"}), flush=True)
    if args.load_log:
        vals = [float(x.split()[0]) for x in Path(args.load_log).read_text().splitlines() if x]
        loads = vals or loads
    lines = [
        "# One node vs a two-node local Ray cluster: the same search",
        "",
        f"Command: `OMP_NUM_THREADS=1 nice -n 5 python benchmarks/tuning_ray_nodes.py --trials "
        f"{args.trials}`  ",
        "The search in each setting: `"
        + " ".join(runs[0]["cmd"])
        .replace(runs[0]["cmd"][5], "ADDR")
        .replace(str(work / "nodes1"), "DIR")
        + "`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other helpers' work "
        f"and the lead; 1-minute load average {min(loads):.1f}-{max(loads):.1f} during the run; "
        f"Python {platform.python_version()}.",
        "",
        "Item2Vec on ml-100k (leave-one-out, RecBole time order), space "
        "`configs/spaces/item2vec.toml`, Ray Tune with OptunaSearch (TPE, seed 0) + ASHA on the "
        "per-epoch validation Recall@10, 2 trials at a time, 1 CPU per trial; the best trial "
        "refitted and tested once by the driver. Both settings offer Ray the same 2 CPUs: one "
        "node with 2, or a head and a worker node with 1 each. **Both nodes run on the same 2 "
        "physical cores of this machine**, so two nodes cannot be faster here; the figures show "
        "what spreading the search over nodes costs.",
        "",
        "| nodes | CPUs per node | cluster start s | search wall s | trials (complete / pruned / "
        "failed) | best valid Recall@10 | its test Recall@10 | test NDCG@10 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        res, best = r["res"], r["res"]["best"]
        lines.append(
            f"| {r['nodes']} | {r['cpus_per_node']} | {r['cluster_s']:.0f} | {r['wall_s']:.0f} | "
            f"{res['trials']} ({res['n_complete']} / {res['n_pruned']} / {res['n_failed']}) | "
            f"{best['value']:.4f} | {best['test']['recall@10']:.4f} | "
            f"{best['test']['ndcg@10']:.4f} |"
        )
    lines += [
        "",
        "Search wall s: the whole `warmrec tune` command (connect, read and split in every "
        "trial, trials, refit, test, plots). Ray Tune's trial order depends on which trial "
        "finishes first, so the two searches need not sample the same settings even with the "
        "same seed.",
        "",
        "## More nodes",
        "",
        "On real machines: `ray start --head --port 6379` on one, `ray start --address "
        "HEAD:6379` on each other (every node needs warmrec and its extras installed and the "
        "data at the same path, since each trial reads the data itself), then `warmrec tune "
        "--backend ray --address HEAD:6379 --n-jobs K` on any of them, with K up to the total "
        "CPUs / `--cpus-per-trial`. Trials are independent, so the search's wall time falls "
        "nearly in proportion to the concurrent trials, less the TPE's loss of information "
        "when many trials run at once and the fixed cost of starting trial processes (seconds "
        "each here). ASHA stops bad trials early on every node alike.",
        "",
    ]
    out = ROOT / "benchmarks" / "results" / "tuning_ray_nodes.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
