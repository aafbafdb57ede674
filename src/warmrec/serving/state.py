"""Server-side session state: a bounded LRU store of recent events with a time to live.

:class:`SessionStore` keeps, per session id, the most recent ``max_events`` raw item ids (a
``deque`` with ``maxlen``), for at most ``max_sessions`` sessions: appending to a new session when
the store is full evicts the least recently used one. A session not touched for ``ttl_s`` seconds
is gone (expired sessions are dropped lazily on access and by a sweep on every append, which
walks the LRU order from the oldest and stops at the first live session). Memory is therefore
bounded by ``max_sessions * max_events`` ids (each id itself bounded by the service's id-length
limit).

All methods take one lock, so concurrent appends to one session from several threads are
serialised and none is lost. ``clock`` is injectable (tests advance a fake clock).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Session:
    events: deque
    touched: float
    n_total: int = 0
    created: float = field(default=0.0)


class SessionStore:
    """Bounded LRU + TTL store of session histories (see the module docstring)."""

    def __init__(
        self,
        max_sessions: int = 100_000,
        max_events: int = 200,
        ttl_s: float = 1800.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_sessions < 1 or max_events < 1 or ttl_s <= 0:
            raise ValueError("max_sessions, max_events and ttl_s must be positive")
        self.max_sessions = max_sessions
        self.max_events = max_events
        self.ttl_s = ttl_s
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
            del data[sid]
            self.expired += 1

    def append(self, session_id: str, items: Iterable[Any]) -> tuple[list[Any], int]:
        """Append events to a session (created if absent); returns its kept history and the
        number of events ever appended to it."""
        with self._lock:
            now = self._clock()
            self._sweep(now)
            s = self._data.get(session_id)
            if s is None:
                while len(self._data) >= self.max_sessions:
                    self._data.popitem(last=False)
                    self.evicted += 1
                s = _Session(deque(maxlen=self.max_events), now, 0, now)
                self._data[session_id] = s
            else:
                self._data.move_to_end(session_id)
            items = list(items)
            s.events.extend(items)
            s.n_total += len(items)
            s.touched = now
            return list(s.events), s.n_total

    def get(self, session_id: str) -> list[Any] | None:
        """A session's kept history (most recent last), or None when absent or expired.
        Reading counts as use (it refreshes the LRU position and the TTL)."""
        with self._lock:
            now = self._clock()
            s = self._data.get(session_id)
            if s is None:
                return None
            if now - s.touched >= self.ttl_s:
                del self._data[session_id]
                self.expired += 1
                return None
            s.touched = now
            self._data.move_to_end(session_id)
            return list(s.events)

    def delete(self, session_id: str) -> bool:
        """Forget a session; whether it existed."""
        with self._lock:
            return self._data.pop(session_id, None) is not None

    def stats(self) -> dict[str, int | float]:
        with self._lock:
            self._sweep(self._clock())
            return {
                "sessions": len(self._data),
                "max_sessions": self.max_sessions,
                "max_events": self.max_events,
                "ttl_s": self.ttl_s,
                "evicted": self.evicted,
                "expired": self.expired,
            }
