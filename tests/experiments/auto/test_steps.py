"""``warmrec auto``'s steps: a network paused and resumed from its checkpoint, cut at the deadline,
and the hybrid formed from two saved members."""

from __future__ import annotations

import math
import time

import pytest

from warmrec.data.synthetic import generate_repeats
from warmrec.experiments.auto import (
    StepContext,
    run_step,
)
from warmrec.experiments.spec import (
    prepare_run,
    spec_from_config,
)
from warmrec.models.base import Recommender


def test_a_network_step_pauses_at_its_allowance_and_resumes_from_its_checkpoint(tmp_path):
    prep = prepare_run(
        spec_from_config({}), data=generate_repeats(n_users=40, n_items=80, length=15)
    )
    ctx = StepContext(prep, prep.info["spec"], tmp_path, "ndcg@10")
    step = {
        "trial": "gru4rec-000",
        "family": "gru4rec",
        "kind": "fit",
        "model": {"hidden_size": 16, "max_len": 10},
        # one thread: this test process's torch was started before conftest's OMP_NUM_THREADS
        "train": {"epochs": 3, "patience": 0, "batch_size": 16, "num_threads": 1},
        "exclude_seen": False,
        "train_exclude": False,
        "eval_both": True,
        "spent": 0.0,
        "allowance": 0.0,  # the first epoch is the cheapest rung: pause after it
        "deadline": time.time() + 300,
        "members": [],
    }
    first = run_step(ctx, step)
    assert first["status"] == "paused" and first["epochs"] == 1, first
    assert first["value"] is not None and first["value_other"] is not None
    assert first["ci"][0] <= first["value"] <= first["ci"][1]
    assert (tmp_path / "ckpt" / "gru4rec-000").is_dir()
    saved = Recommender.load(tmp_path / "models" / "gru4rec-000")
    assert saved.name == "gru4rec"
    second = run_step(ctx, {**step, "spent": first["seconds"], "allowance": math.inf})
    assert second["status"] == "done" and second["epochs"] == 3, second  # epochs 2 and 3 only
    assert len(second["curve"]) == 2
    # a step past the deadline is cut and leaves the checkpoint as it was
    cut = run_step(ctx, {**step, "trial": "gru4rec-001", "deadline": time.time() - 1})
    assert cut["status"] in ("cut", "paused")
    # the hybrid of a kNN model and this network, formed from the two saved members
    knn = run_step(
        ctx, {**step, "trial": "sknn-000", "family": "sknn", "model": {"k": 50}, "train": {}}
    )
    assert knn["status"] == "done"
    members = {"network": "gru4rec", "network_config": step["model"], "neighbours": "sknn"}
    hybrid = {
        **step,
        "trial": "hybrid-000",
        "family": "hybrid",
        "kind": "hybrid",
        "model": {**members, "neighbours_config": {"k": 50}, "select_metric": "ndcg@10"},
        "train": {},
        "members": ["sknn-000", "gru4rec-000"],
    }
    hyb = run_step(ctx, hybrid)
    assert hyb["status"] == "done" and 0.0 <= hyb["weight"] <= 1.0, hyb
    # a hybrid step past the deadline is cut too (it scores for long on a large catalogue)
    cut = run_step(ctx, {**hybrid, "trial": "hybrid-001", "deadline": time.time() - 1})
    assert cut["status"] == "cut", cut
    assert not (tmp_path / "models" / "hybrid-001").exists()
    # in sample, w = 0 or 1 is one member: at least as good as either; the value the search
    # compares is out of fold (the weight chosen on the other half of the learners)
    assert hyb["value_in_sample"] >= max(knn["value"], second["value"]) - 1e-9
    assert hyb["ci"][0] <= hyb["value"] <= hyb["ci"][1]
    # every metric it reports is the out-of-fold one too (the model's record, the report),
    # the in-sample ones kept apart; scored the other way, the same
    assert hyb["valid"]["ndcg@10"] == pytest.approx(hyb["value"])
    assert hyb["valid_in_sample"]["ndcg@10"] == pytest.approx(hyb["value_in_sample"])
    assert set(hyb["valid"]) == set(hyb["valid_in_sample"]) and len(hyb["valid"]) > 1
    assert hyb["valid_other"]["ndcg@10"] == pytest.approx(hyb["value_other"])
    from warmrec.tuning.results import dump_toml

    text = dump_toml(ctx.spec("hybrid", hyb["model"], {}, False).to_config())
    spec = spec_from_config(__import__("tomllib").loads(text))  # winner.toml round-trips
    assert spec.model.config["network_config"] == step["model"]
    assert spec.model.config["weight"] == hyb["weight"]
    # scored with seen items excluded, it chooses its weight that way too (each member's
    # weight, 0 or 1, is in the grid: it is at least as good as either member excluded)
    hyb_ex = run_step(
        ctx, {**hybrid, "trial": "hybrid-002", "exclude_seen": True, "eval_both": False}
    )
    assert hyb_ex["status"] == "done", hyb_ex
    assert Recommender.load(tmp_path / "models" / "hybrid-002").config.select_exclude_seen
    assert hyb_ex["value_in_sample"] >= max(knn["value_other"], second["value_other"]) - 1e-9


