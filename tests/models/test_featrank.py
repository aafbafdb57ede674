"""FeatRank: each feature's known answer, the weights fitted where a generator says which signal
leads to the next item (the course order, the topic, the cold items after cold ones), the
validation's part, sampled negatives, tag- and time-field detection, the publication-year gap
kept only where it pays on validation, the state round-trip and errors."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from tests.conftest import GROWING_SPLIT, growing_catalogue_log
from warmrec import evaluate, get_model
from warmrec.data.dataset import Batch, EvalSet, SequenceDataset
from warmrec.data.prepared import prepare
from warmrec.data.vocab import ItemVocab
from warmrec.errors import ModelError
from warmrec.models.base import Recommender
from warmrec.models.featrank import (
    FeatRank,
    first_step_values,
    tag_fields,
    tag_incidence,
    time_fields,
    transition_counts,
)
from warmrec.models.fresh import known_mask
from warmrec.models.hybrid import normalise

N_TOPICS, PER_TOPIC = 4, 10
IDS = list(range(100, 100 + N_TOPICS * PER_TOPIC))  # topic k: ids 100 + 10 k ... 109 + 10 k


def _items() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "item_id": IDS,
            "title": [f"video {i}" for i in IDS],  # unique: not a tag field
            "software": [[f"s{(i - 100) // PER_TOPIC}"] for i in IDS],
            "level": ["easy" if i % 2 else "hard" for i in IDS],
            "lang": ["en"] * len(IDS),  # one value: not a tag field
            "year": [2016 + (i - 100) // PER_TOPIC for i in IDS],
        }
    )


def _courses(topics: list[int], n: int, seed: int, start_key: int = 0) -> pl.DataFrame:
    """``n`` learners, each in one topic of ``topics``: from a random video of the first half,
    the next video of the course (id + 1) 4 times in 5, else another video of the topic."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {"session_id": [], "item_id": [], "timestamp": []}
    t = 0.0
    for s in range(n):
        k = int(rng.choice(topics))
        lo = 100 + k * PER_TOPIC
        item = lo + int(rng.integers(0, PER_TOPIC // 2))
        for _ in range(4):
            rows["session_id"].append(start_key + s)
            rows["item_id"].append(item)
            rows["timestamp"].append(t)
            t += 1.0
            if rng.random() < 0.8 and item + 1 < lo + PER_TOPIC:
                item += 1
            else:
                item = lo + int(rng.integers(0, PER_TOPIC))
    return pl.DataFrame(rows)


def _data(n_train: int = 300) -> tuple[SequenceDataset, EvalSet, EvalSet]:
    """Training on topics 0-2 (topic 3's videos are cold); validation: the last step of learners
    of every topic (a quarter on the cold topic); test: fresh learners alike."""
    vocab = ItemVocab.from_ids(IDS)
    train = SequenceDataset.from_frame(
        _courses([0, 1, 2], n_train, 0), vocab, item_features=_items()
    )
    return train, _last_steps(vocab, 1, 10_000), _last_steps(vocab, 2, 20_000)


def _last_steps(vocab: ItemVocab, seed: int, key: int) -> EvalSet:
    return _eval_set(vocab, _courses([0, 1, 2, 3], 200, seed, key))


def _eval_set(vocab: ItemVocab, df: pl.DataFrame, back: bool = False) -> EvalSet:
    """Each sequence's last item as the target of the rest; ``back``: the target is instead the
    item before the last one (the learner goes back a video: a repeat, not the next one)."""
    seqs = SequenceDataset.from_frame(df, vocab).sequences
    items = np.asarray(seqs.items, dtype=np.int64)
    offs = np.asarray(seqs.offsets, dtype=np.int64)
    ends = offs[1:] - 1
    targets = items[ends - 2] if back else items[ends]
    keys = pl.Series("key", np.arange(len(offs) - 1))
    return EvalSet(items, offs[:-1], ends, targets, len(vocab), keys)


def test_tag_fields_detected_by_cardinality():
    assert tag_fields(_items(), len(IDS) + 1) == ["level", "software"]
    assert tag_fields(None, 10) == []
    pairs, index = tag_incidence([None, ["a", "b"], "b", None, []])
    assert pairs.tolist() == [[1, 1, 2], [0, 1, 1]] and index == {"a": 0, "b": 1}
    more, grown = tag_incidence(["c", ["b"]], index)  # new items: known values keep columns
    assert more.tolist() == [[0, 1], [2, 1]] and grown == {"a": 0, "b": 1, "c": 2}
    assert index == {"a": 0, "b": 1}


def test_a_tag_value_listed_twice_counts_once():
    """An item whose list repeats a value (["a", "a"]) shares the history's values as one
    that lists it once: a history all on "a" gives both 1, not the repeat 2."""
    pairs, _ = tag_incidence([None, ["a"], ["a", "a"], ["a", "b", "a"]])
    assert pairs.tolist() == [[1, 2, 3, 3], [0, 0, 0, 1]]
    items = pl.DataFrame({"item_id": [1, 2, 3, 4], "sw": [["a"], ["a", "a"], ["a", "b"], ["b"]]})
    train = _seqs([[1, 2, 3, 4], [4, 3, 2, 1]], [1, 2, 3, 4], items)
    m = FeatRank(base="pop", tag_fields=["sw"], order_window=0).fit(train)
    ix = {i: int(train.vocab.lookup([i])[0]) for i in (1, 2, 3, 4)}
    f, _ = m.features(Batch(torch.tensor([[ix[1]], [ix[2]]])))
    col = f[:, :, m.names.index("tag:sw")]
    assert col[:, [ix[1], ix[2], ix[3], ix[4]]].tolist() == [[1.0, 1.0, 1.0, 0.0]] * 2


def test_time_fields_detected_by_type_and_range():
    import datetime as dt

    items = pl.DataFrame(
        {
            "item_id": [1, 2, 3],
            "year": [2016, 2019, None],  # integers that read as years
            "published": [dt.date(2020, 1, 1), dt.date(2020, 3, 1), dt.date(2021, 1, 1)],
            "views": [5, 2500, 40],  # a count: 5 is no year
            "score": [2016.0, 2017.0, 2018.0],  # floats: not a date
            "made": [2020, 2020, 2020],  # one value: says nothing
            "title": ["a", "b", "c"],
        }
    )
    assert time_fields(items) == ["published", "year"]
    assert time_fields(None) == []
    # a date field is a gap field in days
    log = pl.DataFrame({"session_id": [0, 0], "item_id": [1, 2], "timestamp": [0.0, 1.0]})
    train = SequenceDataset.from_frame(log, ItemVocab.from_ids([1, 2, 3]), item_features=items)
    m = FeatRank(base="pop", gap_fields=["published"], tag_fields=[], transitions=False)
    m.fit(train)
    days = m.gaps["published"] * m.gap_scale["published"]
    ix = m.vocab.lookup([1, 2, 3])
    assert days[ix].tolist() == pytest.approx([18262.0, 18322.0, 18628.0])


def _by_year(n: int, seed: int, key: int, same_year: bool) -> pl.DataFrame:
    """``n`` learners of 4 videos, each next video drawn from the videos of the last one's
    publication year (``same_year``) or from the whole catalogue."""
    rng = np.random.default_rng(seed)
    year = dict(zip(IDS, _shuffled_years(), strict=True))
    rows: dict[str, list] = {"session_id": [], "item_id": [], "timestamp": []}
    for s in range(n):
        item = int(rng.choice(IDS))
        for k in range(4):
            rows["session_id"].append(key + s)
            rows["item_id"].append(item)
            rows["timestamp"].append(float(10 * s + k))
            pool = [i for i in IDS if i != item and (year[i] == year[item] or not same_year)]
            item = int(rng.choice(pool))
    return pl.DataFrame(rows)


def _shuffled_years() -> list[int]:
    """The 40 videos' years, 10 per year 2016-2019, in a random order of the ids (so neither
    the id order nor the topic tells them)."""
    return list(np.random.default_rng(7).permutation(np.repeat(np.arange(2016, 2020), 10)))


def test_publication_year_gap_is_kept_only_where_it_pays_on_validation(tmp_path):
    """``gap_fields = "auto"``: the year (detected) is kept where the next video shares the
    last one's year in validation too, and dropped where validation's learners move at
    random: then the fit equals one without the field; none is judged without validation."""
    vocab = ItemVocab.from_ids(IDS)
    items = _items().with_columns(pl.Series("year", _shuffled_years()))
    train = SequenceDataset.from_frame(_by_year(300, 0, 0, True), vocab, item_features=items)
    alike = _eval_set(vocab, _by_year(200, 1, 10_000, True))
    cfg = {"base": "pop", "transitions": False, "order_window": 0, "tag_fields": []}
    kept = FeatRank(cfg).fit(train, alike)
    check = kept.gap_check
    assert check is not None and check["fields"] == ["year"]
    assert check["with"] > check["without"] + 0.1
    assert "gap:year" in kept.names and kept.weights()["gap:year"] > 1.0
    loaded = Recommender.load(kept.save(tmp_path / "kept"))
    assert loaded.names == kept.names and torch.equal(loaded.weights_, kept.weights_)
    # validation where the year says nothing: dropped, as if never a candidate
    noise = _eval_set(vocab, _by_year(200, 1, 10_000, False))
    dropped = FeatRank(cfg).fit(train, noise)
    assert (
        dropped.gap_check is not None and dropped.gap_check["with"] < dropped.gap_check["without"]
    )
    assert "gap:year" not in dropped.names and not dropped.gaps
    never = FeatRank({**cfg, "gap_fields": []}).fit(train, noise)
    assert never.names == dropped.names and never.gap_check is None
    torch.testing.assert_close(dropped.weights_, never.weights_, atol=1e-4, rtol=1e-4)
    loaded = Recommender.load(dropped.save(tmp_path / "dropped"))
    assert loaded.names == dropped.names
    # no validation: nothing to judge on, no gap
    alone = FeatRank(cfg).fit(train)
    assert alone.gap_check is None and "gap:year" not in alone.names


def test_features_known_answer():
    train, _, _ = _data(50)
    m = FeatRank(base="pop", gap_fields=["year"], seen_window=3, recent=2, decay=0.5).fit(train)
    assert m.names == [
        "base", "markov", "order", "seen", "last", "tag:level", "tag:software", "pop",
        "gap:year", "cold", "cold*share", "cold*base",
    ]  # fmt: skip
    ix = {i: int(train.vocab.lookup([i])[0]) for i in IDS}
    # history 101 (easy, s0), 130 (hard, s3: cold); the last two read by the tags, weights 0.5, 1
    batch = Batch(torch.tensor([[ix[100], ix[101], ix[130]]]))
    f, usable = m.features(batch)
    col = {n: f[0, :, k] for k, n in enumerate(m.names)}
    assert not usable[0, 0] and usable[0, 1:].all()
    base = normalise(m.base.score(batch), "zscore")[0]
    torch.testing.assert_close(col["base"][1:], base[1:])
    # markov (on by default): 130 is cold, so no training transition leaves it
    assert not col["markov"].any()
    # order: p(d) from the training transitions, d = id - 130; the window is 5
    assert col["order"][ix[131]] == m.order[5 + 1] == 1.0  # +1 is the most common offset
    assert col["order"][ix[136]] == 0.0 and col["order"][ix[130]] == 0.0
    assert {i for i in IDS if col["seen"][ix[i]] == 1} == {100, 101, 130}
    assert {i for i in IDS if col["last"][ix[i]] == 1} == {130}
    # tag:software: 101 (weight 1/3) is s0, 130 (2/3) is s3
    assert col["tag:software"][ix[105]] == pytest.approx(1 / 3)
    assert col["tag:software"][ix[139]] == pytest.approx(2 / 3)
    assert col["tag:software"][ix[115]] == 0.0
    # tag:level: 101 easy (1/3), 130 hard (2/3)
    assert col["tag:level"][ix[103]] == pytest.approx(1 / 3)
    assert col["tag:level"][ix[104]] == pytest.approx(2 / 3)
    # gap: minus |year - 2019| over the years' spread (topics 0-3: 2016-2019)
    spread = float(torch.tensor([2016.0, 2017, 2018, 2019]).repeat_interleave(10).std())
    assert col["gap:year"][ix[100]] == pytest.approx(-3 / spread, rel=1e-5)
    assert col["gap:year"][ix[135]] == 0.0
    # cold: topic 3; c(h) over the last two: 130 cold (1), 101 warm (0.5) -> 2/3
    never = {i for i in IDS if train.item_counts()[ix[i]] == 0}
    assert {i for i in IDS if col["cold"][ix[i]] == 1} == never >= set(range(130, 140))
    assert col["cold*share"][ix[131]] == pytest.approx(2 / 3)
    assert col["cold*share"][ix[101]] == 0.0
    torch.testing.assert_close(col["cold*base"][1:], (base * m.cold)[1:])
    # pop: z-scored log counts of the warm items, 0 for the cold ones
    counts = torch.tensor(train.item_counts(), dtype=torch.float64)
    warm = counts[1:] > 0
    logc = torch.log1p(counts[1:][warm])
    want = ((logc - logc.mean()) / logc.std()).float()
    torch.testing.assert_close(col["pop"][1:][warm], want)
    # an empty history: no order, seen, tags, gap or share
    f0, _ = m.features(Batch(torch.zeros(1, 3, dtype=torch.long)))
    for n in (
        "markov",
        "order",
        "seen",
        "last",
        "tag:level",
        "tag:software",
        "gap:year",
        "cold*share",
    ):
        assert f0[0, :, m.names.index(n)].abs().sum() == 0, n


def test_weights_follow_the_generator_and_rank_the_next_video():
    train, valid, test = _data()
    m = get_model("featrank", {"base": "pop", "cold_target_share": "catalogue"})
    m.fit(train, valid)
    w = m.weights()
    assert w["order"] > 1.0  # the next video of the course
    assert w["tag:software"] > 1.0  # else a video of the same topic
    # (the cold weights stay near 0 here: the topic alone tells the cold videos apart, since a
    # topic's videos are all cold or all warm; test_cold_weights_... isolates them)
    # the next video of the course is ranked first far more often than by any single signal
    hr1 = evaluate(m, test, ["hr@1", "hr@10"]).summary
    assert hr1["hr@1"] > 0.6 and hr1["hr@10"] > 0.95
    pop = evaluate(get_model("pop").fit(train), test, ["hr@10"])["hr@10"]
    assert pop < 0.4
    # on the cold topic too: after 131, 132 (cold, never a training target) comes first
    top = m.recommend([[130, 131]], k=1)[0]
    assert top == [132]


def test_cold_weights_need_validation_and_follow_cold_target_share():
    train, valid, _ = _data()
    alone = FeatRank(base="pop").fit(train)
    w = alone.weights()
    assert w["cold"] == w["cold*share"] == w["cold*base"] == 0.0
    low = FeatRank(base="pop", cold_target_share=0.05).fit(train, valid).weights()
    high = FeatRank(base="pop", cold_target_share=0.95).fit(train, valid).weights()
    # weighing the cold targets more raises the bonus the cold videos get
    assert high["cold"] + high["cold*share"] > low["cold"] + low["cold*share"]


def test_fit_valid_false_fits_on_the_training_sequences_alone():
    """``fit_valid = false``: the validation targets fit nothing (the same weights as a fit
    without them, cold ones 0) where the default fits the cold weights on them."""
    train, valid, _ = _data()
    cfg = {"base": "pop", "cold_target_share": 0.95}
    off = FeatRank(**cfg, fit_valid=False).fit(train, valid).weights()
    alone = FeatRank(**cfg).fit(train).weights()
    on = FeatRank(**cfg).fit(train, valid).weights()
    assert off == pytest.approx(alone)
    assert off["cold"] == off["cold*share"] == off["cold*base"] == 0.0
    assert on["cold"] + on["cold*share"] > 0.0


def test_sampled_negatives_learn_the_same_signals():
    train, valid, test = _data()
    full = FeatRank(base="pop").fit(train, valid)
    sampled = FeatRank(base="pop", negatives=8, seed=3).fit(train, valid)
    assert sampled.weights()["order"] > 1.0 and sampled.weights()["tag:software"] > 1.0
    a = evaluate(full, test, ["hr@10"])["hr@10"]
    b = evaluate(sampled, test, ["hr@10"])["hr@10"]
    assert b > a - 0.05


def test_state_round_trip_and_unscorable_items_rank_last(tmp_path):
    train, valid, _ = _data(100)
    m = FeatRank(base="markov", gap_fields=["year"]).fit(train, valid)
    loaded = Recommender.load(m.save(tmp_path / "fr"))
    assert isinstance(loaded, FeatRank) and loaded.names == m.names
    assert torch.equal(loaded.weights_, m.weights_)
    batch = valid.batch(np.arange(20), loaded.history_len)
    assert torch.equal(m.score(batch), loaded.score(batch))
    s = m.score(batch)
    assert torch.isneginf(s[:, 0]).all() and torch.isfinite(s[:, 1:]).all()
    # the score is the features' weighted sum, also when the rows are scored in chunks
    f, usable = m.features(batch)
    torch.testing.assert_close(s[:, 1:], (f @ m.weights_)[:, 1:])
    m._row_chunk = lambda: 3
    torch.testing.assert_close(m.score(batch), s)


def test_new_items_are_cold_with_their_tags_and_order(tmp_path):
    """Four videos added after fitting (a new course 140-142 on a new software value, s4, and
    one more s0 video): cold, popularity 0, their tags, years and ids read as the fitted
    items'; after 140, 141 the next video of the new course, 142, comes first. The fitted
    items' features do not move, the base's included (normalised on the fitted items' scale:
    it took the added items in); the grown model saves and loads."""
    train, valid, _ = _data()
    cfg = {"base": "tfidf", "base_config": {"text_fields": ["title"]}, "gap_fields": ["year"]}
    m = FeatRank(cfg).fit(train, valid)
    batch = valid.batch(np.arange(30), m.history_len)
    before, _ = m.features(batch)
    extra = pl.DataFrame(
        {
            "item_id": [140, 141, 142, 143],
            "title": [f"video {i}" for i in (140, 141, 142, 143)],
            "software": [["s4"], ["s4"], ["s4"], ["s0"]],
            "year": [2020, 2020, 2020, 2016],
        }
    )
    assert m.add_items(extra) == [140, 141, 142, 143]
    assert m.add_items(extra) == []
    after, _ = m.features(batch)
    # the known items' features do not move, the base's included
    assert torch.equal(after[:, : before.shape[1]], before)
    assert m.known_.tolist() == [False] + [True] * (before.shape[1] - 1) + [False] * 4
    assert m.cold[-4:].tolist() == [1.0] * 4 and m.pop[-4:].tolist() == [0.0] * 4
    assert m.tag_values["software"]["s4"] == 4
    assert m.recommend([[140, 141]], k=1)[0] == [142]
    ix = {i: int(m.vocab.lookup([i])[0]) for i in (100, 143, 142)}
    f, _ = m.features(Batch(torch.tensor([[ix[100]]])))
    assert f[0, ix[143], m.names.index("tag:software")] == 1.0  # s0, like 100
    assert f[0, ix[142], m.names.index("tag:software")] == 0.0
    assert f[0, ix[143], m.names.index("gap:year")] == 0.0  # 2016, like 100
    loaded = Recommender.load(m.save(tmp_path / "grown"))
    assert loaded.tag_values == m.tag_values and loaded.recommend([[140, 141]], k=1)[0] == [142]
    state = m.get_state()
    del state["tagvalues.software"]
    with pytest.raises(ModelError, match="no values of tag field 'software'"):
        bare = FeatRank(m.config)  # what load does, on a state without the tag values
        bare.vocab, bare.user_vocab, bare.meta = m.vocab, m.user_vocab, m.meta
        bare.set_state(state)


def test_errors():
    train, _, _ = _data(20)
    with pytest.raises(ModelError, match="no item field 'nope'.*software"):
        FeatRank(base="pop", gap_fields=["nope"]).fit(train)
    with pytest.raises(ModelError, match="gap field 'level' is not numeric"):
        FeatRank(base="pop", gap_fields=["level"]).fit(train)
    with pytest.raises(ModelError, match="call fit"):
        FeatRank().score(Batch(torch.tensor([[1, 2]])))
    bare = SequenceDataset.from_frame(_courses([0], 5, 0), ItemVocab.from_ids(IDS))
    with pytest.raises(ModelError, match="no items"):
        FeatRank(base="pop", tag_fields=["software"]).fit(bare)


def _seqs(
    sequences: list[list[int]], ids: list[int], items: pl.DataFrame | None = None
) -> SequenceDataset:
    rows: dict[str, list] = {"session_id": [], "item_id": [], "timestamp": []}
    for s, seq in enumerate(sequences):
        for k, item in enumerate(seq):
            rows["session_id"].append(s)
            rows["item_id"].append(item)
            rows["timestamp"].append(float(100 * s + k))
    return SequenceDataset.from_frame(
        pl.DataFrame(rows), ItemVocab.from_ids(ids), item_features=items
    )


def test_a_second_fit_refits_the_base_on_its_own_data():
    """Fitting a fitted model again learns from the new data alone: its base too, not the
    one the first fit left (the same scores as a new model's)."""
    ids = [1, 2, 3, 4]
    a, b = _seqs([[1, 2, 3, 4], [1, 2, 3]], ids), _seqs([[4, 3, 2, 1], [4, 3, 2]], ids)
    batch = Batch(torch.tensor([[0, 2], [3, 4]]))
    new = FeatRank(base="markov").fit(b)
    again = FeatRank(base="markov").fit(a).fit(b)
    assert torch.equal(again.base.score(batch), new.base.score(batch))
    assert torch.equal(again.score(batch), new.score(batch))


def test_transition_counts_known_answer():
    train = _seqs([[1, 2, 2, 3], [2, 3], [3, 1]], [1, 2, 3, 4])
    ix = {i: int(train.vocab.lookup([i])[0]) for i in (1, 2, 3, 4)}
    counts = transition_counts(train, len(train.vocab)).to_dense()
    want = torch.zeros(5, 5)
    want[ix[1], ix[2]] = 1  # 2 -> 2 is no transition; 3 | 2 crosses a sequence boundary
    want[ix[2], ix[3]] = 2
    want[ix[3], ix[1]] = 1
    assert torch.equal(counts, want)
    only = transition_counts(train, 5, np.array([False, True, False])).to_dense()
    assert only.sum() == 1 and only[ix[2], ix[3]] == 1
    # two steps apart too, each 1/2 (as the sequential rules): in [1, 2, 2, 3], events 1 and 3
    # (1 -> 2) and events 2 and 4 (2 -> 3); 2 -> 2 stays no transition
    two = transition_counts(train, len(train.vocab), steps=2).to_dense()
    want[ix[1], ix[2]] += 0.5
    want[ix[2], ix[3]] += 0.5
    assert torch.equal(two, want)
    assert torch.equal(
        transition_counts(train, 5, np.array([False, True, False]), 2).to_dense(), only
    )


def test_markov_feature_is_cross_fitted_on_the_training_prefixes(tmp_path):
    """Scoring reads log(1 + count) of every training transition from the last item; a
    training prefix reads only the other folds' counts (x 5/4), never its own sequence's: the
    transition 1 -> 2 of sequence 0 alone is invisible to sequence 0's prefix, while 3 -> 4,
    in sequences 0 and 1 (folds 0 and 1), is seen once from either."""
    train = _seqs([[1, 2, 3, 4], [3, 4]], [1, 2, 3, 4, 5])
    m = FeatRank(base="pop", order_window=0, tag_fields=[], transition_steps=1).fit(train)
    assert m.names[:2] == ["base", "markov"]
    ix = {i: int(train.vocab.lookup([i])[0]) for i in (1, 2, 3, 4, 5)}
    f, _ = m.features(Batch(torch.tensor([[0, ix[1]], [0, ix[3]]])))
    col = f[:, :, 1]
    assert col[0, ix[2]] == pytest.approx(np.log1p(1.0)) and col[1, ix[4]] == pytest.approx(
        np.log1p(2.0)
    )
    assert col[0, ix[3]] == 0 and col[0, ix[4]] == 0
    rows, _, targets, _ = m._prefix_features(train, np.random.default_rng(0))
    at_target = rows[torch.arange(len(targets)), targets, 1]
    hist = {1: [], 3: []}  # the target's markov value by the prefix's last item
    for t, v in zip(targets.tolist(), at_target.tolist(), strict=True):
        hist.setdefault(train.vocab.decode([t])[0], []).append(v)
    assert hist[2] == [0.0]  # 1 -> 2: only in its own sequence
    assert sorted(hist[4]) == pytest.approx([np.log1p(1.25)] * 2)  # 3 -> 4 from the other fold
    # saved and loaded, grown by an item without transitions
    loaded = Recommender.load(m.save(tmp_path / "m"))
    assert torch.equal(loaded.trans.to_dense(), m.trans.to_dense())
    assert loaded.add_items(pl.DataFrame({"item_id": [6]})) == [6]
    g, _ = loaded.features(Batch(torch.tensor([[0, ix[3]]])))
    assert g.shape[1] == 7 and g[0, 6, 1] == 0 and g[0, ix[4], 1] == pytest.approx(np.log1p(2))


def test_pop_and_order_features_are_cross_fitted_on_the_training_prefixes():
    """Scoring reads the whole training set's counts and id offsets; a training prefix reads
    the other folds' alone (counts x 5/4), never its own sequence's: sequence 0 (1 2 3 4, id
    offsets +1) and sequence 1 (3 5, offset +2) each see the other's popularity and offsets."""
    train = _seqs([[1, 2, 3, 4], [3, 5]], [1, 2, 3, 4, 5])
    m = FeatRank(base="pop", tag_fields=[], gap_fields=[]).fit(train)
    pop, order = m.names.index("pop"), m.names.index("order")
    ix = {i: int(train.vocab.lookup([i])[0]) for i in (1, 2, 3, 4, 5)}
    logc = torch.log1p(torch.tensor([1.0, 1.0, 2.0, 1.0, 1.0]))  # items 1..5
    mu, sd = float(logc.mean()), float(logc.std())

    def z(count: float) -> float:
        return (float(np.log1p(count)) - mu) / sd

    # scoring: the whole training set (offset +1 three times, +2 once)
    f, _ = m.features(Batch(torch.tensor([[0, ix[1]], [0, ix[3]]])))
    assert f[0, ix[3], pop] == pytest.approx(z(2.0)) and f[0, ix[2], pop] == pytest.approx(z(1))
    assert f[0, ix[2], order] == pytest.approx(1.0) and f[1, ix[5], order] == pytest.approx(1 / 3)
    # the first step's rows: each prefix's target read through the other sequence alone
    rows, _, targets, _ = m._prefix_features(train, np.random.default_rng(0))
    got = {
        train.vocab.decode([t])[0]: (float(r[t, pop]), float(r[t, order]))
        for r, t in zip(rows, targets.tolist(), strict=True)
    }
    assert got.keys() == {2, 3, 4, 5}
    assert got[2] == pytest.approx((z(0.0), 0.0))  # item 2, offset +1: only in sequence 0
    assert got[3] == pytest.approx((z(1.25), 0.0))  # item 3 once in sequence 1 (x 5/4)
    assert got[4] == pytest.approx((z(0.0), 0.0))
    assert got[5] == pytest.approx((z(0.0), 0.0))  # item 5, offset +2: only in sequence 1


def test_refit_on_validation_is_kept_only_where_it_pays_out_of_fold():
    """The last step (every weight refitted on validation) is chosen by the out-of-fold
    validation NDCG@10: kept where validation's learners behave otherwise than the training
    prefixes (they go back a video), dropped where validation is more of the same; the choice
    follows the two figures, and ``refit = False`` is the first step's weights exactly."""
    vocab = ItemVocab.from_ids(IDS)
    train = SequenceDataset.from_frame(
        _courses([0, 1, 2, 3], 400, 0), vocab, item_features=_items()
    )
    back = _eval_set(vocab, _courses([0, 1, 2, 3], 200, 1, 10_000), back=True)
    test = _eval_set(vocab, _courses([0, 1, 2, 3], 200, 2, 20_000), back=True)
    auto = FeatRank(base="pop").fit(train, back)
    check = auto.refit_check
    assert check is not None and check["refit"] > check["kept"] + 0.2
    assert auto.weights()["seen"] > 1.0  # learnt from validation: the history's videos
    never = FeatRank(base="pop", refit=False).fit(train, back)
    hit = {m: evaluate(m, test, ["hr@1"])["hr@1"] for m in (auto, never)}
    assert hit[auto] > 0.5 > hit[never] + 0.3
    # more of the same (validation from the training generator): the refit does not pay (no
    # year gap here: the fit with validation could keep it, the first step alone cannot)
    same = _eval_set(vocab, _courses([0, 1, 2, 3], 100, 10, 10_000))
    m = FeatRank(base="pop", gap_fields=[]).fit(train, same)
    assert m.refit_check is not None and m.refit_check["refit"] < m.refit_check["kept"]
    first = FeatRank(base="pop", gap_fields=[]).fit(
        train
    )  # the first step alone (no cold target here)
    torch.testing.assert_close(m.weights_, first.weights_)
    torch.testing.assert_close(
        FeatRank(base="pop", gap_fields=[], refit=False).fit(train, same).weights_, m.weights_
    )
    assert FeatRank(base="pop", gap_fields=[], refit=True).fit(train, same).refit_check is None
    assert not torch.equal(
        FeatRank(base="pop", gap_fields=[], refit=True).fit(train, same).weights_, m.weights_
    )


def test_a_fit_on_the_same_training_data_reuses_the_first_step_with_the_same_result(monkeypatch):
    """The first step (training prefixes: the costly part, no validation in it) is kept per
    training set and config: fitted again with another validation set -- ``warmrec auto``'s
    out-of-fold halves -- only the validation steps run, and the weights are those of a fit
    that computed everything."""
    from warmrec.models import featrank as fr

    vocab = ItemVocab.from_ids(IDS)
    items = _items().with_columns(pl.Series("year", _shuffled_years()))
    train = SequenceDataset.from_frame(_by_year(300, 0, 0, True), vocab, item_features=items)
    full = _eval_set(vocab, _by_year(200, 1, 10_000, True))
    half = full.subset(np.arange(0, len(full), 2))
    cfg = {"base": "pop", "transitions": True, "order_window": 0, "tag_fields": []}
    fr._FIRST_STEPS.clear()
    fresh = FeatRank(cfg).fit(train, half)  # everything computed
    fr._FIRST_STEPS.clear()
    calls = []
    real = FeatRank._prefix_features
    monkeypatch.setattr(
        FeatRank, "_prefix_features", lambda self, *a: calls.append(1) or real(self, *a)
    )
    FeatRank(cfg).fit(train, full)
    again = FeatRank(cfg).fit(train, half)
    assert len(calls) == 1  # the second fit reused the first step
    assert again.names == fresh.names and again.gap_check == fresh.gap_check
    assert torch.equal(again.weights_, fresh.weights_)
    # another config, or another training set, computes its own
    FeatRank({**cfg, "l2": 0.5}).fit(train, half)
    other = SequenceDataset.from_frame(_by_year(300, 0, 0, True), vocab, item_features=items)
    FeatRank(cfg).fit(other, half)
    assert len(calls) == 3
    del other
    import gc

    gc.collect()
    assert len(fr._FIRST_STEPS) == 1  # an entry goes with its training set


@pytest.mark.parametrize(
    "extra, fits",
    [
        ({}, 2),  # the year judged: the first step fitted with and without it
        ({"gap_fields": []}, 1),
        ({"negatives": 7}, 2),  # a sampled softmax: 8 columns, not the catalogue
        ({"max_fit_events": 50, "transitions": False}, 2),  # fewer rows than prefixes
    ],
)
def test_first_step_values_are_what_the_first_step_reads(monkeypatch, extra, fits):
    """:func:`first_step_values` (``warmrec auto``'s cost estimate, known before the fit) is
    the number of feature values the first step's softmax fits read, counted on a real fit."""
    from warmrec.models import featrank as fr

    vocab = ItemVocab.from_ids(IDS)
    items = _items().with_columns(pl.Series("year", _shuffled_years()))
    train = SequenceDataset.from_frame(_by_year(300, 0, 0, True), vocab, item_features=items)
    valid = _eval_set(vocab, _by_year(200, 1, 10_000, True))
    cfg = {"base": "pop", **extra}
    seen: list[int] = []
    real = fr._fit_softmax
    monkeypatch.setattr(fr, "_fit_softmax", lambda f, *a: seen.append(f.numel()) or real(f, *a))
    fr._FIRST_STEPS.clear()
    FeatRank(cfg).fit(train, valid)
    expected = first_step_values(train, cfg)
    assert sum(seen[:fits]) == expected
    assert len(seen) > fits  # the validation steps came after, on fewer rows
    assert all(n < seen[0] for n in seen[fits:])


def test_first_step_values_do_not_count_the_items_only_the_test_part_brings(monkeypatch):
    """The fit's softmax takes the 14 items known at fit time (10 in training, 4 more in
    validation) as its columns; :func:`first_step_values` took the whole vocabulary, so the 30
    items only the test part brings tripled ``warmrec auto``'s estimate of the first step
    (45 columns counted, 15 read). It now counts what the step reads, with or without them."""
    from warmrec.models import featrank as fr

    seen: list[int] = []
    real = fr._fit_softmax
    monkeypatch.setattr(fr, "_fit_softmax", lambda f, *a: seen.append(f.numel()) or real(f, *a))
    cfg = {"base": "markov"}
    values = []
    for k_new in (0, 30):
        prep = prepare(growing_catalogue_log(k_new), split="temporal", split_options=GROWING_SPLIT)
        assert len(prep.vocab) == 15 + k_new
        seen.clear()
        fr._FIRST_STEPS.clear()
        get_model("featrank", cfg).fit(prep.train, prep.valid)
        values.append(first_step_values(prep.train, cfg, prep.valid))
        assert seen[0] == values[-1]  # one first-step fit (no gap field)
    assert values[0] == values[1] == 40 * 7 * 15 * 9  # prefixes x columns x features


def test_training_log_of_single_events_keeps_the_initial_weights():
    """No training sequence has two events, so no prefix predicts a next item: the first step
    has nothing to fit (it failed on an empty concatenation) and the model keeps working."""
    vocab = ItemVocab.from_ids(IDS)
    df = pl.DataFrame({"session_id": [1, 2, 3], "item_id": IDS[:3], "timestamp": [0.0, 1, 2]})
    train = SequenceDataset.from_frame(df, vocab, item_features=_items())
    for transitions in (True, False):
        m = FeatRank(base="markov", transitions=transitions).fit(train)
        s = m.score(Batch(torch.tensor([[0, 1], [1, 2]])))
        assert s.shape == (2, len(vocab)) and torch.isfinite(s[:, 1:]).all()


@pytest.mark.parametrize(
    "config",
    [
        {"cold_target_share": "catalogue"},
        {"negatives": 4, "refit": "auto"},
    ],
)
def test_items_only_the_test_part_brings_do_not_change_the_fitted_weights(config):
    """Two logs with the same training and validation parts; the second's test part brings 30
    items no other part (nor the item table) holds: in its vocabulary, cold. They were
    candidates of every softmax of the fit (the whole catalogue, or the uniform sample of
    ``negatives``), inside the per-list normalisation of the base, in the catalogue's cold share
    (4/14 -> 34/44) and in the count a tag field's values are held against (a field of 8
    values became a tag field: 8 > 15 // 2 but not 45 // 2), so the test part changed every
    weight. Now the fit sees the known items only: the same weights, to the bit."""
    topics = pl.DataFrame(
        {"item_id": list(range(1, 15)), "topic": [f"t{i % 8}" for i in range(14)]}
    )

    def fitted(k_new):
        prep = prepare(
            growing_catalogue_log(k_new), split="temporal", split_options=GROWING_SPLIT,
            item_features=topics,
        )  # fmt: skip
        assert len(prep.vocab) - 1 == 14 + k_new
        return get_model("featrank", {"base": "markov", **config}).fit(prep.train, prep.valid)

    f0, f30 = fitted(0), fitted(30)
    assert "tag:topic" not in f0.names
    assert f30.names == f0.names
    assert torch.equal(f30.weights_, f0.weights_)
    assert f30.refit_check == f0.refit_check
    assert f30._known is None  # scoring ranks the whole catalogue, the new items as cold ones
    assert int(f30.cold.sum()) == 4 + 30


def test_items_only_the_test_part_brings_do_not_move_the_known_items_features(tmp_path):
    """The fit normalises the base's lists over the known items (14 here); scoring normalised
    them over the whole vocabulary, so the 30 items that only the test part brings moved every
    known item's base feature (and score) from what the weights were fitted on. Now the known
    items' statistics are applied to every item: the known items' features and scores are those
    without the new ones, bit for bit; the new ones are scored on that scale; the known items
    are saved with the model (not where every item is known)."""

    def fitted(k_new):
        prep = prepare(growing_catalogue_log(k_new), split="temporal", split_options=GROWING_SPLIT)
        return get_model("featrank", {"base": "markov"}).fit(prep.train, prep.valid), prep

    (f0, p0), (f30, p30) = fitted(0), fitted(30)
    assert torch.equal(f30.weights_, f0.weights_)
    cols = torch.from_numpy(p0.vocab.lookup(list(range(1, 15))))
    assert torch.equal(cols, torch.from_numpy(p30.vocab.lookup(list(range(1, 15)))))
    batch = p30.valid.batch(np.arange(len(p30.valid)), f30.history_len)
    x0, _ = f0.features(batch)
    x30, usable = f30.features(batch)
    assert torch.equal(x30[:, cols], x0[:, cols])
    s30 = f30.score(batch)
    assert torch.equal(s30[:, cols], f0.score(batch)[:, cols])
    new = torch.from_numpy(p30.vocab.lookup(list(range(1000, 1030))))
    assert bool(usable[:, new].all()) and torch.isfinite(s30[:, new]).all()
    assert f0.known_ is None and "known" not in f0.get_state()
    assert torch.equal(f30.known_, known_mask(p30.train, p30.valid))
    loaded = Recommender.load(f30.save(tmp_path / "f"))
    assert torch.equal(loaded.known_, f30.known_) and torch.equal(loaded.score(batch), s30)
