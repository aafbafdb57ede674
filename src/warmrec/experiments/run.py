"""Experiment runs from one config dict (a TOML file plus overrides): train, evaluate.

Config sections::

    [data]   path, format, columns = {canonical = "file column"}, no_timestamp, order, time_unit
    [split]  method = "loo" | "temporal" | "last_session" | "user", plus that split's options;
             a folder of train/valid/test files is used as given unless resplit = true
    [model]  name, plus the model's own config keys
    [train]  training-loop settings of neural models (epochs, lr, patience, ...)
    [eval]   metrics = [...], protocol = "full", exclude_seen = false
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from warmrec.artifacts import DataSource, RunInfo
from warmrec.data.split import require_split_time
from warmrec.errors import ConfigError
from warmrec.evaluation.evaluate import DEFAULT_METRICS, EvalResult
from warmrec.experiments.pipeline import Prepared, evaluate_model, fit_model, prepare, timed

SECTIONS = {"data", "split", "model", "train", "eval"}
DATA_KEYS = ("path", "format", "columns", "no_timestamp", "order", "time_unit")
"""The keys of ``model.meta.run.data`` (:class:`~warmrec.artifacts.DataSource`): how the training
data was read (``sep`` and ``time_unit`` are kept only when given)."""


def data_record(d: Mapping[str, Any]) -> dict[str, Any]:
    """How a log was read, as saved in ``model.meta.run.data``: the path made absolute (so
    ``evaluate`` works from any directory), the format, the column mapping, ``no_timestamp`` and
    ``order``. Raises :class:`ConfigError` on an unknown ``[data]`` key or a missing path."""
    d = dict(d)
    if "path" not in d or d["path"] in (None, ""):
        raise ConfigError("no data path: give --data PATH or [data] path in the config")
    unknown = sorted(set(d) - {*DATA_KEYS, "sep"})
    if unknown:
        raise ConfigError(
            f"unknown [data] key(s): {', '.join(unknown)}; valid: {', '.join(DATA_KEYS)}, sep"
        )
    path = d.pop("path")
    d["no_timestamp"] = bool(d.get("no_timestamp") or False)
    return DataSource.of(path, **d).model_dump()


def read_data(record: Mapping[str, Any]):
    """Read the log a :func:`data_record` describes -> :class:`~warmrec.data.readers.Interactions`."""
    from warmrec.data.readers import load_interactions

    rec = data_record(record)
    return load_interactions(
        rec["path"],
        format=rec["format"],
        columns=rec["columns"],
        no_timestamp=rec["no_timestamp"],
        order=rec["order"],
        sep=rec.get("sep"),
        time_unit=rec.get("time_unit"),
    )


def check_sections(cfg: dict[str, Any]) -> None:
    unknown = sorted(set(cfg) - SECTIONS)
    if unknown:
        raise ConfigError(
            f"unknown config section(s) {', '.join(unknown)}; valid: {', '.join(sorted(SECTIONS))}"
        )


def data_source(data: Mapping[str, Any]) -> DataSource | None:
    """The ``[data]`` section as a :class:`~warmrec.artifacts.DataSource` (absolute path)."""
    if not data or "path" not in data:
        return None
    return DataSource(**data_record(data))


def prepare_from_config(cfg: dict[str, Any], vocab=None, user_vocab=None) -> Prepared:
    check_sections(cfg)
    inter = read_data(cfg.get("data", {}))
    sp = dict(cfg.get("split", {}))
    method = sp.pop("method", None)
    resplit = bool(sp.pop("resplit", False))
    if method is None and (inter.parts is None or resplit):
        method = "loo"  # train's default; a split folder is used as given
    require_split_time(inter.interactions, method, sp, inter.time_unit)
    return prepare(
        inter, split=method, split_options=sp, resplit=resplit, vocab=vocab, user_vocab=user_vocab
    )


def eval_options(cfg: dict[str, Any]) -> dict[str, Any]:
    e = dict(cfg.get("eval", {}))
    out = {
        "metrics": tuple(e.pop("metrics", DEFAULT_METRICS)),
        "protocol": e.pop("protocol", "full"),
        "exclude_seen": bool(e.pop("exclude_seen", False)),
    }
    if e:
        raise ConfigError(
            f"unknown [eval] key(s): {', '.join(sorted(e))}; valid: exclude_seen, metrics, protocol"
        )
    return out


def _trained_loss(model: Any) -> str | None:
    """The loss a neural model trained with (``"auto"`` resolved), None for other models."""
    result = getattr(model, "train_result", None)
    return result.extra.get("loss") if result is not None else None


def run_train(cfg: dict[str, Any], out: str | Path) -> dict[str, Any]:
    """Read, split, fit (selecting on validation) and save; returns validation metrics + timings.

    The model and trainer settings are validated before any data is read."""
    check_sections(cfg)
    m = dict(cfg.get("model", {}))
    name = m.pop("name", None)
    if not name:
        raise ConfigError("no model: give --model NAME or [model] name in the config")
    from warmrec.schema import check_configs

    check_configs(name, m, cfg.get("train", {}))
    ev = eval_options(cfg)
    prep = prepare_from_config(cfg)
    model, fit_s = timed(fit_model, name, prep, m, cfg.get("train", {}))
    res, eval_s = timed(evaluate_model, model, prep.valid, prep, **ev)
    model.meta.run = RunInfo(
        data=data_source(cfg.get("data", {})),
        split=cfg.get("split", {}),
        fit_seconds=fit_s,
        valid=res.summary,
        loss=_trained_loss(model),
    )
    model.save(out)
    return {
        "model": name,
        "out": str(out),
        "fit_s": fit_s,
        "valid_eval_s": eval_s,
        "valid": res.summary,
        "loss": _trained_loss(model),
        "n_valid": res.n_examples,
        "split": prep.info["split"],
        "split_info": prep.info["split_info"],
    }


def run_evaluate(
    model_dir: str | Path, cfg: dict[str, Any], part: str = "test"
) -> tuple[EvalResult, dict[str, Any]]:
    """Evaluate a saved model on the ``part`` of a dataset split the same way as in training."""
    from warmrec.models.base import Recommender

    model = Recommender.load(model_dir)
    run = model.meta.run or RunInfo()
    cfg = dict(cfg)
    if "data" not in cfg or "path" not in cfg.get("data", {}):
        if run.data is None:
            raise ConfigError(f"{model_dir}: the model does not record its data: give --data PATH")
        cfg["data"] = run.data.read_options()
    cfg.setdefault("split", dict(run.split))
    prep = prepare_from_config(cfg, vocab=model.vocab, user_vocab=model.user_vocab)
    if part not in ("test", "valid"):
        raise ConfigError(f"--part must be test or valid, found {part!r}")
    es = prep.test if part == "test" else prep.valid
    res, eval_s = timed(evaluate_model, model, es, prep, **eval_options(cfg))
    return res, {"model": model.name, "part": part, "eval_s": eval_s, "n": res.n_examples}
