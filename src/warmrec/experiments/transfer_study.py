"""Transfer study: how much does pre-training on a large source domain help a data-scarce target?

:func:`run_transfer_study` pre-trains one model on the source (cached in ``out_dir/source``),
splits the target once (valid and test are the full held-out sets, so every figure is measured
on the same examples), and for every fraction of the target's *training* sequences and every
seed (nested subsamples: for one seed, the 5 % sample is part of the 10 % sample) runs

- the ``baselines`` (e.g. ``pop``, ``sknn``) on the subsample,
- the model from scratch (``strategy="scratch"``: the same network, random init),
- every ``strategy x init`` of :func:`warmrec.transfer.transfer`,
- with ``"reptile"`` among the strategies, ``reptile x init``: the initialisation meta-trained
  on the source by :func:`warmrec.meta.reptile_pretrain` (users or sessions as tasks; one model
  per seed, cached in ``out_dir/reptile/s<seed>``), then fine-tuned on the target subsample
  (``strategy="finetune"``) with each item-table init,

each selected on validation and evaluated on test by full-catalogue ranking. Each finished run
is written atomically as one JSON file in ``out_dir/runs/`` (key: fraction, seed, method), so an
interrupted study resumes without redoing finished runs. The aggregate is the mean and 95 % CI
over seeds (:func:`~warmrec.evaluation.stats.seed_summary`) and a paired test against scratch on
per-user NDCG@10 (each test user's mean over its examples: users, not examples, are
resampled), each test user's mean over the seeds
(:func:`~warmrec.evaluation.stats.mean_over_seeds`, :func:`~warmrec.evaluation.stats.paired_test`), written as
a table (CSV + Markdown), plots (metric against the fraction of target data, one line per method)
and a Markdown + HTML report.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, Field
from tqdm.auto import tqdm

from warmrec.config import ConfigModel, build_config, config_dict
from warmrec.data.prepared import Prepared
from warmrec.data.split import default_split
from warmrec.errors import ConfigError
from warmrec.evaluation.evaluate import EvalResult
from warmrec.evaluation.stats import (
    mean_over_seeds,
    metric_bounds,
    paired_test,
    per_user_values,
    seed_summary,
)
from warmrec.experiments.spec import evaluate_model, fit_model, prepare_run, spec_from_config
from warmrec.experiments.studies.stored import data_fingerprint
from warmrec.io import atomic_write_text
from warmrec.registry import get_model
from warmrec.training.defaults import trainer_defaults_key
from warmrec.training.loop import prints_lines, shows_bar
from warmrec.transfer.embeddings import InitMethod
from warmrec.transfer.strategies import StrategyName
from warmrec.transfer.transfer import TRANSFER_TRAINER

STUDY_METRICS = ("hr@10", "ndcg@10", "mrr@10")
TEST_METRIC = "ndcg@10"
REPTILE = "reptile"  # the study's Reptile method: meta-trained source, then "finetune"
SPLITS = ("auto", "loo", "last_session", "user")
LONG_HISTORY = 20  # median events per user from which "auto" uses leave-one-out


StudySplit = Literal["auto", "loo", "last_session", "user"]
StudyMethod = Literal[StrategyName, "reptile"]


class StudySettings(ConfigModel):
    """The scalar settings of :func:`run_transfer_study`, validated before any work is done."""

    model: str = "sasrec"
    """The registered model pre-trained on the source and transferred."""
    strategies: tuple[StudyMethod, ...] = ("scratch", "finetune", "freeze_embeddings")
    """Transfer strategies compared (``"scratch"`` always runs; ``"reptile"`` meta-trains)."""
    inits: tuple[InitMethod, ...] = ("popularity",)
    """Item-table initialisations of the target's new items."""
    fractions: Annotated[tuple[Annotated[float, Field(gt=0, le=1)], ...], Field(min_length=1)] = (
        0.05,
        0.1,
        0.25,
        0.5,
        1.0,
    )
    """Shares of the target's training sequences (target fraction, 0 < fraction <= 1)."""
    seeds: Annotated[tuple[int, ...], Field(min_length=1)] = (0, 1, 2)
    """One run per seed (nested subsamples per seed)."""
    split: StudySplit = "auto"
    """The target's split (``"auto"``: see :func:`choose_split`)."""
    source_split: StudySplit = "auto"
    """The source's split."""
    metrics: tuple[str, ...] = STUDY_METRICS
    """Test metrics reported."""
    baselines: tuple[str, ...] = ("pop", "sknn")
    """Models fitted on each target subsample for reference."""
    n_boot: int = Field(5000, ge=1)
    """Bootstrap resamples of the confidence intervals."""


