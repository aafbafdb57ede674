"""Server-side session stores of ``warmrec serve``: one interface, an in-process LRU and Redis.

A session is the list of raw item ids a client appended to it (oldest first). Every store keeps,
per session, at most ``max_events`` ids and at most ``max_bytes`` bytes of ids, dropping the
oldest first (the newest event is always kept); a session not touched (appended to or read) for
``ttl_s`` seconds is gone; at most ``max_sessions`` sessions are kept, the least recently used
one evicted first. An id's size is the length of its JSON text (``7`` is 1 byte, ``"ab"`` 4), so
the bound in bytes is the events x id length a session may hold, whatever the store.

A read may leave the TTL and the LRU position as they are (``get(..., touch=False)``, then
:meth:`SessionStore.touch` once the read has served): the service renews a session only when
it answered from it, so a session that only ever fails does not live on by being read.

:class:`MemorySessionStore` (the default, one worker): an ``OrderedDict`` in the process,
guarded by one lock. Expired sessions are dropped lazily on access and by a sweep on every
append. Its memory is also bounded **in total** (``max_total_bytes``, default 256 MiB per
worker): each session is charged an estimate of what it holds in the process (a fixed
:data:`SESSION_OVERHEAD` plus ``sys.getsizeof`` of its id, and per kept event
:func:`memory_cost`: the id object, its record and a pointer), and when the total passes the
bound the least recently used *other* sessions are evicted (the per-session bound alone lets
100,000 sessions of 128-character ids cost gigabytes). :meth:`~SessionStore.stats` reports the
charged ``bytes``. Each worker process has its own store, so with ``--workers N`` a session
lives in the worker that took its events.

:class:`RedisSessionStore` (``--session-store redis://host:port/db``): shared by every worker
and every server with the same Redis database and key prefix, and it survives a worker's
restart. Per session, a list of JSON ids (``<prefix>ev:<id>``) and a hash of its event total and
bytes (``<prefix>m:<id>``), both with a Redis expiry of ``ttl_s`` renewed on every touch (an
append, a read with ``touch=True``, :meth:`~SessionStore.touch`; a read with ``touch=False``
leaves the expiry as it is); a sorted set (``<prefix>lru``) of session ids by last touch bounds
their number. Every operation is one Lua script, so concurrent appends from many workers are
atomic and none is lost. The same database holds the model generation (a token unique to each
reload, not a counter: a counter lost with its key restarted below the workers' own) and the
worker registry that let ``POST /admin/reload`` reach every worker
(:mod:`warmrec.serving.reload`). A single
Redis server (not Redis Cluster): the scripts touch keys of several sessions when they evict.
A ``?prefix=name:`` in the URL keeps services that share one database apart (default
``warmrec:``). The in-process store's total bound does not apply: bound Redis with its own
``maxmemory``.

A store that cannot be reached raises :class:`SessionStoreError` (the service answers 503).
"""

from __future__ import annotations

import json
import re
import secrets
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from warmrec.errors import ConfigError, WarmrecError

DEFAULT_MAX_SESSIONS = 100_000
DEFAULT_MAX_EVENTS = 200
DEFAULT_MAX_BYTES = 8192
"""Bytes of ids per session: 200 ids of up to ~38 characters (UUIDs), or fewer longer ones."""
DEFAULT_TTL_S = 1800.0
DEFAULT_MAX_TOTAL_BYTES = 256 * 2**20
"""The in-process store's bound on all its sessions, in estimated bytes of memory (per worker)."""
SESSION_OVERHEAD = 1024
"""Bytes charged per in-process session besides its id and events (the deque, the record, the
map entry)."""
_EVENT_OVERHEAD = sys.getsizeof((None, 0)) + 8
DEFAULT_PREFIX = "warmrec:"
SCHEMES = ("redis://", "rediss://", "unix://")


class SessionStoreError(WarmrecError):
    """The session store could not be reached or answered wrongly (not the client's fault)."""


