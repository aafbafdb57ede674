"""Pre-train on a source log and transfer to a target log, from one config dict each.

The library side of ``warmrec pretrain`` and ``warmrec transfer`` (the CLI only parses options and
prints what these return). Config sections, as in :mod:`warmrec.experiments.run`::

    run_pretrain:  [data] [split] [model] [train]
    run_transfer:  [data] [split] [train] [strategy] [init] [transfer]

``[split] method`` defaults to ``"auto"`` (:func:`~warmrec.data.split.default_split`; a split
folder is used as given unless ``resplit = true``). Both save the model with ``meta.run`` =
:class:`~warmrec.artifacts.RunInfo` (data as read, split, fit_seconds, valid), so ``evaluate`` and
``recommend`` read it back like a ``train`` model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from warmrec.artifacts import DataSource, RunInfo
from warmrec.errors import ConfigError
from warmrec.experiments.pipeline import Prepared, evaluate_model, prepare, timed
from warmrec.experiments.run import data_record, read_data

PRETRAIN_SECTIONS = {"data", "split", "model", "train"}
TRANSFER_SECTIONS = {"data", "split", "train", "strategy", "init", "transfer"}
TRANSFER_KEYS = {"max_len", "position_init"}
DEFAULT_PRETRAIN_MODEL = "sasrec"


def check_sections(cfg: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise ConfigError(
            f"unknown config section(s) {', '.join(unknown)}; valid: {', '.join(sorted(allowed))}"
        )


def item_titles(item_features) -> dict[Any, str] | None:
    """``{raw id: title}`` when the item features have a ``title`` column, else None."""
    if item_features is None or "title" not in item_features.columns:
        return None
    from warmrec.transfer import titles_from_frame

    return titles_from_frame(item_features)


def _split_name(inter, split: str | None, resplit: bool = False) -> str | None:
    """The split method: None for a split folder used as given, else ``split`` or the default."""
    from warmrec.data.split import default_split

    if inter.parts is not None and not resplit and split in (None, "auto"):
        return None
    return default_split(inter.interactions) if split in (None, "auto") else split


def _read_and_prepare(cfg: dict[str, Any]) -> tuple[Any, Prepared, dict[str, Any], dict[str, Any]]:
    """Read ``[data]``, choose the split, prepare. Returns (interactions, prepared, data record,
    split record)."""
    record = data_record(cfg.get("data", {}))
    inter = read_data(record)
    sp = dict(cfg.get("split", {}))
    resplit = bool(sp.pop("resplit", False))
    method = _split_name(inter, sp.pop("method", None), resplit)
    prep = prepare(inter, split=method, split_options=sp, resplit=resplit)
    split = {"method": prep.info["split"], **sp, **({"resplit": True} if resplit else {})}
    return inter, prep, record, split


def run_pretrain(cfg: dict[str, Any], out: str | Path) -> dict[str, Any]:
    """Fit a neural model on a source log (selected on validation) and save it to ``out``.

    The model keeps the source's training item counts (``meta.item_counts``) and, when the
    data has an item ``title`` feature, the titles (``meta.item_titles``), for
    :func:`run_transfer`. Returns {model, out, fit_s, split, valid, n_valid, titles}."""
    from warmrec.transfer import pretrain

    check_sections(cfg, PRETRAIN_SECTIONS)
    inter, prep, record, split = _read_and_prepare(cfg)
    m = dict(cfg.get("model", {}))
    name = m.pop("name", None) or DEFAULT_PRETRAIN_MODEL
    model, fit_s = timed(pretrain, name, prep.train, prep.valid, m, cfg.get("train", {}))
    res = evaluate_model(model, prep.valid, prep)
    titles = item_titles(inter.item_features)
    if titles:
        model.meta.item_titles = [(k, v) for k, v in titles.items()]
    model.meta.run = RunInfo(
        data=DataSource(**record), split=split, fit_seconds=fit_s, valid=res.summary
    )
    model.save(out)
    return {
        "model": name,
        "out": str(out),
        "fit_s": fit_s,
        "split": split["method"],
        "valid": res.summary,
        "n_valid": res.n_examples,
        "titles": len(titles or {}),
    }


def run_transfer(
    cfg: dict[str, Any],
    out: str | Path,
    *,
    source: str | Path | Any,
    strategy: str = "finetune",
    init: str = "popularity",
    seed: int = 0,
) -> dict[str, Any]:
    """Turn a pre-trained model (a directory from :func:`run_pretrain`, or the model itself) into
    a model of the ``[data]`` log, fine-tune it on its training split with ``strategy`` and an
    item table started by ``init``, and save it to ``out``.

    ``[train]`` is the training loop, ``[strategy]`` the strategy's options, ``[init]`` the init's
    options, ``[transfer]`` max_len / position_init. Returns {model, out, strategy, init, fit_s,
    split, n_trainable, valid, n_valid}."""
    from warmrec.models.base import Recommender
    from warmrec.transfer import transfer

    check_sections(cfg, TRANSFER_SECTIONS)
    tr = dict(cfg.get("transfer", {}))
    bad = sorted(set(tr) - TRANSFER_KEYS)
    if bad:
        raise ConfigError(
            f"unknown [transfer] key(s): {', '.join(bad)}; valid: {', '.join(sorted(TRANSFER_KEYS))}"
        )
    if isinstance(source, str | Path):
        source_name = str(source)
        source = Recommender.load(source)
    else:
        source_name = source.name
    inter, prep, record, split = _read_and_prepare(cfg)
    src_titles = source.meta.item_titles
    model, fit_s = timed(
        transfer,
        source,
        prep.train,
        prep.valid,
        strategy=strategy,
        init=init,
        trainer=cfg.get("train", {}),
        strategy_options=cfg.get("strategy"),
        init_options=cfg.get("init"),
        source_titles=dict((k, v) for k, v in src_titles) if src_titles else None,
        target_titles=item_titles(inter.item_features),
        source_name=source_name,
        seed=seed,
        **tr,
    )
    res = evaluate_model(model, prep.valid, prep)
    model.meta.run = RunInfo(
        data=DataSource(**record), split=split, fit_seconds=fit_s, valid=res.summary
    )
    model.save(out)
    return {
        "model": model.name,
        "out": str(out),
        "strategy": strategy,
        "init": model.meta.transfer.init,
        "fit_s": fit_s,
        "split": split["method"],
        "n_trainable": model.meta.transfer.n_trainable,
        "valid": res.summary,
        "n_valid": res.n_examples,
    }
