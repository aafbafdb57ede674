"""The machine's description (cache sizes from sysfs and the fallbacks) and the per-machine
store of tuned choices."""

from __future__ import annotations

import json

import pytest

from warmrec.training import machine as M


def _index(root, name, level, kind, size):
    d = root / name
    d.mkdir(parents=True)
    (d / "level").write_text(f"{level}\n")
    (d / "type").write_text(f"{kind}\n")
    (d / "size").write_text(f"{size}\n")


@pytest.mark.parametrize(
    "text,want",
    [("48K", 48 << 10), ("1024K\n", 1 << 20), ("32M", 32 << 20), ("1048576", 1 << 20),
     ("2 MiB", 2 << 20), ("", None), ("big", None)],
)  # fmt: skip
def test_parse_size(text, want):
    assert M.parse_size(text) == want


def test_sysfs_caches_reads_data_and_unified_caches_per_level(tmp_path):
    """An AMD EPYC as sysfs shows it: the instruction cache is skipped, and the L2 is one core's
    (1 MiB), not lscpu's total over the cores."""
    _index(tmp_path, "index0", 1, "Data", "48K")
    _index(tmp_path, "index1", 1, "Instruction", "32K")
    _index(tmp_path, "index2", 2, "Unified", "1024K")
    _index(tmp_path, "index3", 3, "Unified", "32768K")
    (tmp_path / "index4").mkdir()  # unreadable: skipped
    assert M.sysfs_caches(tmp_path) == {"l1d": 48 << 10, "l2": 1 << 20, "l3": 32 << 20}
    assert M.sysfs_caches(tmp_path / "missing") == {}


def test_cpu_info_falls_back_to_getconf_then_to_unknown(monkeypatch):
    monkeypatch.setattr(M, "cpu_model", lambda: "Test CPU")
    monkeypatch.setattr(M, "sysfs_caches", lambda: {})
    monkeypatch.setattr(M, "getconf_caches", lambda: {"l2": 512 << 10})
    M.cpu_info.cache_clear()
    try:
        info = M.cpu_info()
        assert (info.model, info.l2, info.l3, info.source) == (
            "Test CPU",
            512 << 10,
            None,
            "getconf",
        )
        assert "L2 512 KiB" in info.describe() and "L3 ?" in info.describe()
        monkeypatch.setattr(M, "getconf_caches", lambda: {})
        monkeypatch.setattr(M.platform, "system", lambda: "Linux")
        M.cpu_info.cache_clear()
        assert (M.cpu_info().l2, M.cpu_info().source) == (None, "none")
    finally:
        M.cpu_info.cache_clear()


def test_this_machine_has_a_model_name():
    info = M.cpu_info()
    assert info.model and info.model in info.key()


def test_remember_and_tuned_per_machine(tmp_path, monkeypatch):
    """A value is read back on the machine that kept it, not on another; other machines'
    entries survive a write; a corrupt file is ignored and rewritten."""
    monkeypatch.setenv("WARMREC_CACHE_DIR", str(tmp_path))
    a = M.CpuInfo("CPU A", 1, 1 << 20, 1 << 25, "sysfs")
    b = M.CpuInfo("CPU A", 1, 2 << 20, 1 << 25, "sysfs")  # same name, other caches
    assert M.tuned("x", a) is None
    path = M.remember("x", 123, a, ms={"1": 2.0})
    assert path == tmp_path / M.TUNING_FILE
    assert M.tuned("x", a) == 123 and M.tuned("x", b) is None
    M.remember("x", 7, b)
    assert (M.tuned("x", a), M.tuned("x", b)) == (123, 7)
    assert json.loads(path.read_text())[a.key()]["x"]["ms"] == {"1": 2.0}
    path.write_text("{not json")
    assert M.tuned("x", a) is None
    M.remember("x", 5, a)
    assert M.tuned("x", a) == 5


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("WARMREC_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert M.cache_dir() == tmp_path / "warmrec"
    monkeypatch.setenv("WARMREC_CACHE_DIR", str(tmp_path / "w"))
    assert M.cache_dir() == tmp_path / "w"
