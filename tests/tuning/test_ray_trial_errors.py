"""Which errors fail a trial and which end the search: the local backend's rule on Ray too. A
``ModelError`` of a trial's values fails that trial at once, as a local trial does; any other of
warmrec's own errors (the base config, the data: every trial would meet it) ends the search
and is raised, of its class and with its message, after one try; anything else (a crash a retry
may survive) is still retried up to ``max_failures`` times.

Ray Tune retried every exception: a ``ModelError`` for sampled values that do not go together
(SASRec's ``d = 24`` with ``n_heads = 16``) ran 1 + ``max_failures`` times, re-reading and
re-splitting the data each time, and its row said ``retries = 3`` and
``warmrec.errors.ModelError: ...`` where the local row says ``retries = 0`` and the message.

A ``DataError`` or ``ConfigError`` out of a Ray trial (each reads the data itself) then failed
that trial only: every trial of the search met it in turn, and the search finished with N failed
rows (or the CLI's "no trial completed"), where the local backend stopped at the first and the
CLI said why in one line."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

pytest.importorskip("ray")

from click.testing import CliRunner  # noqa: E402

from tests.conftest import cyclic_log, split_cyclic  # noqa: E402
from warmrec.cli.main import cli  # noqa: E402
from warmrec.errors import ConfigError, DataError, WarmrecError  # noqa: E402
from warmrec.experiments.spec import prepare_run, spec_from_config  # noqa: E402
from warmrec.tuning import cluster, local  # noqa: E402
from warmrec.tuning.local import open_study, search_local  # noqa: E402
from warmrec.tuning.space import SearchSpace, parse_space  # noqa: E402
from warmrec.tuning.trial import SearchData  # noqa: E402

pytestmark = pytest.mark.xdist_group("ray")  # one Ray at a time
ROOT = Path(__file__).resolve().parents[2]
BAD = {"model.d": 24, "model.n_heads": 16}  # 16 heads do not divide d = 24
REASON = "model.d = 24, model.n_heads = 16) do not go together: SASRecConfig.n_heads: expected"
TRIES = "WARMREC_TEST_TRIES"
"""A file every try of a trial appends its values to (the Ray workers' setup hook)."""


def _space(*ds: int) -> SearchSpace:
    space = parse_space(
        {
            "search": {"metric": "ndcg@10"},
            "model": {
                "d": {"type": "categorical", "choices": list(ds)},
                "n_heads": {"type": "categorical", "choices": [16]},
                "max_len": 8,
            },
            "train": {"epochs": 1, "progress": False},
        }
    )
    space.check("sasrec")
    return space


def _base(tmp_path: Path) -> dict[str, Any]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    log = tmp_path / "log.csv"
    cyclic_log(n_sessions=1000, n_items=20, length=8).write_csv(log)
    return spec_from_config({"data": {"path": str(log)}}).to_config(absolute=True)


def _reports_of_trainable(monkeypatch, base: dict[str, Any], values: dict) -> list[dict]:
    """Run :func:`cluster._trainable` here, with ``tune.report`` collecting the reports."""
    from ray import tune

    reports: list[dict] = []
    monkeypatch.setattr(tune, "report", lambda metrics: reports.append(dict(metrics)))
    cluster._trainable(values, model_name="sasrec", space=_space(24, 32), base=base)
    return reports


def _result(reports: list[dict], params: dict, error: BaseException | None = None) -> Any:
    last = {**reports[-1], "done": True, "trial_id": "t"}  # Ray adds its own keys at the end
    df = pd.DataFrame(reports)
    return SimpleNamespace(metrics=last, metrics_dataframe=df, config=params, error=error)


class _Grid(list):
    def __init__(self, results: list, num_failures: tuple[int, ...] = ()) -> None:
        super().__init__(results)
        trials = [SimpleNamespace(trial_id="t", num_failures=n) for n in num_failures]
        self._experiment_analysis = SimpleNamespace(trials=trials)


def test_a_warmrec_error_ends_the_trial_with_a_report_not_an_exception(
    tmp_path: Path, monkeypatch
) -> None:
    """An exception out of the trainable is what Ray retries: a ModelError must not leave it."""
    reports = _reports_of_trainable(monkeypatch, _base(tmp_path), BAD)
    assert len(reports) == 1
    (last,) = reports
    assert math.isnan(last[cluster.METRIC]) and last[cluster.FINISHED] is False
    assert REASON in last[cluster.ERROR] and not last[cluster.ERROR].startswith("warmrec.")
    assert last["seconds"] > 0
    assert cluster.FATAL not in last  # the trial's own values: the search goes on
    assert not cluster._fatal_stopper()()("t", last)


EVERY = "split.method: every trial fails on this (a planted error of the base config)"
"""The message of the ConfigError that :func:`_every_trial_fails` raises."""


def _every_trial_fails(*args: Any, **kw: Any) -> Any:
    """A run_trial that raises a ConfigError that has nothing to do with the trial's values."""
    raise ConfigError(EVERY)


def test_an_error_of_the_base_config_or_the_data_ends_the_search_in_its_report(
    tmp_path: Path, monkeypatch
) -> None:
    """Not a ModelError of the trial's values: the last report names the error's class and
    carries its message as is, the stopper stops the whole run at it, and the driver rebuilds
    the same error from the report."""
    base = _base(tmp_path)
    Path(base["data"]["path"]).unlink()  # the data gone after the driver's check
    with pytest.raises(DataError) as in_driver:
        prepare_run(spec_from_config(base))
    (last,) = _reports_of_trainable(monkeypatch, base, {"model.d": 32, "model.n_heads": 16})
    assert last[cluster.FATAL] == "DataError" and last[cluster.ERROR] == str(in_driver.value)
    assert math.isnan(last[cluster.METRIC]) and last[cluster.FINISHED] is False
    stopper = cluster._fatal_stopper()()
    assert not stopper("t0", {cluster.METRIC: 0.1, "epoch": 1}) and not stopper.stop_all()
    assert stopper("t", last) and stopper.stop_all()
    raised = cluster._fatal_error(_Grid([_result([last], {})]))
    assert type(raised) is DataError and str(raised) == str(in_driver.value)

    import warmrec.tuning.trial as trial

    monkeypatch.setattr(trial, "run_trial", _every_trial_fails)
    (last,) = _reports_of_trainable(monkeypatch, _base(tmp_path / "b"), {"model.d": 32})
    assert (last[cluster.FATAL], last[cluster.ERROR]) == ("ConfigError", EVERY)
    raised = cluster._fatal_error(_Grid([_result([last], {})]))
    assert type(raised) is ConfigError and str(raised) == EVERY
    other = {**last, cluster.FATAL: "SessionStoreError"}  # not one of warmrec.errors': the base
    raised = cluster._fatal_error(_Grid([_result([other], {})]))
    assert type(raised) is WarmrecError and str(raised) == EVERY


def test_locally_an_error_of_the_base_config_ends_the_search_at_its_first_trial(
    tmp_path: Path, monkeypatch
) -> None:
    """The local backend's side of the rule: the ConfigError leaves the search as raised."""
    calls: list[dict] = []

    def fails(model_name: str, space: Any, values: dict, *args: Any, **kw: Any) -> Any:
        calls.append(dict(values))
        _every_trial_fails()

    monkeypatch.setattr(local, "run_trial", fails)
    train, valid = split_cyclic(n_sessions=120)
    data = SearchData(train, valid, train.item_counts())
    with pytest.raises(ConfigError) as e:
        search_local("sasrec", _space(32), data, tmp_path, trials=3, pruner="none")
    assert str(e.value) == EVERY and len(calls) == 1
    assert [t.state.name for t in open_study(tmp_path, seed=0).trials] == ["FAIL"]


def test_other_errors_leave_the_trainable_for_ray_to_retry(tmp_path: Path, monkeypatch) -> None:
    import warmrec.tuning.trial as trial

    def crash(*args: Any, **kw: Any) -> None:
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(trial, "run_trial", crash)
    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        _reports_of_trainable(monkeypatch, _base(tmp_path), {"model.d": 32, "model.n_heads": 16})


def test_the_row_of_a_trial_a_warmrec_error_ended_is_the_local_failed_row(
    tmp_path: Path, monkeypatch
) -> None:
    # the local backend: the same values, the same error, in an Optuna study
    train, valid = split_cyclic(n_sessions=120)
    study = open_study(tmp_path / "local", seed=0, pruner="none")
    study.enqueue_trial(BAD)
    data = SearchData(train, valid, train.item_counts())
    (local,) = search_local("sasrec", _space(24, 32), data, tmp_path / "local", trials=1)
    assert local.state == "failed" and REASON in local.error  # the reference is a failed row
    reports = _reports_of_trainable(monkeypatch, _base(tmp_path), BAD)
    (ray,) = cluster._rows(_Grid([_result(reports, BAD)], num_failures=(0,)))
    assert ray.seconds > 0
    assert dataclasses.replace(ray, seconds=local.seconds) == local


def test_a_trial_failed_after_some_epochs_keeps_its_curve_not_the_failure_report() -> None:
    epochs = [
        {"value": 0.1, "epoch": 1, "finished": False},
        {"value": 0.3, "epoch": 2, "finished": False},
    ]
    failed = {"value": math.nan, "finished": False, "error": "boom\nthe last line", "seconds": 2}
    (row,) = cluster._rows(_Grid([_result([*epochs, failed], {"model.x": 1})]))
    assert (row.state, row.value, row.curve, row.epochs) == ("failed", None, [0.1, 0.3], 2)
    assert row.error == "the last line" and row.retries == 0 and row.seconds == 2


def test_retries_count_the_tries_after_the_first() -> None:
    """Ray's ``num_failures`` counts failed tries: a trial whose exception outlived
    ``max_failures = 2`` failed 3 times and was retried twice."""
    epoch = [{"value": 0.1, "epoch": 1, "finished": False}]
    exhausted = _result(epoch, {}, error=RuntimeError("Traceback ...\nRuntimeError: CUDA oom"))
    (row,) = cluster._rows(_Grid([exhausted], num_failures=(3,)))
    assert (row.state, row.retries, row.error) == ("failed", 2, "RuntimeError: CUDA oom")
    survived = _result([{**epoch[0], "finished": True, "valid": {"ndcg@10": 0.1}}], {})
    (row,) = cluster._rows(_Grid([survived], num_failures=(1,)))
    assert (row.state, row.retries) == ("complete", 1)


def test_the_searcher_records_the_failed_trial_as_failed_and_asha_ignores_it() -> None:
    """Ray's OptunaSearch told its study a complete trial of value NaN, which Optuna refuses:
    the trial stayed RUNNING there. A failed local trial is FAIL in its study."""
    search_cls, scheduler_cls = cluster._failure_aware()
    searcher = search_cls(space=_space(24).suggest, metric="value", mode="max", seed=0)
    assert searcher.suggest("t") == BAD
    failed = {"value": math.nan, "finished": False, "error": "no", "training_iteration": 1}
    searcher.on_trial_result("t", failed)
    searcher.on_trial_complete("t", failed)
    (ot,) = searcher._ot_study.trials
    assert ot.state.name == "FAIL" and ot.intermediate_values == {}

    scheduler = scheduler_cls(time_attr="training_iteration", grace_period=1, max_t=10)
    scheduler.set_search_properties("value", "max")
    trial = SimpleNamespace(trial_id="t")
    scheduler.on_trial_add(None, trial)
    assert scheduler.on_trial_result(None, trial, failed) == scheduler.CONTINUE
    scheduler.on_trial_complete(None, trial, failed)
    assert all(not rung for bracket in scheduler._brackets for _, rung in bracket._rungs)
    assert "t" not in scheduler._trial_info


def _counting_ray(monkeypatch: Any, tries: Path, hook: Any) -> Any:
    """A local Ray (1 CPU) whose workers run ``hook`` at start-up, counting into ``tries``."""
    monkeypatch.setenv(TRIES, str(tries))
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    # the workers import this module (the hook) and the warmrec this test runs on
    path = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(path))
    return cluster.start_ray(None, num_cpus=1, runtime_env={"worker_process_setup_hook": hook})


