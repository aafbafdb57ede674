"""Bad input raises DataError (or ConfigError) naming the file, the line or field, expected vs found."""

from __future__ import annotations

from pathlib import Path

import pytest

from warmrec.data.datasets import load_dataset
from warmrec.data.readers import load_interactions
from warmrec.errors import ConfigError, DataError

HEADER = "session_id,item_id,timestamp\n"


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    f = tmp_path / name
    f.write_bytes(content.encode() if isinstance(content, str) else content)
    return f


def error_of(path: Path, **kw) -> DataError:
    with pytest.raises(DataError) as info:
        load_interactions(path, **kw)
    return info.value


def test_wrong_delimiter_given_explicitly(tmp_path):
    f = write(tmp_path, "tabbed.csv", "session_id\titem_id\ttimestamp\n1\t2\t3\n")
    err = error_of(f, sep=",")
    assert err.path == str(f) and err.field == "item_id"
    assert "tab-separated" in str(err) and "sep='\\t'" in str(err)
    assert "tabbed.csv" in str(err)


def test_data_rows_with_another_delimiter(tmp_path):
    f = write(tmp_path, "mixed.csv", HEADER + "1;2;3\n")
    err = error_of(f)
    assert err.line == 2 and "wrong number of fields" in str(err)
    assert "semicolons" in str(err) and "mixed.csv, line 2" in str(err)


def test_a_quote_left_open_names_its_line(tmp_path):
    """Polars said only "could not parse" with a clipped value; the line is found here."""
    f = write(tmp_path, "quote.csv", HEADER + '1,"a ""b"" c",1\n1,"x,2\n2,y,3\n')
    err = error_of(f)
    assert err.line == 3 and err.found == '1,"x,2'
    assert "quote.csv, line 3: a quote opened and not closed" in str(err)
    ok = write(tmp_path, "doubled.csv", HEADER + '1,"a ""b"" c",1\n1,"x",2\n')
    assert load_interactions(ok).interactions["item_id"].to_list() == ['a "b" c', "x"]


def test_line_with_too_many_fields(tmp_path):
    f = write(tmp_path, "ragged.csv", HEADER + "1,2,3\n1,2,3,4\n")
    err = error_of(f)
    assert err.line == 3
    assert err.expected == "3 fields separated by comma"
    assert "4 field(s)" in err.found


def test_missing_item_column(tmp_path):
    f = write(tmp_path, "noitem.csv", "session_id,thing,timestamp\n1,2,3\n")
    err = error_of(f)
    assert err.field == "item_id" and "'thing'" in err.found
    assert "columns={'item_id'" in err.expected


def test_missing_key_column(tmp_path):
    f = write(tmp_path, "nokey.csv", "item_id,timestamp\n1,2\n")
    err = error_of(f)
    assert err.field == "session_id" and "user_id" in err.expected


def test_missing_timestamp_names_the_options(tmp_path):
    f = write(tmp_path, "notime.csv", "user_id,item_id\n1,2\n")
    err = error_of(f)
    assert err.field == "timestamp"
    assert "order=" in str(err) and "no_timestamp=True" in str(err)


def test_unparsable_iso_timestamp_names_line_and_value(tmp_path):
    f = write(tmp_path, "iso.csv", HEADER + "1,2,2014-04-07T10:00:00Z\n1,3,2014-13-45T10:00:00Z\n")
    err = error_of(f)
    assert err.line == 3 and err.field == "timestamp"
    assert err.found == "'2014-13-45T10:00:00Z'" and "ISO 8601" in err.expected


def test_unparsable_numeric_timestamp_names_line_and_value(tmp_path):
    f = write(tmp_path, "num.csv", HEADER + "1,2,10\n1,3,11\n1,4,abc\n")
    err = error_of(f)
    assert err.line == 4 and err.found == "'abc'"


def test_unparsable_first_timestamp(tmp_path):
    f = write(tmp_path, "first.csv", HEADER + "1,2,yesterday\n")
    err = error_of(f)
    assert err.line == 2 and "yesterday" in err.found


