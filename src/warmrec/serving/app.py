"""The HTTP service: FastAPI over a :class:`~warmrec.serving.bundle.ModelBundle`.

Endpoints (OpenAPI docs at ``/docs``, the schema at ``/openapi.json``):

``POST /recommend``
    A history of raw item ids (oldest first), ``k``, ``exclude_seen``, optional ``exclude`` and
    ``restrict_to`` lists, ``fallback`` (``"none"`` or ``"popular"``) -> ranked raw ids with
    scores, the history's unknown ids, and whether the fallback answered.
``POST /sessions/{session_id}/events``, ``GET /sessions/{session_id}/recommendations``,
``DELETE /sessions/{session_id}``
    Server-side session state (:mod:`warmrec.serving.sessions`: bounded in sessions, events and
    bytes, with a TTL; in the process by default, or in Redis, shared by every worker; a store
    that cannot be reached is a 503).
``GET /health``, ``GET /metadata``
    Liveness; the model's name, config, vocabulary size, warmrec version, limits, store stats.
``POST /admin/reload`` (or ``SIGHUP`` to a one-worker server)
    Re-reads the model directory the server was started with (a new ``warmrec train --out DIR``
    replaces it atomically) and swaps it in atomically: a request takes a reference to the
    current bundle when it starts, so in-flight requests finish on the old model and no request
    is dropped; a directory that does not load leaves the old model serving (409). With a
    shared session store it reaches every worker and says which confirmed
    (:mod:`warmrec.serving.reload`); with the in-process store and ``--workers N`` it refuses
    (409): send ``SIGHUP`` to the uvicorn master instead, which restarts the workers one by one
    (each loads and warms up the new model). A one-worker server reloads in place on ``SIGHUP``.

Errors are 4xx, never 5xx: a malformed body or a value out of its limits -> 422 (FastAPI's
validation error); a history with no known item and no fallback asked for -> 400 naming the
problem; an unknown session -> 404; a body over ``MAX_BODY_BYTES`` -> 413. Limits: ``k`` <=
:data:`MAX_K`, a history <= :data:`MAX_HISTORY` ids, ``exclude``/``restrict_to`` <=
:data:`MAX_LIST` ids, ids and session ids <= :data:`MAX_ID_LEN` characters.

Inference runs inline in the ``async`` handlers: one CPU-bound request at a time per worker
with one torch thread, no thread-pool hand-off (scale with ``--workers``, one per core).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints

from warmrec.errors import WarmrecError
from warmrec.serving.bundle import EmptyHistoryError, ModelBundle, Ranked
from warmrec.serving.reload import Reloader, model_loader
from warmrec.serving.sessions import (
    DEFAULT_MAX_BYTES,
    SessionStore,
    SessionStoreError,
    open_store,
)

MAX_K = 1000
MAX_HISTORY = 1000
MAX_LIST = 10_000
MAX_ID_LEN = 128
MAX_BODY_BYTES = 1 << 20
MAX_SAFE_INT = 2**53 - 1
"""Integer ids beyond +-(2**53 - 1) (not exact in JSON numbers everywhere) are sent as strings."""

IntId = Annotated[StrictInt, Field(ge=-MAX_SAFE_INT, le=MAX_SAFE_INT)]
StrId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LEN)]
ItemId = IntId | StrId
SessionId = Annotated[str, PathParam(min_length=1, max_length=MAX_ID_LEN)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecommendRequest(_Body):
    """A history to recommend after."""

    items: list[ItemId] = Field(default_factory=list, max_length=MAX_HISTORY)
    """Raw item ids, oldest first (may be empty only with ``fallback="popular"``)."""
    k: int = Field(10, ge=1, le=MAX_K)
    """How many items to return."""
    exclude_seen: bool = False
    """Never return an item of the history."""
    exclude: list[ItemId] | None = Field(None, max_length=MAX_LIST)
    """Never return these items."""
    restrict_to: list[ItemId] | None = Field(None, max_length=MAX_LIST)
    """Return only these items (a candidate set)."""
    fallback: Literal["none", "popular"] = "none"
    """For a history with no known item: refuse (400), or the most popular training items."""


class ScoredItem(BaseModel):
    item_id: int | str
    score: float


class Recommendations(BaseModel):
    model: str
    items: list[ScoredItem]
    """Ranked, best first (fewer than k when exclusions leave fewer candidates)."""
    unknown: list[int | str]
    """Ids of the history the model does not know (ignored for scoring)."""
    fallback_used: bool
    """Whether the popularity fallback answered."""


class SessionRecommendations(Recommendations):
    session_id: str
    n_events: int


class EventsRequest(_Body):
    items: list[ItemId] = Field(min_length=1, max_length=MAX_HISTORY)
    """Raw item ids of the new events, oldest first."""


class EventsResponse(BaseModel):
    session_id: str
    n_events: int
    """Events kept for the session (the store keeps the most recent ``max_events``)."""
    n_total: int
    """Events ever appended to the session."""
    unknown: list[int | str]
    """Ids of these events the model does not know."""


class Problem(BaseModel):
    detail: str


class Health(BaseModel):
    status: Literal["ok"]
    model: str


class Deleted(BaseModel):
    session_id: str
    deleted: bool


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "No known item and no fallback asked for"},
    413: {"model": Problem, "description": "Body too large"},
}


class BodyLimit:
    """ASGI middleware: 413 for a body over ``limit`` bytes (declared or streamed)."""

    def __init__(self, app: Any, limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.limit
                except ValueError:
                    too_big = False
                if too_big:
                    await _problem(413, f"body over {self.limit} bytes")(scope, receive, send)
                    return
        # read the body (bounded) before the app sees it: FastAPI turns errors raised while
        # it reads a body into a 400, so the limit is enforced here, then the body replayed
        chunks, seen = [], 0
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                await self.app(scope, _replay([msg]), send)
                return
            body = msg.get("body", b"")
            seen += len(body)
            if seen > self.limit:
                await _problem(413, f"body over {self.limit} bytes")(scope, receive, send)
                return
            chunks.append(body)
            if not msg.get("more_body", False):
                break
        whole = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([whole], receive), send)


def _replay(msgs: list[dict], then: Any = None) -> Any:
    """An ASGI ``receive`` that returns ``msgs``, then defers to ``then`` (disconnects)."""
    queue = list(msgs)

    async def receive() -> dict:
        if queue:
            return queue.pop(0)
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}

    return receive


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def _answer(r: Ranked, model: str) -> dict[str, Any]:
    return {
        "model": model,
        "items": [{"item_id": i, "score": s} for i, s in zip(r.items, r.scores)],
        "unknown": r.unknown,
        "fallback_used": r.fallback_used,
    }


def create_app(
    model_dir: str | Path | None = None,
    *,
    bundle: ModelBundle | None = None,
    threads: int = 1,
    engine: str = "auto",
    max_sessions: int = 100_000,
    max_events: int = 200,
    session_ttl_s: float = 1800.0,
    store: SessionStore | None = None,
    session_store: str = "memory",
    max_session_bytes: int = DEFAULT_MAX_BYTES,
    workers: int = 1,
    reload_timeout_s: float | None = None,
) -> FastAPI:
    """The app for a model directory (loaded and warmed up at start-up, before the port opens)
    or an already loaded ``bundle``. Sessions go to ``store``, else to the store
    ``session_store`` names (``memory`` or a Redis URL, :func:`~warmrec.serving.sessions.open_store`);
    ``workers`` is how many worker processes serve it (for ``/admin/reload``)."""
    if bundle is None and model_dir is None:
        raise ValueError("create_app needs a model_dir or a bundle")
    source = Path(model_dir) if model_dir is not None else bundle.path
    sessions = (
        store
        if store is not None
        else open_store(
            session_store,
            max_sessions=max_sessions,
            max_events=max_events,
            ttl_s=session_ttl_s,
            max_bytes=max_session_bytes,
        )
    )
    reloader = Reloader(
        model_loader(source, threads, engine) if source is not None else None,
        sessions,
        bundle=bundle,
        workers=workers,
        **({"timeout_s": reload_timeout_s} if reload_timeout_s is not None else {}),
    )

    async def reload_quietly() -> None:
        try:
            await reloader.reload_here()
        except WarmrecError as e:  # SIGHUP has no one to answer: say it on stderr
            print(
                f"warmrec serve: reload failed, still serving the old model: {e}", file=sys.stderr
            )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await reloader.start()
        hup = getattr(signal, "SIGHUP", None)
        installed = False
        if hup is not None:
            try:  # only in the main thread of a process (not under TestClient)
                loop = asyncio.get_running_loop()
                loop.add_signal_handler(hup, lambda: loop.create_task(reload_quietly()))
                installed = True
            except (NotImplementedError, RuntimeError, ValueError):
                pass
        try:
            yield
        finally:
            if installed:
                asyncio.get_running_loop().remove_signal_handler(hup)
            await reloader.stop()
            if store is None:
                sessions.close()

    from warmrec._version import __version__

    app = FastAPI(
        title="warmrec",
        version=__version__,
        description="Next-item recommendations from a warmrec model directory.",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit)
    app.state.sessions = sessions
    app.state.reloader = reloader

    def current() -> ModelBundle:
        return reloader.bundle

    def rank(b: ModelBundle, history: list[Any], **kw: Any) -> dict[str, Any] | JSONResponse:
        try:
            r = b.recommend(history, **kw)
        except EmptyHistoryError as e:
            return _problem(400, str(e))
        except WarmrecError as e:
            return _problem(400, str(e))
        return _answer(r, b.model.name)

    @app.get("/health", response_model=Health)
    async def health() -> dict[str, Any]:
        """Liveness: the model is loaded and warmed up."""
        return {"status": "ok", "model": current().model.name}

    def store_stats() -> dict[str, Any]:
        try:
            return sessions.stats()
        except SessionStoreError as e:  # the model still serves: say so instead of a 5xx
            return {"error": str(e)}

    @app.get("/metadata")
    async def metadata() -> dict[str, Any]:
        """The served model (name, config, vocabulary size, versions), limits and session store."""
        return {
            **current().metadata(),
            "limits": {
                "max_k": MAX_K,
                "max_history": MAX_HISTORY,
                "max_list": MAX_LIST,
                "max_id_len": MAX_ID_LEN,
                "max_body_bytes": MAX_BODY_BYTES,
            },
            "sessions": store_stats(),
            "worker": reloader.metadata(),
        }

    @app.post("/recommend", response_model=Recommendations, responses=ERRORS)
    async def recommend(req: RecommendRequest) -> Any:
        """Top-k items after a history of raw item ids."""
        return rank(
            current(),
            req.items,
            k=req.k,
            exclude_seen=req.exclude_seen,
            exclude=req.exclude,
            restrict_to=req.restrict_to,
            fallback=None if req.fallback == "none" else req.fallback,
        )

    @app.post("/sessions/{session_id}/events", response_model=EventsResponse, responses=ERRORS)
    async def append_events(session_id: SessionId, req: EventsRequest) -> Any:
        """Append events to a session's server-side history (created if absent)."""
        b = current()
        try:
            events, total = sessions.append(session_id, req.items)
        except SessionStoreError as e:
            return _problem(503, str(e))
        _, unknown = b.encode(req.items)
        return {
            "session_id": session_id,
            "n_events": len(events),
            "n_total": total,
            "unknown": unknown,
        }

    @app.get(
        "/sessions/{session_id}/recommendations",
        response_model=SessionRecommendations,
        responses={**ERRORS, 404: {"model": Problem, "description": "No such session"}},
    )
    async def session_recommendations(
        session_id: SessionId,
        k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
        exclude_seen: bool = False,
        fallback: Literal["none", "popular"] = "none",
    ) -> Any:
        """Top-k items after a session's events (an unknown or expired session is 404 unless
        ``fallback=popular``)."""
        try:
            history = sessions.get(session_id)
        except SessionStoreError as e:
            return _problem(503, str(e))
        if history is None and fallback == "none":
            return _problem(404, f"no session {session_id!r} (never created, or expired)")
        out = rank(
            current(),
            history or [],
            k=k,
            exclude_seen=exclude_seen,
            fallback=None if fallback == "none" else fallback,
        )
        if isinstance(out, JSONResponse):
            return out
        return {**out, "session_id": session_id, "n_events": len(history or [])}

    @app.delete("/sessions/{session_id}", response_model=Deleted)
    async def delete_session(session_id: SessionId) -> Any:
        """Forget a session."""
        try:
            return {"session_id": session_id, "deleted": sessions.delete(session_id)}
        except SessionStoreError as e:
            return _problem(503, str(e))

    @app.post(
        "/admin/reload",
        responses={
            409: {"model": Problem, "description": "The model directory did not load"},
            503: {"model": Problem, "description": "The shared store cannot be reached"},
            504: {"description": "Not every worker confirmed the new model in time"},
        },
    )
    async def reload() -> Any:
        """Re-read the model directory and swap it in atomically (in-flight requests finish on
        the old model; a directory that does not load leaves the old model serving). With a
        shared session store every worker reloads; the answer lists the workers that confirmed,
        failed, or did not answer in time (504 unless all confirmed)."""
        try:
            status, body = await reloader.reload()
        except SessionStoreError as e:
            return _problem(503, str(e))
        return body if status == 200 else JSONResponse(body, status_code=status)

    return app


