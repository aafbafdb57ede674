"""Tests for warmrec.data.datasets: each raw format on a tiny hand-made file, and download()."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import shutil
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from warmrec.data import datasets
from warmrec.data import download as data_download
from warmrec.data.datasets import (
    DATASETS,
    DatasetSpec,
    download,
    get_spec,
    list_datasets,
    load_dataset,
)
from warmrec.data.readers import load_interactions
from warmrec.errors import WarmrecError

DS = Path(__file__).resolve().parents[1] / "fixtures" / "datasets"


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


# ------------------------------------------------------------------ registry


def test_registry_has_the_named_datasets():
    names = list_datasets()
    for name in (
        "movielens-100k",
        "movielens-1m",
        "movielens-20m",
        "yoochoose-clicks",
        "yoochoose-buys",
        "amazon-ratings",
        "amazon-books",
        "mars",
        "mars-merged",
        "hahow",
        "online-retail",
        "diginetica",
        "retailrocket",
        "sasrec",
    ):
        assert name in names
    assert names == sorted(names)
    assert get_spec("ML-1M") is DATASETS["movielens-1m"]


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_specs_are_well_formed(name):
    spec = DATASETS[name]
    assert spec.name == name and spec.description and spec.license and spec.files
    assert len(spec.sha256) in (0, len(spec.urls)) and len(spec.md5) in (0, len(spec.urls))
    for digest in spec.sha256:
        assert digest is None or (len(digest) == 64 and int(digest, 16) >= 0)
    for digest in spec.md5:
        assert digest is None or len(digest) == 32
    assert all(u.startswith(("http://", "https://")) for u in spec.urls)
    assert callable(spec.parser)


# ------------------------------------------------------------------ formats


def test_movielens_100k():
    r = load_dataset("movielens-100k", DS / "ml-100k")
    df = r.interactions
    assert df.columns == ["user_id", "item_id", "timestamp", "rating"]
    assert df["user_id"].to_list() == [196, 186, 22, 196]
    assert df["item_id"].to_list() == [242, 302, 377, 51]
    assert df["rating"].to_list() == [3.0, 3.0, 1.0, 2.0]
    assert df["timestamp"].to_list() == [881250949.0, 891717742.0, 878887116.0, 881250950.0]
    items = r.item_features.sort("item_id")
    assert items["item_id"].to_list() == [51, 242, 302, 377]
    assert items["title"][0] == "Café Noir (1994)"  # latin-1 decoded
    assert items["genres"].to_list() == [
        ["Drama", "Romance", "War", "Western"],
        ["Comedy"],
        ["Crime", "Film-Noir", "Mystery", "Thriller"],
        ["Children's", "Comedy"],
    ]
    users = r.user_features
    assert users["user_id"].to_list() == [196, 186, 22]
    assert users["age"].to_list() == [49, 39, 25]
    assert users["zip_code"].to_list() == ["55105", "00000", "40206"]


def test_movielens_1m():
    r = load_dataset("ml-1m", DS / "ml-1m" / "ratings.dat")
    df = r.interactions
    assert df.rows() == [
        (1, 1193, 978300760.0, 5.0),
        (1, 661, 978302109.0, 3.0),
        (2, 1193, 978298413.0, 4.0),
    ]
    assert r.item_features["genres"].to_list() == [
        ["Drama"],
        ["Animation", "Children's", "Musical"],
    ]
    assert r.user_features.row(1) == (2, "M", 56, 16, "70072")


def test_movielens_20m():
    r = load_dataset("movielens-20m", DS / "ml-20m")
    df = r.interactions
    assert df.rows() == [
        (1, 2, 1112486027.0, 3.5),
        (1, 29, 1112484676.0, 3.5),
        (2, 3, 974820889.0, 4.0),
    ]
    items = r.item_features
    assert items["title"][1] == "City of Lost Children, The (Cité des enfants perdus, La) (1995)"
    assert items["genres"][2].to_list() == ["Comedy", "Romance"]


def test_yoochoose_clicks():
    r = load_dataset("yoochoose-clicks", DS / "yoochoose")
    df = r.interactions
    assert df.columns == ["session_id", "item_id", "timestamp"]
    assert df["session_id"].to_list() == [1, 1, 1, 2, 2]
    assert df["item_id"].to_list() == [214536502, 214536500, 214536506, 214662742, 214536502]
    assert df["timestamp"][0] == pytest.approx(utc(2014, 4, 7, 10, 51, 9) + 0.277)
    assert df["timestamp"][4] == pytest.approx(utc(2014, 4, 7, 13, 57, 19) + 0.373)
    cats = dict(r.item_features.iter_rows())
    assert cats == {214536502: "2053", 214536500: "0", 214536506: "0", 214662742: "S"}


def test_yoochoose_buys():
    df = load_dataset("yoochoose-buys", DS / "yoochoose").interactions
    assert df.columns == ["session_id", "item_id", "timestamp", "price", "quantity"]
    assert df["session_id"].to_list() == [420374, 420374, 281626]
    assert df["price"].to_list() == [12462.0, 10471.0, 0.0]
    assert df["quantity"].to_list() == [1, 2, 1]
    assert df["timestamp"][2] == pytest.approx(utc(2014, 4, 6, 9, 40, 13) + 0.032)


def test_amazon_ratings_keep_string_ids():
    df = load_dataset("amazon-books", DS / "amazon").interactions
    assert df["user_id"].to_list() == [
        "AH2L9G3DQHHAJ",
        "A2IIIDRK3PRRZY",
        "A1TADCM7YWPQ8M",
        "AWGH7V0BDOJKB",
    ]
    assert df["item_id"].to_list() == ["0000000116", "0000000116", "0000000868", "B000JMLBHU"]
    assert df["rating"].to_list() == [4.0, 1.0, 4.0, 5.0]
    assert df["timestamp"].to_list() == [1019865600.0, 1395619200.0, 1031702400.0, 1367280000.0]
    generic = load_dataset("amazon-ratings", DS / "amazon" / "ratings_Books.csv").interactions
    assert generic.equals(df)


def test_mars_folder_gives_log_items_users_and_ratings():
    r = load_dataset("mars", DS / "mars")
    df = r.interactions
    assert df.columns == ["user_id", "item_id", "timestamp"]
    assert df["user_id"].to_list() == [1, 1, 2, 2, 2]  # the exact duplicate row is kept
    assert df["item_id"].to_list() == [10, 11, 10, 12, 12]
    assert df["timestamp"][:2].to_list() == [utc(2019, 1, 5, 10), utc(2019, 1, 5, 10, 5)]
    items = r.item_features
    assert items["item_id"].to_list() == [10, 11, 12, 13]
    assert items["title"].to_list() == [
        "What is OneDrive?",
        "Share, sync and restore",  # a quoted field holding a comma
        "Teams meetings",
        "Excel charts",
    ]
    assert items["description"][0] == "OneDrive is an online library,to store your files."
    assert items["description"][1] is None  # N/A
    assert items["software"].to_list() == [
        ["OneDrive"],
        ["OneDrive"],
        ["Microsoft Teams", "Outlook"],
        ["Excel"],
    ]
    assert items["job"].to_list() == [[], ["Financial", "Marketing"], [], ["Accounting"]]
    assert items["theme"].to_list() == [["Discover"], ["Share", "Organize"], [], ["Produce"]]
    assert items["difficulty"].to_list() == ["Beginner", None, "Advanced", "Intermediate"]
    assert items["type"].to_list() == ["tutorial", "tutorial", "webcast", "use_case"]
    assert items["duration"].to_list() == [42.0, 95.0, 600.0, 61.0]
    assert items["year"].to_list() == [2016, 2017, 2019, 2021]
    assert items["nb_views"].to_list() == [120.0, None, 30.0, 5.0]
    users = r.user_features
    assert users.rows() == [(1, "accounting"), (2, None), (3, "legal")]
    ratings = r.ratings
    assert ratings.columns == ["user_id", "item_id", "timestamp", "rating", "watch_percentage"]
    assert ratings.rows() == [
        (1, 10, utc(2019, 1, 5, 10, 1), 10.0, 100),
        (2, 12, utc(2019, 8, 1, 9, 10), 4.0, 35),
    ]


def test_mars_folder_is_detected_and_explicit_log_is_a_dataset():
    detected = load_interactions(DS / "mars")
    assert datasets.detect_dataset(DS / "mars") == "mars"
    assert detected.item_features is not None and detected.ratings is not None
    assert detected.interactions.equals(load_dataset("mars", DS / "mars").interactions)
    explicit = load_interactions(DS / "mars", format="mars-explicit")
    assert explicit.interactions["rating"].to_list() == [10.0, 4.0]
    assert explicit.interactions["watch_percentage"].to_list() == [100, 35]
    assert explicit.item_features is not None and explicit.ratings is None
    assert datasets.detect_dataset(DS / "ml-100k") is None


def test_mars_merged_log_appends_the_watch_events(tmp_path):
    merged = load_interactions(DS / "mars", format="mars-merged")
    df = merged.interactions
    # the five views, then the two watch events (user, item, time only), in file order
    assert df.columns == ["user_id", "item_id", "timestamp"]
    assert df["user_id"].to_list() == [1, 1, 2, 2, 2, 1, 2]
    assert df["item_id"].to_list() == [10, 11, 10, 12, 12, 10, 12]
    assert df["timestamp"][5:].to_list() == [utc(2019, 1, 5, 10, 1), utc(2019, 8, 1, 9, 10)]
    assert merged.item_features is not None and merged.ratings.height == 2
    assert load_dataset("mars", DS / "mars", log="merged").interactions.equals(df)
    for name in ("implicit_ratings_en.csv", "items_en.csv"):
        (tmp_path / name).write_bytes((DS / "mars" / name).read_bytes())
    with pytest.raises(WarmrecError, match="no watch events to merge"):
        load_dataset("mars-merged", tmp_path)


def test_mars_other_layout_with_columns_and_bad_tag_list(tmp_path):
    f = tmp_path / "mooc.csv"
    f.write_text("learner,course,when\n7,c1,100\n7,c2,200\n")
    other = load_dataset(
        "mars", f, columns={"user_id": "learner", "item_id": "course", "timestamp": "when"}
    ).interactions
    assert other.rows() == [(7, "c1", 100.0), (7, "c2", 200.0)]
    for name in ("implicit_ratings_en.csv", "users_en.csv"):
        (tmp_path / name).write_bytes((DS / "mars" / name).read_bytes())
    items = (DS / "mars" / "items_en.csv").read_text().replace("['Excel']", "['Excel'")
    (tmp_path / "items_en.csv").write_text(items)
    with pytest.raises(WarmrecError, match=r"items_en.csv, line 5: field 'software'"):
        load_dataset("mars", tmp_path / "implicit_ratings_en.csv")
    with pytest.raises(WarmrecError, match="log"):
        load_dataset("mars", DS / "mars", log="bogus")


def test_item_table_reads_a_mars_items_file_as_training_did(tmp_path):
    """``warmrec add-items`` reads new videos in MARS's layout as the folder's items_en.csv
    was read for training (``name`` -> ``title``, tag lists); other files as they are."""
    from warmrec.data.parsers import item_table

    mars = item_table(DS / "mars" / "items_en.csv")
    assert mars.equals(load_dataset("mars", DS / "mars").item_features)
    assert item_table(DS / "mars" / "items_en.csv", "mars").equals(mars)
    raw = item_table(DS / "mars" / "items_en.csv", "plain")
    assert "name" in raw.columns and "title" not in raw.columns
    assert raw["Software"][0] == "['OneDrive']"
    plain = tmp_path / "new.csv"
    plain.write_text("item_id,title,software\n99,Excel tables,Excel\n")
    assert item_table(plain).columns == ["item_id", "title", "software"]
    with pytest.raises(WarmrecError, match="unknown item table format"):
        item_table(plain, "xml")


def test_shared_mars_folder():
    from tests.conftest import require_shared

    folder = require_shared("mars")
    r = load_interactions(folder)  # no --col, no --format
    df = r.interactions
    assert (df.height, df["user_id"].n_unique(), df["item_id"].n_unique()) == (21908, 3007, 957)
    assert df["timestamp"].min() == utc(2016, 10, 28, 19, 13, 15)
    items = r.item_features
    assert items.height == 1167 and items["item_id"].n_unique() == 1167
    assert dict(items["type"].value_counts().rows()) == {
        "tutorial": 1030,
        "use_case": 96,
        "webcast": 41,
    }
    assert set(df["item_id"].unique().to_list()) <= set(items["item_id"].to_list())
    assert items["title"].null_count() == 0
    assert r.user_features.height == 9902
    assert r.ratings.height == 3659 and r.ratings["rating"].max() == 10.0
    assert int((r.ratings["rating"] == 10).sum()) == 2747
    # the anchor's log: views and watch events merged; 1,898 learners with >= 2 distinct videos
    m = load_interactions(folder, format="mars-merged").interactions
    assert m.height == 21908 + 3659
    per = m.group_by("user_id").agg(pl.col("item_id").n_unique().alias("n"))
    assert int((per["n"] >= 2).sum()) == 1898


def test_hahow_lists_features_and_parts():
    r = load_dataset("hahow", DS / "hahow")
    u1, u2 = "54ccaa73a784960a00948687", "5520a1d5d9a86d0a008aa8b5"
    c1, c2 = "5d8c9c4a8e7cd200218e48cd", "5f7c210c1de6bc45d6e3e2c5"
    assert r.interactions.rows() == [(u1, c1, 0.0), (u1, c2, 1.0), (u2, c2, 2.0)]
    courses = r.item_features
    assert courses["item_id"].to_list() == [c1, c2]
    assert courses["groups"].to_list() == [["程式", "設計"], ["藝術"]]
    assert courses["sub_groups"][0].to_list() == ["程式語言", "網頁設計"]
    assert courses["course_price"].to_list() == [1200.0, 800.0]
    users = r.user_features
    assert users["interests"].to_list() == [["程式_程式語言", "設計_平面設計"], ["藝術_繪畫與插畫"]]
    assert users["recreation_names"][1].to_list() == ["旅遊", "攝影"]
    both = load_dataset("hahow", DS / "hahow", parts=("train.csv", "val_seen.csv")).interactions
    assert both.rows()[-1] == (u2, c1, 3.0)


def test_online_retail_sessions_are_invoices():
    r = load_dataset("online-retail", DS / "online-retail")
    df = r.interactions
    assert df["session_id"].to_list() == ["536365", "536365", "536366", "536380"]
    assert df["item_id"].to_list() == ["85123A", "71053", "22633", "85123A"]
    assert df["user_id"].to_list() == [17850, 17850, None, 17850]
    assert df["timestamp"].to_list() == [
        utc(2010, 12, 1, 8, 26),
        utc(2010, 12, 1, 8, 26),
        utc(2010, 12, 1, 8, 28),
        utc(2010, 12, 13, 18, 26),
    ]
    assert df["quantity"].to_list() == [6, 6, 6, 3]
    assert df["price"].to_list() == [2.55, 3.39, 1.85, 2.55]
    desc = dict(r.item_features.iter_rows())
    assert desc["85123A"] == "WHITE HANGING HEART T-LIGHT HOLDER, LARGE"
    returns = load_dataset("online-retail", DS / "online-retail", keep_returns=True).interactions
    assert returns.height == 5 and returns["quantity"].to_list()[3] == -1


def test_online_retail_latin1_export(tmp_path):
    f = tmp_path / "data.csv"
    f.write_bytes(
        b"InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID\n"
        b"1,A,CR\xc8ME,2,2010-12-01 08:26:00,1.5,12\n"
    )
    r = load_dataset("online-retail", f)
    assert r.interactions["timestamp"].to_list() == [utc(2010, 12, 1, 8, 26)]
    assert r.item_features["description"].to_list() == ["CRÈME"]


def test_diginetica_time_is_date_plus_timeframe():
    df = load_dataset("diginetica", DS / "diginetica").interactions
    assert df.columns == ["session_id", "user_id", "item_id", "timestamp"]
    assert df["session_id"].to_list() == [1, 1, 2]
    assert df["user_id"].to_list() == [None, None, 4]
    assert df["item_id"].to_list() == [81766, 31331, 32118]
    assert df["timestamp"].to_list() == pytest.approx(
        [utc(2016, 5, 9) + 526.309, utc(2016, 5, 9) + 1031.018, utc(2016, 5, 10) + 243.569]
    )


def test_retailrocket_milliseconds_and_event_filter():
    df = load_dataset("retailrocket", DS / "retailrocket").interactions
    assert df["user_id"].to_list() == [257597, 992329, 111016, 111016]
    assert df["item_id"].to_list() == [355908, 248676, 355908, 355908]
    assert df["timestamp"].to_list() == pytest.approx(
        [1433221332.117, 1433224214.164, 1433221999.827, 1433222000.0], abs=1e-6
    )
    assert df["event"].to_list() == ["view", "view", "addtocart", "transaction"]
    assert df["transaction_id"].to_list() == [None, None, None, 4000]
    views = load_dataset("retailrocket", DS / "retailrocket", events=["view"]).interactions
    assert views["user_id"].to_list() == [257597, 992329]


def test_sasrec_lines_in_file_order():
    df = load_dataset("sasrec", DS / "sasrec" / "ml-1m.txt").interactions
    assert df.rows() == [(1, 1, 0.0), (1, 2, 1.0), (2, 3, 2.0), (1, 3, 3.0)]


@pytest.mark.parametrize(
    ("name", "fmt", "text"),
    [("x.txt", "sasrec", "1 5\n1 6\n2 5\n\n"),
     ("ratings.dat", "movielens-1m", "1::5::4::978300760\n1::6::3::978300761\n2::5::3::978300762\n\n\n"),
     ("u.data", "movielens-100k", "1\t5\t4\t881250949\n1\t6\t3\t881250950\n2\t5\t3\t881250951\r\n\r\n")],
)  # fmt: skip
def test_headerless_files_with_empty_last_lines(tmp_path, name, fmt, text):
    """An empty line at the end of a SASRec or MovieLens file was refused as a line of
    missing values (or of a wrong number of fields, 'found None')."""
    (tmp_path / name).write_text(text)
    df = load_interactions(tmp_path, format=fmt).interactions
    assert df["user_id"].to_list() == [1, 1, 2] and df["item_id"].to_list() == [5, 6, 5]


def test_mars_folder_with_empty_last_lines(tmp_path):
    """The MARS reader (and every other reader of delimited text) drops the blank last lines
    of its files, as the CSV log reader does: items_en.csv ending in an empty line was refused
    as an item of missing values."""
    folder = tmp_path / "mars"
    shutil.copytree(DS / "mars", folder)
    for name in ("implicit_ratings_en.csv", "items_en.csv", "users_en.csv"):
        with open(folder / name, "a") as f:
            f.write("\n\r\n")
    r, want = load_dataset("mars", folder), load_dataset("mars", DS / "mars")
    assert r.interactions.equals(want.interactions)
    assert r.item_features.equals(want.item_features)
    assert r.user_features.equals(want.user_features)


def test_load_interactions_accepts_dataset_names():
    r = load_interactions(DS / "sasrec" / "ml-1m.txt", format="sasrec")
    assert r.interactions.height == 4


# ------------------------------------------------------------------ download


def _spec(tmp_path: Path, payload: bytes, name: str, sha: str | None, **kw) -> DatasetSpec:
    src = tmp_path / "remote" / name
    src.parent.mkdir(exist_ok=True)
    src.write_bytes(payload)
    base = DATASETS["sasrec"]
    return dataclasses.replace(base, name="tiny", urls=(src.as_uri(),), sha256=(sha,), **kw)


def test_download_file_url_verifies_sha256(tmp_path, monkeypatch):
    payload = b"1 1\n1 2\n2 1\n"
    sha = hashlib.sha256(payload).hexdigest()
    monkeypatch.setitem(DATASETS, "tiny", _spec(tmp_path, payload, "tiny.txt", sha))
    dest = download("tiny", tmp_path / "data")
    assert (dest / "tiny.txt").read_bytes() == payload
    assert load_dataset("tiny", dest).interactions.height == 3


def test_download_checksum_mismatch_keeps_nothing(tmp_path, monkeypatch):
    monkeypatch.setitem(DATASETS, "tiny", _spec(tmp_path, b"1 1\n", "tiny.txt", "0" * 64))
    with pytest.raises(WarmrecError, match="checksum mismatch") as info:
        download("tiny", tmp_path / "data")
    assert "0" * 64 in str(info.value)
    assert list((tmp_path / "data").iterdir()) == []


def test_download_checks_md5_when_no_sha256(tmp_path, monkeypatch):
    spec = _spec(tmp_path, b"1 1\n", "tiny.txt", None, md5=("f" * 32,))
    monkeypatch.setitem(DATASETS, "tiny", spec)
    with pytest.raises(WarmrecError, match="md5"):
        download("tiny", tmp_path / "data")


def _zip_spec(tmp_path: Path, members: dict[str, str]) -> DatasetSpec:
    """An ml-100k-shaped zip of ``members`` (name under ``ml-100k/`` -> text), its spec."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in members.items():
            zf.writestr(f"ml-100k/{name}", text)
    payload = buf.getvalue()
    return _spec(
        tmp_path,
        payload,
        "ml-100k.zip",
        hashlib.sha256(payload).hexdigest(),
        parser=datasets.parse_movielens_100k,
        files=tuple(members),
    )


