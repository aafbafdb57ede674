"""``warmrec recipe list | show | run``: the plan as TOML, one-line errors with exit 2, and a
run that resumes (on a tiny log; the real recipes: tests/experiments/recipes)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from tests.conftest import cyclic_log
from warmrec.cli.main import cli
from warmrec.config import tomllib


def test_list_names_every_recipe_and_its_data(monkeypatch, tmp_path):
    monkeypatch.setenv("WARMREC_DATA", str(tmp_path))
    r = CliRunner().invoke(cli, ["recipe", "list", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [x["name"] for x in rows] == [
        "mooc-transfer",
        "ssept-wiki",
        "bst-courses",
        "cloudera-w2v",
        "melo-coldstart",
    ]
    cw = rows[3]
    assert cw["data"] == {"sessions": str(tmp_path / "nowplaying-1m")}
    text = CliRunner().invoke(cli, ["recipe", "list"]).output
    assert "cloudera-w2v" in text and "sessions=" in text


def test_show_prints_the_steps_as_toml():
    r = CliRunner().invoke(
        cli, ["recipe", "show", "cloudera-w2v", "--quick", "--data", "sessions=/x/log.csv"]
    )
    assert r.exit_code == 0, r.output
    steps = tomllib.loads(r.output)["step"]
    names = [s["name"] for s in steps]
    assert names == [
        "eda",
        "association-rules",
        "w2v-source-best",
        "w2v-prior-tuned",
        "tune-w2v",
        "w2v-tuned",
    ]
    best = steps[2]["run"]
    assert best["data"]["path"] == "/x/log.csv"
    assert best["split"]["method"] == "last_pair"
    assert best["model"]["window"] == 13 and best["model"]["ns_exponent"] == 0.6
    assert steps[5]["config_from"] == "{out}/steps/tune-w2v/search/best.toml"
    full = tomllib.loads(
        CliRunner().invoke(cli, ["recipe", "show", "cloudera-w2v", "--data", "sessions=/x"]).output
    )["step"]
    assert full[2]["run"]["model"]["epochs"] == 100  # the source's setting, in full


def test_errors_are_one_line_with_exit_2(tmp_path):
    cases = [
        (["recipe", "show", "nope"], "unknown recipe 'nope'"),
        (["recipe", "show", "ssept-wiki", "--data", "bogus=1"], "reads source, target"),
        (["recipe", "show", "ssept-wiki", "--data", "source"], "expected KEY=PATH"),
        (
            ["recipe", "run", "bst-courses", "--data", f"courses={tmp_path / 'no'}", "--out", "o"],
            "--data courses=PATH",
        ),
    ]
    for args, msg in cases:
        r = CliRunner().invoke(cli, args)
        assert r.exit_code == 2, r.output
        lines = [ln for ln in r.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and msg in lines[0], r.output


def test_run_writes_the_report_and_resumes(tmp_path):
    log = tmp_path / "sessions.csv"
    cyclic_log(n_sessions=600, n_items=15, length=5).write_csv(log)
    args = ["recipe", "run", "cloudera-w2v", "--quick", "--data", f"sessions={log}"]
    args += ["--out", str(tmp_path / "out"), "--json"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert len(res["ran"]) == 6 and res["resumed"] == []
    state = json.loads((tmp_path / "out" / "state.json").read_text())
    ar = state["steps"]["association-rules"]["record"]
    # one-item queries of a cycle: the next item co-occurs with the query as often as the
    # previous one (the query itself is never recommended): the target is first or second
    assert ar["n_test"] == 200 and ar["test"]["full"]["recall@10"] == 1.0
    assert 0.5 <= ar["test"]["full"]["mrr@10"] < 1.0
    again = json.loads(CliRunner().invoke(cli, args).output)
    assert again["ran"] == [] and len(again["resumed"]) == 6
    assert (tmp_path / "out" / "report.html").is_file()
