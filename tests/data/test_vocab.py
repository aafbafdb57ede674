"""ItemVocab: padding at 0, unknown ids, round trips."""

import numpy as np
import polars as pl
import pytest

from warmrec.data.vocab import ItemVocab
from warmrec.errors import DataError


def test_sorted_ids_and_padding():
    v = ItemVocab.from_ids([30, 10, 20, 10])
    assert len(v) == 4 and v.n_ids == 3 and v.n_items == 4
    assert v.encode([10, 20, 30]).tolist() == [1, 2, 3]
    assert v.decode([3, 1]) == [30, 10]


def test_unknown_ids_encode_to_padding():
    v = ItemVocab.from_ids(["a", "b"])
    assert v.encode(["b", "zzz", "a"]).tolist() == [2, 0, 1]
    assert "a" in v and "zzz" not in v


def test_int_vocab_accepts_string_digits():
    v = ItemVocab.from_ids([5, 7])
    assert v.encode(pl.Series(["7", "x"])).tolist() == [2, 0]


def test_decode_rejects_padding_and_out_of_range():
    v = ItemVocab.from_ids([1, 2])
    with pytest.raises(DataError, match="expected 1..2"):
        v.decode([0])
    with pytest.raises(DataError):
        v.decode([3])


def test_duplicates_rejected():
    with pytest.raises(DataError, match="unique"):
        ItemVocab([1, 1])


@pytest.mark.parametrize("ids", [[3, 1, 2], ["x", "y"]])
def test_save_load_round_trip(tmp_path, ids):
    v = ItemVocab.from_ids(ids)
    v.save(tmp_path / "v.json")
    w = ItemVocab.load(tmp_path / "v.json")
    assert v == w and w.is_str == v.is_str
    assert np.array_equal(w.encode(ids), v.encode(ids))


def test_load_bad_file(tmp_path):
    (tmp_path / "v.json").write_text("{not json")
    with pytest.raises(DataError, match="v.json"):
        ItemVocab.load(tmp_path / "v.json")


def test_mixed_type_history_encodes_unknown_to_padding():
    v = ItemVocab.from_ids([1, 2, 3])
    assert v.encode([1, "zzz", "3"]).tolist() == [1, 0, 3]


@pytest.mark.parametrize(
    "ids",
    [
        [5, 3, 10, 7],  # compact range: dense lookup table
        [1, 2**40, 17, -3],  # sparse range: hash lookup
    ],
)
def test_encode_paths_agree_with_a_dict(ids):
    v = ItemVocab(ids)
    lookup = {raw: i + 1 for i, raw in enumerate(ids)}  # index order = given order
    probe = [*ids, 4, 11, 2, -1, -(2**62), 2**62, 0]
    want = [lookup.get(x, 0) for x in probe]
    assert v.encode(probe).tolist() == want
    assert v.encode(np.array(probe)).tolist() == want
    with_null = pl.Series([ids[0], None, ids[1], 99_999_999], dtype=pl.Int64)
    assert v.encode(with_null).tolist() == [lookup[ids[0]], 0, lookup[ids[1]], 0]


def test_dense_encode_in_range_is_a_pure_gather():
    rng = np.random.default_rng(0)
    ids = rng.choice(10_000, size=3_000, replace=False)
    v = ItemVocab(ids)
    vals = rng.choice(ids, size=20_000)
    idx = v.encode(vals)
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(ids[idx - 1], vals)


@pytest.mark.parametrize("scale", [1, 10**12])  # compact ids (bincount) and sparse ids (hash)
def test_from_ids_is_sorted_distinct_on_both_paths(scale):
    raw = pl.Series([7, 3, 3, None, 9, 7, -2]) * scale
    v = ItemVocab.from_ids(raw)
    assert v.ids.to_list() == [-2 * scale, 3 * scale, 7 * scale, 9 * scale]
    assert v.ids.dtype == pl.Int64


