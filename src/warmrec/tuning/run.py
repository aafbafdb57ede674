"""``warmrec tune`` as a function: check the space, search (Optuna or Ray), then finish once.

:func:`run_tune` validates the space against the model's configs before any data is read, runs
the search with the chosen backend, and hands the trials to
:func:`warmrec.tuning.results.finish`, which evaluates the best configuration on the test part
-- once, after the search.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from warmrec.errors import ConfigError
from warmrec.tuning.space import load_space

BACKENDS = ("optuna", "ray")


def run_tune(
    cfg: dict[str, Any],
    *,
    model: str | None,
    space_path: str | Path,
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
    search's; ``[model]``/``[train]`` keys (``--set``) are fixed values over the space file's
    (a key the space searches is refused)."""
    from warmrec.experiments.spec import prepare_run, spec_from_config

    if backend not in BACKENDS:
        raise ConfigError(f"--backend: expected one of {', '.join(BACKENDS)}, found {backend!r}")
    if address and backend != "ray":
        raise ConfigError(
            f"--address {address} is for --backend ray; the optuna backend runs on this machine"
        )
    cfg = dict(cfg)
    given = dict(cfg.get("model", {}))
    name = model or given.pop("name", None)
    given.pop("name", None)
    space = load_space(space_path, name)
    space = with_fixed(space, {"model": given, "train": dict(cfg.get("train", {}))})
    space.check(space.model)
    if not (cfg.get("data") or {}).get("path"):
        raise ConfigError("no data path: give --data PATH or [data] path in the config")
    base = spec_from_config({k: cfg[k] for k in ("data", "split", "eval") if k in cfg})
    out = Path(out)
    exclude_seen = base.eval.exclude_seen
    t0 = time.perf_counter()
    prepared = prepare_run(base)
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
        )
    else:
        from warmrec.tuning.cluster import search_ray

        rows = search_ray(
            space.model,
            space,
            base.to_config(),
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


def with_fixed(space: Any, fixed: dict[str, dict[str, Any]]) -> Any:
    """``space`` with ``fixed`` (``--set model.KEY``/``train.KEY``) over its fixed values; a key
    that the space searches cannot also be fixed."""
    import dataclasses

    searched = set(space.names)
    new = {s: dict(v) for s, v in space.fixed.items()}
    for section, values in fixed.items():
        for key, v in values.items():
            if f"{section}.{key}" in searched:
                raise ConfigError(
                    f"--set {section}.{key}: the space {space.source} searches {section}.{key}; "
                    "fix it there (or drop --set)"
                )
            new.setdefault(section, {})[key] = v
    return dataclasses.replace(space, fixed=new)
