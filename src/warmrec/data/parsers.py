"""Parsers for the raw files of the named public datasets (see :mod:`warmrec.data.catalogue`).

Each ``parse_*`` function takes a local path (the raw file or a folder holding it, searched
recursively) and returns :class:`~warmrec.data.interactions.Interactions`. They build on the
generic readers (:mod:`warmrec.data.formats`, :mod:`warmrec.data.text`,
:mod:`warmrec.data.columns`), never on :mod:`warmrec.data.readers`, so that the readers can
dispatch to named datasets without an import cycle.

Raw formats and the assumptions each parser makes (all results are canonical tables, see
:mod:`warmrec.data.schema`; rows keep file order):

=====================  ============================================================================
movielens-100k         ``u.data``: ``user item rating timestamp``, tab-separated, no header.
                       Beside it, optional ``u.item`` (latin-1, ``|``-separated, 19 genre flags ->
                       ``genres`` list) and ``u.user`` -> feature tables.
movielens-1m           ``ratings.dat``: ``UserID::MovieID::Rating::Timestamp``. Optional
                       ``movies.dat`` (``MovieID::Title::Genres``, genres ``|``-separated,
                       latin-1) and ``users.dat`` (``UserID::Gender::Age::Occupation::Zip``).
movielens-20m / -25m   ``ratings.csv`` with header ``userId,movieId,rating,timestamp``; optional
                       ``movies.csv`` (``movieId,title,genres``).
yoochoose-clicks       ``yoochoose-clicks.dat``: ``session,timestamp,item,category``, no header,
                       ISO time ``2014-04-07T10:51:09.277Z``. ``category`` -> item features (the
                       last value seen per item, in file order).
yoochoose-buys         ``yoochoose-buys.dat``: ``session,timestamp,item,price,quantity``, no header;
                       ``price`` (Float64) and ``quantity`` (Int64) kept as columns.
amazon-*               2014 "ratings only" CSV: ``user,item,rating,timestamp``, no header; ids are
                       kept as strings (ASINs have leading zeros). ``amazon-ratings`` is the
                       format for any category file; ``amazon-books`` etc. add the URL.
mars                   MARS (Mandarine Academy MOOC, Hafsa et al., Data in Brief 2023), the English
                       files: ``implicit_ratings_en.csv`` (``item_id,user_id,created_at``, page
                       views, ``YYYY-MM-DD HH:MM:SS`` taken as UTC) is the log (``log="explicit"``
                       or the dataset ``mars-explicit``: ``explicit_ratings_en.csv``,
                       ``user_id,item_id,watch_percentage,created_at,rating``, rating 1-10;
                       ``log="merged"`` or the dataset ``mars-merged``: both files' rows,
                       ``user_id,item_id,created_at`` only, views then watch events in file
                       order: the outside anchor's log, 25,567 events).
                       Beside it, ``items_en.csv`` -> item features (``name`` -> ``title``,
                       ``description``; ``Software``/``Job``/``Theme`` written ``['OneDrive']``
                       -> lists ``software``/``job``/``theme``; ``Difficulty`` -> ``difficulty``,
                       ``type``, ``duration`` (s), ``created_at`` (a year) -> ``year``,
                       ``nb_views``, ``language``; ``N/A`` -> null, ``[]`` -> empty list),
                       ``users_en.csv`` -> user features (``job``), and with the implicit log the
                       explicit file as ``Interactions.ratings``. A single CSV of another layout
                       reads with ``columns={...}``.
hahow                  ASSUMED from the NTU ADL 2022 Hahow course data: ``train.csv`` with
                       ``user_id,course_id`` where ``course_id`` is a space-separated list of the
                       user's purchases, taken to be in purchase order (there is no time): the
                       timestamp is the position in file order, list order within a user
                       (an ordinal log: ``time_unit`` ``"ordinal"``).
                       ``parts=("train.csv", "val_seen.csv")`` appends later purchases.
                       ``courses.csv`` -> item features (``groups``, ``sub_groups``, ``topics`` as
                       lists split on ``,``); ``users.csv`` -> user features (``interests``,
                       ``occupation_titles``, ``recreation_names`` as lists).
online-retail          UCI Online Retail (I or II) exported to CSV (UTF-8 or latin-1), or the
                       ``.xlsx`` if the optional ``fastexcel`` package is installed. Columns
                       ``InvoiceNo``/``Invoice``, ``StockCode``, ``InvoiceDate`` (``M/D/YYYY H:MM``
                       or ISO), ``CustomerID``/``Customer ID``, ``Quantity``, ``UnitPrice``/
                       ``Price``, ``Description``. session = invoice, user = customer (may be
                       missing). Cancellations (invoice ``C...``) and rows with quantity <= 0 are
                       dropped unless ``keep_returns=True``. ``Description`` -> item features.
diginetica             ``train-item-views.csv``: ``sessionId;userId;itemId;timeframe;eventdate``
                       with header; timestamp = ``eventdate`` (UTC midnight) + ``timeframe`` ms.
                       ``userId`` ``NA``/empty -> null.
retailrocket           ``events.csv``: ``timestamp,visitorid,event,itemid,transactionid`` with
                       header, timestamp in ms. user = visitor; ``event`` and ``transaction_id``
                       kept; ``events=("view",)`` keeps only those event types.
sasrec                 SASRec's plain text: ``user item`` per line, space-separated, no header;
                       file order is time order (timestamp = line index; an ordinal log,
                       ``time_unit`` ``"ordinal"``: no time span in days). ``sasrec-ml-1m`` adds
                       the URL of the SASRec authors' preprocessed MovieLens-1M file.
=====================  ============================================================================
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from warmrec.data.columns import (
    ReadOptions,
    align_keys,
    file_order,
    finish,
    integer_text,
    normalise_ids,
    sample_dtypes,
    to_canonical,
    to_float,
    to_seconds,
)
from warmrec.data.features import check_keys, read_feature_table
from warmrec.data.formats import read_file
from warmrec.data.interactions import Interactions
from warmrec.data.schema import ITEM, ORDINAL, RATING, SECONDS, SESSION, TIME, USER
from warmrec.data.text import (
    Source,
    first_line,
    read_text,
    require_rows,
    sniff_header,
)
from warmrec.errors import DataError

# --------------------------------------------------------------------------- helpers


def locate(path: Path, names: Sequence[str]) -> Path:
    """``path`` if it is a file, else the first of ``names`` (glob patterns) found under it."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise DataError(
            "no such file or folder",
            path=path,
            expected="an existing file or folder",
            found="nothing at that path",
        )
    for name in names:
        found = sorted(f for f in path.glob(name) if f.is_file())
        found = found or sorted(f for f in path.rglob(name) if f.is_file())
        if len(found) == 1:
            return found[0]
        if found:
            raise DataError(
                "several candidate files; pass the file itself",
                path=path,
                expected=f"one file {name}",
                found=", ".join(str(p.relative_to(path)) for p in found[:5]),
            )
    raise DataError(
        "dataset file not found",
        path=path,
        expected=" or ".join(names),
        found=", ".join(sorted(p.name for p in path.iterdir())[:10]) or "an empty folder",
    )


