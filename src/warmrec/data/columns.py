"""Column resolution and value conversion: file columns -> the canonical table.

:func:`resolve_columns` maps canonical names to file columns (a mapping first, then common
aliases); :func:`to_canonical` converts ids, timestamps and ratings by the rules of
:mod:`warmrec.data.readers` and validates the result (:mod:`warmrec.data.schema`). Errors name the
file, line and field through :class:`~warmrec.data.text.Source`.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from warmrec.data.checks import MAX_ID_LENGTH, TIME_OUTLIERS, check_ids, check_sessions, check_times
from warmrec.data.schema import ITEM, ORDINAL, RATING, SESSION, TIME, USER, validate_interactions
from warmrec.data.text import SEPARATORS, Source, read_text, sep_name
from warmrec.errors import ConfigError, DataError, DataNote, DataWarning

ALIASES: dict[str, tuple[str, ...]] = {
    SESSION: ("sessionid", "session", "sid", "visitid"),
    USER: (
        "userid",
        "user",
        "uid",
        "learnerid",
        "learner",
        "customerid",
        "visitorid",
        "memberid",
        "clientid",
        "accountid",
    ),
    ITEM: (
        "itemid",
        "item",
        "iid",
        "productid",
        "videoid",
        "courseid",
        "movieid",
        "contentid",
        "articleid",
        "trackid",
        "songid",
    ),
    TIME: (
        "timestamp",
        "time",
        "ts",
        "datetime",
        "date",
        "createdat",
        "eventtime",
        "eventtimestamp",
        "eventdate",
        "eventdatetime",
        "occurredat",
        "unixtime",
        "epoch",
    ),
    RATING: ("rating",),
}
"""Common column names of each canonical column, compared without case, ``_``, ``-`` and spaces
(:func:`find_alias`). The canonical name itself always wins; two other candidates are ambiguous."""
ID_COLUMNS = (SESSION, USER, ITEM)
CANONICAL_ORDER = (SESSION, USER, ITEM, TIME, RATING)
TIME_EXPECTED = "Unix seconds or an ISO 8601 date-time"
ISO_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.fZ",
    "%Y-%m-%dT%H:%M:%S%.f%:z",
    "%Y-%m-%dT%H:%M:%S%.f%z",
    "%Y-%m-%dT%H:%M:%S%.f%#z",  # an offset of whole hours: +02
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.fZ",
    "%Y-%m-%d %H:%M:%S%.f%:z",
    "%Y-%m-%d %H:%M:%S%.f%z",
    "%Y-%m-%d %H:%M:%S%.f%#z",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%MZ",  # ISO 8601 allows leaving out the seconds, with a zone too
    "%Y-%m-%dT%H:%M%:z",
    "%Y-%m-%dT%H:%M%z",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%MZ",
    "%Y-%m-%d %H:%M%:z",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
)
_NOT_PLAIN_INT = r"^(\+|-0|0.)"
_OFFSET = r"\d[+-]\d\d:?\d\d$"
_INT_AS_FLOAT = r"^(0|-?[1-9]\d*)(\.0+)?$"  # 15.0: an integer id written by a float column
_INT_AS_FLOAT_TAIL = r"\.0+$"
_FINER_FRACTION = r"\d:\d\d\.\d{7}"  # a date-time's seconds past the microsecond
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_MS_ABOVE, _US_ABOVE, _NS_ABOVE = 1e11, 1e14, 1e17
TIME_UNITS = ("auto", "s", "ms", "us", "ns", ORDINAL)
UNIT_SCALE = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}


_SEP_WORDS = {"\\t": "\t", "tab": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}


def separator(sep: str) -> str:
    """A field separator as given on a command line: one character, or the escape ``\\t`` (as
    typed in single quotes) or a name (``tab``, ``comma``, ``semicolon``, ``pipe``, ``space``)."""
    sep = _SEP_WORDS.get(sep.lower() if len(sep) > 1 else sep, sep)
    if len(sep) != 1:
        raise ConfigError(
            f"--sep: expected one character (',', ';', '|', or a tab: --sep '\\t' or --sep tab), "
            f"found {sep!r}"
        )
    return sep


@dataclass(frozen=True)
class ReadOptions:
    """How to map a file's columns and read its values: see :func:`load_interactions`.

    ``time_unit`` is one of :data:`TIME_UNITS` (``None`` = ``"auto"``); ``max_id_length`` and
    ``time_outliers`` are the limits of :mod:`warmrec.data.checks`.
    """

    columns: dict[str, str] | None = None
    sep: str | None = None
    order: str | None = None
    no_timestamp: bool = False
    time_unit: str | None = None
    max_id_length: int = MAX_ID_LENGTH
    time_outliers: str = "error"
    names: tuple[str, ...] | None = None
    """The columns of a text file without a header line, in order (None: line 1 names them)."""

    def __post_init__(self) -> None:
        if self.sep is not None:
            object.__setattr__(self, "sep", separator(self.sep))
        if self.names is not None:
            names = tuple(str(n).strip() for n in self.names)
            twice = sorted({n for n in names if names.count(n) > 1})
            if not names or not all(names) or twice:
                found = f"{', '.join(twice)} twice" if twice else repr(list(self.names))
                raise ConfigError(
                    f"names: expected distinct, non-empty column names, found {found}"
                )
            object.__setattr__(self, "names", names)
        if self.time_unit is not None and self.time_unit not in TIME_UNITS:
            raise ConfigError(
                f"unknown time unit {self.time_unit!r}: expected one of {', '.join(TIME_UNITS)}"
            )
        if self.order is not None and self.no_timestamp:
            raise ConfigError("pass either --order COLUMN or --no-timestamp, not both")
        if (self.order is not None or self.no_timestamp) and self.time_unit not in (
            None,
            "auto",
            ORDINAL,
        ):
            what = "--order" if self.order is not None else "--no-timestamp"
            raise ConfigError(
                f"{what} gives event positions, not times: --time-unit {self.time_unit} "
                "does not apply (leave it out, or use --time-unit ordinal)"
            )
        if not isinstance(self.max_id_length, int) or self.max_id_length < 1:
            raise ConfigError(
                f"max_id_length must be a positive integer, found {self.max_id_length!r}"
            )
        if self.time_outliers not in TIME_OUTLIERS:
            raise ConfigError(
                f"time_outliers must be one of {', '.join(TIME_OUTLIERS)}, "
                f"found {self.time_outliers!r}"
            )

    @property
    def ordinal(self) -> bool:
        """Whether the timestamps are event positions (not seconds)."""
        return self.time_unit == ORDINAL or self.order is not None or self.no_timestamp

    @property
    def unit(self) -> str | None:
        """The unit of numeric timestamps, ``None`` to tell it from their size."""
        return None if self.time_unit in (None, "auto", ORDINAL) else self.time_unit


def file_order(n: int) -> pl.Expr:
    """The timestamp column for logs whose only time information is the row order."""
    return pl.int_range(0, n, dtype=pl.Int64).cast(pl.Float64).alias(TIME)


def align_keys(
    df: pl.DataFrame, feats: pl.DataFrame | None, key: str
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Give the key column the same type in the log and the feature table (strings if they differ)."""
    if feats is None or key not in df.columns or df[key].dtype == feats[key].dtype:
        return df, feats
    return df.with_columns(pl.col(key).cast(pl.Utf8)), feats.with_columns(pl.col(key).cast(pl.Utf8))


