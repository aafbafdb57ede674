"""The HTTP app in-process (FastAPI TestClient): every endpoint and every error."""

from __future__ import annotations

import json
import shutil
import time

import pytest
from fastapi.testclient import TestClient

from tests.conftest import cyclic_log
from tests.serving.conftest import save_model
from warmrec import SequenceDataset, get_model
from warmrec._version import __version__
from warmrec.serving.app import MAX_HISTORY, MAX_ID_LEN, MAX_K, create_app
from warmrec.serving.bundle import ModelBundle
from warmrec.serving.state import SessionStore


@pytest.fixture(scope="module")
def client(pop_dir):
    with TestClient(create_app(pop_dir)) as c:
        yield c


def test_health_and_metadata(client):
    assert client.get("/health").json() == {"status": "ok", "model": "pop"}
    meta = client.get("/metadata").json()
    assert meta["model"] == "pop" and meta["n_items"] == 20
    assert meta["warmrec_version"] == __version__ and meta["trained_with_version"] == __version__
    assert isinstance(meta["config"], dict) and meta["limits"]["max_k"] == MAX_K
    assert meta["sessions"]["max_sessions"] > 0


def test_docs_and_schema(client):
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/recommend", "/sessions/{session_id}/events", "/health", "/metadata"} <= set(paths)