def _sibling(main: Path, name: str) -> Path | None:
    p = main.parent / name
    return p if p.is_file() else None


def _read_headerless(
    f: Path, sep: str, names: Sequence[str], *, ids_as_text: bool = False
) -> tuple[pl.DataFrame, Source]:
    """A headerless delimited log with fast native types sampled from its first rows."""
    first_line(f)  # empty file / bad first bytes
    src = Source(f, first_line=1, sep=sep)
    mapping = {n: n for n in names}
    dtypes = sample_dtypes(f, mapping, sep=sep, has_header=False, names=names)
    if ids_as_text:
        dtypes = {k: v for k, v in dtypes.items() if k not in (SESSION, USER, ITEM)}
    raw = read_text(f, sep=sep, has_header=False, names=names, dtypes=dtypes, quote_char=None)
    require_rows(raw, src)
    return raw, src


def read_multichar(
    path: Path, delim: str, names: Sequence[str], *, encoding: str = "utf8", first: int = 1
) -> tuple[pl.DataFrame, Source]:
    """A headerless file whose separator is several characters (MovieLens' ``::``)."""
    src = Source(path, first_line=first, sep=delim)
    lines = read_text(
        path, sep="\x00", has_header=False, names=["line"], quote_char=None, encoding=encoding
    )["line"]
    require_rows(lines.to_frame(), src)
    parts = lines.str.split(delim)
    bad = parts.list.len().fill_null(0) != len(names)
    if bad.any():
        row = int(bad.arg_max())
        raise src.row_error(
            "wrong number of fields",
            row,
            None,
            expected=f"{len(names)} fields separated by {delim!r}",
            found="an empty line" if lines[row] is None else repr(lines[row]),
        )
    return pl.DataFrame({n: parts.list.get(i) for i, n in enumerate(names)}), src


