"""The HTTP app in-process (FastAPI TestClient): every endpoint and every error."""

from __future__ import annotations

import json
import shutil

import pytest
from fastapi.testclient import TestClient

from tests.serving.conftest import save_model
from warmrec import __version__
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
    assert body["fallback_used"] is False


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


@pytest.mark.parametrize("items", [[], ["nope", 999]])
def test_no_known_item_is_400_unless_fallback(client, items):
    r = client.post("/recommend", json={"items": items})
    assert r.status_code == 400
    assert "no item the model knows" in r.json()["detail"]
    assert "fallback" in r.json()["detail"]
    f = client.post("/recommend", json={"items": items, "fallback": "popular", "k": 4})
    assert f.status_code == 200 and f.json()["fallback_used"] is True
    assert len(f.json()["items"]) == 4


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


def test_reload_swaps_the_model_and_keeps_it_on_failure(tmp_path):
    d = save_model("pop", tmp_path / "m", n_items=20)
    with TestClient(create_app(d)) as c:
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
