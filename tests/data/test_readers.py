"""Tests for warmrec.data.readers on tiny hand-made files with known canonical values."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from warmrec.data.readers import (
    Interactions,
    Source,
    detect_format,
    load_interactions,
    normalise_ids,
    scale_epoch,
    to_seconds,
)
from warmrec.data.split import split as do_split
from warmrec.errors import ConfigError, DataError

FIX = Path(__file__).resolve().parents[1] / "fixtures"


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


def test_csv_common_names_are_recognised():
    r = load_interactions(FIX / "sessions.csv")
    df = r.interactions
    assert isinstance(r, Interactions)
    assert df.columns == ["session_id", "item_id", "timestamp"]
    assert df["session_id"].to_list() == [1, 1, 2, 2]
    assert df["item_id"].to_list() == [10, 11, 10, 12]
    assert df["timestamp"].to_list() == [1400000000.0, 1400000060.0, 1400000100.0, 1400000200.0]
    assert df.schema["item_id"] == pl.Int64 and df.schema["timestamp"] == pl.Float64
    assert r.item_features is None and r.user_features is None
    assert r.source.endswith("sessions.csv")


@pytest.mark.parametrize(
    "header, row",
    [
        ("item_id,user_id,created_at", "7,3,2020-01-02 03:04:05"),
        ("ProductId,CustomerId,event_time", "7,3,2020-01-02 03:04:05"),
        ("video_id,learner_id,datetime", "7,3,2020-01-02 03:04:05"),
        ("iid,uid,Date", "7,3,2020-01-02 03:04:05"),
        ("movieId,userId,ts", "7,3,1577934245"),
    ],
)
def test_common_column_spellings_need_no_mapping(tmp_path, header, row):
    f = tmp_path / "log.csv"
    f.write_text(f"{header}\n{row}\n")
    df = load_interactions(f).interactions
    assert df.columns == ["user_id", "item_id", "timestamp"]
    assert df.row(0) == (3, 7, utc(2020, 1, 2, 3, 4, 5))


def test_two_candidate_time_columns_are_refused_naming_both(tmp_path):
    f = tmp_path / "log.csv"
    f.write_text("user_id,item_id,date,time\n1,2,2020-01-01,10:00\n")
    with pytest.raises(DataError) as e:
        load_interactions(f)
    msg = str(e.value)
    assert "\n" not in msg and "'date' and 'time'" in msg and "field 'timestamp'" in msg
    # the mapping settles it; the canonical name itself is never ambiguous
    df = load_interactions(f, columns={"timestamp": "date"}).interactions
    assert df["timestamp"].to_list() == [utc(2020, 1, 1)]
    g = tmp_path / "canon.csv"
    g.write_text("user_id,item_id,timestamp,created_at\n1,2,5,2020-01-01\n")
    assert load_interactions(g).interactions["timestamp"].to_list() == [5.0]


def test_two_candidate_id_columns_are_refused(tmp_path):
    f = tmp_path / "log.csv"
    f.write_text("userid,customer_id,item_id,ts\n1,2,3,4\n")
    with pytest.raises(DataError, match="'userid' and 'customer_id'"):
        load_interactions(f)


def test_tsv_milliseconds_become_seconds_and_rating_is_float():
    df = load_interactions(FIX / "sessions_ms.tsv").interactions
    assert df["session_id"].to_list() == ["a", "a", "b"]
    assert df["item_id"].to_list() == ["x1", "x2", "x1"]
    assert df["timestamp"].to_list() == [1400000000.0, 1400000060.0, 1400000100.0]
    assert df["rating"].to_list() == [4.5, 3.0, 5.0]


def test_explicit_mapping_and_extra_columns(tmp_path):
    f = tmp_path / "log.csv"
    f.write_text("visitor,product,when,price\nv1,p1,10,2.5\nv1,p2,20,3.0\n")
    df = load_interactions(
        f,
        columns={"user_id": "visitor", "item_id": "product", "timestamp": "when", "price": "price"},
    ).interactions
    assert df.columns == ["user_id", "item_id", "timestamp", "price"]
    assert df["user_id"].to_list() == ["v1", "v1"]
    assert df["price"].to_list() == [2.5, 3.0]


def test_iso_timestamps_are_parsed_as_utc():
    df = load_interactions(FIX / "iso_times.csv").interactions
    assert df["user_id"].to_list() == ["u1", "u1", "u2"]
    assert df["timestamp"].to_list() == [
        utc(2014, 4, 7, 10, 51, 9),
        utc(2014, 4, 7, 10, 52, 9) + 0.5,
        utc(2014, 4, 8),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2014-04-07T10:51:09.277Z", utc(2014, 4, 7, 10, 51, 9) + 0.277),
        ("2014-04-07T12:51:09+02:00", utc(2014, 4, 7, 10, 51, 9)),
        ("2014-04-07T12:51:09+0200", utc(2014, 4, 7, 10, 51, 9)),
        ("2014-04-07 10:51:09.5", utc(2014, 4, 7, 10, 51, 9) + 0.5),
        ("2014-04-07 10:51", utc(2014, 4, 7, 10, 51)),
        ("2014-04-07", utc(2014, 4, 7)),
        # ISO 8601 layouts that were refused as unparsable: an offset of whole hours, and
        # minutes without seconds but with a zone
        ("2014-04-07T12:51:09+02", utc(2014, 4, 7, 10, 51, 9)),
        ("2014-04-07 12:51:09.5+0200", utc(2014, 4, 7, 10, 51, 9) + 0.5),
        ("2014-04-07T10:51Z", utc(2014, 4, 7, 10, 51)),
        ("2014-04-07T12:51+02:00", utc(2014, 4, 7, 10, 51)),
        ("2014-04-07T08:51-0200", utc(2014, 4, 7, 10, 51)),
        ("2014-04-07 10:51Z", utc(2014, 4, 7, 10, 51)),
    ],
)
def test_iso_layouts(tmp_path, text, expected):
    f = tmp_path / "t.csv"
    f.write_text(f"user_id,item_id,timestamp\n1,1,{text}\n")
    assert load_interactions(f).interactions["timestamp"].to_list() == [pytest.approx(expected)]


def test_timezone_offsets_are_converted_to_utc(tmp_path):
    f = tmp_path / "tz.csv"
    f.write_text(
        "user_id,item_id,timestamp\n1,1,2014-04-07T12:00:00+02:00\n1,2,2014-04-07T13:00:00+02:00\n"
    )
    df = load_interactions(f).interactions
    assert df["timestamp"].to_list() == [utc(2014, 4, 7, 10), utc(2014, 4, 7, 11)]


def test_order_column_becomes_timestamp():
    df = load_interactions(FIX / "no_time.csv", order="pos").interactions
    assert df["timestamp"].to_list() == [2.0, 1.0, 1.0]
    assert "pos" not in df.columns


def test_no_timestamp_uses_file_order():
    df = load_interactions(FIX / "no_time.csv", no_timestamp=True).interactions
    assert df["timestamp"].to_list() == [0.0, 1.0, 2.0]
    assert df["item_id"].to_list() == [5, 6, 5]


def test_no_timestamp_ignores_an_existing_time_column():
    df = load_interactions(FIX / "sessions.csv", no_timestamp=True).interactions
    assert df["timestamp"].to_list() == [0.0, 1.0, 2.0, 3.0]


def test_order_and_no_timestamp_together_is_a_config_error():
    with pytest.raises(ConfigError, match="not both"):
        load_interactions(FIX / "no_time.csv", order="pos", no_timestamp=True)


def test_leading_zero_ids_stay_strings():
    df = load_interactions(FIX / "leading_zero.csv").interactions
    assert df["item_id"].to_list() == ["007", "7", "0"]
    assert df["session_id"].to_list() == [1, 1, 2]


def test_leading_zero_ids_after_the_first_ten_thousand_rows_stay_apart(tmp_path):
    """The native-type sample reads 10,000 rows: ``"0005"`` after them in a column of plain
    integers once became user 5, silently merging two learners."""
    rows = [f"{i // 10},{i % 7},{1_600_000_000 + i}" for i in range(10_050)]
    rows += ["0005,7,1600010100", "5,8,1600010110"]
    f = tmp_path / "log.csv"
    f.write_text("user_id,item_id,timestamp\n" + "\n".join(rows) + "\n")
    df = load_interactions(f).interactions
    assert df["user_id"].dtype == pl.Utf8  # not every id is a plain integer: all stay text
    assert df["user_id"].n_unique() == 1005 + 1
    assert df.filter(pl.col("user_id") == "0005")["item_id"].to_list() == [7]
    assert df["item_id"].dtype == pl.Int64 and df["timestamp"].dtype == pl.Float64


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_nan_time_or_rating_is_refused_with_its_line(tmp_path, suffix):
    """NaN is not null (so no "missing value" check saw it) and sorts after every time: it
    became each learner's newest event, the test target of a leave-one-out split."""
    for col in ("timestamp", "rating"):
        data = {"user_id": [1, 1, 2], "item_id": [1, 2, 3], "timestamp": [1.0, 2.0, 3.0]}
        data["rating"] = [4.0, 5.0, 3.0]
        data[col][1] = float("nan")
        f = tmp_path / f"log{suffix}"
        df = pl.DataFrame(data)
        df.write_csv(f) if suffix == ".csv" else df.write_parquet(f)
        where = "line 3" if suffix == ".csv" else "row 2"
        with pytest.raises(
            DataError, match=f"{where}.*'{col}'.*missing value.*NaN|'{col}'.*{where}"
        ):
            load_interactions(f)