def _identity(raw: pl.DataFrame, cols: Sequence[str]) -> dict[str, str]:
    return {c: c for c in cols if c in raw.columns}


def _split_list(col: str, sep: str) -> pl.Expr:
    return pl.col(col).str.split(sep).list.eval(pl.element().str.strip_chars()).alias(col)


def _key_features(df: pl.DataFrame, key: str) -> pl.DataFrame:
    return df.with_columns(normalise_ids(df[key])).select(key, pl.exclude(key))


def _result(
    df: pl.DataFrame,
    src: Path,
    items: pl.DataFrame | None = None,
    users: pl.DataFrame | None = None,
    *,
    time_unit: str = SECONDS,
) -> Interactions:
    df, items = align_keys(df, items, ITEM)
    df, users = align_keys(df, users, USER)
    return Interactions(
        df, item_features=items, user_features=users, source=str(src), time_unit=time_unit
    )


# --------------------------------------------------------------------------- MovieLens

ML100K_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)


def parse_movielens_100k(path: Path) -> Interactions:
    """MovieLens 100K ``u.data`` (+ ``u.item``, ``u.user`` when present)."""
    f = locate(path, ("u.data",))
    raw, src = _read_headerless(f, "\t", [USER, ITEM, RATING, TIME])
    df = to_canonical(raw, _identity(raw, [USER, ITEM, RATING, TIME]), src)
    items = users = None
    if (p := _sibling(f, "u.item")) is not None:
        names = [ITEM, "title", "release_date", "video_release_date", "imdb_url", *ML100K_GENRES]
        it = read_text(
            p, sep="|", has_header=False, names=names, quote_char=None, encoding="latin-1"
        )
        genres = pl.concat_list([pl.when(pl.col(g) == "1").then(pl.lit(g)) for g in ML100K_GENRES])
        items = _key_features(
            it.select(ITEM, "title", "release_date", genres.list.drop_nulls().alias("genres")), ITEM
        )
    if (p := _sibling(f, "u.user")) is not None:
        us = read_text(
            p,
            sep="|",
            has_header=False,
            quote_char=None,
            encoding="latin-1",
            names=[USER, "age", "gender", "occupation", "zip_code"],
        )
        users = _key_features(us.with_columns(pl.col("age").cast(pl.Int64, strict=False)), USER)
    return _result(df, f, items, users)


def parse_movielens_1m(path: Path) -> Interactions:
    """MovieLens 1M ``ratings.dat`` (+ ``movies.dat``, ``users.dat`` when present)."""
    f = locate(path, ("ratings.dat",))
    first_line(f)
    raw, src = read_multichar(f, "::", [USER, ITEM, RATING, TIME])
    df = to_canonical(raw, _identity(raw, [USER, ITEM, RATING, TIME]), src)
    items = users = None
    if (p := _sibling(f, "movies.dat")) is not None:
        mv, _ = read_multichar(p, "::", [ITEM, "title", "genres"], encoding="latin-1")
        items = _key_features(mv.with_columns(_split_list("genres", "|")), ITEM)
    if (p := _sibling(f, "users.dat")) is not None:
        us, _ = read_multichar(
            p, "::", [USER, "gender", "age", "occupation", "zip_code"], encoding="latin-1"
        )
        users = _key_features(
            us.with_columns(pl.col("age", "occupation").cast(pl.Int64, strict=False)), USER
        )
    return _result(df, f, items, users)


def parse_movielens_csv(path: Path) -> Interactions:
    """MovieLens 20M/25M ``ratings.csv`` (+ ``movies.csv`` when present)."""
    f = locate(path, ("ratings.csv",))
    cols = {USER: "userId", ITEM: "movieId", RATING: "rating", TIME: "timestamp"}
    df = read_file(f, "csv", ReadOptions(columns=cols, sep=",")).interactions
    items = None
    if (p := _sibling(f, "movies.csv")) is not None:
        mv = read_text(p, sep=",").rename({"movieId": ITEM})
        items = _key_features(mv.with_columns(_split_list("genres", "|")), ITEM)
    return _result(df, f, items)