def sample_dtypes(
    path: Path,
    mapping: dict[str, str],
    *,
    sep: str,
    has_header: bool = True,
    names: Sequence[str] | None = None,
    quote_char: str | None = '"',
    n: int = 10_000,
) -> dict[str, pl.DataType]:
    """Native types for the mapped columns, judged on the first ``n`` rows read as text:
    timestamps and ratings Float64 if the sample holds numbers (a value later in the file that
    is not one makes :func:`read_text` read the file again as text, and the checks name its
    line), timestamps that are integer nanoseconds Int64 (:func:`_nanosecond_text`). Ids are
    never given a native type: parsed as integers, ``"007"`` after the sample would silently
    become user 7; they are read as text and :func:`normalise_ids` judges the whole column.
    """
    head = read_text(
        path,
        sep=sep,
        has_header=has_header,
        names=names,
        n_rows=n,
        quote_char=quote_char,
        select=sorted(set(mapping.values())),
    )
    out: dict[str, pl.DataType] = {}
    for canon, col in mapping.items():
        s = head[col]
        if canon in (TIME, RATING) and _all_numbers(s):
            out[col] = pl.Int64 if canon == TIME and _nanosecond_text(s) else pl.Float64
    extras = {col for canon, col in mapping.items() if canon not in CANONICAL_ORDER}
    return {col: dtype for col, dtype in out.items() if col not in extras}


def _nanosecond_text(s: pl.Series) -> bool:
    """Integers of 18 digits or more: nanoseconds since the epoch, which Float64 would round to
    256 ns (events that close would tie); read as Int64 they keep their order
    (:func:`finer_times`)."""
    text = s.drop_nulls().str.strip_chars()
    return bool(text.len() and text.str.contains(r"^\d{18,}$").all())


