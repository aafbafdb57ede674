"""The ``time_new_learners`` split: exact parts on a hand-made log, nothing after the cut trains."""

from __future__ import annotations

import polars as pl
import pytest

from warmrec.data.prepared import prepare
from warmrec.data.split import require_split_time, split, time_new_learners
from warmrec.data.splitdir import write_split
from warmrec.data.vocab import ItemVocab
from warmrec.errors import ConfigError, DataError
from warmrec.experiments.spec import spec_from_config

CUT, VALID_START = 100.0, 50.0
# user 1: old learner (an event after the cut); user 2: arrives in the validation window, new
# items 5, 6, 7 before the cut (then a repeat of 6 and a post-cut event); user 3: arrives in the
# window with one distinct item; user 4: arrives at the cut exactly, new items 3, 9, 10, then a
# repeat; user 5: arrives after the cut with one distinct item; user 6: new items 1, 11.
LOG = pl.DataFrame(
    {
        "user_id": [1, 1, 1, 2, 2, 2, 2, 2, 2, 3, 3, 3, 4, 4, 4, 4, 4, 5, 5, 6, 6],
        "item_id": [1, 2, 3, 5, 6, 5, 7, 6, 8, 2, 2, 9, 3, 9, 3, 10, 9, 9, 9, 1, 11],
        "timestamp": [
            10.0, 20, 110, 60, 70, 80, 90, 95, 120, 55, 65, 130, 100, 101, 102, 103, 104,
            110, 111, 105, 106,
        ],
    }
)  # fmt: skip


def _rows(df: pl.DataFrame) -> list[tuple]:
    return list(zip(df["user_id"].to_list(), df["item_id"].to_list(), df["timestamp"].to_list()))


def test_exact_parts_with_a_validation_window():
    sp = time_new_learners(LOG, CUT, VALID_START)
    assert _rows(sp.test) == [(4, 10, 103.0), (6, 11, 106.0)]
    assert _rows(sp.valid) == [(2, 7, 90.0)]
    assert _rows(sp.context) == [
        (2, 5, 60.0),
        (2, 6, 70.0),
        (2, 5, 80.0),
        (4, 3, 100.0),
        (4, 9, 101.0),
        (4, 3, 102.0),
        (6, 1, 105.0),
    ]
    # user 3 (one distinct item before the cut) trains; nothing at or after the cut does
    assert _rows(sp.train) == [(1, 1, 10.0), (1, 2, 20.0), (3, 2, 55.0), (3, 2, 65.0)]
    assert sp.train["timestamp"].max() < CUT
    held = set(sp.test["user_id"]) | set(sp.valid["user_id"])
    assert held.isdisjoint(set(sp.train["user_id"]))
    info = sp.info
    assert info["method"] == "time_new_learners"
    assert (info["new_learners"], info["test_learners"]) == (3, 2)
    assert (info["valid_window_learners"], info["valid_learners"]) == (2, 1)
    # items 10 and 11 (test) and 7 (valid) have no training event
    assert info["test_targets_without_train_events"] == 2
    assert info["valid_targets_without_train_events"] == 1
    # dropped: 1@110, 2@95, 2@120, 3@130, 4@104, 5@110, 5@111
    assert info["events_dropped"] == 7
    assert info["events_after_cut_of_learners_arriving_before"] == 3  # users 1, 2, 3
    assert info["new_learners_with_too_few_items_events_dropped"] == 2
    assert sp.describe()["context"] == {"rows": 7, "keys": 3}


def test_without_validation_window_every_event_before_the_cut_trains():
    sp = time_new_learners(LOG, "1970-01-01T00:01:40+00:00")  # = 100 s
    assert sp.valid.height == 0
    assert sp.train.height == int((LOG["timestamp"] < CUT).sum()) == 9
    assert _rows(sp.test) == [(4, 10, 103.0), (6, 11, 106.0)]
    assert split(LOG, "time_new_learners", cut=CUT).test.height == 2


def test_min_new_three_drops_learners_with_two_items():
    sp = time_new_learners(LOG, CUT, VALID_START, min_new=3)
    assert _rows(sp.test) == [(4, 10, 103.0)]
    assert sp.context.filter(pl.col("user_id") == 6).height == 0


