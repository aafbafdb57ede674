"""``warmrec serve`` refuses bad options and directories in one line, before starting a server."""

from __future__ import annotations

import os

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
        (["--max-session-bytes", "0"], "--max-session-bytes"),
        (["--session-store", "memcached://x"], "--session-store"),
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


def test_unreachable_session_store_is_one_line(pop_dir):
    pytest.importorskip("redis")
    from tests.serving.conftest import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"
    res = CliRunner().invoke(cli, ["serve", str(pop_dir), "--session-store", url])
    assert res.exit_code == 2 and f"--session-store: session store {url}" in res.output
    assert len(res.output.strip().splitlines()) == 1


@pytest.mark.parametrize(("store", "warned"), [("memory", True), ("redis", False)])
def test_several_workers_with_the_memory_store_warn_in_one_line(
    pop_dir, monkeypatch, request, store, warned
):
    import uvicorn

    spec = request.getfixturevalue("redis_url") if store == "redis" else store
    ran = {}
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: ran.update(kw))
    monkeypatch.setattr(os, "environ", os.environ.copy())  # the command sets WARMREC_SERVE_*
    res = CliRunner().invoke(
        cli, ["serve", str(pop_dir), "--workers", "2", "--session-store", spec]
    )
    assert res.exit_code == 0 and ran["workers"] == 2
    lines = [x for x in res.output.splitlines() if "warning" in x]
    if warned:
        assert lines == [
            "warmrec: warning: --workers 2 with --session-store memory: each worker keeps its "
            "own sessions and POST /admin/reload is refused; use --session-store "
            "redis://host:port/db"
        ]
    else:
        assert lines == []