def _all_numbers(s: pl.Series) -> bool:
    return s.str.strip_chars().cast(pl.Float64, strict=False).null_count() == s.null_count()


# --------------------------------------------------------------------------- columns


def resolve_columns(found: Sequence[str], opts: ReadOptions, src: Source) -> dict[str, str]:
    """Map canonical (and extra) names to file columns; raise naming what is missing."""
    found = list(found)
    mapping: dict[str, str] = {}
    roles: dict[str, str] = {}
    for canon, col in (opts.columns or {}).items():
        role = next((c for c, names in ALIASES.items() if _norm(canon) in names), None)
        if canon not in ALIASES and role is not None:
            raise ConfigError(
                f"--col {canon}={col}: {canon!r} is not a column role; did you mean --col "
                f"{role}={col}? (roles: {', '.join(CANONICAL_ORDER)}; any other name keeps the "
                "column as a feature)"
            )
        if canon in ALIASES and col in roles:
            raise ConfigError(
                f"--col: the column {col!r} is mapped to both {roles[col]} and {canon}; each "
                "role needs a column of its own"
            )
        if canon in ALIASES:
            roles[col] = canon
        if col not in found:
            raise DataError(
                "the column mapping names a column that is not in the file",
                path=src.path,
                field=canon,
                expected=f"a column '{col}'",
                found=describe_header(found, src.sep),
            )
        mapping[canon] = col
    if opts.order is not None:
        if opts.order not in found:
            raise DataError(
                "the order column is not in the file",
                path=src.path,
                field="order",
                expected=f"a column '{opts.order}'",
                found=describe_header(found, src.sep),
            )
        mapping[TIME] = opts.order
    for canon in ALIASES:
        if canon not in mapping:
            col = find_alias(found, canon, set(mapping.values()), path=src.path)
            if col is not None:
                mapping[canon] = col
    if opts.no_timestamp:
        mapping.pop(TIME, None)
    for canon in ALIASES:  # a role left without its column because another role took it
        if canon in mapping:
            continue
        col = find_alias(found, canon, set(), path=src.path)
        taken = [k for k, v in mapping.items() if v == col and k != canon]
        if col is not None and taken:
            flag = "--order" if taken[0] == TIME and opts.order == col else f"--col {taken[0]}"
            raise ConfigError(
                f"{src.path}: {flag} takes the column {col!r}, which is the {canon} column by "
                f"its name: each role needs a column of its own (give {taken[0]} another "
                f"column, or the {canon} ids with --col {canon}=<name>)"
            )
    _require_columns(mapping, found, opts, src)
    _refuse_duplicates(mapping, found, src)
    return mapping


def _refuse_duplicates(mapping: dict[str, str], found: list[str], src: Source) -> None:
    """Refuse a header that names a column the mapping uses more than once."""
    for canon, col in mapping.items():
        at = [i + 1 for i, c in enumerate(found) if c == col]
        if len(at) > 1:
            raise DataError(
                f"duplicated column {col!r} in the header: which copy holds the "
                f"{canon} values is ambiguous",
                path=src.path,
                line=None if src.first_line is None else 1,
                field=canon,
                expected="each column name once (rename one copy)",
                found=f"{col!r} at columns {', '.join(map(str, at))} of "
                f"{describe_header(found, src.sep)}",
            )


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name).lower()


def find_alias(
    found: Sequence[str], canon: str, taken: set[str], *, path: str | Path | None = None
) -> str | None:
    """The column of ``found`` that holds ``canon``: the canonical name itself, else the one
    column whose name is a common alias (:data:`ALIASES`); ``None`` if none is.

    Two different alias columns (``date`` and ``time``, ``created_at`` and ``event_time``) are
    ambiguous: a :class:`DataError` names both, and the column mapping settles it.
    """
    if canon in found and canon not in taken:
        return canon
    hits = list(dict.fromkeys(c for c in found if _norm(c) in ALIASES[canon] and c not in taken))
    if len(hits) > 1:
        what = "the timestamp" if canon == TIME else f"the {canon}"
        raise DataError(
            f"two columns could be {what}",
            path=path,
            field=canon,
            expected=f"one of them chosen with columns={{'{canon}': '<column>'}}",
            found=" and ".join(repr(c) for c in hits[:2])
            + (f" (and {len(hits) - 2} more)" if len(hits) > 2 else ""),
        )
    return hits[0] if hits else None


