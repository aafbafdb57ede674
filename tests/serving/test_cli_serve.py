"""``warmrec serve`` refuses bad options and directories in one line, before starting a server."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from warmrec.cli.main import cli


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--workers", "0"], "--workers"),
        (["--threads", "0"], "--threads"),
        (["--session-ttl", "0"], "--session-ttl"),
        (["--port", "70000"], "--port"),
    ],
)
def test_bad_options(pop_dir, args, needle):
    res = CliRunner().invoke(cli, ["serve", str(pop_dir), *args])
    assert res.exit_code == 2 and needle in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_not_a_model_directory(tmp_path):
    res = CliRunner().invoke(cli, ["serve", str(tmp_path)])
    assert res.exit_code == 2 and "not a warmrec model directory" in res.output


def test_commands_are_listed():
    out = CliRunner().invoke(cli, ["--help"]).output
    assert "predict" in out and "serve" in out
