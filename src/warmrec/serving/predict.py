"""Batch prediction: the top-K raw item ids and scores for every user or session, to a file.

:func:`predict` scores :class:`Histories` in chunks and streams each chunk's top-K rows to the
output file, so that memory holds one chunk's ``[rows, n_items]`` score matrix at a time
(``max_cells`` bounds ``rows * n_items``: a 121K-item catalogue gets ~270 rows per chunk).
The file -- CSV or Parquet by its suffix -- is written under a temporary name in the same
folder (``.NAME.warmrec-tmp-<pid>@<host>-<random>``, :func:`warmrec.io.temp_file`) and renamed
into place at the end: a crash never leaves a partial file under the name. SIGTERM, SIGHUP and
SIGINT remove the temporary file on the way out; one left by a SIGKILL is removed by the next
run that writes the same name. The output path is checked before any work
(:func:`warmrec.io.check_output`). A ``k`` above the catalogue's size gives every item, with a
:class:`~warmrec.errors.WarmrecWarning` that says so.

Output: one row per (sequence, rank): ``<key>`` (``session_id`` or ``user_id``, the sequence key
of the data), ``rank`` (1 = best), ``item_id`` (raw id), ``score`` (the model's score; for the
popularity fallback the training count).

Which histories (:func:`histories_from_data`, ``part``):

``all`` (default)
    every sequence of the whole log, all its events in time order: predictions of the items
    that come *next*, after the data (the ``pred.csv`` of a deployed recommender);
``train``
    each training sequence in full;
``valid`` / ``test``
    the last prefix of each sequence of that part of the split: the history before its last
    held-out event (the split is the model's own, as ``warmrec evaluate`` does).

Item ids the model does not know are left out of a history; a sequence with no known item (an
empty history) is skipped (counted in :attr:`PredictSummary.n_skipped`) unless
``fallback="popular"`` gives it the most popular training items.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from warmrec.errors import ConfigError, WarmrecWarning
from warmrec.io import check_output, exit_on_signal, temp_file
from warmrec.serving.bundle import ModelBundle, top_k
from warmrec.training.loop import prints_lines, shows_bar

PARTS = ("all", "train", "valid", "test")
MAX_CELLS = 1 << 25  # scores held at once (128 MiB of float32)


@dataclass
class Histories:
    """Encoded histories: history ``j`` is ``items[starts[j]:ends[j]]`` (most recent last),
    named by ``keys[j]`` (a Series named after the sequence key)."""

    keys: pl.Series
    items: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    n_skipped: int = 0

    def __len__(self) -> int:
        return len(self.starts)


@dataclass
class PredictSummary:
    out: Path
    n_sequences: int
    n_rows: int
    n_skipped: int
    n_fallback: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.n_sequences / self.seconds if self.seconds > 0 else float("inf")

    def as_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "n_sequences": self.n_sequences,
            "n_rows": self.n_rows,
            "n_skipped": self.n_skipped,
            "n_fallback": self.n_fallback,
            "seconds": self.seconds,
            "sequences_per_s": self.per_second,
        }


def histories_from_frame(frame: pl.DataFrame, vocab: Any) -> Histories:
    """Every sequence of a canonical table, all its events in time order (stable on ties)."""
    from warmrec.data.schema import ITEM, TIME, sequence_key

    key = sequence_key(frame)
    df = frame.select(key, ITEM, *([TIME] if TIME in frame.columns else []))
    df = df.with_row_index("_row").sort([key, *([TIME] if TIME in df.columns else []), "_row"])
    idx = np.asarray(vocab.encode(df[ITEM]), dtype=np.int64)
    known = idx > 0
    # every sequence, one with no known item as an empty history (skipped or given the
    # popularity fallback by predict)
    counts = (
        df.select(key, pl.Series("_known", known))
        .group_by(key, maintain_order=True)
        .agg(pl.col("_known").sum())
    )
    lens = counts["_known"].to_numpy().astype(np.int64)
    ends = np.cumsum(lens)
    return Histories(counts[key], idx[known], ends - lens, ends)


def _last_prefixes(es: Any) -> Histories:
    """The longest history per key of an EvalSet (the last prefix of each sequence)."""
    lens = es.ends - es.starts
    df = pl.DataFrame({"k": es.keys, "j": np.arange(len(es)), "n": lens})
    best = df.sort(["n", "j"]).group_by("k", maintain_order=True).last().sort("j")
    j = best["j"].to_numpy()
    return Histories(es.keys.gather(j), es.items, es.starts[j], es.ends[j])


def histories_from_data(
    model: Any, cfg: Mapping[str, Any] | None = None, part: str = "all"
) -> Histories:
    """The histories of ``part`` (see the module docstring) of the data a config describes
    (``[data]``, ``[split]``; default: the data and split recorded in the model directory)."""
    from warmrec.experiments.run import saved_spec
    from warmrec.experiments.spec import prepare_run

    if part not in PARTS:
        raise ConfigError(f"--part: expected one of {', '.join(PARTS)}, found {part!r}")
    spec = saved_spec(model, cfg)
    if part == "all":
        return histories_from_frame(spec.data.read().interactions, model.vocab)
    prep = prepare_run(spec, vocab=model.vocab, user_vocab=model.user_vocab)
    if part == "train":
        s = prep.train.sequences
        return Histories(s.keys, s.items, s.offsets[:-1], s.offsets[1:])
    h = _last_prefixes(prep.valid if part == "valid" else prep.test)
    h.keys = h.keys.rename(prep.train.key)
    return h


def _check_out(path: Path) -> None:
    if path.suffix.lower() not in (".csv", ".parquet"):
        raise ConfigError(f"--out: expected a .csv or .parquet file, found {str(path)!r}")
    check_output(path, kind="file")


def clamp_notice(k: int, n_items: int) -> str | None:
    """The one-line notice for a ``k`` above the catalogue's ``n_items`` (None when it fits)."""
    if k <= n_items:
        return None
    return f"-k {k} is more than the {n_items} items of the catalogue: at most {n_items} per list"