def _require_columns(
    mapping: dict[str, str], found: list[str], opts: ReadOptions, src: Source
) -> None:
    head = describe_header(found, src.sep)
    if ITEM not in mapping:
        raise DataError(
            "no item column",
            path=src.path,
            field=ITEM,
            expected="a column item_id/ItemId/item/product_id/video_id/... or "
            "columns={'item_id': '<name>'}",
            found=head,
        )
    if SESSION not in mapping and USER not in mapping:
        raise DataError(
            "no session or user column",
            path=src.path,
            field=SESSION,
            expected="a column session_id/SessionId/session or user_id/UserId/user, "
            "or columns={'session_id': '<name>'}",
            found=head,
        )
    if TIME not in mapping and not opts.no_timestamp:
        raise DataError(
            "no timestamp column",
            path=src.path,
            field=TIME,
            expected="a column timestamp/time/ts/datetime/date/created_at/event_time, or "
            "columns={'timestamp': "
            "'<name>'}; for a log without time pass order='<column>' "
            "(an order column becomes the timestamp) or no_timestamp=True "
            "(file order becomes the timestamp)",
            found=head,
        )


def describe_header(found: Sequence[str], sep: str | None) -> str:
    """The columns found, with a hint when the separator looks wrong."""
    text = f"columns {', '.join(repr(c) for c in found)}" if found else "no columns"
    numbers = [bool(_NUMBER.match(c)) for c in found]
    if found and all(numbers) and len(found) == 2:
        text += (
            " (the first line looks like data, not a header: a headerless 'user item' file is "
            "the SASRec format, read it with --format sasrec)"
        )
    elif any(numbers):  # a column is rarely named by a number: the first line is data
        text += (
            " (the first line looks like data, not a header; name its columns with --names "
            "user_id,item_id,... or add a header line)"
        )
        return text
    if sep is not None and len(found) == 1:
        other = [c for c in SEPARATORS if c != sep and c != " " and c in found[0]]
        if other:
            text += (
                f" (one column when split on {sep_name(sep)}: the header looks "
                f"{sep_name(other[0])}-separated; pass sep={other[0]!r})"
            )
    return text


# --------------------------------------------------------------------------- values


def to_canonical(
    raw: pl.DataFrame,
    mapping: dict[str, str],
    src: Source,
    opts: ReadOptions | None = None,
    *,
    time_format: str | None = None,
) -> pl.DataFrame:
    """Rename mapped columns, convert ids/timestamps/ratings by the rules above, validate."""
    opts = opts or ReadOptions()
    df = raw.select([pl.col(col).alias(canon) for canon, col in mapping.items()])
    converted = {c: _convert(df[c], c, src, opts, time_format) for c in df.columns}
    df = pl.DataFrame(converted)
    if opts.no_timestamp:
        df = df.with_columns(file_order(df.height))
    out = finish(df, src, opts)
    if TIME in df.columns and not opts.ordinal:
        full = finer_times(raw[mapping[TIME]], opts.unit)
        if full is not None:
            out = order_ties(out, full)
    return out


def _convert(
    s: pl.Series, name: str, src: Source, opts: ReadOptions, time_format: str | None
) -> pl.Series:
    if name in ID_COLUMNS:
        return normalise_ids(s)
    if name == TIME:
        if opts.order is not None:  # named as the file names it (--order COLUMN)
            return to_float(s, src, opts.order, expected="a number (the order column)")
        if opts.ordinal:
            return to_float(s, src, TIME, expected="a number (a position: --time-unit ordinal)")
        return to_seconds(s, src, fmt=time_format, unit=opts.unit)
    if name == RATING:
        return to_float(s, src, RATING)
    return infer_extra(s)


def finish(df: pl.DataFrame, src: Source, opts: ReadOptions | None = None) -> pl.DataFrame:
    """Check required values (naming the line), order the columns and validate.

    Also runs the checks of :mod:`warmrec.data.checks` (ids; one user per session; negative and
    far outlying timestamps unless ``opts`` says the timestamps are positions).
    """
    opts = opts or ReadOptions()
    key = SESSION if SESSION in df.columns else USER
    gaps = df.select(pl.any_horizontal(pl.all().is_null())).to_series()
    if gaps.any():  # a line with fewer fields than the header reads as nulls: say so
        short = src.short_line(int(gaps.arg_max()))
        if short is not None:
            raise short
    for col in (key, ITEM, TIME, RATING):
        if col in df.columns and df[col].null_count():
            row = int(df[col].is_null().arg_max())
            blank = all(v is None for v in df.row(row))
            raise src.row_error(
                "missing value",
                row,
                col,
                expected="a value",
                found="an empty line (or a line of empty fields)"
                if blank
                else "an empty cell" + _sep_hint(df, row, src),
            )
    for col in (TIME, RATING):  # NaN is no null, and sorts after every time
        if col in df.columns and df[col].dtype.is_float() and df[col].is_nan().any():
            row = int(df[col].is_nan().arg_max())
            raise src.row_error(
                "missing value", row, col, expected="a number", found="NaN (not a number)"
            )
        if col in df.columns and df[col].dtype.is_float() and df[col].is_infinite().any():
            row = int(df[col].is_infinite().arg_max())
            raise src.row_error(
                "not a finite number", row, col, expected="a finite number",
                found=f"{df[col][row]} (infinity)",
            )  # fmt: skip
    check_ids(df, src, opts.max_id_length)
    check_sessions(df, src)
    if not opts.ordinal and TIME in df.columns and df[TIME].dtype.is_numeric():
        check_times(df, src, opts.time_outliers)
    front = [c for c in CANONICAL_ORDER if c in df.columns]
    df = df.select(front + [c for c in df.columns if c not in front])
    return validate_interactions(df, source=str(src.path))


