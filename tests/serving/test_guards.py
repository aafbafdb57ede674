"""The ASGI guards: Host allow-list parsing and load shedding (in-process, deterministic)."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

from warmrec.errors import ConfigError
from warmrec.serving.guards import AllowedHosts, LoadShed


@pytest.mark.parametrize(
    ("bind", "host", "ok"),
    [
        ("127.0.0.1", b"localhost:8000", True),
        ("127.0.0.1", b"127.0.0.1", True),
        ("127.0.0.1", b"[::1]:8000", True),
        ("127.0.0.1", b"rebind.attacker.example", False),
        ("127.0.0.1", b"localhost:80:80", False),
        ("127.0.0.1", b"localhost:http", False),
        ("127.0.0.1", b"localhost:\xb2", False),  # a superscript two is no port
        ("127.0.0.1", b"", False),
        ("127.0.0.1", None, True),  # HTTP/1.0 without Host
        ("api.internal", b"API.internal:443", True),
        ("api.internal", b"other.internal", False),
        ("0.0.0.0", socket.gethostname().encode(), True),
        ("0.0.0.0", b"192.168.1.20:8000", True),
        ("0.0.0.0", b"attacker.example", False),
    ],
)
def test_allowed_hosts_for_a_bind(bind, host, ok):
    assert AllowedHosts.for_bind(bind).allows(host) is ok


def test_an_allowed_name_given_with_its_port_allows_that_name():
    """The Host check compares names, not ports: ``--allowed-host recs.example.com:8080`` kept
    the port in the name and matched no request."""
    hosts = AllowedHosts.for_bind("127.0.0.1", ["Recs.Example.com:8080", "[::1]:9000"])
    assert hosts.allows(b"recs.example.com:8080") and hosts.allows(b"recs.example.com")
    assert not hosts.allows(b"other.example.com:8080")
    for bad in ("http://recs.example.com/", "recs.example.com:http", ":8080"):
        with pytest.raises(ConfigError, match="expected a host name"):
            AllowedHosts([bad])


def test_extra_names_and_star():
    assert AllowedHosts.for_bind("127.0.0.1", ["recs.example.com"]).allows(b"recs.example.com")
    assert AllowedHosts(["*"]).allows(b"anything.at.all")


async def _call(mw: LoadShed, path: str = "/recommend") -> tuple[int, dict[str, str]]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(msg: dict) -> None:
        sent.append(msg)

    scope = {"type": "http", "method": "POST", "path": path, "headers": [], "query_string": b""}
    await mw(scope, receive, send)
    start = sent[0]
    headers = {k.decode(): v.decode() for k, v in start.get("headers", [])}
    return start["status"], headers


def test_load_shedding_bounds_what_a_turn_of_the_loop_admits():
    """20 requests read in one turn of the loop, 5 admitted: the rest get 503 + Retry-After at
    once, without running the app; the next turn is admitted again; /health is never shed."""
    ran: list[int] = []

    async def app(scope, receive, send) -> None:
        ran.append(1)  # inline, CPU-bound work: no await before the answer
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    mw = LoadShed(app, max_inflight=5)

    async def burst(n: int, path: str = "/recommend") -> list[tuple[int, dict]]:
        return await asyncio.gather(*(_call(mw, path) for _ in range(n)))

    async def main() -> None:
        first = await burst(20)
        codes = [c for c, _ in first]
        assert codes.count(200) == 5 and codes.count(503) == 15
        assert all(h.get("retry-after") == "1" for c, h in first if c == 503)
        assert len(ran) == 5 and mw.inflight == 0
        assert [c for c, _ in await burst(5)] == [200] * 5
        assert [c for c, _ in await burst(12, "/health")] == [200] * 12

    asyncio.run(main())
    assert mw.stats() == {"max_inflight": 5, "inflight": 0, "peak_inflight": 5, "shed": 15}


def test_a_shed_answer_is_a_json_problem():
    async def app(scope, receive, send) -> None:
        await asyncio.sleep(0.05)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    mw = LoadShed(app, max_inflight=1)
    body: list[bytes] = []

    async def send(msg: dict) -> None:
        if msg["type"] == "http.response.body":
            body.append(msg["body"])

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    async def main() -> None:
        scope = {"type": "http", "method": "GET", "path": "/x", "headers": []}
        slow = asyncio.create_task(mw(scope, receive, lambda m: asyncio.sleep(0)))
        await asyncio.sleep(0.01)
        await mw(scope, receive, send)
        await slow

    asyncio.run(main())
    assert "overloaded" in json.loads(body[0])["detail"]
    with pytest.raises(ValueError):
        LoadShed(None, max_inflight=0)


def test_a_stalled_body_holds_no_slot_and_times_out():
    """Shedding counted a request before its body was read, and nothing timed a body out: a
    few uploads that never finished held every slot (503 to everyone else). The body is read
    outside the shedding now, within a deadline (408)."""
    from warmrec.serving.app import BodyLimit

    ran: list[int] = []

    async def app(scope, receive, send) -> None:
        ran.append(1)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    mw = BodyLimit(LoadShed(app, max_inflight=1), read_s=0.3)
    scope = {"type": "http", "method": "POST", "path": "/recommend", "headers": [],
             "query_string": b""}  # fmt: skip

    async def main() -> tuple[list[dict], tuple[int, dict]]:
        stalled_sent: list[dict] = []
        first = True

        async def stalled_receive() -> dict:
            nonlocal first
            if first:
                first = False
                return {"type": "http.request", "body": b'{"items":', "more_body": True}
            await asyncio.sleep(3600)  # the rest never comes
            return {}

        async def stalled_send(msg: dict) -> None:
            stalled_sent.append(msg)

        stalled = asyncio.create_task(mw(scope, stalled_receive, stalled_send))
        await asyncio.sleep(0.05)
        other = await _call(mw)  # served while the stalled one waits
        await stalled
        return stalled_sent, other

    stalled_sent, other = asyncio.run(main())
    assert other[0] == 200 and len(ran) == 1
    assert stalled_sent[0]["status"] == 408
    assert "within 0.3 s" in json.loads(stalled_sent[1]["body"])["detail"]


def test_the_app_reads_bodies_outside_its_load_shedding(tmp_path):
    from tests.serving.conftest import save_model
    from warmrec.serving.app import BodyLimit, create_app

    app = create_app(save_model("pop", tmp_path / "m"), max_inflight=3)
    order = [getattr(m.cls, "__name__", "") for m in app.user_middleware]  # outermost first
    assert order.index("BodyLimit") < order.index("shedding")
    assert BodyLimit.__name__ in order
