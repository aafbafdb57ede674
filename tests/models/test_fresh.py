"""Fresh: the cold share of a history, the exact score, the weights chosen on validation only, the
base reproduced at a = b = 0, and the state round-trip."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pytest
import torch

from tests.conftest import GROWING_SPLIT, growing_catalogue_log, split_cyclic
from warmrec import evaluate, get_model
from warmrec.data.dataset import Batch, EvalSet, SequenceDataset
from warmrec.data.prepared import prepare
from warmrec.data.vocab import ItemVocab
from warmrec.errors import ConfigError, ModelError
from warmrec.models.base import Recommender
from warmrec.models.fresh import (
    Fresh,
    centred_text,
    cold_share,
    known_mask,
    normalise_kept,
    numeric_ids,
    order_prior,
    text_term,
)
from warmrec.models.hybrid import normalise, normalise_known


def test_cold_share_known_answer():
    cold = torch.tensor([0.0, 0, 0, 0, 0, 1, 1])
    items = torch.tensor([[0, 5, 1, 6], [0, 0, 0, 0], [2, 3, 4, 1]])
    share = cold_share(items, cold, recent=5, decay=0.5)
    # row 0: ages 6 -> 1, 1 -> 0.5, 5 -> 0.25 (padding skipped): (1 + 0.25) / 1.75
    torch.testing.assert_close(share, torch.tensor([1.25 / 1.75, 0.0, 0.0]))
    # only the last 2 columns: 6 (1) and 1 (0.5)
    torch.testing.assert_close(cold_share(items[:1], cold, 2, 0.5), torch.tensor([1 / 1.5]))


class _Fixed(Recommender):
    """A stub base: every history gets the same score list."""

    name = "fixed"

    def __init__(self, vocab, scores: list[float]) -> None:
        super().__init__()
        self.vocab = vocab
        self.row = torch.tensor(scores)

    def score(self, batch: Batch) -> torch.Tensor:
        return self.row.expand(len(batch), -1).clone()


def _catalogue() -> tuple[SequenceDataset, ItemVocab]:
    """Items 1-6 in the vocabulary; the training log has events on 1-4 only (5, 6 are cold)."""
    vocab = ItemVocab.from_ids([1, 2, 3, 4, 5, 6])
    df = pl.DataFrame(
        {"session_id": [0, 0, 1, 1], "item_id": [1, 2, 3, 4], "timestamp": [1.0, 2, 3, 4]}
    )
    return SequenceDataset.from_frame(df, vocab), vocab


def _eval_set(histories: list[list[int]], targets: list[int], n_items: int) -> EvalSet:
    lens = np.array([len(h) for h in histories])
    ends = np.cumsum(lens)
    return EvalSet(
        np.concatenate([np.asarray(h, dtype=np.int64) for h in histories]),
        ends - lens,
        ends,
        np.asarray(targets, dtype=np.int64),
        n_items,
        pl.Series("key", np.arange(len(targets))),
    )


ROW = [0.0, 5.0, 4.0, 3.0, 2.0, 0.5, 1.0]  # base order 1 > 2 > 3 > 4 > 6 > 5 (index 0 padding)


def test_score_is_the_normalised_base_plus_the_cold_bonus():
    """The base's list is normalised with the statistics of the items known at fit time (1-4,
    the training items: mean 3.5, standard deviation sqrt(1.25)) applied to every item, so the
    cold items 5 and 6, which no part of the fit holds, are scored on that scale."""
    train, vocab = _catalogue()
    idx = {i: int(vocab.lookup([i])[0]) for i in range(1, 7)}
    row = [0.0] * 7
    for item, s in zip(range(1, 7), ROW[1:]):
        row[idx[item]] = s
    f = Fresh.from_base(_Fixed(vocab, row), cold_weight=0.5, affinity_weight=1.0).fit(train)
    assert f.cold.tolist() == [0.0] + [float(i in (5, 6)) for i in vocab.decode(range(1, 7))]
    batch = Batch(torch.tensor([[idx[1], idx[5]], [0, idx[2]]]))
    got = f.score(batch)
    known = torch.tensor([False] + [i in (1, 2, 3, 4) for i in vocab.decode(range(1, 7))])
    assert torch.equal(f.known_, known)
    base = normalise_known(torch.tensor([row, row]), "zscore", known)
    assert float(base[0, idx[5]]) == pytest.approx((0.5 - 3.5) / 1.25**0.5)
    share = torch.tensor([1 / 1.5, 0.0])  # history 1 then 5: 5 weighs 1, 1 weighs 0.5
    want = base + (0.5 + share).unsqueeze(1) * f.cold
    torch.testing.assert_close(got, want)


def test_weights_chosen_on_validation_only():
    """After a cold history the target is the cold item 6, after a warm one item 1 (the base's
    first): HR@1 is 1 only where the cold bonus follows the history (b > 0, a <= 0); the first
    such pair of the grid is chosen and the curve kept in meta.history."""
    train, vocab = _catalogue()
    i = {k: int(vocab.lookup([k])[0]) for k in range(1, 7)}
    row = [0.0] * 7
    for item, s in zip(range(1, 7), ROW[1:]):
        row[i[item]] = s
    valid = _eval_set([[i[5]], [i[5], i[6]], [i[2]], [i[3]]], [i[6], i[6], i[1], i[1]], 7)
    f = Fresh.from_base(
        _Fixed(vocab, row),
        cold_grid=[3.0, 0.0, -1.0],
        affinity_grid=[0.0, 8.0],
        select_metric="hr@1",
    ).fit(train, valid)
    assert f.weights_ == (0.0, 8.0, 0.0, 0.0, 0.0)
    curve = {(r["cold_weight"], r["affinity_weight"]): r["hr@1"] for r in f.meta.history}
    assert curve[(0.0, 0.0)] == 0.5  # the base alone: only the warm targets
    # a flat bonus lifts item 6 above item 1 after every history: the cold targets only
    assert curve[(3.0, 0.0)] == curve[(3.0, 8.0)] == 0.5
    assert curve[(0.0, 8.0)] == curve[(-1.0, 8.0)] == 1.0
    # each point is what evaluate gives the fixed-weight model
    for (a, b), v in curve.items():
        fixed = Fresh.from_base(_Fixed(vocab, row), cold_weight=a, affinity_weight=b)
        fixed.fit(train, valid)  # the same items known (1-6): the same normalisation
        assert evaluate(fixed, valid, ["hr@1"])["hr@1"] == pytest.approx(v)


def test_zero_weights_reproduce_the_base_and_state_round_trips(tmp_path):
    train, valid = split_cyclic()
    base = get_model("markov").fit(train)
    f = Fresh.from_base(base, cold_weight=0.0, affinity_weight=0.0).fit(train)
    assert np.array_equal(
        evaluate(f, valid, ["mrr@20"]).ranks, evaluate(base, valid, ["mrr@20"]).ranks
    )
    g = Fresh.from_base(get_model("markov").fit(train), affinity_grid=[0.0, 1.0]).fit(train, valid)
    loaded = Recommender.load(g.save(tmp_path / "f"))
    assert loaded.weights_ == g.weights_ and len(g.weights_) == 5
    batch = valid.batch(np.arange(10), loaded.history_len)
    assert torch.equal(g.score(batch), loaded.score(batch))


def _ordered() -> SequenceDataset:
    """Sequences [10, 11], [12, 10], [11, 11, 12]: transitions +1, -2, +1 (11 -> 11 is no
    transition; the +1 steps across sequence boundaries, 11 | 12 and 10 | 11, do not count)."""
    df = pl.DataFrame(
        {
            "session_id": [0, 0, 1, 1, 2, 2, 2],
            "item_id": [10, 11, 12, 10, 11, 11, 12],
            "timestamp": [1.0, 2, 3, 4, 5, 6, 7],
        }
    )
    return SequenceDataset.from_frame(df, ItemVocab.from_ids([10, 11, 12, 20]))


def test_order_prior_and_term_known_answer():
    train = _ordered()
    ids = numeric_ids(train.vocab)
    p = order_prior(train, ids, window=2)
    torch.testing.assert_close(p, torch.tensor([0.5, 0.0, 0.0, 1.0, 0.0]))  # d = -2..2
    cfg = {"cold_weight": 0, "affinity_weight": 0, "order_window": 2, "order_weight": 3.0}
    f = Fresh({"base": "pop", **cfg}).fit(train)
    assert f.weights_ == (0.0, 0.0, 3.0, 0.0, 0.0)
    ix = {i: int(train.vocab.lookup([i])[0]) for i in (10, 11, 12, 20)}
    batch = Batch(torch.tensor([[ix[12], ix[10]], [ix[11], ix[12]], [0, 0]]))
    assert f.known_.tolist() == [False, True, True, True, False]  # 20: no event, no table row
    term = f.score(batch) - normalise_known(f.base.score(batch), "zscore", f.known_)
    want = torch.zeros(3, 5)
    want[0, ix[11]] = 3.0  # after 10: 11 is d = +1; 12 (d = +2) has p 0; 10 itself none
    want[1, ix[10]] = 1.5  # after 12: 10 is d = -2
    term[:, 0] = 0.0  # padding: -inf - -inf
    torch.testing.assert_close(term, want)
    with pytest.raises(ModelError, match="integer item ids"):
        numeric_ids(ItemVocab.from_ids(["a", "b"]))


def test_errors():
    train, _ = split_cyclic()
    with pytest.raises(ModelError, match="needs a validation set"):
        Fresh({"base": "markov", "cold_weight": 0.0}).fit(train)
    with pytest.raises(ModelError, match="call fit"):
        Fresh({"base": "markov"}).score(Batch(torch.tensor([[1, 2]])))


def test_cold_targets_weighed_by_cold_target_share():
    """Three warm validation targets (item 1, the base's first) and one cold (item 6), all after
    warm histories: the flat bonus a = 3 lifts 6 above 1 everywhere, so HR@1 is 1/4 with it and
    3/4 without. Weighed as they come (or by the catalogue's cold share, 2 of 6 items) a = 0 wins;
    with the cold targets at 0.6, a = 3 does (0.6 against 0.4)."""
    train, vocab = _catalogue()
    train.item_features = pl.DataFrame({"item_id": [1, 2, 3, 4, 5, 6]})  # 5: a catalogue item
    i = {k: int(vocab.lookup([k])[0]) for k in range(1, 7)}
    row = [0.0] * 7
    for item, s in zip(range(1, 7), ROW[1:]):
        row[i[item]] = s
    valid = _eval_set([[i[2]], [i[3]], [i[4]], [i[2]]], [i[1], i[1], i[1], i[6]], 7)

    def pick(share, data=train):
        return Fresh.from_base(
            _Fixed(vocab, row), cold_grid=[0.0, 3.0], affinity_grid=[0.0],
            select_metric="hr@1", cold_target_share=share,
        ).fit(data, valid)  # fmt: skip

    assert pick(None).weights_[0] == 0.0
    assert pick("catalogue").weights_[0] == 0.0
    f = pick(0.6)
    assert f.weights_[0] == 3.0
    curve = {r["cold_weight"]: r["hr@1"] for r in f.meta.history}
    assert curve == {0.0: pytest.approx(0.4), 3.0: pytest.approx(0.6)}
    cat = {r["cold_weight"]: r["hr@1"] for r in pick("catalogue").meta.history}
    assert cat == {0.0: pytest.approx(2 / 3), 3.0: pytest.approx(1 / 3)}
    # without the item table, item 5 (in the vocabulary, no event in training or validation)
    # is not a known item: the catalogue's cold share is 1/5 (item 6), not 2/6; no item is
    # ranked on validation but the known ones (1-4, 6), so with a = 3 item 6 is first
    untabled = SequenceDataset.from_frame(train.frame, vocab)
    cat = {r["cold_weight"]: r["hr@1"] for r in pick("catalogue", untabled).meta.history}
    assert cat == {0.0: pytest.approx(4 / 5), 3.0: pytest.approx(1 / 5)}
    with pytest.raises(ConfigError, match="cold_target_share: expected a share in"):
        pick(1.5)


def test_centred_text_and_text_term_known_answer():
    raw = np.array([[0, 0], [3, 1], [1, 3], [0, 0], [2, 2]], dtype=np.float32)
    x = centred_text(raw)
    # rows 1, 2, 4 have text (mean [2, 2]): [1, -1], [-1, 1], [0, 0] -> unit (row 4: zero)
    r = 2**-0.5
    want = torch.tensor([[0, 0], [r, -r], [-r, r], [0, 0], [0, 0]], dtype=torch.float32)
    torch.testing.assert_close(x, want)
    items = torch.tensor([[0, 2, 1], [0, 0, 0]])
    got = text_term(items, x, window=2, decay=0.5)
    # profile after [2, 1]: x1 + 0.5 x2 = [r/2, -r/2]; its dot with each row
    torch.testing.assert_close(got[0], torch.tensor([0.0, 0.5, -0.5, 0.0, 0.0]))
    torch.testing.assert_close(got[1], torch.zeros(5))  # empty history: nothing
    with pytest.raises(ModelError, match="no item has text"):
        centred_text(np.zeros((3, 2)))


def _texts() -> tuple[SequenceDataset, ItemVocab]:
    """``_catalogue`` with item text: the cold 5 and 6 share all words of 1 and 2."""
    train, vocab = _catalogue()
    words = {1: "kappa lambda", 2: "omega sigma", 3: "theta rho", 4: "zeta eta"}
    words |= {5: "kappa lambda mu", 6: "omega sigma nu"}
    items = pl.DataFrame({"item_id": list(words), "title": list(words.values())})
    df = pl.DataFrame(
        {"session_id": [0, 0, 1, 1], "item_id": [1, 2, 3, 4], "timestamp": [1.0, 2, 3, 4]}
    )
    return SequenceDataset.from_frame(df, vocab, item_features=items), vocab


def test_text_term_ranks_cold_items_by_their_text_chosen_on_validation(tmp_path):
    """After a warm history the target is the cold item whose text continues it (1 -> 5,
    2 -> 6): the base ranks the cold items last and the cold bonus is flat, so only the text
    term can put the right one in the top 2 (behind the history's own item); it is chosen on
    validation, scores as the fixed-weight model, and survives a save and load."""
    train, vocab = _texts()
    i = {k: int(vocab.lookup([k])[0]) for k in range(1, 7)}
    row = [0.0] * 7
    for item, s in zip(range(1, 7), ROW[1:]):
        row[i[item]] = s
    valid = _eval_set([[i[1]], [i[2]], [i[3], i[1]]], [i[5], i[6], i[5]], 7)
    cfg = {"cold_grid": [0.0, 1.0], "affinity_grid": [0.0], "select_metric": "hr@2"}
    cfg |= {"text_window": 2, "text_grid": [0.0, 4.0], "text_encoder": "hashing"}
    f = Fresh.from_base(_Fixed(vocab, row), text_cache="", **cfg).fit(train, valid)
    assert f.weights_ == (0.0, 0.0, 0.0, 4.0, 0.0)
    curve = {(r["cold_weight"], r["text_weight"]): r["hr@2"] for r in f.meta.history}
    assert curve[(0.0, 0.0)] == curve[(1.0, 0.0)] == 0.0  # without text: never
    assert curve[(0.0, 4.0)] == 1.0
    fixed = Fresh.from_base(
        _Fixed(vocab, row), cold_weight=0.0, affinity_weight=0.0, text_window=2,
        text_weight=4.0, text_encoder="hashing", text_cache="",
    ).fit(train)  # fmt: skip
    assert evaluate(fixed, valid, ["hr@2"])["hr@2"] == 1.0
    batch = valid.batch(np.arange(len(valid)), f.history_len)
    torch.testing.assert_close(f.score(batch), fixed.score(batch))
    f.base = get_model("pop").fit(train)  # a base that saves (the stub does not)
    f.config = f.config.model_copy(update={"base": "pop", "base_config": {}})
    loaded = Recommender.load(f.save(tmp_path / "f"))
    assert loaded.weights_ == f.weights_
    torch.testing.assert_close(loaded.score(batch), f.score(batch))
    torch.testing.assert_close(loaded.text, f.text)


def test_repeat_term_lifts_the_history_items_beyond_the_base():
    """The targets are items opened earlier in the history (2 after [2, 3], 4 after [4, 5]),
    which the fixed base ranks below item 1: only the repeat bonus (seen_window 2) makes HR@1 1;
    the chosen r scores exactly the base plus r on the history's items."""
    train, vocab = _catalogue()
    i = {k: int(vocab.lookup([k])[0]) for k in range(1, 7)}
    row = [0.0] * 7
    for item, s in zip(range(1, 7), ROW[1:]):
        row[i[item]] = s
    valid = _eval_set([[i[2], i[3]], [i[4], i[5]]], [i[2], i[4]], 7)
    cfg = {"cold_weight": 0.0, "affinity_weight": 0.0, "select_metric": "hr@1"}
    f = Fresh.from_base(_Fixed(vocab, row), seen_window=2, seen_grid=[0.0, 1.0, 9.0], **cfg).fit(
        train, valid
    )
    curve = {r["seen_weight"]: r["hr@1"] for r in f.meta.history}
    assert curve == {0.0: 0.0, 1.0: 0.5, 9.0: 1.0}  # r = 1 lifts 2 over 1, not 4 (base -1.0)
    assert f.weights_ == (0.0, 0.0, 0.0, 0.0, 9.0)
    batch = Batch(torch.tensor([[i[2], i[3]], [0, 0], [i[5], i[5]]]))
    assert f.known_.tolist() == [False] + [k != 6 for k in vocab.decode(range(1, 7))]
    want = normalise_known(torch.tensor([row] * 3), "zscore", f.known_)
    want[0, [i[2], i[3]]] += 9.0
    want[2, i[5]] += 9.0  # an empty history (row 1) gets nothing
    torch.testing.assert_close(f.score(batch), want)


def test_repeat_term_with_seen_items_excluded_on_validation():
    """``select_exclude_seen`` with the repeat term: the exclusion reads each history apart from
    the repeat term (it once overwrote the term and failed to broadcast)."""
    train, valid = split_cyclic()
    f = get_model(
        "fresh",
        base="markov",
        cold_weight=0.0,
        affinity_weight=0.0,
        seen_window=3,
        select_exclude_seen=True,
    ).fit(train, valid)
    assert len(f.meta.history) == 5  # the seen grid's five points, all scored
    assert evaluate(f, valid, ["hr@1"], exclude_seen=True).summary["hr@1"] == 1.0


def test_known_mask_holds_training_validation_and_item_table_items():
    """Items 1-4 have training events, 6 is a validation target, 2 and 5 in validation
    histories; with no item table, an item of the vocabulary in none of them (7) is unknown;
    the item table makes it known (a catalogue item without events)."""
    vocab = ItemVocab.from_ids([1, 2, 3, 4, 5, 6, 7])
    df = pl.DataFrame({"session_id": [0, 0, 1], "item_id": [1, 2, 3], "timestamp": [1.0, 2, 3]})
    train = SequenceDataset.from_frame(df, vocab)
    i = {k: int(vocab.lookup([k])[0]) for k in range(1, 8)}
    valid = _eval_set([[i[2], i[5]]], [i[6]], 8)
    got = known_mask(train, valid)
    assert [vocab.decode([j])[0] for j in np.flatnonzero(got.numpy())] == [1, 2, 3, 5, 6]
    assert not got[0]  # padding
    train.item_features = pl.DataFrame({"item_id": [7, 99]})  # 99: not in the vocabulary
    assert bool(known_mask(train, valid)[i[7]])
    assert known_mask(train).sum() == 4  # 1, 2, 3 from training, 7 from the table


@pytest.mark.parametrize("share", [None, "catalogue"])
def test_items_only_the_test_part_brings_do_not_change_the_validation_choice(share):
    """Two logs with the same training and validation parts; the second's test part brings 30
    items no other part (nor an item table) holds, so they are in its vocabulary with no
    training event: cold. They were counted in the catalogue's cold share (4/14 -> 34/44) and
    ranked, with the cold bonus, among the validation candidates, so the test part changed the
    validation curve and the weights chosen ((-1, 8) -> (-2, 0) here). Now they are left out of
    both; a new item that the item table lists (a catalogue item) is counted."""

    def fitted(k_new, items=None):
        prep = prepare(
            growing_catalogue_log(k_new), split="temporal", split_options=GROWING_SPLIT,
            item_features=items,
        )  # fmt: skip
        assert len(prep.vocab) - 1 == 14 + k_new
        cfg = {"base": "markov", "cold_target_share": share, "select_metric": "ndcg@10"}
        return get_model("fresh", cfg).fit(prep.train, prep.valid), prep

    (f0, _), (f30, p30) = fitted(0), fitted(30)
    assert f30.meta.history == f0.meta.history
    assert f30.weights_ == f0.weights_ == (-1.0, 8.0, 0.0, 0.0, 0.0)
    # at scoring time the new items are cold items of the catalogue, as in deployment
    assert int(f30.cold.sum()) == 4 + 30
    if share == "catalogue":
        # the cold validation targets weigh 4/14 (items 11-14 of the 14 known); where the item
        # table lists two of the new items (catalogue items, known before their events) 6/16
        table = pl.DataFrame({"item_id": list(range(1, 15)) + [1000, 1001]})
        cases = [((f30, p30), 14, 4 / 14), (fitted(30, table), 16, 6 / 16)]
        for (f, prep), n_known, weight in cases:
            known = known_mask(prep.train, prep.valid)
            assert int(known.sum()) == n_known
            on_cold = f.cold[prep.valid.targets].numpy() > 0
            vc = f.validation_curve(prep.valid.subset(np.flatnonzero(on_cold)), known=known)
            vw = f.validation_curve(prep.valid.subset(np.flatnonzero(~on_cold)), known=known)
            want = [weight * c[5] + (1 - weight) * w[5] for c, w in zip(vc, vw)]
            assert [r["ndcg@10"] for r in f.meta.history] == pytest.approx(want)


def _growing(k_new: int, fusion: str = "zscore") -> tuple[Fresh, Any]:
    prep = prepare(growing_catalogue_log(k_new), split="temporal", split_options=GROWING_SPLIT)
    cfg = {"base": "markov", "fusion": fusion, "cold_weight": -1.0, "affinity_weight": 8.0}
    return get_model("fresh", cfg).fit(prep.train, prep.valid), prep


@pytest.mark.parametrize("fusion", ["zscore", "minmax"])
def test_items_only_the_test_part_brings_do_not_move_the_known_items_scores(fusion, tmp_path):
    """The weights are chosen on lists of the items known at fit time (14 here), normalised
    over them; scoring normalised the base's list over the whole vocabulary, so the 30 items
    that only the test part brings moved every known item's score (and the chosen weights
    meant something else there). Now the known items' statistics are applied to every item:
    the known items score as without the new ones, bit for bit, and as on validation; the new
    ones are scored (cold, with the bonus) on that scale; the known items are saved."""
    (f0, p0), (f30, p30) = _growing(0, fusion), _growing(30, fusion)
    ids = list(range(1, 15))
    cols = torch.from_numpy(p0.vocab.lookup(ids))
    assert torch.equal(cols, torch.from_numpy(p30.vocab.lookup(ids)))
    batch = p30.valid.batch(np.arange(len(p30.valid)), f30.history_len)
    assert torch.equal(batch.items, p0.valid.batch(np.arange(len(p0.valid)), f0.history_len).items)
    s0, s30 = f0.score(batch), f30.score(batch)
    assert torch.equal(s30[:, cols], s0[:, cols])
    # every item is known without the test part: the plain normalisation, bit for bit
    assert f0.known_ is None and "known" not in f0.get_state()
    raw = f0.base.score(batch)
    share = cold_share(batch.items, f0.cold, 5, 0.5)
    assert torch.equal(s0, normalise(raw, fusion) + (-1.0 + 8.0 * share).unsqueeze(1) * f0.cold)
    # the known items' values are those of the validation lists
    known = known_mask(p30.train, p30.valid)
    assert torch.equal(f30.known_, known) and int(known.sum()) == 14
    on_valid = f30._base_scores(batch, known)
    assert torch.equal(f30._base_scores(batch)[:, known], on_valid[:, known])
    # the new items are scored, cold, on the known items' scale
    new = torch.from_numpy(p30.vocab.lookup(list(range(1000, 1030))))
    assert torch.isfinite(s30[:, new]).all() and bool((f30.cold[new] == 1).all())
    raw30 = f30.base.score(batch)
    bonus = (-1.0 + 8.0 * share).unsqueeze(1) * f30.cold
    assert torch.equal(s30, normalise_known(raw30, fusion, known) + bonus)
    # saved and loaded, the same scores; saved without the known items (an older model): as before
    loaded = Recommender.load(f30.save(tmp_path / "f"))
    assert torch.equal(loaded.known_, known) and torch.equal(loaded.score(batch), s30)
    old = Recommender.load(tmp_path / "f")
    old.set_state({k: torch.as_tensor(v) for k, v in f30.get_state().items() if k != "known"})
    assert old.known_ is None
    assert torch.equal(old.score(batch), normalise(raw30, fusion) + bonus)
    state = {k: torch.as_tensor(v) for k, v in f30.get_state().items()}
    state["known"] = state["known"][:-1]
    with pytest.raises(ModelError, match="'known' holds 44 items, the vocabulary 45"):
        old.set_state(state)


def test_items_added_later_do_not_move_the_fitted_items_scores(tmp_path):
    """``add_items`` grows the base; the added items were in the statistics of the base's
    normalisation, so every fitted item's score moved (the weights were chosen on the fitted
    catalogue's scale). Now the fitted items score as before, bit for bit, and the added ones
    (cold, with the bonus) on their scale; the grown model saves and loads."""
    f, prep = _growing(0)
    n = f.n_items
    batch = prep.valid.batch(np.arange(len(prep.valid)), f.history_len)
    before = f.score(batch)
    new = pl.DataFrame({"item_id": pl.Series([9001, 9002, 9003]).cast(f.vocab.ids.dtype)})
    assert f.add_items(new) == [9001, 9002, 9003] and f.n_items == n + 3
    after = f.score(batch)
    assert torch.equal(after[:, :n], before) and torch.isfinite(after[:, n:]).all()
    assert f.known_.tolist() == [False] + [True] * (n - 1) + [False] * 3
    loaded = Recommender.load(f.save(tmp_path / "f"))
    assert torch.equal(loaded.score(batch), after)


@pytest.mark.parametrize("fusion", ["zscore", "minmax"])
def test_validation_lists_take_the_scale_scoring_uses(fusion):
    """The fit's lists (``keep``: Fresh's validation, FeatRank's fit) and scoring (``known``)
    normalise the known items with the same statistics. They did not where the known items'
    scores were equal up to float32 rounding: the fit stretched the rounding to unit spread
    (z-scores 0, 1.41, -1.41, 0; minmax 0.5, 1, 0, 0.5) where scoring, since FLAT_SPREAD,
    takes it as no scale (about 0), so the weights chosen on those lists met another base
    term at scoring."""
    train, vocab = _catalogue()
    i = {k: int(vocab.lookup([k])[0]) for k in range(1, 7)}
    base = 0.3621
    ulp = float(np.spacing(np.float32(base)))
    row = [0.0] * 7
    for item, s in zip(range(1, 7), [base, base + ulp, base - ulp, base, 1.5, 2.0]):
        row[i[item]] = s  # items 5 and 6 are not known at fit time
    cfg = {"fusion": fusion, "cold_weight": 0.0, "affinity_weight": 0.0}
    f = Fresh.from_base(_Fixed(vocab, row), **cfg).fit(train)
    known = f.known_
    assert known.tolist() == [False] + [k in (1, 2, 3, 4) for k in vocab.decode(range(1, 7))]
    batch = Batch(torch.tensor([[i[1]], [i[3]]]))
    fitted, scored = f._base_scores(batch, known), f._base_scores(batch)
    assert torch.isinf(fitted[:, ~known]).all() and torch.isfinite(scored[:, [i[5], i[6]]]).all()
    assert fitted[:, known].abs().max() < 1e-6  # the rounding is no scale
    assert torch.equal(fitted[:, known], scored[:, known])


@pytest.mark.parametrize("fusion", ["zscore", "minmax"])
def test_kept_lists_with_non_finite_scores_match_scoring_to_the_bit(fusion):
    """Rows with a non-finite score among the kept items: the fit's normalisation summed
    padding's 0 into the statistics and scoring's did not, so the kept items' values differed
    in their last bits (a tie on validation could be none at scoring)."""
    gen = torch.Generator().manual_seed(5)
    s = torch.randn(8, 301, generator=gen) * 3
    s[torch.rand(8, 301, generator=gen) < 0.2] = -torch.inf
    keep = torch.rand(301, generator=gen) < 0.7
    keep[0] = False
    got = normalise_kept(s, fusion, keep)
    want = normalise_known(s, fusion, keep)
    assert torch.isinf(got[:, ~keep]).all()
    assert torch.equal(got[:, keep], want[:, keep])