class _Writer:
    """Chunks of rows to a CSV or Parquet file under a temporary name, renamed at close."""

    def __init__(self, path: Path) -> None:
        _check_out(path)
        self.path, self.parquet = path, path.suffix.lower() == ".parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = temp_file(path)
        try:  # predict() aborts only a writer it holds: one that fails here cleans up itself
            self._f = None if self.parquet else open(self.tmp, "wb")  # noqa: SIM115
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            raise
        self._pq = None
        self.rows = 0

    def write(self, df: pl.DataFrame) -> None:
        if self.parquet:
            import pyarrow.parquet as pq

            table = df.to_arrow()
            if self._pq is None:
                self._pq = pq.ParquetWriter(str(self.tmp), table.schema)
            self._pq.write_table(table)
        else:
            df.write_csv(self._f, include_header=self.rows == 0)
        self.rows += df.height

    def close(self, empty: pl.DataFrame) -> None:
        if self.rows == 0:
            self.write(empty)
        if self._pq is not None:
            self._pq.close()
        if self._f is not None:
            self._f.close()
        os.replace(self.tmp, self.path)  # temp_file gave it the usual mode

    def abort(self) -> None:
        for h in (self._pq, self._f):
            if h is not None:
                try:
                    h.close()
                except Exception:  # noqa: BLE001 - cleaning up after the real error
                    pass
        self.tmp.unlink(missing_ok=True)


