"""``warmrec train`` / ``evaluate`` / ``pretrain`` / ``transfer`` as functions of one run config.

Each builds a :class:`~warmrec.experiments.spec.RunSpec` (a TOML file, flags and ``--set``
overrides merged into one dict, see :func:`~warmrec.experiments.spec.spec_from_config`) and runs
it with :func:`~warmrec.experiments.spec.prepare_run`, :func:`~warmrec.experiments.spec.fit_run`
and :func:`~warmrec.experiments.spec.save_run`; they add only what a command prints.
``run_evaluate`` rebuilds the spec from the saved model (``meta.run``), so a model needs nothing
but its directory.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from warmrec.errors import ConfigError
from warmrec.experiments.spec import (
    RunSpec,
    _refuse_training_events,
    evaluate_run,
    fit_run,
    prepare_run,
    refuse_model_with_transfer,
    save_run,
    spec_from_config,
    spec_of_model,
)

DEFAULT_PRETRAIN_MODEL = "sasrec"


def _summary(spec: RunSpec, model: Any, prep: Any, out: str | Path) -> dict[str, Any]:
    run = model.meta.run
    return {
        "model": model.name,
        "out": str(out),
        "fit_s": run.fit_seconds,
        "valid": dict(run.valid),
        "choices": dict(run.choices),
        "loss": run.loss,
        "n_valid": run.n_valid,
        "split": prep.info["split"],
        "split_info": prep.info["split_info"],
        "refit": run.refit,
    }


def run_train(cfg: Mapping[str, Any] | RunSpec, out: str | Path) -> dict[str, Any]:
    """Read, split, fit (selecting on validation) and save; returns validation metrics + timings.

    The whole config is validated before any data is read."""
    spec = spec_from_config(cfg)
    refuse_model_with_transfer(spec, "train")
    if spec.model is None and spec.transfer is None:
        raise ConfigError("no model: give --model NAME or [model] name in the config")
    prep = prepare_run(spec)
    model = fit_run(spec, prep)
    save_run(model, out)
    return _summary(spec, model, prep, out)


def run_pretrain(cfg: Mapping[str, Any] | RunSpec, out: str | Path) -> dict[str, Any]:
    """Fit a neural model on a source log as a transfer source (``spec.pretrain``: it keeps the
    source's item counts and, where items have a ``title``, the titles) and save it."""
    if not isinstance(cfg, RunSpec):
        cfg = dict(cfg)
        cfg["model"] = {"name": DEFAULT_PRETRAIN_MODEL, **dict(cfg.get("model") or {})}
        cfg["pretrain"] = True
    spec = spec_from_config(cfg)
    prep = prepare_run(spec)
    model = fit_run(spec, prep)
    save_run(model, out)
    return {
        **_summary(spec, model, prep, out),
        "titles": len(model.meta.item_titles or []),
    }


def run_transfer(
    cfg: Mapping[str, Any] | RunSpec,
    out: str | Path,
    *,
    source: str | Path | None = None,
    strategy: str | None = None,
    init: str | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
    """Carry a pre-trained model (``[transfer] source``, a directory from :func:`run_pretrain`)
    to the ``[data]`` log with ``strategy`` and an item table started by ``init``, fine-tune it
    on the training part, and save it. Keyword arguments fill ``[transfer]``."""
    if not isinstance(cfg, RunSpec):
        cfg = dict(cfg)
        tr = cfg.get("transfer") or {}
        if not isinstance(tr, Mapping):
            raise ConfigError(
                f"transfer: expected a table of settings, found {type(tr).__name__} {tr!r}"
            )
        tr = dict(tr)
        # [strategy] and [init] tables (the options of each) are read as [transfer] keys
        for section, key in (("strategy", "strategy_options"), ("init", "init_options")):
            if isinstance(cfg.get(section), Mapping):
                own = tr.get(key) or {}
                if not isinstance(own, Mapping):
                    raise ConfigError(
                        f"transfer.{key}: expected a table (merged with [{section}]), found "
                        f"{type(own).__name__} {own!r}"
                    )
                tr[key] = {**own, **cfg.pop(section)}
        given = {"source": source, "strategy": strategy, "init": init, "seed": seed}
        tr.update({k: str(v) if k == "source" else v for k, v in given.items() if v is not None})
        if "source" not in tr:
            raise ConfigError("no source model: give --source DIR or [transfer] source")
        cfg["transfer"] = tr
    given = cfg.model is not None if isinstance(cfg, RunSpec) else bool(cfg.get("model"))
    if given:  # recorded, never applied: the source decides the model
        raise ConfigError(
            "[model] does not apply to a transfer run: the source decides the model; set the "
            "target's model settings with transfer.model_options.KEY=VALUE and its history "
            "length with transfer.max_len"
        )
    spec = spec_from_config(cfg)
    if spec.transfer is None:
        raise ConfigError("no source model: give --source DIR or [transfer] source")
    prep = prepare_run(spec)
    model = fit_run(spec, prep)
    save_run(model, out)
    return {
        **_summary(spec, model, prep, out),
        "strategy": spec.transfer.strategy,
        "init": model.meta.transfer.init,
        "n_trainable": model.meta.transfer.n_trainable,
        "n_shared_items": model.meta.transfer.n_shared_items,
        "match_items": model.meta.transfer.match_items,
    }


def run_evaluate(
    model_dir: str | Path,
    cfg: Mapping[str, Any] | None = None,
    part: str = "test",
    *,
    slices: bool = False,
) -> tuple[Any, dict[str, Any]]:
    """Evaluate a saved model on the ``part`` of the split it was trained with (the model's run
    record), or on ``cfg``'s ``[data]``/``[split]``/``[eval]`` where given. With ``slices``,
    ``info["slices"]`` holds the result of every cold-start slice
    (:func:`warmrec.evaluation.slices.cold_slices`, read from the same scoring)."""
    import time

    from warmrec.models.base import Recommender

    if part not in ("test", "valid"):
        raise ConfigError(f"--part must be test or valid, found {part!r}")
    model = Recommender.load(model_dir)
    refit = getattr(getattr(model.meta, "run", None), "refit", None)
    if refit:
        raise ConfigError(
            f"{model_dir}: the model was fitted again on the whole log ({refit.get('events', 0):,} "
            "events, --refit-all), its validation and test parts included: scored on them it "
            "would be scored on what it trained on; its validated run's figures are in its "
            "record (meta.run.valid), or evaluate the model saved without --refit-all"
        )
    spec = saved_spec(model, cfg, model_dir)
    prep = prepare_run(spec, vocab=model.vocab, user_vocab=model.user_vocab)
    es = prep.test if part == "test" else prep.valid
    dropped = int(getattr(es, "n_dropped", 0) or 0) if es is not None else 0
    if es is None or len(es) == 0:
        where = spec.data.path if spec.data is not None else model_dir
        why = f"; {dropped} on items the model does not know were left out" if dropped else ""
        raise ConfigError(
            f"{where}: no {part} examples to score (the {prep.info.get('split', spec.split.method)} split leaves the "
            f"{part} part empty{why})"
        )
    _refuse_training_events(model, spec, prep, part, model_dir)
    if slices:  # before scoring: the coldstart scenario has no parts to slice by
        from warmrec.evaluation.slices import cold_slices, split_result

        index = cold_slices(prep, part)
    t0 = time.perf_counter()
    res = evaluate_run(model, es, spec, prep)
    eval_s = time.perf_counter() - t0
    info = {
        "model": model.name,
        "part": part,
        "split": prep.info.get("split", spec.split.method),
        "exclude_seen": spec.eval.exclude_seen,
        "eval_s": eval_s,
        "n": res.n_examples,
        "n_dropped": dropped,
    }
    if slices:
        info["slices"] = split_result(res, index)
    return res, info


def _warn_if_changed(model: Any, where: str | Path) -> None:
    """Warn where the log a model records has changed on disk since it was trained."""
    import warnings

    from warmrec.errors import DataWarning
    from warmrec.io import fingerprint, same_log

    run = getattr(model.meta, "run", None)
    rec = getattr(run, "data", None)
    if rec is None or rec.fingerprint is None:
        return
    now = fingerprint(rec.path)
    if not same_log(rec.fingerprint, now):
        warnings.warn(
            f"{rec.path}: the log has changed since {where or 'the model'} was trained on it "
            "(its size or modification time differ): its split, and the parts scored, may "
            "differ from the run's",
            DataWarning,
            stacklevel=3,
        )


def saved_spec(model: Any, cfg: Mapping[str, Any] | None = None, where: str | Path = "") -> RunSpec:
    """The spec to read a saved model's data again: the model's run record, with ``cfg``'s
    ``[data]`` (a new path replaces the record's data), ``[split]`` and ``[eval]`` over it."""
    cfg = dict(cfg or {})
    extra = sorted(set(cfg) - {"data", "split", "eval"})
    if extra:
        raise ConfigError(
            f"only [data], [split] and [eval] apply to a saved model; found {', '.join(extra)} "
            "(the model directory holds the rest)"
        )
    spec = spec_of_model(model, where)
    if not (cfg.get("data") or {}).get("path"):
        _warn_if_changed(model, where)
    if spec.data is None and not (cfg.get("data") or {}).get("path"):
        raise ConfigError(
            f"{where or 'the model'}: the model does not record its data: give --data PATH"
        )
    base = spec.to_config()
    if (cfg.get("data") or {}).get("path"):
        base["data"] = dict(cfg["data"])
    elif cfg.get("data"):
        base["data"] = {**base.get("data", {}), **cfg["data"]}
    if cfg.get("split"):
        base["split"] = dict(cfg["split"])
    if cfg.get("eval"):
        base["eval"] = {**base.get("eval", {}), **cfg["eval"]}
    return spec_from_config(base)