# --------------------------------------------------------------------------- YOOCHOOSE

YOOCHOOSE_TIME = "%Y-%m-%dT%H:%M:%S%.fZ"


def parse_yoochoose_clicks(path: Path) -> Interactions:
    """RecSys Challenge 2015 ``yoochoose-clicks.dat``."""
    f = locate(path, ("yoochoose-clicks.dat",))
    raw, src = _read_headerless(f, ",", [SESSION, TIME, ITEM, "category"])
    df = to_canonical(raw, _identity(raw, [SESSION, ITEM, TIME]), src, time_format=YOOCHOOSE_TIME)
    cats = (
        raw.select(pl.col(ITEM), pl.col("category"))
        .group_by(ITEM, maintain_order=True)
        .agg(pl.col("category").last())
    )
    return _result(df, f, _key_features(cats, ITEM))


def parse_yoochoose_buys(path: Path) -> Interactions:
    """RecSys Challenge 2015 ``yoochoose-buys.dat``."""
    f = locate(path, ("yoochoose-buys.dat",))
    raw, src = _read_headerless(f, ",", [SESSION, TIME, ITEM, "price", "quantity"])
    df = to_canonical(
        raw,
        _identity(raw, [SESSION, ITEM, TIME, "price", "quantity"]),
        src,
        time_format=YOOCHOOSE_TIME,
    )
    price = to_float(raw["price"], src, "price")
    qty = _whole_numbers(raw, "quantity", src).alias("quantity")
    return _result(df.with_columns(price, qty), f)


def _whole_numbers(raw: pl.DataFrame, col: str, src: Source) -> pl.Series:
    """``raw[col]`` as Int64, refusing (with its line) a value that is no number or not whole
    (a quantity of 2.5 had been cut to 2)."""
    values = to_float(raw[col], src, col, expected="a whole number")
    whole = (values == values.round(0)).fill_null(True)
    if not whole.all():
        row = int((~whole).arg_max())
        raise src.row_error(
            f"unparsable {col}", row, col, expected="a whole number", found=repr(raw[col][row])
        )
    return values.cast(pl.Int64)


# --------------------------------------------------------------------------- Amazon, MARS


def parse_amazon_ratings(path: Path) -> Interactions:
    """Amazon 2014 ratings-only CSV ``user,item,rating,timestamp`` (no header)."""
    f = locate(path, ("ratings_*.csv", "*.csv"))
    raw, src = _read_headerless(f, ",", [USER, ITEM, RATING, TIME], ids_as_text=True)
    df = to_canonical(raw, _identity(raw, [USER, ITEM, RATING, TIME]), src)
    return _result(df, f)


MARS_COLUMNS = {USER: "user_id", ITEM: "item_id", TIME: "created_at"}
MARS_EXTRAS = ("watch_percentage",)
MARS_LOGS = {
    "implicit": ("implicit_ratings*.csv", "*ratings*.csv", "*.csv"),
    "explicit": ("explicit_ratings*.csv",),
    "merged": ("implicit_ratings*.csv",),
}
MARS_ITEM_COLUMNS = {
    "name": "title",
    "description": "description",
    "Software": "software",
    "Job": "job",
    "Theme": "theme",
    "Difficulty": "difficulty",
    "type": "type",
    "duration": "duration",
    "created_at": "year",
    "nb_views": "nb_views",
    "language": "language",
}
"""``items_en.csv`` column -> item feature name (columns absent from a file are skipped)."""
MARS_LISTS = ("software", "job", "theme")
MARS_NUMBERS = ("duration", "nb_views")
MARS_MISSING = "N/A"


