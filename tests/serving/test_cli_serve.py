"""``warmrec serve`` refuses bad options and directories in one line, before starting a server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from warmrec.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--workers", "0"], "--workers"),
        (["--threads", "0"], "--threads"),
        (["--session-ttl", "0"], "--session-ttl"),
        # NaN and infinity were a traceback after the banner (ValueError, OverflowError)
        (["--session-ttl", "nan"], "--session-ttl: expected a finite number of seconds > 0"),
        (["--session-ttl", "inf"], "--session-ttl: expected a finite number of seconds > 0"),
        (["--max-session-mb", "inf"], "--max-session-mb: expected a finite size > 0"),
        (["--max-session-mb", "nan"], "--max-session-mb: expected a finite size > 0"),
        (["--port", "70000"], "--port"),
        (["--max-session-bytes", "0"], "--max-session-bytes"),
        (["--session-store", "memcached://x"], "--session-store"),
        # was uvicorn's KeyError traceback after the banner, the port bound
        (["--log-level", "loud"], "--log-level"),
    ],
)
def test_bad_options(pop_dir, args, needle, monkeypatch):
    from warmrec.serving import server

    def never_bind(*a, **kw):
        raise AssertionError("the port was bound before the options were checked")

    monkeypatch.setattr(server, "bind", never_bind)
    monkeypatch.setattr(server, "run", lambda app, sock, **kw: sock.close())  # never serve
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


@pytest.mark.parametrize(
    "url",
    ["redis://127.0.0.1:{port}/0?password=hunter2-secret", "unix:///tmp/hunter2-secret.sock"],
)
def test_unreachable_session_store_shows_no_secret(pop_dir, url):
    """The one line named the URL as typed: a password in its query, a socket's path."""
    pytest.importorskip("redis")
    from tests.serving.conftest import free_port

    url = url.format(port=free_port())
    res = CliRunner().invoke(cli, ["serve", str(pop_dir), "--session-store", url])
    assert res.exit_code == 2 and "--session-store: session store " in res.output
    assert "hunter2" not in res.output and len(res.output.strip().splitlines()) == 1


@pytest.mark.parametrize(("store", "warned"), [("memory", True), ("redis", False)])
def test_several_workers_with_the_memory_store_warn_in_one_line(
    pop_dir, monkeypatch, request, store, warned
):
    from warmrec.serving import server

    spec = request.getfixturevalue("redis_url") if store == "redis" else store
    ran = {}

    def fake_run(app, sock, **kw):
        sock.close()
        ran.update(kw, app=app)

    monkeypatch.setattr(server, "run", fake_run)
    monkeypatch.setattr(os, "environ", os.environ.copy())  # the command sets WARMREC_SERVE_*
    args = ["--workers", "2", "--session-store", spec, "--port", "0"]
    args += ["--max-session-bytes", "4096", "--max-session-mb", "1.5"]
    res = CliRunner().invoke(cli, ["serve", str(pop_dir), *args])
    assert res.exit_code == 0 and ran["workers"] == 2, res.output
    # both session bounds reach the workers: bytes of ids per session, memory of all sessions
    assert os.environ["WARMREC_SERVE_MAX_SESSION_BYTES"] == "4096"
    assert os.environ["WARMREC_SERVE_MAX_STORE_BYTES"] == str(int(1.5 * 2**20))
    assert os.environ["WARMREC_SERVE_SESSION_STORE"] == spec
    lines = [x for x in res.output.splitlines() if "warning" in x]
    if warned:
        assert lines == [
            "warmrec: warning: --workers 2 with --session-store memory: each worker keeps its "
            "own sessions and POST /admin/reload is refused; use --session-store "
            "redis://host:port/db"
        ]
    else:
        assert lines == []


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--max-inflight", "-1"], "--max-inflight"),
        (["--max-session-mb", "0"], "--max-session-mb"),
    ],
)
def test_bad_limits(pop_dir, args, needle):
    res = CliRunner().invoke(cli, ["serve", str(pop_dir), *args])
    assert res.exit_code == 2 and needle in res.output
    assert len(res.output.strip().splitlines()) == 1


