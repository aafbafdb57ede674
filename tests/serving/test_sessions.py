"""The session stores: one suite run on the in-process LRU and on Redis (append, read, delete,
TTL expiry, reads that do not renew, bounds in sessions, events and bytes, concurrent appends),
then what only the in-process store does (its total memory bound), then what only Redis does
(expiry by Redis, sharing, key prefixes, the worker registry, an unreachable server)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from warmrec.errors import ConfigError
from warmrec.serving.sessions import (
    DEFAULT_MAX_TOTAL_BYTES,
    SESSION_OVERHEAD,
    MemorySessionStore,
    RedisSessionStore,
    SessionStore,
    SessionStoreError,
    generation_time,
    id_size,
    memory_cost,
    open_store,
    redact,
)
from warmrec.serving.state import SessionStore as OldName


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@dataclass
class Env:
    """Builds stores of one kind; ``wait(f)`` lets ``f`` times the unit TTL ``ttl`` pass (a fake
    clock for the in-process store, real time for Redis, whose expiry is its own)."""

    kind: str
    make: Callable[..., SessionStore]
    ttl: float
    wait: Callable[[float], None]


@pytest.fixture(params=["memory", "redis"])
def env(request) -> Env:
    if request.param == "memory":
        clock = Clock()

        def wait(f: float) -> None:
            clock.t += f * 10.0

        return Env("memory", lambda **kw: MemorySessionStore(clock=clock, **kw), 10.0, wait)
    url = request.getfixturevalue("redis_url")
    made: list[SessionStore] = []

    def make(**kw) -> SessionStore:
        s = RedisSessionStore(url, **kw)
        made.append(s)
        return s

    request.addfinalizer(lambda: [s.close() for s in made])
    return Env("redis", make, 1.0, lambda f: time.sleep(f * 1.0))


def test_append_read_delete(env):
    s = env.make()
    assert s.get("a") is None
    assert s.append("a", [1, 2]) == ([1, 2], 2)
    assert s.append("a", ["x", "3", 3]) == ([1, 2, "x", "3", 3], 5)  # ids keep their type
    assert s.append("b", ["y"]) == (["y"], 1)
    assert s.get("a") == [1, 2, "x", "3", 3] and s.get("b") == ["y"]
    assert s.delete("a") is True and s.delete("a") is False
    assert s.get("a") is None and s.get("b") == ["y"]
    assert len(s) == 1
    assert s.append("a", [7]) == ([7], 1)  # a deleted session starts afresh


def test_session_ids_do_not_collide(env):
    s = env.make()
    ids = ["x", "ev:x", "m:x", ":", "x ", "ünï", "\ud800", "lru", "stats"]
    for n, sid in enumerate(ids):
        s.append(sid, [n])
    assert [s.get(sid) for sid in ids] == [[n] for n in range(len(ids))]


def test_empty_append_is_refused(env):
    with pytest.raises(ValueError, match="at least one event"):
        env.make().append("a", [])


def test_ttl_expiry_renewed_by_reads_and_appends(env):
    s = env.make(ttl_s=env.ttl)
    s.append("a", [1])
    env.wait(0.6)
    assert s.get("a") == [1]  # reading renews the TTL
    env.wait(0.6)
    assert s.get("a") == [1]
    s.append("a", [2])
    env.wait(0.6)
    assert s.get("a") == [1, 2]
    env.wait(1.2)
    assert s.get("a") is None
    assert s.stats()["expired"] == 1
    assert s.append("a", [3]) == ([3], 1)  # an expired session starts afresh


def test_a_read_without_touch_does_not_renew_the_ttl(env):
    s = env.make(ttl_s=env.ttl)
    s.append("a", [1])
    env.wait(0.6)
    assert s.get("a", touch=False) == [1]
    env.wait(0.6)
    assert s.get("a", touch=False) is None  # expired one TTL after the append
    s.append("b", [1])
    env.wait(0.6)
    assert s.touch("b") is True  # the read answered: now it renews
    env.wait(0.6)
    assert s.get("b", touch=False) == [1]
    assert s.touch("nope") is False and s.touch("a") is False


def test_a_read_without_touch_keeps_the_lru_order(env):
    s = env.make(max_sessions=2)
    s.append("a", [1])
    s.append("b", [2])
    assert s.get("a", touch=False) == [1]  # a stays the least recently used
    s.append("c", [3])
    assert s.get("a") is None and s.get("b") == [2]
    assert s.touch("b") is True  # b is now the most recently used: c goes next
    s.append("d", [4])
    assert s.get("c") is None and s.get("b") == [2] and s.get("d") == [4]


def test_expired_sessions_are_swept_on_append(env):
    s = env.make(ttl_s=env.ttl)
    s.append("a", [1])
    s.append("b", [2])
    env.wait(1.2)
    s.append("c", [3])
    assert len(s) == 1 and s.get("a") is None and s.get("c") == [3]
    assert s.stats()["expired"] == 2


def test_lru_bound_evicts_least_recently_used(env):
    s = env.make(max_sessions=2)
    s.append("a", [1])
    s.append("b", [2])
    s.get("a")  # a is now the most recently used
    s.append("c", [3])
    assert s.get("b") is None and s.get("a") == [1] and s.get("c") == [3]
    st = s.stats()
    assert st["sessions"] == 2 and st["evicted"] == 1 and st["max_sessions"] == 2


def test_events_are_bounded_and_total_counted(env):
    s = env.make(max_events=3)
    s.append("a", [1, 2])
    assert s.append("a", [3, 4, 5]) == ([3, 4, 5], 5)
    assert s.append("a", list(range(10, 20))) == ([17, 18, 19], 15)
    assert s.get("a") == [17, 18, 19]


def test_bytes_are_bounded_oldest_dropped_newest_kept(env):
    assert id_size(7) == 1 and id_size("abcdefgh") == 10 and id_size("\ud800") == 8
    s = env.make(max_bytes=20)
    s.append("a", ["abcdefgh", "bcdefghi"])
    assert s.append("a", ["cdefghij"]) == (["bcdefghi", "cdefghij"], 3)
    big = "z" * 50
    assert s.append("a", [big]) == ([big], 4)  # over the bound alone: the newest is kept
    assert s.append("a", [1, 2]) == ([1, 2], 6)  # and dropped as soon as newer ones come
    s.append("b", list(range(1, 30)))  # 1-byte ids, then 2-byte ones: 20 bytes in all
    kept = s.get("b")
    assert sum(id_size(x) for x in kept) <= 20 and kept == list(range(20, 30))
    assert s.stats()["max_bytes"] == 20


def test_128_character_ids_are_bounded_by_bytes_not_only_by_count(env):
    s = env.make(max_events=200, max_bytes=8192)
    ids = [f"{i:03d}" + "u" * 125 for i in range(200)]  # 130 bytes each in JSON
    events, total = s.append("long", ids)
    assert total == 200 and len(events) == 8192 // 130 and events == ids[-len(events) :]


def test_concurrent_appends_to_one_session_lose_nothing(env):
    n_threads, per = (8, 500) if env.kind == "memory" else (4, 150)
    s = env.make(max_events=100_000, max_bytes=10**7)
    barrier = threading.Barrier(n_threads)

    def work(t: int) -> None:
        barrier.wait()
        for i in range(per):
            s.append("one", [t * 10_000 + i])

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    events = s.get("one")
    assert len(events) == n_threads * per
    for t in range(n_threads):  # each thread's events stay in its own order
        assert [e % 10_000 for e in events if e // 10_000 == t] == list(range(per))


@pytest.mark.parametrize(
    "kw", [{"max_sessions": 0}, {"max_events": 0}, {"ttl_s": 0}, {"max_bytes": -1}]
)
def test_bad_bounds(env, kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        env.make(**kw)


# -- the in-process store only: its memory in total ---------------------------------------------
def test_the_old_name_is_the_in_process_store():
    assert OldName is MemorySessionStore
    st = OldName().stats()
    assert st["store"] == "memory" and st["max_total_bytes"] == DEFAULT_MAX_TOTAL_BYTES == 256 << 20


def test_bad_total_bound():
    with pytest.raises(ValueError, match="max_total_bytes"):
        MemorySessionStore(max_total_bytes=0)
    with pytest.raises(ValueError, match="max_total_bytes"):
        open_store("memory", max_total_bytes=-1)


def test_memory_is_bounded_in_total_bytes_not_only_in_count():
    """200 unknown 128-character ids per session: the count bound alone allowed ~40 KB each,
    ~4 GB at the default 100,000 sessions."""
    long_ids = ["x" * 120 + f"{i:08d}" for i in range(200)]
    per_session = SESSION_OVERHEAD + sum(memory_cost(x) for x in long_ids)
    bound = 10 * per_session + 5000  # ten sessions (plus their ids' size)
    s = MemorySessionStore(max_events=200, max_bytes=10**6, max_total_bytes=bound)
    for n in range(50):
        s.append(f"session-{n:04d}", long_ids)
        assert s.nbytes <= s.max_total_bytes
    st = s.stats()
    assert st["sessions"] == 10 and st["evicted"] == 40 and st["bytes"] <= st["max_total_bytes"]
    assert s.get("session-0049") is not None and s.get("session-0039") is None  # LRU order
    small = MemorySessionStore(max_total_bytes=bound)
    for n in range(50):
        small.append(f"s{n}", [1, 2, 3])
    assert len(small) == 50  # short sessions are not charged as long ones


def test_the_total_counts_exactly_the_kept_events_under_both_bounds():
    s = MemorySessionStore(max_events=3, max_bytes=20)
    s.append("a", ["y" * 100])  # over the per-session bound alone: kept, and charged
    assert s.nbytes == SESSION_OVERHEAD + sys.getsizeof("a") + memory_cost("y" * 100)
    kept, _ = s.append("a", ["abcdefgh", 1, 2, 3])  # the long id leaves: its bytes leave the total
    assert kept == [1, 2, 3]  # the event bound (3) and the per-session bytes (<= 20)
    assert s.nbytes == SESSION_OVERHEAD + sys.getsizeof("a") + sum(map(memory_cost, kept))
    s.append("b", ["abcdefgh", "bcdefghi", "cdefghij"])  # 30 bytes of JSON: the oldest goes
    assert s.get("b") == ["bcdefghi", "cdefghij"]
    assert s.delete("a") and s.delete("b") and s.nbytes == 0
    s.append("c", [1])
    s.append("c", [2])
    assert s.stats()["bytes"] == SESSION_OVERHEAD + sys.getsizeof("c") + 2 * memory_cost(1)


def test_a_session_larger_than_the_total_keeps_only_itself():
    s = MemorySessionStore(max_total_bytes=1)
    s.append("a", [1])
    s.append("b", [2])
    assert s.get("a") is None and s.get("b") == [2] and s.stats()["evicted"] == 1


def test_expired_and_evicted_sessions_leave_the_total():
    clock = Clock()
    s = MemorySessionStore(ttl_s=10, clock=clock, max_sessions=2)
    s.append("a", ["x" * 50])
    s.append("b", [1])
    s.append("c", [2])  # a is evicted by count
    assert s.nbytes == sum(
        SESSION_OVERHEAD + sys.getsizeof(k) + memory_cost(v) for k, v in [("b", 1), ("c", 2)]
    )
    clock.t = 11
    assert s.get("b", touch=False) is None and len(s) == 0 and s.nbytes == 0


# -- Redis only ----------------------------------------------------------------------------------
def test_redis_expires_the_keys_itself(redis_url):
    import redis

    s = RedisSessionStore(redis_url, ttl_s=30)
    s.append("a", [1])
    r = redis.Redis.from_url(redis_url)
    for key in (b"warmrec:ev:a", b"warmrec:m:a"):
        assert 29_000 < r.pttl(key) <= 30_000
    s.delete("a")
    assert r.exists(b"warmrec:ev:a", b"warmrec:m:a", b"warmrec:lru") == 0
    r.close()


def test_redis_read_without_touch_leaves_the_expiry(redis_url):
    import redis

    s = RedisSessionStore(redis_url, ttl_s=30)
    s.append("a", [1])
    r = redis.Redis.from_url(redis_url)
    time.sleep(0.3)
    assert s.get("a", touch=False) == [1]
    assert r.pttl(b"warmrec:ev:a") <= 29_750 and r.pttl(b"warmrec:m:a") <= 29_750
    assert s.touch("a") is True
    assert r.pttl(b"warmrec:ev:a") > 29_750 and r.pttl(b"warmrec:m:a") > 29_750
    time.sleep(0.3)
    assert s.get("a") == [1] and r.pttl(b"warmrec:ev:a") > 29_750  # a plain read renews
    r.close()
    s.close()


def test_two_stores_on_one_database_share_sessions(redis_url):
    a, b = RedisSessionStore(redis_url), open_store(redis_url)
    a.append("s", [1])
    b.append("s", [2])
    assert a.get("s") == b.get("s") == [1, 2]
    assert b.delete("s") and a.get("s") is None


def test_prefixes_keep_services_apart(redis_url):
    a = RedisSessionStore(redis_url + "?prefix=one:")
    b = RedisSessionStore(redis_url + "?prefix=two:")
    a.append("s", [1])
    assert b.get("s") is None and a.prefix == "one:" and b.stats()["prefix"] == "two:"
    gen = a.next_generation()
    assert a.generation() == gen and b.generation() is None


def test_worker_registry(redis_url):
    s = RedisSessionStore(redis_url)
    assert s.generation() is None
    one, two = s.next_generation(), s.next_generation()
    assert one != two and s.generation() == two  # tokens, ordered by Redis's time
    assert 0 < generation_time(one) <= generation_time(two)
    s.report_worker("w1", {"generation": 2})
    s.report_worker("w2", {"generation": 1})
    assert s.live_workers(10) == {"w1": {"generation": 2}, "w2": {"generation": 1}}
    s.forget_worker("w2")
    assert set(s.live_workers(10)) == {"w1"}
    time.sleep(0.05)
    assert s.live_workers(0.01) == {}  # unseen for longer than asked: not live


def test_unreachable_redis_is_a_store_error():
    from tests.serving.conftest import free_port

    s = RedisSessionStore(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.5)
    t0 = time.monotonic()
    with pytest.raises(SessionStoreError, match="session store redis://127.0.0.1"):
        s.append("a", [1])
    with pytest.raises(SessionStoreError):
        s.ping()
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize("spec", ["redis:/nohost", "memcached://x", "Memory", ""])
def test_bad_store_specs(spec):
    pytest.importorskip("redis")
    with pytest.raises(ConfigError, match="--session-store"):
        open_store(spec)


def test_passwords_are_not_shown():
    assert redact("redis://:hunter2@h:6379/0") == "redis://***@h:6379/0"
    assert redact("redis://me:hunter2@h/1") == "redis://***@h/1"
    assert redact("redis://h:6379/0") == "redis://h:6379/0"
    assert redact("rediss://[::1]:7000/2") == "rediss://[::1]:7000/2"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # redis-py also takes credentials from the query; only scheme, host, port, db remain
        ("redis://h:6379/0?password=hunter2", "redis://***@h:6379/0"),
        ("redis://h/3?username=admin&password=hunter2&prefix=p:", "redis://***@h/3"),
        ("redis://hunter2@h", "redis://***@h"),  # a user part without ':' is a secret too
        ("rediss://h:6380?db=2&ssl_password=hunter2", "rediss://h:6380?db=2"),
        ("redis://h/hunter2", "redis://h"),  # not a database number: not shown
        # a socket's file-system path is never shown, nor its credentials
        ("unix:///var/run/redis.sock?db=2&password=hunter2", "unix://***@<socket>?db=2"),
        ("unix:///var/run/redis.sock", "unix://<socket>"),
        ("redis:/:hunter2@h?x=1", "***@h"),  # not a URL: as typed, less the credentials
    ],
)
def test_query_credentials_and_socket_paths_are_not_shown(url, shown):
    assert redact(url) == shown


def test_a_generation_is_a_token_of_redis_time_and_a_tag(fake_redis):
    """It was a counter (INCR): lost with its key, it restarted below the workers' own."""
    url, fake = fake_redis
    s = RedisSessionStore(url)
    assert s.generation() is None
    one, two = s.next_generation(), s.next_generation()
    assert one != two and s.generation() == two
    assert 0 < generation_time(one) <= generation_time(two)
    fake.flushdb()
    assert s.generation() is None
    three = s.next_generation()  # after the loss: still after the others
    assert three not in (one, two) and generation_time(three) >= generation_time(two)
    assert [generation_time(g) for g in (None, 7, "7", "x-y")] == [0, 0, 0, 0]


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:{port}/0?password=hunter2-secret",
        "redis://me:hunter2-secret@127.0.0.1:{port}/0",
        "unix:///tmp/hunter2-secret/redis.sock?db=0",
    ],
)
def test_unreachable_store_errors_show_no_secret(pop_dir, url):
    """The 503 of the session endpoints and /metadata named the URL as typed (its password)."""
    from fastapi.testclient import TestClient

    from tests.serving.conftest import free_port
    from warmrec.serving.app import create_app
    from warmrec.serving.bundle import ModelBundle

    store = RedisSessionStore(url.format(port=free_port()), timeout_s=0.2)
    assert "hunter2" not in store.url
    c = TestClient(create_app(bundle=ModelBundle.load(pop_dir), store=store))  # no lifespan
    for method, path, body in (
        ("post", "/sessions/s/events", {"items": [1]}),
        ("get", "/sessions/s/recommendations", None),
        ("delete", "/sessions/s", None),
    ):
        r = c.request(method, path, json=body)
        assert r.status_code == 503, r.text
        assert r.json()["detail"].startswith(f"session store {store.url}: ")
        assert "hunter2" not in r.text
    meta = c.get("/metadata")
    assert meta.status_code == 200 and "hunter2" not in meta.text
    assert meta.json()["sessions"]["error"].startswith(f"session store {store.url}: ")
    store.close()
