"""A study folder's settings record: resume only what was made under the same settings.

Studies and searches keep their finished runs in a folder and read them back when run again
into it. :func:`check_settings` compares what this call would compute (its settings, a
fingerprint of its data from :func:`data_fingerprint`, the trainer defaults from
:func:`~warmrec.training.defaults.trainer_defaults_key`) with the record a first call left there
(``study.json``), refuses a folder made under other settings with a one-line error naming the
differing keys, and writes the record (atomically) otherwise.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from warmrec.errors import ConfigError
from warmrec.io import atomic_write_text

SETTINGS_FILE = "study.json"


def data_fingerprint(frame: pl.DataFrame, *features: pl.DataFrame | None) -> str:
    """A short hash of a table's columns, shape and rows (16 hex digits), and of the
    ``features`` tables given (the item and user feature tables read with the log; None where
    there is none): an edited feature file is other data to a run that trains on features.
    Without any the hash is the table's alone."""
    h = hashlib.sha256()
    for i, table in enumerate((frame, *features)):
        if table is None:
            continue
        if i:
            h.update(f"|features {i}|".encode())
        h.update(",".join(table.columns).encode())
        h.update(str(table.shape).encode())
        h.update(table.hash_rows(seed=0).to_numpy().tobytes())
    return h.hexdigest()[:16]


def prepared_fingerprint(prepared: Any) -> str:
    """:func:`data_fingerprint` of prepared data: its events and feature tables."""
    return data_fingerprint(
        prepared.frame,
        getattr(prepared, "item_features", None),
        getattr(prepared, "user_features", None),
    )


def check_settings(
    out: str | Path,
    settings: Mapping[str, Any],
    *,
    what: str = "study",
    advice: str = "",
    write: bool = True,
) -> None:
    """Refuse ``out`` when its :data:`SETTINGS_FILE` records other ``settings``; else write them
    there (``write``; False: only refuse, comparing the keys of ``settings``, e.g. before the
    data is read for its fingerprint). ``what`` names the kind of folder in the error;
    ``advice`` ends it (default: another output folder or ``resume=False``)."""
    out = Path(out)
    path = out / SETTINGS_FILE
    new = json.loads(json.dumps(dict(settings), default=str))
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"{path}: not a readable settings record ({e})") from None
        if not write:
            old = {k: v for k, v in old.items() if k in new}
        if old != new:
            diff = sorted(k for k in {*old, *new} if old.get(k) != new.get(k))
            raise ConfigError(
                f"{out}: holds a {what} with other settings ({', '.join(diff)}); "
                + (advice or "use another output folder or resume=False")
            )
        return
    if write:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(new, indent=2, sort_keys=True))