def _count_tries() -> None:
    """Ray worker setup hook: every try of a trial appends its values to the file ``$TRIES``
    names; ``d = 32`` crashes with a RuntimeError (as a CUDA out-of-memory would)."""
    import warmrec.tuning.trial as trial

    real = trial.run_trial

    def counted(model_name: str, space: Any, values: dict, *args: Any, **kw: Any) -> Any:
        with open(os.environ[TRIES], "a") as f:
            f.write(json.dumps(values) + "\n")
        if values["model.d"] == 32:
            raise RuntimeError("CUDA out of memory (a crash a retry may survive)")
        return real(model_name, space, values, *args, **kw)

    trial.run_trial = counted


@pytest.mark.slow
def test_ray_tries_a_warmrec_error_once_and_retries_a_crash(tmp_path: Path, monkeypatch) -> None:
    """On a local Ray: a ModelError (real: d = 24, n_heads = 16) is tried once, its row as a
    failed local trial's; a RuntimeError is tried 1 + max_failures times."""
    tries = tmp_path / "tries.jsonl"
    base = _base(tmp_path)
    env = _counting_ray(monkeypatch, tries, _count_tries)
    try:
        (row,) = cluster.search_ray(
            "sasrec", _space(24), base, tmp_path / "bad", trials=1, max_failures=1
        )
        assert len(tries.read_text().splitlines()) == 1  # not retried
        assert (row.state, row.value, row.retries, row.epochs) == ("failed", None, 0, 0)
        assert REASON in row.error and row.error.startswith("the trial's values")
        tries.unlink()
        (row,) = cluster.search_ray(
            "sasrec", _space(32), base, tmp_path / "crash", trials=1, max_failures=1
        )
        assert len(tries.read_text().splitlines()) == 2  # retried once
        assert (row.state, row.value, row.retries) == ("failed", None, 1)
        assert "RuntimeError: CUDA out of memory" in row.error
    finally:
        cluster.stop_ray(env)