@dataclass
class StudyResult:
    """What a study produced.

    ``runs``: one row per run (``fraction, seed, method, kind, strategy, init``, the metrics,
    ``fit_s``, ``n_train_sequences``); ``summary``: one row per (fraction, method) with, for
    each metric, the mean over seeds and its CI (``<metric>``, ``<metric>_lo``, ``<metric>_hi``),
    ``n_seeds``, and against scratch on per-user NDCG@10 over the seeds both ran (paired by
    seed; each user's mean over those seeds): ``ratio`` (mean / scratch's mean, both over the
    paired seeds), ``diff``, ``diff_lo``, ``diff_hi``, ``p_value``; ``table``: the display table;
    ``computed``: the runs computed by this call (the rest were read from ``out_dir/runs``).
    """

    runs: pl.DataFrame
    summary: pl.DataFrame
    table: pl.DataFrame
    out_dir: Path
    paths: dict[str, Path] = field(default_factory=dict)
    computed: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def ratio(self, method: str, fraction: float) -> float:
        """``method``'s mean NDCG@10 over scratch's at ``fraction`` (over the seeds both ran)."""
        row = self.summary.filter(
            (pl.col("method") == method) & ((pl.col("fraction") - fraction).abs() < 1e-12)
        )
        if row.height == 0:
            raise ConfigError(f"no result for method {method!r} at fraction {fraction}")
        return float(row["ratio"][0])

    def best_transfer(self, fraction: float) -> tuple[str, float]:
        """The transfer method with the highest mean NDCG@10 at ``fraction``, and its ratio."""
        rows = self.summary.filter(
            (pl.col("kind") == "transfer") & ((pl.col("fraction") - fraction).abs() < 1e-12)
        ).sort(TEST_METRIC, descending=True)
        if rows.height == 0:
            raise ConfigError(f"no transfer result at fraction {fraction}")
        return str(rows["method"][0]), float(rows["ratio"][0])


# -- pieces ----------------------------------------------------------------------------------------
def choose_split(frame: pl.DataFrame, split: str = "auto", long_history: int = LONG_HISTORY) -> str:
    """``"auto"``: :func:`warmrec.data.split.default_split` (the one default policy); other
    names pass through."""
    if split not in SPLITS:
        raise ConfigError(f"study split {split!r}: expected one of {', '.join(SPLITS)}")
    if split != "auto":
        return split
    return default_split(frame, long_history=long_history)


def subsample_keys(train: pl.DataFrame, fraction: float, seed: int) -> pl.Series:
    """The sequence keys (sessions, else users) :func:`subsample_train` keeps, sorted."""
    return _scarcity(fraction, seed).keys(train)


def subsample_train(prep: Prepared, fraction: float, seed: int) -> Prepared:
    """``prep`` with its training sequences (sessions, else users) subsampled to ``fraction``
    (the :class:`~warmrec.experiments.scenarios.DataScarcity` scenario): seeded and nested,
    valid, test and the vocabularies unchanged."""
    return _scarcity(fraction, seed).apply(prep)


def _scarcity(fraction: float, seed: int) -> Any:
    from warmrec.experiments.scenarios import DataScarcity

    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"target fraction: expected 0 < fraction <= 1, found {fraction}")
    return DataScarcity(fraction=fraction, seed=seed)


def method_name(strategy: str, init: str) -> str:
    """``"scratch"`` or ``"<strategy>+<init>"``."""
    return "scratch" if strategy == "scratch" else f"{strategy}+{init}"


