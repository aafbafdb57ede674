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