def test_prepare_gives_context_as_history_and_never_trains_on_it():
    p = prepare(LOG, split="time_new_learners", split_options={"cut": CUT, "valid_start": 50})
    # the catalogue keeps the items first seen after the cut
    assert set(p.vocab.ids.to_list()) == set(LOG["item_id"].to_list())
    assert sorted(p.train.sequences.keys.to_list()) == [1, 3]
    assert int(p.train.item_counts().sum()) == 4
    test_hist = [p.vocab.decode(p.test.history(i)) for i in range(len(p.test))]
    assert test_hist == [[3, 9, 3], [1]]
    assert p.vocab.decode(p.test.targets) == [10, 11]
    assert p.vocab.decode(p.valid.history(0)) == [5, 6, 5]
    # the split's own eval sets (without prepare) read the context too
    vocab = ItemVocab.from_ids(LOG["item_id"])
    assert vocab.decode(p.split.test_set(vocab).history(0)) == [3, 9, 3]
    # the training part counts training events only (item 9: context and dropped rows only)
    counts = p.train.item_counts()
    assert counts[p.vocab.encode(pl.Series([2]))[0]] == 3
    assert counts[p.vocab.encode(pl.Series([9]))[0]] == 0


def test_bad_options_raise_config_errors():
    with pytest.raises(ConfigError, match="min_new"):
        time_new_learners(LOG, CUT, min_new=1)
    with pytest.raises(ConfigError, match="valid_start"):
        time_new_learners(LOG, CUT, valid_start=CUT)
    with pytest.raises(ConfigError, match="arriving at or after the cut"):
        time_new_learners(LOG, 1000.0)
    with pytest.raises(ConfigError, match="time_new_learners"):
        split(LOG, "time_new_learners", cut=CUT, test_start=CUT)
    # at or before the first event (10): every learner arrives after it, nothing would train
    # (the split had no word for it: an empty training part, every learner held out)
    with pytest.raises(ConfigError, match="cut 10.0 is at or before the first event"):
        time_new_learners(LOG, 10.0)
    with pytest.raises(ConfigError, match="valid_start 5.0 is at or before the first event"):
        time_new_learners(LOG, CUT, valid_start=5.0)
    just_after = time_new_learners(LOG, CUT, valid_start=10.5)  # user 1 arrived before it
    assert _rows(just_after.train) == _rows(time_new_learners(LOG, CUT, VALID_START).train)


def test_spec_needs_a_cut_and_passes_the_options():
    spec = spec_from_config({"split": {"method": "time_new_learners", "cut": "2019-07-01"}})
    assert spec.split.options() == {"cut": "2019-07-01", "min_new": 2}
    with pytest.raises(ConfigError, match="split.cut"):
        spec_from_config({"split": {"method": "time_new_learners"}})
    with pytest.raises(ConfigError, match="min_new"):
        spec_from_config({"split": {"method": "time_new_learners", "cut": 5, "min_new": 1}})


def test_ordinal_logs_refuse_dates_and_split_folders_refuse_context(tmp_path):
    with pytest.raises(DataError, match="cut"):
        require_split_time(LOG, "time_new_learners", {"cut": "2019-07-01"}, "ordinal")
    require_split_time(LOG, "time_new_learners", {"cut": 100}, "ordinal")
    sp = time_new_learners(LOG, CUT, VALID_START)
    with pytest.raises(ConfigError, match="history-only"):
        write_split(sp, tmp_path / "out", method="time_new_learners")
    assert not (tmp_path / "out").exists()


def test_a_run_spec_excludes_seen_items_by_default():
    spec = spec_from_config(
        {"model": {"name": "pop"}, "split": {"method": "time_new_learners", "cut": 100}}
    )
    assert spec.eval.exclude_seen is True
    spec = spec_from_config(
        {
            "model": {"name": "pop"},
            "split": {"method": "time_new_learners", "cut": 100},
            "eval": {"exclude_seen": False},
        }
    )
    assert spec.eval.exclude_seen is False