def app_from_env() -> FastAPI:
    """The app ``warmrec serve`` starts in each uvicorn worker (settings from the environment:
    ``WARMREC_SERVE_MODEL``, ``WARMREC_SERVE_THREADS``, ``WARMREC_SERVE_ENGINE``, ``WARMREC_SERVE_MAX_SESSIONS``,
    ``WARMREC_SERVE_SESSION_TTL``, ``WARMREC_SERVE_MAX_EVENTS``, ``WARMREC_SERVE_SESSION_STORE``,
    ``WARMREC_SERVE_MAX_SESSION_BYTES``, ``WARMREC_SERVE_WORKERS``,
    ``WARMREC_SERVE_RELOAD_TIMEOUT``)."""
    env = os.environ
    timeout = env.get("WARMREC_SERVE_RELOAD_TIMEOUT")
    return create_app(
        env["WARMREC_SERVE_MODEL"],
        threads=int(env.get("WARMREC_SERVE_THREADS", "1")),
        engine=env.get("WARMREC_SERVE_ENGINE", "auto"),
        max_sessions=int(env.get("WARMREC_SERVE_MAX_SESSIONS", "100000")),
        session_ttl_s=float(env.get("WARMREC_SERVE_SESSION_TTL", "1800")),
        max_events=int(env.get("WARMREC_SERVE_MAX_EVENTS", "200")),
        session_store=env.get("WARMREC_SERVE_SESSION_STORE", "memory"),
        max_session_bytes=int(env.get("WARMREC_SERVE_MAX_SESSION_BYTES", str(DEFAULT_MAX_BYTES))),
        workers=int(env.get("WARMREC_SERVE_WORKERS", "1")),
        reload_timeout_s=float(timeout) if timeout else None,
    )
