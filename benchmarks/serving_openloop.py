"""Open-loop serving benchmark: latency at a fixed request rate, with no coordinated omission.

A closed-loop tool (``wrk`` in ``benchmarks/serving.py``) waits for each answer before its next
request, so when the server stalls it stops sending and the stall never shows in the
percentiles. This script's generator schedules request ``i`` at ``t0 + i / rate`` whatever the
server does, and measures each latency **from that scheduled time** to the last byte of the
answer: a request that waits for a free connection, or that the generator itself sent late,
carries that wait.

Generator (run in its own process, ``--generate``): asyncio's standard event loop (uvloop's
timers fire up to ~1 ms early, which would shorten the measured latencies), raw HTTP/1.1
keep-alive sockets on loopback (``asyncio.Protocol``, no HTTP client library), a pool of
``--conns`` connections opened before the run and grown (up to ``--max-conns``) whenever a due
request finds none idle; requests left waiting for a connection are queued in schedule order.
``POST /recommend`` with ``k=10`` and histories of 1-50 real raw ids drawn from the log (the
bodies of ``benchmarks/serving.py``; those with no item the model knows, a 400 by design, left
out), cycled. Each rate runs ``--warmup`` s (not recorded), then
``--seconds`` s; answers still missing ``--drain`` s after the last send count as timeouts and
as infinite latencies in the percentiles. Reported per rate: offered and achieved requests/s,
p50/p90/p99/max latency, errors (non-200, or a connection dropped during an answer), timeouts,
retries (a request whose keep-alive connection the server closed before answering is sent again
on another, its latency still counted from its scheduled time), how late the
generator sent (p50/p99 of send time minus scheduled time: the event loop's timers have
millisecond resolution, so up to ~1 ms of each latency can be the generator's), the server's
CPU ms per request and RSS (``/proc``), the generator's CPU ms per request, and
``/proc/loadavg`` before and after the rate (the machine is shared).

Server: ``warmrec serve MODEL_DIR`` (one worker unless a run says ``MODEL*W``, one torch thread) on
127.0.0.1, started and stopped by the script. Models are trained as in
``benchmarks/serving.py`` (``synthetic:N``: its synthetic log over N items, 50,000 sessions;
there the neural models train 1 epoch with a sampled loss on the first ``--train-sessions``
sessions -- serving cost does not depend on accuracy).

``--scale 100000,1000000,10000000`` adds a table of the V-SKNN serving index at those
catalogue sizes: a synthetic log of ``N / 2`` sessions of 2-20 events (the generator of
``benchmarks/serving.py``), the model state made directly from it (sessions are generated in
time order, so these are the arrays ``fit`` would make; a fit through a DataFrame of 55M events
does not fit this shared machine), the index build time (``SessionIndex.build``) and the time to
write it, its size on disk, and in a fresh process: ``ModelBundle.load`` time, RSS after loading,
and RSS (current and peak) after 2,000 requests with their in-process latency.

Usage (from the repository root, ``PYTHONPATH=src``)::

    python benchmarks/serving_openloop.py --run synthetic:100000=vsknn@500,1000 \\
        --run ../shared/data/nowplaying-1m=vsknn@500,1000 --run ../shared/data/ml-100k=sasrec@200 \\
        --scale 100000,1000000,10000000 --out benchmarks/results/serving.md
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def markers(tag: str) -> tuple[str, str]:
    """The begin/end comments of this script's section of the results file (one per ``--tag``)."""
    name = f"serving_openloop.py{' ' + tag if tag else ''}"
    return f"<!-- {name}: begin -->", f"<!-- {name}: end -->"


# -- the generator (its own process) ------------------------------------------------------------


class _Conn(asyncio.Protocol):
    """One keep-alive connection: one request in flight at a time."""

    def __init__(self, gen: _Gen) -> None:
        self.gen = gen
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.current: tuple[int, int, float] | None = None
        self.got = False  # a byte of the current answer arrived
        self.ready = asyncio.get_running_loop().create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.ready.set_result(None)

    def send(self, epoch: int, i: int, sched: float) -> None:
        self.current = (epoch, i, sched)
        self.got = False
        if epoch == self.gen.epoch:
            self.gen.lag.append(time.monotonic() - sched)
        self.transport.write(self.gen.requests[i % len(self.gen.requests)])

    def data_received(self, data: bytes) -> None:
        self.got = True
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).lower()
            at = head.find(b"content-length:")
            if at < 0:  # every answer of the service has a length; anything else is an error
                self.gen.finish(self, 0)
                self.transport.close()
                return
            length = int(head[at + 15 : head.find(b"\r\n", at) if b"\r\n" in head[at:] else None])
            total = end + 4 + length
            if len(self.buf) < total:
                return
            status = int(head[9:12])
            del self.buf[:total]
            self.gen.finish(self, status)

    def connection_lost(self, exc) -> None:
        self.gen.lost(self)


