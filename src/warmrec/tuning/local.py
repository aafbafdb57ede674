"""Search on one machine: Optuna (TPE), pruning on the per-epoch validation metric, SQLite storage.

:func:`search_local` runs trials of :func:`~warmrec.tuning.trial.run_trial` in an Optuna study
stored in ``OUT/study.db`` (SQLite). Each epoch's validation value is reported to the trial
(``trial.report``) through the training loop's callbacks (Item2Vec: its per-epoch hook); the
pruner (median by default) raises ``TrialPruned`` there, which ends the fit. ``n_jobs`` runs that
many trials at once in threads (the constant-liar TPE keeps them apart). Each trial's fit draws
from torch generators of its own (:mod:`warmrec.rng`: only the building of its net holds the
process-wide generator, under a lock), so a configuration scores the same alone or beside other
trials, whatever ``n_jobs`` is; which configurations TPE proposes with ``n_jobs > 1`` still
depends on which trials finished first. Trials in threads share the CPUs of one process: with
``n_jobs > 1`` the search measures the free CPUs once, at its start, and splits them among the
trials that run at once (:func:`~warmrec.training.threads.sharing`; ``min(n_jobs, trials
left)``), so every trial without ``[train] num_threads`` runs with, and records in its trainer
record, the same torch thread count, ``max(1, free CPUs // that)``, instead of each trial
taking every CPU free at its own start (N trials oversubscribed the machine). Another count than
a lone fit's may move a neural score in its last digits (float sums in another order). torch's
count is restored when the search ends: the refit of the best trial runs alone, under the
ordinary policy.

Resuming: running the same search into the same folder continues the study. ``trials`` is the
total number of finished trials wanted (complete + pruned + failed); trials left RUNNING by a
killed process are marked failed and their parameters queued again, so a ``kill -9`` costs at
most the trials that were running. A resumed search does not repeat the finished trials' draws:
the sampler is seeded with ``seed`` plus the number of trials already in the study (a fresh search
with ``seed`` is unchanged), so a 6-trial search killed after 3 tests 6 configurations, not the
first 3 twice. A ``study.db`` that is not a readable Optuna study (truncated, another file) is
refused in one line before any data is read (:func:`check_study`). The data is read and split
once per process; trials see only train and validation
(:class:`~warmrec.tuning.trial.SearchData`).

Errors, the same rule as the Ray backend's (:mod:`warmrec.tuning.cluster`): a
:class:`~warmrec.errors.ModelError` out of :func:`~warmrec.tuning.trial.run_trial` (sampled
values that do not go together) fails that trial only (``catch=(ModelError,)``), its reason in
the tables; any other of warmrec's own errors (a ``ConfigError``, a ``DataError``: the base
config or the data, the same for every trial) ends the search at once and reaches the caller as
it was raised, of its class and with its message (the CLI prints it in one line and exits 2).
Neither is tried again.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from contextlib import closing, nullcontext
from pathlib import Path
from typing import Any
from urllib.parse import quote

from warmrec.errors import ConfigError, ModelError
from warmrec.training.threads import sharing
from warmrec.tuning.results import TrialRow
from warmrec.tuning.space import SearchSpace
from warmrec.tuning.trial import SearchData, run_trial

STUDY_NAME = "warmrec"
FINISHED = ("COMPLETE", "PRUNED", "FAIL")
SEEDS = 2**32
"""Optuna's samplers take a seed in ``[0, SEEDS)`` (numpy's legacy seeding): ``--seed`` is
checked against it (:func:`check_seed`) and a seed derived from it is taken modulo it."""


def check_seed(seed: Any, flag: str = "--seed") -> int:
    """``seed`` as a sampler takes it: an integer in ``[0, 2**32)``. Another (``-1``) failed
    with numpy's ``ValueError`` traceback once the data had been read (``warmrec auto``: after
    its first round)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEEDS:
        raise ConfigError(f"{flag}: expected an integer in [0, {SEEDS - 1}], found {seed!r}")
    return seed


