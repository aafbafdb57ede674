"""A corpus of bad requests against a real ``warmrec serve`` process: not one 5xx (issue 19).

Raw HTTP/1.1 over a socket, so that nothing is normalised on the way: NaN and Infinity in JSON,
lone surrogates, odd digit strings, undecodable paths, huge and numerous headers, foreign and
missing Host headers, admin calls without the token, poisoned sessions, malformed framing. Each
case names the status it must get; the server's log must hold no traceback. Then a burst
against ``--max-inflight 2``: answered 200 or 503 with ``Retry-After``, nothing else.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest

from tests.serving.conftest import running_server

TOKEN = "corpus-admin-token-0123456789"


def _request(
    port: int,
    method: str,
    path: str,
    body: bytes | str | None = None,
    headers: dict[str, str | bytes] | None = None,
    *,
    host: bytes | None = b"127.0.0.1",
    version: bytes = b"HTTP/1.1",
    raw: bytes | None = None,
) -> int | str:
    """The status of one request (or ``"reset"`` when the server cut the connection)."""
    if raw is None:
        data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
        lines = [method.encode() + b" " + path.encode("latin-1") + b" " + version]
        if host is not None:
            lines.append(b"Host: " + host)
        hdrs = {"Connection": "close", **(headers or {})}
        if data is not None:
            hdrs.setdefault("Content-Type", "application/json")
            hdrs["Content-Length"] = str(len(data))
        for k, v in hdrs.items():
            lines.append(k.encode() + b": " + (v if isinstance(v, bytes) else v.encode()))
        raw = b"\r\n".join(lines) + b"\r\n\r\n" + (data or b"")
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        try:
            for i in range(0, len(raw), 1 << 16):
                s.sendall(raw[i : i + (1 << 16)])
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused while sending: read what the server said, if anything
        buf = b""
        try:
            while b"\r\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        except ConnectionResetError:
            pass
    if not buf.startswith(b"HTTP/1."):
        return "reset"
    return int(buf.split(b" ", 2)[1])


NAN_BODIES = [
    '{"items": [NaN]}',
    '{"items": [Infinity]}',
    '{"items": [-Infinity], "k": 3}',
    '{"items": [1], "k": Infinity}',
    '{"items": [1], "k": NaN}',
    '{"items": [1], "exclude": [NaN]}',
    '{"items": [1e400]}',
    '{"items": [1], "k": 1e308}',
]
SURROGATE_BODIES = [
    '{"items": ["\\ud800"]}',
    '{"items": [1, "\\udc00x"]}',
    '{"items": [1], "restrict_to": ["\\udfff"]}',
    '{"\\ud800": [1]}',
    '{"items": [1], "fallback": "\\ud83d"}',
]


def _cases() -> list[tuple[str, str, str, dict, int | tuple]]:
    """(name, method, path, request kwargs, expected status or statuses)."""
    cases: list[tuple[str, str, str, dict, int | tuple]] = []
    for i, b in enumerate(NAN_BODIES):
        cases.append((f"nan-{i}", "POST", "/recommend", {"body": b}, 422))
        cases.append((f"nan-events-{i}", "POST", "/sessions/c1/events", {"body": b}, 422))
    for i, b in enumerate(SURROGATE_BODIES):
        cases.append((f"surrogate-{i}", "POST", "/recommend", {"body": b}, 422))
        cases.append((f"surrogate-events-{i}", "POST", "/sessions/c1/events", {"body": b}, 422))
    odd = json.dumps({"items": ["--5", "²", "٣", "007", "-0", "+5", " 3", "9" * 100, 3]})
    cases += [
        ("odd-digits", "POST", "/recommend", {"body": odd}, 200),
        ("odd-digits-events", "POST", "/sessions/odd/events", {"body": odd}, 200),
        ("odd-digits-read", "GET", "/sessions/odd/recommendations", {}, 200),
        ("integral-floats", "POST", "/recommend", {"body": '{"items": [3.0], "k": 5.0}'}, 200),
        ("beyond-2^53", "POST", "/recommend", {"body": '{"items": [9007199254740993]}'}, 422),
        ("minus-zero", "POST", "/recommend", {"body": '{"items": [-0.0]}'}, 400),
        ("empty-history", "POST", "/recommend", {"body": '{"items": []}'}, 422),
        ("empty-object", "POST", "/recommend", {"body": "{}"}, 422),
        ("empty-popular", "POST", "/recommend", {"body": '{"fallback": "popular"}'}, 200),
        ("bool-id", "POST", "/recommend", {"body": '{"items": [true]}'}, 422),
        ("malformed", "POST", "/recommend", {"body": '{"items": [1,'}, 422),
        ("not-json-type", "POST", "/recommend", {"body": "items=1", "headers": {}}, 422),
        ("deep-nesting", "POST", "/recommend", {"body": "[" * 100_000 + "]" * 100_000}, 422),
        ("text-plain", "POST", "/recommend", {"body": '{"items": [1]}', "headers": {"Content-Type": "text/plain"}}, 415),
        ("latin-1", "POST", "/recommend", {"body": '{"items": [1]}', "headers": {"Content-Type": "application/json; charset=latin-1"}}, 415),
        ("json-utf8-charset", "POST", "/recommend", {"body": '{"items": [1]}', "headers": {"Content-Type": "application/json; charset=UTF-8"}}, 200),
        ("not-utf8", "POST", "/recommend", {"body": b'{"items": ["\xff\xfe"]}'}, 422),
        ("5000-digits", "POST", "/recommend", {"body": '{"items": [' + "9" * 5000 + "]}"}, 422),
        ("body-too-big", "POST", "/recommend", {"body": '{"items": [1], "x": "' + "a" * (1 << 21) + '"}'}, 413),
        # poisoned sessions: refused events leave nothing; every stored id reads back
        ("poison-nan", "POST", "/sessions/p/events", {"body": '{"items": [NaN, 1]}'}, 422),
        ("poison-surrogate", "POST", "/sessions/p/events", {"body": '{"items": ["\\ud800"]}'}, 422),
        ("poison-left-nothing", "GET", "/sessions/p/recommendations", {}, 404),
        ("poison-weird-ok", "POST", "/sessions/p/events", {"body": json.dumps({"items": ["²", "\x00", "x" * 128, 2**53 - 1, 4]})}, 200),
        ("poison-read", "GET", "/sessions/p/recommendations?exclude_seen=true&k=50", {}, 200),
        ("poison-read-popular", "GET", "/sessions/p/recommendations?fallback=popular", {}, 200),
        ("unknown-only-session", "POST", "/sessions/u/events", {"body": '{"items": ["zz"]}'}, 200),
        ("unknown-only-read", "GET", "/sessions/u/recommendations", {}, 400),
        # paths and query strings
        ("path-ff", "POST", "/sessions/%FF/events", {"body": '{"items": [1]}'}, 400),
        ("path-fe", "POST", "/sessions/%FE/events", {"body": '{"items": [1]}'}, 400),
        ("path-surrogate", "GET", "/sessions/%ED%A0%80/recommendations", {}, 400),
        ("path-cut-utf8", "DELETE", "/sessions/a%C3", {}, 400),
        ("path-emoji", "POST", "/sessions/%F0%9F%98%80/events", {"body": '{"items": [1]}'}, 200),
        ("path-too-long-id", "GET", "/sessions/" + "s" * 129 + "/recommendations", {}, 422),
        ("path-huge", "GET", "/sessions/" + "s" * 100_000 + "/recommendations", {}, (400, 431, "reset")),
        ("query-k-nan", "GET", "/sessions/odd/recommendations?k=NaN", {}, 422),
        ("query-k-inf", "GET", "/sessions/odd/recommendations?k=1e400", {}, 422),
        ("query-k-ff", "GET", "/sessions/odd/recommendations?k=%FF", {}, 422),
        ("query-k-super", "GET", "/sessions/odd/recommendations?k=%C2%B2", {}, 422),
        ("query-k-arabic", "GET", "/sessions/odd/recommendations?k=%D9%A3", {}, 422),
        ("query-fallback-junk", "GET", "/sessions/odd/recommendations?fallback=%FF", {}, 422),
        # headers
        ("header-40k", "GET", "/health", {"headers": {"X-Big": "a" * 40_000}}, 431),
        ("header-8m", "GET", "/health", {"headers": {"X-Big": "a" * (8 << 20)}}, (431, "reset")),
        ("headers-many", "GET", "/health", {"headers": {f"X-H{i}": "v" * 40 for i in range(1000)}}, 431),
        ("header-latin1", "GET", "/health", {"headers": {"X-Odd": b"\xff\xfe\xb2"}}, 200),
        ("host-foreign", "GET", "/health", {"host": b"rebind.attacker.example"}, 400),
        ("host-foreign-port", "GET", "/metadata", {"host": b"attacker.example:8000"}, 400),
        ("host-non-ascii", "GET", "/health", {"host": b"\xff\xfe"}, 400),
        ("host-empty", "GET", "/health", {"host": b""}, 400),
        ("host-missing-http10", "GET", "/health", {"host": None, "version": b"HTTP/1.0"}, 200),
        ("host-localhost", "GET", "/health", {"host": b"localhost:80"}, 200),
        # admin
        ("admin-no-token", "POST", "/admin/reload", {}, 401),
        ("admin-wrong-token", "POST", "/admin/reload", {"headers": {"Authorization": "Bearer x"}}, 401),
        ("admin-form-post", "POST", "/admin/reload", {"body": "a=b", "headers": {"Content-Type": "application/x-www-form-urlencoded", "Origin": "http://attacker.example"}}, 401),
        ("admin-basic", "POST", "/admin/reload", {"headers": {"Authorization": f"Basic {TOKEN}"}}, 401),
        ("admin-foreign-host", "POST", "/admin/reload", {"host": b"attacker.example", "headers": {"Authorization": f"Bearer {TOKEN}"}}, 400),
        ("admin-token-latin1", "POST", "/admin/reload", {"headers": {"Authorization": b"Bearer \xff\xfe"}}, 401),
        # framing
        ("garbage", "GET", "/", {"raw": b"\x00\x01\x02 garbage\r\n\r\n"}, (400, "reset")),
        ("bad-content-length", "POST", "/recommend", {"raw": b"POST /recommend HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -5\r\n\r\n"}, (400, "reset")),
        ("method", "PATCH", "/recommend", {"body": '{"items": [1]}'}, 405),
        ("unknown-route", "GET", "/nope", {}, 404),
    ]  # fmt: skip
    return cases


def test_bad_request_corpus_gets_no_5xx_from_a_real_server(pop_dir, tmp_path):
    token = tmp_path / "token"
    token.write_text(TOKEN)
    with running_server(pop_dir, "--admin-token-file", str(token)) as (url, proc):
        port = int(url.rsplit(":", 1)[1])
        got = {}
        for name, method, path, kw, want in _cases():
            status = _request(port, method, path, **kw)
            got[name] = status
            assert status == "reset" or status < 500, (name, status)
            assert status in (want if isinstance(want, tuple) else (want,)), (name, status, want)
        # still healthy, and the admin route works with the token
        with httpx.Client(base_url=url, timeout=30) as c:
            assert c.get("/health").status_code == 200
            ok = c.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
            assert ok.status_code == 200
    log = proc.stdout.read().decode(errors="replace")
    assert "Traceback" not in log and "Exception in ASGI" not in log, log[-3000:]
    assert len(got) > 70


def test_a_burst_past_max_inflight_is_shed_with_retry_after(pop_dir):
    """30 requests land while the worker is busy with a slow one: at most 2 are held, the rest
    answered 503 + Retry-After at once; none waits for the others and none is a 5xx else."""
    with running_server(pop_dir, "--max-inflight", "2") as (url, _):
        port = int(url.rsplit(":", 1)[1])
        small = (
            b"POST /recommend HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b'Content-Length: 14\r\n\r\n{"items": [1]}'
        )
        slow_body = json.dumps({"items": [1], "restrict_to": [f"id-{i}" for i in range(9000)]})
        slow = (
            b"POST /recommend HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(slow_body)}\r\n\r\n".encode()
            + slow_body.encode()
        )
        statuses: list[tuple[int, bytes]] = []
        for _ in range(5):  # a burst that misses the busy window is tried again
            conns = [socket.create_connection(("127.0.0.1", port), timeout=20) for _ in range(31)]
            time.sleep(0.2)  # all accepted while the worker is idle
            conns[0].sendall(slow)
            time.sleep(0.005)
            for s in conns[1:]:
                s.sendall(small)
            replies = [_read_reply(s) for s in conns]
            for s in conns:
                s.close()
            statuses = replies[1:]
            if any(code == 503 for code, _ in statuses):
                break
        codes = [code for code, _ in statuses]
        assert set(codes) <= {200, 503}, codes
        assert codes.count(503) >= 1 and codes.count(200) >= 1, codes
        assert all(b"retry-after: 1" in head.lower() for code, head in statuses if code == 503)
        assert httpx.get(f"{url}/metadata").json()["load"]["shed"] >= codes.count(503)


def test_an_8mb_header_is_cut_off_while_it_is_sent(pop_dir):
    """The HTTP parser stops reading a head past its cap: the client cannot send it all."""
    with running_server(pop_dir) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * (8 << 20)
        sent, reply = 0, b""
        with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
            try:
                for i in range(0, len(head), 1 << 16):
                    sent += s.send(head[i : i + (1 << 16)])
            except (BrokenPipeError, ConnectionResetError):
                pass
            try:
                reply = s.recv(4096)
            except ConnectionResetError:
                pass
        assert sent < len(head), "the server took the whole 8 MB head"
        assert reply == b"" or reply.startswith(b"HTTP/1.1 431"), reply[:100]


def _read_reply(s: socket.socket) -> tuple[int, bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    head = buf.split(b"\r\n\r\n", 1)[0]
    return int(head.split(b" ", 2)[1]), head


@pytest.mark.parametrize("n_threads", [4])
def test_reloads_under_load_keep_answering(pop_dir, tmp_path, n_threads):
    """Reloads with the token while clients hammer the worker: every answer a 200."""
    token = tmp_path / "token"
    token.write_text(TOKEN)
    with running_server(pop_dir, "--admin-token-file", str(token)) as (url, _):
        codes: list[int] = []
        stop = threading.Event()

        def hammer() -> None:
            with httpx.Client(base_url=url, timeout=20) as c:
                while not stop.is_set():
                    codes.append(c.post("/recommend", json={"items": [2], "k": 3}).status_code)

        threads = [threading.Thread(target=hammer) for _ in range(n_threads)]
        for t in threads:
            t.start()
        try:
            with httpx.Client(base_url=url, timeout=30) as c:
                auth = {"Authorization": f"Bearer {TOKEN}"}
                for _ in range(3):
                    assert c.post("/admin/reload", headers=auth).status_code == 200
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert codes and set(codes) == {200}
