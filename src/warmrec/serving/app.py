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
    Liveness; the model's name, config, vocabulary size, warmrec version, limits, store stats
    (no file-system path, no process id).
``POST /admin/reload`` (or ``SIGHUP`` to a one-worker server); only with an admin token
    Re-reads the model directory the server was started with (a new ``warmrec train --out DIR``
    replaces it atomically) and swaps it in atomically: a request takes a reference to the
    current bundle when it starts, so in-flight requests finish on the old model and no request
    is dropped; a directory that does not load leaves the old model serving (409). With a
    shared session store it reaches every worker and says which confirmed
    (:mod:`warmrec.serving.reload`); with the in-process store and ``--workers N`` it refuses
    (409): send ``SIGHUP`` to the uvicorn master instead, which restarts the workers one by one
    (each loads and warms up the new model). A one-worker server reloads in place on ``SIGHUP``.
    The route exists only when an admin token is configured (``--admin-token-file``) and needs
    ``Authorization: Bearer <token>`` (401 without it): a cross-site form cannot send it.
``/docs``, ``/redoc``, ``/openapi.json``
    Swagger UI and ReDoc served from the ``fastapi-offline`` package (no CDN: they work on a
    machine without internet); ``docs=False`` (``--no-docs``) removes all three.

Errors are 4xx, never 5xx: a body that is not JSON -> 415 (its Content-Type, missing or other
than JSON, its charset, or a Content-Encoding) or 422
(naming what is wrong with it); a value out of its limits -> 422 (FastAPI's
validation error, its echo of the input made JSON-safe: ``NaN``/``Infinity`` and lone
surrogates come back as text; and clipped, at most ten errors of a few KB each whatever the
body); a history with no known item and no fallback asked for -> 400
naming the problem; an unknown session -> 404; a body over ``MAX_BODY_BYTES`` -> 413; a request
head over :data:`~warmrec.serving.guards.MAX_HEAD_BYTES` -> 431, a path that is not UTF-8 or a
``Host`` outside the allow-list -> 400 (:class:`~warmrec.serving.guards.RequestGuard`); more than
``max_inflight`` requests held by the worker -> 503 with ``Retry-After``
(:class:`~warmrec.serving.guards.LoadShed`). Limits: ``k`` <= :data:`MAX_K`, a history <=
:data:`MAX_HISTORY` ids, ``exclude``/``restrict_to`` <= :data:`MAX_LIST` ids, ids and session ids
<= :data:`MAX_ID_LEN` characters.

What the schema accepts is what the service accepts: an integer id (or ``k``) is a JSON number
with no fractional part within +-(2**53 - 1) -- ``12`` and ``12.0`` alike, as JSON Schema's
``integer`` reads them; a string id is 1-128 characters of valid Unicode (no lone surrogate);
``/recommend`` needs a non-empty ``items`` unless ``fallback`` is ``"popular"`` (the schema says
so with ``anyOf``); a session's events are checked before they are stored, so no request can
leave a session that fails every later read.

Inference runs inline in the ``async`` handlers: one CPU-bound request at a time per worker
with one torch thread, no thread-pool hand-off (scale with ``--workers``, one per core).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import os
import re
import signal
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    model_validator,
)

from warmrec.errors import ConfigError, WarmrecError
from warmrec.serving.bundle import MAX_SAFE_INT, EmptyHistoryError, ModelBundle, Ranked, json_id
from warmrec.serving.guards import AllowedHosts, LoadShed, RequestGuard
from warmrec.serving.reload import Reloader, model_loader
from warmrec.serving.sessions import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_TOTAL_BYTES,
    SessionStore,
    SessionStoreError,
    open_store,
)

MAX_K = 1000
MAX_HISTORY = 1000
MAX_LIST = 10_000
MAX_ID_LEN = 128
MAX_BODY_BYTES = 1 << 20