def make_pruner(name: str | Any = "median") -> Any:
    """``"median"`` (after 3 complete trials and 1 epoch), ``"none"``, or an Optuna pruner."""
    import optuna

    if not isinstance(name, str):
        return name
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"pruner: expected median or none, found {name!r}")


def check_study(out: Path) -> None:
    """Refuse an ``out/study.db`` that is not a sound Optuna study (:class:`ConfigError`, one
    line): not an SQLite file, damaged (``PRAGMA quick_check``: a truncated file), or an SQLite
    file of something else. A missing or empty file is fine (a new study)."""
    db = Path(out) / "study.db"
    if not db.exists():
        return
    if not db.is_file():
        raise ConfigError(f"{db}: expected an Optuna study file, found a folder")
    advice = "move it away, or choose another --out for a new search"
    try:
        uri = f"file:{quote(str(db.absolute()))}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True, timeout=60)) as con:
            check = [r[0] for r in con.execute("PRAGMA quick_check").fetchall()]
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
    except sqlite3.Error as e:
        raise ConfigError(f"{db}: not a readable Optuna study ({e}); {advice}") from None
    if check != ["ok"]:
        raise ConfigError(f"{db}: a damaged study ({check[0]}); {advice}")
    if tables and not {"studies", "trials"} <= tables:
        raise ConfigError(f"{db}: an SQLite file, but not an Optuna study; {advice}")


def open_study(out: Path, seed: int, pruner: Any = "median") -> Any:
    """The study in ``out/study.db`` (created, or loaded to resume); stale RUNNING trials of a
    killed search are marked failed and their parameters queued again. The sampler is seeded
    with ``seed`` plus the number of trials already stored, so a resumed search draws new
    configurations instead of repeating the first ones."""
    import optuna
    from optuna.trial import TrialState

    out.mkdir(parents=True, exist_ok=True)
    check_study(out)
    # a generous lock timeout: another process (a second search, a reader) may hold the file
    storage = optuna.storages.RDBStorage(
        f"sqlite:///{(out / 'study.db').resolve()}",
        engine_kwargs={"connect_args": {"timeout": 60}},
    )
    sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    study = optuna.create_study(
        study_name=STUDY_NAME,
        storage=storage,
        sampler=sampler,
        pruner=make_pruner(pruner),
        direction="maximize",
        load_if_exists=True,
    )
    n_before = len(study.get_trials(deepcopy=False))
    if n_before:  # resuming: continue with new draws (the same seed would repeat trials 0, 1, ...)
        sampler_seed = (seed + n_before) % SEEDS
        study.sampler = optuna.samplers.TPESampler(seed=sampler_seed, constant_liar=True)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        storage.set_trial_user_attr(t._trial_id, "interrupted", True)
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number}, skip_if_exists=False)
    return study


def rows_of(study: Any) -> list[TrialRow]:
    """The study's trials as backend-independent rows."""
    states = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running"}
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state.name not in states:
            continue
        ua = t.user_attrs
        curve = [float(t.intermediate_values[k]) for k in sorted(t.intermediate_values)]
        if t.state.name == "COMPLETE":
            value = t.value
        elif curve and t.state.name == "PRUNED":  # its best epoch before it was stopped
            value = max(curve)
        else:  # a failed or interrupted trial has no score
            value = None
        state = states[t.state.name]
        if state == "failed" and ua.get("interrupted"):
            state = "interrupted"
        reason = str(ua.get("error", "")) if state == "failed" else ""
        seconds = ua.get("seconds")
        if seconds is None and t.datetime_start and t.datetime_complete:
            seconds = (t.datetime_complete - t.datetime_start).total_seconds()
        rows.append(
            TrialRow(
                number=t.number,
                state=state,
                params=dict(t.params),
                value=value,
                valid=dict(ua.get("valid", {})),
                epochs=int(ua.get("epochs", len(curve))),
                seconds=float(seconds or 0.0),
                curve=curve,
                retries=1 if "retry_of" in ua else 0,
                error=reason.strip().splitlines()[-1] if reason.strip() else "",
            )
        )
    return rows


