"""Atomic file and directory writes: write to a temporary name, then rename.

A crash mid-write leaves the previous file or directory intact, never a half-written one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import polars as pl


def _mode(base: int) -> int:
    """``base`` less the process umask: the mode a plain ``open``/``mkdir`` would give (temporary
    files and directories are created private, 0600/0700, and would otherwise keep that)."""
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        os.fchmod(fd, _mode(0o666))
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_parquet(df: pl.DataFrame, path: str | Path) -> None:
    """Write a Parquet file under a temporary name and rename it into place."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    try:
        df.write_parquet(tmp)
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_csv(df: pl.DataFrame, path: str | Path) -> None:
    atomic_write_text(path, df.write_csv())


STALE_AFTER_S = 24 * 3600.0  # a temporary folder without a live owner older than this is stale


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: it exists, owned by someone else
        return True
    return True


def clean_stale_temp_dirs(path: str | Path, *, max_age_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove temporary folders that killed :func:`atomic_dir` writers left beside ``path``.

    They are hidden folders ``.NAME.PID.XXXX.tmp`` (and ``.NAME.old``): one is stale when the
    process ``PID`` is gone (on this machine) and it is older than a minute, or when it is older
    than ``max_age_s`` (also folders of the older ``.NAME.XXXX.tmp`` form, which name no
    process). Returns the folders removed.
    """
    import time

    p = Path(path)
    if not p.parent.is_dir():
        return []
    now, removed = time.time(), []
    for d in p.parent.glob(f".{glob_escape(p.name)}.*"):
        if not d.is_dir() or not (d.name.endswith(".tmp") or d.name == f".{p.name}.old"):
            continue
        try:
            age = now - d.stat().st_mtime
        except OSError:
            continue
        fields = d.name[len(p.name) + 2 :].split(".")
        owner = int(fields[0]) if len(fields) == 3 and fields[0].isdigit() else None
        dead = owner is not None and owner != os.getpid() and not _pid_alive(owner)
        if (dead and age > 60.0) or age > max_age_s:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary directory; on success it replaces ``path`` in one rename.

    An existing ``path`` is moved aside first and removed only once the new one is in place.
    Temporary folders that killed writers left beside ``path`` are removed first
    (:func:`clean_stale_temp_dirs`); the temporary name carries the writer's process id so
    that a live writer's folder is never taken for a stale one.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temp_dirs(p)
    tmp = Path(tempfile.mkdtemp(prefix=f".{p.name}.{os.getpid()}.", suffix=".tmp", dir=p.parent))
    try:
        tmp.chmod(_mode(0o777))
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if p.exists():
        old = p.with_name(f".{p.name}.old")
        if old.exists():
            shutil.rmtree(old, ignore_errors=True)
        os.replace(p, old)
    os.replace(tmp, p)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