def test_empty_file(tmp_path):
    f = write(tmp_path, "empty.csv", "")
    err = error_of(f)
    assert "empty file" in str(err) and err.found == "0 bytes" and "empty.csv" in str(err)


def test_header_only(tmp_path):
    f = write(tmp_path, "header.csv", HEADER)
    err = error_of(f)
    assert err.line == 2 and "header but no data rows" in str(err)


def test_non_utf8_bytes(tmp_path):
    f = write(tmp_path, "latin.csv", HEADER.encode() + b"1,2,3\n1,caf\xe9,4\n")
    err = error_of(f)
    assert err.line == 3 and "UTF-8" in str(err) and "\\xe9" in err.found


def test_non_utf8_header(tmp_path):
    f = write(tmp_path, "latinhead.csv", b"sessi\xf3n,item_id,timestamp\n1,2,3\n")
    err = error_of(f)
    assert err.line == 1 and "UTF-8" in str(err)


def test_mapping_to_a_column_that_does_not_exist(tmp_path):
    f = write(tmp_path, "map.csv", HEADER + "1,2,3\n")
    err = error_of(f, columns={"item_id": "ItemId"})
    assert err.field == "item_id" and err.expected == "a column 'ItemId'"
    assert "'item_id'" in err.found


def test_order_column_that_does_not_exist(tmp_path):
    f = write(tmp_path, "order.csv", "user_id,item_id\n1,2\n")
    err = error_of(f, order="pos")
    assert err.field == "order" and "'pos'" in err.expected


def test_order_column_that_is_not_numeric(tmp_path):
    f = write(tmp_path, "order.csv", "user_id,item_id,pos\n1,2,1\n1,3,second\n")
    err = error_of(f, order="pos")
    assert err.line == 3 and err.found == "'second'"


def test_missing_value_names_the_line(tmp_path):
    f = write(tmp_path, "hole.csv", HEADER + "1,2,3\n1,,4\n")
    err = error_of(f)
    assert err.line == 3 and err.field == "item_id"


def test_path_that_does_not_exist(tmp_path):
    err = error_of(tmp_path / "absent.csv")
    assert "absent.csv" in str(err) and "no such file" in str(err)


def test_unknown_suffix(tmp_path):
    f = write(tmp_path, "log.json", "{}")
    err = error_of(f)
    assert "'.json'" in err.found and "format=" in err.expected


def test_folder_without_interaction_files(tmp_path):
    write(tmp_path, "notes.md", "hello")
    err = error_of(tmp_path)
    assert "notes.md" in err.found


def test_not_a_parquet_file(tmp_path):
    f = write(tmp_path, "log.parquet", "this is not parquet")
    err = error_of(f)
    assert "Parquet" in str(err) and "log.parquet" in str(err)


def test_parquet_bad_value_names_the_row(tmp_path):
    import polars as pl

    f = tmp_path / "log.parquet"
    pl.DataFrame({"user_id": [1, 2], "item_id": [1, 2], "timestamp": ["5", "soon"]}).write_parquet(
        f
    )
    err = error_of(f)
    assert "at row 2" in str(err) and err.found == "'soon'" and err.line is None


def test_bad_recbole_header(tmp_path):
    f = write(tmp_path, "bad.inter", "user_id:token\titem_id\n1\t2\n")
    err = error_of(f)
    assert err.line == 1 and err.field == "item_id"
    assert "token_seq" in err.expected and err.found == "'item_id'"


def test_unknown_recbole_type(tmp_path):
    f = write(tmp_path, "bad.inter", "user_id:token\titem_id:int\ttimestamp:float\n1\t2\t3\n")
    err = error_of(f)
    assert err.field == "item_id:int"


