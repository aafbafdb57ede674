"""``warmrec auto`` from the command line: the budget holds for the whole process, the winner
is a model directory ``evaluate`` and ``predict`` take without ``--data``, bad input is one
line and exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from warmrec.data.synthetic import generate_repeats

SRC = Path(__file__).resolve().parents[2] / "src"


def _warmrec(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run(
        [sys.executable, "-m", "warmrec", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def test_auto_command_end_to_end(tmp_path):
    log = tmp_path / "repeats.csv"
    generate_repeats(n_users=120, n_items=200).write_csv(log)
    out = tmp_path / "auto"
    budget = 30.0  # under load, 15 s could end before sessionpop had its first step
    t0 = time.time()
    res = _warmrec(
        "auto",
        "--data",
        str(log),
        "--budget",
        f"{budget:g}s",
        "--families",
        "pop,markov,sessionpop",
        "--out",
        str(out),
        "--json",
    )
    wall = time.time() - t0
    assert res.returncode == 0, res.stderr
    assert wall <= 1.05 * budget + 1.0, f"{wall:.1f} s for {budget} s"  # +1 s: interpreter exit
    summary = json.loads(res.stdout)
    w = summary["winner"]
    assert w["family"] == "sessionpop" and w["seen_items"] == "kept"
    assert summary["elapsed_s"] <= budget
    ev = _warmrec("evaluate", w["model_dir"], "--json")
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout)["metrics"]["ndcg@10"] == w["test"]["ndcg@10"]
    pred = tmp_path / "top.csv"
    res = _warmrec("predict", w["model_dir"], "--part", "test", "-k", "5", "--out", str(pred))
    assert res.returncode == 0, res.stderr
    assert pl.read_csv(pred).height == 5 * summary["profile"]["test_examples"]


def test_auto_refuses_bad_input_in_one_line(tmp_path):
    from click.testing import CliRunner

    from warmrec.cli.main import cli

    for args, needle in [
        (["--budget", "ten"], "--budget"),
        (["--families", "pop,nope"], "--families"),
        (["--metric", "coverage@10"], "--metric"),
    ]:
        res = CliRunner().invoke(cli, ["auto", "--data", "x.csv", "--out", str(tmp_path), *args])
        assert res.exit_code == 2, res.output
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], res.output


def test_auto_runs_under_the_split_options_given_by_set(tmp_path, monkeypatch):
    """``--set split.KEY=VALUE`` reaches the run: the winner's RunSpec records the split that a
    committed benchmark used (here leave-one-out in RecBole's time order)."""
    import time

    import tomllib
    from click.testing import CliRunner

    import warmrec.cli.auto as auto_cli

    # in-process: the budget counts from the process start, which is the test session's
    monkeypatch.setattr(auto_cli, "process_start", time.time)

    from warmrec.cli.main import cli
    from warmrec.data.synthetic import generate_baskets

    log = tmp_path / "baskets.csv"
    generate_baskets(n_users=60, n_items=80, n_groups=10).write_csv(log)
    out = tmp_path / "auto"
    args = ["auto", "--data", str(log), "--split", "loo", "--set", "split.time_order=recbole"]
    args += ["--families", "pop,markov", "--budget", "20s", "--out", str(out), "--json"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    spec = tomllib.loads((out / "winner.toml").read_text())
    assert spec["split"] == {"method": "loo", "time_order": "recbole"}
    state = json.loads((out / "auto_state.json").read_text())
    assert state["args"]["split"] == {"method": "loo", "time_order": "recbole"}


def test_auto_set_takes_only_data_and_split_keys(tmp_path):
    from click.testing import CliRunner

    from warmrec.cli.main import cli

    for bad in ["model.d=32", "train.epochs=3", "time_order=recbole"]:
        res = CliRunner().invoke(
            cli, ["auto", "--data", "x.csv", "--out", str(tmp_path), "--set", bad]
        )
        assert res.exit_code == 2, res.output
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and "--set" in lines[0] and "split.KEY" in lines[0], res.output