def _sep_hint(df: pl.DataFrame, row: int, src: Source) -> str:
    if src.sep is None:
        return ""
    cells = [str(v) for v in df.row(row) if isinstance(v, str)]
    other = [c for c in SEPARATORS if c not in (src.sep, " ") and any(c in v for v in cells)]
    return (
        (f" (the line holds {sep_name(other[0])}s: is the separator {sep_name(src.sep)} right?)")
        if other
        else ""
    )


def normalise_ids(s: pl.Series) -> pl.Series:
    """Text ids that are all plain decimal integers become Int64; so do ids that are all
    integers written as floats (``15.0``: a float column exported by pandas, where ``15`` and
    ``15.0`` would otherwise be two items, and an item file's ``15`` would not meet the log's
    ``15.0``); other ids are unchanged."""
    if s.dtype != pl.Utf8:
        return s
    as_int = s.cast(pl.Int64, strict=False)
    if as_int.null_count() == s.null_count() and not s.str.contains(_NOT_PLAIN_INT).any():
        return as_int
    if s.str.contains(_INT_AS_FLOAT).all():
        as_int = s.str.replace(_INT_AS_FLOAT_TAIL, "").cast(pl.Int64, strict=False)
        if as_int.null_count() == s.null_count():  # not past Int64 (20 digits stay text)
            return as_int
    return s


def integer_text(s: pl.Series) -> pl.Series:
    """Text ids that are integers written as floats (``"15.0"``) as the integer is written
    (``"15"``); the others unchanged (where one source read such ids as integers and another
    kept them as text beside other ids, they meet as the same text)."""
    fixed = pl.when(s.str.contains(_INT_AS_FLOAT)).then(s.str.replace(_INT_AS_FLOAT_TAIL, ""))
    return pl.select(fixed.otherwise(s)).to_series().alias(s.name)


def infer_extra(s: pl.Series) -> pl.Series:
    """An extra text column as Int64 or Float64 when every value is one, else unchanged."""
    if s.dtype != pl.Utf8:
        return s
    as_int = normalise_ids(s)
    if as_int.dtype != pl.Utf8:
        return as_int
    as_float = s.cast(pl.Float64, strict=False)
    return as_float if as_float.null_count() == s.null_count() else s


def to_float(
    s: pl.Series, src: Source, column: str, *, expected: str = "a number", rows: bool = True
) -> pl.Series:
    """Cast to Float64, raising on the first value that is not a number."""
    if s.dtype.is_numeric():
        return s.cast(pl.Float64)
    text = s.cast(pl.Utf8).str.strip_chars()
    out = text.cast(pl.Float64, strict=False)
    _raise_unparsed(out, text, src, column, expected, rows=rows)
    return out


