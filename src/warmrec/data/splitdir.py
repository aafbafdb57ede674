"""Split folders: a log already cut into ``train`` / ``valid`` / ``test`` files.

A *split folder* holds one file per part, named by the part (``train.csv``, ``valid.parquet``,
``test.tsv``; ``validation`` and ``val`` name the valid part too), or RecBole's benchmark files
``NAME.train.inter``, ``NAME.valid.inter``, ``NAME.test.inter`` (:func:`recbole_part_of`: what
RecBole's ``benchmark_filename`` reads, with ``NAME.item`` / ``NAME.user`` beside them). ``train`` and ``test`` are
required, ``valid`` is optional; no other interaction file may sit beside them (a full log next to
its own parts would double every event). Readers use such a folder as given
(:attr:`warmrec.data.readers.Interactions.parts`); ``prepare(..., resplit=True)`` merges the
parts and splits again.

:func:`write_split` writes a split as one unit: the part files and ``manifest.json`` go into a
temporary folder that is renamed into place (:func:`warmrec.io.atomic_dir`), so a killed writer
never leaves a folder that reads as a split. The manifest records the method, its options, the
row count and SHA-256 of each part file; :func:`verify_manifest` refuses a folder whose files
do not match it (missing, changed, or parts of another split mixed in).

Given-split semantics (:func:`given_split`):

- **Session logs** (a ``session_id`` column): ``kind="sessions"``. Each valid/test session is
  predicted from its own prefixes (every next item given the items before it in that session).
  A session may appear in one part only.
- **User logs** (``user_id`` and no ``session_id``): ``kind="next_item"``. Each valid event is a
  target whose history is the user's earlier train events (and earlier valid events); each test
  event continues the user's train + valid history. Users may appear in several parts; a held-out
  event with no earlier event of its user (a user new in that part) has no history to continue
  and is dropped (counted in ``EvalSet.n_dropped`` and the split's ``info``).
- Nothing is filtered: held-out items never seen in train stay (they are in the vocabulary and
  ranked, but no model learnt them); :meth:`~warmrec.data.split.Split.describe` counts them.
- The same event (same key, item and time) in two files is refused, naming both files.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import polars as pl

from warmrec.data.schema import ITEM, SESSION, TIME, USER
from warmrec.errors import ConfigError, DataError

PARTS = ("train", "valid", "test")
PART_NAMES = {
    "train": "train",
    "valid": "valid",
    "validation": "valid",
    "val": "valid",
    "test": "test",
}
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "warmrec-split"
MANIFEST_VERSION = 1


def part_of(path: Path) -> str | None:
    """The part a file's name gives (``train``/``valid``/``test``), or None."""
    name = path.name.lower()
    stem = name[: -len(".parquet")] if name.endswith(".parquet") else Path(name).stem
    return PART_NAMES.get(stem)


def recbole_part_of(path: Path) -> str | None:
    """The part a RecBole benchmark file's name gives (``NAME.train.inter`` -> ``train``,
    ``NAME.valid.inter`` / ``NAME.val.inter`` -> ``valid``, ``NAME.test.inter`` -> ``test``), or
    None (``NAME.inter``, a file of another format)."""
    bits = path.name.lower().split(".")
    if len(bits) < 3 or bits[-1] != "inter" or not bits[0]:
        return None
    return PART_NAMES.get(bits[-2])