def parse_mars(
    path: Path, *, log: str = "implicit", columns: dict[str, str] | None = None
) -> Interactions:
    """MARS MOOC: the implicit (or ``log="explicit"``) log with item, user and rating tables
    from the same folder (see the module docstring)."""
    if log not in MARS_LOGS:
        raise DataError(
            "unknown MARS log",
            path=path,
            field="log",
            expected=" or ".join(repr(k) for k in MARS_LOGS),
            found=repr(log),
        )
    f = locate(path, MARS_LOGS[log])
    main = _mars_log(f, columns)
    ratings = None
    if log != "explicit" and (p := _sibling_glob(f, "explicit_ratings*.csv")) is not None:
        ratings = _mars_log(p, None).interactions
    if log == "merged":
        if ratings is None:
            raise DataError(
                "no watch events to merge",
                path=f.parent,
                field="log",
                expected="one explicit_ratings*.csv beside the implicit file",
                found="none (or several)",
            )
        main.interactions = merge_watch_events(main.interactions, ratings)
    items = users = None
    if (p := _sibling_glob(f, "items*.csv")) is not None:
        items = mars_items(p)
    if (p := _sibling_glob(f, "users*.csv")) is not None:
        users = mars_users(p)
    out = _result(main.interactions, f, items, users)
    if ratings is not None:
        ratings, _ = align_keys(ratings, items, ITEM)
        ratings, _ = align_keys(ratings, users, USER)
    out.ratings = ratings
    return out


def parse_mars_merged(path: Path, *, columns: dict[str, str] | None = None) -> Interactions:
    """MARS with views and watch events merged into one log (the outside anchor's protocol)."""
    return parse_mars(path, log="merged", columns=columns)


def merge_watch_events(views: pl.DataFrame, watches: pl.DataFrame) -> pl.DataFrame:
    """The views' ``user_id, item_id, timestamp`` rows, then the watch events' (file order;
    other columns are dropped: the two files share only these)."""
    cols = [USER, ITEM, TIME]
    a, b = views.select(cols), watches.select(cols)
    # ids read as integers in one file and as text in the other meet as text
    same = {c: a.schema[c] == b.schema[c] for c in cols}
    a = a.with_columns(pl.col(c).cast(pl.Utf8) for c in cols if not same[c] and c != TIME)
    b = b.with_columns(pl.col(c).cast(a.schema[c]) for c in cols)
    return pl.concat([a, b], how="vertical")


def parse_mars_explicit(path: Path, *, columns: dict[str, str] | None = None) -> Interactions:
    """MARS with the explicit file (watch percentage, rating 1-10) as the log."""
    return parse_mars(path, log="explicit", columns=columns)


def _mars_log(f: Path, columns: dict[str, str] | None) -> Interactions:
    sep, header = sniff_header(f)
    defaults = {k: v for k, v in MARS_COLUMNS.items() if v in header}
    extras = {c: c for c in MARS_EXTRAS if c in header}
    mapping = {**defaults, **extras, **(columns or {})}
    return read_file(f, "csv", ReadOptions(columns=mapping, sep=sep))


def _sibling_glob(main: Path, pattern: str) -> Path | None:
    found = sorted(p for p in main.parent.glob(pattern) if p.is_file() and p != main)
    return found[0] if len(found) == 1 else None


def mars_items(p: Path) -> pl.DataFrame:
    """``items_en.csv`` as an item feature table (see the module docstring)."""
    raw = _mars_table(p, "item_id")
    src = Source(p, first_line=2, sep=",")
    cols = [pl.col("item_id").alias(ITEM)]
    for col, name in MARS_ITEM_COLUMNS.items():
        if col in raw.columns:
            cols.append(_na(col).alias(name))
    df = raw.select(cols)
    for name in MARS_LISTS:
        if name in df.columns:
            df = df.with_columns(tag_lists(df[name], src))
    for name in MARS_NUMBERS:
        if name in df.columns:
            df = df.with_columns(to_float(df[name], src, name))
    if "year" in df.columns:
        df = df.with_columns(to_float(df["year"], src, "created_at").cast(pl.Int64))
    return _key_features(df, ITEM)


ITEM_TABLE_FORMATS = ("auto", "plain", "mars")
"""How :func:`item_table` reads a file: ``plain`` (:func:`~warmrec.data.features.
read_feature_table`), ``mars`` (:func:`mars_items`), ``auto`` (``mars`` for a file with
MARS's ``item_id``, ``name`` and ``Software`` columns, else ``plain``)."""


