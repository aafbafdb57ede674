"""ASGI guards in front of the service: request shape, Host allow-list, load shedding.

:class:`RequestGuard` refuses, before any route runs,

- a request head (request line and headers) over ``max_head_bytes`` -> 431 (the HTTP server
  also cuts a head that grows past its own cap, see :mod:`warmrec.serving.server`);
- a path that is not UTF-8 once percent-decoded -> 400 (the server decodes ``%FF`` and ``%FE``
  alike to U+FFFD, so ``/sessions/%FF`` and ``/sessions/%FE`` would name one session);
- a ``Host`` header outside :class:`AllowedHosts` -> 400 (DNS rebinding: a web page whose name
  resolves to this machine reaches the service with its own name in ``Host``), and more than one
  ``Host`` header -> 400 (RFC 9112; the check read the last one, the app the first).

:class:`LoadShed` bounds the requests a worker holds: past ``max_inflight`` a request is answered
at once with 503 and ``Retry-After``, so that under overload the worker spends its time on
requests it can answer in time (goodput stays at capacity) instead of on a queue whose clients
have given up. Inference runs inline on the event loop, so requests are counted the way they
arrive: all requests read in one turn of the loop are counted (each yields once) before the first
of them runs; when a turn brings more than the bound, the excess is shed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import socket
import urllib.parse
from collections.abc import Iterable
from typing import Any

from starlette.responses import JSONResponse

from warmrec.errors import ConfigError

MAX_HEAD_BYTES = 32 * 1024
"""Request line plus headers, in bytes (431 beyond)."""
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
LOOPBACK_NAMES = ("localhost",)
_HOST_PORT = re.compile(r"(?:\[([0-9a-f:.%]+)\]|([^:\[\]]*))(?::([0-9]{1,5}))?")


def problem(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _host_name(given: str) -> str:
    """A name for the allow-list as the Host check compares it: lower case, no trailing dot,
    and no port (``recs.example.com:8080`` -> ``recs.example.com``: a Host header's port is
    not compared, so a name kept with its port matched no request); a bracketed IPv6 address
    gives ``""`` (every IP address is allowed anyway). Anything else (a URL, a path) is refused
    with :class:`~warmrec.errors.ConfigError`."""
    text = given.strip().lower()
    if text == "*":
        return text
    m = _HOST_PORT.fullmatch(text)
    if m is None or (m.group(2) is not None and not m.group(2).rstrip(".")) or "/" in text:
        raise ConfigError(
            f"allowed host {given!r}: expected a host name (optionally with :port) or '*'"
        )
    return "" if m.group(1) is not None else m.group(2).rstrip(".")


class AllowedHosts:
    """Which ``Host`` header values a server answers.

    An IP address is always allowed (a page reached by its address is the service's own
    origin; rebinding needs a name), and so is each name of ``names`` (case-insensitive, a
    trailing dot ignored); ``"*"`` in ``names`` allows any Host. A request without a Host
    header (HTTP/1.0) is allowed."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = frozenset(_host_name(n) for n in names if n.strip()) - {""}
        self.any = "*" in self.names

    @classmethod
    def for_bind(cls, host: str, extra: Iterable[str] = ()) -> AllowedHosts:
        """The default list for a server bound to ``host``: ``localhost``, the bound name
        (when it is a name), the machine's names for a wildcard bind, and ``extra``."""
        names = set(LOOPBACK_NAMES) | set(extra)
        if host not in WILDCARD_HOSTS and not _is_ip(host):
            names.add(host)
        if host in WILDCARD_HOSTS:
            names |= {socket.gethostname(), socket.getfqdn()}
        return cls(names)

    def allows(self, value: bytes | None) -> bool:
        if self.any or value is None:
            return True
        text = value.decode("latin-1").strip().lower()
        m = _HOST_PORT.fullmatch(text)
        if m is None:
            return False
        if m.group(1) is not None:  # [IPv6]
            return _is_ip(m.group(1))
        name = m.group(2).rstrip(".")
        return bool(name) and (name in self.names or _is_ip(name))

    def describe(self) -> list[str]:
        return ["*"] if self.any else ["<any IP address>", *sorted(self.names)]


class RequestGuard:
    """ASGI middleware: head size, path encoding and Host checks (see the module docstring)."""

    def __init__(
        self,
        app: Any,
        *,
        allowed_hosts: AllowedHosts | None = None,
        max_head_bytes: int = MAX_HEAD_BYTES,
    ) -> None:
        self.app, self.allowed, self.max_head = app, allowed_hosts, max_head_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
        headers = scope.get("headers", [])
        size = len(raw) + len(scope.get("query_string", b""))
        host, n_hosts = None, 0
        for name, value in headers:
            size += len(name) + len(value) + 4
            if name == b"host":
                host, n_hosts = value, n_hosts + 1
        if size > self.max_head:
            answer = problem(431, f"request head over {self.max_head} bytes")
        elif n_hosts > 1:  # RFC 9112 3.2: a 400; the check read the last, the app the first
            answer = problem(400, f"{n_hosts} Host headers: expected one")
        elif b"%" in raw and not _utf8(urllib.parse.unquote_to_bytes(raw)):
            answer = problem(400, "the path is not UTF-8 once percent-decoded")
        elif self.allowed is not None and not self.allowed.allows(host):
            answer = problem(400, "Host header not allowed (see warmrec serve --allowed-host)")
        else:
            await self.app(scope, receive, send)
            return
        await answer(scope, receive, send)


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class LoadShed:
    """ASGI middleware: 503 with ``Retry-After`` past ``max_inflight`` requests held by this
    worker (``exempt`` paths, e.g. ``/health``, are never shed); see the module docstring."""

    def __init__(
        self,
        app: Any,
        *,
        max_inflight: int,
        retry_after_s: int = 1,
        exempt: Iterable[str] = ("/health",),
    ) -> None:
        if max_inflight < 1:
            raise ValueError("max_inflight must be >= 1")
        self.app, self.max_inflight = app, max_inflight
        self.exempt = frozenset(exempt)
        self.inflight = 0
        self.peak = 0
        self.shed = 0
        # the answer is built once: shedding must cost next to nothing
        body = json.dumps(
            {"detail": f"overloaded: {max_inflight} requests in progress; retry later"}
        ).encode()
        self._busy = (
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(retry_after_s).encode()),
                ],
            },
            {"type": "http.response.body", "body": body},
        )

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        if self.inflight >= self.max_inflight:
            self.shed += 1
            await send(self._busy[0])
            await send(self._busy[1])
            return
        self.inflight += 1
        if self.inflight > self.peak:
            self.peak = self.inflight
        try:
            await asyncio.sleep(0)  # the other requests of this turn get counted before we run
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1

    def stats(self) -> dict[str, int]:
        return {
            "max_inflight": self.max_inflight,
            "inflight": self.inflight,
            "peak_inflight": self.peak,
            "shed": self.shed,
        }
