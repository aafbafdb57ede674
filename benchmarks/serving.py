"""Serving under load: latency percentiles and throughput of ``warmrec serve`` on loopback.

For each model (Pop, V-SKNN, SASRec, GRU4Rec) trained on ml-100k (the neural ones for a fixed,
small number of epochs: serving cost does not depend on accuracy), the script

1. starts ``warmrec serve MODEL --port P`` (1 worker, 1 torch thread) and waits for /health;
2. drives ``POST /recommend`` (k=10, histories of 1-50 real raw ids drawn from the log) with
   ``wrk`` (Debian package ``wrk`` 4.1) and a Lua script: ``--rates`` fixed request rates are
   paced by a per-connection delay (``C`` connections, each waiting ``C / rate`` s between
   requests), then one unpaced run finds the saturation throughput;
3. reads p50/p90/p99 latency, achieved requests/s and errors (non-2xx, socket errors) from the
   script's ``done`` hook;
4. stops the server.

wrk is closed-loop: a paced connection waits for its answer before its next request, so at and
beyond saturation the offered rate drops and the percentiles understate queueing (coordinated
omission). Below saturation the paced rate is what was asked for; the achieved rate is printed
beside it so that a shortfall is visible.

``--infer`` measures the inference paths of SASRec and GRU4Rec in-process (one history of 50
items, the score of the whole catalogue plus top-10): eager, ``torch.jit.trace`` and
``torch.compile`` and ``torch.export`` (its ``.module()``), one torch thread.

``--knn`` measures V-SKNN's ``recommend`` in-process, per request (k=10, the request bodies'
histories): the scoring before issue 12's rework (``tests/models/knn_legacy.py``: sparse products
over all sessions and the whole catalogue, dense ranking), the current scoring with the dense
ranking (``--engine eager``), the sparse path (``engine="sparse"``: candidate items only) and
the served path (``engine="index"``: the VMIS-kNN serving index of :mod:`warmrec.serving.index`),
interleaved request by request so that machine load hits all of them alike.

``--predict`` measures batch prediction (``warmrec.serving.predict``) in sequences/s.

Usage::

    python benchmarks/serving.py --data ../shared/data/ml-100k --out benchmarks/results/serving.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MODELS = {
    "pop": {},
    "vsknn": {},
    "sasrec": {"max_len": 50},
    "gru4rec": {"max_len": 50},
}
# Large catalogues (--synthetic): a full softmax over 100K items does not fit a CPU epoch, so the
# neural models train with a sampled loss there (SASRec sampled softmax, GRU4Rec BPR-max with
# sampled negatives); serving cost does not depend on the loss.
SAMPLED = {"sasrec": {"loss": "sampled_ce"}, "gru4rec": {"loss": "bpr-max"}}

LUA = r"""
local bodies = {}
local n = 0
local delay_ms = tonumber(os.getenv("WRK_DELAY_MS") or "0")
for line in io.lines(os.getenv("WRK_BODIES")) do n = n + 1; bodies[n] = line end
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i + 1
  return wrk.format(nil, "/recommend", nil, bodies[(i % n) + 1])
end
if delay_ms > 0 then
  delay = function() return delay_ms end
end
done = function(summary, latency, requests)
  local errs = summary.errors
  local bad = errs.connect + errs.read + errs.write + errs.timeout + errs.status
  io.write(string.format(
    'RESULT {"requests": %d, "seconds": %.3f, "p50_ms": %.3f, "p90_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f, "errors": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3,
    latency:percentile(90) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3, bad))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def synthetic_log(path: Path, n_items: int, n_sessions: int = 50_000, seed: int = 0) -> Path:
    """A session log over ``n_items`` items: each session (2-20 events) walks from a
    Zipf-popular start by small random steps, so that neighbours share items."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(seed)
    lens = rng.integers(2, 21, n_sessions)
    start = np.minimum(rng.zipf(1.3, n_sessions), n_items) - 1
    start = (start * 7919) % n_items  # popular items spread over the catalogue
    sid = np.repeat(np.arange(n_sessions), lens)
    steps = rng.integers(1, 6, int(lens.sum()))
    first = np.concatenate([[0], np.cumsum(lens)[:-1]])
    steps[first] = 0
    walk = np.cumsum(steps)
    walk -= np.repeat(walk[first], lens)
    items = (np.repeat(start, lens) + walk) % n_items + 1
    t = np.arange(len(items), dtype=np.float64)
    pl.DataFrame({"session_id": sid, "item_id": items, "timestamp": t}).write_csv(path)
    return path


def train(
    name: str, data: Path, out: Path, epochs: int, sampled: bool = False, sessions: int = 0
) -> float:
    """Fit ``name`` and save it to ``out``; seconds taken. With ``sampled`` (large catalogues) the
    neural models are fitted directly without validation (a full-catalogue evaluation of 50,000
    histories would cost more than the epoch; serving cost does not depend on accuracy), on the
    first ``sessions`` sessions of the log (0 = all) but with the whole log's vocabulary, so that
    the served catalogue keeps its size; otherwise through ``warmrec train``'s pipeline."""
    t0 = time.perf_counter()
    model = {"name": name, **MODELS[name], **(SAMPLED.get(name, {}) if sampled else {})}
    if sampled and name in SAMPLED:
        import polars as pl

        from warmrec import get_model
        from warmrec.data.dataset import SequenceDataset
        from warmrec.data.vocab import ItemVocab

        frame = pl.read_csv(data)
        vocab = ItemVocab.from_ids(frame["item_id"])
        if sessions:
            frame = frame.filter(pl.col("session_id") < sessions)
        cfg = {k: v for k, v in model.items() if k != "name"}
        m = get_model(name, cfg)
        m.fit(SequenceDataset.from_frame(frame, vocab), trainer={"epochs": epochs})
        m.save(out)
        return time.perf_counter() - t0
    from warmrec.experiments.run import run_train

    cfg = {"data": {"path": str(data)}, "model": model}
    if name in ("sasrec", "gru4rec"):
        cfg["train"] = {"epochs": epochs, "patience": 0}
    run_train(cfg, out)
    return time.perf_counter() - t0