def test_semicolon_separator_is_sniffed():
    df = load_interactions(FIX / "semicolon.csv").interactions
    assert df["user_id"].to_list() == [1, 2]
    assert df["timestamp"].to_list() == [10.0, 20.0]


def test_parquet_with_datetime_column(tmp_path):
    f = tmp_path / "log.parquet"
    pl.DataFrame(
        {
            "SessionId": ["s1", "s1"],
            "ItemId": [3, 4],
            "Time": [datetime(2020, 1, 1), datetime(2020, 1, 1, 0, 1)],
        }
    ).write_parquet(f)
    df = load_interactions(f).interactions
    assert df["session_id"].to_list() == ["s1", "s1"]
    assert df["item_id"].to_list() == [3, 4]
    assert df["timestamp"].to_list() == [utc(2020, 1, 1), utc(2020, 1, 1, 0, 1)]


@pytest.mark.parametrize(
    "form", ["parquet datetime[ns]", "csv integer ns", "csv iso ns", "in-memory frame"]
)
def test_nanosecond_times_that_tie_in_seconds_come_in_time_order(tmp_path, form):
    """Times are float seconds (a date-time to the microsecond, floats ~0.24 us apart at today's
    dates): events tens of nanoseconds apart tied there, and every later (stable) sort put them
    in file order. Written in reverse, they must come in time order, in both sessions."""
    import warnings

    from warmrec.data.columns import canonical_table
    from warmrec.data.sessionize import stable_sort

    base = 1_700_000_000_000_000_000  # 2023-11-14 in nanoseconds since the epoch
    ns = [base + 90, base + 50, base + 10, base + 5_000, base + 20, base]
    df = pl.DataFrame(
        {
            "session_id": [1, 1, 1, 1, 2, 2],
            "item_id": [3, 2, 1, 4, 8, 7],  # in time order: 1, 2, 3, 4 and 7, 8
            "timestamp": pl.Series(ns).cast(pl.Datetime("ns")),
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the note that numbers were read as nanoseconds
        if form == "parquet datetime[ns]":
            df.write_parquet(tmp_path / "log.parquet")
            got = load_interactions(tmp_path / "log.parquet").interactions
        elif form == "csv integer ns":
            df.with_columns(pl.Series("timestamp", ns)).write_csv(tmp_path / "log.csv")
            got = load_interactions(tmp_path / "log.csv").interactions
        elif form == "csv iso ns":  # pandas' to_csv of datetime64[ns]: '... 22:13:20.000000090'
            text = pl.col("timestamp").dt.strftime("%Y-%m-%d %H:%M:%S%.9f")
            df.with_columns(text).write_csv(tmp_path / "log.csv")
            got = load_interactions(tmp_path / "log.csv").interactions
        else:
            got = canonical_table(df)
    assert got.height == 6 and got["timestamp"].n_unique() < 6  # they do tie in seconds
    ordered = stable_sort(got, ["session_id", "timestamp"])
    assert ordered.group_by("session_id", maintain_order=True).agg("item_id").rows() == [
        (1, [1, 2, 3, 4]),
        (2, [7, 8]),
    ]


def test_parquet_numeric_string_ids_become_integers(tmp_path):
    f = tmp_path / "log.parquet"
    pl.DataFrame(
        {"user_id": ["1", "2"], "item_id": ["5", "05"], "timestamp": [1, 2]}
    ).write_parquet(f)
    df = load_interactions(f).interactions
    assert df["user_id"].to_list() == [1, 2]
    assert df["item_id"].to_list() == ["5", "05"]


def test_folder_of_split_files_is_one_log():
    r = load_interactions(FIX / "split")
    df = r.interactions
    assert df["session_id"].to_list() == [1, 1, 2, 2, 3]
    assert df["item_id"].to_list() == [10, 11, 10, 12, 11]
    assert df["timestamp"].to_list() == [100.0, 110.0, 50.0, 60.0, 70.0]
    assert detect_format(FIX / "split") == "folder"


def test_folder_with_no_timestamp_numbers_rows_across_files(tmp_path):
    (tmp_path / "a.csv").write_text("user_id,item_id\n1,1\n1,2\n")
    (tmp_path / "b.csv").write_text("user_id,item_id\n2,1\n")
    df = load_interactions(tmp_path, no_timestamp=True).interactions
    assert df["timestamp"].to_list() == [0.0, 1.0, 2.0]


def test_folder_mixing_integer_and_string_ids_gives_strings(tmp_path):
    (tmp_path / "a.csv").write_text("user_id,item_id,timestamp\n1,1,5\n")
    (tmp_path / "b.csv").write_text("user_id,item_id,timestamp\n2,x,6\n")
    df = load_interactions(tmp_path).interactions
    assert df["item_id"].to_list() == ["1", "x"]


def test_recbole_folder_reads_inter_item_and_user():
    r = load_interactions(FIX / "recbole")
    df = r.interactions
    assert df.columns == ["user_id", "item_id", "timestamp", "rating"]
    assert df["user_id"].to_list() == [1, 1, 2]
    assert df["item_id"].to_list() == [10, 11, 10]
    assert df["timestamp"].to_list() == [100.0, 200.0, 150.0]
    assert df["rating"].to_list() == [4.0, 5.0, 3.0]
    items = r.item_features
    assert items is not None and items.columns == ["item_id", "title", "year", "emb"]
    assert items["item_id"].to_list() == [10, 11]
    assert items["title"].to_list() == [["Toy", "Story"], ["Heat"]]
    assert items["year"].to_list() == ["1995", "1995"]
    assert items["emb"].to_list() == [[0.5, 1.5], [2.0, 3.0]]
    users = r.user_features
    assert users is not None and users["user_id"].to_list() == [1, 2]
    assert users["gender"].to_list() == ["M", "F"]


def test_recbole_inter_path_finds_sibling_feature_files():
    r = load_interactions(FIX / "recbole" / "tiny.inter")
    assert r.item_features is not None and r.user_features is not None
    assert detect_format(FIX / "recbole" / "tiny.inter") == "recbole"


def test_recbole_files_with_empty_last_lines(tmp_path):
    """A blank line at the end of a .inter or .item file was refused as a line of missing
    values; delimited logs already read without it."""
    (tmp_path / "x.inter").write_text(
        "user_id:token\titem_id:token\ttimestamp:float\n1\t5\t100\n1\t6\t200\n\n"
    )
    (tmp_path / "x.item").write_text("item_id:token\ttitle:token_seq\n5\tA b\n6\tC\r\n\r\n")
    r = load_interactions(tmp_path)
    assert r.interactions.rows() == [(1, 5, 100.0), (1, 6, 200.0)]
    assert r.item_features is not None
    assert r.item_features.rows() == [(5, ["A", "b"]), (6, ["C"])]


def test_format_override_and_dataset_name(tmp_path):
    f = tmp_path / "log.dat"
    f.write_text("user_id\titem_id\ttimestamp\n1\t2\t3\n")
    assert load_interactions(f, format="tsv").interactions["item_id"].to_list() == [2]
    ml = load_interactions(FIX / "datasets" / "ml-100k", format="movielens-100k")
    assert ml.interactions.height == 4


def test_unknown_format_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown format"):
        load_interactions(FIX / "sessions.csv", format="xml")


def test_types_sampled_from_the_head_fall_back_to_text(tmp_path):
    rows = "".join(f"{i % 7},{i},{1000 + i}\n" for i in range(10_050))
    f = tmp_path / "late.csv"
    f.write_text("user_id,item_id,timestamp\n" + rows + "7,abc,99999\n")
    df = load_interactions(f).interactions
    assert df.height == 10_051
    assert df.schema["item_id"] == pl.Utf8
    assert df["item_id"][-1] == "abc" and df["item_id"][0] == "0"
    assert df["timestamp"][-1] == 99999.0


def test_normalise_ids_rules():
    assert normalise_ids(pl.Series(["1", "22", None])).to_list() == [1, 22, None]
    for bad in (["01", "1"], ["+1"], ["-0"], ["1", "a"]):
        assert normalise_ids(pl.Series(bad)).dtype == pl.Utf8


def test_scale_epoch_detects_milliseconds_and_microseconds():
    assert scale_epoch(pl.Series([1.4e9, 1.5e9])).to_list() == [1.4e9, 1.5e9]
    assert scale_epoch(pl.Series([1.4e12, 1.5e12])).to_list() == [1.4e9, 1.5e9]
    assert scale_epoch(pl.Series([1.4e15])).to_list() == [1.4e9]


def test_to_seconds_with_explicit_format():
    s = pl.Series(["12/13/2010 18:26", "12/1/2010 8:26"])
    out = to_seconds(s, Source(Path("x.csv")), fmt="%m/%d/%Y %H:%M")
    assert out.to_list() == [utc(2010, 12, 13, 18, 26), utc(2010, 12, 1, 8, 26)]


def test_repr_is_short():
    r = load_interactions(FIX / "sessions.csv")
    assert repr(r).startswith("Interactions(source=") and "4x3" in repr(r)


def test_shared_ml100k(ml100k):
    r = load_interactions(ml100k)
    df = r.interactions
    assert df.height == 100_000
    assert df["user_id"].n_unique() == 943 and df["item_id"].n_unique() == 1682
    assert df.row(0) == (196, 242, 881250949.0, 3.0)
    assert r.item_features is not None and r.item_features.height == 1682
    assert r.user_features is not None and r.user_features.height == 943
    assert r.item_features.schema["item_id"] == df.schema["item_id"]


def test_shared_nowplaying_folder(nowplaying):
    df = load_interactions(nowplaying).interactions
    assert df.height == 489_367 + 58_277 + 57_616
    assert df.columns == ["session_id", "item_id", "timestamp"]
    assert df.schema["session_id"] == pl.Int64
    assert df["timestamp"].min() >= utc(2014, 1, 1) and df["timestamp"].max() < utc(2015, 7, 1)


def test_missing_path_is_a_data_error(tmp_path):
    with pytest.raises(DataError):
        load_interactions(tmp_path / "nope.csv")


# --- split folders: parts kept, overlaps refused, manifests checked ---------------------------

_H = "session_id,item_id,timestamp\n"


def _sessions(path: Path, rows: list[tuple]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_H + "".join(",".join(str(v) for v in r) + "\n" for r in rows))


def _split_folder(root: Path) -> Path:
    _sessions(root / "train.csv", [(1, 1, 1), (1, 2, 2), (2, 2, 3), (2, 3, 4)])
    _sessions(root / "valid.csv", [(3, 1, 5), (3, 3, 6)])
    _sessions(root / "test.csv", [(4, 2, 7), (4, 3, 8)])
    return root


def test_split_folder_keeps_its_parts(tmp_path):
    r = load_interactions(_split_folder(tmp_path / "s"))
    assert r.parts is not None
    assert {k: v["session_id"].unique().to_list() for k, v in r.parts.items()} == {
        "train": [1, 2],
        "valid": [3],
        "test": [4],
    }
    assert r.interactions.height == 8
    assert r.split_info["files"] == {"train": "train.csv", "valid": "valid.csv", "test": "test.csv"}
    assert r.split_info["rows"] == {"train": 4, "valid": 2, "test": 2}


def test_full_log_beside_its_own_parts_is_refused(tmp_path):
    root = tmp_path / "s"
    _sessions(root / "train.csv", [(1, 1, 1), (1, 2, 2)])
    _sessions(root / "valid.csv", [(2, 1, 3), (2, 2, 4)])
    _sessions(root / "all.csv", [(1, 1, 1), (1, 2, 2), (2, 1, 3), (2, 2, 4)])
    with pytest.raises(DataError, match="all.csv") as e:
        load_interactions(root)
    assert "train.csv" in str(e.value)


def test_identical_events_in_two_files_are_refused(tmp_path):
    _sessions(tmp_path / "a.csv", [(1, 1, 1), (1, 2, 2)])
    _sessions(tmp_path / "b.csv", [(2, 1, 3), (1, 2, 2)])
    with pytest.raises(DataError, match="overlap") as e:
        load_interactions(tmp_path)
    assert "a.csv" in str(e.value) and "b.csv" in str(e.value)


def test_a_session_in_two_parts_is_refused(tmp_path):
    root = _split_folder(tmp_path / "s")
    _sessions(root / "test.csv", [(2, 2, 7), (2, 3, 8)])
    with pytest.raises(DataError, match="two parts") as e:
        load_interactions(root)
    assert "test.csv" in str(e.value) and "train.csv" in str(e.value)


def test_split_folder_without_test_is_refused(tmp_path):
    root = tmp_path / "s"
    _sessions(root / "train.parquet.csv", [(1, 1, 1)])  # not a part name: a plain log
    assert load_interactions(root).parts is None
    pl.DataFrame({"session_id": [1], "item_id": [1], "timestamp": [1.0]}).write_parquet(
        root / "train.parquet"
    )
    with pytest.raises(DataError, match="other interaction files|no test"):
        load_interactions(root)
    (root / "train.parquet.csv").unlink()
    with pytest.raises(DataError, match="incomplete split folder: no test"):
        load_interactions(root)


def test_exact_duplicate_events_warn_when_many_and_drop_on_request(tmp_path):
    import warnings

    from warmrec.errors import DataWarning

    rows = [f"u{u},i{t},{1_600_000_000 + 60 * t}" for u in range(10) for t in range(10)]
    f = tmp_path / "log.csv"
    f.write_text("user_id,item_id,timestamp\n" + "\n".join(rows + rows[:8]) + "\n")
    with pytest.warns(DataWarning, match=r"8 of 108 events \(7%\) repeat an earlier event"):
        df = load_interactions(f).interactions
    assert df.height == 108  # kept by default
    df = load_interactions(f, duplicates="drop").interactions
    assert df.height == 100 and df.unique().height == 100
    f.write_text("user_id,item_id,timestamp\n" + "\n".join(rows + rows[:3]) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 3 % of the events: no warning
        assert load_interactions(f).interactions.height == 103
    with pytest.raises(ConfigError, match="duplicates: expected keep or drop"):
        load_interactions(f, duplicates="yes")


def test_timestamps_in_two_units_are_refused_with_the_first_odd_line(tmp_path):
    """Half seconds, half milliseconds: the median chose one unit for all, putting the other
    half in 1970 (or 52,000 years on), and the outlier check, which looks past the 0.1 %
    quantiles, saw both clusters as the bulk."""
    rows = [(u, t, 1_600_000_000 + 3600 * (10 * u + t)) for u in range(20) for t in range(10)]
    f = tmp_path / "log.csv"
    lines = [f"{u},{t},{ts * 1000 if (u + t) % 2 else ts}" for u, t, ts in rows]
    f.write_text("user_id,item_id,timestamp\n" + "\n".join(lines) + "\n")
    with pytest.raises(
        DataError, match=r"line 3: .*timestamps in two units.*most values here are seconds"
    ):
        load_interactions(f)
    # one bogus value of another size is not a second unit: the outlier check names it
    lines = [f"{u},{t},{ts}" for u, t, ts in rows]
    lines[50] = lines[50].rsplit(",", 1)[0] + ",1600180000000"
    f.write_text("user_id,item_id,timestamp\n" + "\n".join(lines) + "\n")
    with pytest.raises(DataError, match="line 52: .*far outlier timestamp"):
        load_interactions(f)
    # milliseconds throughout are one unit
    lines = [f"{u},{t},{ts * 1000}" for u, t, ts in rows]
    f.write_text("user_id,item_id,timestamp\n" + "\n".join(lines) + "\n")
    assert load_interactions(f).interactions["timestamp"].min() == 1_600_000_000.0


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_blank_lines_at_the_end_are_skipped_and_one_inside_is_named(tmp_path, newline):
    f = tmp_path / "log.csv"
    body = newline.join(["user_id,item_id,timestamp", "1,2,3", "1,3,4"]) + newline
    f.write_bytes((body + newline + newline).encode())  # two blank last lines
    assert load_interactions(f).interactions.height == 2
    f.write_bytes((body + "   " + newline + "\t" + newline).encode())  # lines of spaces
    assert load_interactions(f).interactions.height == 2  # was 'missing value' at line 4
    f.write_bytes((body + ",," + newline).encode())  # a line of empty fields is no blank line
    with pytest.raises(DataError, match="line 4: field 'user_id': missing value.*empty line"):
        load_interactions(f)
    lines = body.split(newline)
    f.write_bytes(newline.join([lines[0], lines[1], "", lines[2]]).encode() + newline.encode())
    with pytest.raises(DataError, match="line 3: .*found an empty line"):
        load_interactions(f)


def test_a_tab_separator_can_be_typed_as_an_escape_or_a_name(tmp_path):
    """``--sep '\\t'`` in a shell passes a backslash and a t: the hint the reader gives for a
    tab-separated header, which then failed as a two-character separator."""
    f = tmp_path / "log.txt"
    f.write_text("user_id\titem_id\ttimestamp\n1\t2\t3\n1\t3\t4\n")
    for sep in ("\t", "\\t", "tab", "TAB"):
        assert load_interactions(f, sep=sep).interactions.height == 2
    with pytest.raises(ConfigError, match=r"--sep: expected one character.*found ',,'"):
        load_interactions(f, sep=",,")


def test_a_column_mapping_under_an_alias_or_onto_one_column_twice_is_refused(tmp_path):
    """``--col user=user_id`` took 'user' as a feature name, so user_id was taken and the user
    column "missing" while the error listed it; one column as two roles gave garbage."""
    f = tmp_path / "log.csv"
    f.write_text("user_id,item_id,timestamp,genre\n1,2,3,x\n1,3,4,y\n")
    with pytest.raises(
        ConfigError, match=r"'user' is not a column role; did you mean --col user_id=user_id"
    ):
        load_interactions(f, columns={"user": "user_id"})
    with pytest.raises(ConfigError, match="'item_id' is mapped to both user_id and item_id"):
        load_interactions(f, columns={"user_id": "item_id", "item_id": "item_id"})
    df = load_interactions(f, columns={"kind": "genre"}).interactions  # a feature of its own name
    assert df["kind"].to_list() == ["x", "y"]


def test_ids_with_spaces_around_some_of_them_warn_that_they_count_twice(tmp_path):
    import warnings

    from warmrec.errors import DataWarning

    f = tmp_path / "log.csv"
    f.write_text('user_id,item_id,timestamp\n1,i1,1\n1,"i2 ",2\n2,i2,3\n2,i3,4\n')
    with pytest.warns(
        DataWarning,
        match=r"line 3: field 'item_id': 1 id has spaces around it \(e.g. 'i2 '\).*1 item_id value counts twice",
    ):
        df = load_interactions(f).interactions
    assert df["item_id"].n_unique() == 4  # kept as written: the warning says so
    f.write_text('user_id,item_id,timestamp\n1,"i1 ",1\n1,"i2 ",2\n')  # padded alike: no merge
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_interactions(f).interactions["item_id"].to_list() == ["i1 ", "i2 "]


def test_a_compressed_log_and_a_bad_order_value_are_named_for_what_they_are(tmp_path):
    import gzip

    f = tmp_path / "log.csv"
    f.write_bytes(gzip.compress(b"user_id,item_id,timestamp\n1,2,3\n"))
    with pytest.raises(DataError, match=r"a gzip-compressed file.*gunzip"):
        load_interactions(f)
    f.write_text("user_id,item_id,seq\n1,2,1\n1,3,two\n")
    with pytest.raises(DataError, match="line 3: field 'seq': unparsable seq"):
        load_interactions(f, order="seq")
    f.write_text("user_id,item_id,timestamp\n1,2,2020-01-01 10:00:00\n1,3,2020-01-01T11:00:00Z\n")
    with pytest.raises(DataError, match=r"line 3: .*layout of the column's first value"):
        load_interactions(f)


def test_integer_ids_written_as_floats_are_one_id(tmp_path):
    """A pandas float column exported ``15.0``: beside a ``15`` it made two items, and an item
    file's ``15`` did not meet the log's ``15.0``. Ids of integers written as floats are
    integers; ``007`` and ``1.5`` stay text."""
    f = tmp_path / "floats.csv"
    f.write_text("user_id,item_id,timestamp\n1.0,15,1\n1.0,15.0,2\n2.0,3.0,3\n")
    df = load_interactions(f).interactions
    assert df["item_id"].to_list() == [15, 15, 3] and df["user_id"].to_list() == [1, 1, 2]
    g = tmp_path / "mixed.csv"
    g.write_text("user_id,item_id,timestamp\n1,1.5,1\n1,007,2\n1,7,3\n")
    assert load_interactions(g).interactions["item_id"].to_list() == ["1.5", "007", "7"]


def test_a_split_folder_without_timestamps_is_numbered_train_valid_test(tmp_path):
    """``no_timestamp``: rows are numbered in part order, not in file-name order (test.csv
    sorts before train.csv: every test event had been placed before training)."""
    root = tmp_path / "s"
    root.mkdir()
    (root / "train.csv").write_text("user_id,item_id\n1,a\n1,b\n2,a\n2,c\n")
    (root / "valid.csv").write_text("user_id,item_id\n1,c\n2,b\n")
    (root / "test.csv").write_text("user_id,item_id\n1,d\n2,d\n")
    r = load_interactions(root, no_timestamp=True)
    t = {k: v["timestamp"].to_list() for k, v in r.parts.items()}
    assert max(t["train"]) < min(t["valid"]) and max(t["valid"]) < min(t["test"])
    assert r.parts["train"]["item_id"].to_list() == ["a", "b", "a", "c"]


def test_recbole_benchmark_files_are_read_train_valid_test(tmp_path):
    # NAME.train/.valid/.test.inter were concatenated by name: test first, so with
    # --no-timestamp the test rows became the oldest events and leave-one-out trained on them
    head = "user_id:token\titem_id:token\ttimestamp:float\n"
    (tmp_path / "ml.train.inter").write_text(head + "1\t10\t5\n1\t11\t6\n2\t10\t5\n")
    (tmp_path / "ml.valid.inter").write_text(head + "1\t12\t7\n")
    (tmp_path / "ml.test.inter").write_text(head + "1\t13\t7\n")
    ordinal = load_interactions(tmp_path, no_timestamp=True).interactions
    assert ordinal["item_id"].to_list() == [10, 11, 10, 12, 13]
    assert ordinal["timestamp"].to_list() == [0.0, 1.0, 2.0, 3.0, 4.0]
    sp = do_split(ordinal, "loo")
    assert _rows(sp.test) == [(1, 13)] and _rows(sp.valid) == [(1, 12)]
    # with times, events tied across files keep the order train, valid, test
    timed = load_interactions(tmp_path).interactions
    sp = do_split(timed, "loo")
    assert _rows(sp.test) == [(1, 13)] and _rows(sp.valid) == [(1, 12)]


def recbole_benchmark(root: Path, full: bool = False) -> Path:
    """RecBole's benchmark files of 6 users, 8 events each: 5 in ``x.train.inter``, 1 in
    ``x.valid.inter``, the last 2 in ``x.test.inter`` (a split leave-one-out would not give),
    with ``x.item`` beside them; ``full``: also ``x.inter``, every event again."""
    root.mkdir(parents=True, exist_ok=True)
    head = "user_id:token\titem_id:token\ttimestamp:float\n"
    rows: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for u in range(1, 7):
        for k in range(8):
            part = "train" if k < 5 else "valid" if k == 5 else "test"
            rows[part].append(f"{u}\t{(u + k) % 10 + 1}\t{100 * u + k}\n")
    for part, lines in rows.items():
        (root / f"x.{part}.inter").write_text(head + "".join(lines))
    if full:
        (root / "x.inter").write_text(head + "".join(sum(rows.values(), [])))
    genres = "".join(f"{i}\tg{i % 3}\n" for i in range(1, 11))
    (root / "x.item").write_text("item_id:token\tgenre:token\n" + genres)
    return root


def test_recbole_benchmark_files_are_a_split_folder(tmp_path):
    """RecBole's ``NAME.train/valid/test.inter`` keep their parts (what RecBole's
    ``benchmark_filename`` reads), as a folder of train/valid/test files does: they had been
    merged into one log, which the default split then cut again."""
    r = load_interactions(recbole_benchmark(tmp_path / "rb"))
    assert r.parts is not None
    assert {k: v.height for k, v in r.parts.items()} == {"train": 30, "valid": 6, "test": 12}
    assert r.parts["test"].filter(pl.col("user_id") == 1)["item_id"].to_list() == [8, 9]
    assert r.split_info["method"] == "given"
    assert r.split_info["files"] == {
        "train": "x.train.inter",
        "valid": "x.valid.inter",
        "test": "x.test.inter",
    }
    assert r.interactions.height == 48 and r.item_features["genre"].n_unique() == 3
    # the full log beside its own parts would count every event twice
    with pytest.raises(DataError, match="mixes split parts") as e:
        load_interactions(recbole_benchmark(tmp_path / "both", full=True))
    assert "x.inter" in str(e.value) and "x.train.inter" in str(e.value)
    # one file of them, named as such, is a log like any other
    assert load_interactions(tmp_path / "rb" / "x.train.inter").parts is None


def _rows(df):
    return list(zip(df["user_id"].to_list(), df["item_id"].to_list()))


def test_folder_files_without_the_session_column_of_the_others_are_named(tmp_path):
    # the merged table refused "2 missing value(s), first at data row 3": no file, no cause
    (tmp_path / "train.csv").write_text(
        "session_id,user_id,item_id,timestamp\n1,1,10,1\n1,1,11,2\n"
    )
    (tmp_path / "test.csv").write_text("user_id,item_id,timestamp\n1,12,3\n1,13,4\n")
    with pytest.raises(
        DataError, match="disagree on the session_id column.*test.csv has none, train.csv has one"
    ):
        load_interactions(tmp_path)
    # a user_id only some files of a session log have: users unknown there, read as before
    (tmp_path / "test.csv").write_text("session_id,item_id,timestamp\n2,12,3\n2,13,4\n")
    df = load_interactions(tmp_path).interactions
    assert df["user_id"].to_list() == [1, 1, None, None]  # a split folder: train, then test