def _count_prepares() -> None:
    """Ray worker setup hook: every try of a trial (each reads its data: ``prepare_run``)
    appends a line to the file ``$TRIES`` names; ``d = 48`` raises a ConfigError of the base
    config (:data:`EVERY`) in ``run_trial``."""
    import warmrec.experiments.spec as spec
    import warmrec.tuning.trial as trial

    real_prepare, real_trial = spec.prepare_run, trial.run_trial

    def prepare(*args: Any, **kw: Any) -> Any:
        with open(os.environ[TRIES], "a") as f:
            f.write("prepare_run\n")
        return real_prepare(*args, **kw)

    def run(model_name: str, space: Any, values: dict, *args: Any, **kw: Any) -> Any:
        if values["model.d"] == 48:
            _every_trial_fails()
        return real_trial(model_name, space, values, *args, **kw)

    spec.prepare_run, trial.run_trial = prepare, run


SPACE48 = """
[search]
metric = "ndcg@10"
[model]
d = { type = "categorical", choices = [48] }
n_heads = 16
max_len = 8
[train]
epochs = 1
"""


@pytest.mark.slow
def test_ray_stops_the_search_at_an_error_every_trial_would_meet(
    tmp_path: Path, monkeypatch
) -> None:
    """On a local Ray, 3 trials, ``max_failures = 2``: the data removed after the driver read
    it (a DataError in the trial's ``prepare_run``), then a ConfigError in ``run_trial``, are
    each raised by ``search_ray`` as they were raised in the trial, after one try of one trial
    (not 3 failed trials, nor retries); ``warmrec tune`` says so in one line and exits 2, with
    ``--backend ray`` as with ``--backend optuna``."""
    tries = tmp_path / "tries.txt"
    base = _base(tmp_path)
    log = Path(base["data"]["path"])
    env = _counting_ray(monkeypatch, tries, _count_prepares)
    try:
        gone = _base(tmp_path / "gone")
        Path(gone["data"]["path"]).unlink()
        with pytest.raises(DataError) as in_driver:
            prepare_run(spec_from_config(gone))
        with pytest.raises(DataError) as e:
            cluster.search_ray("sasrec", _space(24, 32), gone, tmp_path / "d", trials=3)
        assert str(e.value) == str(in_driver.value)
        assert tries.read_text().splitlines() == ["prepare_run"]  # one try of one trial

        tries.unlink()
        with pytest.raises(ConfigError) as e:
            cluster.search_ray("sasrec", _space(48), base, tmp_path / "c", trials=3)
        assert str(e.value) == EVERY and len(tries.read_text().splitlines()) == 1

        tries.unlink()
        (tmp_path / "space.toml").write_text(SPACE48)
        args = ["tune", "--model", "sasrec", "--data", str(log), "--space",
                str(tmp_path / "space.toml"), "--trials", "3", "--no-progress"]  # fmt: skip
        ray = CliRunner().invoke(cli, [*args, "--backend", "ray", "--out", str(tmp_path / "r")])
        assert len(tries.read_text().splitlines()) == 1
        calls: list[tuple] = []

        def fails(*a: Any, **kw: Any) -> Any:
            calls.append(a)
            _every_trial_fails()

        monkeypatch.setattr(local, "run_trial", fails)
        opt = CliRunner().invoke(cli, [*args, "--backend", "optuna", "--out", str(tmp_path / "o")])
        assert len(calls) == 1
        assert ray.exit_code == opt.exit_code == 2
        assert (
            ray.output.splitlines()[-1] == opt.output.splitlines()[-1] == f"warmrec: error: {EVERY}"
        )
        assert not (tmp_path / "r" / "trials.csv").exists()
    finally:
        cluster.stop_ray(env)
