"""Server-side session state: a bounded LRU store of recent events with a time to live.

:class:`SessionStore` keeps, per session id, the most recent ``max_events`` raw item ids (a
``deque`` with ``maxlen``), for at most ``max_sessions`` sessions: appending to a new session when
the store is full evicts the least recently used one. A session not touched for ``ttl_s`` seconds
is gone (expired sessions are dropped lazily on access and by a sweep on every append, which
walks the LRU order from the oldest and stops at the first live session).

Memory is bounded in bytes as well as in count: each session is charged an estimate of what it
holds (a fixed :data:`SESSION_OVERHEAD` plus ``sys.getsizeof`` of its id and of each kept event,
and a pointer per event), and when the total passes ``max_bytes`` the least recently used
*other* sessions are evicted (the count bound alone let 200 unknown 128-character ids per session
cost ~40 KB each, ~4 GB at the default 100,000 sessions). :meth:`SessionStore.stats` reports the
charged ``bytes``.

A read may leave the TTL as it is (``get(..., touch=False)``, then :meth:`SessionStore.touch`
once the read has served): the service renews a session only when it answered from it, so a
session that only ever fails does not live on by being read.

All methods take one lock, so concurrent appends to one session from several threads are
serialised and none is lost. ``clock`` is injectable (tests advance a fake clock).
"""

from __future__ import annotations

import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

SESSION_OVERHEAD = 1024
"""Bytes charged per session besides its id and events (the deque, the record, the map entry)."""
DEFAULT_MAX_BYTES = 256 * 2**20


def _cost(x: Any) -> int:
    """Bytes charged for one kept event: the object and the deque's pointer to it."""
    return sys.getsizeof(x) + 8


@dataclass
class _Session:
    events: deque
    touched: float
    n_total: int = 0
    created: float = field(default=0.0)
    nbytes: int = 0


class SessionStore:
    """Bounded LRU + TTL store of session histories (see the module docstring)."""

    def __init__(
        self,
        max_sessions: int = 100_000,
        max_events: int = 200,
        ttl_s: float = 1800.0,
        clock: Callable[[], float] = time.monotonic,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        if max_sessions < 1 or max_events < 1 or ttl_s <= 0 or max_bytes < 1:
            raise ValueError("max_sessions, max_events, ttl_s and max_bytes must be positive")
        self.max_sessions = max_sessions
        self.max_events = max_events
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._clock = clock
        self._lock = threading.Lock()
        self._data: OrderedDict[str, _Session] = OrderedDict()
        self.evicted = 0
        self.expired = 0

    def __len__(self) -> int:
        with self._lock:
            self._sweep(self._clock())
            return len(self._data)

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
            self.nbytes -= s.nbytes
        return s

    def append(self, session_id: str, items: Iterable[Any]) -> tuple[list[Any], int]:
        """Append events to a session (created if absent); returns its kept history and the
        number of events ever appended to it."""
        with self._lock:
            now = self._clock()
            self._sweep(now)
            s = self._data.get(session_id)
            if s is None:
                while len(self._data) >= self.max_sessions:
                    self._drop(next(iter(self._data)))
                    self.evicted += 1
                base = SESSION_OVERHEAD + sys.getsizeof(session_id)
                s = _Session(deque(maxlen=self.max_events), now, 0, now, base)
                self._data[session_id] = s
                self.nbytes += base
            else:
                self._data.move_to_end(session_id)
            items = list(items)
            ev, before = s.events, s.nbytes
            for x in items:
                if len(ev) == self.max_events:
                    s.nbytes -= _cost(ev[0])
                ev.append(x)
                s.nbytes += _cost(x)
            self.nbytes += s.nbytes - before
            s.n_total += len(items)
            s.touched = now
            while self.nbytes > self.max_bytes and len(self._data) > 1:
                self._drop(next(iter(self._data)))  # the least recently used, never this one
                self.evicted += 1
            return list(ev), s.n_total

    def get(self, session_id: str, *, touch: bool = True) -> list[Any] | None:
        """A session's kept history (most recent last), or None when absent or expired.
        Reading counts as use (it refreshes the LRU position and the TTL) unless ``touch`` is
        False (then :meth:`touch` it once the read has served)."""
        with self._lock:
            now = self._clock()
            s = self._data.get(session_id)
            if s is None:
                return None
            if now - s.touched >= self.ttl_s:
                self._drop(session_id)
                self.expired += 1
                return None
            if touch:
                s.touched = now
                self._data.move_to_end(session_id)
            return list(s.events)

    def touch(self, session_id: str) -> bool:
        """Refresh a live session's TTL and LRU position; whether it was there."""
        with self._lock:
            now = self._clock()
            s = self._data.get(session_id)
            if s is None or now - s.touched >= self.ttl_s:
                return False
            s.touched = now
            self._data.move_to_end(session_id)
            return True

    def delete(self, session_id: str) -> bool:
        """Forget a session; whether it existed."""
        with self._lock:
            return self._drop(session_id) is not None

    def stats(self) -> dict[str, int | float]:
        with self._lock:
            self._sweep(self._clock())
            return {
                "sessions": len(self._data),
                "max_sessions": self.max_sessions,
                "max_events": self.max_events,
                "ttl_s": self.ttl_s,
                "bytes": self.nbytes,
                "max_bytes": self.max_bytes,
                "evicted": self.evicted,
                "expired": self.expired,
            }
