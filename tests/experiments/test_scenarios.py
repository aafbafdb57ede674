"""Scenarios: the cold-start user split checks its sizes and splits users, not events."""

from __future__ import annotations

import numpy as np
import pytest

from warmrec.errors import ConfigError, DataError
from warmrec.experiments.scenarios import ColdStartUsers, shot_eval_set
from warmrec.experiments.studies.coldstart import user_sequences

from .studies.test_coldstart import planted_log


@pytest.mark.parametrize(
    "kw, words",
    [
        ({"shots": (0, -1)}, ["shots", ">= 1", "0, -1"]),
        ({"shots": ()}, ["shots", "at least one"]),
        ({"valid_users": 0.5, "test_users": 0.5}, ["valid_users + test_users", "< 1"]),
        ({"valid_users": 0.0}, ["valid_users"]),
        ({"shots": (1, 2, 3), "max_events": 3}, ["max_events", ">= max(shots) + 1 = 4", "3"]),
    ],
)
def test_bad_settings_are_one_config_line(kw, words):
    with pytest.raises(ConfigError) as e:
        ColdStartUsers(**kw)
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_sizes_that_leave_a_part_empty_are_refused_in_one_line():
    lens = np.array([20, 20, 3, 3, 3])  # two users with > 10 events
    with pytest.raises(DataError) as e:
        ColdStartUsers(shots=(1, 10)).assign(lens, seed=0)
    msg = str(e.value)
    assert "\n" not in msg
    assert ">= 11 events" in msg and "2 eligible of 5 users" in msg
    # the same users are enough with fewer revealed events
    parts = ColdStartUsers(shots=(1,), valid_users=0.2, test_users=0.2).assign(lens, seed=0)
    assert parts.sizes() == {"train": 3, "valid": 1, "test": 1}


def test_max_events_holds_out_only_cold_users_and_long_histories_train():
    # lengths 1..8, four users each: with shots (1, 2, 3) and max_events 5 only the users with
    # 4 or 5 events can be held out; every longer (and shorter) history trains
    lens = np.repeat(np.arange(1, 9), 4)
    sc = ColdStartUsers(shots=(1, 2, 3), max_events=5, valid_users=0.25, test_users=0.5)
    parts = sc.assign(lens, seed=0)
    held = np.concatenate([parts.valid, parts.test])
    assert parts.sizes() == {"train": 26, "valid": 2, "test": 4}
    assert set(lens[held].tolist()) <= {4, 5}
    assert set(np.flatnonzero(lens > 5).tolist()) <= set(parts.train.tolist())
    assert set(np.flatnonzero(lens < 4).tolist()) <= set(parts.train.tolist())


def test_max_events_with_too_few_cold_users_is_one_line_naming_the_cap():
    lens = np.array([1, 1, 2, 30, 40, 4])  # a single user with 4 or 5 events
    with pytest.raises(DataError) as e:
        ColdStartUsers(shots=(1, 2, 3), max_events=5).assign(lens, seed=0)
    msg = str(e.value)
    assert "\n" not in msg
    assert "<= 5 (max_events)" in msg and "1 eligible of 6 users" in msg


def test_every_user_is_in_exactly_one_part_and_the_seed_decides():
    lens = np.full(50, 12)
    sc = ColdStartUsers(valid_users=0.1, test_users=0.2)
    a, b, c = sc.assign(lens, 0), sc.assign(lens, 0), sc.assign(lens, 1)
    assert a.sizes() == {"train": 35, "valid": 5, "test": 10}
    assert sorted(np.concatenate([a.train, a.valid, a.test]).tolist()) == list(range(50))
    assert np.array_equal(a.test, b.test) and not np.array_equal(a.test, c.test)


def test_short_users_only_train_and_capped_users_never_train():
    lens = np.array([12] * 20 + [4] * 10)
    sc = ColdStartUsers(valid_users=0.25, test_users=0.25, max_valid_users=2, max_test_users=3)
    parts = sc.assign(lens, seed=0)
    assert parts.sizes() == {"train": 20, "valid": 2, "test": 3}
    assert set(range(20, 30)) <= set(parts.train.tolist())  # too short to be held out
    assert len(set(parts.train.tolist()) & set(range(20))) == 10  # 5 + 5 held, 10 train