def test_bad_recbole_float_value(tmp_path):
    write(tmp_path, "t.inter", "user_id:token\titem_id:token\ttimestamp:float\n1\t2\t3\n")
    write(tmp_path, "t.item", "item_id:token\tprice:float\n2\tcheap\n")
    err = error_of(tmp_path)
    assert err.path.endswith("t.item") and err.line == 2 and err.field == "price"


def test_recbole_feature_file_without_key(tmp_path):
    write(tmp_path, "t.inter", "user_id:token\titem_id:token\ttimestamp:float\n1\t2\t3\n")
    write(tmp_path, "t.item", "movie:token\tprice:float\n2\t1\n")
    err = error_of(tmp_path)
    assert err.field == "item_id" and "movie" in err.found


def test_order_and_no_timestamp_is_a_config_error(tmp_path):
    f = write(tmp_path, "x.csv", "user_id,item_id,pos\n1,2,3\n")
    with pytest.raises(ConfigError):
        load_interactions(f, order="pos", no_timestamp=True)


# ------------------------------------------------------------------ named dataset formats


def test_movielens_1m_line_with_missing_field(tmp_path):
    f = write(tmp_path, "ratings.dat", "1::1193::5::978300760\n1::661::3\n")
    with pytest.raises(DataError) as info:
        load_dataset("movielens-1m", f)
    assert info.value.line == 2 and "'::'" in info.value.expected


def test_yoochoose_bad_timestamp(tmp_path):
    f = write(
        tmp_path,
        "yoochoose-clicks.dat",
        "1,2014-04-07T10:51:09.277Z,214536502,0\n1,07/04/2014 10:54,214536500,0\n",
    )
    with pytest.raises(DataError) as info:
        load_dataset("yoochoose-clicks", f)
    assert info.value.line == 2 and "07/04/2014" in info.value.found


def test_headerless_dataset_with_a_short_line(tmp_path):
    f = write(tmp_path, "ratings_Books.csv", "A1,0001,4.0,1019865600\nA2,0002,5.0\n")
    with pytest.raises(DataError) as info:
        load_dataset("amazon-books", f)
    assert info.value.line == 2 and info.value.field == "timestamp"


def test_headerless_dataset_with_a_long_line(tmp_path):
    f = write(tmp_path, "ratings_Books.csv", "A1,0001,4.0,1019865600\nA2,0002,5.0,1,9\n")
    with pytest.raises(DataError) as info:
        load_dataset("amazon-books", f)
    assert info.value.line == 2 and "4 fields" in info.value.expected


def test_an_empty_line_inside_ratings_dat_is_named_as_such(tmp_path):
    """It was reported as 'wrong number of fields (..., found None)'."""
    f = write(tmp_path, "ratings.dat", "1::5::4::978300760\n\n1::6::3::978300761\n")
    with pytest.raises(DataError) as info:
        load_dataset("movielens-1m", f)
    assert info.value.line == 2 and info.value.found == "an empty line"


def test_dataset_file_not_found_in_folder(tmp_path):
    write(tmp_path, "other.txt", "x")
    with pytest.raises(DataError) as info:
        load_dataset("movielens-100k", tmp_path)
    assert info.value.expected == "u.data" and "other.txt" in info.value.found


def test_diginetica_missing_column(tmp_path):
    f = write(
        tmp_path, "train-item-views.csv", "sessionId;itemId;timeframe;eventdate\n1;2;3;2016-05-09\n"
    )
    with pytest.raises(DataError) as info:
        load_dataset("diginetica", f)
    assert info.value.field == "userId"


def test_online_retail_unparsable_date(tmp_path):
    f = write(
        tmp_path,
        "retail.csv",
        "InvoiceNo,StockCode,Quantity,InvoiceDate\n1,A,1,12/1/2010 8:26\n2,B,1,someday\n",
    )
    with pytest.raises(DataError) as info:
        load_dataset("online-retail", f)
    assert info.value.line == 3 and info.value.found == "'someday'"


