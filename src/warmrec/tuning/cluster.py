"""Search on a Ray cluster: Ray Tune with the same spaces (OptunaSearch + ASHA).

:func:`search_ray` connects to a cluster (``address="HOST:PORT"``) or starts Ray on this machine,
and runs :func:`~warmrec.tuning.trial.run_trial` as Ray Tune trials:

- the space's :meth:`~warmrec.tuning.space.SearchSpace.suggest` is the define-by-run function of
  ``OptunaSearch`` (TPE), so the local and the cluster backend sample the same space;
- each epoch's validation value is reported (``tune.report``) and ASHA stops weak trials at its
  rungs; the last report of a finished trial carries ``finished = True`` and every validation metric;
- every trial reserves ``cpus_per_trial`` CPUs (and ``gpus_per_trial`` GPUs) and reads and splits
  the data itself from the ``[data]``/``[split]`` record (a path every node can read): nothing
  big goes through the object store, and the test part is never built into a trial's view;
- which errors end a trial and which end the search is the local backend's rule: a
  :class:`~warmrec.errors.ModelError` out of :func:`~warmrec.tuning.trial.run_trial` (sampled
  values that do not go together) is that trial's own and a failed trial, its reason in the
  tables; any other of warmrec's own errors (:class:`~warmrec.errors.WarmrecError`: a
  ``ConfigError``, a ``DataError`` of the base config or the data, which every trial reads
  itself and would hit alike) ends the whole search, and :func:`search_ray` raises it, of the
  same class and with the same message, after the one trial that met it. Neither is retried: it
  would fail the same way on every try. Ray Tune (2.60) retries every exception and has no
  public way to mark one as not to be retried, so :func:`_trainable` catches them and sends a
  last report with the message (:data:`ERROR`; for an error that ends the search, its class
  in :data:`FATAL` too) and returns. :func:`_failure_aware` subclasses ``OptunaSearch`` (the
  trial fails in its Optuna study, as a failed local trial, instead of completing with no
  value) and ``ASHAScheduler`` (the report is no result for its rungs); :func:`_fatal_stopper`
  stops the run at a :data:`FATAL` report (no new trial starts, running ones are stopped), and
  :func:`search_ray` raises the error it names;
- a trial whose node or process dies, or that raises anything else (``OSError``, a CUDA
  out-of-memory ``RuntimeError``, ...), is retried from scratch up to ``max_failures`` times.

The result rows are the same :class:`~warmrec.tuning.results.TrialRow` as the local backend's.
Ray must be installed on every node (``pip install 'warmrec[ray]'``) with warmrec importable.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
from pathlib import Path
from typing import Any

from warmrec.errors import ConfigError, DataError, ModelError, WarmrecError
from warmrec.tuning.results import TrialRow
from warmrec.tuning.space import SearchSpace

METRIC = "value"
FINISHED = "finished"
"""True in a trial's last report once it ran to its end. Not Ray's own ``done``, which Ray also
sets on the last result of a trial its scheduler (ASHA) stopped: that one is pruned."""
ERROR = "error"
"""In the last report of a trial that one of warmrec's own errors ended, that error's message;
the report's :data:`METRIC` is NaN. Absent from every other report."""
FATAL = "fatal"
"""In the last report of a trial that a warmrec error other than a ``ModelError`` of
:func:`~warmrec.tuning.trial.run_trial` ended (one every trial would hit), that error's class
name; :data:`ERROR` is its message (``str``, as is). The search stops there and
:func:`search_ray` raises it (:func:`_fatal_error`)."""
ERRORS: dict[str, type[WarmrecError]] = {
    c.__name__: c for c in (WarmrecError, ConfigError, DataError, ModelError)
}
"""The classes a :data:`FATAL` report is raised as by name; any other name is raised as a
:class:`~warmrec.errors.WarmrecError`."""


