"""Atomic writes leave the old file or directory intact when writing fails."""

import pytest

from warmrec.io import atomic_dir, atomic_write_text


def test_atomic_write_replaces(tmp_path):
    p = tmp_path / "a.txt"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two"
    assert [x.name for x in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_dir_keeps_old_on_failure(tmp_path):
    d = tmp_path / "model"
    with atomic_dir(d) as t:
        (t / "f").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(d) as t:
        (t / "f").write_text("half")
        raise RuntimeError("crash")
    assert (d / "f").read_text() == "old"
    assert [x.name for x in tmp_path.iterdir()] == ["model"]
    with atomic_dir(d) as t:
        (t / "f").write_text("new")
    assert (d / "f").read_text() == "new"


def test_atomic_outputs_get_the_usual_permissions(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "report.md", "x")
        with atomic_dir(tmp_path / "model") as d:
            (d / "w").write_text("y")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "report.md").stat().st_mode) == 0o644  # not mkstemp's 0600
    assert stat.S_IMODE((tmp_path / "model").stat().st_mode) == 0o755  # not mkdtemp's 0700


def test_temporary_folders_of_killed_writers_are_removed(tmp_path):
    """Issue 9: killed runs left hidden ``.tmp`` folders that were never cleaned."""
    import signal
    import subprocess
    import sys

    code = (
        "import os, signal, sys\n"
        "from warmrec.io import atomic_dir\n"
        "with atomic_dir(sys.argv[1]) as t:\n"
        "    (t / 'f').write_text('half')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "model")], check=False)
    assert proc.returncode == -signal.SIGKILL
    (tmp_path / ".model.old").mkdir()  # as left by a kill between the two renames
    left = sorted(x.name for x in tmp_path.iterdir())
    assert len(left) == 2 and left[0].endswith(".tmp")
    with atomic_dir(tmp_path / "model") as t:
        (t / "f").write_text("new")
    assert [x.name for x in tmp_path.iterdir()] == ["model"]
