"""Atomic file and directory writes: write to a temporary name, then rename.

A crash mid-write leaves the previous file or directory intact, never a half-written one. A
directory replaces the previous one in a single exchange of the two where the system offers it
(Linux: ``renameat2(RENAME_EXCHANGE)``), else by two renames (the previous one moved aside as
``.NAME.<pid>@<host>.<random>.old`` first); a kill between those two leaves ``NAME`` missing
until the next reader or writer renames the aside folder back (:func:`recover_dir`).

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
import ctypes
import errno
import functools
import hashlib
import os
import re
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

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


_received: list[int] = []  # the signals exit_on_signal's handler took, in order


def _raise_terminated(signum: int, frame: object) -> None:
    _received.append(signum)
    raise Terminated(128 + signum)


@contextlib.contextmanager
def exit_on_signal() -> Iterator[None]:
    """While the block runs, SIGTERM and SIGHUP raise :class:`Terminated` (a ``SystemExit``)
    instead of ending the process at once, so ``finally`` blocks and ``except BaseException``
    clean-ups run. Only signals left at their default action are taken over, and only in the main
    thread: a handler someone else installed (a server's graceful shutdown) stays in charge.

    The handler raises wherever Python code runs, which may be a callback inside a compiled
    library: Polars writing to a file object turns the ``SystemExit`` into an ``OSError``. So an
    error leaving the block after a signal was taken becomes :class:`Terminated` again (exit status
    128 + signal, the error chained), and a signal a library swallowed still ends the process at
    the block's end."""
    taken: dict[int, object] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
            if sig is not None and signal.getsignal(sig) == signal.SIG_DFL:
                taken[sig] = signal.signal(sig, _raise_terminated)
    mark = len(_received)
    try:
        yield
        if taken and len(_received) > mark:  # a library swallowed the Terminated raised in it
            raise Terminated(128 + _received[-1])
    except Terminated:
        raise
    except BaseException as e:
        if taken and len(_received) > mark:
            raise Terminated(128 + _received[-1]) from e
        raise
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


RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP}


@functools.cache
def _libc_renameat2() -> Any:
    """glibc's (or musl's) ``renameat2``, or None (not Linux, or a C library without it)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def _renameat2(src: Path, dst: Path, flags: int) -> bool:
    """Linux ``renameat2(src, dst, flags)``: True when done, False where the system or the file
    system does not offer it (then the caller falls back to plain renames); OSError otherwise."""
    fn = _libc_renameat2()
    if fn is None:
        return False
    at_fdcwd = -100
    if fn(at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in _UNSUPPORTED:
        return False
    raise OSError(err, os.strerror(err), str(src), None, str(dst))


def _rename_noreplace(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst`` unless something is there (FileExistsError): in one step where
    the system offers it, else by a check before the rename."""
    if _renameat2(src, dst, RENAME_NOREPLACE):
        return
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst))
    os.rename(src, dst)