def to_seconds(
    s: pl.Series,
    src: Source,
    *,
    fmt: str | None = None,
    column: str = TIME,
    unit: str | None = None,
) -> pl.Series:
    """Unix seconds (Float64) from numbers, datetimes or ISO 8601 text (see module docstring).

    ``unit`` (``s``, ``ms``, ``us``, ``ns``) says what numbers count; ``None`` tells it from
    their size (:func:`scale_epoch`). Date-times carry their own unit: with ``unit`` given
    they are refused, as the option then contradicts the file.
    """
    if isinstance(s.dtype, pl.Datetime) or s.dtype == pl.Date:
        _refuse_unit(unit, src, column, str(s.dtype))
        return datetime_seconds(s)
    if s.dtype.is_numeric():
        return _scale(s.cast(pl.Float64), unit, src, column)
    if s.dtype != pl.Utf8:
        raise DataError(
            "timestamps must be numbers or date-times",
            path=src.path,
            field=column,
            expected=TIME_EXPECTED,
            found=str(s.dtype),
        )
    text = s.str.strip_chars()
    if fmt is None and text.str.ends_with("Z").any() and text.str.contains(_OFFSET).any():
        text = text.str.replace(r"Z$", "+00:00")  # "...Z" and "...+00:00": both ISO 8601, UTC
    present = text.drop_nulls()
    if present.len() == 0:
        return text.cast(pl.Float64, strict=False)
    if fmt is None and _is_number(present[0]):
        return _scale(to_float(text, src, column, expected=TIME_EXPECTED), unit, src, column)
    _refuse_unit(unit, src, column, f"date-time text {present[0]!r}")
    fmt = fmt or iso_format(present[0])
    try:
        if fmt is None:
            raise ValueError("not ISO 8601")
        dt = text.str.to_datetime(format=fmt, strict=False, time_unit="us")
    except (ValueError, pl.exceptions.PolarsError) as exc:
        row = int(text.is_not_null().arg_max())
        raise src.row_error(
            "unparsable timestamp", row, column, expected=TIME_EXPECTED, found=repr(present[0])
        ) from exc
    layout = (
        f"{TIME_EXPECTED} in the layout of the column's first value {present[0]!r} (one layout "
        "per column: with or without a time zone, seconds, fractions alike)"
    )
    _raise_unparsed(dt, text, src, column, layout)
    return datetime_seconds(dt)


def _scale(s: pl.Series, unit: str | None, src: Source, column: str) -> pl.Series:
    if unit is not None:
        return s / UNIT_SCALE[unit]
    _refuse_mixed_units(s, src, column)
    _warn_calendar_digits(s, src, column)
    told = epoch_unit(s)
    if told != "s":  # said once: figures are shown in seconds, the file holds another unit
        name = _UNIT_NAMES[list(UNIT_SCALE).index(told)]
        warnings.warn(
            f"{src.path}: field '{column}': times read as {name} since the epoch (told by their "
            f"size) and shown in seconds; --time-unit says so and silences this",
            DataNote,
            stacklevel=2,
        )
    return scale_epoch(s)