def _trainable(config: dict[str, Any], *, model_name: str, space: SearchSpace, base: dict) -> None:
    """One Ray Tune trial: read the data here, fit, report per epoch, report the outcome. A
    :class:`~warmrec.errors.WarmrecError` ends it with a last report that carries its message
    (:data:`ERROR`), not with the exception, which Ray would retry ``max_failures`` times; one
    that is not a ``ModelError`` of :func:`~warmrec.tuning.trial.run_trial` (the trial's own
    values) names its class as well (:data:`FATAL`): it ends the search."""
    import time

    from ray import tune

    from warmrec.experiments.spec import prepare_run, spec_from_config
    from warmrec.tuning.trial import SearchData, run_trial

    t0 = time.perf_counter()

    def report(epoch: int, value: float) -> None:
        tune.report({METRIC: value, "epoch": epoch, FINISHED: False})

    def fail(e: WarmrecError, **fatal: str) -> None:
        tune.report(
            {
                METRIC: math.nan,  # Tune wants the metric in every report
                FINISHED: False,
                ERROR: str(e) if fatal else str(e).strip() or type(e).__name__,
                **fatal,
                "seconds": time.perf_counter() - t0,
            }
        )

    try:
        spec = spec_from_config(base)
        prepared = prepare_run(spec)
        data = SearchData.from_prepared(prepared)
        del prepared  # the trial keeps train and validation only
        ex = spec.eval.exclude_seen
        try:
            outcome, _ = run_trial(
                model_name, space, config, data, report, exclude_seen=ex, base=spec
            )
        except ModelError as e:  # the trial's own values: a failed trial (as the local one)
            fail(e)
            return
    except WarmrecError as e:  # the base config or the data: every trial would fail alike
        fail(e, **{FATAL: type(e).__name__})
        return
    tune.report(
        {
            METRIC: outcome.value,
            "epoch": outcome.epochs,
            FINISHED: True,
            "valid": outcome.valid,
            "seconds": time.perf_counter() - t0,
        }
    )


def _failed_report(result: dict[str, Any] | None) -> bool:
    """Whether ``result`` is the last report of a trial that a warmrec error ended."""
    return result is not None and ERROR in result


@functools.cache
def _failure_aware() -> tuple[type[Any], type[Any]]:
    """``(searcher, scheduler)`` classes: Ray Tune's ``OptunaSearch`` and ``ASHAScheduler`` for
    which a trial's :data:`ERROR` report ends it as failed. ``OptunaSearch`` would otherwise
    ``tell`` its study a complete trial of value NaN, which Optuna refuses (Ray logs a warning,
    and the trial stays running in that study, neither failed nor complete), and ASHA would
    file the NaN at a rung. Built on first use: Ray is an optional dependency."""
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    class WarmrecOptunaSearch(OptunaSearch):
        def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
            if not _failed_report(result):
                super().on_trial_result(trial_id, result)

        def on_trial_complete(
            self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
        ) -> None:
            if _failed_report(result):  # as a failed local trial: FAIL in the Optuna study
                result, error = None, True
            super().on_trial_complete(trial_id, result, error)

    class WarmrecASHAScheduler(ASHAScheduler):
        def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
            if _failed_report(result):  # the trial returns right after it: nothing to rank
                return self.CONTINUE
            return super().on_trial_result(tune_controller, trial, result)

        def on_trial_complete(
            self, tune_controller: Any, trial: Any, result: dict[str, Any]
        ) -> None:
            if _failed_report(result):
                self.on_trial_remove(tune_controller, trial)  # its bracket forgets it
            else:
                super().on_trial_complete(tune_controller, trial, result)

    return WarmrecOptunaSearch, WarmrecASHAScheduler


@functools.cache
def _fatal_stopper() -> type[Any]:
    """A Ray Tune ``Stopper`` class that ends the whole run at a :data:`FATAL` report: no new
    trial is started and the running ones are stopped (``stop_all``). Built on first use."""
    from ray.tune.stopper import Stopper

    class FatalErrorStopper(Stopper):
        def __init__(self) -> None:
            self.fatal = False

        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            if FATAL in result:
                self.fatal = True
                return True
            return False

        def stop_all(self) -> bool:
            return self.fatal

    return FatalErrorStopper


def _fatal_error(grid: Any) -> WarmrecError | None:
    """The error a trial's :data:`FATAL` report names (the first such trial's), rebuilt as its
    class (:data:`ERRORS`) with its message; ``None`` when no trial sent one."""
    for res in grid:
        m = res.metrics or {}
        if m.get(FATAL):
            return ERRORS.get(str(m[FATAL]), WarmrecError)(str(m.get(ERROR, "")))
    return None


