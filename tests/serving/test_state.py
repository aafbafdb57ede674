"""The session store: TTL expiry, LRU bound, bounded history, concurrent appends."""

from __future__ import annotations

import threading

import pytest

from warmrec.serving.state import SessionStore


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


@pytest.mark.parametrize("kw", [{"max_sessions": 0}, {"max_events": 0}, {"ttl_s": 0}])
def test_bad_bounds(kw):
    with pytest.raises(ValueError):
        SessionStore(**kw)