def item_table(path: str | Path, fmt: str = "auto") -> pl.DataFrame:
    """An item feature table read as the training data read it: a MARS ``items_en.csv`` (or a
    file of its layout: new videos for ``warmrec add-items``) through :func:`mars_items`, so
    that its columns get the names and types the models were trained on (``name`` ->
    ``title``, ``['Excel']`` -> a list); any other file as a plain feature table."""
    if fmt not in ITEM_TABLE_FORMATS:
        raise DataError(
            "unknown item table format",
            path=path,
            field="format",
            expected=" or ".join(ITEM_TABLE_FORMATS),
            found=repr(fmt),
        )
    p = Path(path)
    if fmt == "auto":
        header = (
            set(sniff_header(p, ",")[1]) if p.is_file() and p.suffix.lower() == ".csv" else set()
        )
        fmt = "mars" if {"item_id", "name", "Software"} <= header else "plain"
    return mars_items(p) if fmt == "mars" else read_feature_table(p, ITEM)


def mars_users(p: Path) -> pl.DataFrame:
    """``users_en.csv`` as a user feature table (``job``; ``N/A`` -> null)."""
    raw = _mars_table(p, "user_id")
    return _key_features(
        raw.select(pl.col("user_id").alias(USER), *[_na(c) for c in raw.columns if c != "user_id"]),
        USER,
    )


def _mars_table(p: Path, key: str) -> pl.DataFrame:
    sep, header = sniff_header(p, ",")
    if key not in header:
        raise DataError(
            "missing key column",
            path=p,
            field=key,
            expected=f"a column '{key}'",
            found=", ".join(header),
        )
    raw = read_text(p, sep=sep)
    src = Source(p, first_line=2, sep=sep)
    require_rows(raw, src)
    check_keys(raw, key, src)
    return raw


def _na(col: str) -> pl.Expr:
    text = pl.col(col).str.strip_chars()
    return pl.when(text == MARS_MISSING).then(None).otherwise(text).alias(col)


def tag_lists(s: pl.Series, src: Source) -> pl.Series:
    """Tag lists written as Python literals (``['Share', 'Produce']``, ``[]``) -> List[str].

    Each distinct value is parsed once with :func:`ast.literal_eval`; a value that is not a
    list of strings raises naming its line. Missing values stay null.
    """
    parsed: dict[str, list[str]] = {}
    for value in s.drop_nulls().unique().to_list():
        try:
            tags = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            tags = None
        if not isinstance(tags, list | tuple) or not all(isinstance(t, str) for t in tags):
            row = int((s == value).arg_max())
            raise src.row_error(
                "unparsable tag list",
                row,
                s.name,
                expected="a list of quoted names such as ['OneDrive'] or []",
                found=repr(value),
            )
        parsed[value] = [t.strip() for t in tags if t.strip()]
    out = [None if v is None else parsed[v] for v in s.to_list()]
    return pl.Series(s.name, out, dtype=pl.List(pl.Utf8))


# --------------------------------------------------------------------------- Hahow

HAHOW_COURSE_LISTS = ("groups", "sub_groups", "topics")
HAHOW_USER_LISTS = ("occupation_titles", "interests", "recreation_names")


def parse_hahow(path: Path, *, parts: Sequence[str] = ("train.csv",)) -> Interactions:
    """Hahow course purchases (format assumed, see the module docstring).

    ``path`` is the folder (``parts`` are read from it, in order) or one part file itself.
    """
    folder = path if path.is_dir() else path.parent
    files = [path] if path.is_file() else [locate(folder, (name,)) for name in parts]
    logs = [_hahow_part(f) for f in files]
    df = pl.concat(logs, how="vertical_relaxed")
    df = df.with_columns(file_order(df.height))
    df = finish(
        df.with_columns(normalise_ids(df[USER]), normalise_ids(df[ITEM])),
        Source(files[0], first_line=None),
        ReadOptions(time_unit=ORDINAL),
    )
    main = files[0]
    items = _hahow_table(_sibling(main, "courses.csv"), "course_id", ITEM, HAHOW_COURSE_LISTS)
    users = _hahow_table(_sibling(main, "users.csv"), "user_id", USER, HAHOW_USER_LISTS)
    return _result(df, main, items, users, time_unit=ORDINAL)