def predict(
    model: Any,
    histories: Histories,
    out: str | Path,
    *,
    k: int = 10,
    exclude_seen: bool | None = None,
    fallback: str | None = None,
    batch_size: int = 512,
    max_cells: int = MAX_CELLS,
    progress: bool | None = True,
) -> PredictSummary:
    """Write the top-``k`` items of every history to ``out`` (``.csv`` or ``.parquet``).

    ``model``: a Recommender, a :class:`ModelBundle` or a model directory. Empty histories
    (no known item) get the popularity fallback with ``fallback="popular"``. ``exclude_seen``
    None: as the model was evaluated (:attr:`ModelBundle.exclude_seen`)."""
    from tqdm.auto import tqdm

    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"-k: expected a whole number >= 1, found {k!r}")
    if fallback not in (None, "popular"):
        raise ConfigError(f"fallback: expected None or 'popular', found {fallback!r}")
    if isinstance(model, str | Path):
        bundle = ModelBundle.load(model, threads=0, warm_up=False, engine="eager")
    elif isinstance(model, ModelBundle):
        bundle = model
    else:
        bundle = ModelBundle(model)
    if exclude_seen is None:
        exclude_seen = bundle.exclude_seen
    out = Path(out)
    lens = histories.ends - histories.starts
    if fallback and (lens <= 0).any() and not bundle.can_fallback:
        raise ConfigError(
            f"model '{bundle.model.name}' has no training item counts for the popularity fallback"
        )
    note = clamp_notice(k, bundle.n_items)
    if note:
        warnings.warn(note, WarmrecWarning, stacklevel=2)
    t0 = time.perf_counter()
    key = histories.keys.name or "session_id"
    n_cols = bundle.n_items + 1
    rows = max(1, min(batch_size, max_cells // n_cols))
    lens = histories.ends - histories.starts
    nonempty = np.flatnonzero(lens > 0)
    empty = np.flatnonzero(lens <= 0)
    n_fallback = 0
    vocab_ids = bundle.model.vocab.ids
    id_dtype = vocab_ids.dtype
    key_dtype = histories.keys.dtype
    schema = {key: key_dtype, "rank": pl.Int32, "item_id": id_dtype, "score": pl.Float32}

    def emit(sel: np.ndarray, vals: torch.Tensor, idx: torch.Tensor) -> None:
        kk = vals.shape[1]
        v = vals.numpy().reshape(-1)
        i = idx.numpy().reshape(-1).astype(np.int64)
        ok = np.isfinite(v)
        row = np.repeat(sel, kk)[ok]
        ranks = np.tile(np.arange(1, kk + 1, dtype=np.int32), len(sel))[ok]
        writer.write(
            pl.DataFrame(
                {
                    key: histories.keys.gather(row),
                    "rank": ranks,
                    "item_id": vocab_ids.gather(i[ok] - 1),
                    "score": v[ok].astype(np.float32),
                },
                schema=schema,
            )
        )

    total = len(nonempty) + (len(empty) if fallback else 0)
    lines = prints_lines(progress)  # no bar can show (a log file): a line per tenth
    marks = {max(1, round(total * i / 10)) for i in range(1, 11)} if lines else set()
    done = 0

    def advance(bar: Any, n: int) -> None:
        nonlocal done
        bar.update(n)
        before, done = done, done + n
        if any(before < m <= done for m in marks):
            elapsed = time.perf_counter() - t0
            print(f"predict: {done:,}/{total:,} sequences, {elapsed:.1f} s", file=sys.stderr)

    with exit_on_signal():  # SIGTERM/SIGHUP: the temporary file is removed on the way out
        writer: _Writer | None = None
        try:
            writer = _Writer(out)  # inside: an error from here on removes its temporary file
            with tqdm(
                total=total,
                unit="seq",
                disable=not shows_bar(progress),
                desc="predict",
            ) as bar:
                for lo in range(0, len(nonempty), rows):
                    sel = nonempty[lo : lo + rows]
                    hist = [histories.items[histories.starts[j] : histories.ends[j]] for j in sel]
                    scores = bundle.score_matrix(hist)
                    vals, idx = top_k(scores, k, seen=hist if exclude_seen else None)
                    emit(sel, vals, idx)
                    advance(bar, len(sel))
                if fallback and len(empty):
                    for lo in range(0, len(empty), rows):
                        sel = empty[lo : lo + rows]
                        scores = bundle._popular.unsqueeze(0).repeat(len(sel), 1)
                        vals, idx = top_k(scores, k)
                        emit(sel, vals, idx)
                        advance(bar, len(sel))
                    n_fallback = len(empty)
            writer.close(pl.DataFrame(schema=schema))
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
    secs = time.perf_counter() - t0
    return PredictSummary(
        out,
        len(nonempty) + n_fallback,
        writer.rows,
        histories.n_skipped + (0 if fallback else len(empty)),
        n_fallback,
        secs,
    )


def run_predict(
    model_dir: str | Path,
    cfg: Mapping[str, Any] | None,
    out: str | Path,
    *,
    part: str = "all",
    k: int = 10,
    exclude_seen: bool | None = None,
    fallback: str | None = None,
    batch_size: int = 512,
    threads: int = 0,
    progress: bool | None = True,
) -> PredictSummary:
    """``warmrec predict``: load a model directory, read its histories, write the top-k file.

    ``threads``: torch threads (0: torch's default, all cores)."""
    if k < 1:
        raise ConfigError(f"-k: expected a whole number >= 1, found {k}")
    _check_out(Path(out))  # before loading the model and reading any data
    bundle = ModelBundle.load(model_dir, threads=threads, warm_up=False, engine="eager")
    hist = histories_from_data(bundle.model, cfg, part)
    return predict(
        bundle,
        hist,
        out,
        k=k,
        exclude_seen=exclude_seen,
        fallback=fallback,
        batch_size=batch_size,
        progress=progress,
    )