MIN_TOKEN_LEN = 16
"""The shortest admin token ``--admin-token-file`` and :func:`create_app` take."""


def _integral(v: Any) -> Any:
    """A JSON number with no fractional part is an integer (JSON Schema's ``integer``)."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def _unicode(v: str) -> str:
    """Refuse a lone surrogate (JSON can escape one; it is no character and cannot be sent
    back as UTF-8)."""
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("a lone surrogate is not valid Unicode") from None
    return v


# the bounds before the validator: after it, pydantic writes them into the schema as "ge"/"le"
IntId = Annotated[
    StrictInt,
    Field(
        ge=-MAX_SAFE_INT,
        le=MAX_SAFE_INT,
        description="a number with no fractional part (12 or 12.0), within +-(2**53 - 1)",
    ),
    BeforeValidator(_integral),
]
StrId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_ID_LEN),
    AfterValidator(_unicode),
    Field(description="1-128 characters of valid Unicode (no lone surrogate)"),
]
ItemId = IntId | StrId
SessionId = Annotated[
    str, PathParam(min_length=1, max_length=MAX_ID_LEN, pattern=r"^[^\x00-\x1f\x7f]+$")
]
"""A session id: 1 to ``MAX_ID_LEN`` characters, no control character (NUL, newline, ...)."""
K = Annotated[StrictInt, Field(ge=1, le=MAX_K), BeforeValidator(_integral)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecommendRequest(_Body):
    """A history to recommend after (``items`` may be empty only with
    ``fallback="popular"``)."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"properties": {"items": {"minItems": 1}}, "required": ["items"]},
                {"properties": {"fallback": {"const": "popular"}}, "required": ["fallback"]},
            ]
        }
    )

    items: list[ItemId] = Field(default_factory=list, max_length=MAX_HISTORY)
    """Raw item ids, oldest first (may be empty only with ``fallback="popular"``)."""
    k: K = 10
    """How many items to return."""
    exclude_seen: StrictBool | None = None
    """Never return an item of the history (None: as the model was evaluated, its
    ``eval.exclude_seen``; ``GET /metadata`` shows it)."""
    exclude: list[ItemId] | None = Field(None, max_length=MAX_LIST)
    """Never return these items."""
    restrict_to: list[ItemId] | None = Field(None, max_length=MAX_LIST)
    """Return only these items (a candidate set)."""
    fallback: Literal["none", "popular"] = "none"
    """For a history with no known item: refuse (400), or the most popular training items."""

    @model_validator(mode="after")
    def _history_or_fallback(self) -> RecommendRequest:
        if not self.items and self.fallback != "popular":
            raise ValueError("items is empty: send at least one item id, or fallback='popular'")
        return self


class ScoredItem(BaseModel):
    item_id: int | str = Field(
        description="the raw id; an integer id beyond +-(2**53 - 1) as its decimal string"
    )
    score: float


class Recommendations(BaseModel):
    model: str
    items: list[ScoredItem]
    """Ranked, best first (fewer than k when exclusions leave fewer candidates)."""
    unknown: list[int | str]
    """Ids of the history the model does not know (ignored for scoring)."""
    fallback_used: bool
    """Whether the popularity fallback answered (the history has no item the model knows)."""
    popularity_filled: int = 0
    """How many of ``items`` are ranked by training popularity alone (the model has no score of
    its own for them after this history: a rule or kNN model fills its list that way); all of
    them when ``fallback_used``."""


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
    408: {"model": Problem, "description": "Body not received whole in time"},
    415: {"model": Problem, "description": "Body not sent as JSON (UTF-8)"},
    413: {"model": Problem, "description": "Body too large"},
}


BODY_READ_S = 10.0
"""Seconds a client has to send a whole request body (408 after): a body that never ends
would hold its connection, and the request's slot, for as long as the client likes."""


