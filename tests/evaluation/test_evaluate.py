"""evaluate(): exact ranks on hand-built examples, ties, padding, NaN, exclusion, protocols."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import torch

from tests.conftest import cyclic_log
from warmrec.data.dataset import Batch, EvalSet
from warmrec.data.vocab import ItemVocab
from warmrec.errors import ConfigError, ModelError
from warmrec.evaluation import metrics as M
from warmrec.evaluation.evaluate import _Negatives, _sample_negatives, evaluate

NAN = float("nan")


class FixedScores:
    """Returns row ``j`` of ``table`` for example ``j`` (the EvalSet's ``users`` are 0..n-1)."""

    history_len = 10

    def __init__(self, table) -> None:
        self.table = torch.as_tensor(np.asarray(table, dtype=np.float32))
        self.calls = 0

    def score(self, batch: Batch) -> torch.Tensor:
        self.calls += 1
        lo, hi = int(batch.users.min()), int(batch.users.max()) + 1
        assert torch.equal(batch.users, torch.arange(lo, hi))
        return self.table[lo:hi]  # a view: evaluate must not write into it


def make_set(histories: list[list[int]], targets: list[int], n_items: int) -> EvalSet:
    lens = np.array([len(h) for h in histories], dtype=np.int64)
    ends = np.cumsum(lens)
    items = np.array([i for h in histories for i in h], dtype=np.int64)
    n = len(targets)
    return EvalSet(
        items,
        ends - lens,
        ends,
        np.array(targets, dtype=np.int64),
        n_items,
        pl.Series("session_id", np.arange(n)),
        np.arange(n, dtype=np.int64),
    )


# n_items = 6: padding 0 and items 1..5
HIST = [[1], [2, 3], [4], [2], [], [2]]
TARGETS = [2, 3, 5, 1, 4, 3]
SCORES = [
    [0, 5, 4, 3, 2, 1],  # target 2 scores 4; only item 1 is higher -> rank 2
    [1, 1, 1, 1, 1, 1],  # all equal: ties count against the model -> last, rank 5
    [9, 1, 1, 1, 1, 2],  # padding's 9 is never ranked -> rank 1
    [0, 0.5, NAN, NAN, NAN, 0.1],  # NaN items rank last -> rank 1
    [0, 1, 2, 3, NAN, 0],  # NaN target -> out of the ranking, a miss at every K
    [0, 1, 2, 2, 2, 0],  # target 3 ties with items 2 and 4 -> rank 3
]
U = M.UNRANKED
RANKS = [2, 5, 1, 1, U, 3]
# exclude_seen: item 1 gone for example 0; example 1's target was seen -> miss; example 5: item 2
RANKS_EXCLUDED = [1, U, 1, 1, U, 2]


def test_full_ranks_exact():
    model = FixedScores(SCORES)
    before = model.table.clone()
    res = evaluate(model, make_set(HIST, TARGETS, 6), ["hr@1", "hr@2", "mrr@5", "ndcg@3"])
    assert res.ranks.tolist() == RANKS
    assert torch.equal(torch.nan_to_num(model.table), torch.nan_to_num(before))  # untouched
    assert res["hr@1"] == pytest.approx(2 / 6)
    assert res["HR@2"] == pytest.approx(3 / 6)
    assert res["mrr@5"] == pytest.approx((1 / 2 + 1 / 5 + 1 + 1 + 0 + 1 / 3) / 6)
    want_ndcg = [1 / math.log2(3), 0, 1, 1, 0, 1 / math.log2(4)]
    np.testing.assert_allclose(res.per_example["ndcg@3"], want_ndcg)
    assert res.n_examples == 6 and res.protocol == "full"
    assert res.table.filter(pl.col("metric") == "hr")["value"].to_list() == pytest.approx(
        [2 / 6, 3 / 6]
    )


def test_exclude_seen_removes_whole_history():
    res = evaluate(FixedScores(SCORES), make_set(HIST, TARGETS, 6), ["hr@1"], exclude_seen=True)
    assert res.ranks.tolist() == RANKS_EXCLUDED


def test_exclude_seen_uses_history_beyond_model_window():
    # the model looks at 1 item only, exclusion still removes the whole history
    model = FixedScores([[0, 5, 4, 3, 2, 1]])
    model.history_len = 1
    res = evaluate(model, make_set([[1, 2, 3]], [4], 6), ["hr@1"], exclude_seen=True)
    assert res.ranks.tolist() == [1]


def test_constant_model_ranks_last_and_infinite_scores():
    n_items = 8
    es = make_set([[1]] * 3, [1, 4, 7], n_items)
    res = evaluate(FixedScores(np.zeros((3, n_items))), es, ["hr@7"])
    assert res.ranks.tolist() == [n_items - 1] * 3
    inf = float("inf")
    table = [[0, -inf, 1, 1, 1, 1, 1, 1], [0, 1, 1, 1, inf, 1, 1, 1], [0, 1, 1, 1, 1, 1, 1, 1]]
    res = evaluate(FixedScores(table), es, ["hr@7"])
    # a -inf target is out of the ranking (no top-k list returns it): a miss even at K = 7
    assert res.ranks.tolist() == [M.UNRANKED, 1, n_items - 1]
    assert res.per_example["hr@7"].tolist() == [0.0, 1.0, 1.0]


def test_a_target_out_of_the_ranking_misses_at_every_cutoff():
    """4 real items, the target seen and excluded: no list of any length holds it (it counted as
    a hit once K reached the catalogue)."""
    es = make_set([[2]], [2], 5)
    rows = FixedScores([[0, 1, 9, 2, 3]])
    metrics = ["hr@3", "hr@4", "hr@50", "ndcg@4", "mrr@50"]
    for protocol in ("full", "sampled-uniform-2"):
        res = evaluate(rows, es, metrics, exclude_seen=True, protocol=protocol)
        assert res.summary == dict.fromkeys(metrics, 0.0), protocol
    nan = evaluate(FixedScores([[0, 1, float("nan"), 2, 3]]), es, ["hr@4"])
    assert nan.summary == {"hr@4": 0.0}


def test_list_metrics_by_hand():
    cats = np.array([[0, 0], [1, 0], [1, 0], [0, 1], [1, 1], [0, 1]], dtype=bool)
    counts = np.array([0.0, 10, 20, 30, 40, 50])
    rows = [[0, 5, 4, 3, 2, 1], [0, 1, 2, 3, 4, 5], [0, 5, 4, 3, 2, 1]]
    es = make_set([[1], [5], []], [3, 1, 2], 6)
    metrics = ["coverage@1", "coverage@2", "popularity@2", "cat_hr@2", "cat_map@2", "popularity@10"]
    res = evaluate(FixedScores(rows), es, metrics, item_counts=counts, item_categories=cats)
    # top-2 lists: [1, 2], [5, 4], [1, 2]
    assert res["coverage@1"] == pytest.approx(2 / 5)
    assert res["coverage@2"] == pytest.approx(4 / 5)
    assert res.per_example["popularity@2"].tolist() == [15.0, 45.0, 15.0]
    assert res.per_example["cat_hr@2"].tolist() == [0.0, 1.0, 1.0]
    np.testing.assert_allclose(res.per_example["cat_map@2"], [0.0, 0.25, 1.0])
    assert res["popularity@10"] == pytest.approx(30.0)  # K above the catalogue: all 5 items
    ex = evaluate(
        FixedScores(rows), es, metrics, exclude_seen=True, item_counts=counts, item_categories=cats
    )
    # top-2 lists without the history: [2, 3], [4, 3], [1, 2]
    assert ex["coverage@1"] == pytest.approx(3 / 5)
    assert ex.per_example["popularity@2"].tolist() == [25.0, 35.0, 15.0]
    assert ex.per_example["cat_hr@2"].tolist() == [1.0, 1.0, 1.0]


def test_list_metrics_never_recommend_padding_or_excluded():
    rows = [[9, 1, NAN, 0, 0, 0]]
    res = evaluate(
        FixedScores(rows), make_set([[3, 4, 5]], [1], 6), ["coverage@5"], exclude_seen=True
    )
    # only item 1 is rankable: padding, the NaN item 2 and the seen items 3-5 are not listed
    assert res["coverage@5"] == pytest.approx(1 / 5)


def random_case(n=57, n_items=40, seed=1):
    rng = np.random.default_rng(seed)
    lens = rng.integers(0, 6, size=n)
    hist = [rng.integers(1, n_items, size=k).tolist() for k in lens]
    targets = rng.integers(1, n_items, size=n).tolist()
    scores = rng.normal(size=(n, n_items)).round(1)  # rounding makes ties
    return make_set(hist, targets, n_items), scores


@pytest.mark.parametrize("protocol", ["full", "sampled-uniform-10", "sampled-pop-10"])
@pytest.mark.parametrize("exclude_seen", [False, True])
def test_batch_size_invariance(protocol, exclude_seen):
    es, scores = random_case()
    counts = np.arange(40, dtype=np.float64)
    metrics = ["hr@5", "ndcg@10", "mrr@20"]
    if protocol == "full":
        metrics += ["coverage@3", "popularity@3"]
    runs = [
        evaluate(
            FixedScores(scores),
            es,
            metrics,
            protocol,
            exclude_seen=exclude_seen,
            item_counts=counts,
            batch_size=bs,
            seed=3,
        )
        for bs in (1, 7, 1000)
    ]
    for r in runs[1:]:
        assert r.ranks.tolist() == runs[0].ranks.tolist()
        assert r.summary == runs[0].summary


def test_full_ranks_match_definition_on_random_scores():
    es, scores = random_case()
    res = evaluate(FixedScores(scores), es, ["hr@1"])
    t = es.targets
    want = (scores[:, 1:] >= scores[np.arange(len(t)), t][:, None]).sum(1)
    assert res.ranks.tolist() == want.tolist()


def test_negatives_never_the_target_and_uniform():
    rng = np.random.default_rng(0)
    targets = np.tile(np.arange(1, 6), 4000)
    neg = _sample_negatives(targets, 30, 6, None, rng)
    assert neg.shape == (20000, 30)
    assert (neg != targets[:, None]).all() and neg.min() >= 1 and neg.max() <= 5
    # for target 3 the others are uniform: 1/4 each
    freq = np.bincount(neg[targets == 3].ravel(), minlength=6)[1:] / neg[targets == 3].size
    np.testing.assert_allclose(freq, [0.25, 0.25, 0, 0.25, 0.25], atol=0.01)


def test_popularity_negatives_follow_counts_without_target():
    counts = np.array([0.0, 1, 2, 3, 4, 0])  # item 5 never seen: never drawn
    probs = counts / counts.sum()
    rng = np.random.default_rng(0)
    targets = np.full(20000, 4)
    neg = _sample_negatives(targets, 10, 6, probs, rng)
    assert (neg != 4).all() and (neg != 0).all() and (neg != 5).all()
    freq = np.bincount(neg.ravel(), minlength=6) / neg.size
    np.testing.assert_allclose(freq, [0, 1 / 6, 2 / 6, 3 / 6, 0, 0], atol=0.01)


def test_sampled_ranks_against_the_drawn_negatives():
    es, _ = random_case(n=300, n_items=40)
    # item 1 best, item 39 worst: rank = 1 + number of negatives with a smaller index
    scores = -np.tile(np.arange(40, dtype=np.float64), (300, 1))
    for kind in ("uniform", "pop"):
        counts = np.arange(40, dtype=np.float64) if kind == "pop" else None
        res = evaluate(
            FixedScores(scores), es, ["hr@5"], f"sampled-{kind}-20", item_counts=counts, seed=5
        )
        probs = None if counts is None else np.r_[0.0, counts[1:]] / counts[1:].sum()
        neg = _Negatives(es.targets, 20, 40, probs, 5).get(0, 300)
        want = 1 + (neg < es.targets[:, None]).sum(1)
        assert res.ranks.tolist() == want.tolist()
        assert res.ranks.max() <= 21 and res.ranks.min() >= 1


def test_sampled_ties_against_model_and_seed():
    es, scores = random_case(n=200)
    res = evaluate(FixedScores(np.ones((200, 40))), es, ["hr@10"], "sampled-uniform-25")
    assert res.ranks.tolist() == [26] * 200  # ties: the target ranks below all N negatives
    runs = [
        evaluate(FixedScores(scores), es, ["ndcg@10"], "sampled-uniform-25", seed=s).ranks
        for s in (0, 0, 1)
    ]
    assert runs[0].tolist() == runs[1].tolist()
    assert runs[0].tolist() != runs[2].tolist()
    seen = evaluate(
        FixedScores(scores),
        make_set([[3]], [3], 40),
        ["hr@1"],
        "sampled-uniform-5",
        exclude_seen=True,
    )
    assert seen.ranks.tolist() == [U]  # a seen target is a miss in the sampled protocol too


def test_popularity_sampling_follows_item_counts_in_evaluate():
    # 39 items; only items 1 and 2 have counts: every negative is 1 or 2 (never the target)
    n_items = 40
    counts = np.zeros(n_items)
    counts[[1, 2]] = [1.0, 3.0]
    es = make_set([[5]] * 400, [1] * 200 + [30] * 200, n_items)
    scores = np.zeros((400, n_items))
    scores[:, 2] = 1.0  # item 2 beats every target; target 30 ties with item 1
    res = evaluate(FixedScores(scores), es, ["hr@1"], "sampled-pop-1", item_counts=counts)
    # target 1 can only be compared with item 2 (rank 2); target 30 draws 2 w.p. 3/4, else 1
    assert res.ranks[:200].tolist() == [2] * 200
    assert set(res.ranks[200:].tolist()) == {2}
    counts[2] = 0.0
    with pytest.raises(ConfigError, match="all the popularity mass"):
        evaluate(FixedScores(scores), es, ["hr@1"], "sampled-pop-1", item_counts=counts)


def test_unknown_names_and_bad_arguments_raise():
    es = make_set(HIST, TARGETS, 6)
    m = FixedScores(SCORES)
    for protocol in ("loo", "sampled-foo-10", "sampled-uniform-", "sampled-uniform-0"):
        with pytest.raises(ConfigError):
            evaluate(m, es, ["hr@1"], protocol)
    with pytest.raises(ConfigError, match="below the catalogue"):
        evaluate(m, es, ["hr@1"], "sampled-uniform-5")
    with pytest.raises(ConfigError, match="unknown metric"):
        evaluate(m, es, ["hr@1", "precision@3"])
    with pytest.raises(ConfigError, match="item_counts"):
        evaluate(m, es, ["popularity@3"])
    with pytest.raises(ConfigError, match="item_counts"):
        evaluate(m, es, ["hr@1"], "sampled-pop-2")
    with pytest.raises(ConfigError, match="shape"):
        evaluate(m, es, ["popularity@3"], item_counts=np.ones(5))
    with pytest.raises(ConfigError, match="item_categories"):
        evaluate(m, es, ["cat_hr@3"])
    with pytest.raises(ConfigError, match="shape"):
        evaluate(m, es, ["cat_hr@3"], item_categories=np.ones((4, 2), dtype=bool))
    with pytest.raises(ConfigError, match="full"):
        evaluate(m, es, ["coverage@3"], "sampled-uniform-2")


def test_wrong_score_shape_raises():
    class Narrow(FixedScores):
        def score(self, batch):
            return super().score(batch)[:, :-1]

    with pytest.raises(ModelError, match=r"shape \(6, 5\), expected \(6, 6\)"):
        evaluate(Narrow(SCORES), make_set(HIST, TARGETS, 6), ["hr@1"])


def test_torch_module_is_scored_in_eval_mode_and_restored():
    class Net(torch.nn.Module):
        history_len = 5

        def __init__(self):
            super().__init__()
            self.modes = []

        def score(self, batch):
            self.modes.append(self.training)
            return torch.zeros(len(batch), 6)

    net = Net().train()
    evaluate(net, make_set(HIST, TARGETS, 6), ["hr@1"], batch_size=2)
    assert net.modes == [False, False, False] and net.training


def test_oracle_on_cyclic_log_hits_every_time():
    df = cyclic_log(n_sessions=30, n_items=20, length=6)
    vocab = ItemVocab.from_ids(df["item_id"])
    es = EvalSet.from_sessions(df, vocab)

    class Oracle:
        history_len = 3

        def score(self, batch):
            nxt = vocab.encode(np.array(vocab.decode(batch.items[:, -1].numpy())) % 20 + 1)
            return torch.nn.functional.one_hot(torch.tensor(nxt), len(vocab)).float()

    res = evaluate(Oracle(), es, ["hr@1", "ndcg@10", "mrr@10"])
    assert len(es) == 30 * 5 and res.ranks.tolist() == [1] * len(es)
    assert res["ndcg@10"] == 1.0 and res["mrr@10"] == 1.0
    # a cycle never repeats within 6 steps, so exclude_seen changes nothing for the oracle
    assert evaluate(Oracle(), es, ["hr@1"], exclude_seen=True)["hr@1"] == 1.0


def test_empty_eval_set():
    es = make_set([], [], 6)
    res = evaluate(FixedScores(np.zeros((0, 6))), es, ["hr@10", "coverage@2"])
    assert res.n_examples == 0 and res.ranks.size == 0


def test_unseen_negatives_never_in_the_history():
    # 30 items; each example saw items 1..20 (scored highest) and its target scores above the
    # rest: with negatives drawn from the unseen items only, the target is always first
    n_items = 31
    hist = [list(range(1, 21))] * 50
    targets = [25] * 25 + [5] * 25  # the second half's target is itself in the history
    es = make_set(hist, targets, n_items)
    scores = np.zeros((50, n_items))
    scores[:, 1:21] = 10.0
    scores[:, 25] = 5.0
    scores[:, 5] = 10.0
    unseen = evaluate(FixedScores(scores), es, ["hr@1"], "sampled-unseen-20", seed=2)
    # the history-free negatives score 0: target 25 (5.0) and the seen target 5 (10.0) both win
    assert unseen.ranks.tolist() == [1] * 50
    neg = _Negatives(es.targets, 20, n_items, None, 2, es).get(0, 50)
    assert not np.isin(neg, np.arange(1, 21)).any() and (neg != es.targets[:, None]).all()
    assert set(np.unique(neg[:25])) == set(range(21, 31)) - {25}  # never the target either
    assert set(np.unique(neg[25:])) == set(range(21, 31))
    uniform = evaluate(FixedScores(scores), es, ["hr@1"], "sampled-uniform-20", seed=2)
    assert (uniform.ranks[:25] > 1).all()  # uniform negatives include seen items scoring 10


def test_unseen_negatives_when_every_other_item_was_seen():
    es = make_set([[1, 2, 3]], [4], 5)  # items 1..4: all but the target seen
    with pytest.raises(ConfigError, match="seen every item"):
        evaluate(FixedScores(np.zeros((1, 5))), es, ["hr@1"], "sampled-unseen-3")


def test_no_example_is_nan_not_zero_and_a_metric_may_be_one_string():
    """A split that left nothing to score reported HR@10 0.0, as if the model had missed
    every target; ``metrics="ndcg@10"`` was read letter by letter ("metric 'n'")."""
    import warnings as w

    import polars as pl

    from warmrec.data.prepared import prepare
    from warmrec.errors import DataWarning
    from warmrec.evaluation.evaluate import evaluate
    from warmrec.registry import get_model

    one_event = pl.DataFrame(
        {"session_id": [1, 2, 3], "item_id": [1, 2, 3], "timestamp": [1.0, 2.0, 3.0]}
    )
    with w.catch_warnings(record=True) as caught:
        w.simplefilter("always")
        p = prepare(one_event, split="loo")
    assert any(
        issubclass(c.category, DataWarning) and "no test example" in str(c.message) for c in caught
    )
    model = get_model("pop").fit(p.train)
    res = evaluate(model, p.test, "hr@10,ndcg@10")
    assert res.n_examples == 0 and set(res.summary) == {"hr@10", "ndcg@10"}
    assert all(v != v for v in res.summary.values())  # NaN


def test_category_metrics_count_ties_against_the_model():
    """``cat_hr@K`` / ``cat_map@K`` read ``torch.topk``'s list, whose ties fall by index: a
    model scoring every item alike hit the category of a target it ranked last."""

    class Constant:
        history_len = 5

        def score(self, batch):
            return torch.zeros(len(batch), 6)

    es = EvalSet(np.full(4, 5, dtype=np.int64), np.arange(4), np.arange(1, 5),
                 np.arange(1, 5), 6, pl.Series(range(4)))  # fmt: skip
    own = np.zeros((6, 5), dtype=bool)
    own[np.arange(1, 6), np.arange(5)] = True  # each item its own category: cat_hr = hr
    res = evaluate(Constant(), es, ["hr@1", "cat_hr@1", "cat_map@1", "cat_hr@5"],
                   item_categories=own)  # fmt: skip
    assert res.summary["hr@1"] == res.summary["cat_hr@1"] == res.summary["cat_map@1"] == 0.0
    assert res.summary["cat_hr@5"] == 1.0  # the whole catalogue holds the target
    shared = np.zeros((6, 2), dtype=bool)
    shared[1:, 0] = True  # every item in one category: any item is related
    res = evaluate(Constant(), es, ["cat_hr@1"], item_categories=shared)
    assert res.summary["cat_hr@1"] == 1.0
    # a real order is kept: the top item scores highest whatever its category
    scores = torch.tensor([[0.0, 0.1, 0.9, 0.5, 0.3, 0.2]])
    from warmrec.evaluation.evaluate import _top_ties_last

    top = _top_ties_last(scores, torch.from_numpy(own.astype(np.float32)), torch.tensor([2]), 3)
    assert top.tolist() == [[2, 3, 4]]


def test_result_records_each_examples_user():
    """Two users, the second with three examples (a time split's events): ``units`` numbers
    the users in the order of their first example, and a slice keeps its examples' users."""
    es = make_set([[1], [1], [1, 2], [1, 2, 3]], [2, 2, 3, 4], 6)
    es = EvalSet(es.items, es.starts, es.ends, es.targets, 6, es.keys, np.array([7, 3, 3, 3]))

    class Zeros:
        history_len = 10

        def score(self, batch: Batch) -> torch.Tensor:
            return torch.zeros(len(batch.items), 6)

    res = evaluate(Zeros(), es, ["hr@5"])
    assert res.units.tolist() == [0, 1, 1, 1]
    from warmrec.evaluation.slices import subset_result

    assert subset_result(res, np.array([3, 0])).units.tolist() == [1, 0]


def test_anonymous_sessions_are_units_of_their_own():
    """A session log whose guest sessions have no user (user index 0): each anonymous session
    is its own unit, as in a log without users; they had all been one made-up user, which
    the cluster bootstrap of ``compare`` resampled as a single cluster."""
    from warmrec.evaluation.evaluate import example_units
    from warmrec.evaluation.stats import per_user_values

    es = make_set([[1], [1], [2], [1], [1, 3]], [2, 3, 4, 2, 4], 6)
    keys = pl.Series("session_id", ["s1", "s2", "s3", "s4", "s2"])
    users = np.array([3, 0, 0, 3, 0])  # s1, s4: user 3; s2 (two examples), s3: no user
    es = EvalSet(es.items, es.starts, es.ends, es.targets, 6, keys, users)
    units, n_units = example_units(es)
    assert units.tolist() == [0, 1, 2, 0, 1]
    assert n_units == 3
    assert per_user_values(es, [1.0, 0.0, 1.0, 0.0, 1.0]).tolist() == [0.5, 0.5, 1.0]
