"""A model evaluated with seen items excluded (``eval.exclude_seen``, as ``warmrec auto`` may
choose) is served that way by default: ``recommend``, ``predict`` and the service used to rank
the history's items while ``evaluate`` left them out."""

from __future__ import annotations

import json

import polars as pl
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from tests.conftest import cyclic_log
from warmrec.cli.main import cli
from warmrec.serving.app import create_app
from warmrec.serving.bundle import ModelBundle


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Markov trained on a cyclic log (raw ids 1..10), once with seen items excluded in its
    evaluation and once without."""
    tmp = tmp_path_factory.mktemp("seen")
    log = tmp / "log.csv"
    cyclic_log(n_sessions=60, n_items=10, length=6).write_csv(log)
    runner = CliRunner()
    for name, value in (("ex", "true"), ("keep", "false")):
        args = ["train", "--model", "markov", "--data", str(log), "--out", str(tmp / name)]
        res = runner.invoke(cli, [*args, "--set", f"eval.exclude_seen={value}"])
        assert res.exit_code == 0, res.output
    return tmp


def test_the_bundle_takes_the_recorded_choice_unless_told(trained):
    ex, keep = ModelBundle.load(trained / "ex"), ModelBundle.load(trained / "keep")
    assert ex.exclude_seen is True and keep.exclude_seen is False
    history = [1, 2, 3]
    every = 10  # the whole catalogue: only exclusion can leave an item out
    assert not set(history) & set(ex.recommend(history, every).items)
    assert set(history) <= set(ex.recommend(history, every, exclude_seen=False).items)
    assert set(history) <= set(keep.recommend(history, every).items)
    assert ex.metadata()["exclude_seen"] is True


def test_predict_and_recommend_follow_the_model_and_the_flags(trained):
    runner = CliRunner()
    out = trained / "p.csv"
    for flags, excluded in (([], True), (["--keep-seen"], False)):
        res = runner.invoke(cli, ["predict", str(trained / "ex"), "-k", "10", "--out", str(out),
                                  "--no-progress", *flags])  # fmt: skip
        assert res.exit_code == 0, res.output
        rows = pl.read_csv(out).group_by("session_id").len()
        # sessions of 6 events over 10 items: 4 unseen items left when the seen are excluded
        assert set(rows["len"].to_list()) == ({4} if excluded else {10})
    for flags, n in (([], 7), (["--keep-seen"], 10)):
        res = runner.invoke(
            cli,
            ["recommend", str(trained / "ex"), "--items", "1,2,3", "-k", "10", "--json", *flags],
        )
        assert res.exit_code == 0, res.output
        assert len(json.loads(res.stdout)["items"]) == n


def test_the_service_follows_the_model_unless_the_request_says(trained):
    with TestClient(create_app(trained / "ex")) as c:
        assert c.get("/metadata").json()["exclude_seen"] is True
        body = {"items": [1, 2, 3], "k": 10}
        got = [x["item_id"] for x in c.post("/recommend", json=body).json()["items"]]
        assert len(got) == 7 and not {1, 2, 3} & set(got)
        kept = c.post("/recommend", json={**body, "exclude_seen": False}).json()["items"]
        assert len(kept) == 10
        assert c.post("/sessions/s/events", json={"items": [1, 2, 3]}).status_code == 200
        rec = c.get("/sessions/s/recommendations", params={"k": 10}).json()
        assert len(rec["items"]) == 7


def test_the_python_recommend_takes_the_recorded_choice_too(trained):
    """``load_model(...).recommend`` ranked the history's items while ``warmrec recommend``
    on the same directory left them out."""
    import warmrec
    from warmrec.errors import ModelError

    ex = warmrec.load_model(trained / "ex")
    assert ex.excludes_seen() is True
    (got,) = ex.recommend([[1, 2, 3]], k=10)
    assert len(got) == 7 and not {1, 2, 3} & set(got)
    assert len(ex.recommend([[1, 2, 3]], k=10, exclude_seen=False)[0]) == 10
    assert warmrec.load_model(trained / "keep").excludes_seen() is False
    # one history without its brackets, or a string, is refused naming the argument
    with pytest.raises(ModelError, match=r"histories\[0\]: expected a list of raw item ids"):
        ex.recommend([1, 2, 3])
    with pytest.raises(ModelError, match="histories: expected a list of histories"):
        ex.recommend("123")
