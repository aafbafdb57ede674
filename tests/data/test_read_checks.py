"""Values that used to be read silently and are now refused (or marked) with the line they sit on.

Issue 9, section 6: NUL bytes and 1,000,000-character ids, duplicated header columns, negative
and far outlying timestamps, positions taken for seconds (``time_unit``), session ids shared by
users, and headerless SASRec files. Each file is hand-made in ``tmp_path``.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from warmrec.data.readers import load_interactions
from warmrec.errors import ConfigError, DataError

HEADER = "session_id,item_id,timestamp\n"
T0 = 1_600_000_000  # 2020-09-13


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    f = tmp_path / name
    f.write_bytes(content.encode() if isinstance(content, str) else content)
    return f


def error_of(path: Path, **kw) -> DataError:
    with pytest.raises(DataError) as info:
        load_interactions(path, **kw)
    return info.value


def rows(n: int, start: int = T0, step: int = 60) -> str:
    """``n`` valid data lines, 10 per session, a minute apart."""
    return "".join(f"{i // 10},{i % 7},{start + i * step}\n" for i in range(n))


# ------------------------------------------------------------------ ids


def test_nul_byte_inside_an_id(tmp_path):
    f = write(tmp_path, "nul.csv", HEADER + "1,a,100\n1,b\x00c,200\n")
    err = error_of(f)
    assert err.line == 3 and err.field == "item_id"
    assert "control character" in str(err) and "\\x00" in err.found


def test_parquet_id_with_nul_names_the_row(tmp_path):
    f = tmp_path / "nul.parquet"
    pl.DataFrame(
        {"session_id": [1, 1], "item_id": ["a", "b\x00"], "timestamp": [1.0, 2.0]}
    ).write_parquet(f)
    err = error_of(f)
    assert err.field == "item_id" and "at row 2" in str(err)


def test_million_character_field_as_item_id(tmp_path):
    f = write(tmp_path, "huge.csv", HEADER + "1,a,100\n1," + "x" * 1_000_000 + ",200\n")
    err = error_of(f)
    assert err.line == 3 and err.field == "item_id"
    assert "longer than 256 characters" in str(err)
    assert "1,000,000 characters" in err.found and len(str(err)) < 600


def test_id_length_limit_is_an_option(tmp_path):
    f = write(tmp_path, "long.csv", HEADER + "1," + "y" * 300 + ",100\n")
    assert error_of(f).line == 2
    df = load_interactions(f, max_id_length=1000).interactions
    assert df["item_id"].str.len_chars().to_list() == [300]
    with pytest.raises(ConfigError, match="max_id_length"):
        load_interactions(f, max_id_length=0)


def test_id_limit_counts_characters_not_bytes(tmp_path):
    f = write(tmp_path, "accents.csv", HEADER + "1," + "é" * 200 + ",100\n")  # 400 bytes
    assert load_interactions(f).interactions["item_id"].str.len_chars().to_list() == [200]


def test_quoted_id_spanning_lines_gets_a_hint(tmp_path):
    # a stray quote closed by another one 300 characters and a line later
    f = write(tmp_path, "quote.csv", HEADER + '1,"' + "x" * 150 + "\n" + "y" * 150 + '",100\n')
    err = error_of(f)
    assert err.line == 2 and err.field == "item_id" and "is a quote" in err.found


def test_quoted_newline_inside_an_id(tmp_path):
    f = write(tmp_path, "newline.csv", HEADER + '1,a,100\n1,"b\nc",200\n')
    err = error_of(f)
    assert err.line == 3 and "control character" in str(err) and "\\n" in err.found


# ------------------------------------------------------------------ header


def test_duplicated_header_column(tmp_path):
    f = write(tmp_path, "dup.csv", "session_id,item_id,timestamp,item_id\n1,5,100,6\n")
    err = error_of(f)
    assert err.line == 1 and err.field == "item_id"
    assert "duplicated column 'item_id'" in str(err) and "columns 2, 4" in err.found


def test_duplicated_unused_column_is_accepted(tmp_path):
    f = write(tmp_path, "notes.csv", "session_id,item_id,timestamp,note,note\n1,5,100,a,b\n")
    assert load_interactions(f).interactions["item_id"].to_list() == [5]


def test_duplicated_column_named_by_the_mapping(tmp_path):
    f = write(tmp_path, "dup2.csv", "sid,item,item,ts\n1,5,6,100\n")
    err = error_of(f, columns={"session_id": "sid", "item_id": "item", "timestamp": "ts"})
    assert err.line == 1 and err.field == "item_id"


def test_headerless_user_item_file_suggests_sasrec(tmp_path):
    f = write(tmp_path, "ml-1m.txt", "1 1\n1 2\n2 3\n")
    err = error_of(f)
    assert "looks like data" in err.found and "--format sasrec" in err.found


def test_headerless_wider_file_asks_for_a_header(tmp_path):
    f = write(tmp_path, "plain.csv", "1,5,100\n1,6,200\n")
    err = error_of(f)
    assert "looks like data" in err.found and "header line" in err.found
    assert "--names user_id,item_id,..." in err.found


def test_names_read_a_headerless_file_from_its_first_line(tmp_path):
    """MovieLens' u.data: tab-separated user, item, rating, time, no header line."""
    f = write(tmp_path, "u.tsv", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    names = ["user_id", "item_id", "rating", "timestamp"]
    df = load_interactions(f, names=names).interactions.sort("timestamp")
    assert df["user_id"].to_list() == [196, 186] and df["item_id"].to_list() == [242, 302]
    assert df["rating"].to_list() == [3.0, 3.0]
    # the line numbers: the first line is line 1
    bad = write(tmp_path, "bad.tsv", "1\t2\t3\t100\n1\t3\t4\tlater\n")
    err = error_of(bad, names=names)
    assert err.line == 2 and err.field == "timestamp"
    err = error_of(f, names=["user_id", "item_id", "timestamp"])
    assert err.line == 1 and "line 1: --names gives 3 columns (expected 3 fields" in str(err)
    assert err.found == "4 field(s): '196\\t242\\t3\\t881250949'"
    with pytest.raises(ConfigError, match="found user_id twice"):
        load_interactions(f, names=["user_id", "item_id", "user_id", "timestamp"])
    pq = tmp_path / "log.parquet"
    load_interactions(f, names=names).interactions.write_parquet(pq)
    with pytest.raises(ConfigError, match="log.parquet is read as parquet"):
        load_interactions(pq, names=names)


# ------------------------------------------------------------------ timestamps


def test_negative_timestamp(tmp_path):
    f = write(tmp_path, "neg.csv", HEADER + "1,5,100\n1,6,-5\n")
    err = error_of(f)
    assert err.line == 3 and err.field == "timestamp"
    assert "negative" in str(err) and "--time-unit ordinal" in err.expected


def test_negative_positions_are_fine_when_ordinal(tmp_path):
    f = write(tmp_path, "neg.csv", HEADER + "1,5,-2\n1,6,-1\n")
    r = load_interactions(f, time_unit="ordinal")
    assert r.interactions["timestamp"].to_list() == [-2.0, -1.0] and r.time_unit == "ordinal"


def test_date_before_1970_is_negative(tmp_path):
    f = write(tmp_path, "old.csv", HEADER + "1,5,1969-12-31T00:00:00Z\n")
    assert error_of(f).line == 2


def test_one_far_outlier_is_refused_with_its_line(tmp_path):
    # a 2020 log with one bogus timestamp: an 18,520-day time span before
    start = 86400 * (1 + 18_520)  # the bulk starts 18,520 days after 1970-01-02
    body = rows(30, start=start) + "3,1,86400\n" + rows(30, start=start + 3600)
    f = write(tmp_path, "outlier.csv", HEADER + body)
    err = error_of(f)
    assert err.line == 32 and err.field == "timestamp"
    assert "outlier" in str(err) and "18,520 days before" in err.found


def test_outlier_can_be_kept_with_a_warning(tmp_path):
    body = rows(60) + f"9,1,{T0 + 40 * 365 * 86400}\n"
    f = write(tmp_path, "future.csv", HEADER + body)
    assert error_of(f).line == 62
    with pytest.warns(UserWarning, match="line 62"):
        df = load_interactions(f, time_outliers="warn").interactions
    assert df.height == 61
    with pytest.raises(ConfigError, match="time_outliers"):
        load_interactions(f, time_outliers="ignore")


def test_long_but_even_log_is_no_outlier(tmp_path):
    # 20 years, evenly spread: nothing stands apart from the bulk
    f = write(tmp_path, "even.csv", HEADER + rows(100, step=365 * 86400 // 5))
    assert load_interactions(f).interactions.height == 100


def test_one_millisecond_value_does_not_rescale_a_seconds_column(tmp_path):
    body = rows(60) + f"9,1,{T0 * 1000}\n"
    f = write(tmp_path, "mixed_units.csv", HEADER + body)
    err = error_of(f)
    assert err.line == 62 and "outlier" in str(err)


# ------------------------------------------------------------------ time_unit


def test_time_unit_ordinal_marks_positions(tmp_path):
    f = write(tmp_path, "pos.csv", HEADER + "1,5,1\n1,6,2\n2,5,3\n")
    assert load_interactions(f).time_unit == "s"
    r = load_interactions(f, time_unit="ordinal")
    assert r.time_unit == "ordinal" and r.interactions["timestamp"].to_list() == [1.0, 2.0, 3.0]


def test_order_and_no_timestamp_logs_are_ordinal(tmp_path):
    f = write(tmp_path, "order.csv", "session_id,item_id,pos\n1,5,2\n1,6,1\n")
    assert load_interactions(f, order="pos").time_unit == "ordinal"
    assert load_interactions(f, no_timestamp=True).time_unit == "ordinal"
    with pytest.raises(ConfigError, match="--time-unit ms"):
        load_interactions(f, order="pos", time_unit="ms")


@pytest.mark.parametrize(
    ("unit", "raw", "seconds"),
    [
        ("s", 1_400_000_000, 1.4e9),
        ("ms", 1_400_000_000_000, 1.4e9),
        ("us", 1_400_000, 1.4),
        ("ns", 1_400_000_000_000_000_000, 1.4e9),
    ],
)
def test_explicit_time_units(tmp_path, unit, raw, seconds):
    f = write(tmp_path, "units.csv", HEADER + f"1,5,{raw}\n")
    df = load_interactions(f, time_unit=unit).interactions
    assert df["timestamp"].to_list() == [pytest.approx(seconds)]


def test_explicit_unit_overrides_size_detection(tmp_path):
    # small numbers are seconds by default; in ms they are a fraction of a second
    f = write(tmp_path, "small.csv", HEADER + "1,5,1000\n1,6,2000\n")
    assert load_interactions(f).interactions["timestamp"].to_list() == [1000.0, 2000.0]
    assert load_interactions(f, time_unit="ms").interactions["timestamp"].to_list() == [1.0, 2.0]


def test_auto_detects_nanoseconds(tmp_path):
    f = write(tmp_path, "ns.csv", HEADER + "1,5,1400000000000000000\n")
    assert load_interactions(f).interactions["timestamp"].to_list() == [1.4e9]


def test_time_unit_with_date_time_text_is_refused(tmp_path):
    f = write(tmp_path, "iso.csv", HEADER + "1,5,2014-04-07T10:51:09Z\n")
    err = error_of(f, time_unit="ms")
    assert "--time-unit ms" in str(err) and "2014-04-07" in err.found


def test_unknown_time_unit(tmp_path):
    f = write(tmp_path, "x.csv", HEADER + "1,5,100\n")
    with pytest.raises(ConfigError, match="unknown time unit 'days'"):
        load_interactions(f, time_unit="days")


def test_sasrec_format_is_ordinal(tmp_path):
    f = write(tmp_path, "ml-1m.txt", "1 1\n1 2\n2 3\n")
    r = load_interactions(f, format="sasrec")
    assert r.time_unit == "ordinal" and r.interactions["timestamp"].to_list() == [0.0, 1.0, 2.0]
    with pytest.raises(ConfigError, match="--time-unit ms applies to csv"):
        load_interactions(f, format="sasrec", time_unit="ms")


def test_dataset_times_taken_as_positions(tmp_path):
    f = write(tmp_path, "ratings_Books.csv", "A1,0001,4.0,1019865600\nA2,0002,5.0,1019865700\n")
    assert load_interactions(f, format="amazon-books").time_unit == "s"
    assert load_interactions(f, format="amazon-books", time_unit="ordinal").time_unit == "ordinal"


# ------------------------------------------------------------------ sessions


def test_session_column_shared_by_users_is_refused(tmp_path):
    f = write(
        tmp_path,
        "baskets.csv",
        "user_id,basket_id,item_id,timestamp\n1,10,5,100\n1,10,6,110\n2,11,5,200\n2,10,7,300\n",
    )
    err = error_of(f, columns={"session_id": "basket_id"})
    assert err.line == 5 and err.field == "session_id"
    assert "shared by several users" in str(err)
    assert "session 10 under user 2 here and user 1 (line 2)" in err.found
    assert "--col session_id=" in err.expected


def test_shared_session_names_the_first_users_line_after_a_quoted_newline(tmp_path):
    """The first user's line was counted as if no quoted field spanned lines (line 3, the
    quoted text's second line; the event is on line 4)."""
    body = 's0,u0,z,50,"multi\nline"\ns1,u1,a,100,x\ns1,u2,b,200,y\n'
    f = write(tmp_path, "s.csv", "session_id,user_id,item_id,timestamp,comment\n" + body)
    err = error_of(f)
    assert err.line == 5 and "under user 'u2' here and user 'u1' (line 4)" in err.found


def test_sessions_of_one_user_each_are_fine(tmp_path):
    f = write(
        tmp_path,
        "ok.csv",
        "user_id,session_id,item_id,timestamp\n1,10,5,100\n,11,6,110\n2,12,5,200\n",
    )
    assert load_interactions(f).interactions.height == 3


@pytest.mark.parametrize(
    ("value", "message"),
    [("inf", "not a finite number"), ("99999999999999999999", "out of the calendar")],
)
def test_infinite_and_off_calendar_times_are_refused_with_their_line(tmp_path, value, message):
    """``inf`` was read as a time (stats showed time_max inf; gaps crashed on it)."""
    p = tmp_path / "log.csv"
    p.write_text(f"user_id,item_id,timestamp\nu1,a,1600000000\nu2,b,1600000003\nu1,e,{value}\n")
    with pytest.raises(DataError, match=message) as err:
        load_interactions(p)
    assert err.value.line == 4


def test_ids_that_read_nan_warn_as_missing_values_written_as_text(tmp_path):
    """pandas writes a missing id as 'nan': one item for every event that lost its id."""
    p = tmp_path / "log.csv"
    p.write_text("user_id,item_id,timestamp\n1,5,1600000000\n1,nan,1600000001\n2,7,1600000002\n")
    with pytest.warns(Warning, match=r"line 3: field 'item_id': 1 id reads 'nan'"):
        df = load_interactions(p).interactions
    assert df["item_id"].to_list() == ["5", "nan", "7"]  # kept, as written


def test_times_written_yyyymmdd_warn(tmp_path):
    p = tmp_path / "log.csv"
    p.write_text("user_id,item_id,timestamp\nu1,a,20200101\nu1,b,20200102\nu2,b,20200103\n")
    with pytest.warns(Warning, match=r"every time is a date written YYYYMMDD \(e.g. 20200101\)"):
        load_interactions(p)
    q = tmp_path / "seconds.csv"
    q.write_text("user_id,item_id,timestamp\nu1,a,1600000000\nu1,b,1600000001\n")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_interactions(q)


def test_z_and_offset_times_in_one_column_are_both_read(tmp_path):
    """'...Z' then '...+00:00' was refused as another layout: both are ISO 8601 with a zone."""
    p = tmp_path / "log.csv"
    p.write_text("user_id,item_id,timestamp\nu1,a,2020-01-01T10:00:00Z\n"
                 "u1,b,2020-01-01T11:00:00+00:00\nu2,b,2020-01-01T12:00:00+01:00\n")  # fmt: skip
    t = load_interactions(p).interactions["timestamp"].to_list()
    assert t == [1577872800.0, 1577876400.0, 1577876400.0]


def test_times_told_to_be_milliseconds_say_so_once(tmp_path):
    """data stats showed time_unit s for a millisecond log, and nothing said it was scaled."""
    import warnings

    from warmrec.errors import DataNote

    p = tmp_path / "ms.csv"
    rows = [f"u{i % 5},i{i % 7},{1_600_000_000_000 + i * 60_000}" for i in range(60)]
    p.write_text("user_id,item_id,timestamp\n" + "\n".join(rows) + "\n")
    with pytest.warns(DataNote, match="times read as milliseconds since the epoch"):
        df = load_interactions(p).interactions
    assert df["timestamp"][0] == 1_600_000_000.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_interactions(p, time_unit="ms")  # said: nothing to note


def test_times_written_yyyymmddhhmmss_warn(tmp_path):
    """14-digit date-times read as milliseconds by their size (the year 2610, an hour 10 s)."""
    p = tmp_path / "log.csv"
    p.write_text("user_id,item_id,timestamp\nu1,a,20200101120000\nu1,b,20200101130000\n")
    with pytest.warns(Warning, match=r"every time is a date written YYYYMMDDhhmmss"):
        load_interactions(p)