def id_size(item: Any) -> int:
    """An id's size in bytes: the length of its JSON text (ASCII; what Redis stores)."""
    return len(json.dumps(item))


def memory_cost(item: Any) -> int:
    """Bytes of memory the in-process store charges for one kept event: the id object, the
    ``(id, size)`` pair it is kept in, and the deque's pointer to it."""
    return sys.getsizeof(item) + _EVENT_OVERHEAD


def _nonempty(items: Iterable[Any]) -> list[Any]:
    items = list(items)
    if not items:
        raise ValueError("append: expected at least one event, found none")
    return items


class SessionStore(ABC):
    """Append events to a session, read it, delete it; bounded in sessions, events and bytes,
    with a time to live renewed by every touch."""

    shared: bool = False
    """Whether other processes see the same sessions (and can coordinate reloads through it)."""

    def __init__(
        self,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        max_events: int = DEFAULT_MAX_EVENTS,
        ttl_s: float = DEFAULT_TTL_S,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        for name, v in (
            ("max_sessions", max_sessions),
            ("max_events", max_events),
            ("max_bytes", max_bytes),
            ("ttl_s", ttl_s),
        ):
            if not v > 0:
                raise ValueError(f"{name}: expected a positive number, found {v}")
        self.max_sessions = int(max_sessions)
        self.max_events = int(max_events)
        self.max_bytes = int(max_bytes)
        self.ttl_s = float(ttl_s)

    @abstractmethod
    def append(self, session_id: str, items: Iterable[Any]) -> tuple[list[Any], int]:
        """Append events to a session (created if absent); its kept history and the number of
        events ever appended to it."""

    @abstractmethod
    def get(self, session_id: str, *, touch: bool = True) -> list[Any] | None:
        """A session's kept history (most recent last), or None when absent or expired. Reading
        counts as use (it renews the TTL and the LRU position) unless ``touch`` is False (then
        :meth:`touch` it once the read has served)."""

    @abstractmethod
    def touch(self, session_id: str) -> bool:
        """Renew a live session's TTL and LRU position; whether it was there."""

    @abstractmethod
    def delete(self, session_id: str) -> bool:
        """Forget a session; whether it existed."""

    @abstractmethod
    def stats(self) -> dict[str, Any]:
        """Counts and bounds, for ``/metadata``."""

    def __len__(self) -> int:
        return int(self.stats()["sessions"])

    def close(self) -> None:
        """Release connections (nothing for the in-process store)."""
        return None

    def _bounds(self) -> dict[str, Any]:
        return {
            "max_sessions": self.max_sessions,
            "max_events": self.max_events,
            "max_bytes": self.max_bytes,
            "ttl_s": self.ttl_s,
        }


# -- in-process --------------------------------------------------------------------------------
@dataclass
class _Session:
    events: deque
    touched: float
    n_total: int = 0
    n_bytes: int = 0
    created: float = field(default=0.0)
    mem: int = 0
    """Estimated bytes of memory charged for the session (its id, record and kept events)."""


class MemorySessionStore(SessionStore):
    """Bounded LRU + TTL store in this process (see the module docstring): ``max_bytes`` of ids
    per session, ``max_total_bytes`` of estimated memory for all sessions. ``clock`` is
    injectable (tests advance a fake clock); every method takes one lock, so concurrent appends
    to one session from several threads are serialised and none is lost."""

    def __init__(
        self,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        max_events: int = DEFAULT_MAX_EVENTS,
        ttl_s: float = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.monotonic,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    ) -> None:
        super().__init__(max_sessions, max_events, ttl_s, max_bytes)
        if not max_total_bytes > 0:
            raise ValueError(
                f"max_total_bytes: expected a positive number, found {max_total_bytes}"
            )
        self.max_total_bytes = int(max_total_bytes)
        self.nbytes = 0
        """Estimated bytes of memory of all sessions (bounded by ``max_total_bytes``)."""
        self._clock = clock
        self._lock = threading.Lock()
        self._data: OrderedDict[str, _Session] = OrderedDict()
        self.evicted = 0
        self.expired = 0

    def _sweep(self, now: float) -> None:
        data = self._data
        while data:
            sid, s = next(iter(data.items()))
            if now - s.touched < self.ttl_s:
                break
            self._drop(sid)
            self.expired += 1

    def _drop(self, session_id: str) -> _Session | None:
        s = self._data.pop(session_id, None)
        if s is not None:
            self.nbytes -= s.mem
        return s

    def _live(self, session_id: str, now: float) -> _Session | None:
        """The session if it is there and not expired (an expired one is dropped)."""
        s = self._data.get(session_id)
        if s is None:
            return None
        if now - s.touched >= self.ttl_s:
            self._drop(session_id)
            self.expired += 1
            return None
        return s

    def append(self, session_id: str, items: Iterable[Any]) -> tuple[list[Any], int]:
        items = _nonempty(items)
        sizes = [id_size(x) for x in items]
        with self._lock:
            now = self._clock()
            self._sweep(now)
            s = self._data.get(session_id)
            if s is None:
                while len(self._data) >= self.max_sessions:
                    self._drop(next(iter(self._data)))
                    self.evicted += 1
                base = SESSION_OVERHEAD + sys.getsizeof(session_id)
                s = _Session(deque(), now, 0, 0, now, base)
                self._data[session_id] = s
                self.nbytes += base
            else:
                self._data.move_to_end(session_id)
            ev, before = s.events, s.mem
            ev.extend(zip(items, sizes))
            s.n_bytes += sum(sizes)
            s.mem += sum(memory_cost(x) for x in items)
            while len(ev) > 1 and (len(ev) > self.max_events or s.n_bytes > self.max_bytes):
                x, size = ev.popleft()
                s.n_bytes -= size
                s.mem -= memory_cost(x)
            self.nbytes += s.mem - before
            s.n_total += len(items)
            s.touched = now
            while self.nbytes > self.max_total_bytes and len(self._data) > 1:
                self._drop(next(iter(self._data)))  # the least recently used, never this one
                self.evicted += 1
            return [x for x, _ in ev], s.n_total

    def get(self, session_id: str, *, touch: bool = True) -> list[Any] | None:
        with self._lock:
            now = self._clock()
            s = self._live(session_id, now)
            if s is None:
                return None
            if touch:
                s.touched = now
                self._data.move_to_end(session_id)
            return [x for x, _ in s.events]

    def touch(self, session_id: str) -> bool:
        with self._lock:
            now = self._clock()
            s = self._live(session_id, now)
            if s is None:
                return False
            s.touched = now
            self._data.move_to_end(session_id)
            return True

    def delete(self, session_id: str) -> bool:
        with self._lock:
            return self._drop(session_id) is not None

    def stats(self) -> dict[str, Any]:
        with self._lock:
            self._sweep(self._clock())
            return {
                "store": "memory",
                "sessions": len(self._data),
                **self._bounds(),
                "bytes": self.nbytes,
                "max_total_bytes": self.max_total_bytes,
                "evicted": self.evicted,
                "expired": self.expired,
            }


# -- Redis -------------------------------------------------------------------------------------
# Times are Redis's own (TIME), so every worker and host agrees on them. KEYS: the session's
# events list, its meta hash, the LRU sorted set, the stats hash. The LRU order is by time in
# microseconds, made strictly increasing (the stats hash keeps the last one) so that touches in
# the same microsecond keep their order.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local fmt = function(x) return string.format('%.0f', x) end
"""

_NOW_US = """
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('HGET', KEYS[4], 'clock') or '0')
if now_us <= last then now_us = last + 1 end
local now_s = string.format('%.0f', now_us)
redis.call('HSET', KEYS[4], 'clock', now_s)
"""

_SWEEP = """
local cut = string.format('%.0f', now_us - ttl * 1000)
local gone = redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', cut)
if gone > 0 then redis.call('HINCRBY', KEYS[4], 'expired', gone) end
"""

# ARGV: session id, ttl ms, max events, max bytes, max sessions, prefix, then the JSON ids
_APPEND = (
    """
