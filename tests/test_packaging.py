"""The wheel a user installs carries what the code reads at run time: every module, the
built-in search spaces (``warmrec auto`` and ``warmrec tune`` without ``--space``) and the
``py.typed`` marker; run from the unpacked wheel, away from the checkout, the spaces are found."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("setuptools", reason="building the wheel needs setuptools (dev extra)")
    tree = tmp_path_factory.mktemp("tree")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    shutil.copytree(
        ROOT / "src",
        tree / "src",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.nbi", "*.nbc"),
    )
    dist = tmp_path_factory.mktemp("dist")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    proc = subprocess.run(
        [*cmd, "-w", str(dist), str(tree)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (whl,) = dist.glob("warmrec-*.whl")
    return whl


def test_the_wheel_holds_every_module_the_spaces_and_the_type_marker(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    src = ROOT / "src"
    modules = {
        p.relative_to(src).as_posix()
        for p in (src / "warmrec").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert modules and not (modules - names)
    spaces = {p.name for p in (src / "warmrec" / "tuning" / "spaces").glob("*.toml")}
    assert len(spaces) >= 10
    assert {f"warmrec/tuning/spaces/{n}" for n in spaces} <= names
    assert "warmrec/py.typed" in names


def test_the_installed_package_finds_its_builtin_spaces(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import warmrec.tuning as t, warmrec.experiments.auto as a; "
        "p = t.builtin_space_path('sasrec'); "
        f"print(len(a.find_spaces()), p.is_relative_to({str(site)!r}))"
    )
    # -I: isolated from PYTHONPATH and the user's site; the unpacked wheel comes first on the path
    proc = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r}); {code}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    n, inside = proc.stdout.split()
    assert int(n) == len(list((site / "warmrec" / "tuning" / "spaces").glob("*.toml"))) >= 10
    assert inside == "True"


def test_the_wheel_states_its_licence_as_an_spdx_expression(wheel: Path) -> None:
    """``license = "MIT"`` (PEP 639): the TOML-table form is deprecated in setuptools, whose
    builds refuse it from 2027-02-18 on, so a fresh install would stop building."""
    meta = next(n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    assert "License-Expression: MIT" in text.splitlines()