def test_download_unpacks_zip(tmp_path, monkeypatch):
    spec = _zip_spec(tmp_path, {"u.data": "1\t2\t5\t881250949\n"})
    monkeypatch.setitem(DATASETS, "tiny", spec)
    dest = download("tiny", tmp_path / "data")
    assert (dest / "ml-100k" / "u.data").is_file()
    assert load_dataset("tiny", dest).interactions.rows() == [(1, 2, 881250949.0, 5.0)]


def test_download_unpacks_again_after_an_interrupted_unzip(tmp_path, monkeypatch):
    spec = _zip_spec(
        tmp_path,
        {"u.data": "1\t2\t5\t881250949\n", "u.item": "2|Toy Story|01-Jan-1995||x|0\n"},
    )
    monkeypatch.setitem(DATASETS, "tiny", spec)
    extract = zipfile.ZipFile._extract_member

    def interrupted(self, member, path, pwd):
        name = member if isinstance(member, str) else member.filename
        if name.endswith("u.item"):
            raise KeyboardInterrupt  # Ctrl+C, a full disk: after u.data, before u.item
        return extract(self, member, path, pwd)

    monkeypatch.setattr(zipfile.ZipFile, "_extract_member", interrupted)
    with pytest.raises(KeyboardInterrupt):
        download("tiny", tmp_path / "data")
    monkeypatch.setattr(zipfile.ZipFile, "_extract_member", extract)
    # the verified archive is kept, but the half-unpacked folder is not trusted: unzipped again
    dest = download("tiny", tmp_path / "data")
    assert (dest / "ml-100k" / "u.data").is_file() and (dest / "ml-100k" / "u.item").is_file()


