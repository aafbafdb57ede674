"""The session store: TTL expiry, LRU bound, bounded history, concurrent appends."""

from __future__ import annotations

import sys
import threading

import pytest

from warmrec.serving.state import SESSION_OVERHEAD, SessionStore


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_ttl_expiry():
    clock = Clock()
    s = SessionStore(ttl_s=10, clock=clock)
    s.append("a", [1])
    clock.t = 9.9
    assert s.get("a") == [1]  # reading refreshes the TTL
    clock.t = 19.8
    assert s.get("a") == [1]
    clock.t = 29.8
    assert s.get("a") is None
    assert s.stats()["expired"] == 1


def test_expired_sessions_are_swept_on_append():
    clock = Clock()
    s = SessionStore(ttl_s=5, clock=clock)
    s.append("a", [1])
    s.append("b", [2])
    clock.t = 6
    s.append("c", [3])
    assert len(s) == 1 and s.get("a") is None


def test_lru_bound_evicts_least_recently_used():
    s = SessionStore(max_sessions=2)
    s.append("a", [1])
    s.append("b", [2])
    s.get("a")  # a is now the most recently used
    s.append("c", [3])
    assert s.get("b") is None and s.get("a") == [1] and s.get("c") == [3]
    assert len(s) == 2 and s.evicted == 1


def test_history_is_bounded_and_total_counted():
    s = SessionStore(max_events=3)
    events, total = s.append("a", [1, 2])
    events, total = s.append("a", [3, 4, 5])
    assert events == [3, 4, 5] and total == 5


def test_concurrent_appends_to_one_session_lose_nothing():
    s = SessionStore(max_events=100_000)
    n_threads, per = 8, 500
    barrier = threading.Barrier(n_threads)

    def work(t: int) -> None:
        barrier.wait()
        for i in range(per):
            s.append("one", [(t, i)])

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    events = s.get("one")
    assert len(events) == n_threads * per
    for t in range(n_threads):  # each thread's events stay in its own order
        assert [i for tt, i in events if tt == t] == list(range(per))


@pytest.mark.parametrize(
    "kw", [{"max_sessions": 0}, {"max_events": 0}, {"ttl_s": 0}, {"max_bytes": 0}]
)
def test_bad_bounds(kw):
    with pytest.raises(ValueError):
        SessionStore(**kw)


def test_memory_is_bounded_in_bytes_not_only_in_count():
    """200 unknown 128-character ids per session: the count bound alone allowed ~40 KB each."""
    long_ids = ["x" * 120 + f"{i:08d}" for i in range(200)]
    per_session = SESSION_OVERHEAD + sum(sys.getsizeof(x) + 8 for x in long_ids)
    s = SessionStore(max_sessions=100_000, max_events=200, max_bytes=10 * per_session + 5000)
    for n in range(50):
        s.append(f"session-{n:04d}", long_ids)
        assert s.nbytes <= s.max_bytes
    st = s.stats()
    assert st["sessions"] == 10 and st["evicted"] == 40 and st["bytes"] <= st["max_bytes"]
    assert s.get("session-0049") is not None and s.get("session-0039") is None  # LRU order
    small = SessionStore(max_bytes=10 * per_session + 5000)
    for n in range(50):
        small.append(f"s{n}", [1, 2, 3])
    assert len(small) == 50  # short sessions are not charged as long ones


def test_byte_count_follows_events_dropped_by_the_history_bound_and_deletes():
    s = SessionStore(max_events=2)
    s.append("a", ["y" * 100])
    big = s.nbytes
    s.append("a", [1, 2])  # the long id leaves the deque: its bytes leave the count
    assert s.nbytes < big
    s.delete("a")
    assert s.nbytes == 0


def test_a_session_larger_than_the_bound_keeps_only_itself():
    s = SessionStore(max_bytes=1)
    s.append("a", [1])
    s.append("b", [2])
    assert s.get("a") is None and s.get("b") == [2]


def test_a_read_without_touch_does_not_renew_the_ttl():
    clock = Clock()
    s = SessionStore(ttl_s=10, clock=clock)
    s.append("a", [1])
    clock.t = 9
    assert s.get("a", touch=False) == [1]
    clock.t = 15
    assert s.get("a", touch=False) is None  # expired 10 s after the append
    s.append("b", [1])
    clock.t = 24
    assert s.touch("b") is True
    clock.t = 30
    assert s.get("b") == [1] and s.touch("nope") is False
