"""Atomic file and directory writes: write to a temporary name, then rename.

A crash mid-write leaves the previous file or directory intact, never a half-written one.

Temporary names say whose they are: a file being written to ``NAME`` is
``.NAME.warmrec-tmp-<pid>@<host>-<random>`` (:func:`temp_file`), a folder
``.NAME.<pid>@<host>.<random>.tmp`` (:func:`atomic_dir`). While a write is under way, SIGTERM and
SIGHUP (when nobody else handles them) end the process through Python's exception path, so the
temporary is removed as after any error (SIGINT does so already, as ``KeyboardInterrupt``); what a
SIGKILL leaves is removed by the next write to the same name (:func:`clean_stale`), at once when
its process is gone. :func:`check_output` checks an output path before any work is done.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from warmrec.errors import ConfigError

if TYPE_CHECKING:
    import polars as pl

TMP_MARK = "warmrec-tmp"
"""The mark in the name of a temporary file: ``.NAME.warmrec-tmp-<pid>@<host>-<random>``."""


def typed_absolute(path: str | Path) -> str:
    """``path`` made absolute as typed (symbolic links kept, not resolved, so messages and
    saved records show the user's path) where it exists or is absolute; otherwise unchanged
    (a dataset name that is not a path)."""
    p = Path(path).expanduser()
    return os.path.abspath(p) if p.exists() or p.is_absolute() else str(path)


def _mode(base: int) -> int:
    """``base`` less the process umask: the mode a plain ``open``/``mkdir`` would give (temporary
    files and directories are created private, 0600/0700, and would otherwise keep that)."""
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with exit_on_signal():
        tmp = temp_file(p)
        try:
            with open(tmp, "wb") as f:
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
    with exit_on_signal():
        tmp = temp_file(p)
        try:
            df.write_parquet(tmp)
            os.replace(tmp, p)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def write_csv(df: pl.DataFrame, path: str | Path) -> None:
    atomic_write_text(path, df.write_csv())


TABLE_SUFFIXES = (".parquet", ".pq", ".csv", ".tsv")


def check_table_suffix(path: str | Path, option: str = "--out") -> None:
    """Refuse a table path whose suffix :func:`write_table` cannot honour."""
    if Path(path).suffix.lower() not in TABLE_SUFFIXES:
        raise ConfigError(f"{option}: expected a .parquet, .csv or .tsv file, found {str(path)!r}")


def write_table(df: pl.DataFrame, path: str | Path) -> None:
    """Write ``df`` in the format its suffix names (Parquet, CSV, TSV), atomically."""
    suffix = Path(path).suffix.lower()
    check_table_suffix(path)
    if suffix in (".parquet", ".pq"):
        write_parquet(df, path)
    else:
        atomic_write_text(path, df.write_csv(separator="\t" if suffix == ".tsv" else ","))


STALE_AFTER_S = 24 * 3600.0  # a temporary naming no live owner of this host is stale after this


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists, under another user
        return True
    return True


def _owner() -> str:
    return f"{os.getpid()}@{socket.gethostname()}"


def _tmp_prefix(p: Path) -> str:
    return f".{p.name}.{_owner()}."


def temp_file(path: str | Path) -> Path:
    """Create (empty, exclusively) and return the temporary file for writing ``path``, beside it:
    ``.NAME.warmrec-tmp-<pid>@<host>-<random>``, with the mode a plain ``open`` would give.

    Temporary files of earlier writers of ``path`` whose process is gone are removed first
    (:func:`clean_stale`)."""
    p = Path(path)
    clean_stale(p)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.{TMP_MARK}-{_owner()}-", dir=p.parent)
    except OSError as e:  # name the file being written, not its temporary name
        raise OSError(e.errno, e.strerror, str(p)) from None
    try:
        os.fchmod(fd, _mode(0o666))
    finally:
        os.close(fd)
    return Path(tmp)


def _stale_owner(owner: str, host: str) -> bool | None:
    """Whether the writer ``<pid>@<host>`` is gone: True/False for a process of this host, None
    when it cannot be told (another host, no pid)."""
    pid, _, at = owner.partition("@")
    if pid.isdigit() and at in ("", host):
        return int(pid) != os.getpid() and not _alive(int(pid))
    return None


def clean_stale(path: str | Path, *, max_age_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove the temporary files and folders that killed writers of ``path`` left behind.

    A temporary file ``.NAME.warmrec-tmp-<pid>@<host>-<random>`` (:func:`temp_file`) or folder
    ``.NAME.<pid>@<host>.<random>.tmp`` (:func:`atomic_dir`) whose process (on this host) is gone
    is removed at once. One that names no process of this host (another host), or an older form
    (``.NAME.<random>.tmp``, ``.NAME.tmp``), is removed once it is older than ``max_age_s``.
    Returns the removed paths.
    """
    import time

    p = Path(path)
    head, host = f".{p.name}.", socket.gethostname()
    mark = f"{head}{TMP_MARK}-"
    removed: list[Path] = []
    try:
        entries = list(os.scandir(p.parent if str(p.parent) else "."))
    except OSError:
        return removed
    now = time.time()
    for q in entries:
        name = q.name
        if not name.startswith(head):
            continue
        try:
            is_dir = q.is_dir(follow_symlinks=False)
            is_file = q.is_file(follow_symlinks=False)
        except OSError:
            continue
        if is_file and name.startswith(mark):  # .NAME.warmrec-tmp-<pid>@<host>-<random>
            stale = _stale_owner(name[len(mark) :].rpartition("-")[0], host)
        elif is_dir and name.endswith(".tmp"):  # .NAME.<pid>@<host>.<random>.tmp
            stale = _stale_owner(name[len(head) : -len(".tmp")].rsplit(".", 1)[0], host)
        elif is_file and name.endswith(".tmp"):  # the older file forms
            stale = None
        else:
            continue
        if stale is None:
            try:
                stale = now - q.stat(follow_symlinks=False).st_mtime > max_age_s
            except OSError:
                continue
        if stale:
            if is_dir:
                shutil.rmtree(q.path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(q.path)
            removed.append(Path(q.path))
    return removed


class Terminated(SystemExit):
    """Raised by :func:`exit_on_signal` when SIGTERM or SIGHUP arrives (exit status 128 + signal)."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(128 + signum)


@contextlib.contextmanager
def exit_on_signal() -> Iterator[None]:
    """While the block runs, SIGTERM and SIGHUP raise :class:`Terminated` (a ``SystemExit``)
    instead of ending the process at once, so ``finally`` blocks and ``except BaseException``
    clean-ups run. Only signals left at their default action are taken over, and only in the main
    thread: a handler someone else installed (a server's graceful shutdown) stays in charge."""
    taken: dict[int, object] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
            if sig is not None and signal.getsignal(sig) == signal.SIG_DFL:
                taken[sig] = signal.signal(sig, _raise_terminated)
    try:
        yield
    finally:
        for sig, old in taken.items():
            signal.signal(sig, old)


def _probe(folder: str, flag: str, path: str | Path) -> None:
    """Create and remove a file in ``folder``: the one sure test of writing there (``os.access``
    says yes to root in a read-only folder)."""
    try:
        fd, name = tempfile.mkstemp(prefix=f".{TMP_MARK}-probe-{os.getpid()}-", dir=folder)
    except OSError as e:
        raise ConfigError(
            f"{flag} {path}: cannot write in folder {folder!r} ({e.strerror or e})"
        ) from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)


def check_output(
    path: str | Path, *, kind: Literal["file", "dir"] = "file", flag: str = "--out"
) -> Path:
    """Check, before any work, that ``path`` can be written; returns it as a :class:`Path`.

    ``kind="file"``: a file written by rename in its folder (an existing folder under that name is
    refused); ``kind="dir"``: a folder written as one unit beside it (:func:`atomic_dir`) or into
    it (an existing file under that name is refused). The nearest existing folder on the way must
    be a folder (not a file) in which a file can be created: a read-only folder, a read-only file
    system, a file where a folder is expected are :class:`ConfigError` naming ``flag``.
    """
    p = Path(path)
    if str(path) == "":
        raise ConfigError(f"{flag}: expected a path, found ''")
    if kind == "file" and os.path.isdir(p):
        raise ConfigError(f"{flag} {path}: found a folder, expected a file name")
    if kind == "dir" and os.path.lexists(p) and not os.path.isdir(p):
        raise ConfigError(f"{flag} {path}: found a file, expected a folder")
    up = p.parent
    while not os.path.lexists(up) and up != up.parent:
        up = up.parent
    if not os.path.isdir(up):
        raise ConfigError(f"{flag} {path}: {str(up)!r} is a file, expected a folder")
    _probe(str(up), flag, path)
    if kind == "dir" and os.path.isdir(p):
        _probe(str(p), flag, path)
    return p


clean_stale_temp_dirs = clean_stale  # the name the data layer used


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary directory; on success it replaces ``path`` in one rename.

    An existing ``path`` is moved aside first and removed only once the new one is in place.
    Temporary directories of killed earlier writers are removed first (:func:`clean_stale`);
    SIGTERM while the caller writes removes this one (:func:`exit_on_signal`).
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(p)
    with exit_on_signal():  # SIGTERM while the caller writes: the folder is removed
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


SAMPLE_BYTES = 1 << 20  # a fingerprint hashes the first and the last MiB of a file
SAMPLE_BUDGET = 8 << 20  # at most this much read for a folder's files together


def fingerprint(path: str | Path) -> str | None:
    """A cheap identity of a log on disk: size and modification time of the file (of a folder:
    its files' count, total size and latest time), then ``#`` and a SHA-256 of the first and
    last MiB of the file (of each file of a folder, 8 MiB in all); None where the path is not
    there (a dataset name). Not a hash of everything: an edit in the middle that keeps the size
    is not seen. :func:`same_log` compares two."""
    p = Path(path)
    try:
        if p.is_file():
            st = p.stat()
            return f"{st.st_size}:{st.st_mtime_ns}#{_sample_digest([p])}"
        if p.is_dir():
            files = [f for f in sorted(p.rglob("*")) if f.is_file()]
            stats = [f.stat() for f in files]
            size = sum(st.st_size for st in stats)
            latest = max((st.st_mtime_ns for st in stats), default=0)
            return f"{len(stats)}:{size}:{latest}#{_sample_digest(files)}"
    except OSError:
        return None
    return None


def _sample_digest(files: list[Path]) -> str:
    """SHA-256 of the head and tail of each file: a MiB each, less for a folder of many files
    (:data:`SAMPLE_BUDGET` in all, at least 4 KiB each)."""
    h = hashlib.sha256()
    n = max(4096, min(SAMPLE_BYTES, SAMPLE_BUDGET // (2 * max(len(files), 1))))
    for f in files:
        with open(f, "rb") as fh:
            h.update(fh.read(n))
            size = fh.seek(0, 2)
            if size > n:
                fh.seek(max(n, size - n))
                h.update(fh.read())
    return h.hexdigest()[:16]


def same_log(recorded: str, now: str | None) -> bool:
    """Whether two :func:`fingerprint` values are of the same log: the same sizes and time,
    or (a file touched or copied: a new time) the same sizes and sampled bytes. A record
    without sampled bytes (an older model) compares size and time alone."""
    if now is None or recorded == now:
        return True
    rec_quick, _, rec_sample = recorded.partition("#")
    now_quick, _, now_sample = now.partition("#")
    if rec_quick == now_quick:
        return True
    if not rec_sample:
        return False
    return rec_quick.rsplit(":", 1)[0] == now_quick.rsplit(":", 1)[0] and rec_sample == now_sample
    return None