def run_key(fraction: float, seed: int, method: str) -> str:
    """File stem of a run: ``f0.05_s1_finetune+popularity``."""
    return f"f{fraction:g}_s{seed}_{method}"


def _describe(v: Any) -> Any:
    """A JSON-stable description of an option (callables by qualified name)."""
    if callable(v):
        return f"<{getattr(v, '__module__', '')}.{getattr(v, '__qualname__', type(v).__name__)}>"
    if isinstance(v, BaseModel):
        return config_dict(v)
    try:
        json.dumps(v)
        return v
    except (TypeError, ValueError):
        return repr(v)


def _titles_digest(*tables: Mapping[Any, str] | None) -> str | None:
    """A short hash of the item titles given (None where none is)."""
    if all(t is None for t in tables):
        return None
    import hashlib

    h = hashlib.sha256()
    for t in tables:
        h.update(json.dumps(sorted((str(k), str(v)) for k, v in (t or {}).items())).encode())
    return h.hexdigest()[:16]


def _run_record(
    fraction: float,
    seed: int,
    method: str,
    kind: str,
    strategy: str | None,
    init: str | None,
    res: EvalResult,
    fit_s: float,
    prep: Prepared,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "fraction": fraction,
        "seed": seed,
        "method": method,
        "kind": kind,
        "strategy": strategy,
        "init": init,
        "metrics": {k: float(v) for k, v in res.summary.items()},
        "per_example": {k: np.asarray(v, dtype=float).tolist() for k, v in res.per_example.items()},
        # each test user's mean over its examples: the unit the paired test resamples
        "per_user": {k: per_user_values(prep.test, v).tolist() for k, v in res.per_example.items()},
        "n_test": res.n_examples,
        "fit_s": fit_s,
        "n_train_sequences": len(prep.train.sequences),
        **(extra or {}),
    }