def bodies(data: Path, path: Path, n: int = 2000, seed: int = 0) -> None:
    """Request bodies: random suffixes (1-50 items) of real sequences, raw ids."""
    from warmrec.experiments.spec import DataSpec
    from warmrec.serving.predict import histories_from_frame

    frame = DataSpec(path=str(data)).read().interactions
    from warmrec.data.vocab import ItemVocab

    vocab = ItemVocab.from_ids(frame["item_id"].unique(maintain_order=True))
    h = histories_from_frame(frame, vocab)
    rng = random.Random(seed)
    with open(path, "w") as f:
        for _ in range(n):
            j = rng.randrange(len(h))
            a, b = int(h.starts[j]), int(h.ends[j])
            end = rng.randint(a + 1, b)
            start = max(a, end - rng.randint(1, 50))
            items = vocab.decode(h.items[start:end])
            f.write(json.dumps({"items": items, "k": 10}) + "\n")


class Server:
    def __init__(self, model_dir: Path, threads: int = 1, workers: int = 1) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "warmrec", "serve", str(model_dir), "--port", str(self.port)]
        cmd += ["--threads", str(threads), "--workers", str(workers)]
        self.proc = subprocess.Popen(cmd, env=env(), stderr=subprocess.DEVNULL)
        import httpx

        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server for {model_dir} did not start")
            time.sleep(0.3)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wrk(url: str, script: Path, body_file: Path, rate: int | None, seconds: int, conns: int):
    e = {**os.environ, "WRK_BODIES": str(body_file)}
    e["WRK_DELAY_MS"] = str(int(round(conns * 1000 / rate))) if rate else "0"
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--timeout", "5s", "-s", str(script), url]
    out = subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=seconds + 60)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            r = json.loads(line[7:])
            r["rps"] = r["requests"] / r["seconds"]
            return r
    raise RuntimeError(f"wrk gave no result: {out.stdout}\n{out.stderr}")