local sid, ttl = ARGV[1], tonumber(ARGV[2])
local max_ev, max_b, max_s, p = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
"""
    + _NOW_US
    + _SWEEP
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[2])
  if redis.call('ZREM', KEYS[3], sid) == 1 then redis.call('HINCRBY', KEYS[4], 'expired', 1) end
  local n = redis.call('ZCARD', KEYS[3])
  while n >= max_s do
    local old = redis.call('ZPOPMIN', KEYS[3])
    redis.call('DEL', p .. 'ev:' .. old[1], p .. 'm:' .. old[1])
    redis.call('HINCRBY', KEYS[4], 'evicted', 1)
    n = n - 1
  end
end
local bytes = tonumber(redis.call('HGET', KEYS[2], 'bytes') or '0')
local len = 0
for i = 7, #ARGV do
  len = redis.call('RPUSH', KEYS[1], ARGV[i])
  bytes = bytes + #ARGV[i]
end
if len > max_ev then
  local drop = redis.call('LRANGE', KEYS[1], 0, len - max_ev - 1)
  for _, x in ipairs(drop) do bytes = bytes - #x end
  redis.call('LTRIM', KEYS[1], len - max_ev, -1)
  len = max_ev
end
while len > 1 and bytes > max_b do
  bytes = bytes - #redis.call('LPOP', KEYS[1])
  len = len - 1
end
local total = redis.call('HINCRBY', KEYS[2], 'total', #ARGV - 6)
redis.call('HSET', KEYS[2], 'bytes', bytes)
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('ZADD', KEYS[3], now_s, sid)
return {total, table.concat(redis.call('LRANGE', KEYS[1], 0, -1), ',')}
"""
)