def _hahow_part(f: Path) -> pl.DataFrame:
    sep, header = sniff_header(f, ",")
    src = Source(f, first_line=2, sep=sep)
    for col in ("user_id", "course_id"):
        if col not in header:
            raise DataError(
                "missing column",
                path=f,
                field=col,
                expected=f"a column '{col}'",
                found=", ".join(header),
            )
    raw = read_text(f, sep=sep, select=["user_id", "course_id"])
    require_rows(raw, src)
    for col in ("user_id", "course_id"):
        if raw[col].null_count():
            row = int(raw[col].is_null().arg_max())
            raise src.row_error(
                "missing value", row, col, expected="a value", found="an empty cell"
            )
    return (
        raw.select(pl.col("user_id").alias(USER), pl.col("course_id").str.split(" ").alias(ITEM))
        .explode(ITEM)
        .filter(pl.col(ITEM) != "")
    )


def _hahow_table(p: Path | None, col: str, key: str, lists: Sequence[str]) -> pl.DataFrame | None:
    if p is None:
        return None
    raw = read_text(p, sep=",")
    if col not in raw.columns:
        raise DataError(
            "missing key column",
            path=p,
            field=col,
            expected=f"a column '{col}'",
            found=", ".join(raw.columns),
        )
    present = [c for c in lists if c in raw.columns]
    df = raw.rename({col: key}).with_columns([_split_list(c, ",") for c in present])
    if "course_price" in df.columns:
        df = df.with_columns(pl.col("course_price").cast(pl.Float64, strict=False))
    return _key_features(df, key)


# --------------------------------------------------------------------------- Online Retail

RETAIL_COLUMNS: dict[str, tuple[str, ...]] = {
    SESSION: ("InvoiceNo", "Invoice"),
    ITEM: ("StockCode",),
    TIME: ("InvoiceDate",),
    USER: ("CustomerID", "Customer ID"),
    "quantity": ("Quantity",),
    "price": ("UnitPrice", "Price"),
    "description": ("Description",),
}
RETAIL_REQUIRED = (SESSION, ITEM, TIME, "quantity")
RETAIL_TIME_FORMATS = ("%m/%d/%Y %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%d/%m/%Y %H:%M")


def parse_online_retail(path: Path, *, keep_returns: bool = False) -> Interactions:
    """UCI Online Retail (I or II): session = invoice (see the module docstring)."""
    f = locate(path, ("Online Retail*.csv", "online_retail*.csv", "*.csv", "*.xlsx"))
    raw, src = _retail_raw(f)
    cols = _retail_mapping(raw, f)
    tcol = cols[TIME]
    raw = raw.with_columns(_retail_time(raw[tcol], src).alias(tcol))
    if USER in cols:  # "17850.0" in some exports, often missing; other ids kept as text
        text = integer_text(raw[cols[USER]].cast(pl.Utf8).str.strip_chars())
        raw = raw.with_columns(normalise_ids(text.replace("", None)).alias(cols[USER]))
    # a quantity or price that is not a number is refused with its line (it had become null:
    # the row dropped as a return, the price blank)
    qcol = cols["quantity"]
    raw = raw.with_columns(_whole_numbers(raw, qcol, src).alias(qcol))
    if "price" in cols:
        raw = raw.with_columns(
            to_float(raw[cols["price"]], src, cols["price"]).alias(cols["price"])
        )
    mapping = {k: v for k, v in cols.items() if k != "description"}
    df = to_canonical(raw, mapping, src)
    df = df.with_columns(
        pl.col("quantity").cast(pl.Int64),
        pl.col("price").cast(pl.Float64)
        if "price" in df.columns
        else pl.lit(None, pl.Float64).alias("price"),
    )
    if not keep_returns:
        df = df.filter(
            ~pl.col(SESSION).cast(pl.Utf8).str.starts_with("C") & (pl.col("quantity") > 0)
        )
    items = None
    if "description" in cols:
        items = _key_features(
            raw.select(
                pl.col(cols[ITEM]).alias(ITEM),
                pl.col(cols["description"]).cast(pl.Utf8).alias("description"),
            )
            .group_by(ITEM, maintain_order=True)
            .last(),
            ITEM,
        )
    return _result(df, f, items)


def _retail_raw(f: Path) -> tuple[pl.DataFrame, Source]:
    if f.suffix.lower() == ".xlsx":
        try:
            return pl.read_excel(f), Source(f, first_line=2)
        except ImportError as exc:
            raise DataError(
                "reading .xlsx needs the optional package fastexcel",
                path=f,
                expected="a CSV export or `pip install fastexcel`",
                found="an Excel workbook",
            ) from exc
    sep = sniff_header(f)[0] if _is_utf8_header(f) else ","
    try:
        raw = read_text(f, sep=sep)
    except DataError as exc:
        if "UTF-8" not in str(exc):
            raise
        raw = read_text(f, sep=sep, encoding="latin-1")  # the common Kaggle export
    src = Source(f, first_line=2, sep=sep)
    require_rows(raw, src)
    return raw, src


