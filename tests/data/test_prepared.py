"""The encoded dataset: one encoding, views equal to the per-part constructors, given splits,
the package's import weight and one counting convention for n_items."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import warmrec
from warmrec.data.dataset import EvalSet, SequenceDataset
from warmrec.data.prepared import Prepared, prepare
from warmrec.data.readers import load_interactions
from warmrec.data.split import split as do_split
from warmrec.data.synthetic import SyntheticConfig, generate
from warmrec.data.vocab import ItemVocab
from warmrec.errors import ConfigError

SRC = str(Path(warmrec.__file__).resolve().parents[1])


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"},
        timeout=60,
    )


# --- exports and import weight ----------------------------------------------------------------


def test_prepare_is_exported_from_the_package():
    assert warmrec.prepare is prepare and warmrec.Prepared is Prepared
    assert set(warmrec.__all__) >= {"prepare", "Prepared", "default_split", "split"}
    for name in warmrec.__all__:
        assert getattr(warmrec, name) is not None


def test_import_warmrec_data_does_not_import_torch():
    r = _run(
        "import sys, warmrec.data, warmrec.data.prepared, warmrec.data.readers, "
        "warmrec.data.split, warmrec.data.splitdir\n"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    assert r.returncode == 0, r.stderr


def test_import_warmrec_imports_neither_torch_nor_scipy():
    r = _run(
        "import sys, warmrec\n"
        "print(warmrec.__version__)\n"
        "bad = [m for m in ('torch', 'scipy', 'polars') if m in sys.modules]\n"
        "assert not bad, bad"
    )
    assert r.returncode == 0, r.stderr


# --- one encoding, views equal to the per-part constructors -------------------------------------


def _user_session_log() -> pl.DataFrame:
    return generate(SyntheticConfig(n_sessions=400, n_users=60, n_items=80, seed=3))


def _same_eval(a: EvalSet, b: EvalSet) -> None:
    assert len(a) == len(b) and a.n_items == b.n_items and a.n_dropped == b.n_dropped
    for j in range(len(a)):
        assert np.array_equal(a.history(j), b.history(j))
    assert np.array_equal(a.targets, b.targets)
    assert a.keys.to_list() == b.keys.to_list()
    assert (a.users is None) == (b.users is None)
    if a.users is not None:
        assert np.array_equal(a.users, b.users)


def _same_train(a: SequenceDataset, b: SequenceDataset) -> None:
    assert a.key == b.key
    assert np.array_equal(a.sequences.offsets, b.sequences.offsets)
    assert np.array_equal(a.sequences.items, b.sequences.items)
    assert a.sequences.keys.to_list() == b.sequences.keys.to_list()
    assert (a.users is None) == (b.users is None)
    if a.users is not None:
        assert np.array_equal(a.users, b.users)


@pytest.mark.parametrize(
    ("method", "opts", "drop"),
    [
        ("loo", {}, None),
        ("loo", {}, "session_id"),
        ("last_session", {}, None),
        ("last_session", {"by_user": False}, "user_id"),
        ("user", {"seed": 2}, None),
    ],
)
def test_views_equal_the_per_part_constructors(method, opts, drop):
    df = _user_session_log()
    if drop:
        df = df.drop(drop)
    prep = prepare(df, split=method, split_options=opts)
    sp = do_split(df, method, **opts)
    vocab = ItemVocab.from_ids(df["item_id"])
    uv = ItemVocab.from_ids(df["user_id"]) if "user_id" in df.columns else None
    assert prep.vocab == vocab
    _same_train(prep.train, SequenceDataset.from_frame(sp.train, vocab, user_vocab=uv))
    _same_eval(prep.valid, sp.valid_set(vocab, uv))
    _same_eval(prep.test, sp.test_set(vocab, uv))


def test_views_with_a_smaller_vocabulary_drop_unknown_items_like_before():
    df = _user_session_log()
    vocab = ItemVocab.from_ids(df["item_id"].unique().sort().head(50))
    prep = prepare(df, split="loo", vocab=vocab)
    sp = do_split(df, "loo")
    uv = ItemVocab.from_ids(df["user_id"])
    _same_train(prep.train, SequenceDataset.from_frame(sp.train, vocab, user_vocab=uv))
    _same_eval(prep.test, sp.test_set(vocab, uv))
    assert prep.test.n_dropped > 0


def test_the_log_is_encoded_once(monkeypatch):
    calls: list[int] = []
    real = ItemVocab.encode

    def counting(self, values):
        calls.append(len(values))
        return real(self, values)

    monkeypatch.setattr(ItemVocab, "encode", counting)
    df = _user_session_log().drop("user_id")
    prep = prepare(df, split="last_session", split_options={"by_user": False})
    assert len(calls) == 1  # one encoding of all events (before: train, valid and test apart)
    assert calls[0] == prep.split.train.height + prep.split.valid.height + prep.split.test.height
    # the views are cut from that one encoded table
    assert prep.encoded is not None and prep.encoded.height == calls[0]
    assert set(prep.encoded["_part"].unique().to_list()) == {0, 1, 2}


def test_n_items_counts_padding_in_vocab_data_and_models():
    df = _user_session_log()
    prep = prepare(df, split="loo")
    model = warmrec.get_model("pop").fit(prep.train, prep.valid)
    n = prep.vocab.n_ids + 1
    assert prep.vocab.n_items == len(prep.vocab) == n
    assert prep.train.n_items == prep.valid.n_items == prep.test.n_items == model.n_items == n
    assert prep.vocab.n_ids == df["item_id"].n_unique()


# --- split folders used as given -------------------------------------------------------------


def _write(folder: Path, name: str, rows: list[tuple], header: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [header] + ["\t".join(str(v) for v in r) for r in rows]
    (folder / name).write_text("\n".join(lines) + "\n")


def _session_split_folder(root: Path) -> Path:
    h = "session_id\titem_id\ttimestamp"
    train = [(s, 1 + (s + k) % 6, 1000 * s + k) for s in range(1, 9) for k in range(4)]
    valid = [(20, 1, 50), (20, 2, 51), (20, 3, 52)]
    test = [(30, 2, 40), (30, 3, 41), (31, 4, 9000), (31, 5, 9001), (31, 6, 9002)]
    _write(root, "train.csv", train, h)
    _write(root, "valid.csv", valid, h)
    _write(root, "test.csv", test, h)
    return root


def test_a_split_folder_is_used_as_given_and_reported(tmp_path):
    inter = load_interactions(_session_split_folder(tmp_path / "sp"))
    assert inter.parts is not None and set(inter.parts) == {"train", "valid", "test"}
    assert inter.interactions.height == sum(p.height for p in inter.parts.values())
    prep = prepare(inter)
    assert prep.info["split"] == "given"
    assert prep.info["split_info"]["files"] == {
        "train": "train.csv",
        "valid": "valid.csv",
        "test": "test.csv",
    }
    assert prep.split.kind == "sessions"
    assert prep.split.test["session_id"].unique().sort().to_list() == [30, 31]
    # each test session predicted from its own prefixes: 1 + 2 targets
    assert len(prep.test) == 3 and len(prep.valid) == 2
    assert sorted(prep.test.keys.to_list()) == [30, 31, 31]


def test_resplit_merges_the_parts_and_splits_again(tmp_path):
    inter = load_interactions(_session_split_folder(tmp_path / "sp"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prep = prepare(inter, split="last_session", resplit=True)
    assert prep.info["split"] == "last_session" and prep.info["resplit"] is True
    assert prep.split.train.height + prep.split.test.height < inter.interactions.height + 1
    with pytest.raises(ConfigError, match="resplit"):
        prepare(inter, split="loo")
    with pytest.raises(ConfigError, match="resplit"):
        prepare(inter, split_options={"test_days": 2})


def test_recbole_benchmark_files_are_used_as_given_in_python_and_the_cli(tmp_path):
    """``warmrec train --data DIR`` and ``prepare`` on RecBole's benchmark files use RecBole's
    split: 2 test events per user here, where the default split (leave-one-out) of the merged
    log, what they got before, held out 1; a split method needs ``--resplit``."""
    from click.testing import CliRunner

    from tests.data.test_readers import recbole_benchmark
    from warmrec.cli.main import cli

    root = recbole_benchmark(tmp_path / "rb")
    prep = prepare(load_interactions(root))
    assert prep.info["split"] == "given" and prep.split.kind == "next_item"
    assert len(prep.test) == 12 and len(prep.valid) == 6
    first = next(j for j in range(len(prep.test)) if prep.test.keys[j] == 1)
    assert prep.vocab.decode(prep.test.history(first)) == [2, 3, 4, 5, 6, 7]  # train + valid
    args = ["train", "--model", "pop", "--data", str(root), "--out", str(tmp_path / "m")]
    r = CliRunner().invoke(cli, [*args, "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["split"] == "given" and out["split_info"]["files"]["test"] == "x.test.inter"
    r = CliRunner().invoke(cli, [*args, "--split", "loo"])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "--resplit" in r.output


def test_given_user_split_continues_the_train_history(tmp_path):
    h = "user_id\titem_id\ttimestamp"
    root = tmp_path / "u"
    _write(root, "train.csv", [("a", 1, 1), ("a", 2, 2), ("b", 3, 1), ("b", 4, 2)], h)
    _write(root, "valid.csv", [("a", 3, 3)], h)
    _write(root, "test.csv", [("a", 4, 4), ("b", 1, 3), ("c", 1, 5), ("c", 2, 6)], h)
    prep = prepare(load_interactions(root))
    # user c is new in test: its first event has no history and is dropped, its second is kept
    assert len(prep.test) == 3 and prep.test.n_dropped == 1
    assert prep.split.info["test_without_history_dropped"] == 1
    assert prep.split.kind == "next_item" and prep.info["split"] == "given"
    hist = {prep.test.keys[j]: prep.vocab.decode(prep.test.history(j)) for j in range(3)}
    assert hist == {"a": [1, 2, 3], "b": [3, 4], "c": [1]}  # the user's own earlier events
    assert prep.vocab.decode([prep.valid.history(0)[-1]]) == [2]


def test_a_given_user_split_encoded_part_by_part_drops_what_prepare_drops(tmp_path):
    """``Split.valid_set`` / ``Split.test_set`` promise the examples ``prepare`` cuts; on a given
    user split they kept the targets without history that ``prepare`` drops (user e new in
    valid, c new in test): 2 valid and 4 test examples where the run evaluates 1 and 3."""
    h = "user_id\titem_id\ttimestamp"
    root = tmp_path / "u"
    _write(root, "train.csv", [("a", 1, 1), ("a", 2, 2), ("b", 3, 1), ("b", 4, 2)], h)
    _write(root, "valid.csv", [("a", 3, 3), ("e", 4, 3)], h)
    _write(root, "test.csv", [("a", 4, 4), ("b", 1, 3), ("c", 1, 5), ("c", 2, 6)], h)
    prep = prepare(load_interactions(root))
    sp = prep.split
    assert (len(prep.valid), prep.valid.n_dropped) == (1, 1)
    assert (len(prep.test), prep.test.n_dropped) == (3, 1)
    assert sp.info["valid_without_history_dropped"] == sp.info["test_without_history_dropped"] == 1
    valid, test = (
        sp.valid_set(prep.vocab, prep.user_vocab),
        sp.test_set(prep.vocab, prep.user_vocab),
    )
    _same_eval(prep.valid, valid)
    _same_eval(prep.test, test)
    assert valid.keys.to_list() == ["a"] and sorted(test.keys.to_list()) == ["a", "b", "c"]


def test_interactions_not_split_still_use_the_named_method(tmp_path):
    inter = load_interactions(Path(__file__).parents[1] / "fixtures" / "split")
    assert inter.parts is None
    with pytest.raises(ConfigError, match="given"):
        prepare(inter, split="given")


def test_demo_uses_a_split_folder_as_given_unless_resplit(tmp_path):
    from warmrec.experiments.demo import run_demo

    data = _session_split_folder(tmp_path / "sp")
    kw = {"models": ("pop",), "progress": False, "transfer": False}
    _, info = run_demo(data, out=tmp_path / "o1", **kw)
    assert info["split"] == "given" and info["test_examples"] == 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, info = run_demo(data, out=tmp_path / "o2", split="loo", resplit=True, **kw)
    assert info["split"] == "loo"


def test_a_table_given_in_python_is_checked_as_a_file_would_be():
    """Text times sorted as text ("10" before "8": the test example became [3, 4, 1] -> 2);
    a NaN or null time was taken; a datetime column crashed the temporal split; pandas
    tables raised AttributeError."""
    import datetime as dt

    from warmrec.data.prepared import prepare
    from warmrec.errors import DataError

    base = {"user_id": [1] * 4 + [2] * 3, "item_id": [1, 2, 3, 4, 1, 2, 3]}
    text = pl.DataFrame({**base, "timestamp": ["8", "9", "10", "11", "1", "2", "3"]})
    with pytest.raises(DataError, match="timestamps must be numbers or datetimes"):
        prepare(text)
    nan = pl.DataFrame({**base, "timestamp": [8.0, float("nan"), 10, 11, 1, 2, 3]})
    with pytest.raises(DataError, match=r"missing value \(NaN\) at data row 2"):
        prepare(nan)
    good = pl.DataFrame({**base, "timestamp": [8, 9, 10, 11, 1, 2, 3]})
    p = prepare(good.to_pandas())  # pandas, as RecTools and LensKit take it
    assert p.vocab.decode(p.test.targets.tolist()) == [4, 3]  # each user's latest event
    start = dt.datetime(2024, 1, 1)
    when = pl.DataFrame(
        {**base, "timestamp": [start + dt.timedelta(days=d) for d in (8, 9, 10, 11, 1, 2, 3)]}
    )
    sp = prepare(
        when, split="temporal", split_options={"test_start": "2024-01-11", "valid_share": 0.25}
    )
    assert (
        sp.split.test["timestamp"].min()
        == dt.datetime(2024, 1, 11, tzinfo=dt.timezone.utc).timestamp()
    )


def test_sessions_whose_first_event_has_no_user_keep_their_user():
    """prepare took a session's user from its first event with a known item: a session whose
    first event had no user was user 0 (unknown) in train, valid and test. A table given in
    Python whose session id spans two users was accepted (a file's is refused)."""
    from warmrec.errors import DataError

    rows = [
        (s, None if k == 0 else "abcdef"[s], k + 1, 100.0 * s + k)
        for s in range(6)
        for k in range(3)
    ]
    df = pl.DataFrame(rows, schema=["session_id", "user_id", "item_id", "timestamp"], orient="row")
    opts = {"test_start": 450.0, "valid_start": 350.0}
    prep = prepare(df, split="temporal", split_options=opts)
    assert prep.split.kind == "sessions"
    uv = prep.user_vocab
    assert uv.decode(prep.train.users) == ["a", "b", "c", "d"]
    assert uv.decode(prep.valid.users) == ["e", "e"] and uv.decode(prep.test.users) == ["f", "f"]
    sp = do_split(df, "temporal", **opts)  # the per-part constructors agree
    _same_train(prep.train, SequenceDataset.from_frame(sp.train, prep.vocab, user_vocab=uv))
    _same_eval(prep.test, sp.test_set(prep.vocab, uv))
    two = df.with_columns(
        user_id=pl.when(pl.col("timestamp") == 2.0).then(pl.lit("z")).otherwise("user_id")
    )
    with pytest.raises(DataError, match="session 0 under user 'z' here and user 'a'"):
        prepare(two, split="temporal", split_options=opts)


def test_a_session_id_is_never_read_as_a_user_id_with_a_given_user_vocabulary():
    """prepare of a session log without users, given a user vocabulary (a saved model's), read
    the session ids of leave-one-out's examples as user ids (sessions 1 and 2 became users 1
    and 2) where :meth:`EvalSet.from_frames` gives no user."""
    df = pl.DataFrame(
        {
            "session_id": [1, 1, 1, 1, 2, 2, 2, 2],
            "item_id": [1, 2, 3, 4, 2, 3, 4, 1],
            "timestamp": [1.0, 2, 3, 4, 5, 6, 7, 8],
        }
    )
    uv = ItemVocab.from_ids([1, 2])
    prep = prepare(df, split="loo", user_vocab=uv)
    assert prep.split.kind == "next_item" and prep.split.key == "session_id"
    assert len(prep.test) == 2 and prep.test.users is None and prep.valid.users is None
    _same_eval(prep.test, prep.split.test_set(prep.vocab, uv))
    _same_eval(prep.valid, prep.split.valid_set(prep.vocab, uv))


def test_printing_a_prepared_log_is_a_summary_not_its_arrays():
    from warmrec.data.prepared import prepare
    from warmrec.registry import get_model

    df = pl.DataFrame(
        {
            "user_id": [1] * 4 + [2] * 3,
            "item_id": [1, 2, 3, 4, 1, 2, 3],
            "timestamp": [8, 9, 10, 11, 1, 2, 3],
        }
    )
    p = prepare(df)
    assert repr(p.train) == "SequenceDataset(2 sequences by user_id, 3 events, 4 items)"
    assert repr(p.test) == "EvalSet(2 examples, mean history 2.5)"
    assert repr(p).startswith("Prepared(split 'loo', 7 events, 4 items; train SequenceDataset(")
    model = get_model("markov")
    assert repr(model) == "Markov('markov', not fitted)"
    assert repr(model.fit(p.train)) == "Markov('markov', fitted on 4 items)"


@pytest.mark.parametrize("name", ["online-retail", "diginetica"])
def test_named_session_logs_with_missing_users_prepare_with_the_default_split(name):
    # their user_id may be empty (guest invoices, anonymous sessions): the default split
    # (last_session per user) raised a TypeError from NumPy on those nulls
    from warmrec.data.catalogue import load_dataset
    from warmrec.errors import DataWarning

    inter = load_dataset(name, Path(__file__).parents[1] / "fixtures" / "datasets" / name)
    assert inter.interactions["user_id"].null_count() > 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prep = prepare(inter)
    assert prep.info["split"] == "last_session"
    assert prep.info["split_info"]["sessions_without_user_in_train"] >= 1
    assert any(
        issubclass(w.category, DataWarning) and "no user_id" in str(w.message) for w in caught
    )
    assert prep.split.train.height == inter.interactions.height  # nothing lost


def test_a_user_split_holding_out_no_test_user_says_why():
    # 4 users and test_frac 0.1: round(0.4) = 0 test users; the warning blamed sequences too
    # short or held-out items unseen in training, neither of which was the case
    from warmrec.errors import DataWarning

    df = pl.DataFrame(
        [(u, j, float(j)) for u in range(4) for j in range(4)],
        schema=["user_id", "item_id", "timestamp"],
        orient="row",
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p = prepare(df, split="user")
    msgs = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert msgs == [
        "the user split leaves no test example (it holds out none: test_frac=0.1 of 4 users "
        "rounds to 0; expected test_frac above 0.125, or more users): evaluating gives NaN"
    ]
    info = p.info["split_info"]
    assert (info["users"], info["test_users"], info["valid_users"]) == (4, 0, 0)
    # held-out users whose sequences are too short: the reason given before still holds
    short = df.filter((pl.col("user_id") == 0) | (pl.col("item_id") == 0))
    with pytest.warns(DataWarning, match=r"sequences too short for it"):
        p = prepare(short, split="user", split_options={"test_frac": 0.3})
    assert p.info["split_info"]["test_users"] == 1
