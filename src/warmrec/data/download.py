"""Downloads of the named datasets: fetch, verify the SHA-256 (or the publisher's MD5), unzip.

``download(name, dest)`` fetches what can be fetched without a login and raises a clear
:class:`~warmrec.errors.WarmrecError` without a network. Files are written to a temporary name
and renamed once their digest checks. Tests never download.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

from warmrec.data.catalogue import DatasetSpec, get_spec
from warmrec.errors import WarmrecError

log = logging.getLogger(__name__)


def _open_url(url: str, timeout: float) -> Any:
    """Open ``url`` (replaced in tests). Raises WarmrecError when there is no network."""
    try:
        return urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 (http/https/file only)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise WarmrecError(f"could not open {url}: {exc}") from exc


def download(name: str, dest: str | Path, *, force: bool = False, timeout: float = 60.0) -> Path:
    """Fetch dataset ``name`` into folder ``dest`` and return ``dest``.

    Existing files with a matching checksum are kept (``force=True`` fetches again). ``.zip``
    archives are unpacked into ``dest``. Without a network, or for datasets with no direct
    download, raises :class:`WarmrecError` saying where to get the files by hand.
    """
    spec = get_spec(name)
    if not spec.urls:
        where = spec.homepage or "the dataset's publisher"
        raise WarmrecError(
            f"dataset {spec.name!r} has no direct download: get "
            f"{', '.join(spec.files)} from {where} and call "
            f"load_dataset({spec.name!r}, <path>)"
        )
    folder = Path(dest)
    folder.mkdir(parents=True, exist_ok=True)
    for i, url in enumerate(spec.urls):
        sha, md5 = _nth(spec.sha256, i), _nth(spec.md5, i)
        target = folder / _url_name(url)
        fresh = force or not target.is_file() or not _digest_ok(target, sha, md5)
        if fresh:
            _fetch(url, target, sha, md5, timeout=timeout, spec=spec)
        if target.suffix.lower() == ".zip" and (fresh or not _unpacked(folder, spec, target)):
            _unzip(target, folder)
    return folder


def _nth(values: tuple[str | None, ...], i: int) -> str | None:
    return values[i] if i < len(values) else None


def _url_name(url: str) -> str:
    name = urllib.parse.unquote(Path(urllib.parse.urlparse(url).path).name)
    return name or "download"


def _unpacked_marker(archive: Path) -> Path:
    """The file written once every member of ``archive`` was extracted."""
    return archive.with_name(f".{archive.name}.unpacked")


def _unpacked(folder: Path, spec: DatasetSpec, archive: Path) -> bool:
    """Whether ``archive`` was unpacked to the end (an interrupted unzip is done again)."""
    if not _unpacked_marker(archive).is_file():
        return False
    return any(True for _ in folder.rglob(spec.files[0])) if spec.files else True


def _hash_file(path: Path) -> tuple[str, str]:
    h256, h5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h256.update(block)
            h5.update(block)
    return h256.hexdigest(), h5.hexdigest()


def _digest_ok(path: Path, sha: str | None, md5: str | None) -> bool:
    if sha is None and md5 is None:
        return True
    got_sha, got_md5 = _hash_file(path)
    return (sha is None or got_sha == sha) and (md5 is None or got_md5 == md5)


def _fetch(
    url: str, target: Path, sha: str | None, md5: str | None, *, timeout: float, spec: DatasetSpec
) -> None:
    log.info("downloading %s -> %s", url, target)
    try:
        response = _open_url(url, timeout)
    except WarmrecError as exc:
        raise WarmrecError(
            f"cannot download dataset {spec.name!r}: {exc}. Without a network, "
            f"fetch {url} on another machine, put it in {target.parent} and "
            f"call load_dataset({spec.name!r}, {str(target.parent)!r})"
        ) from exc
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        h256, h5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
        with os.fdopen(fd, "wb") as out, response:
            while block := response.read(1 << 20):
                out.write(block)
                h256.update(block)
                h5.update(block)
        _check_digest(url, "sha256", sha, h256.hexdigest())
        _check_digest(url, "md5", md5, h5.hexdigest())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check_digest(url: str, kind: str, expected: str | None, found: str) -> None:
    if expected is not None and expected.lower() != found:
        raise WarmrecError(
            f"checksum mismatch for {url}: expected {kind} {expected}, "
            f"found {found}; the file was not kept"
        )


def _unzip(archive: Path, folder: Path) -> None:
    marker = _unpacked_marker(archive)
    marker.unlink(missing_ok=True)  # until every member is out, the folder is not trusted
    root = folder.resolve()
    with zipfile.ZipFile(archive) as zf:
        for member in zf.namelist():
            target = (root / member).resolve()
            if root not in target.parents and target != root:
                raise WarmrecError(
                    f"{archive}: refusing archive member outside the folder: {member!r}"
                )
        zf.extractall(root)
    marker.touch()
