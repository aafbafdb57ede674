"""``warmrec auto``'s steps: a network paused and resumed from its checkpoint, cut at the deadline,
and the hybrid formed from two saved members."""

from __future__ import annotations

import math
import time

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
    assert hyb["value"] >= max(knn["value"], second["value"]) - 1e-9  # w=0 or 1: one member
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
    assert hyb_ex["value"] >= max(knn["value_other"], second["value_other"]) - 1e-9
