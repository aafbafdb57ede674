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