PROBE_TIMEOUT_S = 5.0


def check_address(address: str | None, flag: str = "--address") -> None:
    """Fail fast, in one line, when no Ray cluster answers at ``address`` (``HOST:PORT`` or
    ``ray://HOST:PORT``): a TCP connection is tried for up to :data:`PROBE_TIMEOUT_S` seconds
    before ``ray.init``, which would otherwise retry for minutes. ``None``, ``"auto"`` and
    ``"local"`` are left to Ray."""
    import socket

    if address is None or address in ("auto", "local"):
        return
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{flag}: expected HOST:PORT of a Ray cluster, found {address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as e:
        if isinstance(e, TimeoutError):
            reason = f"no answer in {PROBE_TIMEOUT_S:.0f} s"
        else:
            reason = (e.strerror or str(e)).lower()
        raise ConfigError(
            f"{flag} {address}: no Ray cluster answers there ({reason}); start one with "
            f"`ray start --head --port {port}`, or leave {flag} out to run Ray on this machine"
        ) from None


def start_ray(
    address: str | None, *, log_to_driver: bool = False, **local: Any
) -> dict[str, str] | None:
    """Join the Ray cluster at ``address`` (probed first by :func:`check_address`) or start a
    fresh local instance with the ``local`` options (``num_cpus``, ...; never a cluster found on
    disk), unless this process already runs Ray. Returns the ``RAY_*`` environment variables as
    they were before, for :func:`stop_ray`, or ``None`` when Ray was already up (then it is not
    this call's to stop)."""
    import ray

    if ray.is_initialized():
        return None
    env = {k: v for k, v in os.environ.items() if k.startswith("RAY_")}
    try:
        if address and address != "local":
            check_address(address)
            try:
                ray.init(address=address, log_to_driver=log_to_driver)
            except ConnectionError as e:  # it answers on TCP but refuses us (authentication)
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                raise ConfigError(
                    f"--address {address}: the Ray cluster there refused the connection "
                    f"({first}); a cluster started with token authentication needs the same "
                    "RAY_AUTH_MODE and token on this machine"
                ) from None
        else:
            ray.init(address="local", include_dashboard=False, log_to_driver=log_to_driver, **local)
    except BaseException:
        _restore_ray_env(env)
        raise
    return env


def stop_ray(env: dict[str, str] | None) -> None:
    """Shut down the Ray that :func:`start_ray` started (``env`` is what it returned; ``None``:
    nothing to do) and put back the ``RAY_*`` environment variables ``ray.init`` changed: it
    leaves ``RAY_AUTH_MODE=token`` behind, and a later Ray Train run in the same process then had
    its controller cancelled."""
    if env is None:
        return
    import ray

    try:
        ray.shutdown()
    finally:
        _restore_ray_env(env)


def _restore_ray_env(env: dict[str, str]) -> None:
    for k in [k for k in os.environ if k.startswith("RAY_") and k not in env]:
        del os.environ[k]
    os.environ.update(env)


def search_ray(
    model_name: str,
    space: SearchSpace,
    base: dict[str, Any],
    out: str | Path,
    *,
    trials: int,
    timeout: float | None = None,
    address: str | None = None,
    max_concurrent: int = 1,
    seed: int = 0,
    cpus_per_trial: float = 1.0,
    gpus_per_trial: float = 0.0,
    max_failures: int = 2,
    grace_period: int = 1,
    reduction_factor: int = 2,
    progress: bool = False,
) -> list[TrialRow]:
    """Run the search with Ray Tune; returns every trial as a :class:`TrialRow`. A trial whose
    values fail (a ``ModelError`` of :func:`~warmrec.tuning.trial.run_trial`) is a failed row;
    any other :class:`~warmrec.errors.WarmrecError` in a trial stops the search and is raised
    here, its class and message as the trial met them, as :func:`~warmrec.tuning.local.search_local`
    lets it out of the study."""
    try:
        from ray import tune

        OptunaSearch, ASHAScheduler = _failure_aware()
    except ImportError as e:  # pragma: no cover - ray is in the `all` extra
        raise ConfigError("--backend ray needs Ray: pip install 'warmrec[ray]'") from e
    if trials < 1:
        raise ConfigError(f"--trials: expected an integer >= 1, found {trials}")
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    ray_env = start_ray(
        address, log_to_driver=progress, num_cpus=max(1, int(max_concurrent * cpus_per_trial))
    )
    try:
        searcher = OptunaSearch(space=space.suggest, metric=METRIC, mode="max", seed=seed)
        scheduler = ASHAScheduler(
            time_attr="training_iteration",
            max_t=100_000,
            grace_period=grace_period,
            reduction_factor=reduction_factor,
        )
        trainable = tune.with_parameters(
            _trainable, model_name=model_name, space=space, base=dict(base)
        )
        resources = {"cpu": cpus_per_trial, "gpu": gpus_per_trial}
        tuner = tune.Tuner(
            tune.with_resources(trainable, resources),
            tune_config=tune.TuneConfig(
                metric=METRIC,
                mode="max",
                search_alg=searcher,
                scheduler=scheduler,
                num_samples=trials,
                max_concurrent_trials=max_concurrent,
                time_budget_s=timeout,
            ),
            run_config=tune.RunConfig(
                name="search",
                storage_path=str(out / "ray"),
                failure_config=tune.FailureConfig(max_failures=max_failures),
                stop=_fatal_stopper()(),
                verbose=1 if progress else 0,
            ),
        )
        # Ctrl-C aborts the command: Ray Tune's own handler ended the run and returned the
        # partial results, which were then refitted and scored on test as a finished search
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        with contextlib.redirect_stdout(sys.stderr):  # Ray's status tables: keep --json clean
            grid = tuner.fit()
        fatal = _fatal_error(grid)
        if fatal is not None:  # the base config or the data: as the local backend, no rows
            raise fatal
        return _rows(grid)
    finally:
        stop_ray(ray_env)


def _rows(grid: Any) -> list[TrialRow]:
    """Ray Tune's results as the local backend's rows. A trial that a ``ModelError`` ended (its
    last report carries :data:`ERROR`) is ``failed``, with no score and that error's message,
    as a failed local trial; one whose exception outlived its retries is ``failed`` too."""
    failures: dict[str, int] = {}
    try:  # the number of failed tries lives on Ray's Trial objects
        for t in grid._experiment_analysis.trials:
            failures[t.trial_id] = int(getattr(t, "num_failures", 0))
    except AttributeError:  # pragma: no cover - private API moved
        pass
    rows = []
    for i, res in enumerate(grid):
        m = res.metrics or {}
        df = res.metrics_dataframe
        curve: list[float] = []
        if df is not None and METRIC in df.columns:
            keep = df[~df[FINISHED].fillna(False).astype(bool)] if FINISHED in df.columns else df
            if ERROR in keep.columns:  # the failure report is no epoch
                keep = keep[keep[ERROR].isna()]
            curve = [float(v) for v in keep[METRIC].tolist()]
        if m.get(FINISHED):
            state = "complete"
        elif ERROR in m or res.error is not None:
            state = "failed"
        else:
            state = "pruned"
        reason = str(m[ERROR]) if ERROR in m else str(res.error or "")
        error = reason.strip().splitlines()[-1] if reason.strip() else ""
        # as the local backend's rows: a pruned trial scores its best epoch before it was
        # stopped (not its last), a failed one has no score
        if state == "complete":
            value = float(m[METRIC]) if METRIC in m else None
        elif state == "pruned" and curve:
            value = max(curve)
        else:
            value = None
        params = {k: v for k, v in (res.config or {}).items()}
        trial_id = m.get("trial_id", "")
        # every failed try but the last was retried; a trial that ended in an error was not
        # retried after its last one
        retries = max(0, failures.get(trial_id, 0) - (res.error is not None))
        rows.append(
            TrialRow(
                number=i,
                state=state,
                params=params,
                value=value,
                valid=dict(m.get("valid") or {}),
                epochs=int(m.get("epoch", len(curve))),
                seconds=float(m.get("seconds", m.get("time_total_s", 0.0)) or 0.0),
                curve=curve,
                retries=retries,
                error=error,
            )
        )
    return rows