# ARGV: session id (a read that renews nothing: no clock, no expiry, no LRU position)
_PEEK = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  if redis.call('ZREM', KEYS[3], ARGV[1]) == 1 then redis.call('HINCRBY', KEYS[4], 'expired', 1) end
  return false
end
return table.concat(redis.call('LRANGE', KEYS[1], 0, -1), ',')
"""

# ARGV: session id, ttl ms; renews the session and returns 1, or 0 when it is gone
_TOUCH = (
    """
local sid, ttl = ARGV[1], tonumber(ARGV[2])
if redis.call('EXISTS', KEYS[1]) == 0 then
  if redis.call('ZREM', KEYS[3], sid) == 1 then redis.call('HINCRBY', KEYS[4], 'expired', 1) end
  return 0
end
"""
    + _NOW_US
    + """
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('ZADD', KEYS[3], now_s, sid)
return 1
"""
)

# ARGV: session id, ttl ms
_GET = (
    """
local sid, ttl = ARGV[1], tonumber(ARGV[2])
"""
    + _NOW_US
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then
  if redis.call('ZREM', KEYS[3], sid) == 1 then redis.call('HINCRBY', KEYS[4], 'expired', 1) end
  return false
end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('ZADD', KEYS[3], now_s, sid)
return table.concat(redis.call('LRANGE', KEYS[1], 0, -1), ',')
"""
)

_DELETE = """
redis.call('ZREM', KEYS[3], ARGV[1])
return redis.call('DEL', KEYS[1], KEYS[2])
"""

# ARGV: ttl ms
_STATS = (
    "local ttl = tonumber(ARGV[1])\n"
    + _NOW_US
    + _SWEEP
    + """
local st = redis.call('HMGET', KEYS[4], 'evicted', 'expired')
return {redis.call('ZCARD', KEYS[3]), tonumber(st[1] or '0'), tonumber(st[2] or '0')}
"""
)