def _remove(path: Path) -> None:
    """Remove a folder with its files, or a file or symbolic link (never what a link points to);
    what cannot be removed stays, under a name the next writer's clean-up recognises."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
    except OSError:
        pass


_ASIDE_OWNER = re.compile(r"(\d+@[^/]+)\.[0-9a-f]+")
ASIDE_SUFFIX = ".old"
"""Where renames cannot swap two folders in one step, :func:`atomic_dir` moves the previous
``NAME`` aside as ``.NAME.<pid>@<host>.<random>.old`` (older versions: ``.NAME.old``)."""


def _asides(p: Path) -> list[tuple[Path, bool | None]]:
    """The earlier contents of ``p`` that :func:`atomic_dir` moved aside and did not remove, newest
    first, each with whether its writer is gone (None: cannot be told, or the older fixed name
    ``.NAME.old``, whose writer is not recorded)."""
    head, host = f".{p.name}.", socket.gethostname()
    legacy = f".{p.name}{ASIDE_SUFFIX}"
    found: list[tuple[int, Path, bool | None]] = []
    try:
        entries = list(os.scandir(p.parent if str(p.parent) else "."))
    except OSError:
        return []
    for q in entries:
        name = q.name
        if name == legacy:
            stale: bool | None = None
        elif name.startswith(head) and name.endswith(ASIDE_SUFFIX):
            # exactly ``<pid>@<host>.<hex>`` between: ``.model.v2.<pid>@...`` is model.v2's
            m = _ASIDE_OWNER.fullmatch(name[len(head) : -len(ASIDE_SUFFIX)])
            if m is None:
                continue
            stale = _stale_owner(m.group(1), host)
        else:
            continue
        try:
            st = q.stat(follow_symlinks=False)
        except OSError:
            continue
        found.append((st.st_ctime_ns, Path(q.path), stale))
    found.sort(key=lambda t: t[0], reverse=True)
    return [(path, stale) for _, path, stale in found]


def recover_dir(path: str | Path) -> Path:
    """The folder to read for ``path``, written by :func:`atomic_dir`: ``path`` itself, unless
    nothing is there and a writer killed between its two renames (where folders cannot be swapped
    in one step, or by an older warmrec) left the previous folder aside (``.NAME.old``,
    ``.NAME.<pid>@<host>.<random>.old``). That folder is then renamed back and ``path`` returned;
    where it cannot be (a read-only folder), the aside folder itself is returned to read.

    Readers of model, split and checkpoint folders call it; so does :func:`atomic_dir` before
    writing. A folder moved aside by a writer still running is left to it."""
    p = Path(path)
    if os.path.lexists(p):
        return p
    for aside, stale in _asides(p):
        if stale is False:  # a live writer between its two renames: its folder is its own
            continue
        if stale is None and aside.name == f".{p.name}{ASIDE_SUFFIX}" and not _real_dir(aside):
            continue  # an older warmrec's leftover link or file, not a folder it moved aside
        try:
            _rename_noreplace(aside, p)
        except OSError:
            return p if os.path.lexists(p) else aside
        return p
    return p


def _real_dir(p: Path) -> bool:
    return p.is_dir() and not p.is_symlink()


def clean_asides(path: str | Path, *, max_age_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove what :func:`atomic_dir` moved aside from ``path`` and a killed writer left behind,
    once ``path`` is there again: one whose writer (on this host) is gone, or the older
    ``.NAME.old``, at once; one of another host once older than ``max_age_s``. A symbolic link
    or file moved aside is unlinked, never followed. Returns the removed paths."""
    import time

    p = Path(path)
    if not os.path.lexists(p):
        return []
    removed: list[Path] = []
    now = time.time()
    for aside, stale in _asides(p):
        if stale is None and aside.name != f".{p.name}{ASIDE_SUFFIX}":
            try:
                stale = now - aside.lstat().st_mtime > max_age_s
            except OSError:
                continue
        if stale is not False:
            _remove(aside)
            removed.append(aside)
    return removed


def _named(e: OSError, p: Path) -> OSError:
    """``e`` naming ``p`` (the user's path), not warmrec's temporary or aside name."""
    return OSError(e.errno, e.strerror or str(e), str(p))


def _swap_in(tmp: Path, p: Path) -> Path | None:
    """Put the folder ``tmp`` at ``p``; return where what was at ``p`` now is (to remove), or
    None when nothing was there.

    On Linux the two are exchanged in one step (``renameat2(RENAME_EXCHANGE)``): ``p`` is never
    missing, and concurrent writers each put theirs in place (the last one stays). Elsewhere (or
    on a file system without it), ``p`` is renamed aside (:data:`ASIDE_SUFFIX`, a name of its
    own per writer) and ``tmp`` renamed into place; a kill between the two leaves the previous
    folder aside, which readers rename back (:func:`recover_dir`)."""
    for _ in range(8):  # another writer may fill or empty ``p`` in between: try again
        try:
            if _renameat2(tmp, p, RENAME_EXCHANGE):
                return tmp  # ``tmp``'s name now holds the previous ``p``
        except FileNotFoundError:  # nothing at ``p``
            try:
                if _renameat2(tmp, p, RENAME_NOREPLACE):
                    return None
            except FileExistsError:
                continue
            except OSError as e:
                raise _named(e, p) from None
        except OSError as e:
            raise _named(e, p) from None
        break  # not offered here: two renames
    return _swap_by_two_renames(tmp, p)


