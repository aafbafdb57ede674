"""Hybrid: per-list normalisation, the members reproduced at weight 0 / 1, the weight chosen on
validation only, and its state round-trip."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.conftest import GROWING_SPLIT, growing_catalogue_log, split_cyclic
from warmrec import evaluate, get_model
from warmrec.data.dataset import Batch, EvalSet
from warmrec.data.prepared import prepare
from warmrec.errors import ConfigError, ModelError
from warmrec.models.base import Recommender
from warmrec.models.hybrid import Hybrid, fuse, normalise, normalise_known


@pytest.fixture(scope="module")
def data():
    return split_cyclic()


def test_zscore_known_answer():
    s = torch.tensor([[9.0, 1.0, 2.0, 3.0], [5.0, 4.0, 4.0, 4.0], [0.0, 1.0, -math.inf, 3.0]])
    z = normalise(s, "zscore")
    c = math.sqrt(1.5)
    torch.testing.assert_close(z[0, 1:], torch.tensor([-c, 0.0, c]))  # population std
    assert torch.equal(z[1, 1:], torch.zeros(3))  # a flat list adds nothing
    assert z[2, 2] == -math.inf and torch.isfinite(z[2, [1, 3]]).all()
    torch.testing.assert_close(z[2, [1, 3]], torch.tensor([-1.0, 1.0]))
    assert (z[:, 0] == -math.inf).all()  # padding


def test_minmax_known_answer():
    s = torch.tensor([[0.0, 2.0, 4.0, 3.0], [0.0, 7.0, 7.0, 7.0]])
    m = normalise(s, "minmax")
    torch.testing.assert_close(m[0, 1:], torch.tensor([0.0, 1.0, 0.5]))
    assert torch.equal(m[1, 1:], torch.zeros(3))


def test_fuse_ends_are_the_members():
    a = torch.tensor([[-math.inf, 1.0, 2.0]])
    b = torch.tensor([[-math.inf, -math.inf, 0.5]])
    assert fuse([a, b], 1.0) is a and fuse([a, b], 0.0) is b
    torch.testing.assert_close(fuse([a, b], 0.25)[0, 2], torch.tensor(0.25 * 2 + 0.75 * 0.5))


@pytest.mark.parametrize("fusion", ["zscore", "minmax"])
def test_weight_one_and_zero_reproduce_each_member(data, fusion):
    """Known answer: w = 1 ranks every validation target as the first member, w = 0 as the
    second (the repo's own ``evaluate`` counts the ranks)."""
    train, valid = data
    first = get_model("markov").fit(train)
    second = get_model("pop").fit(train)
    for w, member in ((1.0, first), (0.0, second)):
        h = Hybrid.from_members(first, second, weight=w, fusion=fusion).fit(train)
        got = evaluate(h, valid, ["mrr@20"])
        want = evaluate(member, valid, ["mrr@20"])
        assert np.array_equal(got.ranks, want.ranks)


def test_fit_trains_unfitted_members_and_loop_settings_reach_the_network(data):
    train, valid = data
    h = get_model(
        "hybrid",
        {"network_config": {"d": 8, "n_layers": 1, "n_heads": 1, "ffn_dim": 8, "max_len": 6}},
    )
    h.fit(train, valid, trainer={"epochs": 1, "batch_size": 64})
    net = h.members["network"]
    assert net.is_fitted and len(net.train_result.history) == 1
    assert h.members["neighbours"].is_fitted
    assert h.weight_ in h.config.weight_grid
    with pytest.raises(ConfigError, match="no member to fit takes training settings"):
        Hybrid({"network": "markov", "weight": 0.5}).fit(train, trainer={"epochs": 1})


class _Fixed(Recommender):
    """A stub member: every history gets the same score list."""

    name = "fixed"

    def __init__(self, vocab, scores: list[float]) -> None:
        super().__init__()
        self.vocab = vocab
        self.row = torch.tensor(scores)

    def score(self, batch: Batch) -> torch.Tensor:
        return self.row.expand(len(batch), -1).clone()


def _eval_set(targets: list[int], n_items: int) -> EvalSet:
    import polars as pl

    t = np.asarray(targets)
    return EvalSet(
        np.ones(len(t), dtype=np.int64),
        np.arange(len(t)),
        np.arange(len(t)) + 1,
        t,
        n_items,
        pl.Series("key", np.arange(len(t))),
    )


def test_weight_chosen_on_validation_only(data):
    """Member A puts item 1 first, member B item 2: a validation set whose targets are item 2
    picks w = 0, one whose targets are item 1 picks w = 1; the curve is kept in meta.history."""
    train, _ = data
    n = len(train.vocab)
    a_row = [0.0] * n
    b_row = [0.0] * n
    a_row[1], a_row[2] = 3.0, 1.0
    b_row[2], b_row[1] = 3.0, 1.0
    picks = {}
    for target in (1, 2):
        a, b = _Fixed(train.vocab, a_row), _Fixed(train.vocab, b_row)
        h = Hybrid.from_members(a, b, weight_grid=[0.0, 0.3, 0.7, 1.0])
        h.fit(train, _eval_set([target] * 5, n))
        picks[target] = h.weight_
        curve = {r["weight"]: r["mrr@20"] for r in h.meta.history}
        assert curve[h.weight_] == max(curve.values()) == 1.0
    assert picks == {1: 0.7, 2: 0.0}  # ties go to the first weight of the grid


def test_validation_curve_matches_evaluate(data):
    """Each point of the validation curve is what ``evaluate`` gives the fixed-weight hybrid."""
    train, valid = data
    first = get_model("markov").fit(train)
    second = get_model("pop").fit(train)
    h = Hybrid.from_members(first, second, weight_grid=[0.0, 0.2, 0.9, 1.0]).fit(train, valid)
    for w, v in h.validation_curve(valid, batch_size=7):
        fixed = Hybrid.from_members(first, second, weight=w).fit(train)
        assert v == pytest.approx(evaluate(fixed, valid, ["mrr@20"])["mrr@20"], abs=1e-12)


def test_validation_curve_with_seen_excluded_matches_evaluate(data):
    """``select_exclude_seen``: each point is ``evaluate(..., exclude_seen=True)`` of the
    fixed-weight hybrid, and differs from the seen-kept curve on this data."""
    train, valid = data
    first = get_model("markov").fit(train)
    second = get_model("pop").fit(train)
    grid = [0.0, 0.5, 1.0]
    h = Hybrid.from_members(first, second, weight_grid=grid, select_exclude_seen=True)
    h.fit(train, valid)
    curve = h.validation_curve(valid, batch_size=7)
    for w, v in curve:
        fixed = Hybrid.from_members(first, second, weight=w).fit(train)
        want = evaluate(fixed, valid, ["mrr@20"], exclude_seen=True)["mrr@20"]
        assert v == pytest.approx(want, abs=1e-12)
    kept = Hybrid.from_members(first, second, weight_grid=grid).fit(train, valid)
    assert curve != kept.validation_curve(valid)


def test_chosen_weight_survives_save_and_load(data, tmp_path):
    train, valid = data
    h = get_model("hybrid", {"network": "markov", "neighbours": "pop"}).fit(train, valid)
    loaded = Recommender.load(h.save(tmp_path / "h"))
    assert loaded.weight_ == h.weight_
    batch = valid.batch(np.arange(10), loaded.history_len)
    assert torch.equal(h.score(batch), loaded.score(batch))


def test_errors(data):
    train, _ = data
    with pytest.raises(ModelError, match="needs a validation set"):
        Hybrid({"network": "markov", "neighbours": "pop"}).fit(train)
    with pytest.raises(ConfigError, match="weight_grid"):
        Hybrid({"weight_grid": [0.5, 1.5]})
    with pytest.raises(ConfigError, match="select_metric"):
        Hybrid({"select_metric": "coverage@10"})
    with pytest.raises(ConfigError, match="weight"):
        Hybrid({"weight": -0.1})


@pytest.mark.parametrize("fusion", ["zscore", "minmax"])
def test_normalise_fast_path_equals_the_masked_arithmetic(fusion):
    """Rows of finite scores take in-place passes, the others masked arithmetic: the same
    values either way, and every kind of row (constant, one non-finite, all non-finite)."""
    from warmrec.models.hybrid import _normalise_masked

    g = torch.Generator().manual_seed(0)
    s = torch.randn(6, 50, generator=g) * 3 + 1
    s[1] = 2.5  # constant: 0 on every item
    s[2, 7] = -torch.inf  # one excluded item
    s[3, 9] = float("nan")
    s[4] = -torch.inf  # nothing finite
    before = s.clone()
    fast = normalise(s, fusion)
    slow = _normalise_masked(s, fusion)
    assert torch.equal(torch.isfinite(fast), torch.isfinite(slow))
    fin = torch.isfinite(slow)
    assert torch.allclose(fast[fin], slow[fin], atol=1e-5)
    assert (fast[:, 0] == -torch.inf).all() and (fast[1, 1:] == 0).all()
    assert not torch.isfinite(fast[4]).any() and fast[2, 7] == -torch.inf
    finite_only = normalise(s[[0, 5]], fusion)  # all-finite rows alone: the fast path only
    assert torch.allclose(finite_only, slow[[0, 5]], atol=1e-5)
    assert torch.equal(s.nan_to_num(), before.nan_to_num())  # the input is not modified
    with pytest.raises(ConfigError, match="fusion"):
        normalise(s, "rank")


def test_target_ranks_puts_a_lost_target_out_of_the_ranking():
    from warmrec.evaluation import metrics as M
    from warmrec.models.hybrid import target_ranks

    r = target_ranks(torch.tensor([[0.0, 1, 2, 3, -torch.inf]]), np.array([4]))
    assert r.tolist() == [M.UNRANKED] and M.ndcg(r, 10).tolist() == [0.0]


@pytest.mark.parametrize("fusion", ["zscore", "minmax"])
def test_normalise_known_takes_the_statistics_of_the_known_items(fusion):
    """Known answer: items 1-3 known (scores 1, 2, 3), item 4 not (score 9): the list is
    normalised by the known items' mean and std (or min and span) alone, item 4 on their scale
    (or ``-inf`` with ``drop``); every item known, or None, is :func:`normalise` bit for bit."""
    s = torch.tensor([[0.0, 1.0, 2.0, 3.0, 9.0], [0.0, 4.0, 4.0, 4.0, 5.0]])
    known = torch.tensor([False, True, True, True, False])
    got = normalise_known(s, fusion, known)
    if fusion == "zscore":
        c = math.sqrt(2 / 3)
        want = torch.tensor([[-1 / c, 0.0, 1 / c, 7 / c], [0.0, 0.0, 0.0, 1.0]])
    else:
        want = torch.tensor([[0.0, 0.5, 1.0, 4.0], [0.0, 0.0, 0.0, 1.0]])
    torch.testing.assert_close(got[:, 1:], want)
    assert (got[:, 0] == -math.inf).all()
    dropped = normalise_known(s, fusion, known, drop=True)
    assert torch.equal(dropped[:, :4], got[:, :4]) and (dropped[:, 4] == -math.inf).all()
    # the known items' values do not depend on how many other items there are
    more = torch.cat([s, torch.full((2, 40), 7.0)], dim=1)
    wider = torch.cat([known, torch.zeros(40, dtype=torch.bool)])
    assert torch.equal(normalise_known(more, fusion, wider)[:, :4], got[:, :4])
    # every kind of row (constant, a non-finite score, nothing finite): the known items as
    # normalise() gives them in a list of their own, the others on their scale
    g = torch.Generator().manual_seed(0)
    r = torch.randn(7, 30, generator=g) * 3 + 1
    r[1], r[2, 7], r[3, 9], r[4], r[5, 25], r[6, 26] = (
        2.5,
        -math.inf,
        math.nan,
        -math.inf,
        9,
        math.inf,
    )
    part = torch.arange(30) < 20
    part[0] = False
    got = normalise_known(r, fusion, part)
    want = normalise(r[:, :20], fusion)
    assert torch.equal(torch.isfinite(got[:, :20]), torch.isfinite(want))
    torch.testing.assert_close(got[:, :20][torch.isfinite(want)], want[torch.isfinite(want)])
    assert torch.isfinite(got[:, 20:]).sum() == 7 * 10 - 10 - 1  # row 4, and r[6, 26]
    assert torch.equal(got[1, 20:], r[1, 20:] - 2.5)  # a flat list: scale 1
    r[2, 4] = -math.inf
    every = torch.ones(30, dtype=torch.bool)
    assert torch.equal(normalise_known(r, fusion, every), normalise(r, fusion))
    assert torch.equal(normalise_known(r, fusion, None), normalise(r, fusion))


@pytest.mark.parametrize("fusion", ["zscore", "minmax"])
def test_normalise_known_takes_a_spread_within_rounding_as_flat(fusion):
    """A content base after a history of added items alone: the known items score alike but
    for float32 rounding (spread about 3e-8 on 0.36), an added item 1.5. Dividing by that
    spread put the added item at about 4e7 (any weight on the list then swamped every other
    term); a spread under FLAT_SPREAD of the scores' size is no scale: the known items come out
    about 0, the added one 1.5 minus the known items' mean (or minimum)."""
    base = 0.3621
    ulp = float(np.spacing(np.float32(base)))
    s = torch.tensor([[0.0, base, base + ulp, base - ulp, 1.5]])
    known = torch.tensor([False, True, True, True, False])
    got = normalise_known(s, fusion, known)
    shift = float(s[0, 1:4].mean()) if fusion == "zscore" else base - ulp
    assert float(got[0, 4]) == pytest.approx(1.5 - shift)
    assert got[0, 1:4].abs().max() < 1e-6
    # a spread above it (FLAT_SPREAD is 1e-5) is a scale, as before
    s[0, 2] = base * (1 + 1e-4)
    assert normalise_known(s, fusion, known)[0, 1:4].abs().max() > 0.5


def _growing(k_new: int, fusion: str) -> tuple[Hybrid, object]:
    prep = prepare(growing_catalogue_log(k_new), split="temporal", split_options=GROWING_SPLIT)
    assert len(prep.vocab) - 1 == 14 + k_new
    first, second = get_model("markov").fit(prep.train), get_model("pop").fit(prep.train)
    grid = [round(0.02 * i, 2) for i in range(51)]
    cfg = {"fusion": fusion, "select_metric": "ndcg@10", "weight_grid": grid}
    return Hybrid.from_members(first, second, **cfg).fit(prep.train, prep.valid), prep


@pytest.mark.parametrize("fusion", ["zscore", "minmax"])
def test_items_only_the_test_part_brings_do_not_change_the_validation_curve(fusion, tmp_path):
    """Two logs with the same training and validation parts; the second's test part brings 30
    items no other part holds (in the vocabulary, with no training event). Each member's list
    was normalised over the whole vocabulary, so they moved the validation curve and the
    weight chosen (zscore: 0.16 -> 0.14, the point at w = 0.1: 0.351 -> 0.392). Now the
    statistics are the known items' and the validation lists hold them alone; at scoring time
    the new items are scored on that scale and the known items score as with k = 0, through a
    save and load too."""
    (h0, p0), (h30, p30) = _growing(0, fusion), _growing(30, fusion)
    assert h30.weight_ == h0.weight_ == {"zscore": 0.16, "minmax": 0.24}[fusion]
    assert h30.meta.history == h0.meta.history
    assert h0.known_ is None and int(h30.known_.sum()) == 14
    b0 = p0.valid.batch(np.arange(len(p0.valid)), h0.history_len)
    b30 = p30.valid.batch(np.arange(len(p30.valid)), h30.history_len)
    assert torch.equal(b0.items, b30.items)  # the same histories, items 1-14 alike
    s0, s30 = h0.score(b0), h30.score(b30)
    torch.testing.assert_close(s30[:, :15], s0, rtol=1e-6, atol=1e-6)
    assert torch.isfinite(s30[:, 15:]).all()  # new items are still scored
    loaded = Recommender.load(h30.save(tmp_path / "h"))
    assert torch.equal(loaded.known_, h30.known_)
    assert torch.equal(loaded.score(b30), s30)


def test_every_item_known_keeps_the_plain_normalisation(data):
    """Where every item is known (the common case) nothing changes: no mask is kept or saved
    and each member's list is :func:`normalise` of its scores, bit for bit."""
    train, valid = data
    first, second = get_model("markov").fit(train), get_model("pop").fit(train)
    h = Hybrid.from_members(first, second).fit(train, valid)
    assert h.known_ is None and "known" not in h.get_state()
    batch = valid.batch(np.arange(20), h.history_len)
    for got, m in zip(h.member_scores(batch), (first, second)):
        assert torch.equal(got, normalise(m.score(batch), "zscore"))


def test_items_added_later_are_scored_on_the_scale_of_the_fitted_ones(data, tmp_path):
    """``add_items`` grows both members; the added items are not in the statistics the weight
    was chosen under, so the fitted items' scores do not move (they did: every list's mean and
    spread took the new items' scores in) and the new ones are scored on their scale."""
    import polars as pl

    from warmrec.models.catalogue import add_items

    train, valid = data
    h = Hybrid.from_members(get_model("markov").fit(train), get_model("pop").fit(train), weight=0.5)
    h.fit(train, valid)
    n = h.n_items
    batch = valid.batch(np.arange(20), h.history_len)
    before = h.score(batch)
    ids = h.vocab.ids
    new = pl.DataFrame({"item_id": pl.Series([9001, 9002, 9003]).cast(ids.dtype)})
    assert add_items(h, new) == [9001, 9002, 9003] and h.n_items == n + 3
    after = h.score(batch)
    assert torch.equal(after[:, :n], before) and torch.isfinite(after[:, n:]).all()
    assert h.known_.tolist() == [False] + [True] * (n - 1) + [False] * 3
    loaded = Recommender.load(h.save(tmp_path / "h"))
    assert torch.equal(loaded.score(batch), after)