# the worker registry: KEYS: the info hash, the last-seen sorted set; ARGV: worker id, info JSON
_REPORT = (
    _NOW
    + """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], fmt(now), ARGV[1])
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', fmt(now - 3600000))
for _, w in ipairs(old) do
  redis.call('HDEL', KEYS[1], w)
  redis.call('ZREM', KEYS[2], w)
end
return 1
"""
)

# ARGV: how long ago (ms) a worker was last seen at most to count as live
_LIVE = (
    _NOW
    + """
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], fmt(now - tonumber(ARGV[1])), '+inf')
if #ids == 0 then return {} end
local info = redis.call('HMGET', KEYS[1], unpack(ids))
local out = {}
for i, w in ipairs(ids) do
  out[#out + 1] = w
  out[#out + 1] = info[i] or '{}'
end
return out
"""
)


# a model generation: Redis's time in microseconds, "-", a random tag of the publisher's (unique
# even where two reloads publish in one microsecond); KEYS: the generation key; ARGV: the tag
_PUBLISH = """
local t = redis.call('TIME')
local gen = t[1] .. string.format('%06d', tonumber(t[2])) .. '-' .. ARGV[1]
redis.call('SET', KEYS[1], gen)
return gen
"""


def generation_time(gen: Any) -> int:
    """When a model generation was published: Redis's time in microseconds, the head of its
    token (0 for no generation, or a counter an older warmrec published). Generations are told
    apart by their token; the time only orders two reloads that overlap."""
    head, dash, _ = gen.partition("-") if isinstance(gen, str) else ("", "", "")
    return int(head) if dash and head.isdigit() else 0


def _decode(joined: bytes) -> list[Any]:
    """The ids of a session from its JSON texts joined by commas (one reply, one parse)."""
    return json.loads(b"[" + joined + b"]")


CREDENTIALS = frozenset({"password", "username"})
"""Query parameters of a redis-py URL that carry credentials (never shown)."""
SOCKET = "<socket>"
"""What a message shows for the file-system path of a ``unix://`` URL."""


def redact(url: str) -> str:
    """A Redis URL as messages and ``/metadata`` show it: its scheme, host, port and database
    only. Credentials, in the user part (``redis://me:pw@host``) or in the query
    (``?password=pw``, ``?username=me``), become ``***@``; other query parameters are left out
    but ``db``; the path of a ``unix://`` socket is never shown (:data:`SOCKET`)."""
    if "://" not in url:  # no URL (``memory``, ``redis:/x``): as typed, less credentials
        _, at, rest = url.partition("?")[0].rpartition("@")
        return f"***@{rest}" if at else rest
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    _, at, hostport = parts.netloc.rpartition("@")
    secret = bool(at) or any(k.lower() in CREDENTIALS for k, _ in query)
    if parts.scheme.lower() == "unix":
        where, path = SOCKET, ""
    else:
        m = re.fullmatch(r"(\[[^\]]*\]|[^:]*)(:\d*)?(:.*)?", hostport)
        where = (m.group(1) + (m.group(2) or "")) if m else ""
        path = parts.path if re.fullmatch(r"/\d*", parts.path) else ""
    dbs = [v for k, v in query if k == "db" and re.fullmatch(r"\d+", v)]
    tail = f"?db={dbs[-1]}" if dbs else ""
    return f"{parts.scheme}://{'***@' if secret else ''}{where}{path}{tail}"


def _secrets(url: str) -> list[str]:
    """The credentials and socket path of a Redis URL, as a redis-py error may quote them."""
    parts = urlsplit(url)
    found = [v for k, v in parse_qsl(parts.query) if k.lower() in CREDENTIALS]
    for x in (parts.username, parts.password):
        if x:
            found += [x, unquote(x)]
    if parts.scheme.lower() == "unix" and parts.path:
        found += [parts.path, unquote(parts.path)]
    return sorted({x for x in found if len(x) >= 3}, key=len, reverse=True)


