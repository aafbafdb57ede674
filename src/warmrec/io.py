"""Atomic file and directory writes: write to a temporary name, then rename.

A crash mid-write leaves the previous file or directory intact, never a half-written one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
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


STALE_AFTER_S = 24 * 3600.0  # a temporary folder naming no live owner is stale after this


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists, under another user
        return True
    return True


def _tmp_prefix(p: Path) -> str:
    return f".{p.name}.{os.getpid()}@{socket.gethostname()}."


def clean_stale(path: str | Path, *, max_age_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove the temporary directories that killed writers of ``path`` left behind.

    :func:`atomic_dir` names its temporary directory ``.<name>.<pid>@<host>.<random>.tmp``; one
    whose process (on this host) is gone is removed at once. One that names no process of this
    host (another host, or the older ``.<name>.<random>.tmp`` form) is removed once it is older
    than ``max_age_s``. Returns the removed paths.
    """
    import time

    p = Path(path)
    head, host = f".{p.name}.", socket.gethostname()
    removed: list[Path] = []
    if not p.parent.is_dir():
        return removed
    now = time.time()
    for q in p.parent.iterdir():
        name = q.name
        if not (name.startswith(head) and name.endswith(".tmp") and q.is_dir()):
            continue
        owner = name[len(head) : -len(".tmp")].rsplit(".", 1)[0]
        pid, _, at = owner.partition("@")
        if pid.isdigit() and at in ("", host):
            stale = int(pid) != os.getpid() and not _alive(int(pid))
        else:
            try:
                stale = now - q.stat().st_mtime > max_age_s
            except OSError:
                continue
        if stale:
            shutil.rmtree(q, ignore_errors=True)
            removed.append(q)
    return removed


clean_stale_temp_dirs = clean_stale  # the name the data layer used


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary directory; on success it replaces ``path`` in one rename.

    An existing ``path`` is moved aside first and removed only once the new one is in place.
    Temporary directories of killed earlier writers are removed first (:func:`clean_stale`).
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(p)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(p), suffix=".tmp", dir=p.parent))
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
    aside = p.with_name(f".{p.name}.old")  # also one left by a writer killed between renames
    if old is not None or aside.exists():
        shutil.rmtree(aside, ignore_errors=True)