# -- the study -------------------------------------------------------------------------------------
def run_transfer_study(
    source_frame: pl.DataFrame,
    target_frame: pl.DataFrame,
    *,
    model: str = "sasrec",
    strategies: Sequence[str] = ("scratch", "finetune", "freeze_embeddings"),
    inits: Sequence[str] = ("popularity",),
    fractions: Sequence[float] = (0.05, 0.1, 0.25, 0.5, 1.0),
    seeds: Sequence[int] = (0, 1, 2),
    model_config: Mapping[str, Any] | None = None,
    trainer: Mapping[str, Any] | None = None,
    source_trainer: Mapping[str, Any] | None = None,
    baselines: Sequence[str] = ("pop", "sknn"),
    out_dir: str | Path = "warmrec-out/transfer-study",
    resume: bool = True,
    source_titles: Mapping[Any, str] | None = None,
    target_titles: Mapping[Any, str] | None = None,
    split: str = "auto",
    source_split: str = "auto",
    metrics: Sequence[str] = STUDY_METRICS,
    strategy_options: Mapping[str, Any] | None = None,
    init_options: Mapping[str, Any] | None = None,
    reptile_config: Mapping[str, Any] | None = None,
    n_boot: int = 5000,
    progress: bool | None = True,
) -> StudyResult:
    """Run (or resume) a transfer study; see the module docstring.

    ``trainer`` are :class:`~warmrec.training.loop.TrainerConfig` fields for the target runs
    (``seed`` is set per run), ``source_trainer`` those of pre-training (default ``trainer``).
    ``"scratch"`` in ``strategies`` is the from-scratch baseline (it ignores ``inits``); it is
    always run, since every other method is compared against it. ``"reptile"`` (also in
    ``strategies``) meta-trains the source model with :func:`warmrec.meta.reptile_pretrain`
    (``reptile_config``: :class:`~warmrec.meta.ReptileConfig` fields; its ``seed`` is the
    study's seed) once per seed, then fine-tunes it on the target as ``"finetune"`` does.
    ``split`` / ``source_split``: ``"auto"`` (:func:`choose_split`), ``"loo"``,
    ``"last_session"`` or ``"user"``. With ``resume=False`` earlier runs and the cached source
    (and Reptile) models are discarded.
    An ``out_dir`` holding a study with other settings raises :class:`ConfigError`.
    """
    from warmrec import meta
    from warmrec.models.base import Recommender
    from warmrec.transfer import pretrain, transfer

    out = Path(out_dir)
    study = build_config(
        StudySettings,
        model=model,
        strategies=tuple(strategies),
        inits=tuple(inits),
        fractions=tuple(fractions),
        seeds=tuple(seeds),
        split=split,
        source_split=source_split,
        metrics=tuple(metrics),
        baselines=tuple(baselines),
        n_boot=n_boot,
    )
    from warmrec.registry import available_models

    known = set(available_models())
    for name in (study.model, *study.baselines):
        if name.lower() not in known:
            what = "model" if name == study.model else "baseline"
            raise ConfigError(
                f"{what} {name!r}: no such model (before any run: known models: "
                f"{', '.join(sorted(known))})"
            )
    fractions = list(study.fractions)
    seeds = list(study.seeds)
    strategies = study.strategies
    inits = study.inits
    strategies = ["scratch", *[s for s in dict.fromkeys(strategies) if s != "scratch"]]
    inits = list(dict.fromkeys(inits)) or ["random"]
    from warmrec.transfer.transfer import INIT_OPTIONS

    read = {k for i in inits for k in INIT_OPTIONS.get(i, ())}
    unused = sorted(set(init_options or {}) - read)
    if unused:
        raise ConfigError(
            f"init_options: {', '.join(unused)} read by none of the inits {', '.join(inits)}"
        )
    trainer = dict(trainer or {})
    if "seed" in trainer:
        raise ConfigError(
            f"train.seed ({trainer['seed']!r}): set by the study, one run per seed: give the "
            "seeds as --seeds (study.seeds); the source's own is source_train.seed"
        )
    source_trainer = dict(source_trainer if source_trainer is not None else trainer)
    from warmrec.training.loop import TrainerConfig

    for settings in (trainer, source_trainer):  # checked before any work is done
        build_config(TrainerConfig, settings)
    model_config = dict(model_config or {})
    t_split = choose_split(target_frame, split)
    s_split = choose_split(source_frame, source_split)
    reptile_config = dict(reptile_config or {})
    if "seed" in reptile_config:
        raise ConfigError("reptile_config: 'seed' is set by the study (one Reptile model per seed)")
    r_settings = config_dict(build_config(meta.ReptileConfig, reptile_config))
    del r_settings["seed"]

    settings = {
        "model": model,
        "model_config": model_config,
        "trainer": trainer,
        "target_trainer": TRANSFER_TRAINER,  # run files of the older resolution are refused
        "trainer_defaults": trainer_defaults_key(),  # and those made under other defaults
        "source_trainer": source_trainer,
        "split": t_split,
        "source_split": s_split,
        "metrics": list(metrics),
        "strategy_options": dict(strategy_options or {}),
        "init_options": {k: _describe(v) for k, v in (init_options or {}).items()},
        "source_data": data_fingerprint(source_frame),
        "target_data": data_fingerprint(target_frame),
        # init = "text" reads them: other titles are other runs
        "titles": _titles_digest(source_titles, target_titles),
    }
    if REPTILE in strategies:
        settings[REPTILE] = r_settings
    runs_dir, src_dir, settings_path = out / "runs", out / "source", out / "study.json"
    reptile_dir = out / REPTILE
    if not resume:
        for p in (runs_dir, src_dir, reptile_dir):
            if p.exists():
                shutil.rmtree(p)
        settings_path.unlink(missing_ok=True)
    if settings_path.exists():
        old = json.loads(settings_path.read_text())
        if REPTILE in old:  # Reptile ran here: its settings stay recorded while its runs exist
            settings.setdefault(REPTILE, old[REPTILE])
        new = json.loads(json.dumps(settings, default=str))
        if REPTILE not in old:  # adding Reptile to a study that never ran it is fine
            new.pop(REPTILE, None)
        if old != new:
            diff = sorted(k for k in {*old, *new} if old.get(k) != new.get(k))
            raise ConfigError(
                f"{out}: holds a study with other settings ({', '.join(diff)}); "
                "use another output folder or resume=False"
            )
    atomic_write_text(settings_path, json.dumps(settings, indent=2, default=str))

    # the target split (once) and the runs to do
    target = prepare_run(spec_from_config({"split": {"method": t_split}}), data=target_frame)
    plan: list[tuple[float, int, str, str, str | None, str | None]] = []
    for f in fractions:
        for s in seeds:
            plan += [(f, s, b, "baseline", None, None) for b in baselines]
            for strat in strategies:
                for init in ["random"] if strat == "scratch" else inits:
                    kind = "scratch" if strat == "scratch" else "transfer"
                    plan.append((f, s, method_name(strat, init), kind, strat, init))
    done = {p.stem for p in runs_dir.glob("*.json")} if runs_dir.exists() else set()
    todo = [p for p in plan if run_key(p[0], p[1], p[2]) not in done]

    source_model = None
    pretrain_s = 0.0
    src_prep: list[Prepared] = []  # the source split, made at most once

    def source_prep() -> Prepared:
        if not src_prep:
            src_prep.append(
                prepare_run(spec_from_config({"split": {"method": s_split}}), data=source_frame)
            )
        return src_prep[0]

    reptile_models: dict[int, Any] = {}
    lines = prints_lines(progress)

    def say(text: str) -> None:
        """A plain progress line on stderr where no bar can show (a log file, CI)."""
        if lines:
            print(f"transfer study: {text}", file=sys.stderr, flush=True)

    def reptile_model(seed: int):
        """The Reptile-trained source model of ``seed``, from its cache or trained and saved."""
        if seed not in reptile_models:
            path = reptile_dir / f"s{seed}"
            if (path / "config.json").exists():
                reptile_models[seed] = Recommender.load(path)
            else:
                src = source_prep()
                t0 = time.perf_counter()
                m = meta.reptile_pretrain(
                    get_model(model, model_config),
                    src.train,
                    src.valid,
                    {**reptile_config, "seed": seed},
                )
                m.meta.pretrain_seconds = time.perf_counter() - t0
                m.save(path)
                reptile_models[seed] = m
        return reptile_models[seed]

    if any(p[3] in ("scratch", "transfer") and p[4] != REPTILE for p in todo):
        if (src_dir / "config.json").exists():
            source_model = Recommender.load(src_dir)
        else:
            src = source_prep()
            t0 = time.perf_counter()
            say(f"pre-training the source ({model}) on {len(src.train.sequences):,} sequences")
            source_model = pretrain(model, src.train, src.valid, model_config, source_trainer)
            pretrain_s = time.perf_counter() - t0
            source_model.meta.pretrain_seconds = pretrain_s
            source_model.save(src_dir)

    computed: list[str] = []
    bar = tqdm(
        total=len(plan),
        initial=len(plan) - len(todo),
        desc="transfer study",
        disable=not shows_bar(progress),
    )
    try:
        for f, s, method, kind, strat, init in todo:
            bar.set_postfix_str(f"{method} f={f:g} seed={s}")
            prep = subsample_train(target, f, s)
            extra: dict[str, Any] = {}
            base, strat_used = source_model, strat
            if strat == REPTILE:  # meta-trained (or loaded) outside the run's fit time
                base, strat_used = reptile_model(s), "finetune"
                extra["pretraining"] = REPTILE
                extra["reptile_pretrain_s"] = base.meta.pretrain_seconds
            t0 = time.perf_counter()
            if kind == "baseline":
                fitted = fit_model(method, prep)
            else:
                fitted = transfer(
                    base,
                    prep.train,
                    prep.valid,
                    strategy=strat_used,
                    init=init,
                    trainer={**trainer, "seed": s},
                    strategy_options=strategy_options,
                    init_options=_options_of(init, init_options),
                    source_titles=source_titles,
                    target_titles=target_titles,
                    source_name=f"{REPTILE}/s{s}" if strat == REPTILE else "source",
                    seed=s,
                )
                tr = getattr(fitted, "train_result", None)
                extra["best_epoch"] = getattr(tr, "best_epoch", None)
                extra["n_trainable"] = fitted.meta.transfer.n_trainable
            fit_s = time.perf_counter() - t0
            res = evaluate_model(fitted, prep.test, prep, metrics=tuple(metrics))
            rec = _run_record(f, s, method, kind, strat, init, res, fit_s, prep, extra)
            key = run_key(f, s, method)
            atomic_write_text(runs_dir / f"{key}.json", json.dumps(rec, default=float))
            computed.append(key)
            bar.update(1)
            score = rec["metrics"].get(TEST_METRIC)
            say(
                f"run {len(plan) - len(todo) + len(computed)}/{len(plan)}: {method} f={f:g} "
                f"seed={s}, {fit_s:.1f} s"
                + (f", test {TEST_METRIC} {score:.4f}" if score is not None else "")
            )
    finally:
        bar.close()

    records = [
        json.loads((runs_dir / f"{run_key(p[0], p[1], p[2])}.json").read_text()) for p in plan
    ]
    runs = runs_frame(records, metrics)
    summary = summarize_study(records, metrics, n_boot=n_boot)
    info = {
        "model": model,
        "split": t_split,
        "source_split": s_split,
        "target_train_sequences": len(target.train.sequences),
        "target_items": target.vocab.n_ids,
        "test_examples": len(target.test),
        "valid_examples": len(target.valid),
        "fractions": fractions,
        "seeds": seeds,
        "protocol": "full-catalogue ranking, seen items not excluded",
    }
    if source_model is not None:
        info["source_items"] = source_model.vocab.n_ids
    if REPTILE in strategies:
        info["reptile"] = settings[REPTILE]
    result = StudyResult(runs, summary, display_table(summary, metrics), out, {}, computed, info)
    result.paths = write_outputs(result, metrics)
    return result