def split_parts(
    files: list[Path], folder: Path, part: Callable[[Path], str | None] = part_of
) -> dict[str, Path] | None:
    """``{part: file}`` when ``files`` form a split folder; None when no file is named as a part
    (``part``: what a file's name says, :func:`part_of` or :func:`recbole_part_of`).

    Raises :class:`DataError` for a folder that mixes part files with other files, names a part
    twice, or lacks ``train`` or ``test``.
    """
    named = {f: part(f) for f in files}
    if not any(named.values()):
        return None
    others = sorted(f.name for f, p in named.items() if p is None)
    parts = [f.name for f, p in named.items() if p is not None]
    if others:
        raise DataError(
            "the folder mixes split parts with other interaction files (their events would be "
            "counted twice)",
            path=folder,
            expected="only train/valid/test files, or no file named as a part",
            found=f"parts {', '.join(sorted(parts))} and other files {', '.join(others)}",
        )
    out: dict[str, Path] = {}
    for f, p in sorted(named.items()):
        assert p is not None
        if p in out:
            raise DataError(
                f"the folder holds two {p} files",
                path=folder,
                expected=f"one {p} file",
                found=f"{out[p].name} and {f.name}",
            )
        out[p] = f
    missing = [p for p in ("train", "test") if p not in out]
    if missing:
        raise DataError(
            f"incomplete split folder: no {' and no '.join(missing)} file",
            path=folder,
            expected="train and test files (valid optional)",
            found=", ".join(sorted(f.name for f in out.values())),
        )
    return out


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The folder's ``manifest.json`` (None when it has none); DataError when unreadable."""
    p = Path(folder) / MANIFEST
    if not p.exists():
        return None
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(
            "unreadable split manifest", path=p, expected="a JSON object", found=str(e)
        ) from e
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
        raise DataError(
            "not a warmrec split manifest",
            path=p,
            expected=f'"format": "{MANIFEST_FORMAT}"',
            found=repr(doc.get("format") if isinstance(doc, dict) else type(doc).__name__),
        )
    if not isinstance(doc.get("files"), dict):
        raise DataError("split manifest without files", path=p, field="files", found="none")
    for part, entry in doc["files"].items():
        if not isinstance(entry, dict):
            raise DataError(
                "unreadable split manifest",
                path=p,
                field=f"files.{part}",
                expected='an object {"file": ..., "bytes": ..., "sha256": ...}',
                found=f"{type(entry).__name__} {str(entry)[:60]!r}",
            )
    return doc


def verify_manifest(folder: Path, parts: Mapping[str, Path] | None) -> dict[str, Any] | None:
    """Check the folder's part files against its manifest; return the manifest (or None).

    Refuses (DataError naming the file): a part listed but missing, a part file that is not
    listed (another split's file mixed in), or a file whose size or SHA-256 differs.
    """
    doc = read_manifest(folder)
    if doc is None:
        return None
    where = Path(folder) / MANIFEST
    listed: dict[str, dict[str, Any]] = doc["files"]
    have = dict(parts or {})
    for part, entry in listed.items():
        f = Path(folder) / str(entry.get("file", ""))
        if part not in have or have[part].name != f.name or not f.is_file():
            raise DataError(
                "partial split folder: a part listed in the manifest is missing",
                path=f,
                expected=f"the {part} file of the manifest",
                found="no such file",
            )
    for part, f in have.items():
        if part not in listed:
            raise DataError(
                "mixed split folder: a part file the manifest does not list",
                path=f,
                expected=f"only {', '.join(listed)} (see {where})",
                found=f.name,
            )
        entry = listed[part]
        size, digest = f.stat().st_size, None
        if size != entry.get("bytes") or (digest := file_sha256(f)) != entry.get("sha256"):
            raise DataError(
                "split file does not match its manifest (changed, truncated or from another split)",
                path=f,
                expected=f"{entry.get('bytes')} bytes, sha256 {str(entry.get('sha256'))[:12]}...",
                found=f"{size} bytes" + (f", sha256 {digest[:12]}..." if digest else ""),
            )
    return doc


def check_no_overlap(frames: Mapping[str, pl.DataFrame], folder: Path, *, split: bool) -> None:
    """Refuse the same event (same key, item and time) in two files; in a split folder (``split``)
    also a session in two parts. ``frames`` maps file name -> canonical table."""
    names = list(frames)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            fa, fb = frames[a], frames[b]
            if split and SESSION in fa.columns and SESSION in fb.columns:
                both = fa.select(SESSION).unique().join(fb.select(SESSION).unique(), on=SESSION)
                if both.height:
                    raise DataError(
                        "a session appears in two parts of the split",
                        path=folder,
                        field=SESSION,
                        expected="each session in one of train/valid/test",
                        found=f"{both.height} sessions in both {a} and {b}, "
                        f"e.g. {both[SESSION][0]!r}",
                    )
            on = [c for c in (SESSION, USER, ITEM, TIME) if c in fa.columns and c in fb.columns]
            dup = fa.select(on).join(fb.select(on).unique(), on=on, how="semi")
            if dup.height:
                first = dup.row(0, named=True)
                raise DataError(
                    "files overlap: the same events are in two files (would be counted twice)",
                    path=folder,
                    expected="each event in one file",
                    found=f"{dup.height} events of {a} also in {b}, e.g. {first} (where the "
                    "log repeats events exactly, split it with --drop-duplicates)",
                )