def _warn_calendar_digits(s: pl.Series, src: Source, column: str) -> None:
    """Warn where every time is an integer that reads as a date written YYYYMMDD
    (``20200101``: as Unix seconds, a few hours of August 1970) or a date and time written
    YYYYMMDDhhmmss (``20200101120000``: read as milliseconds by their size, the year 2610,
    an hour of them 10 s apart)."""
    v = s.drop_nulls()
    if v.len() == 0 or not bool(((v % 1) == 0).all()):
        return
    clock = bool(((v >= 19000101000000) & (v <= 21001231235959)).all())
    if clock:
        hh, mm, ss = (v // 10**4) % 100, (v // 100) % 100, v % 100
        if not bool(((hh <= 23) & (mm <= 59) & (ss <= 59)).all()):
            return
        d = v // 10**6
    elif bool(((v >= 19000101) & (v <= 21001231)).all()):
        d = v
    else:
        return
    month, day = (d // 100) % 100, d % 100
    if not bool(((month >= 1) & (month <= 12) & (day >= 1) & (day <= 31)).all()):
        return
    layout, fix = ("YYYYMMDDhhmmss", "2020-01-01 12:00:00") if clock else ("YYYYMMDD", "2020-01-01")
    read = (
        f"read by their size as {_UNIT_NAMES[list(UNIT_SCALE).index(epoch_unit(v))]} since "
        "the epoch, an hour of them is 10,000 units apart"
        if clock
        else f"read as Unix seconds they span {float(v.max() - v.min()) / 3600:.1f} hours of 1970"
    )
    warnings.warn(
        f"{src.path}: field '{column}': every time is a date written {layout} "
        f"(e.g. {int(v[0])}); {read}: write them as ISO dates ({fix}) or Unix seconds",
        DataWarning,
        stacklevel=2,
    )


_UNIT_NAMES = ("seconds", "milliseconds", "microseconds", "nanoseconds")


def _refuse_mixed_units(s: pl.Series, src: Source, column: str) -> None:
    """Epoch-like numbers (>= 1e8) whose sizes say two units -- some seconds, some
    milliseconds, say -- cannot be scaled as one column (:func:`scale_epoch` goes by the
    median, and the check of far outliers looks only past the 0.1 % quantiles): refused, naming
    the first value of the other unit, where they are more than 0.1 % of the column (fewer are
    left to that check, as bogus values)."""
    bounds = [_MS_ABOVE, _US_ABOVE, _NS_ABOVE]
    a = s.abs()
    big = a.filter(a.is_finite() & (a >= 1e8))
    if big.len() < 2 or np.digitize(big.min(), bounds) == np.digitize(big.max(), bounds):
        return  # one unit (the usual case, settled on two numbers)
    x = s.to_numpy()
    ok = np.isfinite(x) & (np.abs(x) >= 1e8)
    cls = np.digitize(np.abs(x), bounds)
    main = int(np.bincount(cls[ok]).argmax())
    other = ok & (cls != main)
    if int(other.sum()) <= max(1, len(x) // 1000):
        return
    row = int(other.argmax())
    first = int((ok & (cls == main)).argmax())
    raise src.row_error(
        "timestamps in two units",
        row,
        column,
        expected=f"one unit for the whole column (most values here are {_UNIT_NAMES[main]}, "
        f"e.g. {x[first]:.17g}; convert the others, or say the unit with --time-unit)",
        found=f"{x[row]:.17g}, {_UNIT_NAMES[int(cls[row])]} by its size "
        f"({int(other.sum()):,} such values)",
    )


def _refuse_unit(unit: str | None, src: Source, column: str, found: str) -> None:
    if unit is not None:
        raise DataError(
            f"--time-unit {unit} applies to numeric timestamps",
            path=src.path,
            field=column,
            expected="numbers (or leave --time-unit out: date-times carry their own unit)",
            found=found,
        )


def iso_format(value: str) -> str | None:
    """The first layout of :data:`ISO_FORMATS` that parses ``value``; ``None`` if none does.

    A column is parsed with the layout of its first value, so a value in another layout is
    reported with its line.
    """
    probe = pl.Series([value])
    for fmt in ISO_FORMATS:
        if probe.str.to_datetime(fmt, strict=False, time_unit="us").null_count() == 0:
            return fmt
    return None


def datetime_seconds(s: pl.Series) -> pl.Series:
    """Unix seconds of a Date/Datetime column (naive values are taken as UTC)."""
    if s.dtype == pl.Date:
        s = s.cast(pl.Datetime("us"))
    return s.dt.epoch("us").cast(pl.Float64) / 1e6


def finer_times(raw: pl.Series, unit: str | None = None) -> pl.Series | None:
    """The raw times of a column whose seconds can tie where its own values do not, as an
    orderable series; ``None`` for every other column. Seconds are Float64 (about a quarter of a
    microsecond apart at today's dates) and a date-time is taken to the microsecond
    (:func:`datetime_seconds`), so only finer values lose order: nanosecond date-times (as
    values or as ISO 8601 text with more than six digits of fractions), and
    integer nanoseconds since the epoch (``unit`` ``"ns"``, or told by their size), as numbers
    or as text."""
    if isinstance(raw.dtype, pl.Datetime):
        return raw if raw.dtype.time_unit == "ns" else None
    if unit not in (None, "ns"):
        return None
    if raw.dtype == pl.Utf8:
        longest = raw.str.len_bytes().max() or 0
        if not longest > 17:  # nanoseconds past 1e17 (1973)
            return None
        # 2020-01-01 10:00:00.1234567: 27 characters at least
        if unit is None and longest >= 27 and raw.str.contains(_FINER_FRACTION).any():
            return _nanosecond_datetimes(raw)
        ints = raw.str.strip_chars().cast(pl.Int64, strict=False)
        if ints.null_count() != raw.null_count():
            return None
        raw = ints
    if not raw.dtype.is_integer():
        return None
    if unit is None and not (
        (raw.max() or 0) > _NS_ABOVE and epoch_unit(raw.cast(pl.Float64)) == "ns"
    ):
        return None
    return raw


def _nanosecond_datetimes(raw: pl.Series) -> pl.Series | None:
    """ISO 8601 date-time text with fractions finer than the microsecond
    (``2020-01-01 10:00:00.123456789``, as pandas writes ``datetime64[ns]``) parsed to the
    nanosecond, in the layout of the column's first value (:func:`to_seconds`); ``None`` where
    that does not parse every value."""
    text = raw.str.strip_chars()
    if text.str.ends_with("Z").any() and text.str.contains(_OFFSET).any():
        text = text.str.replace(r"Z$", "+00:00")
    present = text.drop_nulls()
    fmt = iso_format(present[0]) if present.len() else None
    if fmt is None:
        return None
    parsed = text.str.to_datetime(format=fmt, strict=False, time_unit="ns")
    return parsed if parsed.null_count() == text.null_count() else None


def order_ties(df: pl.DataFrame, full: pl.Series) -> pl.DataFrame:
    """``df`` (canonical, times in seconds) with the rows whose seconds tie put in the order of
    their ``full`` times (:func:`finer_times`), each into one of its tie group's own rows; the
    other rows stay where they are. Every later sort is stable (a tie keeps row order), so
    events a few nanoseconds apart then come in time order rather than in file order."""
    rows = pl.int_range(df.height, eager=True, dtype=pl.Int64)
    times = pl.DataFrame({"t": df[TIME], "f": full, "r": rows})
    slots = times.sort(["t", "r"])["r"].to_numpy()  # each tie group's rows, in row order
    members = times.sort(["t", "f", "r"])["r"].to_numpy()  # the same groups, by full time
    if np.array_equal(slots, members):
        return df
    take = np.empty(df.height, dtype=np.int64)
    take[slots] = members
    return df[take]


def scale_epoch(s: pl.Series) -> pl.Series:
    """Numbers that look like milliseconds (or micro-, nanoseconds) since the epoch, as seconds.

    The unit is judged on the median magnitude (above 1e17: ns, 1e14: us, 1e11: ms, else s),
    so that one bogus value cannot rescale a whole column; it is then refused as an outlier
    (:mod:`warmrec.data.checks`).
    """
    unit = epoch_unit(s)
    return s if unit == "s" else s / UNIT_SCALE[unit]


def epoch_unit(s: pl.Series) -> str:
    """The unit (``s``, ``ms``, ``us``, ``ns``) that :func:`scale_epoch` reads numbers in,
    judged on their median magnitude."""
    mid = s.abs().median()
    if mid is None:
        return "s"
    for unit, above in (("ns", _NS_ABOVE), ("us", _US_ABOVE), ("ms", _MS_ABOVE)):
        if mid > above:
            return unit
    return "s"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _raise_unparsed(
    parsed: pl.Series,
    text: pl.Series,
    src: Source,
    column: str,
    expected: str,
    *,
    rows: bool = True,
) -> None:
    bad = parsed.is_null() & text.is_not_null()
    if bad.any():
        row = int(bad.arg_max())
        value = repr(text[row])
        if not rows:
            raise DataError(
                "unparsable value", path=src.path, field=column, expected=expected, found=value
            )
        raise src.row_error(f"unparsable {column}", row, column, expected=expected, found=value)


def canonical_table(data: Any, what: str = "the interaction table") -> pl.DataFrame:
    """A table given in Python (a Polars or pandas DataFrame with the canonical column names)
    checked and cast as a log read from a file is (:func:`validate_interactions`): times as
    float seconds (a datetime column converted to the microsecond, numbers in milliseconds or
    finer told by their size; nanoseconds that tie there ordered by :func:`order_ties`), no missing, NaN, infinite or negative time, none past the
    calendar or far from the others, integer or text ids (text that is all integers read as
    integers), a session id under one user only (:func:`check_sessions`). A text time column
    was sorted as text (``"10"`` before ``"8"``): it is refused."""
    if not isinstance(data, pl.DataFrame):
        if type(data).__module__.split(".")[0] == "pandas" and hasattr(data, "columns"):
            data = pl.from_pandas(data)
        else:
            raise DataError(
                f"{what}: not a table",
                expected="a polars or pandas DataFrame (or a path: warmrec.load_interactions)",
                found=type(data).__name__,
            )
    # as a file's columns are read: text ids that are all integers (or integral floats, as
    # pandas writes them) become integers, so "1" and "1.0" are one item
    ids = [c for c in (SESSION, USER, ITEM) if c in data.columns and data[c].dtype == pl.Utf8]
    if ids:
        data = data.with_columns(normalise_ids(data[c]) for c in ids)
    numeric_time = TIME in data.columns and data[TIME].dtype.is_numeric()
    full = finer_times(data[TIME]) if TIME in data.columns else None
    if TIME in data.columns and isinstance(data[TIME].dtype, pl.Datetime | pl.Date):
        data = data.with_columns(
            pl.col(TIME).cast(pl.Datetime("us")).dt.epoch("us").cast(pl.Float64) / 1e6
        )  # microseconds, as a file's date-times (not cut to milliseconds)
    out = validate_interactions(data, source=what)
    src = Source(Path(what), first_line=None)
    if numeric_time:  # milliseconds (or finer) told by their size, as in a file
        out = out.with_columns(scale_epoch(out[TIME]))
    check_ids(out, src)
    check_sessions(out, src)
    check_times(out, src)
    return out if full is None else order_ties(out, full)
