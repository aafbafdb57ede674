"""``warmrec tune`` as a function: check the space, search (Optuna or Ray), then finish once.

:func:`run_tune` validates the space against the model's configs before any data is read, runs
the search with the chosen backend, and hands the trials to
:func:`warmrec.tuning.results.finish`, which evaluates the best configuration on the test part
-- once, after the search.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from warmrec.errors import ConfigError
from warmrec.tuning.space import builtin_space_path, load_space
from warmrec.tuning.trial import eval_metrics

BACKENDS = ("optuna", "ray")


def run_tune(
    cfg: dict[str, Any],
    *,
    model: str | None,
    space_path: str | Path | None = None,
    trials: int,
    out: str | Path,
    backend: str = "optuna",
    address: str | None = None,
    timeout: float | None = None,
    n_jobs: int = 1,
    seed: int = 0,
    pruner: str = "median",
    progress: bool = False,
    cpus_per_trial: float = 1.0,
    gpus_per_trial: float = 0.0,
    max_failures: int = 2,
) -> dict[str, Any]:
    """Run a search. ``cfg`` is a run config: its ``[data]``, ``[split]`` and ``[eval]`` are the
    search's (a :class:`~warmrec.experiments.spec.RunSpec` without a model), and ``[model]`` /
    ``[train]`` values (``--set train.epochs=1``) replace the space file's fixed values in every
    trial (a searched parameter cannot be fixed this way).

    Checked before any data is read: the output folder (:func:`warmrec.io.check_output`), an
    earlier ``study.db`` there (:func:`~warmrec.tuning.local.check_study`), ``--address`` (Ray
    only; a cluster must answer there), the space, the overrides, the run sections, and that a
    search found in ``out`` ran with these settings (``study.json``; resuming adds trials to
    it). Without ``space_path`` the model's built-in space is searched
    (:func:`~warmrec.tuning.space.builtin_space_path`)."""
    from warmrec.experiments.spec import SECTIONS, prepare_run, spec_from_config
    from warmrec.io import check_output
    from warmrec.tuning.local import check_seed

    if backend not in BACKENDS:
        raise ConfigError(f"--backend: expected one of {', '.join(BACKENDS)}, found {backend!r}")
    check_seed(seed)
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise ConfigError(f"--timeout: expected seconds > 0, found {timeout}")
    if backend == "ray":
        for flag, v in (("--cpus-per-trial", cpus_per_trial), ("--gpus-per-trial", gpus_per_trial)):
            if not (math.isfinite(v) and v >= 0):
                raise ConfigError(f"{flag}: expected a number >= 0, found {v}")
        if cpus_per_trial == 0 and gpus_per_trial == 0:
            raise ConfigError(
                "--cpus-per-trial 0 with --gpus-per-trial 0: a trial must reserve a CPU or a GPU"
            )
        if isinstance(max_failures, bool) or not isinstance(max_failures, int) or max_failures < 0:
            # Ray Tune reads -1 as "retry for ever": a trial that crashes every time was tried
            # until --timeout (without one, never ended)
            raise ConfigError(f"--max-failures: expected an integer >= 0, found {max_failures}")
    check_output(out, kind="dir")
    if backend == "optuna":
        if address is not None:
            raise ConfigError(
                "--address: only with --backend ray (the optuna backend runs on this machine)"
            )
        from warmrec.tuning.local import check_study

        check_study(Path(out))
    unknown = sorted(set(cfg) - set(SECTIONS))
    if unknown:
        raise ConfigError(
            f"unknown config section(s) {', '.join(unknown)}; valid: {', '.join(sorted(SECTIONS))}"
        )
    name = model or cfg.get("model", {}).get("name")
    overrides = {
        s: {k: v for k, v in cfg.get(s, {}).items() if not (s == "model" and k == "name")}
        for s in ("model", "train")
    }
    if space_path is None:
        if name is None:
            raise ConfigError("no model: give --model (its built-in space is searched) or --space")
        space_path = builtin_space_path(name)
    space = load_space(space_path, name, overrides=overrides)
    if backend == "ray":
        from warmrec.tuning.cluster import check_address

        check_address(address)
    if not (cfg.get("data") or {}).get("path"):
        raise ConfigError("no data path: give --data PATH or [data] path in the config")
    metrics = (cfg.get("eval") or {}).get("metrics")
    if metrics is not None:  # replaced by the search metric's in every trial: say so
        import warnings

        from warmrec.errors import DataWarning

        warnings.warn(
            f"eval.metrics {list(metrics)} not used: tune scores every trial on the space's "
            f"[search] metric ({space.metric}) and reports "
            f"{', '.join(eval_metrics(space.metric))} (another metric: a --space file)",
            DataWarning,
            stacklevel=2,
        )
    if trials < 1:
        raise ConfigError(f"--trials: expected an integer >= 1, found {trials}")
    if n_jobs < 1:
        raise ConfigError(f"--n-jobs: expected an integer >= 1, found {n_jobs}")
    base = spec_from_config({k: cfg[k] for k in ("data", "split", "eval") if k in cfg})
    out = Path(out)
    if backend == "ray" and (out / "ray" / "search").exists():
        raise ConfigError(
            f"{out}: holds a Ray search, and a Ray search does not resume (it would start over "
            "and draw the same configurations again); give another --out, or the optuna "
            "backend, which resumes"
        )
    _check_folder(out, space, base, backend)  # before the data is read: refused at once
    exclude_seen = base.eval.exclude_seen
    t0 = time.perf_counter()
    prepared = prepare_run(base)  # before the folder's record: a log that fails leaves none
    _check_folder(out, space, base, backend, prepared)
    base = prepared.info["spec"]
    if backend == "optuna":
        from warmrec.tuning.local import search_local
        from warmrec.tuning.trial import SearchData

        rows = search_local(
            space.model,
            space,
            SearchData.from_prepared(prepared),
            out,
            trials=trials,
            timeout=timeout,
            n_jobs=n_jobs,
            seed=seed,
            pruner=pruner,
            exclude_seen=exclude_seen,
            progress=progress,
            base=base,
        )
    else:
        from warmrec.tuning.cluster import search_ray

        rows = search_ray(
            space.model,
            space,
            base.to_config(absolute=True),  # a Ray trial runs in its own folder
            out,
            trials=trials,
            timeout=timeout,
            address=address,
            max_concurrent=n_jobs,
            seed=seed,
            cpus_per_trial=cpus_per_trial,
            gpus_per_trial=gpus_per_trial,
            max_failures=max_failures,
            progress=progress,
        )
    from warmrec.tuning.results import finish

    return finish(
        rows=rows,
        model_name=space.model,
        space=space,
        base=base,
        prepared=prepared,
        out=out,
        backend=backend,
        wall_s=time.perf_counter() - t0,
    )


def _check_folder(out: Path, space: Any, base: Any, backend: str, prepared: Any = None) -> None:
    """Refuse an ``out`` holding a search over another model, space, data (its path, and the
    log's content: a file overwritten under the same name is other data), split, metric or
    under other trainer defaults: resuming adds trials to the search found there. Without
    ``prepared`` (the data not read yet) all but the content is compared, nothing written."""
    from warmrec.experiments.studies.stored import check_settings, prepared_fingerprint
    from warmrec.training.defaults import trainer_defaults_key

    settings = {
        "backend": backend,
        "model": space.model,
        **space.record(),
        "run": base.to_config(absolute=True),
        "trainer_defaults": trainer_defaults_key(),
    }
    if prepared is not None:
        settings["data_fingerprint"] = prepared_fingerprint(prepared)
    check_settings(
        out,
        settings,
        what="search",
        advice="use the same settings to resume it, or another --out",
        write=prepared is not None,
    )