def _broken_copy(src, dst, how: str):
    import json
    import pickle
    import shutil

    shutil.copytree(src, dst)
    w = dst / "model.safetensors"
    if how == "pickle":
        w.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}, protocol=4))
    elif how == "truncated":
        w.write_bytes(w.read_bytes()[:20])
    elif how == "outside":
        info = json.loads((dst / "config.json").read_text())
        info["weights"] = "/etc/passwd"
        (dst / "config.json").write_text(json.dumps(info))
    return dst


@pytest.mark.parametrize(
    ("how", "needle"),
    [
        ("pickle", "warmrec never loads pickles"),
        ("truncated", "truncated or damaged"),
        ("outside", "inside the model directory"),
    ],
)
def test_a_damaged_directory_is_one_line_before_anything_starts(pop_dir, tmp_path, how, needle):
    d = _broken_copy(pop_dir, tmp_path / how, how)
    res = CliRunner().invoke(cli, ["serve", str(d), "--port", "0"])
    assert res.exit_code == 2 and needle in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1 and "serving" not in res.output


def test_a_model_with_nan_weights_is_refused(sasrec_dir, tmp_path):
    import torch

    from warmrec.models import Recommender

    m = Recommender.load(sasrec_dir)
    with torch.no_grad():
        next(m.net.parameters()).fill_(float("nan"))
    d = m.save(tmp_path / "nan")
    res = CliRunner().invoke(cli, ["serve", str(d), "--port", "0"])
    assert res.exit_code == 2 and "NaN" in res.output and "damaged" in res.output, res.output


def test_a_short_admin_token_is_refused(pop_dir, tmp_path):
    (tmp_path / "t").write_text("short")
    res = CliRunner().invoke(
        cli, ["serve", str(pop_dir), "--admin-token-file", str(tmp_path / "t")]
    )
    assert res.exit_code == 2 and "--admin-token-file" in res.output


def test_a_non_ascii_admin_token_is_refused_in_one_line(pop_dir, tmp_path, monkeypatch):
    """A token no client could send (the server reads headers as latin-1) started a server."""
    from warmrec.serving import server

    monkeypatch.setattr(server, "run", lambda app, sock, **kw: sock.close())  # never serve
    (tmp_path / "t").write_text("jeton-0123456789-€", encoding="utf-8")
    res = CliRunner().invoke(
        cli, ["serve", str(pop_dir), "--admin-token-file", str(tmp_path / "t"), "--port", "0"]
    )
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1
    assert "printable ASCII characters only" in res.output and "€" not in res.output


def _serve(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-m", "warmrec", "serve", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_two_workers_on_a_damaged_directory_exit_at_once(pop_dir, tmp_path):
    """Used to fork two workers that both died while the parent waited (305 s under a 60 s
    timeout); now the parent checks the directory first."""
    d = _broken_copy(pop_dir, tmp_path / "bad", "pickle")
    t = time.monotonic()
    res = _serve(str(d), "--workers", "2", "--port", "0")
    assert res.returncode == 2 and time.monotonic() - t < 50
    assert res.stderr.strip().count("\n") == 0 and "pickle" in res.stderr, res.stderr


def test_a_busy_port_is_one_line_before_the_banner(pop_dir):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = _serve(str(pop_dir), "--port", str(port))
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().count("\n") == 0 and "cannot listen" in res.stderr
    assert "serving" not in res.stderr + res.stdout


def test_several_workers_get_no_admin_route_from_an_inherited_token_file(
    pop_dir, tmp_path, monkeypatch
):
    # the workers read their settings from the environment: a WARMREC_SERVE_ADMIN_TOKEN_FILE
    # left there (an earlier serve in the same shell, a wrapper) gave them POST /admin/reload
    # though this command was started without --admin-token-file
    from warmrec.serving import server
    from warmrec.serving.app import app_from_env

    token = tmp_path / "token"
    token.write_text("s3cret-token-0123456789")
    monkeypatch.setattr(os, "environ", os.environ.copy())
    os.environ["WARMREC_SERVE_ADMIN_TOKEN_FILE"] = str(token)
    routes = []

    def fake_run(app, sock, **kw):
        sock.close()
        routes.extend(r.path for r in app_from_env().routes)

    monkeypatch.setattr(server, "run", fake_run)
    args = ["--workers", "2", "--port", "0", "--no-docs"]
    res = CliRunner().invoke(cli, ["serve", str(pop_dir), *args])
    assert res.exit_code == 0, res.output
    assert "/recommend" in routes and "/admin/reload" not in routes
