"""`warmrec demo`: unknown model names refused in one line, split options, transfer rows in JSON."""

from __future__ import annotations

import functools
import json

import pytest
from click.testing import CliRunner

from warmrec.cli.main import cli


def run(args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.parametrize("models", ["nosuchmodel", "pop,nosuchmodel,sr", ","])
def test_demo_refuses_unknown_models_in_one_line(models, tmp_path):
    res = run(["demo", "--models", models, "--out", tmp_path / "d", "--json"])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("warmrec: error:")
    assert "available: " in lines[0] and "sknn" in lines[0]
    if models != ",":
        assert "'nosuchmodel'" in lines[0]
    assert not (tmp_path / "d").exists()


def test_demo_split_and_split_options(tmp_path):
    res = run(
        ["demo", "--models", "pop", "--split", "user", "--set", "split.test_frac=0.3"]
        + ["--out", tmp_path / "d", "--json"]
    )
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["info"]["split"] == "user"
    res2 = run(["demo", "--models", "pop", "--split", "user", "--out", tmp_path / "e", "--json"])
    assert json.loads(res2.output)["info"]["test_examples"] < d["info"]["test_examples"]
    bad = run(["demo", "--models", "pop", "--set", "model.d=3", "--out", tmp_path / "f"])
    assert bad.exit_code == 2 and "split.KEY" in bad.output


def test_demo_json_holds_the_transfer_rows(tmp_path, monkeypatch):
    import warmrec.experiments.demo as demo

    tiny = functools.partial(
        demo.run_transfer_demo,
        data={
            "source_sessions": 150,
            "target_sessions": 60,
            "n_source_items": 40,
            "n_target_items": 20,
        },
        model_config={"d": 8, "ffn_dim": 8, "max_len": 6},
        source_trainer={"epochs": 1},
        trainer={"epochs": 1, "patience": 0},
        strategies=("scratch", "finetune"),
        inits=("popularity",),
        fractions=(0.5,),
        seeds=(0, 1),
    )
    monkeypatch.setattr(demo, "run_transfer_demo", tiny)
    monkeypatch.setattr(demo, "COLDSTART_SHOTS", (1, 3))
    monkeypatch.setattr(demo, "COLDSTART_METHODS", ("global", "finetune"))
    monkeypatch.setitem(demo.COLDSTART_SETTINGS, "shots", (1, 3))
    monkeypatch.setitem(demo.COLDSTART_SETTINGS, "rating_trainer", {"epochs": 2})
    monkeypatch.setattr(demo, "BASELINES", ("pop",))
    monkeypatch.setattr(demo, "NEURAL", ())
    res = run(["demo", "--out", tmp_path / "d", "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    rows = d["transfer"]
    assert {r["method"] for r in rows} >= {"scratch", "finetune+popularity"}
    fin = next(r for r in rows if r["method"] == "finetune+popularity")
    assert fin["fraction"] == 0.5 and fin["ratio"] is not None
    assert {"ndcg@10", "ndcg@10_lo", "ndcg@10_hi"} <= set(fin)
    assert "transfer_summary" not in d["info"]
    assert {r["method"] for r in d["coldstart"]} == {"global", "finetune"}
    assert "coldstart_rmse@3" in d["info"]