def _is_utf8_header(f: Path) -> bool:
    try:
        first_line(f)
    except DataError as exc:
        if "UTF-8" in str(exc):
            return False
        raise
    return True


def _retail_mapping(raw: pl.DataFrame, f: Path) -> dict[str, str]:
    cols = {}
    for canon, names in RETAIL_COLUMNS.items():
        col = next((n for n in names if n in raw.columns), None)
        if col is not None:
            cols[canon] = col
        elif canon in RETAIL_REQUIRED:
            raise DataError(
                "missing column",
                path=f,
                field=canon,
                expected=" or ".join(repr(n) for n in names),
                found=", ".join(raw.columns),
            )
    return cols


def _retail_time(s: pl.Series, src: Source) -> pl.Series:
    if s.dtype != pl.Utf8:
        return to_seconds(s, src)
    text = s.str.strip_chars()
    for fmt in RETAIL_TIME_FORMATS:
        parsed = text.str.to_datetime(fmt, strict=False, time_unit="us")
        if parsed.null_count() == text.null_count():
            return to_seconds(text, src, fmt=fmt)
    return to_seconds(text, src, fmt=RETAIL_TIME_FORMATS[0])  # raises naming the first bad line


# --------------------------------------------------------------------------- Diginetica, RR


def parse_diginetica(path: Path) -> Interactions:
    """CIKM Cup 2016 ``train-item-views.csv`` (``;``-separated)."""
    f = locate(path, ("train-item-views.csv",))
    names = ["sessionId", "userId", "itemId", "timeframe", "eventdate"]
    sep, header = sniff_header(f, ";")
    missing = [n for n in names if n not in header]
    if missing:
        raise DataError(
            "missing column",
            path=f,
            field=missing[0],
            expected=f"columns {';'.join(names)}",
            found=", ".join(header),
        )
    src = Source(f, first_line=2, sep=sep)
    raw = read_text(f, sep=sep, select=names)
    require_rows(raw, src)
    day = to_seconds(raw["eventdate"], src, fmt="%Y-%m-%d", column="eventdate")
    frame = to_float(raw["timeframe"], src, "timeframe") / 1000.0
    text = pl.col("userId").str.strip_chars()
    user = raw.select(
        pl.when(text.is_in(["NA", ""])).then(None).otherwise(text).alias(USER)
    ).to_series()
    df = pl.DataFrame(
        {
            SESSION: normalise_ids(raw["sessionId"]),
            USER: normalise_ids(user),
            ITEM: normalise_ids(raw["itemId"]),
            TIME: day + frame,
        }
    )
    return _result(finish(df, src), f)


def parse_retailrocket(path: Path, *, events: Sequence[str] | None = None) -> Interactions:
    """RetailRocket ``events.csv`` (timestamps in ms)."""
    f = locate(path, ("events.csv",))
    cols = {
        USER: "visitorid",
        ITEM: "itemid",
        TIME: "timestamp",
        "event": "event",
        "transaction_id": "transactionid",
    }
    _, header = sniff_header(f, ",")
    cols = {k: v for k, v in cols.items() if v in header or k in (USER, ITEM, TIME)}
    df = read_file(f, "csv", ReadOptions(columns=cols, sep=",")).interactions
    if events is not None:
        df = df.filter(pl.col("event").is_in(list(events)))
        if df.height == 0:
            raise DataError(
                "no events of the requested types",
                path=f,
                field="event",
                expected=", ".join(events),
                found="none of them",
            )
    return _result(df, f)


# --------------------------------------------------------------------------- SASRec


def parse_sasrec(path: Path) -> Interactions:
    """SASRec plain text ``user item`` per line; file order is time order."""
    f = locate(path, ("*.txt",))
    raw, src = _read_headerless(f, " ", [USER, ITEM])
    df = to_canonical(raw, _identity(raw, [USER, ITEM]), src, ReadOptions(no_timestamp=True))
    return _result(df, f, time_unit=ORDINAL)