def test_download_refuses_zip_members_outside_dest(tmp_path, monkeypatch):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../evil.txt", "x")
    spec = _spec(tmp_path, buf.getvalue(), "evil.zip", None)
    monkeypatch.setitem(DATASETS, "tiny", spec)
    with pytest.raises(WarmrecError, match="outside"):
        download("tiny", tmp_path / "data")
    assert not (tmp_path / "evil.txt").exists()


def test_download_keeps_a_verified_file(tmp_path, monkeypatch):
    payload = b"1 1\n"
    monkeypatch.setitem(
        DATASETS, "tiny", _spec(tmp_path, payload, "tiny.txt", hashlib.sha256(payload).hexdigest())
    )
    download("tiny", tmp_path / "data")

    def no_network(url, timeout):
        raise AssertionError("should not download again")

    monkeypatch.setattr(data_download, "_open_url", no_network)
    download("tiny", tmp_path / "data")
    with pytest.raises(AssertionError):
        download("tiny", tmp_path / "data", force=True)


def test_download_without_network_is_a_clear_error(tmp_path, monkeypatch):
    def offline(url, timeout):
        raise WarmrecError(f"could not open {url}: no route to host")

    monkeypatch.setattr(data_download, "_open_url", offline)
    with pytest.raises(WarmrecError) as info:
        download("movielens-100k", tmp_path)
    text = str(info.value)
    assert "ml-100k.zip" in text and "load_dataset('movielens-100k'" in text
    assert list(tmp_path.iterdir()) == []