def test_unknown_dataset_and_option():
    with pytest.raises(ConfigError, match="unknown dataset"):
        load_dataset("netflix-prize", ".")
    with pytest.raises(ConfigError, match="takes no option"):
        load_dataset("movielens-100k", ".", columns={"a": "b"})


def test_dataset_path_that_does_not_exist(tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset("movielens-1m", tmp_path / "missing")
    assert "ratings.dat" in info.value.expected


def test_dataset_folder_with_several_candidates(tmp_path):
    write(tmp_path, "ratings_Books.csv", "A1,0001,4.0,1019865600\n")
    write(tmp_path, "ratings_Beauty.csv", "A1,0001,4.0,1019865600\n")
    with pytest.raises(DataError) as info:
        load_dataset("amazon-ratings", tmp_path)
    assert "ratings_Beauty.csv" in info.value.found and "ratings_Books.csv" in info.value.found


@pytest.mark.parametrize(
    "header", ["User ID,Product ID,Event Time", '"User ID","Product ID","Event Time"']
)
def test_names_with_spaces_do_not_make_space_the_separator(tmp_path, header):
    """Three spaces in the names beat two commas: 'User', 'ID,Product', ..."""
    f = write(tmp_path, "h.csv", header + "\nu1,a,1600000000\nu1,b,1600000001\nu2,b,1600000002\n")
    cols = {"user_id": "User ID", "item_id": "Product ID", "timestamp": "Event Time"}
    df = load_interactions(f, columns=cols).interactions
    assert df["item_id"].to_list() == ["a", "b", "b"] and df.height == 3


def test_a_space_after_each_comma_is_read_as_formatting(tmp_path):
    """'user_id, item_id, timestamp' failed: 'unable to find column "item_id"'."""
    f = write(tmp_path, "s.csv", "user_id, item_id, timestamp\nu1, a, 1600000000\nu2, b, 5\n")
    df = load_interactions(f, time_outliers="warn").interactions
    assert df.columns[:3] == ["user_id", "item_id", "timestamp"]
    assert df["item_id"].to_list() == ["a", "b"] and df["user_id"].to_list() == ["u1", "u2"]


@pytest.mark.parametrize(
    ("body", "line", "fields"),
    [("u1,a,1600000000,5\nu1,b,1600000001\nu2,b,1600000002,4\n", 3, 3),
     ("u1,1600000000,4\nu2,b,1600000002,4\n", 2, 3)],
)  # fmt: skip
def test_a_line_with_fewer_fields_than_the_header_is_named(tmp_path, body, line, fields):
    """Short lines were padded with nulls: a rating of None, or 'missing value' for a field
    that was not empty but absent."""
    f = write(tmp_path, "r.csv", "user_id,item_id,timestamp,rating\n" + body)
    err = error_of(f)
    assert err.line == line and "wrong number of fields" in str(err)
    assert f"found {fields} field(s)" in str(err)


def test_an_empty_rating_is_a_missing_value(tmp_path):
    f = write(tmp_path, "r.csv", "user_id,item_id,timestamp,rating\nu1,a,1,5\nu1,b,2,\n")
    err = error_of(f)
    assert err.line == 3 and err.field == "rating" and "missing value" in str(err)


@pytest.mark.parametrize("cell", ['""', '"  "'])
def test_an_empty_quoted_id_is_a_missing_value(tmp_path, cell):
    """A quoted empty field (pandas' ``QUOTE_ALL`` export of a missing value) is text, not
    null: it had become one item for every row that lost its id."""
    f = write(tmp_path, "q.csv", HEADER + f"1,{cell},1\n1,b,2\n2,{cell},3\n")
    err = error_of(f)
    assert err.line == 2 and err.field == "item_id" and "missing value" in str(err)
    assert "2 such item_id values" in str(err)


def test_an_integer_id_past_int64_stays_text(tmp_path):
    """A 20-digit id had been cast to null and refused as an empty cell."""
    f = write(tmp_path, "big.csv", HEADER + "1,12345678901234567890,1\n1,5.0,2\n")
    r = load_interactions(f)
    assert r.interactions["item_id"].to_list() == ["12345678901234567890", "5.0"]


def test_one_item_keeps_one_id_across_the_files_of_a_folder(tmp_path):
    """train.csv's ``1.0`` reads as the integer 1; test.csv, with a text id beside it, has
    ``"1.0"``: both are item ``"1"``, not two items."""
    root = tmp_path / "s"
    root.mkdir()
    write(root, "train.csv", HEADER + "1,1.0,1\n1,2.0,2\n")
    write(root, "test.csv", HEADER + "2,1.0,3\n2,abc,4\n")
    r = load_interactions(root)
    assert r.parts["train"]["item_id"].to_list() == ["1", "2"]
    assert r.parts["test"]["item_id"].to_list() == ["1", "abc"]


def test_parquet_float_ids_with_nan_or_past_int64_are_refused_or_kept(tmp_path):
    """A NaN in a float id column passed the integer check (NaN == NaN for Polars) and failed
    the cast with a traceback; a UInt64 id past 2^63 did too."""
    import polars as pl

    f = tmp_path / "nan.parquet"
    pl.DataFrame(
        {"user_id": [1, 1], "item_id": [5.0, float("nan")], "timestamp": [1.0, 2.0]}
    ).write_parquet(f)
    err = error_of(f)
    assert err.field == "item_id" and "not an integer id" in str(err) and "row 2" in str(err)
    g = tmp_path / "big.parquet"
    big = 2**64 - 5
    pl.DataFrame(
        {
            "user_id": [1, 1],
            "item_id": pl.Series([big, 7], dtype=pl.UInt64),
            "timestamp": [1.0, 2.0],
        }
    ).write_parquet(g)
    assert load_interactions(g).interactions["item_id"].to_list() == [str(big), "7"]


def test_a_manifest_entry_that_is_not_an_object_is_named(tmp_path):
    import json

    root = tmp_path / "s"
    root.mkdir()
    write(root, "train.csv", HEADER + "1,1,1\n1,2,2\n")
    write(root, "test.csv", HEADER + "2,1,3\n2,2,4\n")
    doc = {"format": "warmrec-split", "version": 1, "files": {"train": "train.csv"}}
    (root / "manifest.json").write_text(json.dumps(doc))
    err = error_of(root)
    assert err.field == "files.train" and "manifest.json" in str(err) and "'train.csv'" in str(err)


def test_online_retail_refuses_a_quantity_or_price_that_is_no_number(tmp_path):
    """They had become null: the row dropped as a return, the price blank, without a word."""
    head = "InvoiceNo,StockCode,Quantity,InvoiceDate,UnitPrice,CustomerID\n"
    ok = "536365,85123A,6,12/1/2010 8:26,2.55,17850.0\n"
    f = write(tmp_path, "q.csv", head + ok + "536365,71053,abc,12/1/2010 8:26,3.39,17850.0\n")
    with pytest.raises(DataError) as info:
        load_dataset("online-retail", f)
    assert info.value.line == 3 and info.value.field == "Quantity"
    g = write(tmp_path, "p.csv", head + ok + "536366,22633,6,12/1/2010 8:28,x,17850.0\n")
    with pytest.raises(DataError) as info:
        load_dataset("online-retail", g)
    assert info.value.line == 3 and info.value.field == "UnitPrice"
    h = write(tmp_path, "c.csv", head + ok + "536366,22633,6,12/1/2010 8:28,1.0,A123\n")
    users = load_dataset("online-retail", h).interactions["user_id"].to_list()
    assert users == ["17850", "A123"]  # a text customer id kept, not blanked


def test_a_dataset_format_refuses_options_it_would_ignore(tmp_path):
    """--order, --sep and --no-timestamp had been ignored without a word by the dataset
    formats (--names and --time-unit were already refused there)."""
    for kw, flag in ((dict(order="pos"), "--order"), (dict(sep=";"), "--sep"),
                     (dict(no_timestamp=True), "--no-timestamp")):  # fmt: skip
        with pytest.raises(ConfigError, match=flag) as info:
            load_interactions(tmp_path, format="mars", **kw)
        assert "dataset format 'mars'" in str(info.value)


def test_a_vocabulary_file_of_the_wrong_shape_is_a_data_error(tmp_path):
    from warmrec.data.vocab import ItemVocab

    f = tmp_path / "vocab.json"
    f.write_text('{"kind": "int", "ids": 5}')
    with pytest.raises(DataError, match="cannot read vocabulary"):
        ItemVocab.load(f)


def test_the_line_named_counts_the_lines_of_a_quoted_field_before_it(tmp_path):
    """A quoted field spanning two lines had shifted every later line number by one."""
    f = write(tmp_path, "m.csv", 'user_id,item_id,timestamp\n1,"a\nb",1600000000\n1,c,abc\n')
    err = error_of(f)
    assert err.line == 4 and err.field == "timestamp"


def test_a_yoochoose_buy_of_a_fractional_quantity_is_refused(tmp_path):
    """A quantity of 2.5 had been cut to 2 without a word."""
    write(tmp_path, "yoochoose-buys.dat",
              "420374,2014-04-06T18:44:58.314Z,214537888,12462,1\n"
              "420374,2014-04-06T18:44:58.325Z,214537850,10471,2.5\n")  # fmt: skip
    with pytest.raises(DataError) as info:
        load_dataset("yoochoose-buys", tmp_path)
    assert info.value.line == 2 and info.value.field == "quantity"


def test_a_role_whose_column_another_role_took_is_named(tmp_path):
    """`--order item_id` had said "no item column" while listing item_id among the columns."""
    f = write(tmp_path, "g.csv", "user_id,item_id,timestamp\n1,a,1\n1,b,2\n")
    with pytest.raises(ConfigError, match="--order takes the column 'item_id'"):
        load_interactions(f, order="item_id")
    with pytest.raises(ConfigError, match="--col timestamp takes the column 'user_id'"):
        load_interactions(f, columns={"timestamp": "user_id"})


def test_a_quoted_field_spanning_lines_does_not_shift_the_short_line_check(tmp_path):
    """A legal quoted newline (in a column not read) made the check for short lines read the
    line after it: a session log with an empty user_id was refused as 'wrong number of
    fields' at the wrong line, and a short line was named by the wrong text."""
    head = "session_id,user_id,item_id,timestamp,comment\n"
    f = write(tmp_path, "nu.csv", head + 's1,u1,a,100,"nice\nvideo"\ns2,,c,200,ok\n')
    df = load_interactions(f).interactions
    assert df["item_id"].to_list() == ["a", "c"] and df["user_id"].to_list() == ["u1", None]
    body = 'u1,a,100,5,"nice\nvideo"\nu1,c,200\nu2,d,300,4,x\n'
    short = write(tmp_path, "short.csv", "user_id,item_id,timestamp,rating,comment\n" + body)
    err = error_of(short)
    assert err.line == 4 and "wrong number of fields" in str(err)
    assert "3 field(s): 'u1,c,200'" in err.found


@pytest.mark.parametrize(
    ("item", "line"), [('"a,b"', 4), ('"a\nb,c"', 5)]
)  # fmt: skip
def test_a_line_with_too_many_fields_after_a_quoted_separator(tmp_path, item, line):
    """The fields were counted by the separators on each line, quotes ignored: the error
    named the legal line with a quoted comma (or newline), not the line with a field too
    many."""
    body = f"u1,{item},100\nu1,c,200\nu2,d,300,9\n"
    f = write(tmp_path, "ragged.csv", "user_id,item_id,timestamp\n" + body)
    err = error_of(f)
    assert err.line == line and "wrong number of fields" in str(err)
    assert err.found == "4 field(s): 'u2,d,300,9'"
