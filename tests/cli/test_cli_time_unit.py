"""``--time-unit`` and ordinal logs (positions, not seconds) through the CLI: stats, gaps, splits."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from warmrec.cli.common import TIME_UNITS as CLI_TIME_UNITS
from warmrec.cli.main import cli
from warmrec.data.columns import TIME_UNITS


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def positions_csv(tmp_path):
    """A session log whose 'timestamp' column holds positions 0, 1, 2, ... (not seconds)."""
    p = tmp_path / "positions.csv"
    lines = ["user_id,session_id,item_id,timestamp"]
    pos = 0
    for s in range(40):
        for i in range(5):
            lines.append(f"{s % 8},{s},{(s + i) % 9},{pos}")
            pos += 1
    p.write_text("\n".join(lines) + "\n")
    return p


@pytest.fixture
def sasrec_txt(tmp_path):
    p = tmp_path / "ml-1m.txt"
    p.write_text("".join(f"{u} {i}\n" for u in range(1, 21) for i in range(1, 9)))
    return p


def invoke(runner, args):
    return runner.invoke(cli, args, catch_exceptions=False)


def test_cli_choices_match_the_reader():
    assert CLI_TIME_UNITS == TIME_UNITS


def test_sasrec_stats_report_no_time_span(runner, sasrec_txt):
    res = invoke(runner, ["data", "stats", str(sasrec_txt), "--format", "sasrec", "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["time_unit"] == "ordinal" and d["time_span_days"] is None
    assert d["time_max"] == 159.0


def test_headerless_sasrec_file_suggests_the_format(runner, sasrec_txt):
    res = invoke(runner, ["data", "stats", str(sasrec_txt)])
    assert res.exit_code == 2
    assert "--format sasrec" in res.output and len(res.output.strip().splitlines()) == 1


def test_time_unit_ordinal_in_stats(runner, positions_csv):
    res = invoke(runner, ["data", "stats", str(positions_csv), "--json"])
    assert json.loads(res.stdout)["time_span_days"] == pytest.approx(199 / 86400)
    res = invoke(runner, ["data", "stats", str(positions_csv), "--time-unit", "ordinal", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["time_span_days"] is None


def test_time_unit_ms_in_stats(runner, positions_csv):
    res = invoke(runner, ["data", "stats", str(positions_csv), "--time-unit", "ms", "--json"])
    assert json.loads(res.stdout)["time_max"] == pytest.approx(0.199)


def test_gaps_and_sessionize_refuse_positions(runner, positions_csv, tmp_path):
    res = invoke(runner, ["data", "gaps", str(positions_csv), "--time-unit", "ordinal"])
    assert res.exit_code == 2 and "data gaps needs timestamps in seconds" in res.output
    out = tmp_path / "s.parquet"
    args = ["data", "sessionize", str(positions_csv), "--time-unit", "ordinal", "--out", str(out)]
    res = invoke(runner, args)
    assert res.exit_code == 2 and "needs timestamps in seconds" in res.output
    assert not out.exists()


def test_split_by_days_refuses_positions(runner, positions_csv, tmp_path):
    out = str(tmp_path / "split")
    args = ["data", "split", str(positions_csv), "--time-unit", "ordinal", "--out", out]
    by_days = ["--set", "by_user=false", "--set", "test_days=1"]
    res = invoke(runner, [*args, "--method", "last_session", *by_days])
    assert res.exit_code == 2 and "last_session split by days" in res.output
    # the default last_session holds out a share of sessions: positions are enough
    res = invoke(runner, [*args, "--method", "last_session", "--set", "by_user=false", "--json"])
    assert res.exit_code == 0, res.output
    res = invoke(runner, [*args, "--method", "temporal", "--set", "test_start='2020-01-01'"])
    assert res.exit_code == 2 and "must be a position" in res.output
    res = invoke(
        runner,
        [
            *args,
            "--method",
            "temporal",
            "--set",
            "test_start=150",
            "--set",
            "valid_start=120",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    res = invoke(runner, [*args, "--method", "last_session", "--json"])  # per user: order only
    assert res.exit_code == 0, res.output


def test_train_refuses_a_split_by_days_on_positions(runner, positions_csv, tmp_path):
    args = ["train", "--model", "pop", "--data", str(positions_csv), "--time-unit", "ordinal"]
    args += [
        "--split",
        "last_session",
        "--set",
        "split.by_user=false",
        "--set",
        "split.test_days=1",
        "--out",
        str(tmp_path / "m"),
    ]
    res = invoke(runner, args)
    assert res.exit_code == 2 and "last_session split by days" in res.output


def test_unknown_time_unit_is_a_usage_error(runner, positions_csv):
    res = invoke(runner, ["data", "stats", str(positions_csv), "--time-unit", "days"])
    assert res.exit_code == 2 and "'days' is not one of" in res.output