# -- aggregation and outputs -----------------------------------------------------------------------
def runs_frame(records: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> pl.DataFrame:
    """One row per run record."""
    rows = []
    for r in records:
        row = {k: r.get(k) for k in ("fraction", "seed", "method", "kind", "strategy", "init")}
        row.update({m: r["metrics"].get(m) for m in metrics})
        row.update(fit_s=r["fit_s"], n_train_sequences=r["n_train_sequences"])
        rows.append(row)
    return pl.DataFrame(rows, infer_schema_length=None)


def summarize_study(
    records: Sequence[Mapping[str, Any]],
    metrics: Sequence[str],
    *,
    test_metric: str = TEST_METRIC,
    n_boot: int = 5000,
) -> pl.DataFrame:
    """Mean and CI over seeds per (fraction, method); the ratio to scratch and the paired test
    against it on the seeds both ran (paired by seed)."""
    groups: dict[tuple[float, str], list[Mapping[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["fraction"], r["method"]), []).append(r)
    rows = []
    for (f, method), rs in groups.items():
        rs = sorted(rs, key=lambda r: r["seed"])
        row: dict[str, Any] = {
            "fraction": f,
            "method": method,
            "kind": rs[0]["kind"],
            "n_seeds": len(rs),
        }
        for m in metrics:
            s = seed_summary([r["metrics"][m] for r in rs], bounds=metric_bounds(m))
            row.update({m: s.mean, f"{m}_lo": s.lo, f"{m}_hi": s.hi})
        row["fit_s"] = float(np.mean([r["fit_s"] for r in rs]))
        base = {r["seed"]: r for r in groups.get((f, "scratch"), [])}
        row.update(ratio=None, diff=None, diff_lo=None, diff_hi=None, p_value=None)
        paired = [r for r in rs if r["seed"] in base]
        if paired:
            # paired by seed, as the test below: both means over the seeds both arms ran (all
            # of each arm's seeds compared other seed sets where one arm missed a seed)
            a_mean = float(np.mean([r["metrics"][test_metric] for r in paired]))
            b_mean = float(np.mean([base[r["seed"]]["metrics"][test_metric] for r in paired]))
            row["ratio"] = a_mean / b_mean if b_mean > 0 else float("nan")
        runs = paired + [base[r["seed"]] for r in paired]
        unit = "per_user" if all("per_user" in r for r in runs) else "per_example"
        if method != "scratch" and paired and test_metric in paired[0][unit]:
            # the same test users in every run: one value per user (the mean of its examples;
            # per example in run files of an older warmrec), its seeds' mean
            a = mean_over_seeds([r[unit][test_metric] for r in paired])
            b = mean_over_seeds([base[r["seed"]][unit][test_metric] for r in paired])
            t = paired_test(a, b, n_boot=n_boot, seed=0)
            row.update(diff=t.mean_diff, diff_lo=t.ci[0], diff_hi=t.ci[1], p_value=t.p_value)
        rows.append(row)
    df = pl.DataFrame(rows, infer_schema_length=None)
    return df.with_columns(
        [pl.col(c).cast(pl.Float64) for c in ("ratio", "diff", "diff_lo", "diff_hi", "p_value")]
    ).sort(["fraction", test_metric], descending=[False, True])


def display_table(summary: pl.DataFrame, metrics: Sequence[str]) -> pl.DataFrame:
    """The summary with ``mean [lo, hi]`` text columns, for Markdown and the terminal."""
    from warmrec.reports.tables import with_ci

    df = summary
    for m in metrics:
        df = with_ci(df, m, f"{m}_lo", f"{m}_hi", name=f"{m} [95% CI]")
    cols = ["fraction", "method", "n_seeds", *[f"{m} [95% CI]" for m in metrics]]
    return df.select(*cols, "ratio", "diff", "p_value", "fit_s")


def write_outputs(result: StudyResult, metrics: Sequence[str]) -> dict[str, Path]:
    """Table (CSV + Markdown), one plot per metric and the Markdown + HTML report."""
    from warmrec.reports.plots import line_plot
    from warmrec.reports.report import Heading, Image, Lines, Table, Text, write_report
    from warmrec.reports.tables import write_csv, write_markdown

    out = result.out_dir
    paths = {
        "runs_csv": write_csv(result.runs, out / "runs.csv"),
        "summary_csv": write_csv(result.summary, out / "summary.csv"),
        "table_md": write_markdown(result.table, out / "results.md", title="Transfer study"),
    }
    images = []
    for m in metrics:
        p = line_plot(
            result.summary,
            "fraction",
            m,
            "method",
            out / f"{m.replace('@', '_at_')}_vs_fraction.png",
            f"{m} vs target data (mean, 95% CI over seeds)",
            lo=f"{m}_lo",
            hi=f"{m}_hi",
            xlabel="fraction of target training sequences",
            ylabel=m,
            logx=True,
        )
        paths[f"plot_{m}"] = p
        images.append(Image(p, alt=f"{m} vs fraction", caption=f"{m} vs fraction"))
    blocks = [
        Heading("Setting"),
        Lines([f"{k}: {v}" for k, v in result.info.items()]),
        Heading("Results"),
        Text(
            "Mean over seeds with the 95 % t-interval; ratio = NDCG@10 / scratch's NDCG@10, "
            "both means over the seeds both ran (paired by seed); diff and p_value: paired "
            "bootstrap test against scratch on per-user NDCG@10 (each test user's mean over its "
            "examples), each user's mean over the same paired seeds (the users are resampled: "
            "a user's examples are not independent)."
        ),
        Table(result.table),
        Heading("Plots"),
        *images,
    ]
    for suffix in ("md", "html"):
        paths[f"report_{suffix}"] = write_report(out / f"report.{suffix}", "Transfer study", blocks)
    return paths


def _options_of(init: str, options: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The study's ``init_options`` that ``init`` reads (one set is given for every init of
    the grid: ``text_encoder`` goes to ``text`` only)."""
    from warmrec.transfer.transfer import INIT_OPTIONS

    if not options:
        return None
    return {k: v for k, v in options.items() if k in INIT_OPTIONS.get(init, ())} or None
