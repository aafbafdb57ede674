"""Readers: the only code that knows file formats.

:func:`load_interactions` reads an interaction log from CSV/TSV/TXT, Parquet, RecBole atomic
files (``.inter``, with ``.item``/``.user`` feature files beside it) or a folder of split files
read as one log, maps its columns to the canonical schema (:mod:`warmrec.data.schema`) and
returns an :class:`Interactions`. Named public datasets live in :mod:`warmrec.data.datasets`.

The rules, in one place:

- **Columns.** ``columns`` maps canonical name -> column in the file; a key that is not a
  canonical name keeps that column as an extra column under the key's name. Unmapped canonical
  columns are recognised by common names, compared without case, ``_``, ``-`` and spaces
  (``session_id``/``SessionId``/``session``, ``user_id``/``UserId``/``user``/``learner_id``/
  ``customer_id``/..., ``item_id``/``ItemId``/``item``/``product_id``/``video_id``/...,
  ``timestamp``/``time``/``ts``/``datetime``/``date``/``created_at``/``event_time``/...,
  ``rating``; the full lists are :data:`~warmrec.data.columns.ALIASES`). The canonical name
  itself wins; two other candidates for one column (``date`` and ``time``) are refused, naming
  both. Other columns are not read at all (the benchmark reads 33M rows: only what is needed
  is parsed).
- **Separator.** Sniffed from the header line (tab, comma, semicolon, pipe, then space) unless
  ``sep`` is given; ``.tsv`` defaults to tab. Fields may be quoted with ``"``.
- **Ids.** Read as text; a column whose every value is a plain decimal integer (no sign, no
  leading zero) becomes Int64, otherwise it stays a string, so ``"007"`` and ``"7"`` never merge.
  Text ids must hold no control character (NUL, newline, ...) and at most 256 characters
  (``max_id_length``); the header must not name a column it uses twice; a ``session_id`` must
  belong to one ``user_id`` (:mod:`warmrec.data.checks`).
- **Timestamps.** Numbers are Unix seconds unless ``time_unit`` (``--time-unit``) says ``ms``,
  ``us`` or ``ns``; by default (``auto``) the unit is judged on the median magnitude: above 1e11
  milliseconds, above 1e14 microseconds, above 1e17 nanoseconds. Text is parsed as ISO 8601
  date-times in the layout of the column's first value (:data:`ISO_FORMATS`; without a zone:
  UTC). Negative times and far outliers are refused with their line (``time_outliers="warn"``
  keeps outliers, :mod:`warmrec.data.checks`). A log without timestamps is accepted only with
  ``order="column"`` (that numeric column becomes the timestamp) or ``no_timestamp=True`` (file
  order 0, 1, 2, ... becomes the timestamp, and any time column is ignored). Times are held as
  float seconds (date-times to the microsecond; at today's dates a float is ~0.24 us apart):
  nanosecond date-times and integer nanoseconds that tie there are put in the order of their
  full values (:func:`warmrec.data.columns.order_ties`): they come in time order, not file order.
- **Ordinal logs.** With ``time_unit="ordinal"``, ``order`` or ``no_timestamp`` (and for the
  ``sasrec`` and ``hahow`` datasets) the timestamps are event positions, not seconds: the result's
  ``time_unit`` is ``"ordinal"``, and what counts seconds (time spans, inactivity gaps, splits by
  days) refuses such a log (:func:`warmrec.data.schema.require_seconds`).
- **Order.** Rows keep file order; nothing is sorted here (but for the nanosecond ties above,
  which swap rows among the tied ones only). A folder is read file by file in
  name order and concatenated; a folder of train/valid/test files is a split folder
  (:mod:`warmrec.data.splitdir`), read in the order train, valid, test, and its parts are kept
  in ``Interactions.parts`` (used as given by ``prepare`` and every command unless
  ``resplit``). RecBole's benchmark files ``NAME.train.inter``, ``NAME.valid.inter``,
  ``NAME.test.inter`` make a split folder too, as RecBole's ``benchmark_filename`` reads them
  (they used to be merged into one log that the default split cut again).

Layout: :mod:`warmrec.data.formats` (one reader per file format), :mod:`warmrec.data.text`
(delimited text and its diagnosis), :mod:`warmrec.data.columns` (column resolution and value
conversion), :mod:`warmrec.data.interactions` (the result type). This module holds the entry
point and the dispatch between file formats and named datasets, and re-exports the helpers
that used to live here.

Every problem raises :class:`~warmrec.errors.DataError` naming the file, the line (counted from
1, header included; Parquet: the row) or the field, what was expected and what was found.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

from warmrec.data import catalogue
from warmrec.data.checks import MAX_ID_LENGTH
from warmrec.data.columns import (
    ALIASES,
    CANONICAL_ORDER,
    ID_COLUMNS,
    ISO_FORMATS,
    TIME_EXPECTED,
    TIME_UNITS,
    ReadOptions,
    align_keys,
    datetime_seconds,
    describe_header,
    file_order,
    finish,
    infer_extra,
    iso_format,
    normalise_ids,
    resolve_columns,
    sample_dtypes,
    scale_epoch,
    to_canonical,
    to_float,
    to_seconds,
)
from warmrec.data.features import attach, read_feature_table
from warmrec.data.filters import (
    DUPLICATE_WARN_SHARE,
    drop_duplicate_events,
    duplicate_events,
    duplicate_share,
)
from warmrec.data.formats import (
    FORMATS,
    RECBOLE_TYPES,
    SUFFIX_FORMATS,
    concat_logs,
    detect_format,
    folder_files,
    read_atomic,
    read_file,
    recbole_header,
)
from warmrec.data.interactions import Interactions
from warmrec.data.schema import ITEM, ORDINAL, USER
from warmrec.data.text import (
    SEP_NAMES,
    SEPARATORS,
    Source,
    diagnose,
    first_bad_utf8,
    first_line,
    read_text,
    require_rows,
    sniff_header,
)
from warmrec.errors import ConfigError, DataError, DataNote, DataWarning
from warmrec.io import recover_dir

__all__ = [
    "ALIASES",
    "CANONICAL_ORDER",
    "FORMATS",
    "ID_COLUMNS",
    "ISO_FORMATS",
    "RECBOLE_TYPES",
    "SEPARATORS",
    "SEP_NAMES",
    "SUFFIX_FORMATS",
    "TIME_EXPECTED",
    "TIME_UNITS",
    "MAX_ID_LENGTH",
    "Interactions",
    "ReadOptions",
    "Source",
    "align_keys",
    "concat_logs",
    "datetime_seconds",
    "describe_header",
    "detect_format",
    "diagnose",
    "file_order",
    "finish",
    "first_bad_utf8",
    "first_line",
    "folder_files",
    "infer_extra",
    "iso_format",
    "load_interactions",
    "normalise_ids",
    "read_atomic",
    "read_file",
    "read_text",
    "recbole_header",
    "require_rows",
    "resolve_columns",
    "sample_dtypes",
    "scale_epoch",
    "sniff_header",
    "to_canonical",
    "to_float",
    "to_seconds",
]


def load_interactions(
    path: str | Path,
    *,
    format: str | None = None,
    columns: dict[str, str] | None = None,
    sep: str | None = None,
    order: str | None = None,
    no_timestamp: bool = False,
    time_unit: str | None = None,
    max_id_length: int = MAX_ID_LENGTH,
    time_outliers: str = "error",
    items: str | Path | None = None,
    users: str | Path | None = None,
    duplicates: str = "keep",
    names: Sequence[str] | None = None,
) -> Interactions:
    """Read an interaction log into the canonical table (see the module docstring).

    ``format`` overrides detection: ``csv``, ``tsv``, ``parquet``, ``recbole``, ``folder`` or a
    dataset name from :func:`warmrec.data.datasets.list_datasets`. Without it, a folder that
    holds a named dataset's files (:func:`~warmrec.data.catalogue.detect_dataset`: MARS) is
    read as that dataset, with its feature tables. ``time_unit`` is one of
    :data:`~warmrec.data.columns.TIME_UNITS`; ``max_id_length`` and ``time_outliers`` are the
    limits of :mod:`warmrec.data.checks`. The result's ``time_unit`` is ``"ordinal"`` when the
    timestamps are positions (``time_unit="ordinal"``, ``order``, ``no_timestamp`` or a
    dataset format without times), else ``"s"``.

    ``items`` / ``users``: a file of item (user) features, one row per id
    (:func:`warmrec.data.features.read_feature_table`: CSV, TSV or Parquet); it replaces the
    log's own feature table where the log has one (a RecBole folder, a named dataset).

    ``names``: the columns, in order, of a CSV/TSV file (or a folder of them) that has no
    header line (MovieLens' ``u.data``: ``["user_id", "item_id", "rating", "timestamp"]``); the
    first line is then data, and errors count it as line 1.

    ``duplicates``: ``"keep"`` (the default) or ``"drop"`` the exact duplicate events (the same
    sequence, item and time as an earlier row: :func:`~warmrec.data.filters.duplicate_events`;
    the first copy stays). A held-out copy of the history's last event is trivially
    "predicted", so they inflate repeat-aware metrics; kept, more than
    :data:`~warmrec.data.filters.DUPLICATE_WARN_SHARE` of the events warns.
    """
    if not isinstance(path, str | Path):
        raise ConfigError(
            f"path: expected a file or folder path (str or Path), found {type(path).__name__}; "
            "a table in memory goes to warmrec.prepare(table) or "
            "warmrec.data.columns.canonical_table(table) as it is"
        )
    if duplicates not in ("keep", "drop"):
        raise ConfigError(f"duplicates: expected keep or drop, found {duplicates!r}")
    out = _read_log(path, format, columns, sep, order, no_timestamp, time_unit, max_id_length,
                    time_outliers, names)  # fmt: skip
    _handle_duplicates(out, duplicates, path)
    for key, given, attr in ((ITEM, items, "item_features"), (USER, users, "user_features")):
        if given is not None:
            if key not in out.interactions.columns:
                raise ConfigError(
                    f"--users {given}: the log has no user_id column, so no user features apply"
                )
            table = read_feature_table(given, key, sep=None)
            setattr(out, attr, attach(out.interactions, table, key, given))
    return out


def _handle_duplicates(out: Interactions, duplicates: str, path: str | Path) -> None:
    df = out.interactions
    if duplicates == "drop":
        dup = duplicate_events(df)
        if dup.any():
            out.interactions = df.filter(~dup)
            if out.parts:  # a split folder: no event is in two files (refused), so per part
                out.parts = {k: drop_duplicate_events(v) for k, v in out.parts.items()}
            n = int(dup.sum())
            warnings.warn(
                f"{path}: dropped {n:,} of {df.height:,} events that repeat an earlier event "
                "exactly (same sequence, item and time; --drop-duplicates)",
                DataNote,
                stacklevel=3,
            )
        return
    if duplicate_share(df) <= DUPLICATE_WARN_SHARE:  # estimated on large logs: cheap
        return
    n = int(duplicate_events(df).sum())
    if n > DUPLICATE_WARN_SHARE * df.height:
        warnings.warn(
            f"{path}: {n:,} of {df.height:,} events ({n / df.height:.0%}) repeat an earlier event "
            "exactly (same sequence, item and time); a held-out copy of the last history event "
            'is trivially predicted: --drop-duplicates (data.duplicates = "drop") drops them',
            DataWarning,
            stacklevel=3,
        )


def _read_log(
    path: str | Path,
    format: str | None,
    columns: dict[str, str] | None,
    sep: str | None,
    order: str | None,
    no_timestamp: bool,
    time_unit: str | None,
    max_id_length: int,
    time_outliers: str,
    names: Sequence[str] | None = None,
) -> Interactions:
    p = recover_dir(path)  # a split folder a killed writer left moved aside: renamed back
    if not p.exists():
        raise DataError(
            "no such file or folder",
            path=p,
            expected="an existing file or folder",
            found="nothing at that path",
        )
    opts = ReadOptions(
        columns=columns,
        sep=sep,
        order=order,
        no_timestamp=no_timestamp,
        time_unit=time_unit,
        max_id_length=max_id_length,
        time_outliers=time_outliers,
        names=None if names is None else tuple(names),
    )
    fmt = (format or catalogue.detect_dataset(p) or detect_format(p)).lower()
    if names is not None and fmt not in ("csv", "tsv", "folder"):
        raise ConfigError(
            f"--names applies to CSV/TSV files without a header line; {p.name} is read as "
            f"{fmt}, whose files name their columns"
        )
    if fmt in FORMATS:
        out = read_file(p, fmt, opts)
        if opts.ordinal:
            out.time_unit = ORDINAL
        return out
    if catalogue.has_dataset(fmt):
        if time_unit not in (None, "auto", ORDINAL):
            raise ConfigError(
                f"--time-unit {time_unit} applies to csv, tsv, parquet, recbole and folder "
                f"logs; dataset format {fmt!r} knows the unit of its own files (only "
                "--time-unit ordinal applies: take its times as mere positions)"
            )
        given = [name for name, v in (("--order", order), ("--sep", sep)) if v is not None]
        given += ["--no-timestamp"] if no_timestamp else []
        if given:  # they had been ignored without a word
            raise ConfigError(
                f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to csv, tsv, "
                f"parquet, recbole and folder logs; dataset format {fmt!r} reads its own files "
                "(their separator and time order are known)"
            )
        out = catalogue.load_dataset(fmt, p, **({"columns": columns} if columns else {}))
        if time_unit == ORDINAL:
            out.time_unit = ORDINAL
        return out
    raise ConfigError(
        f"unknown format {format!r}: expected one of {', '.join(FORMATS)} "
        f"or a dataset name ({', '.join(catalogue.list_datasets())})"
    )
