"""``loss = "auto"``: the loss it resolved to is recorded in the saved model's run info."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from tests.conftest import cyclic_log
from warmrec.cli.main import cli
from warmrec.models.base import Recommender

TINY = ["model.d=8", "model.n_layers=1", "model.n_heads=1", "model.ffn_dim=8", "model.max_len=6"]
TINY += ["train.epochs=1", "train.batch_size=64", "model.n_negatives=4"]


@pytest.mark.parametrize(("limit", "want"), [(20_000, "ce"), (3, "sampled_ce")])
def test_train_records_the_resolved_loss(tmp_path, limit, want):
    data = tmp_path / "log.csv"
    cyclic_log(n_sessions=40, n_items=10, length=5).write_csv(data)
    sets = [x for kv in [*TINY, f"model.auto_full_max_items={limit}"] for x in ("--set", kv)]
    out = tmp_path / "model"
    res = CliRunner().invoke(
        cli,
        ["train", "--model", "sasrec", "--data", str(data), *sets, "--out", str(out)],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    run = Recommender.load(out).meta.run
    assert run.loss == want
