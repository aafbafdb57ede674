"""Reloads across workers: two apps in this process on one Redis database stand for two workers
(the real ``warmrec serve --workers 2`` is in ``test_workers.py``). ``POST /admin/reload`` exists
only with an admin token, with a shared store as with the in-process one. The tests of the model
generation run on :class:`~tests.serving.conftest.FakeRedis` (no server needed)."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from tests.serving.conftest import save_model
from warmrec.serving.app import create_app
from warmrec.serving.sessions import RedisSessionStore, generation_time

TOKEN = "t0ken-for-the-tests-0123456789"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def admin_client(app) -> TestClient:
    return TestClient(app, headers=ADMIN)


def meta(c: TestClient) -> dict:
    return c.get("/metadata").json()


def model_of(c: TestClient) -> str:
    return c.post("/recommend", json={"items": [1, 2], "k": 3}).json()["model"]


def test_reload_reaches_every_worker_and_says_which(tmp_path, redis_url):
    d = save_model("pop", tmp_path / "m")
    a_app = create_app(d, session_store=redis_url, workers=2, admin_token=TOKEN)
    b_app = create_app(d, session_store=redis_url, workers=2, admin_token=TOKEN)
    with admin_client(a_app) as a, admin_client(b_app) as b:
        ida, idb = meta(a)["worker"]["id"], meta(b)["worker"]["id"]
        assert ida != idb and meta(a)["worker"]["generation"] is None
        assert model_of(a) == model_of(b) == "pop"
        save_model("markov", d)  # a new model written over the directory
        r = a.post("/admin/reload")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == "markov" and generation_time(body["generation"]) > 0
        assert body["workers"] == {"confirmed": sorted([ida, idb]), "failed": {}, "missing": []}
        assert model_of(a) == model_of(b) == "markov"  # b reloaded before the answer came
        assert meta(b)["worker"]["generation"] == body["generation"]
        # sessions are shared: events through one worker are read through the other
        assert a.post("/sessions/s/events", json={"items": [3, 4]}).status_code == 200
        rec = b.get("/sessions/s/recommendations", params={"k": 2})
        assert rec.status_code == 200 and rec.json()["n_events"] == 2
        assert b.delete("/sessions/s").json()["deleted"] is True
        assert a.get("/sessions/s/recommendations").status_code == 404
    # a worker that shuts down leaves the registry
    assert RedisSessionStore(redis_url).live_workers(60) == {}


def test_a_worker_that_fails_to_reload_is_named_and_keeps_its_model(tmp_path, redis_url):
    good = save_model("pop", tmp_path / "good")
    bad = save_model("pop", tmp_path / "bad")
    with (
        admin_client(create_app(good, session_store=redis_url, admin_token=TOKEN)) as a,
        admin_client(create_app(bad, session_store=redis_url, admin_token=TOKEN)) as b,
    ):
        idb = meta(b)["worker"]["id"]
        (bad / "config.json").write_text("{broken")
        save_model("markov", good)
        r = a.post("/admin/reload")
        assert r.status_code == 504
        body = r.json()
        assert body["workers"]["confirmed"] == [meta(a)["worker"]["id"]]
        assert list(body["workers"]["failed"]) == [idb] and body["workers"]["missing"] == []
        assert "reached 1 of 2 workers; failed: " + idb in body["detail"]
        assert model_of(a) == "markov" and model_of(b) == "pop"
        assert meta(b)["worker"]["generation"] is None


def test_a_worker_that_does_not_answer_is_reported_missing(tmp_path, redis_url):
    d = save_model("pop", tmp_path / "m")
    store = RedisSessionStore(redis_url)
    with admin_client(
        create_app(d, session_store=redis_url, reload_timeout_s=1.0, admin_token=TOKEN)
    ) as a:
        store.report_worker("ghost", {"generation": None})  # alive, but never reloads
        t0 = time.monotonic()
        r = a.post("/admin/reload")
        waited = time.monotonic() - t0
        assert r.status_code == 504 and 1.0 <= waited < 5
        body = r.json()
        assert body["workers"]["missing"] == ["ghost"]
        assert body["workers"]["confirmed"] == [meta(a)["worker"]["id"]]
        assert "no answer in 1 s: ghost" in body["detail"]
    store.close()


def test_a_directory_that_does_not_load_publishes_nothing(tmp_path, redis_url):
    d = save_model("pop", tmp_path / "m")
    with admin_client(create_app(d, session_store=redis_url, admin_token=TOKEN)) as a:
        (d / "config.json").write_text("{broken")
        r = a.post("/admin/reload")
        assert r.status_code == 409 and "still serving the old model" in r.json()["detail"]
        assert RedisSessionStore(redis_url).generation() is None and model_of(a) == "pop"


def test_memory_store_with_several_workers_refuses_to_half_reload(pop_dir):
    with admin_client(create_app(pop_dir, workers=2, admin_token=TOKEN)) as c:
        r = c.post("/admin/reload")
        assert r.status_code == 409 and "SIGHUP" in r.json()["detail"]
        assert "--session-store redis://" in r.json()["detail"]


def test_a_store_that_goes_away_is_a_503_not_a_500(tmp_path, pop_dir):
    import shutil

    from tests.serving.conftest import _start_redis

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    proc, port = _start_redis(binary, tmp_path)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        store = RedisSessionStore(url, timeout_s=0.5)
        with admin_client(create_app(pop_dir, store=store, admin_token=TOKEN)) as c:
            assert c.post("/sessions/s/events", json={"items": [1]}).status_code == 200
            proc.terminate()
            proc.wait(timeout=10)
            for method, path, body in (
                ("post", "/sessions/s/events", {"items": [2]}),
                ("get", "/sessions/s/recommendations", None),
                ("delete", "/sessions/s", None),
                ("post", "/admin/reload", None),
            ):
                r = c.request(method, path, json=body)
                assert r.status_code == 503, (path, r.text)
                assert r.json()["detail"].startswith(f"session store {url}")
            assert c.post("/recommend", json={"items": [1]}).status_code == 200
            meta = c.get("/metadata")
            assert meta.status_code == 200
            assert meta.json()["sessions"]["error"].startswith(f"session store {url}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_without_a_token_no_worker_has_a_reload_route(tmp_path, redis_url):
    d = save_model("pop", tmp_path / "m")
    with (
        TestClient(create_app(d, session_store=redis_url, workers=2)) as a,
        admin_client(create_app(d, session_store=redis_url, workers=2, admin_token=TOKEN)) as b,
    ):
        assert a.post("/admin/reload", headers=ADMIN).status_code == 404
        assert "/admin/reload" not in a.get("/openapi.json").json()["paths"]
        r = b.post("/admin/reload", headers={"Authorization": "Bearer wrong-token-0123456789"})
        assert r.status_code == 401 and RedisSessionStore(redis_url).generation() is None
        assert model_of(a) == "pop" and meta(a)["worker"]["generation"] is None
        ok = b.post("/admin/reload")  # the token: both workers, the token-less one too, follow
        assert ok.status_code == 200, ok.text
        assert len(ok.json()["workers"]["confirmed"]) == 2
        assert meta(a)["worker"]["generation"] == ok.json()["generation"]


def _wait_until_registered(url: str, *workers: str, timeout: float = 10) -> None:
    store, deadline = RedisSessionStore(url), time.monotonic() + timeout
    while not set(workers) <= set(store.live_workers(10)):
        assert time.monotonic() < deadline, "the workers did not report again"
        time.sleep(0.05)


def test_a_lost_generation_still_reaches_every_worker(tmp_path, fake_redis):
    """The generation was a counter: lost with its key (a Redis restart, FLUSHDB, an eviction),
    the next reload published 1, and the workers at 2 neither reloaded nor were missed (listed
    as confirmed, serving the old model). It is a token now: any other one is a reload."""
    url, fake = fake_redis
    d = save_model("pop", tmp_path / "m")
    a_app = create_app(d, session_store=url, workers=2, admin_token=TOKEN)
    b_app = create_app(d, session_store=url, workers=2, admin_token=TOKEN)
    with admin_client(a_app) as a, admin_client(b_app) as b:
        ida, idb = meta(a)["worker"]["id"], meta(b)["worker"]["id"]
        gens = []
        for _ in range(2):
            r = a.post("/admin/reload")
            assert r.status_code == 200 and r.json()["workers"]["confirmed"] == sorted([ida, idb])
            gens.append(r.json()["generation"])
        assert gens[0] != gens[1] and meta(b)["worker"]["generation"] == gens[1]
        fake.flushdb()  # the generation and the registry gone
        _wait_until_registered(url, ida, idb)
        assert meta(b)["worker"]["generation"] == gens[1]  # no generation: nothing to reload
        save_model("markov", d)
        r = a.post("/admin/reload")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["workers"] == {"confirmed": sorted([ida, idb]), "failed": {}, "missing": []}
        assert model_of(a) == model_of(b) == "markov"  # b reloaded before the answer came
        assert body["generation"] not in gens  # a counter published 1 again
        assert meta(b)["worker"]["generation"] == body["generation"]


def test_only_the_published_generation_confirms(tmp_path, fake_redis):
    """A worker counted as confirmed when its generation was >= the published one: one that
    reports another generation (a counter of 99, as one could after the key was lost) has not
    loaded the new model."""
    url, _ = fake_redis
    d = save_model("pop", tmp_path / "m")
    store = RedisSessionStore(url)
    with admin_client(
        create_app(d, session_store=url, reload_timeout_s=1.0, admin_token=TOKEN)
    ) as a:
        store.report_worker("stale", {"generation": 99})
        r = a.post("/admin/reload")
        assert r.status_code == 504, r.text
        body = r.json()
        assert body["workers"]["missing"] == ["stale"] and body["workers"]["failed"] == {}
        assert body["workers"]["confirmed"] == [meta(a)["worker"]["id"]]


def test_a_generation_published_later_confirms(tmp_path, fake_redis):
    """Two reloads that overlap: a worker that already serves the later one's generation has
    loaded the directory after the earlier one was published (it confirms both)."""
    url, _ = fake_redis
    d = save_model("pop", tmp_path / "m")
    store = RedisSessionStore(url)
    with admin_client(create_app(d, session_store=url, admin_token=TOKEN)) as a:
        store.report_worker("later", {"generation": f"{2**62}-0a0b0c0d"})
        r = a.post("/admin/reload")
        assert r.status_code == 200, r.text
        assert r.json()["workers"]["confirmed"] == sorted([meta(a)["worker"]["id"], "later"])


def test_a_poll_never_goes_back_to_an_older_generation(pop_dir):
    """The poll read generation G1 outside the lock while this worker's own reload published
    and loaded G2: it then loaded again and set G1 (and reloaded once more at the next poll)."""
    import asyncio

    from warmrec.serving.bundle import ModelBundle
    from warmrec.serving.reload import Reloader

    loads = []

    def load() -> ModelBundle:
        loads.append(1)
        return ModelBundle.load(pop_dir)

    class Store:
        shared = True

        def generation(self) -> str:
            return "1000-0a0a0a0a"  # G1, published before this worker's G2

        def report_worker(self, *a) -> None:
            pass

    r = Reloader(load, Store(), bundle=ModelBundle.load(pop_dir))
    r._local.generation = "2000-0b0b0b0b"  # this worker already serves the later G2
    asyncio.run(r._step())
    assert loads == [] and r._local.generation == "2000-0b0b0b0b"
