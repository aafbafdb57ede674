"""Overload and reloads of ``warmrec serve`` on loopback: goodput with and without load shedding,
and the server's RSS over repeated reloads.

``--overload``: for each offered rate of ``--rates``, one server per setting (``--max-inflight 0``,
no shedding, and ``--max-inflight N``), each driven by an **open-loop** generator for
``--seconds`` s: request ``i`` is due at ``i / rate`` s whatever happened to earlier ones
(latency counted from that due time, so no coordinated omission), sent on an idle connection
of a pool of ``--conns`` keep-alive connections opened beforehand, as a load balancer's pool
(a request waits for an idle connection when none is free; the wait counts in its latency). A
request not answered within ``--timeout`` s counts as lost (the client gave up, as a real
client would; its connection is replaced). Goodput is the number of 200s answered within the
timeout per second; 503s (shed) are counted apart. The settings are run back to back at each
rate, so that the machine's load hits both alike.

Why a pool: a generator that opens a new connection for each request that finds none idle
makes the kernel's accept queue the server's queue. Under uvloop (uvicorn's default loop), a
worker busy with inline inference was measured to accept new connections about as fast as it
answers requests (the accept queue grew to ~1,900 in 8 s at 3x capacity), so that queue is
out of the application's sight and no in-process bound can shed it; behind a proxy or a load
balancer, requests arrive on a few long-lived connections and that case does not arise.

``--reloads N``: one server with an admin token, ``N`` ``POST /admin/reload``, RSS of the server
process before and after (``/proc/PID/statm``).

Usage::

    python benchmarks/serving_overload.py MODEL_DIR --overload --rates 300,600 --max-inflight 32
    python benchmarks/serving_overload.py MODEL_DIR --reloads 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``warmrec serve`` in a subprocess on a free port, ready once /health answers."""

    def __init__(self, model_dir: Path, *args: str) -> None:
        self.port = free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        cmd = [sys.executable, "-m", "warmrec", "serve", str(model_dir), "--port", str(self.port)]
        self.proc = subprocess.Popen([*cmd, *args], env=env, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while not self._healthy():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("warmrec serve did not start")
            time.sleep(0.2)

    def _healthy(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                return s.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def load_stats(self) -> dict:
        """``/metadata``'s ``load`` (in-flight bound, peak, shed count)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=300) as s:
            s.sendall(b"GET /metadata HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        return json.loads(data.split(b"\r\n\r\n", 1)[1])["load"]

    def rss_mib(self) -> float:
        with open(f"/proc/{self.proc.pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _request(body: bytes) -> bytes:
    return (
        b"POST /recommend HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status


def request_bodies(model_dir: Path, n: int = 50) -> list[bytes]:
    """``POST /recommend`` requests over histories of 1-20 ids of the model's vocabulary."""
    ids = json.loads((model_dir / "vocab.json").read_text())["ids"]
    rng = random.Random(0)
    out = []
    for _ in range(n):
        hist = rng.sample(ids, min(len(ids), rng.randint(1, 20)))
        out.append(_request(json.dumps({"items": hist, "k": 10}).encode()))
    return out


async def open_loop(
    port: int, bodies: list[bytes], rate: float, seconds: float, timeout: float, conns: int
) -> dict:
    """Send ``rate`` requests/s for ``seconds`` s on schedule over a pool of ``conns``
    keep-alive connections opened beforehand (as a load balancer's pool: a request waits for an
    idle connection when none is free, and that wait counts in its latency); see the module
    docstring."""
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(conns):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    lat_ok: list[float] = []
    lag: list[float] = []  # the generator's own delay: due time -> written
    counts = {"200": 0, "503": 0, "other": 0, "lost": 0}
    n = int(rate * seconds)
    t0 = time.perf_counter() + 0.2

    async def one(i: int) -> None:
        due = t0 + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        conn = None
        try:
            async with asyncio.timeout(max(0.001, due + timeout - time.perf_counter())):
                conn = await pool.get()
                lag.append(time.perf_counter() - due)
                conn[1].write(bodies[i % len(bodies)])
                status = await _read_response(conn[0])
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            counts["lost"] += 1
            if conn is not None:  # its answer may still come: replace the connection
                conn[1].close()
                try:
                    pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
                except OSError:
                    pass
            return
        took = time.perf_counter() - due
        if status == 200:
            counts["200"] += 1
            lat_ok.append(took)
        elif status == 503:
            counts["503"] += 1
        else:
            counts["other"] += 1
        pool.put_nowait(conn)

    await asyncio.gather(*(one(i) for i in range(n)))
    while not pool.empty():
        pool.get_nowait()[1].close()
    lat_ok.sort()

    def pct(q: float) -> float:
        return lat_ok[min(len(lat_ok) - 1, int(q * len(lat_ok)))] * 1000 if lat_ok else float("nan")

    return {
        "offered": rate,
        "goodput": counts["200"] / seconds,
        **counts,
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "send_lag_p99_ms": sorted(lag)[int(0.99 * (len(lag) - 1))] * 1000 if lag else float("nan"),
    }


def overload(args) -> str:
    rows = []
    bodies = request_bodies(args.model_dir)
    for rate in [float(r) for r in args.rates.split(",")]:
        for limit in (0, args.max_inflight):
            srv = Server(args.model_dir, "--max-inflight", str(limit))
            try:
                warm = (srv.port, bodies, min(rate, 50), 1.0, args.timeout, 8)
                asyncio.run(open_loop(*warm))
                run = (srv.port, bodies, rate, args.seconds, args.timeout, args.conns)
                res = asyncio.run(open_loop(*run))
                res["server"] = srv.load_stats()
            finally:
                srv.stop()
            res["max_inflight"] = limit or "none"
            rows.append(res)
            print(res, flush=True)
    out = [
        f"Open loop, {args.seconds} s per run, client timeout {args.timeout} s, "
        f"{args.conns} keep-alive connections, 1 worker, {platform.machine()} with "
        f"{os.cpu_count()} cores shared with the generator.",
        "",
        "| offered rps | --max-inflight | goodput (200/s) | 503 | lost (timeout) | p50 ms | p99 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r['offered']:.0f} | {r['max_inflight']} | {r['goodput']:.0f} | {r['503']} | "
            f"{r['lost']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} |"
        )
    return "\n".join(out)


def reloads(args) -> str:
    import httpx

    token = secrets.token_hex(16)
    with tempfile.NamedTemporaryFile("w", suffix=".token", delete=False) as f:
        f.write(token)
    srv = Server(args.model_dir, "--admin-token-file", f.name)
    try:
        url = f"http://127.0.0.1:{srv.port}"
        with httpx.Client(base_url=url, timeout=60) as c:
            auth = {"Authorization": f"Bearer {token}"}
            for _ in range(3):
                c.post("/admin/reload", headers=auth).raise_for_status()
            before, t = srv.rss_mib(), time.perf_counter()
            for _ in range(args.reloads):
                c.post("/admin/reload", headers=auth).raise_for_status()
            after, took = srv.rss_mib(), time.perf_counter() - t
            engine = c.get("/metadata").json()["engine"]
    finally:
        srv.stop()
        os.unlink(f.name)
    per = (after - before) / args.reloads * 1024
    return (
        f"{args.reloads} reloads ({engine} engine): RSS {before:.1f} -> {after:.1f} MiB "
        f"({per:.0f} KiB per reload, {took:.1f} s)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--overload", action="store_true")
    ap.add_argument("--rates", default="300,600")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--max-inflight", type=int, default=32)
    ap.add_argument("--conns", type=int, default=256, help="Keep-alive connections of the pool.")
    ap.add_argument("--reloads", type=int, default=0)
    args = ap.parse_args()
    if args.reloads:
        print(reloads(args))
    if args.overload:
        print(overload(args))


if __name__ == "__main__":
    main()