def test_download_of_a_dataset_without_url(tmp_path):
    with pytest.raises(WarmrecError, match="no direct download") as info:
        download("retailrocket", tmp_path)
    assert "kaggle" in str(info.value)


def test_default_opener_reports_unreachable_urls(tmp_path):
    with pytest.raises(WarmrecError, match="could not open"):
        data_download._open_url((tmp_path / "absent.bin").as_uri(), 1.0)


def test_item_ids_align_with_feature_keys(tmp_path):
    (tmp_path / "u.data").write_text("1\tx7\t3\t881250949\n")
    (tmp_path / "u.item").write_text("7|Seven|||url|" + "|".join(["0"] * 19) + "\n")
    r = load_dataset("movielens-100k", tmp_path)
    assert r.interactions.schema["item_id"] == r.item_features.schema["item_id"] == pl.Utf8


def test_mars_merged_with_integer_and_text_learner_ids_meets_as_text(tmp_path):
    """The views' learner ids read as integers, the watch file's as text: the strict cast of
    one to the other had ended in a traceback."""
    (tmp_path / "implicit_ratings_en.csv").write_text(
        "item_id,user_id,created_at\n510,4287,2016-11-02 20:59:23\n511,4287,2016-11-03 20:59:23\n"
    )
    (tmp_path / "explicit_ratings_en.csv").write_text(
        "user_id,item_id,watch_percentage,created_at,rating\nu9,510,100,2018-09-28 16:18:29,10\n"
    )
    m = load_interactions(tmp_path, format="mars-merged").interactions
    assert sorted(set(m["user_id"].to_list())) == ["4287", "u9"]