def test_time_order_holds_out_the_users_who_start_last():
    lens = np.full(10, 12)
    first = np.array([5, 1, 9, 3, 7, 0, 8, 2, 6, 4], dtype=float)
    parts = ColdStartUsers(order="time", valid_users=0.2, test_users=0.2).assign(lens, 0, first)
    assert parts.test.tolist() == [2, 6]  # first events 9, 8
    assert parts.valid.tolist() == [4, 8]  # 7, 6
    with pytest.raises(DataError, match="timestamps"):
        ColdStartUsers(order="time").assign(lens, 0)


def test_a_fixed_number_of_test_users_keeps_a_share_training():
    lens = np.full(10, 12)
    sc = ColdStartUsers(valid_users=0.1, n_test_users=100, min_train_share=0.5)
    # test = min(100 asked, 9 eligible left, 10 - 1 valid - 5 kept for training) = 4
    assert sc.assign(lens, 0).sizes() == {"train": 5, "valid": 1, "test": 4}


def test_split_and_shot_eval_sets_over_user_sequences():
    data = user_sequences(planted_log())
    split = ColdStartUsers(shots=(1, 3)).split(data, seed=0)
    es = split.eval_set("test", 3)
    seqs = data.sequences
    u = split.test[0]
    items = seqs.items[seqs.offsets[u] : seqs.offsets[u + 1]]
    np.testing.assert_array_equal(es.history(0), items[:3])
    assert es.targets[0] == items[3]
    with pytest.raises(DataError, match="k = 0"):
        shot_eval_set(data, split.test, 0)


def test_time_order_trains_no_user_who_starts_after_the_held_out_ones():
    """Users too short (or too long, ``max_events``) to be held out had trained whenever they
    started: with ``order="time"`` those who start after the first held-out user are the
    future, and do not train."""
    lens = np.array([12] * 10 + [2, 2, 2])  # three users too short to be held out
    first = np.array([5, 1, 9, 3, 7, 0, 8, 2, 6, 4, 0.5, 5.5, 9.5], dtype=float)
    parts = ColdStartUsers(order="time", valid_users=0.2, test_users=0.2).assign(lens, 0, first)
    assert parts.test.tolist() == [2, 6] and parts.valid.tolist() == [4, 8]  # from 6 on
    assert parts.train.tolist() == [0, 1, 3, 5, 7, 9, 10, 11]  # 11 (5.5) trains, 12 (9.5) not
    assert max(first[parts.train]) < min(first[np.r_[parts.valid, parts.test]])


def test_a_shot_eval_set_holds_only_its_users_revealed_events_and_targets():
    """shot_eval_set shared the dataset's items array: every user's whole sequence, the test
    users' too. What reads a validation set's items as what that part holds (Fresh's and
    FeatRank's known items, which leave out the items only the test part brings) then took
    item 9, which only the test user has, as known. Now its items are each user's first
    k + 1 events, with the same histories and targets."""
    import polars as pl

    from warmrec.data.dataset import SequenceDataset
    from warmrec.data.vocab import ItemVocab
    from warmrec.experiments.scenarios import UserSplit
    from warmrec.models.fresh import known_mask

    rows = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 1), (2, 2), (2, 4), (2, 3), (3, 1)]
    rows += [(3, 9), (3, 9), (4, 3), (4, 1), (4, 2)]
    df = pl.DataFrame(
        {
            "user_id": [u for u, _ in rows],
            "item_id": [i for _, i in rows],
            "timestamp": [float(t) for t in range(len(rows))],
        }
    )
    vocab = ItemVocab.from_ids([1, 2, 3, 4, 9])
    data = SequenceDataset.from_frame(df, vocab)
    split = UserSplit(np.array([0, 1]), np.array([2, 4]), np.array([3]), data)
    valid = shot_eval_set(data, split.valid, 2)
    dec = vocab.decode
    assert [list(dec(valid.history(j))) for j in range(2)] == [[1, 2], [3, 1]]
    assert list(dec(valid.targets)) == [4, 2]
    assert sorted(set(dec(valid.items))) == [1, 2, 3, 4]  # not 9 (the test user's)
    got = known_mask(split.subset(split.train), valid)
    assert [dec([j])[0] for j in np.flatnonzero(got.numpy())] == [1, 2, 3, 4]