class _Gen:
    """Fixed-rate schedule, latency from the scheduled time (see the module docstring)."""

    def __init__(self, host: str, port: int, bodies: list[bytes], conns: int, max_conns: int):
        self.host, self.port = host, port
        self.requests = [
            b"POST /recommend HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (host.encode(), port, len(b), b)
            for b in bodies
        ]
        self.n_conns, self.max_conns = conns, max_conns
        self.idle: collections.deque[_Conn] = collections.deque()
        self.pending: collections.deque[tuple[int, int, float]] = collections.deque()
        self.open = 0
        self.opening = 0
        self.epoch = 0
        self.reset()

    def reset(self) -> None:
        """Start a new run: answers to requests of earlier runs are no longer counted."""
        self.epoch += 1
        self.lat: list[float] = []
        self.lag: list[float] = []
        self.errors = 0
        self.retries = 0
        self.done = 0

    async def connect(self) -> None:
        self.opening += 1
        try:
            loop = asyncio.get_running_loop()
            _, conn = await loop.create_connection(lambda: _Conn(self), self.host, self.port)
            await conn.ready
            self.open += 1
        finally:
            self.opening -= 1
        self.release(conn)

    def release(self, conn: _Conn) -> None:
        if self.pending:
            conn.send(*self.pending.popleft())
        else:
            self.idle.append(conn)

    def dispatch(self, i: int, sched: float) -> None:
        if self.idle:  # the longest idle first: every connection stays in use (keep-alive)
            self.idle.popleft().send(self.epoch, i, sched)
            return
        self.pending.append((self.epoch, i, sched))
        if self.open + self.opening < self.max_conns:
            asyncio.ensure_future(self.connect())

    def dispatch_again(self, cur: tuple[int, int, float]) -> None:
        if self.idle:
            self.idle.popleft().send(*cur)
            return
        self.pending.appendleft(cur)
        if self.open + self.opening < self.max_conns:
            asyncio.ensure_future(self.connect())

    def finish(self, conn: _Conn, status: int) -> None:
        epoch, _, sched = conn.current
        conn.current = None
        if epoch == self.epoch:
            self.lat.append(time.monotonic() - sched)
            self.done += 1
            if status != 200:
                self.errors += 1
        self.release(conn)

    def lost(self, conn: _Conn) -> None:
        self.open -= 1
        if conn in self.idle:
            self.idle.remove(conn)
        cur, conn.current = conn.current, None
        if cur is not None and not conn.got:
            # closed before any byte of the answer: the server closed an idle keep-alive
            # connection as the request went out; send it again (its latency still counts
            # from its scheduled time), as HTTP clients do
            self.retries += cur[0] == self.epoch
            self.dispatch_again(cur)
        elif cur is not None and cur[0] == self.epoch:
            self.errors += 1
            self.done += 1

    async def run(self, rate: float, seconds: float, drain: float) -> dict:
        self.reset()
        n = int(round(rate * seconds))
        t0 = time.monotonic() + 0.01
        for i in range(n):
            sched = t0 + i / rate
            # never early: the standard loop's timers fire at or after their time (epoll's
            # millisecond timeout rounded up); uvloop's can fire up to ~1 ms early, so the
            # time is checked again
            while (delay := sched - time.monotonic()) > 0:
                await asyncio.sleep(delay)
            self.dispatch(i, sched)
        deadline = time.monotonic() + drain
        while self.done < n and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return {"sent": n, "wall_s": time.monotonic() - t0}


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(q / 100 * len(s)))]  # nearest rank (the upper one)


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the uvicorn workers of ``--workers N``)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (t / "children").read_text().split()]
        except OSError:
            pass
    return out