def _swap_by_two_renames(tmp: Path, p: Path) -> Path | None:
    """:func:`_swap_in` where folders cannot be exchanged in one step: ``p`` is renamed aside,
    then ``tmp`` to ``p``. A failed second rename puts the aside back (or, when another writer's
    folder took the name meanwhile, removes it and tries again: the last writer's stays)."""
    for attempt in range(8):
        aside = None
        if os.path.lexists(p):
            aside = p.with_name(f".{p.name}.{_owner()}.{secrets.token_hex(4)}{ASIDE_SUFFIX}")
            try:
                os.rename(p, aside)
            except FileNotFoundError:  # another writer moved it meanwhile
                continue
            except OSError as e:
                raise _named(e, p) from None
        try:
            os.replace(tmp, p)
        except BaseException as e:
            if aside is not None:
                try:
                    _rename_noreplace(aside, p)
                except OSError:
                    _remove(aside)  # another writer's folder is in place: this one is outdated
            if not isinstance(e, OSError):
                raise
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST) and attempt < 7:
                continue  # another writer's folder took the name between the two renames
            raise _named(e, p) from None
        return aside
    raise FileExistsError(errno.EEXIST, "written by other writers all along", str(p))


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary directory; on success it replaces ``path`` as one unit.

    On Linux the new folder and the existing ``path`` are swapped in one step, so ``path`` is
    never missing; elsewhere ``path`` is moved aside first (:func:`_swap_in`) and a kill between
    the two renames is undone by the next reader or writer (:func:`recover_dir`). What was at
    ``path`` is removed once the new folder is in place. Whatever fails, the temporary folder is
    removed and ``path`` keeps its previous content.

    ``path`` itself is replaced: where it is a symbolic link, the link (not the folder it points
    to) is replaced by a real folder, and the folder it pointed to stays as it was; a file at
    ``path`` is replaced too. Temporary directories and asides of killed earlier writers are
    removed (:func:`clean_stale`, :func:`clean_asides`); SIGTERM while the caller writes
    or while the folders are swapped removes this one (:func:`exit_on_signal`).
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with exit_on_signal():  # SIGTERM while the caller writes: the folder is removed
        recover_dir(p)
        clean_stale(p)
        tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(p), suffix=".tmp", dir=p.parent))
        try:
            tmp.chmod(_mode(0o777))
            yield tmp
            previous = _swap_in(tmp, p)
        except BaseException:
            _remove(tmp)  # the unfinished folder, or (swapped in already) the previous one
            raise
        if previous is not None:
            _remove(previous)
        clean_asides(p)


HASH_CHUNK = 1 << 20  # a fingerprint reads its files in chunks of this size


def fingerprint(path: str | Path) -> str | None:
    """An identity of a log on disk: size and modification time of the file (of a folder: its
    files' count, total size and latest time), then ``#`` and a SHA-256 of the whole content
    (of a folder: each file's relative name, size and content, in name order); None where the
    path is not there (a dataset name). :func:`same_log` compares two. Every byte is read, so an
    edit that keeps the size is seen (12 ms for nowplaying-1m's 14 MB folder, against about
    1 s to read it as a log); a file's hash is the former head-and-tail sample's where
    that covered the whole file (up to 2 MiB)."""
    p = Path(path)
    try:
        if p.is_file():
            st = p.stat()
            return f"{st.st_size}:{st.st_mtime_ns}#{_content_digest(p)}"
        if p.is_dir():
            files = [f for f in sorted(p.rglob("*")) if f.is_file()]
            stats = [f.stat() for f in files]
            size = sum(st.st_size for st in stats)
            latest = max((st.st_mtime_ns for st in stats), default=0)
            return f"{len(stats)}:{size}:{latest}#{_content_digest(p, files)}"
    except OSError:
        return None
    return None


def _content_digest(path: Path, files: list[Path] | None = None) -> str:
    """SHA-256 of a file's bytes, or of a folder's ``files`` (relative name, size, bytes each:
    a line moved from one file to the next is another folder), 16 hex digits."""
    h = hashlib.sha256()
    for f in [path] if files is None else files:
        if files is not None:
            h.update(f"{f.relative_to(path).as_posix()}\0{f.stat().st_size}\0".encode())
        with open(f, "rb") as fh:
            while chunk := fh.read(HASH_CHUNK):
                h.update(chunk)
    return h.hexdigest()[:16]


def _whole(quick: str) -> bool:
    """Whether a fingerprint's ``size:time`` part is of a file whose former head-and-tail
    sample (the first and the last MiB) covered all of it, so that its hash is the same."""
    parts = quick.split(":")
    return len(parts) == 2 and parts[0].isdigit() and int(parts[0]) <= 2 * HASH_CHUNK


def same_log(recorded: str, now: str | None) -> bool:
    """Whether two :func:`fingerprint` values are of the same log: the same sizes and time,
    or (a file touched or copied: a new time) the same sizes and content hash. A record
    without a hash (an older model) compares size and time alone; one with the former
    head-and-tail sample of a file over 2 MiB (or of a folder) reads as changed once touched.
    A file of up to 2 MiB whose hash differs is another log even with the same size and time
    (both kinds of record hash all of it)."""
    if now is None or recorded == now:
        return True
    rec_quick, _, rec_sample = recorded.partition("#")
    now_quick, _, now_sample = now.partition("#")
    if rec_quick == now_quick:
        # the same size and time; but a file of up to 2 MiB was hashed whole by the former
        # sample too, so another hash is another content (its time kept: copied with it, or
        # written again within one step of the file system's clock)
        return not (rec_sample and now_sample and rec_sample != now_sample and _whole(now_quick))
    if not rec_sample:
        return False
    return rec_quick.rsplit(":", 1)[0] == now_quick.rsplit(":", 1)[0] and rec_sample == now_sample
    return None