class BodyLimit:
    """ASGI middleware: 413 for a body over ``limit`` bytes (declared or streamed), 408 for one
    not sent whole within ``read_s`` seconds. It sits outside load shedding, so a request
    counts as in progress only once its body is in (a few stalled uploads had held every
    slot: 503 to every other client)."""

    def __init__(self, app: Any, limit: int = MAX_BODY_BYTES, read_s: float = BODY_READ_S) -> None:
        self.app, self.limit, self.read_s = app, limit, read_s

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
        deadline = asyncio.get_running_loop().time() + self.read_s
        while True:
            left = deadline - asyncio.get_running_loop().time()
            try:
                msg = await asyncio.wait_for(receive(), timeout=max(left, 0.0))
            except asyncio.TimeoutError:  # (TimeoutError itself from Python 3.11)
                await _problem(408, f"body not received whole within {self.read_s:g} s")(
                    scope, receive, send
                )
                return
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
        body = b"".join(chunks)
        # the admin routes answer 401 before they read anything: not checked here
        admin = str(scope.get("path", "")).startswith("/admin")
        bad = _body_problem(scope, body) if body and not admin else None
        if bad is not None:
            status, msg = bad
            # a 422 in FastAPI's shape (the routes' declared validation error), as its own
            # "json_invalid" is, with the reason named
            detail: Any = (
                msg if status != 422 else [{"type": "json_invalid", "loc": ["body"], "msg": msg}]
            )
            await _problem(status, detail)(scope, receive, send)
            return
        whole = {"type": "http.request", "body": body, "more_body": False}
        await self.app(scope, _replay([whole], receive), send)


def _body_problem(scope: dict, body: bytes) -> tuple[int, str] | None:
    """Why a request body cannot be a JSON document, or None: no Content-Type, one other than
    JSON, a charset other than UTF-8 or a Content-Encoding (gzip, ...) (415), bytes that are not
    UTF-8, text that is not JSON, a nesting deeper than :data:`MAX_JSON_DEPTH` or a number
    beyond what the parser takes (422). FastAPI answered these with a vague 400 ("There was an
    error parsing the body") or a 422 echoing the raw bytes (a JSON body sent without a
    Content-Type too)."""
    headers = scope.get("headers", [])
    if not any(name == b"content-type" for name, _ in headers):
        return 415, "no Content-Type: expected application/json"
    for name, value in headers:
        if name == b"content-type":
            media, _, params = value.decode("latin-1").partition(";")
            media = media.strip().lower()
            if media != "application/json" and not media.endswith("+json"):
                return 415, f"Content-Type {media!r}: expected application/json"
            for param in params.split(";"):
                key, _, val = param.partition("=")
                charset = val.strip().strip('"').lower()
                if key.strip().lower() == "charset" and charset not in ("utf-8", "utf8"):
                    return 415, f"charset {charset!r}: expected utf-8"
    for name, value in headers:
        # the body is read as sent: a gzip one was "not UTF-8 text (byte 1)", and plain JSON
        # labelled gzip was answered as if the label were not there
        codings = [c.strip().lower() for c in value.decode("latin-1").split(",")]
        if name == b"content-encoding" and any(c not in ("", "identity") for c in codings):
            shown = value.decode("latin-1").strip()[:40]
            return 415, f"Content-Encoding {shown!r}: expected none (the body sent as is)"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        return 422, f"body is not UTF-8 text (byte {e.start})"
    try:
        json.loads(text)
    except json.JSONDecodeError as e:
        return 422, f"body is not JSON: {e.msg} (line {e.lineno}, column {e.colno})"
    except RecursionError:
        return 422, "body nests deeper than the JSON parser allows"
    except ValueError as e:  # an integer of more digits than Python converts
        return 422, f"body is not JSON the service can read: {str(e).splitlines()[0][:120]}"
    depth = _json_depth(body)
    if depth > MAX_JSON_DEPTH:
        return 422, f"body nests {depth} levels deep: at most {MAX_JSON_DEPTH} (a request nests 2)"
    return None