def test_index_of_reads_raw_ids_one_way_for_cli_api_and_service():
    from warmrec.data.vocab import ItemVocab

    v = ItemVocab.from_ids([3, 12, 300])
    assert [v.index_of(x) for x in (3, "12", 300.0, "300", np.int64(12))] == [1, 2, 3, 3, 2]
    # text that Python's int() would read but that is not a canonical decimal id: unknown
    for odd in ("٣", "²", "--5", "012", " 12", "12 ", "+12", "-0", 12.5, True, None, [3]):
        assert v.index_of(odd) == 0, odd
    assert v.lookup(["3", "x", 12]).tolist() == [1, 0, 2]
    s = ItemVocab.from_ids(["a", "b"])
    assert s.index_of("b") == 2 and s.index_of(1) == 0


def test_encode_reads_text_ids_as_index_of_does():
    """``"015"`` read as item 15 when a log of text ids met an integer model (predict and
    evaluate on new data), while ``recommend --items 015`` said unknown."""
    v = ItemVocab.from_ids([7, 15, 0])
    text = ["015", "15", "+15", "-0", "0", " 15", "x5", "15.0"]
    assert v.encode(text).tolist() == [v.index_of(x) for x in text] == [0, 3, 0, 0, 1, 0, 0, 0]
    assert v.encode(pl.Series([15.0, 15.5, float("nan")])).tolist() == [3, 0, 0]
    assert v.encode(pl.Series(["15", None])).tolist() == [3, 0]


@pytest.mark.parametrize(
    ("ids", "probe"),
    [
        ([1, 3, 7, 12], ["7", 7.0]),  # text and float spellings of one integer id
        ([1, 3, 7, 12], [7, 7.0, "12"]),
        ([1, 3, 7, 12], [7.0, "a", True, 3]),
        (["7", "7.0", "a", "true", "True"], [True, "a"]),  # booleans are never ids
        (["7", "7.0", "a", "true", "True"], [True]),
        (["7", "7.0", "a", "true", "True"], [float("nan"), 7]),  # 7 is "7", not "7.0"
    ],
)
def test_encode_of_a_mixed_list_agrees_with_index_of(ids, probe):
    """A list that mixed kinds was converted to one column type first: ``["7", 7.0]`` became
    text, ``"7.0"`` is no integer id, so an integer vocabulary encoded 7.0 as unknown although
    ``index_of(7.0)`` finds it; ``[True]`` became ``"true"`` in a text vocabulary."""
    v = ItemVocab(ids)
    want = [v.index_of(x) for x in probe]
    assert v.encode(probe).tolist() == want
    assert v.encode(np.array(probe, dtype=object)).tolist() == want  # raised TypeError
    assert [x in v for x in probe] == [bool(i) for i in want]
    if ids[0] == 1:
        assert v.encode(["7", 7.0]).tolist() == [3, 3]
    else:
        assert v.encode(pl.Series([True, False])).tolist() == [0, 0]


@pytest.mark.parametrize(
    ("ids", "found"), [([1, "a"], "int and str"), (["a", 1], "int and str"), ([1, 2**64], "int")]
)
def test_a_vocabulary_of_mixed_ids_is_refused_with_a_data_error(ids, found):
    """Building one of ints and strings raised Polars' TypeError (no field, no hint)."""
    for build in (ItemVocab, ItemVocab.from_ids):
        with pytest.raises(DataError, match=f"all integers .int64. or all strings.*found {found}"):
            build(ids)


def test_encode_of_a_list_of_numpy_scalars_takes_the_column_path(monkeypatch):
    """``list(np_array)`` holds NumPy scalars, neither int nor str: encode read them one id at
    a time (a million index_of calls on a million rows). They are read as Python values."""
    v = ItemVocab.from_ids([10, 20, 30])
    monkeypatch.setattr(v, "lookup", lambda ids: (_ for _ in ()).throw(AssertionError("slow")))
    assert v.encode(list(np.array([30, 10, 99]))).tolist() == [3, 1, 0]
    s = ItemVocab.from_ids(["a", "b"])
    monkeypatch.setattr(s, "lookup", lambda ids: (_ for _ in ()).throw(AssertionError("slow")))
    assert s.encode(list(np.array(["b", "z"]))).tolist() == [2, 0]