class _Memoriser(Recommender):
    """Ranks first the validation targets it was fitted on (each example's own target where
    the history is the same): in sample it is perfect, on other learners it knows nothing."""

    name = "memoriser"

    def fit(self, train, valid=None, **kw):
        self._bind(train)
        self.seen = {tuple(valid.history(j)): int(valid.targets[j]) for j in range(len(valid))}
        return self

    def score(self, batch):
        import torch

        s = torch.zeros(batch.items.shape[0], self.n_items)
        for r, row in enumerate(batch.items.tolist()):
            hit = self.seen.get(tuple(i for i in row if i > 0))
            if hit is not None:
                s[r, hit] = 1.0
        return s


def test_a_formed_model_is_valued_out_of_fold_on_halves_of_the_learners(tmp_path):
    """``validation_halves`` keeps every learner's examples on one side; ``_out_of_fold`` fits
    on one half and scores the other, both ways: a model that memorises the targets it was
    fitted on scores 1.0 in sample and nothing out of fold."""
    import dataclasses

    import numpy as np

    from warmrec.experiments.auto.steps import _out_of_fold, validation_halves

    prep = prepare_run(
        spec_from_config({"split": {"method": "user"}}),  # held-out learners: every next item
        data=generate_repeats(n_users=200, n_items=500, length=12),
    )
    valid = prep.valid
    keys = valid.keys.to_numpy()
    assert len(set(keys)) < len(keys)  # several examples per learner
    half = validation_halves(valid)
    assert 0.3 < half.mean() < 0.7
    for k in set(keys):
        assert len(set(half[keys == k])) == 1  # a learner is on one side only
    assert (validation_halves(valid) == half).all()  # seeded
    ctx = StepContext(prep, prep.info["spec"], tmp_path, "ndcg@10")
    spec = ctx.spec("pop", {}, {}, False)
    m = _Memoriser().fit(prep.train, valid)
    res = __import__("warmrec").evaluate(m, valid, ["ndcg@10"])
    assert res.summary["ndcg@10"] > 0.95  # (a few histories repeat with another target)
    ((value, ci, every),) = _out_of_fold(ctx, _Memoriser, [spec], "ndcg@10", time.time() + 60)
    assert value < 0.05 and ci[0] <= value <= ci[1]
    assert every["ndcg@10"] == pytest.approx(value) and every["recall@10"] < 0.1  # all metrics
    one = valid.subset(np.flatnonzero(keys == keys[0]))
    ctx1 = StepContext(dataclasses.replace(prep, valid=one), prep.info["spec"], tmp_path, "ndcg@10")
    assert validation_halves(one) is None
    assert _out_of_fold(ctx1, _Memoriser, [spec], "ndcg@10", time.time() + 60) is None


def test_a_trial_fitted_on_validation_is_valued_out_of_fold(tmp_path, monkeypatch):
    """A model whose ``fit`` fits weights to the validation targets (``fits_on_validation``:
    FeatRank, Fresh) is compared by the search on its out-of-fold value, as a formed model is:
    the memoriser reads 1.0 in sample and ~0 out of fold, and the search sees the ~0."""
    from warmrec import registry
    from warmrec.models.popularity import Pop

    class MemoPop(Pop):
        name = "memopop"
        fits_on_validation = True

        def fit(self, train, valid=None, **kw):
            super().fit(train)
            self.memo = _Memoriser().fit(train, valid)
            return self

        def score(self, batch):
            return self.memo.score(batch)

    monkeypatch.setitem(registry._MODELS, "memopop", MemoPop)
    prep = prepare_run(
        spec_from_config({"split": {"method": "user"}}),
        data=generate_repeats(n_users=200, n_items=500, length=12),
    )
    ctx = StepContext(prep, prep.info["spec"], tmp_path, "ndcg@10")
    step = {
        "trial": "memopop-000",
        "family": "memopop",
        "kind": "fit",
        "model": {},
        "train": {},
        "exclude_seen": False,
        "eval_both": True,
        "spent": 0.0,
        "allowance": math.inf,
        "deadline": time.time() + 300,
        "members": [],
    }
    out = run_step(ctx, step)
    assert out["status"] == "done", out
    assert out["value_in_sample"] > 0.95 and out["valid_in_sample"]["ndcg@10"] > 0.95
    assert out["value"] < 0.05 and out["valid"]["ndcg@10"] == pytest.approx(out["value"])
    # seen items excluded (many targets here are repeats): the same, lower in sample
    assert out["value_other"] < 0.05 and out["value_other_in_sample"] > 0.15
    # a model that only stops on validation (Pop) keeps its one, in-sample, value
    pop = run_step(ctx, {**step, "trial": "pop-000", "family": "pop"})
    assert pop["status"] == "done" and "value_in_sample" not in pop