MAX_JSON_DEPTH = 32
"""Levels of nested arrays and objects a body may have (a request has 2: an object of lists).
The bound is the service's own, not the parser's recursion limit: a body that nested a few
levels less than that limit passed this check and failed in FastAPI's deeper stack (its vague
400 "There was an error parsing the body")."""

_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


def _json_depth(body: bytes) -> int:
    """How deep the arrays and objects of a valid JSON document nest (0 for a scalar)."""
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:  # the common case: no scan
        return 0
    import numpy as np

    codes = np.frombuffer(_JSON_STRING.sub(b"", body), dtype=np.uint8)
    step = np.isin(codes, (91, 123)).astype(np.int32) - np.isin(codes, (93, 125))
    return int(np.cumsum(step).max(initial=0))


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


def _problem(status: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _json_safe(x: Any) -> Any:
    """``x`` with what JSON cannot carry made text: non-finite floats, lone surrogates, and any
    other object (an exception in a validation error's context)."""
    if x is None or isinstance(x, (bool, int)):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else str(x)
    if isinstance(x, str):
        return x.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(x, dict):
        return {str(_json_safe(k)): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return _json_safe(str(x))


SESSION_QUERY = frozenset({"k", "exclude_seen", "fallback"})
MAX_ECHO = 10  # a 422 echoes at most this many elements of a list input (or characters / 20)
MAX_ECHO_DEPTH = 3
"""Levels of nesting a 422 echoes of an input; deeper lists and objects are summarised."""
MAX_ECHO_CHARS = 2000
"""About how many characters of strings, ids and keys a 422 echoes of one input."""


def _clipped_text(v: str) -> str:
    """At most ``20 * MAX_ECHO`` characters of ``v``, its length said when clipped."""
    return v if len(v) <= 20 * MAX_ECHO else f"{v[: 20 * MAX_ECHO]}... ({len(v)} characters)"


def _clipped_input(x: Any) -> Any:
    """A validation error's echo of the input, clipped at every level: at most
    :data:`MAX_ECHO` elements of a list or keys of an object, 200 characters of a string,
    :data:`MAX_ECHO_DEPTH` levels of nesting and about :data:`MAX_ECHO_CHARS` characters in
    all. A 1,001-item history came back whole (a 250 KB request, a 230 KB answer); an error of
    the whole body (an empty history without the fallback) echoed every list of it."""
    left = MAX_ECHO_CHARS

    def spent(out: Any, size: int) -> Any:
        nonlocal left
        left -= size
        return out

    def clip(v: Any, depth: int) -> Any:
        if isinstance(v, str):
            out = _clipped_text(v)
            return spent(out, len(json.dumps(out)))  # escapes included
        if isinstance(v, (list, tuple)):
            if depth >= MAX_ECHO_DEPTH or left <= 0:
                return clip(f"... (a list of {len(v)})", depth)
            items: list[Any] = []
            for i, e in enumerate(v):
                if i >= MAX_ECHO or left <= 0:
                    items.append(clip(f"... {len(v) - i} more", depth))
                    break
                items.append(clip(e, depth + 1))
            return items
        if isinstance(v, dict):
            if depth >= MAX_ECHO_DEPTH or left <= 0:
                return clip(f"... (an object of {len(v)} keys)", depth)
            obj: dict[Any, Any] = {}
            for i, (k, e) in enumerate(v.items()):
                if i >= MAX_ECHO or left <= 0:
                    obj["..."] = clip(f"{len(v) - i} more keys", depth)
                    break
                obj[clip(k, depth) if isinstance(k, str) else k] = clip(e, depth + 1)
            return obj
        return spent(v, 8)  # a number, a boolean, null

    return clip(x, 0)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422, its echo of the input clipped (:func:`_clipped_input`) and made JSON-safe
    (NaN, Infinity, lone surrogates), the keys in its ``loc`` clipped too, with at most
    :data:`MAX_ECHO` errors: the rest are counted in a last ``too_many_errors`` entry (a
    history of 1,000 nulls had 2,000 errors, a 6 KB request a 300 KB answer)."""
    found = exc.errors()
    errors: list[dict[str, Any]] = []
    for e in found[:MAX_ECHO]:
        # an unknown key of a body is in its error's loc: a 900 KB key came back whole
        e = {**e, "loc": [_clipped_text(x) if isinstance(x, str) else x for x in e["loc"]]}
        errors.append({**e, "input": _clipped_input(e["input"])} if "input" in e else e)
    if len(found) > MAX_ECHO:
        errors.append(
            {
                "type": "too_many_errors",
                "loc": list(found[MAX_ECHO]["loc"][:1]),
                "msg": f"{len(found) - MAX_ECHO} more errors not shown",
            }
        )
    return JSONResponse({"detail": _json_safe(errors)}, status_code=422)


def check_token(token: str, where: str) -> str:
    """``token`` if it can be an admin token (at least :data:`MIN_TOKEN_LEN` printable ASCII
    characters, no whitespace), else a :class:`ConfigError` saying why, prefixed with
    ``where`` (an empty or short token let anyone reload; a non-ASCII one never matched)."""
    if len(token) < MIN_TOKEN_LEN:
        raise ConfigError(
            f"{where}: expected a token of at least {MIN_TOKEN_LEN} characters, found {len(token)}"
        )
    spaces = [i for i, c in enumerate(token) if c.isspace()]
    if spaces:
        raise ConfigError(
            f"{where}: expected one token without spaces, found whitespace at character "
            f"{spaces[0] + 1}"
        )
    # a header is read as latin-1 and a client sends a non-ASCII token in some encoding of its
    # own: such a token could never match (and it is not an RFC 6750 token either)
    bad = [i for i, c in enumerate(token) if not "!" <= c <= "~"]
    if bad:
        kind = "a non-ASCII" if ord(token[bad[0]]) > 0x7F else "a control"
        raise ConfigError(
            f"{where}: expected printable ASCII characters only (what an Authorization header "
            f"carries), found {kind} character at character {bad[0] + 1}"
        )
    return token


def read_token_file(path: str | Path) -> str:
    """The admin token in a file (surrounding whitespace dropped); one-line errors."""
    p = Path(path)
    try:
        token = p.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"--admin-token-file {p}: cannot read it ({e})") from None
    return check_token(token, f"--admin-token-file {p}")


def _answer(r: Ranked, model: str) -> dict[str, Any]:
    pairs = [(i, s) for i, s in zip(r.items, r.scores) if math.isfinite(s)]
    return {
        "model": model,
        "items": [{"item_id": json_id(i), "score": s} for i, s in pairs],
        "unknown": r.unknown,
        "fallback_used": r.fallback_used,
        "popularity_filled": r.popularity_filled,
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
    max_store_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    workers: int = 1,
    reload_timeout_s: float | None = None,
    admin_token: str | None = None,
    allowed_hosts: AllowedHosts | None = None,
    docs: bool = True,
    max_inflight: int | None = None,
) -> FastAPI:
    """The app for a model directory (loaded and warmed up at start-up, before the port opens)
    or an already loaded ``bundle`` (with ``model_dir`` too, reloads read that directory).

    Sessions go to ``store``, else to the store ``session_store`` names (``memory`` or a Redis
    URL, :func:`~warmrec.serving.sessions.open_store`), with ``max_session_bytes`` of ids per
    session and, in the process, ``max_store_bytes`` of estimated memory for all sessions;
    ``workers`` is how many worker processes serve it (for ``/admin/reload``).
    ``admin_token``: enables ``POST /admin/reload`` behind ``Authorization: Bearer`` (at least
    :data:`MIN_TOKEN_LEN` printable ASCII characters, no whitespace: else a
    :class:`ConfigError`);
    ``allowed_hosts``: the ``Host`` allow-list (None: any Host); ``docs``: serve ``/docs``,
    ``/redoc`` and ``/openapi.json``; ``max_inflight``: shed load past that many requests
    (None: never)."""
    if bundle is None and model_dir is None:
        raise ValueError("create_app needs a model_dir or a bundle")
    if admin_token is not None:  # before anything is opened
        check_token(admin_token, "admin_token")
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
            max_total_bytes=max_store_bytes,
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

    about = {
        "title": "warmrec",
        "version": __version__,
        "description": "Next-item recommendations from a warmrec model directory.",
        "lifespan": lifespan,
        "exception_handlers": {RequestValidationError: _validation_error},
    }
    if docs:
        from fastapi_offline import FastAPIOffline  # Swagger UI and ReDoc without a CDN

        app = FastAPIOffline(**about)
    else:
        app = FastAPI(**about, docs_url=None, redoc_url=None, openapi_url=None)
    shed: LoadShed | None = None
    if max_inflight:

        def shedding(inner: Any) -> LoadShed:
            nonlocal shed
            shed = LoadShed(inner, max_inflight=max_inflight, exempt=("/health", "/admin/reload"))
            return shed

        app.add_middleware(shedding)
    # added after (so outside) the shedding: a body is read whole before its request counts
    app.add_middleware(BodyLimit)
    app.add_middleware(RequestGuard, allowed_hosts=allowed_hosts)
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
            "load": shed.stats() if shed is not None else {"max_inflight": None},
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
        _, unknown = b.encode(req.items)  # checked before anything is stored
        try:
            events, total = sessions.append(session_id, req.items)
        except SessionStoreError as e:
            return _problem(503, str(e))
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
        request: Request,
        session_id: SessionId,
        k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
        exclude_seen: bool | None = None,
        fallback: Literal["none", "popular"] = "none",
    ) -> Any:
        """Top-k items after a session's events (an unknown or expired session is 404 unless
        ``fallback=popular``). Only an answered read renews the session's TTL. An unknown
        query parameter is a 422, as an unknown field of a body is."""
        extra = sorted(set(request.query_params) - SESSION_QUERY)
        if extra:
            return JSONResponse(
                {
                    "detail": [
                        {
                            "type": "extra_forbidden",
                            "loc": ["query", _clipped_text(name)],
                            "msg": "Extra inputs are not permitted (known: "
                            f"{', '.join(sorted(SESSION_QUERY))})",
                            "input": _json_safe(_clipped_input(request.query_params[name])),
                        }
                        for name in extra[:MAX_ECHO]
                    ]
                },
                status_code=422,
            )
        try:
            history = sessions.get(session_id, touch=False)
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
        if history is not None:
            try:
                sessions.touch(session_id)  # answered: now the read renews the session
            except SessionStoreError as e:
                return _problem(503, str(e))
        return {**out, "session_id": session_id, "n_events": len(history or [])}

    @app.delete("/sessions/{session_id}", response_model=Deleted)
    async def delete_session(session_id: SessionId) -> Any:
        """Forget a session."""
        try:
            return {"session_id": session_id, "deleted": sessions.delete(session_id)}
        except SessionStoreError as e:
            return _problem(503, str(e))

    if admin_token is not None:
        bearer = HTTPBearer(auto_error=False, description="The server's admin token")
        expected = admin_token.encode("ascii")

        async def admin(
            creds: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
        ) -> None:
            if creds is None or not creds.credentials:  # no credentials: never let through
                raise _Unauthorized()
            given = creds.credentials.encode("utf-8", "surrogateescape")
            if not hmac.compare_digest(given, expected):
                raise _Unauthorized()

        @app.post(
            "/admin/reload",
            dependencies=[Depends(admin)],
            responses={
                401: {"model": Problem, "description": "No or a wrong admin token"},
                409: {"model": Problem, "description": "The model directory did not load"},
                503: {"model": Problem, "description": "The shared store cannot be reached"},
                504: {"description": "Not every worker confirmed the new model in time"},
            },
        )
        async def reload() -> Any:
            """Re-read the model directory and swap it in atomically (in-flight requests finish
            on the old model; a directory that does not load leaves the old model serving). With
            a shared session store every worker reloads; the answer lists the workers that
            confirmed, failed, or did not answer in time (504 unless all confirmed)."""
            try:
                status, body = await reloader.reload()
            except SessionStoreError as e:
                return _problem(503, str(e))
            return body if status == 200 else JSONResponse(body, status_code=status)

        app.add_exception_handler(_Unauthorized, _unauthorized)

    return app


class _Unauthorized(Exception):
    """No or a wrong admin token (answered 401)."""


async def _unauthorized(request: Request, exc: Exception) -> JSONResponse:
    return _problem(401, "admin token required", {"WWW-Authenticate": "Bearer"})


def app_from_env() -> FastAPI:
    """The app ``warmrec serve`` starts in each uvicorn worker (settings from the environment:
    ``WARMREC_SERVE_MODEL``, ``WARMREC_SERVE_THREADS``, ``WARMREC_SERVE_ENGINE``,
    ``WARMREC_SERVE_MAX_SESSIONS``, ``WARMREC_SERVE_SESSION_TTL``, ``WARMREC_SERVE_MAX_EVENTS``,
    ``WARMREC_SERVE_SESSION_STORE``, ``WARMREC_SERVE_MAX_SESSION_BYTES`` (per session),
    ``WARMREC_SERVE_MAX_STORE_BYTES`` (all sessions of the in-process store),
    ``WARMREC_SERVE_WORKERS``, ``WARMREC_SERVE_RELOAD_TIMEOUT``,
    ``WARMREC_SERVE_ADMIN_TOKEN_FILE`` (a path: the token itself never goes through the
    environment), ``WARMREC_SERVE_ALLOWED_HOSTS`` (a JSON list; absent: any Host),
    ``WARMREC_SERVE_DOCS`` (``0``: none), ``WARMREC_SERVE_MAX_INFLIGHT`` (``0``: no
    shedding))."""
    env = os.environ
    timeout = env.get("WARMREC_SERVE_RELOAD_TIMEOUT")
    token_file = env.get("WARMREC_SERVE_ADMIN_TOKEN_FILE")
    hosts = env.get("WARMREC_SERVE_ALLOWED_HOSTS")
    return create_app(
        env["WARMREC_SERVE_MODEL"],
        threads=int(env.get("WARMREC_SERVE_THREADS", "1")),
        engine=env.get("WARMREC_SERVE_ENGINE", "auto"),
        max_sessions=int(env.get("WARMREC_SERVE_MAX_SESSIONS", "100000")),
        session_ttl_s=float(env.get("WARMREC_SERVE_SESSION_TTL", "1800")),
        max_events=int(env.get("WARMREC_SERVE_MAX_EVENTS", "200")),
        session_store=env.get("WARMREC_SERVE_SESSION_STORE", "memory"),
        max_session_bytes=int(env.get("WARMREC_SERVE_MAX_SESSION_BYTES", str(DEFAULT_MAX_BYTES))),
        max_store_bytes=int(env.get("WARMREC_SERVE_MAX_STORE_BYTES", str(DEFAULT_MAX_TOTAL_BYTES))),
        workers=int(env.get("WARMREC_SERVE_WORKERS", "1")),
        reload_timeout_s=float(timeout) if timeout else None,
        admin_token=read_token_file(token_file) if token_file else None,
        allowed_hosts=AllowedHosts(json.loads(hosts)) if hosts is not None else None,
        docs=env.get("WARMREC_SERVE_DOCS", "1") != "0",
        max_inflight=int(env.get("WARMREC_SERVE_MAX_INFLIGHT", "0")) or None,
    )