def search_local(
    model_name: str,
    space: SearchSpace,
    data: SearchData,
    out: str | Path,
    *,
    trials: int,
    timeout: float | None = None,
    n_jobs: int = 1,
    seed: int = 0,
    pruner: str | Any = "median",
    exclude_seen: bool = False,
    progress: bool = False,
    base: Any = None,
) -> list[TrialRow]:
    """Run (or resume) the search in ``out``; returns every trial as a :class:`TrialRow`.
    ``base``: the search's spec, whose ``[eval]`` (protocol) every trial is scored under, as
    the refit of the best one is. A ``ModelError`` of a trial is a failed row; any other
    :class:`~warmrec.errors.WarmrecError` a trial raises ends the search and is raised here."""
    import optuna

    if trials < 1:
        raise ConfigError(f"--trials: expected an integer >= 1, found {trials}")
    if n_jobs < 1:
        raise ConfigError(f"--n-jobs: expected an integer >= 1, found {n_jobs}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = Path(out)
    try:
        return _search(out, model_name, space, data, trials, timeout, n_jobs, seed, pruner,
                       exclude_seen, progress, base)  # fmt: skip
    except Exception as e:
        from sqlalchemy.exc import DatabaseError

        if isinstance(e, DatabaseError):  # damage found mid-search, a lock held for minutes
            raise ConfigError(f"{out / 'study.db'}: {getattr(e, 'orig', None) or e}") from None
        raise


def _search(
    out: Path,
    model_name: str,
    space: SearchSpace,
    data: SearchData,
    trials: int,
    timeout: float | None,
    n_jobs: int,
    seed: int,
    pruner: str | Any,
    exclude_seen: bool,
    progress: bool,
    base: Any = None,
) -> list[TrialRow]:
    import optuna

    study = open_study(out, seed, pruner)
    done = sum(
        t.state.name in FINISHED and not t.user_attrs.get("interrupted") for t in study.trials
    )
    remaining = trials - done
    t_start = time.perf_counter()

    def objective(trial: Any) -> float:
        values = space.suggest(trial)

        def report(epoch: int, value: float) -> None:
            trial.report(value, epoch)
            if trial.should_prune():
                trial.set_user_attr("epochs", epoch)
                raise optuna.TrialPruned(f"pruned at epoch {epoch}")

        t0 = time.perf_counter()
        try:
            outcome, _ = run_trial(
                model_name, space, values, data, report, exclude_seen=exclude_seen, base=base
            )
        except ModelError as e:  # a failed trial: its reason goes to the tables
            trial.set_user_attr("error", str(e))
            raise
        except KeyboardInterrupt:  # Ctrl-C: as a killed search, the trial runs again on resume
            trial.set_user_attr("interrupted", True)
            trial.study.enqueue_trial(
                trial.params, user_attrs={"retry_of": trial.number}, skip_if_exists=False
            )
            raise
        finally:
            trial.set_user_attr("seconds", time.perf_counter() - t0)
        trial.set_user_attr("valid", outcome.valid)
        trial.set_user_attr("epochs", outcome.epochs)
        return outcome.value

    def show(study: Any, trial: Any) -> None:
        if not progress:
            return
        n = sum(t.state.name in FINISHED for t in study.trials)
        try:
            best = f"{study.best_value:.4f}"
        except ValueError:
            best = "-"
        value = "-" if trial.value is None else f"{trial.value:.4f}"
        print(
            f"trial {trial.number} {trial.state.name.lower()}: {space.metric} {value} "
            f"(best {best}; {n} finished, {time.perf_counter() - t_start:.0f} s)",
            file=sys.stderr,
            flush=True,
        )

    if remaining > 0:
        concurrent = min(n_jobs, remaining)
        # trials in threads: one thread count for all, decided here (warmrec.training.threads)
        shared = sharing(concurrent) if concurrent > 1 else nullcontext()
        with shared:
            study.optimize(
                objective,
                n_trials=remaining,
                timeout=timeout,
                n_jobs=n_jobs,
                catch=(ModelError,),
                callbacks=[show],
                gc_after_trial=False,
            )
    return rows_of(study)
