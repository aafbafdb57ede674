"""`warmrec --help` / `--version` start without importing torch, scipy, numpy or polars.

Checked on the modules imported (not by timing): the CLI package alone, with ``warmrec/__init__``
bypassed, and the whole ``python -m warmrec --help`` through ``-X importtime``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import warmrec

HEAVY = ("torch", "scipy", "numpy", "polars", "sklearn", "gensim", "matplotlib")
PKG = Path(warmrec.__file__).parent

RUNNER = """
import json, sys, types
pkg = types.ModuleType("warmrec")
pkg.__path__ = [{pkg!r}]
pkg.__version__ = "0.0.test"
sys.modules["warmrec"] = pkg
from warmrec.cli.main import cli
for args in {argv!r}:
    try:
        cli(args, prog_name="warmrec")
    except SystemExit:
        pass
print("\\nIMPORTED=" + json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PKG.parent), env.get("PYTHONPATH", "")])
    return env


def _imported(code: str) -> list[str]:
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=60
    )
    assert res.returncode == 0, res.stderr
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("IMPORTED=")][-1]
    return json.loads(line.split("=", 1)[1])


def test_cli_package_imports_nothing_heavy_for_help():
    argv = [["--help"], ["--version"], ["train", "--help"], ["data", "stats", "--help"]]
    argv += [["demo", "--help"], ["pretrain", "--help"], ["study", "transfer", "--help"]]
    code = RUNNER.format(pkg=str(PKG), argv=argv, heavy=HEAVY)
    assert _imported(code) == []


def _importtime_modules(args: list[str]) -> set[str]:
    res = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    mods = set()
    for ln in res.stderr.splitlines():
        if ln.startswith("import time:") and "|" in ln:
            mods.add(ln.rsplit("|", 1)[1].strip().split(".")[0])
    return mods


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_python_m_warmrec_help_does_not_import_torch(flag):
    mods = _importtime_modules(["-m", "warmrec", flag])
    assert sorted(mods & {"torch", "scipy", "polars", "numpy"}) == []
