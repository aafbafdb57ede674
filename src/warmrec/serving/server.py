"""Running the service under uvicorn, as ``warmrec serve`` does.

- :func:`bind` opens the listening socket in the command's own process, before anything is
  printed: a busy port is one error line (exit 2), not a traceback after a "serving on" banner;
  the same socket is handed to uvicorn (and to each worker).
- :class:`CappedHttpToolsProtocol` is uvicorn's httptools protocol with a cap on the request
  head: past :data:`~warmrec.serving.guards.MAX_HEAD_BYTES` (plus at most one read from the
  socket) of a head that has not ended, the connection gets a 431 and is closed, so a client
  cannot make a worker buffer an 8 MB header. Without httptools, uvicorn's h11 protocol with
  ``h11_max_incomplete_event_size`` does the same.
- :func:`run` starts one worker in this process (on an app already built, whose model the
  command loaded and checked) or ``workers`` worker processes under uvicorn's supervisor (each
  builds its app from the environment, :func:`warmrec.serving.app.app_from_env`), supervised by
  :class:`warmrec.serving.supervisor.Supervisor` (a dead worker is restarted at once).
"""

from __future__ import annotations

import inspect
import socket
from typing import Any

from warmrec.errors import ConfigError
from warmrec.serving.guards import MAX_HEAD_BYTES

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # no httptools: h11 caps the head itself
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

_HEAD_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/json\r\n"
    b"connection: close\r\n"
    b"content-length: %d\r\n\r\n%s"
)


if HttpToolsProtocol is not None:

    class CappedHttpToolsProtocol(HttpToolsProtocol):  # type: ignore[misc,valid-type]
        """uvicorn's httptools protocol that refuses a request head over ``max_head`` bytes."""

        max_head = MAX_HEAD_BYTES

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._in_head = False
            self._head_bytes = 0
            self._refused = False

        def on_message_begin(self) -> None:
            self._in_head, self._head_bytes = True, 0
            super().on_message_begin()

        def on_headers_complete(self) -> None:
            self._in_head = False
            super().on_headers_complete()

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            was_in_head = self._in_head
            super().data_received(data)
            # a chunk read while a head was open and still open after it is all head; the chunk
            # that starts a head is not counted (it may end a previous body): at most one read
            # of slack
            if was_in_head and self._in_head:
                self._head_bytes += len(data)
                if self._head_bytes > self.max_head:
                    self._refuse()

        def _refuse(self) -> None:
            self._refused = True
            body = b'{"detail":"request head over %d bytes"}' % self.max_head
            self.transport.write(_HEAD_TOO_LARGE % (len(body), body))
            self.transport.close()


def protocol_options() -> dict[str, Any]:
    """uvicorn ``Config`` options for the capped HTTP protocol."""
    if HttpToolsProtocol is not None:
        return {"http": CappedHttpToolsProtocol}
    return {"http": "h11", "h11_max_incomplete_event_size": MAX_HEAD_BYTES}


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (not yet listening); one-line error when it cannot."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ConfigError(
            f"--host {host} --port {port}: cannot listen there ({e.strerror or e})"
        ) from None
    sock.set_inheritable(True)
    return sock


def run(
    app: Any,
    sock: socket.socket,
    *,
    workers: int = 1,
    log_level: str = "warning",
    healthcheck_s: float = 300,
) -> None:
    """Serve on ``sock``: ``app`` (an ASGI app) in this process, or with ``workers`` > 1 the
    factory path ``app`` (a string) in that many worker processes."""
    import uvicorn

    host, port = sock.getsockname()[:2]
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "workers": workers,
        "log_level": log_level,
        "access_log": False,
        **protocol_options(),
    }
    params = inspect.signature(uvicorn.Config).parameters
    if "timeout_worker_healthcheck" in params:
        # SIGHUP restarts the workers one by one; a new worker is ready once its model is loaded
        # and warmed up, which takes longer than uvicorn's default 5 s on a busy machine
        options["timeout_worker_healthcheck"] = healthcheck_s
    if workers > 1:
        from warmrec.serving.supervisor import Supervisor

        config = uvicorn.Config(app, factory=True, **options)
        server = uvicorn.Server(config)
        if "target" in inspect.signature(Supervisor).parameters:  # uvicorn < 0.50
            Supervisor(config, target=server.run, sockets=[sock]).run()
        else:
            Supervisor(config, sockets=[sock]).run()
        return
    config = uvicorn.Config(app, **options)
    uvicorn.Server(config).run(sockets=[sock])