def test_a_network_stopped_at_the_deadline_is_valued_only_as_the_others_are():
    """The loop's own validation figure ignores the cold targets' weight and ranks seen items
    as the network trains: it had been compared with figures computed otherwise."""
    from warmrec.experiments.auto.steps import deadline_value

    assert deadline_value(0.3, None, False, False) == 0.3
    assert deadline_value(0.3, "catalogue", False, False) is None
    assert deadline_value(0.3, None, True, False) is None
    assert deadline_value(float("nan"), None, False, False) is None


def _new_items_log(test_on_new_items: bool):
    """40 users walking 20 items; the validation target of the first 10 is an item of its own
    (no training event); the test target is a known item, or one that only the test brings."""
    import polars as pl

    rows = []
    for u in range(40):
        items = [(u + j) % 20 + 1 for j in range(5)]
        items.append(500 + u if u < 10 else (u + 5) % 20 + 1)  # validation
        items.append(1000 + u if test_on_new_items else (u + 6) % 20 + 1)  # test
        rows += [(u, it, float(100 * u + j)) for j, it in enumerate(items)]
    return pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")


def test_the_catalogue_share_that_weighs_validation_ignores_items_only_test_brings():
    """``--cold-target-share catalogue`` weighs validation by the catalogue's share of items
    without a training event; the catalogue (the vocabulary) holds every item of the log, and
    the 40 items only the test part brought had lifted that share from 1/3 to 5/7: the test
    part changed the validation figure that chooses. Training and validation alike, the
    weights (and the profile's share) are now the same whatever the test targets are."""
    import numpy as np

    from warmrec.experiments.auto import describe_log
    from warmrec.experiments.auto.steps import cold_weights, resolve_cold_share

    spec = spec_from_config({"split": {"method": "loo"}})
    known, new = (prepare_run(spec, data=_new_items_log(x)) for x in (False, True))
    assert len(new.vocab) == len(known.vocab) + 40
    for prep in (known, new):
        # 30 items known before the test part (1..20 and the 10 validation-only ones)
        assert resolve_cold_share(prep, "catalogue") == pytest.approx(10 / 30)
        assert describe_log(prep).catalogue_cold_share == pytest.approx(10 / 30)
    np.testing.assert_allclose(cold_weights(new, "catalogue"), cold_weights(known, "catalogue"))


def test_the_catalogue_share_under_the_coldstart_scenario_ignores_items_only_test_users_bring():
    """``--split coldstart`` has no row split: ``known_items`` returned None, so the items that
    only the meta-test users have (in the vocabulary, which covers the whole log, without a
    training event) counted as cold catalogue items: 0.5 of the catalogue on this log, whose
    training and validation users share the ten items 1-10, against 0 where the test users
    have those items too."""
    import numpy as np
    import polars as pl

    from warmrec.experiments.auto import describe_log
    from warmrec.experiments.auto.steps import resolve_cold_share
    from warmrec.experiments.spec import RunSpec

    rng = np.random.default_rng(0)
    rows = [(u, int(rng.integers(1, 11)), float(u * 10 + j)) for u in range(40) for j in range(6)]
    df = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    split = {"method": "coldstart", "scenario": {"shots": [2]}, "seed": 0}
    spec = RunSpec.model_validate({"split": split})
    base = prepare_run(spec, data=df)
    test_users = base.test.keys.to_list()
    own = pl.when(pl.col("user_id").is_in(test_users)).then(pl.col("item_id") + 1000)
    prep = prepare_run(spec, data=df.with_columns(own.otherwise(pl.col("item_id"))))
    assert prep.test.keys.to_list() == test_users and len(prep.vocab) - 1 == 20
    for p in (base, prep):
        assert resolve_cold_share(p, "catalogue") == 0.0
        assert describe_log(p).catalogue_cold_share == 0.0