def _cpu_of(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its descendants."""
    total = 0.0
    for p in _tree(pid):
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _rss_mb(pid: int, key: str = "VmRSS") -> float:
    """RSS of ``pid`` and its descendants, MB."""
    total = 0
    for p in _tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


async def _generate(a: argparse.Namespace) -> list[dict]:
    bodies = [line.strip().encode() for line in open(a.bodies) if line.strip()]
    gen = _Gen("127.0.0.1", a.port, bodies, a.conns, a.max_conns)
    await asyncio.gather(*(gen.connect() for _ in range(a.conns)))
    rows = []
    for rate in [float(r) for r in a.rates.split(",")]:
        if a.warmup > 0:
            await gen.run(rate, a.warmup, 0)
        load0 = _loadavg()
        cpu0, scpu0 = time.process_time(), _cpu_of(a.server_pid)
        r = await gen.run(rate, a.seconds, a.drain)
        cpu1, scpu1 = time.process_time(), _cpu_of(a.server_pid)
        lat = gen.lat + [float("inf")] * (r["sent"] - gen.done)
        rows.append(
            {
                "rate": rate,
                "sent": r["sent"],
                "achieved_rps": len(gen.lat) / r["wall_s"],
                "p50_ms": 1e3 * _pct(lat, 50),
                "p90_ms": 1e3 * _pct(lat, 90),
                "p99_ms": 1e3 * _pct(lat, 99),
                "max_ms": 1e3 * max(lat) if lat else float("nan"),
                "errors": gen.errors,
                "timeouts": r["sent"] - gen.done,
                "retries": gen.retries,
                "lag_p50_ms": 1e3 * _pct(gen.lag, 50),
                "lag_p99_ms": 1e3 * _pct(gen.lag, 99),
                "server_cpu_ms": 1e3 * (scpu1 - scpu0) / max(r["sent"], 1),
                "gen_cpu_ms": 1e3 * (cpu1 - cpu0) / max(r["sent"], 1),
                "server_rss_mb": _rss_mb(a.server_pid),
                "conns": gen.open,
                "load_before": load0,
                "load_after": _loadavg(),
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def generate_main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--server-pid", type=int, required=True)
    ap.add_argument("--bodies", required=True)
    ap.add_argument("--rates", required=True)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--warmup", type=float, default=2)
    ap.add_argument("--drain", type=float, default=5)
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--max-conns", type=int, default=512)
    a = ap.parse_args(argv)
    rows = asyncio.run(_generate(a))  # the standard event loop (see _Gen.run)
    print(json.dumps(rows))


# -- the driver -----------------------------------------------------------------------------


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}


def load_rows(
    args, name: str, mdir: Path, body_file: Path, rates: list[int], data: str, workers: int
) -> list:
    from serving import Server

    server = Server(mdir, workers=workers)  # one torch thread per worker
    try:
        settle(server.proc.pid)
        import urllib.request

        with urllib.request.urlopen(f"{server.url}/metadata", timeout=10) as f:
            info = json.loads(f.read())
        cmd = [sys.executable, __file__, "--generate", "--port", str(server.port)]
        cmd += ["--server-pid", str(server.proc.pid), "--bodies", str(body_file)]
        cmd += ["--rates", ",".join(map(str, rates)), "--seconds", str(args.seconds)]
        cmd += ["--warmup", str(args.warmup), "--conns", str(args.conns)]
        out = subprocess.run(
            cmd, capture_output=True, text=True, timeout=len(rates) * (args.seconds + 60) + 60
        )
        if out.returncode != 0:
            raise RuntimeError(f"generator failed: {out.stderr[-2000:]}")
        rows = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        server.stop()
    for r in rows:
        r.update(model=name, data=data, engine=info.get("engine", "?"), workers=workers)
        print(json.dumps(r), flush=True)
    return rows


def settle(pid: int, limit: float = 180.0) -> None:
    """Wait until the server (all its workers) is idle: under 5 % of a core over a second, so
    that no worker is still importing, loading or warming up when the rate starts."""
    deadline = time.monotonic() + limit
    last = _cpu_of(pid)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = _cpu_of(pid)
        if now - last < 0.05:
            return
        last = now


def known_bodies(body_file: Path, mdir: Path, out: Path) -> Path:
    """The request bodies with at least one item the model knows (a history of unknown items
    only is a 400 by design; the log's validation and test sessions hold items that training
    never saw)."""
    from warmrec.artifacts import VOCAB_FILE
    from warmrec.data.vocab import ItemVocab

    vocab = ItemVocab.load(mdir / VOCAB_FILE)
    lines = [line for line in body_file.read_text().splitlines() if line.strip()]
    keep = [line for line in lines if (vocab.encode(json.loads(line)["items"]) > 0).any()]
    out.write_text("\n".join(keep) + "\n")
    print(f"{mdir.name}: {len(keep)} of {len(lines)} bodies hold a known item", flush=True)
    return out


def parse_run(spec: str) -> tuple[str, str, int, list[int]]:
    """``DATA=MODEL[*WORKERS]@RATE,RATE`` -> (data, model, workers, rates); DATA is a path or
    ``synthetic:N``."""
    try:
        data, rest = spec.rsplit("=", 1)
        model, rates = rest.split("@")
        model, _, workers = model.partition("*")
        return data, model, int(workers or 1), [int(r) for r in rates.split(",")]
    except ValueError:
        sys.exit(f"--run: expected DATA=MODEL[*WORKERS]@RATE[,RATE...], found {spec!r}")


def openloop_table(args, workdir: Path) -> list[dict]:
    from serving import bodies, synthetic_log, train

    rows = []
    for spec in args.run:
        source, name, workers, rates = parse_run(spec)
        if source.startswith("synthetic:"):
            n = int(source.split(":")[1])
            wd = workdir / f"synthetic-{n}"
            wd.mkdir(parents=True, exist_ok=True)
            data = wd / "synthetic.csv"
            if not data.exists():
                synthetic_log(data, n)
            # neural models: sampled loss, first --train-sessions sessions (benchmarks/serving.py)
            label, sampled = f"synthetic {n:,} items", True
        else:
            data = Path(source)
            wd = workdir / data.name
            wd.mkdir(parents=True, exist_ok=True)
            label, sampled = data.name, False
        body_file = wd / "bodies.jsonl"
        if not body_file.exists():
            bodies(data, body_file)
        mdir = wd / name
        if not mdir.exists():
            fit_s = train(name, data, mdir, args.epochs, sampled, args.train_sessions)
            print(f"{label} {name}: trained in {fit_s:.1f} s", flush=True)
        known = known_bodies(body_file, mdir, wd / f"bodies-{name}.jsonl")
        rows += load_rows(args, name, mdir, known, rates, label, workers)
    return rows


# -- the index at scale ------------------------------------------------------------------------

_SCALE_CHILD = r"""
import json, os, sys, time, resource
import numpy as np
sys.path.insert(0, os.environ["WARMREC_SRC"])
from warmrec.serving.bundle import ModelBundle
import torch, numba, scipy.sparse, polars
torch.set_num_threads(1)
def rss(key="VmRSS"):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
rss_base = rss()
t0 = time.perf_counter()
b = ModelBundle.load(sys.argv[1], warm_up=True)
load_s = time.perf_counter() - t0
rss_load = rss()
rng = np.random.default_rng(0)
n = b.n_items
ts = []
starts = rng.integers(0, n, 2000)
for s in starts:
    h = [int((s + 3 * j) % n) + 1 for j in range(int(rng.integers(1, 20)))]
    t = time.perf_counter()
    b.recommend(h, 10)
    ts.append(time.perf_counter() - t)
a = np.asarray(ts) * 1e3
print(json.dumps({"engine": b.engine, "load_s": load_s, "rss_base_mb": rss_base,
  "rss_load_mb": rss_load,
  "rss_mb": rss(), "hwm_mb": rss("VmHWM"), "median_ms": float(np.median(a)),
  "p90_ms": float(np.percentile(a, 90)), "p99_ms": float(np.percentile(a, 99))}))
"""


def synthetic_sessions(n_items: int, n_sessions: int, seed: int = 0):
    """The sessions of ``benchmarks/serving.py``'s ``synthetic_log`` as CSR arrays (rows in time
    order, each row's distinct item indices sorted), without a DataFrame."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lens = rng.integers(2, 21, n_sessions)
    start = np.minimum(rng.zipf(1.3, n_sessions), n_items) - 1
    start = (start * 7919) % n_items
    first = np.concatenate([[0], np.cumsum(lens)[:-1]])
    steps = rng.integers(1, 6, int(lens.sum()))
    steps[first] = 0
    walk = np.cumsum(steps)
    walk -= np.repeat(walk[first], lens)
    items = (np.repeat(start, lens) + walk) % n_items + 1
    del walk, steps
    counts = np.bincount(items, minlength=n_items + 1)
    key = np.repeat(np.arange(n_sessions, dtype=np.int64), lens) * (n_items + 1) + items
    key.sort()  # by session, then item
    if n_items > 100 and not (np.diff(key) > 0).all():  # a walk of <= 20 steps of 1-5
        raise AssertionError("synthetic sessions repeat an item")
    indptr = np.zeros(n_sessions + 1, dtype=np.int64)
    np.cumsum(lens, out=indptr[1:])
    return indptr, key % (n_items + 1), counts, len(items)


def scale_table(args, workdir: Path) -> list[dict]:
    import gc

    import numpy as np
    import torch

    from warmrec.data.vocab import ItemVocab
    from warmrec.models.knn import VSKNN
    from warmrec.serving.index import INDEX_DIR, SessionIndex

    rows = []
    for n in args.scale:
        n_sess = n // 2
        t0 = time.perf_counter()
        indptr, cols, counts, n_events = synthetic_sessions(n, n_sess)
        gen_s = time.perf_counter() - t0
        model = VSKNN()
        model.vocab = ItemVocab(np.arange(1, n + 1))
        model.user_vocab = None
        model.meta.item_counts = counts.tolist()
        model.counts = torch.from_numpy(counts.astype(np.float32))
        model._set_sessions(indptr, cols)
        del indptr, cols
        t0 = time.perf_counter()
        idx = SessionIndex.build(model)
        build_s = time.perf_counter() - t0
        mdir = workdir / f"scale-{n}"
        from warmrec.artifacts import save_model

        t0 = time.perf_counter()
        save_model(model, mdir)  # the model directory without its index...
        save_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        idx.save(mdir / INDEX_DIR)  # ...and the index written beside it, timed on its own
        write_s = time.perf_counter() - t0
        disk = sum(f.stat().st_size for f in (mdir / INDEX_DIR).iterdir())
        del model, idx
        gc.collect()
        out = subprocess.run(
            [sys.executable, "-c", _SCALE_CHILD, str(mdir)],
            capture_output=True,
            text=True,
            env={**_env(), "WARMREC_SRC": str(ROOT / "src")},
            timeout=1800,
        )
        if out.returncode != 0:
            raise RuntimeError(f"scale child failed: {out.stderr[-2000:]}")
        child = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(
            {
                "n_items": n,
                "n_sessions": n_sess,
                "n_events": n_events,
                "gen_s": gen_s,
                "build_s": build_s,
                "write_s": write_s,
                "model_save_s": save_s,
                "index_mb": disk / 2**20,
                "load": _loadavg(),
                **child,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


# -- report --------------------------------------------------------------------------------------


def markdown(args, load: list[dict], scale: list[dict]) -> str:
    cmd = "PYTHONPATH=src python benchmarks/serving_openloop.py " + " ".join(sys.argv[1:])
    begin, end = markers(args.tag)
    lines = [
        begin,
        "## Open-loop latency (issue 19: VMIS-kNN serving index)"
        + (f": {args.tag}" if args.tag else ""),
        "",
        "Written by `benchmarks/serving_openloop.py` (do not edit by hand). Command:",
        "",
        f"```bash\n{cmd}\n```",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (**shared** with other "
        f"engineers' jobs: see the load columns), Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Server: `warmrec serve` "
        f"(workers: see the column, 1 torch thread each) on 127.0.0.1, measured once it has "
        f"loaded and gone idle; generator: asyncio (standard loop) + raw HTTP/1.1 keep-alive "
        f"sockets in its own process on the same 2 cores, fixed-rate schedule, latency from the "
        f"scheduled send time (no coordinated omission), {args.warmup:g} s warm-up then "
        f"{args.seconds:g} s per rate, {args.conns} connections opened up front (more opened when "
        f"a due request finds none idle), `POST /recommend` k=10, histories of 1-50 real raw "
        f"ids from the log. `retries`: requests sent again because the server closed their "
        f"idle keep-alive connection as they went out (latency still from the first schedule). "
        f"`lag`: how late the generator sent (its timers have 1 ms "
        f"resolution; that lag is inside the latency). CPU: ms per request of the server and "
        f"of the generator. Load: `/proc/loadavg` before -> after the rate; server and "
        f"generator run at the default priority, competing equally with the other jobs.",
        "",
    ]
    if load:
        lines += [
            "| data | model | engine | workers | rate | achieved rps | p50 ms | p90 ms | p99 ms | max ms "
            "| errors | timeouts | retries | lag p50/p99 ms | server CPU ms | gen CPU ms | server RSS MB "
            "| conns | load before -> after |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in load:
            lines.append(
                f"| {r['data']} | {r['model']} | {r['engine']} | {r['workers']} | {r['rate']:.0f} "
                f"| {r['achieved_rps']:.0f} | {r['p50_ms']:.2f} | **{r['p90_ms']:.2f}** "
                f"| {r['p99_ms']:.2f} | {r['max_ms']:.1f} | {r['errors']} | {r['timeouts']} "
                f"| {r['retries']} "
                f"| {r['lag_p50_ms']:.2f}/{r['lag_p99_ms']:.2f} | {r['server_cpu_ms']:.2f} "
                f"| {r['gen_cpu_ms']:.2f} | {r['server_rss_mb']:.0f} | {r['conns']} "
                f"| {r['load_before']} -> {r['load_after']} |"
            )
        lines.append("")
    if scale:
        lines += [
            "### V-SKNN serving index at scale (synthetic; default config: sample_size 500, k 100)",
            "",
            "Sessions: N/2 of 2-20 events, state made directly from the arrays (see the "
            "script's docstring). Build: `SessionIndex.build` (counting transpose, truncation "
            "to the 500 most recent sessions per item); write: its `.npy` files. In a fresh "
            "process: RSS after the imports (torch, numba, SciPy, Polars; a server adds "
            "FastAPI and uvicorn), `ModelBundle.load` (model, vocabulary, id map, memory-mapped "
            "index, warm-up) and the RSS after it, then 2,000 `recommend` calls (histories of "
            "1-19 items) and the RSS / peak RSS after them.",
            "",
            "| items | sessions | events | index build s | index write s | index on disk MB "
            "| bundle load s | RSS of the imports MB | RSS after load MB "
            "| RSS after 2,000 requests MB | peak RSS MB | request median / p90 / p99 ms | engine "
            "| load |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in scale:
            lines.append(
                f"| {r['n_items']:,} | {r['n_sessions']:,} | {r['n_events']:,} "
                f"| {r['build_s']:.2f} | {r['write_s']:.2f} | {r['index_mb']:.0f} "
                f"| {r['load_s']:.1f} | {r['rss_base_mb']:.0f} | {r['rss_load_mb']:.0f} "
                f"| {r['rss_mb']:.0f} "
                f"| {r['hwm_mb']:.0f} | {r['median_ms']:.3f} / {r['p90_ms']:.3f} / "
                f"{r['p99_ms']:.3f} | {r['engine']} | {r['load']} |"
            )
        lines.append("")
    lines.append(end)
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--generate":
        generate_main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--run",
        action="append",
        default=[],
        help="DATA=MODEL[*WORKERS]@RATE[,RATE...] (repeatable); DATA: a log path or "
        "synthetic:N; WORKERS: server worker processes (default 1).",
    )
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--warmup", type=float, default=2)
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--train-sessions", type=int, default=5000)
    ap.add_argument("--scale", default="", help="Catalogue sizes for the index table.")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument(
        "--tag", default="", help="Name of this run's section in --out (several can coexist)."
    )

    args = ap.parse_args()
    args.scale = [int(s) for s in args.scale.split(",") if s]
    sys.path.insert(0, str(ROOT / "src"))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="warmrec-openloop-"))
    workdir.mkdir(parents=True, exist_ok=True)
    load = openloop_table(args, workdir) if args.run else []
    scale = scale_table(args, workdir) if args.scale else []
    text = markdown(args, load, scale)
    print(text)
    if args.out:
        from _bench import write_section

        write_section(args.out, *markers(args.tag), text, "# Serving benchmark\n")


if __name__ == "__main__":
    main()