def given_split(parts: Mapping[str, pl.DataFrame], source: str = "") -> Any:
    """A :class:`~warmrec.data.split.Split` of predefined parts (see the module docstring)."""
    from warmrec.data.split import Split

    train = parts["train"]
    valid = parts.get("valid")
    test = parts["test"]
    if valid is None:
        valid = train.clear()
    if SESSION in train.columns:
        kind, key = "sessions", SESSION
    else:
        kind, key = "next_item", USER
    info = {"method": "given", "source": source}
    return Split(train, valid, test, kind, key, info)


def check_split_target(out: str | Path) -> Path:
    """Refuse, before any work, an ``out`` that a split folder may not replace: a file, or a
    folder holding other files than an earlier split (:class:`DataError`); also one that cannot
    be written (:func:`warmrec.io.check_output`)."""
    from warmrec.io import check_output

    target = Path(out)
    if target.exists() and not (target / MANIFEST).is_file():
        if target.is_file() or any(target.iterdir()):
            raise DataError(
                "refusing to replace it with a split folder",
                path=target,
                expected="a new folder, an empty one or an earlier split folder (with manifest.json)",
                found="a file" if target.is_file() else "a folder holding other files",
            )
    return check_output(target, kind="dir")


def write_split(
    sp: Any,
    out: str | Path,
    *,
    method: str,
    options: Mapping[str, Any] | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """Write ``sp`` (a :class:`~warmrec.data.split.Split`) to ``out`` as one unit; return the
    manifest.

    ``out/train.parquet``, ``valid.parquet``, ``test.parquet`` and ``manifest.json`` are written
    into a temporary folder beside ``out`` that replaces ``out`` in one rename: a crash leaves the
    previous folder (or none), never a mixture. A split that no split folder can hold is refused
    before anything is written: history-only rows (``Split.context``), parts that share a
    session or an event (``last_pair``, leave-one-out of a session log), as reading the folder
    back would refuse it (:func:`check_no_overlap`).
    """
    from warmrec._version import __version__
    from warmrec.io import atomic_dir

    if getattr(sp, "context", None) is not None:
        raise ConfigError(
            f"{out}: the {method} split keeps history-only rows (neither train nor a target), "
            "which a split folder cannot hold: split at training time (--split " + method + ")"
        )
    if sp.info.get("method") == "last_pair":
        raise ConfigError(
            f"{out}: the last_pair split trains on the query event of each held-out pair, so "
            "its parts overlap, which a split folder cannot hold: split at training time "
            "(--split last_pair)"
        )
    # a folder that reading refuses is never written: a session in two parts (leave-one-out
    # of a session log), or the same event in two parts
    check_no_overlap({f"{p}.parquet": getattr(sp, p) for p in PARTS}, Path(out), split=True)
    check_split_target(out)
    files: dict[str, dict[str, Any]] = {}
    with atomic_dir(out) as tmp:
        for part in PARTS:
            f = tmp / f"{part}.parquet"
            df = getattr(sp, part)
            df.write_parquet(f)
            files[part] = {
                "file": f.name,
                "rows": df.height,
                "bytes": f.stat().st_size,
                "sha256": file_sha256(f),
            }
        doc = {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "warmrec_version": __version__,
            "method": method,
            "options": dict(options or {}),
            "kind": sp.kind,
            "key": sp.key,
            "source": source,
            "files": files,
            "info": sp.info,
        }
        (tmp / MANIFEST).write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return doc