def _scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each of ``secrets`` in it replaced by ``***``."""
    for x in secrets:
        text = text.replace(x, "***")
    return text


class RedisSessionStore(SessionStore):
    """Sessions in a Redis database, shared by workers and servers (see the module docstring).

    ``url`` is a redis-py URL (``redis://[:password@]host:port/db``, ``rediss://``,
    ``unix:///path.sock?db=0``, credentials also as ``?password=``) with an optional ``prefix``
    query parameter for the key prefix. Messages and :meth:`stats` show it as :func:`redact`
    does (no credential, no socket path).
    Connecting is lazy; :meth:`ping` checks the server. Network calls time out after
    ``timeout_s`` and raise :class:`SessionStoreError`.
    """

    shared = True

    def __init__(
        self,
        url: str,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        max_events: int = DEFAULT_MAX_EVENTS,
        ttl_s: float = DEFAULT_TTL_S,
        max_bytes: int = DEFAULT_MAX_BYTES,
        *,
        prefix: str | None = None,
        timeout_s: float = 2.0,
    ) -> None:
        super().__init__(max_sessions, max_events, ttl_s, max_bytes)
        try:
            import redis
        except ImportError:
            raise ConfigError(
                "--session-store redis://...: needs the redis package: pip install 'warmrec[serve]'"
            ) from None
        if not url.startswith(SCHEMES):
            raise ConfigError(
                f"--session-store: expected memory or a redis://, rediss:// or unix:// URL, "
                f"found {redact(url)!r}"
            )
        base, _, query_text = url.partition("?")
        query = parse_qsl(query_text, keep_blank_values=True)
        prefixes = [v for k, v in query if k == "prefix"]
        kept = urlencode([(k, v) for k, v in query if k != "prefix"])
        # not urlunsplit: it writes unix:///path as unix:/path, which redis-py refuses
        rest = f"{base}?{kept}" if kept else base
        self.prefix = (
            prefix if prefix is not None else (prefixes[-1] if prefixes else DEFAULT_PREFIX)
        )
        self.url = redact(url)
        self._secrets = _secrets(url)
        self._errors = redis.exceptions.RedisError
        try:
            self._r = redis.Redis.from_url(
                rest,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                health_check_interval=30,
                encoding_errors="surrogatepass",  # any str is a key, even a lone surrogate
            )
        except (ValueError, TypeError) as e:
            raise ConfigError(
                f"--session-store {self.url}: {_scrub(str(e), self._secrets)}"
            ) from None
        self._ttl_ms = max(1, round(self.ttl_s * 1000))
        reg = self._r.register_script
        self._append, self._get, self._delete = reg(_APPEND), reg(_GET), reg(_DELETE)
        self._peek, self._touch = reg(_PEEK), reg(_TOUCH)
        self._stats, self._report, self._live = reg(_STATS), reg(_REPORT), reg(_LIVE)
        self._publish = reg(_PUBLISH)
        p = self.prefix
        self._lru, self._st = p + "lru", p + "stats"
        self._gen, self._workers, self._seen = p + "gen", p + "workers", p + "workers:seen"

    def _keys(self, sid: str) -> list[str]:
        return [f"{self.prefix}ev:{sid}", f"{self.prefix}m:{sid}", self._lru, self._st]

    def _call(self, fn: Callable[..., Any], *a: Any, **kw: Any) -> Any:
        try:
            return fn(*a, **kw)
        except self._errors as e:
            # a redis-py error may quote the socket path or a credential: never shown
            raise SessionStoreError(
                f"session store {self.url}: {_scrub(str(e), self._secrets)}"
            ) from None

    def ping(self) -> None:
        """Raise :class:`SessionStoreError` unless the server answers."""
        self._call(self._r.ping)

    def append(self, session_id: str, items: Iterable[Any]) -> tuple[list[Any], int]:
        enc = [json.dumps(x) for x in _nonempty(items)]
        args = [session_id, self._ttl_ms, self.max_events, self.max_bytes, self.max_sessions]
        total, kept = self._call(
            self._append, keys=self._keys(session_id), args=[*args, self.prefix, *enc]
        )
        return _decode(kept), int(total)

    def get(self, session_id: str, *, touch: bool = True) -> list[Any] | None:
        if touch:
            args = [session_id, self._ttl_ms]
            got = self._call(self._get, keys=self._keys(session_id), args=args)
        else:
            got = self._call(self._peek, keys=self._keys(session_id), args=[session_id])
        return None if got is None else _decode(got)

    def touch(self, session_id: str) -> bool:
        args = [session_id, self._ttl_ms]
        return bool(self._call(self._touch, keys=self._keys(session_id), args=args))

    def delete(self, session_id: str) -> bool:
        return bool(self._call(self._delete, keys=self._keys(session_id), args=[session_id]))

    def stats(self) -> dict[str, Any]:
        n, evicted, expired = self._call(self._stats, keys=self._keys(""), args=[self._ttl_ms])
        return {
            "store": "redis",
            "url": self.url,
            "prefix": self.prefix,
            "sessions": int(n),
            **self._bounds(),
            "evicted": int(evicted),
            "expired": int(expired),
        }

    def close(self) -> None:
        self._r.close()

    # -- the model generation and the worker registry (warmrec.serving.reload) ------------------
    def generation(self) -> str | None:
        """The model generation published by the last reload (None before any, or when the
        key is gone: a Redis restart, ``FLUSHDB``, an eviction)."""
        got = self._call(self._r.get, self._gen)
        return None if got is None else got.decode("utf-8", "replace")

    def next_generation(self) -> str:
        """Publish a new model generation; its token (see :func:`generation_time`)."""
        got = self._call(self._publish, keys=[self._gen], args=[secrets.token_hex(4)])
        return got.decode("utf-8", "replace")

    def report_worker(self, worker_id: str, info: dict[str, Any]) -> None:
        """Record a worker's state (its model generation) and that it is alive now."""
        self._call(
            self._report, keys=[self._workers, self._seen], args=[worker_id, json.dumps(info)]
        )

    def live_workers(self, within_s: float) -> dict[str, dict[str, Any]]:
        """The workers seen in the last ``within_s`` seconds, with what they last reported."""
        flat = self._call(
            self._live, keys=[self._workers, self._seen], args=[max(1, round(within_s * 1000))]
        )
        return {w.decode(): json.loads(info) for w, info in zip(flat[::2], flat[1::2], strict=True)}

    def forget_worker(self, worker_id: str) -> None:
        """Remove a worker from the registry (it is shutting down)."""
        pipe = self._r.pipeline(transaction=True)
        pipe.hdel(self._workers, worker_id)
        pipe.zrem(self._seen, worker_id)
        self._call(pipe.execute)


def open_store(
    spec: str = "memory",
    *,
    max_sessions: int = DEFAULT_MAX_SESSIONS,
    max_events: int = DEFAULT_MAX_EVENTS,
    ttl_s: float = DEFAULT_TTL_S,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
) -> SessionStore:
    """The store ``--session-store`` names: ``memory`` or a Redis URL (see the module docstring).
    ``max_total_bytes`` bounds the in-process store only (Redis has its own ``maxmemory``)."""
    if spec == "memory":
        return MemorySessionStore(
            max_sessions, max_events, ttl_s, max_bytes=max_bytes, max_total_bytes=max_total_bytes
        )
    if spec.startswith(SCHEMES):
        return RedisSessionStore(spec, max_sessions, max_events, ttl_s, max_bytes)
    raise ConfigError(
        f"--session-store: expected memory or a redis://, rediss:// or unix:// URL, "
        f"found {redact(spec)!r}"
    )