def load_table(args, workdir: Path) -> list[dict]:
    body_file = workdir / "bodies.jsonl"
    bodies(args.data, body_file)
    script = workdir / "recommend.lua"
    script.write_text(LUA)
    rows = []
    for name in args.models:
        mdir = workdir / name
        if not mdir.exists():  # a --workdir of an earlier run keeps its models
            fit_s = train(name, args.data, mdir, args.epochs, args.sampled, args.train_sessions)
            print(f"{name}: trained in {fit_s:.1f} s", flush=True)
        server = Server(mdir)
        try:
            wrk(server.url, script, body_file, None, 2, 2)  # warm the connections
            for rate in [*args.rates, None]:
                conns = max(2, min(20, (rate or 0) // 25)) if rate else args.sat_conns
                r = wrk(server.url, script, body_file, rate, args.seconds, conns)
                r.update(model=name, rate=rate or "saturation", conns=conns)
                print(json.dumps(r), flush=True)
                rows.append(r)
        finally:
            server.stop()
    return rows


def infer_table(args, workdir: Path) -> list[dict]:
    """Eager vs TorchScript trace vs torch.compile vs torch.export for one history (score +
    top-10)."""
    import numpy as np
    import torch

    from warmrec.data.dataset import Batch
    from warmrec.serving.bundle import ModelBundle, top_k

    class Scores(torch.nn.Module):
        """A scoring function as a module, for ``torch.export``."""

        def __init__(self, fn) -> None:
            super().__init__()
            self.fn = fn

        def forward(self, x):
            return self.fn(x)

    torch.set_num_threads(1)
    rows = []
    for name in ("sasrec", "gru4rec"):
        mdir = workdir / name
        if not mdir.exists():
            train(name, args.data, mdir, args.epochs, args.sampled, args.train_sessions)
        b = ModelBundle.load(mdir, threads=1)
        m = b.model
        L = b.history_len
        items = torch.from_numpy((np.arange(L, dtype=np.int64) % b.n_items + 1).reshape(1, L))
        m.net.eval()
        for p in m.net.parameters():  # tracing keeps weights as constants: no autograd
            p.requires_grad_(False)

        def eager(x, m=m):
            return m.forward_scores(Batch(x))

        paths = {"eager": eager}
        try:
            with torch.no_grad():
                paths["torchscript"] = torch.jit.trace(eager, (items,), check_trace=False)
        except Exception as e:  # noqa: BLE001 - a path that does not build is reported
            print(f"{name}: torchscript failed: {e!s:.200}")
        try:
            paths["compile"] = torch.compile(eager, dynamic=False)
        except Exception as e:  # noqa: BLE001
            print(f"{name}: compile failed: {e!s:.200}")
        try:
            paths["export"] = torch.export.export(Scores(eager), (items,)).module()
        except Exception as e:  # noqa: BLE001
            print(f"{name}: export failed: {e!s:.200}")
        for pname, fn in paths.items():
            try:
                with torch.inference_mode():
                    t0 = time.perf_counter()
                    for _ in range(3):
                        top_k(fn(items).float().clone(), 10)
                    warm_s = time.perf_counter() - t0
                    n, t0 = 0, time.perf_counter()
                    times = []
                    while time.perf_counter() - t0 < args.infer_seconds:
                        t1 = time.perf_counter()
                        top_k(fn(items).float().clone(), 10)
                        times.append(time.perf_counter() - t1)
                        n += 1
                times.sort()
                rows.append(
                    {
                        "model": name,
                        "path": pname,
                        "median_ms": 1e3 * times[len(times) // 2],
                        "p90_ms": 1e3 * times[int(0.9 * (len(times) - 1))],
                        "first_3_s": warm_s,
                        "n": n,
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
            except Exception as e:  # noqa: BLE001
                print(f"{name} {pname}: failed: {e!s:.200}")
    return rows


def knn_table(args, workdir: Path) -> list[dict]:
    """V-SKNN per-request latency in-process: legacy vs current-dense vs current-sparse."""
    import numpy as np
    import torch

    sys.path.insert(0, str(ROOT))
    from tests.models.knn_legacy import Legacy

    from warmrec.serving.bundle import ModelBundle

    torch.set_num_threads(1)
    mdir = workdir / "vsknn"
    if not mdir.exists():
        train("vsknn", args.data, mdir, args.epochs)
    body_file = workdir / "bodies.jsonl"
    if not body_file.exists():
        bodies(args.data, body_file)
    hists = [json.loads(line)["items"] for line in open(body_file)][: args.knn_requests]
    legacy = ModelBundle.load(mdir, engine="eager")
    oracle = Legacy(legacy.model)
    legacy.model.score = lambda batch: oracle.score(batch.items.numpy())
    paths = {
        "before (legacy scoring, dense ranking)": legacy,
        "after, dense ranking (engine eager)": ModelBundle.load(mdir, engine="eager"),
        "after, sparse ranking (engine sparse)": ModelBundle.load(mdir, engine="sparse"),
        "serving index (served: engine index, issue 19)": ModelBundle.load(mdir),
    }
    times: dict[str, list[float]] = {name: [] for name in paths}
    cpu: dict[str, list[float]] = {name: [] for name in paths}
    for h in hists:
        for name, b in paths.items():
            c0, t0 = time.thread_time(), time.perf_counter()
            b.recommend(h, 10)
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.thread_time() - c0)
    rows = []
    for name, ts in times.items():
        a, c = 1e3 * np.asarray(ts), 1e3 * np.asarray(cpu[name])
        rows.append(
            {
                "path": name,
                "n": len(a),
                "median_ms": float(np.median(a)),
                "p90_ms": float(np.percentile(a, 90)),
                "p99_ms": float(np.percentile(a, 99)),
                "cpu_median_ms": float(np.median(c)),
                "cpu_p90_ms": float(np.percentile(c, 90)),
                "cpu_mean_ms": float(c.mean()),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def predict_table(args, workdir: Path) -> list[dict]:
    from warmrec.serving.predict import run_predict

    rows = []
    for name in args.models:
        mdir = workdir / name
        if not mdir.exists():
            train(name, args.data, mdir, args.epochs, args.sampled, args.train_sessions)
        res = run_predict(
            mdir, {"data": {"path": str(args.data)}}, workdir / f"{name}.parquet", progress=False
        )
        rows.append({"model": name, **res.as_dict()})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def markdown(args, load, infer, pred, knn=()) -> str:
    cmd = "python benchmarks/serving.py " + " ".join(sys.argv[1:])
    lines = [
        "# Serving benchmark",
        "",
        f"Command: `{cmd}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"load average at the start {args.load_start:.1f} -- the 2 cores are **shared** "
        "with other jobs (other helpers ran tests and trainings at the same time), so the "
        "figures are pessimistic and noisy. Server and wrk share the same 2 cores.",
        "",
    ]
    if load:
        lines += [
            f"## Latency under load ({args.data.name}, 1 worker, 1 torch thread, wrk {args.seconds} s per rate)",
            "",
            "| model | target rps | conns | achieved rps | p50 ms | p90 ms | p99 ms | max ms | errors |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in load:
            lines.append(
                f"| {r['model']} | {r['rate']} | {r['conns']} | {r['rps']:.0f} | {r['p50_ms']:.2f} "
                f"| {r['p90_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.1f} | {r['errors']} |"
            )
        lines.append("")
    if infer:
        lines += [
            "## Inference path (one history of max_len items, score + top-10, 1 thread)",
            "",
            "| model | path | median ms | p90 ms | first 3 calls s |",
            "|---|---|---|---|---|",
        ]
        for r in infer:
            lines.append(
                f"| {r['model']} | {r['path']} | {r['median_ms']:.3f} | {r['p90_ms']:.3f} "
                f"| {r['first_3_s']:.2f} |"
            )
        lines.append("")
    if knn:
        lines += [
            f"## V-SKNN per request, in-process ({args.data.name}, k=10, 1 thread)",
            "",
            "Wall time, and the thread's CPU time (`time.thread_time`, which a loaded machine's "
            "preemption does not inflate).",
            "",
            "| path | requests | median ms | p90 ms | p99 ms | CPU median ms | CPU p90 ms "
            "| CPU mean ms |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in knn:
            lines.append(
                f"| {r['path']} | {r['n']} | {r['median_ms']:.3f} | {r['p90_ms']:.3f} "
                f"| {r['p99_ms']:.3f} | {r['cpu_median_ms']:.3f} | {r['cpu_p90_ms']:.3f} "
                f"| {r['cpu_mean_ms']:.3f} |"
            )
        lines.append("")
    if pred:
        lines += [
            "## Batch prediction (`warmrec predict`, all users, k=10, all cores)",
            "",
            "| model | sequences | rows | seconds | sequences/s |",
            "|---|---|---|---|---|",
        ]
        for r in pred:
            lines.append(
                f"| {r['model']} | {r['n_sequences']} | {r['n_rows']} | {r['seconds']:.2f} "
                f"| {r['sequences_per_s']:.0f} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument(
        "--synthetic", type=int, default=0, help="A synthetic log over this many items instead."
    )
    ap.add_argument("--models", default="pop,vsknn,sasrec,gru4rec")
    ap.add_argument("--rates", default="50,200,500")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--sat-conns", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument(
        "--sampled",
        action="store_true",
        help="Train SASRec/GRU4Rec with a sampled loss (default with --synthetic).",
    )
    ap.add_argument(
        "--train-sessions",
        type=int,
        default=0,
        help="With --sampled: fit on the first N sessions only (vocabulary of the whole log).",
    )
    ap.add_argument("--infer-seconds", type=float, default=3.0)
    ap.add_argument("--no-load", action="store_true")
    ap.add_argument("--infer", action="store_true")
    ap.add_argument("--predict", action="store_true")
    ap.add_argument("--knn", action="store_true", help="V-SKNN per-request latency in-process.")
    ap.add_argument("--knn-requests", type=int, default=2000)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    args.load_start = os.getloadavg()[0]
    args.models = [m for m in args.models.split(",") if m]
    args.sampled = args.sampled or bool(args.synthetic)
    if args.synthetic:
        (args.workdir or Path(tempfile.gettempdir())).mkdir(parents=True, exist_ok=True)
        args.data = synthetic_log(
            (args.workdir or Path(tempfile.mkdtemp())) / "synthetic.csv", args.synthetic
        )
    args.rates = [int(r) for r in args.rates.split(",") if r]
    if not args.no_load and shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk (or pass --no-load)")
    sys.path.insert(0, str(ROOT / "src"))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="warmrec-serving-"))
    workdir.mkdir(parents=True, exist_ok=True)
    load = [] if args.no_load else load_table(args, workdir)
    infer = infer_table(args, workdir) if args.infer else []
    pred = predict_table(args, workdir) if args.predict else []
    knn = knn_table(args, workdir) if args.knn else []
    text = markdown(args, load, infer, pred, knn)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