def test_recommend_ranks_with_scores(client):
    r = client.post("/recommend", json={"items": [3, 4], "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "pop" and len(body["items"]) == 5 and body["unknown"] == []
    scores = [x["score"] for x in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert body["fallback_used"] is False and body["popularity_filled"] == 0


def test_recommend_reports_unknown_ids_and_accepts_digit_strings(client):
    r = client.post("/recommend", json={"items": [3, "nope", 999, "4"], "k": 3})
    assert r.status_code == 200
    assert r.json()["unknown"] == ["nope", 999]


def test_exclusions_and_restriction(client):
    top = [
        x["item_id"] for x in client.post("/recommend", json={"items": [1], "k": 3}).json()["items"]
    ]
    seen = client.post("/recommend", json={"items": [top[0]], "k": 3, "exclude_seen": True})
    assert top[0] not in [x["item_id"] for x in seen.json()["items"]]
    ex = client.post("/recommend", json={"items": [1], "k": 3, "exclude": [top[1]]})
    assert top[1] not in [x["item_id"] for x in ex.json()["items"]]
    rs = client.post("/recommend", json={"items": [1], "k": 10, "restrict_to": [5, 7, "x"]})
    assert sorted(x["item_id"] for x in rs.json()["items"]) == [5, 7]
    none = client.post("/recommend", json={"items": [1], "restrict_to": ["x"]})
    assert none.status_code == 200 and none.json()["items"] == []


def test_a_422_echoes_a_clipped_input(client):
    """A 1,001-item history came back whole in the 422 (a 250 KB request, a 230 KB answer)."""
    r = client.post("/recommend", json={"items": [1] * (MAX_HISTORY + 1)})
    assert r.status_code == 422 and len(r.content) < 1_000
    (err,) = r.json()["detail"]
    assert err["input"] == [1] * 10 + [f"... {MAX_HISTORY - 9} more"]
    assert err["ctx"]["actual_length"] == MAX_HISTORY + 1


def test_a_422_of_the_whole_body_echoes_it_clipped(client):
    """An empty history without the fallback is an error of the whole body: its input was the
    body as sent (a 719 KB request, a 704 KB 422)."""
    body = {"items": [], "exclude": ["x" * 70] * 10_000, "restrict_to": [1] * 10_000}
    r = client.post("/recommend", json=body)
    assert r.status_code == 422 and len(r.content) < 3_000, len(r.content)
    (err,) = r.json()["detail"]
    assert err["loc"] == ["body"] and "fallback='popular'" in err["msg"]
    assert err["input"]["items"] == []
    assert err["input"]["exclude"] == ["x" * 70] * 10 + ["... 9990 more"]


@pytest.mark.parametrize(
    "junk",
    [
        [[1] * 50_000] * 5,  # a nested list was echoed whole
        [[[["y" * 100] * 10] * 10] * 10] * 10,  # as deep and wide as the budget allows
        {"a": {"b": ["z" * 1_000] * 1_000}},
        ["\x01" * 128] * 1_000,  # escapes count: 6 characters of JSON each
    ],
)
def test_a_422_is_small_whatever_the_input(client, junk):
    r = client.post("/recommend", json={"items": [1], "junk": junk})
    assert r.status_code == 422 and len(r.content) < 4_000, len(r.content)
    (err,) = r.json()["detail"]
    assert err["type"] == "extra_forbidden" and err["loc"] == ["body", "junk"]


def test_a_422_clips_a_key_and_counts_the_errors_it_leaves_out(client):
    r = client.post("/recommend", json={"items": [1], "k" * 500_000: 1})  # a key in "loc"
    assert r.status_code == 422 and len(r.content) < 1_000, len(r.content)
    assert r.json()["detail"][0]["loc"][1].endswith("... (500000 characters)")
    r = client.post("/recommend", json={"items": [None] * 1_000})  # 2 errors per null
    assert r.status_code == 422 and len(r.content) < 3_000, len(r.content)
    errs = r.json()["detail"]
    assert len(errs) == 11 and errs[0]["loc"][:3] == ["body", "items", 0]
    assert errs[-1] == {
        "type": "too_many_errors",
        "loc": ["body"],
        "msg": "1990 more errors not shown",
    }


@pytest.mark.parametrize("items", [[], ["nope", 999]])
def test_no_known_item_is_400_unless_fallback(client, items):
    r = client.post("/recommend", json={"items": items})
    if items:  # the schema cannot know the vocabulary: a documented 400
        assert r.status_code == 400
        assert "no item the model knows" in r.json()["detail"]
        assert "fallback" in r.json()["detail"]
        assert "unknown item ids ('nope', 999)" in r.json()["detail"]
    else:  # the schema says an empty history needs the fallback: a 422 like any invalid body
        assert r.status_code == 422
        assert "fallback='popular'" in r.json()["detail"][0]["msg"]
    f = client.post("/recommend", json={"items": items, "fallback": "popular", "k": 4})
    assert f.status_code == 200 and f.json()["fallback_used"] is True
    assert len(f.json()["items"]) == 4 and f.json()["popularity_filled"] == 4


@pytest.mark.parametrize(
    "body",
    [
        {"items": [1], "k": 0},
        {"items": [1], "k": MAX_K + 1},
        {"items": [1], "k": "ten"},
        {"items": [1], "k": 2.5},
        {"items": ["x" * (MAX_ID_LEN + 1)]},
        {"items": [""]},
        {"items": list(range(MAX_HISTORY + 1))},
        {"items": [True]},
        {"items": [1.5]},
        {"items": [None]},
        {"items": [2**64]},
        {"items": "1,2"},
        {"items": [1], "fallback": "random"},
        {"items": [1], "surprise": 1},
        [1, 2],
    ],
)
def test_invalid_bodies_are_422(client, body):
    assert client.post("/recommend", json=body).status_code == 422


def test_malformed_json_is_422(client):
    r = client.post(
        "/recommend", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422


def test_body_limit_is_413(client):
    big = json.dumps({"items": [1], "exclude": ["y" * 100] * 12_000}).encode()
    assert (
        client.post(
            "/recommend", content=big, headers={"content-type": "application/json"}
        ).status_code
        == 413
    )

    def chunks():  # no content-length: counted as it streams
        yield b'{"items": [1], "exclude": ['
        for _ in range(12_000):
            yield b'"' + b"y" * 100 + b'",'
        yield b'"z"]}'

    r = client.post("/recommend", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_session_events_and_recommendations(client):
    r = client.post("/sessions/s-1/events", json={"items": [1, 2]})
    assert r.status_code == 200
    assert r.json() == {"session_id": "s-1", "n_events": 2, "n_total": 2, "unknown": []}
    r = client.post("/sessions/s-1/events", json={"items": ["zz", 3]})
    assert r.json()["n_events"] == 4 and r.json()["unknown"] == ["zz"]
    rec = client.get("/sessions/s-1/recommendations", params={"k": 3, "exclude_seen": True})
    assert rec.status_code == 200
    body = rec.json()
    assert body["session_id"] == "s-1" and body["n_events"] == 4 and body["unknown"] == ["zz"]
    assert not {1, 2, 3} & {x["item_id"] for x in body["items"]}
    assert client.delete("/sessions/s-1").json() == {"session_id": "s-1", "deleted": True}
    assert client.delete("/sessions/s-1").json()["deleted"] is False


def test_unknown_session_is_404_unless_fallback(client):
    r = client.get("/sessions/never/recommendations")
    assert r.status_code == 404 and "never" in r.json()["detail"]
    f = client.get("/sessions/never/recommendations", params={"fallback": "popular"})
    assert f.status_code == 200 and f.json()["fallback_used"] and f.json()["n_events"] == 0


def test_session_of_unknown_items_is_400(client):
    client.post("/sessions/odd/events", json={"items": ["zz"]})
    r = client.get("/sessions/odd/recommendations")
    assert r.status_code == 400 and "only unknown" in r.json()["detail"]


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("post", "/sessions/s/events", {"items": []}),
        ("post", "/sessions/s/events", {}),
        ("post", "/sessions/" + "s" * (MAX_ID_LEN + 1) + "/events", {"items": [1]}),
        ("get", "/sessions/s/recommendations?k=0", None),
        ("get", "/sessions/s/recommendations?k=abc", None),
        ("get", "/sessions/s/recommendations?fallback=x", None),
    ],
)
def test_session_errors_are_422(client, method, url, body):
    r = client.post(url, json=body) if method == "post" else client.get(url)
    assert r.status_code == 422


def test_unknown_route_and_method(client):
    assert client.get("/nope").status_code == 404
    assert client.get("/recommend").status_code == 405


def test_sessions_are_bounded_by_the_store(pop_dir):
    app = create_app(bundle=ModelBundle.load(pop_dir), store=SessionStore(max_sessions=2))
    with TestClient(app) as c:
        for s in ("a", "b", "c"):
            c.post(f"/sessions/{s}/events", json={"items": [1]})
        assert c.get("/sessions/a/recommendations").status_code == 404
        assert c.get("/sessions/c/recommendations").status_code == 200
        assert c.get("/metadata").json()["sessions"]["evicted"] == 1


TOKEN = "t0ken-for-the-tests-0123456789"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def test_reload_swaps_the_model_and_keeps_it_on_failure(tmp_path):
    d = save_model("pop", tmp_path / "m", n_items=20)
    with TestClient(create_app(d, admin_token=TOKEN), headers=ADMIN) as c:
        assert c.get("/metadata").json()["n_items"] == 20
        save_model("pop", tmp_path / "new", n_items=30)
        shutil.rmtree(d)
        shutil.copytree(tmp_path / "new", d)
        r = c.post("/admin/reload")
        assert r.status_code == 200 and r.json()["n_items"] == 30
        assert c.get("/metadata").json()["n_items"] == 30
        (d / "config.json").write_text("{broken")
        r = c.post("/admin/reload")
        assert r.status_code == 409 and "still serving the old model" in r.json()["detail"]
        assert c.post("/recommend", json={"items": [25]}).status_code == 200


def test_a_reload_during_a_save_loads_the_new_model_not_a_checksum_error(tmp_path, monkeypatch):
    """A save that swapped in a new folder while the reload read the old one's config.json
    failed the reload with a checksum error blaming an edit (409, the old model serving); the
    directory is read again, from the one save."""
    import warmrec.artifacts as artifacts

    d = save_model("pop", tmp_path / "m", n_items=20)
    new = get_model("pop").fit(SequenceDataset.from_frame(cyclic_log(n_items=30)))
    with TestClient(create_app(d, admin_token=TOKEN), headers=ADMIN) as c:
        read_weights, saves = artifacts.read_weights, []

        def saved_meanwhile(path, sha256=None):
            if not saves:  # config.json and vocab.json were read: the save lands now
                saves.append(new.save(d))
            return read_weights(path, sha256)

        monkeypatch.setattr(artifacts, "read_weights", saved_meanwhile)
        r = c.post("/admin/reload")
        assert saves and r.status_code == 200, r.text
        assert r.json()["n_items"] == 30 and c.get("/metadata").json()["n_items"] == 30


def test_a_reload_that_fails_outside_warmrec_keeps_the_old_model(tmp_path, monkeypatch):
    """Damage that surfaced as another exception (an IndexError in a warm-up, a scipy error)
    answered 500; it is a failed reload like any other (409, the old model serving)."""
    from warmrec.errors import ModelError as WarmrecModelError
    from warmrec.serving.bundle import ModelBundle

    d = save_model("pop", tmp_path / "m", n_items=20)
    with TestClient(create_app(d, admin_token=TOKEN), headers=ADMIN) as c:

        def broken(self):
            raise IndexError("index 2000000000 is out of bounds")

        monkeypatch.setattr(ModelBundle, "warm_up", broken)
        r = c.post("/admin/reload")
        assert r.status_code == 409 and "still serving the old model" in r.json()["detail"]
        assert "IndexError" in r.json()["detail"]
        assert c.post("/recommend", json={"items": [3]}).status_code == 200
    with pytest.raises(WarmrecModelError, match="does not load .IndexError"):
        ModelBundle.load(d)


def test_sasrec_serves(sasrec_dir):
    with TestClient(create_app(sasrec_dir)) as c:
        r = c.post("/recommend", json={"items": [3, 4, 5], "k": 5})
        assert r.status_code == 200 and len(r.json()["items"]) == 5
        meta = c.get("/metadata").json()
        assert meta["model"] == "sasrec" and meta["history_len"] >= 8


@pytest.mark.parametrize("name", ["sasrec", "gru4rec"])
def test_traced_engine_matches_eager(tmp_path, name):
    from tests.conftest import tiny_net

    d = save_model(name, tmp_path / name, **tiny_net(name))
    traced = ModelBundle.load(d)
    eager = ModelBundle.load(d, engine="eager")
    assert traced.engine == "torchscript" and eager.engine == "eager"
    for hist in ([3], [3, 4, 5], list(range(1, 15))):
        a, b = traced.recommend(hist, 5), eager.recommend(hist, 5)
        assert a.items == b.items
        assert a.scores == pytest.approx(b.scores, rel=1e-4, abs=1e-5)


def test_a_model_without_a_net_runs_eager(pop_dir):
    assert ModelBundle.load(pop_dir).engine == "eager"


def test_a_trace_that_differs_from_eager_is_not_used(sasrec_dir, monkeypatch):
    import torch

    monkeypatch.setattr(torch.jit, "trace", lambda fn, args, **kw: lambda x: fn(x) + 1)
    assert ModelBundle.load(sasrec_dir).engine == "eager"


@pytest.mark.parametrize("engine", ["auto", "eager"])
def test_masking_never_touches_the_models_state(pop_dir, sasrec_dir, engine):
    for d in (pop_dir, sasrec_dir):
        b = ModelBundle.load(d, engine=engine)
        first = b.recommend([3, 4], 3)
        b.recommend([3, 4], 3, exclude=first.items, exclude_seen=True, restrict_to=[1, 2])
        assert b.recommend([3, 4], 3) == first


# -- bad input: a 4xx, never a 5xx (issue 19) ------------------------------------------------------
def _raw(client, url, text, method="post"):
    return client.request(method, url, content=text, headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    "text",
    [
        '{"items": [NaN]}',
        '{"items": [Infinity]}',
        '{"items": [-Infinity]}',
        '{"items": [1], "k": Infinity}',
        '{"items": [1], "k": NaN}',
        '{"items": ["\\ud800"]}',
        '{"items": ["ok", "\\udfff"]}',
        '{"items": [1], "exclude": ["\\ud800"]}',
        '{"items": [1], "fallback": "\\ud800"}',
        '{"\\ud800": 1}',
        '{"items": [1e400]}',
    ],
)
def test_nan_infinity_and_lone_surrogates_are_422_with_a_json_safe_echo(client, text):
    for url in ("/recommend", "/sessions/sx/events"):
        r = _raw(client, url, text)
        assert r.status_code == 422, (url, r.text)
        json.loads(r.text)  # valid JSON (the echo of NaN or a surrogate made text)
    assert client.get("/sessions/sx/recommendations").status_code == 404  # nothing stored


def test_odd_digit_strings_are_unknown_ids_never_a_crash_nor_a_misparse(client):
    r = client.post("/recommend", json={"items": ["--5", "²", "٣", "007", " 4", 3], "k": 3})
    assert r.status_code == 200
    assert r.json()["unknown"] == ["--5", "²", "٣", "007", " 4"]
    r = client.post("/sessions/odd-digits/events", json={"items": ["--5", "²", "٣", 3]})
    assert r.status_code == 200 and r.json()["unknown"] == ["--5", "²", "٣"]
    rec = client.get("/sessions/odd-digits/recommendations")
    assert rec.status_code == 200 and rec.json()["unknown"] == ["--5", "²", "٣"]


def test_integral_floats_are_integer_ids_as_the_schema_says(client):
    as_int = client.post("/recommend", json={"items": [3, 4], "k": 5}).json()
    as_float = client.post("/recommend", json={"items": [3.0, 4.0], "k": 5.0})
    assert as_float.status_code == 200 and as_float.json() == as_int
    schema = client.get("/openapi.json").json()["components"]["schemas"]["RecommendRequest"]
    assert schema["properties"]["k"]["type"] == "integer"  # JSON Schema: 5.0 is an integer
    for body in ({"items": [3.5]}, {"items": [3], "k": 2.5}, {"items": [3], "k": "5"}):
        assert client.post("/recommend", json=body).status_code == 422, body
    r = client.post("/recommend", json={"items": [2.0**60]})  # beyond 2**53: not exact
    assert r.status_code == 422


def test_ids_beyond_two_to_the_53_are_answered_as_strings(tmp_path):
    """The service takes an integer id beyond +-(2**53 - 1) only as a string (a JSON number
    that large is not exact everywhere), but answered such ids as numbers: a JavaScript
    client read 2**60 + 2 as 2**60, another item, and could not send it back."""
    import polars as pl

    from tests.conftest import cyclic_log
    from warmrec import get_model
    from warmrec.data.dataset import SequenceDataset

    big = 2**60
    df = cyclic_log(n_items=5).with_columns(pl.col("item_id") + big)
    model = get_model("markov", {})
    model.fit(SequenceDataset.from_frame(df))
    with TestClient(create_app(model.save(tmp_path / "big"))) as c:
        body = {"items": [str(big + 1)], "k": 5, "fallback": "popular"}
        for r in (
            c.post("/recommend", json=body),
            c.post("/recommend", json={"items": [], "k": 5, "fallback": "popular"}),
        ):
            assert r.status_code == 200, r.text
            ids = [x["item_id"] for x in r.json()["items"]]
            assert ids and all(isinstance(i, str) for i in ids), r.text
            assert sorted(ids) == sorted(str(big + i) for i in range(1, 6))
            # each answered id is one the service takes back: none unknown
            again = c.post("/recommend", json={"items": ids}).json()
            assert again["unknown"] == [], again
        small = c.post("/recommend", json={"items": [str(big + 1)], "k": 1}).json()
        assert small["items"][0]["item_id"] == str(big + 2)
    ok = model.recommend([[big + 1]], 1)  # the Python API keeps its ints
    assert ok == [[big + 2]]


def test_an_empty_history_is_what_the_schema_says(client):
    schema = client.get("/openapi.json").json()["components"]["schemas"]["RecommendRequest"]
    assert {"properties": {"fallback": {"const": "popular"}}, "required": ["fallback"]} in (
        schema["anyOf"]
    )
    assert client.post("/recommend", json={"items": []}).status_code == 422
    assert client.post("/recommend", json={}).status_code == 422
    r = client.post("/recommend", json={"fallback": "popular"})
    assert r.status_code == 200 and r.json()["fallback_used"]


def test_a_session_is_never_poisoned(client):
    """Ids are checked before they are stored: a refused request leaves no trace, and every id
    that is stored can be read back."""
    bad = ['{"items": [NaN]}', '{"items": ["\\ud800"]}', '{"items": [true]}', '{"items": [1.5]}']
    for text in bad:
        assert _raw(client, "/sessions/p1/events", text).status_code == 422
    assert client.get("/sessions/p1/recommendations").status_code == 404
    weird = ["--5", "²", "٣", "x" * MAX_ID_LEN, -(2**53 - 1), 2**53 - 1, "\x00", "é"]
    assert client.post("/sessions/p1/events", json={"items": weird + [3]}).status_code == 200
    for params in ({}, {"fallback": "popular"}, {"exclude_seen": True, "k": 50}):
        r = client.get("/sessions/p1/recommendations", params=params)
        assert r.status_code == 200, r.text


def test_a_read_that_fails_does_not_renew_the_session(pop_dir):
    class Clock:
        t = 0.0

        def __call__(self) -> float:
            return self.t

    clock = Clock()
    store = SessionStore(ttl_s=10, clock=clock)
    with TestClient(create_app(bundle=ModelBundle.load(pop_dir), store=store)) as c:
        c.post("/sessions/broken/events", json={"items": ["zz"]})  # only unknown ids
        c.post("/sessions/fine/events", json={"items": [3]})
        for t in (4, 8):
            clock.t = t
            assert c.get("/sessions/broken/recommendations").status_code == 400
            assert c.get("/sessions/fine/recommendations").status_code == 200
        clock.t = 12  # 12 s after its only event: the 400 reads did not keep it alive
        assert c.get("/sessions/broken/recommendations").status_code == 404
        assert c.get("/sessions/fine/recommendations").status_code == 200  # renewed at 8


def test_undecodable_session_paths_are_refused_not_merged(client):
    """``%FF`` and ``%FE`` both decode to U+FFFD: they would name one session."""
    for raw in ("%FF", "%FE", "%ED%A0%80", "a%C3"):
        r = client.post(f"/sessions/{raw}/events", json={"items": [1]})
        assert r.status_code == 400 and "UTF-8" in r.json()["detail"]
    ok = client.post("/sessions/%C3%A9/events", json={"items": [1]})
    assert ok.status_code == 200 and ok.json()["session_id"] == "é"


def test_a_huge_header_is_431(client):
    r = client.get("/health", headers={"x-big": "a" * 40_000})
    assert r.status_code == 431
    assert client.get("/health", headers={"x-ok": "a" * 1000}).status_code == 200


def test_metadata_shows_no_path_held_in_the_config(tmp_path):
    """A config naming a file (``text_cache``, a local encoder) showed it whole."""
    from warmrec.serving.bundle import ModelBundle

    d = save_model("pop", tmp_path / "m")
    b = ModelBundle.load(d)
    cfg = b.model.config.model_dump(mode="json")
    cache = str(tmp_path / "private" / "cache")

    class Config:  # as a text model's config: the cache folder and a hub encoder's name
        def model_dump(self, mode: str = "json") -> dict:
            return {**cfg, "text_cache": cache, "text_encoder": "sentence-transformers/x"}

    b.model.config = Config()
    meta = b.metadata()
    assert meta["config"]["text_encoder"] == "sentence-transformers/x"
    assert meta["config"]["text_cache"] == ".../cache"
    assert str(tmp_path) not in json.dumps(meta)


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_metadata_shows_no_path_nor_pid(pop_dir, request, store):
    """Only the directory's name, no process id; the answering worker as an opaque id (and,
    with a shared store, its model generation)."""
    import os

    spec = request.getfixturevalue("redis_url") if store == "redis" else store
    with TestClient(create_app(pop_dir, session_store=spec)) as c:
        meta = c.get("/metadata").json()
    text = json.dumps(meta)
    for known in (str(meta["loaded_at"]), meta["worker"]["id"], meta["sessions"].get("url", "")):
        text = text.replace(known, "") if known else text
    assert "pid" not in text and str(os.getpid()) not in text
    assert meta["model_dir"] == pop_dir.name and str(pop_dir.parent) not in text
    assert len(meta["worker"]["id"]) == 8 and meta["sessions"]["store"] == store
    assert meta["worker"] == (
        {"id": meta["worker"]["id"], "generation": None}
        if store == "redis"
        else {"id": meta["worker"]["id"]}
    )


def test_a_failed_read_does_not_renew_a_redis_session(pop_dir, redis_url):
    """The same rule with Redis: a read renews the expiry only when it answered."""
    import redis

    r = redis.Redis.from_url(redis_url)
    with TestClient(create_app(pop_dir, session_store=redis_url, session_ttl_s=30)) as c:
        c.post("/sessions/broken/events", json={"items": ["zz"]})  # only unknown ids
        c.post("/sessions/fine/events", json={"items": [3]})
        time.sleep(0.3)
        assert c.get("/sessions/broken/recommendations").status_code == 400
        assert c.get("/sessions/fine/recommendations").status_code == 200
        assert r.pttl(b"warmrec:ev:broken") <= 29_750  # not renewed by the failed read
        assert r.pttl(b"warmrec:ev:fine") > 29_750  # renewed by the answered one
        assert c.post("/sessions/poison/events", json={"items": [1.5]}).status_code == 422
        assert r.exists(b"warmrec:ev:poison") == 0  # checked before anything is stored
    r.close()


# -- security: admin token, Host allow-list, docs ------------------------------------------------
def test_admin_routes_exist_only_with_a_token(pop_dir):
    with TestClient(create_app(pop_dir)) as c:
        assert c.post("/admin/reload").status_code == 404
        assert "/admin/reload" not in c.get("/openapi.json").json()["paths"]


def test_admin_routes_need_the_bearer_token(pop_dir):
    with TestClient(create_app(pop_dir, admin_token=TOKEN)) as c:
        r = c.post("/admin/reload")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        # a cross-site form POST carries no Authorization header
        form = c.post("/admin/reload", data={"a": "b"})
        assert form.status_code == 401
        for wrong in ("Bearer nope", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer"):
            assert c.post("/admin/reload", headers={"Authorization": wrong}).status_code == 401
        assert c.post("/admin/reload", headers=ADMIN).status_code == 200


@pytest.mark.parametrize(
    ("token", "why"),
    [
        ("", "a token of at least 16 characters, found 0"),
        ("short", "a token of at least 16 characters, found 5"),
        ("two tokens-0123456789", "one token without spaces, found whitespace at character 4"),
        (f"{TOKEN}\n", "one token without spaces, found whitespace at character 31"),
        # a non-ASCII token could never authenticate (the header is read as latin-1)
        (
            "pässwört-0123456789",
            "printable ASCII characters only (what an Authorization header carries), found a "
            "non-ASCII character at character 2",
        ),
        (
            "token-0123456789\x07",
            "printable ASCII characters only (what an Authorization header carries), found a "
            "control character at character 17",
        ),
    ],
)
def test_create_app_refuses_an_empty_or_short_token(pop_dir, token, why):
    """admin_token="" let an unauthenticated POST /admin/reload through (200)."""
    from warmrec.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        create_app(bundle=ModelBundle.load(pop_dir), admin_token=token)
    assert str(e.value) == f"admin_token: expected {why}"


def test_a_token_file_is_checked(tmp_path):
    from warmrec.errors import ConfigError
    from warmrec.serving.app import read_token_file

    f = tmp_path / "token"
    f.write_text(f"  {TOKEN}\n")
    assert read_token_file(f) == TOKEN
    for text in ("", "short", "two tokens-0123456789"):
        f.write_text(text)
        with pytest.raises(ConfigError, match="--admin-token-file"):
            read_token_file(f)
    f.write_text("jeton-secret-réservé-0123456789\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        read_token_file(f)
    assert str(e.value) == (
        f"--admin-token-file {f}: expected printable ASCII characters only (what an "
        "Authorization header carries), found a non-ASCII character at character 15"
    )
    with pytest.raises(ConfigError, match="cannot read"):
        read_token_file(tmp_path / "missing")


def test_a_foreign_host_is_refused(pop_dir):
    from warmrec.serving.guards import AllowedHosts

    app = create_app(pop_dir, allowed_hosts=AllowedHosts.for_bind("127.0.0.1"))
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        for host in ("127.0.0.1:8000", "localhost", "LOCALHOST.:80", "[::1]:8000", "10.1.2.3"):
            assert c.get("/health", headers={"host": host}).status_code == 200, host
        for host in ("evil.example", "evil.example:8000", "localhost.evil", "[evil]", "a b"):
            r = c.get("/health", headers={"host": host})
            assert r.status_code == 400 and "Host" in r.json()["detail"], host


def test_two_host_headers_are_refused(pop_dir):
    """The allow-list read the last Host header and the app (Starlette's ``request.headers``,
    ``request.url``) the first: ``Host: evil.example`` then ``Host: localhost`` passed the
    check. RFC 9112 wants a 400 for more than one Host header."""
    from warmrec.serving.guards import AllowedHosts

    app = create_app(pop_dir, allowed_hosts=AllowedHosts.for_bind("127.0.0.1"))
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        for hosts in (["evil.example", "localhost"], ["localhost", "localhost"]):
            r = c.get("/health", headers=[("host", h) for h in hosts])
            assert r.status_code == 400, (hosts, r.text)
            assert r.json() == {"detail": "2 Host headers: expected one"}
        assert c.get("/health", headers={"host": "localhost"}).status_code == 200


def test_docs_are_served_offline_and_can_be_switched_off(pop_dir):
    import re

    with TestClient(create_app(pop_dir)) as c:
        for page in ("/docs", "/redoc"):
            html = c.get(page).text
            assets = re.findall(r'(?:src|href)="([^"]+)"', html)
            assert assets and all(a.startswith("/") for a in assets), assets
            assert "cdn" not in html.lower()
            for a in assets:
                assert c.get(a).status_code == 200, a
    with TestClient(create_app(pop_dir, docs=False)) as c:
        for page in ("/docs", "/redoc", "/openapi.json"):
            assert c.get(page).status_code == 404
        assert c.post("/recommend", json={"items": [1]}).status_code == 200


def test_session_reads_refuse_unknown_query_parameters_and_control_characters(client):
    """``?restrict_to=`` was silently ignored on a session read (a body's unknown field is a
    422); a NUL or a newline was a valid session id."""
    assert client.post("/sessions/q-1/events", json={"items": [1, 2]}).status_code == 200
    r = client.get("/sessions/q-1/recommendations", params={"k": 2, "restrict_to": 5})
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["loc"] == ["query", "restrict_to"] and err["type"] == "extra_forbidden"
    assert client.get("/sessions/q-1/recommendations", params={"k": 2}).status_code == 200
    for bad in ("%00", "a%0Ab", "tab%09"):
        r = client.post(f"/sessions/{bad}/events", json={"items": [1]})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["path", "session_id"]


def test_a_body_that_is_not_json_is_named_for_what_it_is(pop_dir):
    """FastAPI answered these with "There was an error parsing the body" (400) or a 422 echoing
    the raw bytes."""
    with TestClient(create_app(pop_dir)) as c:
        r = c.post("/recommend", content=b'{"items": [1]}', headers={"Content-Type": "text/plain"})
        assert r.status_code == 415 and "expected application/json" in r.json()["detail"]
        latin = {"Content-Type": "application/json; charset=latin-1"}
        r = c.post("/recommend", content=b'{"items": [1]}', headers=latin)
        assert r.status_code == 415 and "charset 'latin-1'" in r.json()["detail"]
        json_type = {"Content-Type": "application/json"}

        def msg(body: bytes) -> str:  # FastAPI's shape, as its own "json_invalid"
            r = c.post("/recommend", content=body, headers=json_type)
            assert r.status_code == 422
            (err,) = r.json()["detail"]
            assert err["type"] == "json_invalid" and err["loc"] == ["body"]
            return err["msg"]

        assert "body is not JSON" in msg(b'{"items": [1,') and "line 1, column 14" in msg(
            b'{"items": [1,'
        )
        assert "not UTF-8 text (byte 12)" in msg(b'{"items": ["\xff"]}')
        assert "nests deeper" in msg(b"[" * 100_000 + b"]" * 100_000)
        ok = {"Content-Type": "application/json; charset=utf-8"}
        assert c.post("/recommend", content=b'{"items": [1]}', headers=ok).status_code == 200


def test_a_json_body_without_a_content_type_is_a_415(client):
    """It was FastAPI's 422 echoing the raw bytes ("b'{...}'") as if the body were not JSON."""
    for path in ("/recommend", "/sessions/no-type/events"):
        r = client.post(path, content=b'{"items": [1, 2]}')
        assert "content-type" not in r.request.headers
        assert r.status_code == 415, r.text
        assert r.json() == {"detail": "no Content-Type: expected application/json"}
    assert client.get("/sessions/no-type/recommendations").status_code == 404  # nothing stored
    assert client.post("/recommend", json={"items": [1, 2]}).status_code == 200


def test_a_body_nested_past_the_bound_is_one_422_at_any_depth(client):
    """The nesting bound was the JSON parser's recursion limit as the body check met it: a body
    some ten levels under it passed the check and failed in FastAPI's deeper stack, a vague
    400 ("There was an error parsing the body"). Now every depth past 32 is the same 422."""
    json_type = {"Content-Type": "application/json"}
    for depth in (33, 100, *range(900, 1010, 2), 100_000):
        for body in (
            b'{"items": ' + b"[" * depth + b"1" + b"]" * depth + b"}",
            b'{"items": [1], "k": ' + b"[" * depth + b"]" * depth + b"}",
        ):
            r = client.post("/recommend", content=body, headers=json_type)
            assert r.status_code == 422, (depth, r.text)
            (err,) = r.json()["detail"]
            assert err["type"] == "json_invalid", (depth, err)
            assert "nests" in err["msg"], (depth, err)
    r = client.post(
        "/recommend", content=b'{"items": ' + b"[" * 40 + b"]" * 40 + b"}", headers=json_type
    )
    assert (
        r.json()["detail"][0]["msg"] == "body nests 41 levels deep: at most 32 (a request nests 2)"
    )
    # brackets inside strings are text, not nesting; a request as deep as the bound is read
    deep_text = {"items": ["[" * 100, "{" * 100]}
    assert client.post("/recommend", json=deep_text).status_code == 400  # unknown ids only
    assert client.post("/recommend", json={"items": [1], "exclude": [2] * 40}).status_code == 200


def test_a_compressed_body_is_a_415_naming_its_encoding(client):
    """The service reads a body as sent: a gzip body was a 422 "body is not UTF-8 text (byte
    1)", and plain JSON labelled gzip was answered as if the label were not there."""
    import gzip

    raw = b'{"items": [1, 2]}'
    for body, coding in ((gzip.compress(raw), "gzip"), (raw, "gzip"), (raw, "br, identity")):
        headers = {"Content-Type": "application/json", "Content-Encoding": coding}
        r = client.post("/recommend", content=body, headers=headers)
        assert r.status_code == 415, (coding, r.text)
        assert r.json()["detail"] == (
            f"Content-Encoding {coding!r}: expected none (the body sent as is)"
        )
    for coding in ("identity", "IDENTITY"):
        headers = {"Content-Type": "application/json", "Content-Encoding": coding}
        assert client.post("/recommend", content=raw, headers=headers).status_code == 200
