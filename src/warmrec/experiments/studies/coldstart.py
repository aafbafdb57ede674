"""The user cold-start study: reveal k events of a new user, adapt, rank the next.

The split and the examples are the :class:`~warmrec.experiments.scenarios.ColdStartUsers`
scenario (meta-train / meta-valid / meta-test users, disjoint; ``k`` revealed events per held-out
user; users are cold, items are warm, ranking over the full catalogue, contract 4). The
meta-learning algorithms live in :mod:`warmrec.meta`; this module only runs them over the
scenario and tabulates the results.

For a meta-valid or meta-test user and ``k`` in ``shots``, :func:`shot_eval_set` makes one
example: history = the user's first ``k`` events, target = event ``k + 1``. Adaptation sees the
history only (:meth:`~warmrec.meta.maml.MetaModel.score` gets a Batch of histories), so it never
sees the query item. With ``k = 1`` a next-item objective has no (input, target) pair: no
method adapts there, so per-user fine-tuning equals the global model, and a meta-method scores
with its meta-learned starting weights (not the global model's).

Methods (:data:`METHODS`): ``pop``, ``sknn`` (fit on meta-train users), ``global`` (the
pre-trained model, selected on meta-valid users, no adaptation), ``finetune`` (per-user
fine-tuning of the global model: ``inner_steps`` SGD steps), ``reptile``, ``maml``, ``fomaml``,
``mamlpp``, ``mamlpp_loss`` (MAML++ with the learned adaptive loss). The inner learning rate is
searched on meta-valid users for ``finetune`` (``lr_grid``) and the meta-methods are meta-trained
at the learning rate chosen there (MAML++ then learns its own rates): the same steps and the
same search for all; nothing is chosen on meta-test users. GRU4Rec is trained with
``training="windows"`` unless the model config says otherwise (a task's inner loss must not carry
a session-parallel hidden state over from other users).

Why ``finetune`` can equal ``global`` to four decimals (checked, not a bug): an inner step is
plain SGD on the gradient clipped to global norm ``inner_grad_clip`` (1.0), and the inner
gradients of a pre-trained model are larger than that (median norm 2.7-5.4 for k = 10..3 on
ml-100k, SASRec d=32; 1.6-2.7 on the planted test log), so clipping is always active and each
step moves the weights by exactly ``inner_lr`` in L2 norm over *all* parameters: 0.006 after 3
steps at the grid's smallest rate, 0.002, against a weight norm of 19.5. When meta-valid users
prefer that rate -- ml-100k does: adaptation at 0.05 is 5-7 % worse than none -- per-user
fine-tuning *is*, by selection, the global model (the chosen rate is in each run's record,
``inner_lr``). At ``k = 1`` per-user fine-tuning is the global model by construction (no
training pair); a meta-method is its meta-learned weights. On the planted 60-user log with the tiny SASRec of
``tests/experiments/studies``: at ``lr_grid = [0.002]`` finetune and global agree to 4 decimals
at k = 1, 3, 10 (k = 5: 0.2706 vs 0.2456 NDCG@10, one tie broken); at 0.01 they differ at every
k >= 3.

:func:`run_coldstart_study` runs every (seed, method), writes each finished run atomically to
``out/runs/<seed>-<method>.json`` (resume: finished runs are read back, not redone), the global
model per seed to ``out/models/global-s<seed>`` (a normal model directory) and then the table
(mean over seeds with 95 % t-interval -- ``-`` with one seed, where the spread is unknown --
NDCG@10 ratio to ``finetune`` and a paired bootstrap test against ``finetune`` on per-user
NDCG@10: each user's mean over the seeds where every seed scored the same users, as
``order = "time"`` does, else the seeds' users pooled; the summary's ``paired_users`` and the
report say which), the plot (metric vs shots) and a Markdown + HTML report.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import Field

from warmrec.config import build_config, config_dict
from warmrec.data.dataset import EvalSet, SequenceDataset
from warmrec.data.vocab import ItemVocab
from warmrec.errors import ConfigError, DataError
from warmrec.evaluation.evaluate import evaluate
from warmrec.evaluation.stats import mean_over_seeds, metric_bounds, paired_test, seed_summary
from warmrec.experiments.scenarios import ColdStartUsers, UserSplit, shot_eval_set
from warmrec.io import atomic_write_text

METHODS = (
    "pop",
    "sknn",
    "global",
    "finetune",
    "reptile",
    "maml",
    "fomaml",
    "mamlpp",
    "mamlpp_loss",
)
META_METHODS = {
    "reptile": {"algorithm": "reptile"},
    "maml": {"algorithm": "maml"},
    "fomaml": {"algorithm": "fomaml"},
    "mamlpp": {"algorithm": "mamlpp"},
    "mamlpp_loss": {"algorithm": "mamlpp", "adaptive_loss": True},
}
METRICS = ("hr@10", "ndcg@10", "mrr@10")
MELO_METHODS = ("global", "finetune", "reptile", "maml", "fomaml", "mamlpp", "mamlpp_loss")
"""Methods of the ``melo`` protocol (Pop and SKNN rank items; they predict no rating)."""
MELO_METRICS = ("rmse", "mae")
BASELINE = "finetune"


class ColdStartSettings(ColdStartUsers):
    """Settings of the cold-start study: the :class:`ColdStartUsers` scenario's fields (shots,
    order, shares and caps of meta-valid / meta-test users) plus the study's own (unknown keys
    are rejected)."""

    lr_grid: tuple[float, ...] = (0.002, 0.01, 0.05, 0.2)
    """Inner learning rates searched on meta-valid users (per-user fine-tuning). Measured
    (``benchmarks/results/coldstart.md``, session 6): ml-100k picks 0.002-0.005, where per-user
    fine-tuning equals the global model and the meta-methods do best; at 0.05 fine-tuning is
    5-7 % worse than no adaptation. Wiki1000 (users repeat pages) picks 0.05-0.2."""
    pretrain: dict[str, Any] = Field(default_factory=dict)
    """Trainer settings of the global model (fit on meta-train users, validated on meta-valid)."""
    meta: dict[str, Any] = Field(default_factory=dict)
    """:class:`~warmrec.meta.maml.MetaConfig` settings shared by the meta-methods."""
    protocol: Literal["ranking", "melo"] = "ranking"
    """``ranking``: next item over the full catalogue (HR, NDCG, MRR @10); ``melo``: MELO's
    rating regression (:mod:`warmrec.meta.rating`: MSE on rating / the top of its scale, RMSE
    and MAE in the scale's units)."""
    melo_min_user: int = Field(5, ge=1)
    """``melo``: users need at least this many ratings (after the item filter)."""
    melo_min_item: int = Field(50, ge=1)
    """``melo``: items need at least this many ratings."""
    melo_test_users: int = Field(1000, ge=1)
    """``melo``: random meta-test users (capped so that half the users stay meta-train)."""
    melo_max_len: int = Field(30, ge=2)
    """``melo``: each user's sequence is cut to its first this many ratings."""
    rating_trainer: dict[str, Any] = Field(default_factory=dict)
    """``melo``: trainer settings of the global rating model (backbone + head)."""
    melo_rating_scale: tuple[float, float] | None = None
    """``melo``: ``(low, high)`` of the rating scale; ratings are divided by ``high`` (MELO's
    ``rating / 5``) and errors reported in its units. None: read from the data
    (:func:`~warmrec.meta.rating.rating_scale`: 1-5 stars, 1-10 on MARS)."""


def selection_shot(shots: Sequence[int]) -> int:
    """The number of revealed events at which meta-valid users select a meta-method's
    meta-epochs: the largest shot <= 5 (the goal is pooled over k <= 5), else the smallest."""
    small = [k for k in shots if k <= 5]
    return max(small) if small else min(shots)


def user_sequences(frame: pl.DataFrame, vocab: ItemVocab | None = None) -> SequenceDataset:
    """One time-ordered sequence per user over the catalogue of every item in ``frame`` (or over
    ``vocab``, a saved model's)."""
    if "user_id" not in frame.columns:
        raise DataError(
            "the cold-start study needs users",
            field="user_id",
            expected="a user_id column",
            found=", ".join(frame.columns),
        )
    cols = ["user_id", "item_id"] + (["timestamp"] if "timestamp" in frame.columns else [])
    df = frame.select(cols)
    if "timestamp" in cols:
        df = df.sort(["user_id", "timestamp"], maintain_order=True)
    return SequenceDataset.from_frame(df, vocab or ItemVocab.from_ids(df["item_id"]))


def split_users(data: SequenceDataset, settings: ColdStartUsers, seed: int) -> UserSplit:
    """User-disjoint meta-train / meta-valid / meta-test (:meth:`ColdStartUsers.split`)."""
    return scenario(settings).split(data, seed)


def check_meta(settings: ColdStartSettings, methods: Sequence[str], melo: bool = False) -> None:
    """Refuse, before anything is trained, an ``lr_grid`` or a ``[meta]`` section that a chosen
    method's :class:`~warmrec.meta.maml.MetaConfig` refuses (a key misspelt, ``meta_epochs``
    within MAML++'s first-order epochs for ``mamlpp_loss``): it was found when that method's
    turn came, after the global model, the learning-rate search and the methods before it.
    ``melo``: the rating protocol, whose ``global`` is a meta-model too (no inner step)."""
    from warmrec.meta.maml import MetaConfig

    adapting = {m: META_METHODS.get(m, {"algorithm": "finetune"}) for m in methods
                if m in META_METHODS or m == "finetune"}  # fmt: skip
    if adapting:  # they adapt at a rate of the grid (searched with finetune)
        bad = [x for x in settings.lr_grid if not x > 0]
        if not settings.lr_grid or bad:
            raise ConfigError(
                "coldstart lr_grid: expected inner learning rates > 0, found "
                f"{list(settings.lr_grid)}"
            )
        adapting = {"finetune": {"algorithm": "finetune"}, **adapting}
    checks = {m: {**a, "inner_lr": settings.lr_grid[0]} for m, a in adapting.items()}
    if melo and "global" in methods:  # a meta-model without inner steps
        checks["global"] = {"algorithm": "finetune", "inner_steps": 0}
    for method, fixed in checks.items():
        try:
            build_config(MetaConfig, {**settings.meta, "seed": 0, **fixed})
        except ConfigError as e:
            raise ConfigError(f"[meta] for method {method}: {e}") from None


def scenario(settings: ColdStartUsers) -> ColdStartUsers:
    """The :class:`ColdStartUsers` part of the study's settings."""
    return ColdStartUsers(**{k: getattr(settings, k) for k in ColdStartUsers.model_fields})


def _eval(model: Any, sets: Mapping[int, EvalSet]) -> dict[int, Any]:
    return {k: evaluate(model, es, METRICS, batch_size=256) for k, es in sets.items()}


def _mean_ndcg(results: Mapping[int, Any]) -> float:
    return float(np.mean([r.summary["ndcg@10"] for r in results.values()]))


def run_method(
    method: str,
    split: UserSplit,
    global_model: Any,
    settings: ColdStartSettings,
    seed: int,
    chosen_lr: float | None = None,
) -> dict[str, Any]:
    """One method at one seed: per-shot metrics and per-user NDCG@10 on meta-test users."""
    from warmrec.meta.maml import MetaModel, meta_train
    from warmrec.registry import get_model

    if method not in METHODS:
        raise ConfigError(f"cold-start method {method!r}: expected one of {', '.join(METHODS)}")
    train = split.subset(split.train)
    t0 = time.perf_counter()
    info: dict[str, Any] = {}
    test_sets = {k: shot_eval_set(split.data, split.test, k) for k in settings.shots}
    meta_cfg = {**settings.meta, "seed": seed}
    if method in ("pop", "sknn"):
        model = get_model(method).fit(train)
    elif method == "global":
        model = global_model
    elif method == "finetune":
        model = MetaModel(
            global_model, {**meta_cfg, "algorithm": "finetune", "inner_lr": chosen_lr}
        )
        info["inner_lr"] = chosen_lr
    else:
        cfg = {**meta_cfg, **META_METHODS[method], "inner_lr": chosen_lr}
        # meta-epochs chosen on meta-valid users (the loop keeps the best epoch there)
        valid = shot_eval_set(split.data, split.valid, selection_shot(settings.shots))
        model = meta_train(global_model, train, cfg, valid=valid)
        info["inner_lr"] = chosen_lr
        if model.train_result is not None:
            info["meta_seconds_per_epoch"] = model.train_result.seconds_per_epoch
            info["meta_best_epoch"] = model.train_result.best_epoch
    fit_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    res = _eval(model, test_sets)
    return {
        "seed": seed,
        "method": method,
        "fit_s": fit_s,
        "eval_s": time.perf_counter() - t1,
        "metrics": {str(k): r.summary for k, r in res.items()},
        "per_user": {str(k): r.per_example["ndcg@10"].tolist() for k, r in res.items()},
        "user_keys": {str(k): _keys_digest(test_sets[k]) for k in res},
        **info,
    }


def choose_lr(split: UserSplit, global_model: Any, settings: ColdStartSettings, seed: int) -> float:
    """The per-user fine-tuning learning rate with the best mean NDCG@10 over the shots on
    meta-valid users."""
    from warmrec.meta.maml import MetaModel

    sets = {k: shot_eval_set(split.data, split.valid, k) for k in settings.shots if k > 1}
    best, best_lr = -1.0, settings.lr_grid[0]
    for lr in settings.lr_grid:
        m = MetaModel(
            global_model, {**settings.meta, "seed": seed, "algorithm": "finetune", "inner_lr": lr}
        )
        v = _mean_ndcg(_eval(m, sets))
        if v > best:
            best, best_lr = v, lr
    return best_lr


def pretrain_global(
    model_name: str,
    model_config: Mapping[str, Any] | None,
    split: UserSplit,
    settings: ColdStartSettings,
    seed: int,
    cache: Path | None = None,
    data: Mapping[str, Any] | None = None,
) -> Any:
    """The global model: fit on meta-train users, early-stopped on meta-valid users at the
    largest shot (:func:`~warmrec.experiments.spec.fit_run` of a run on the ``coldstart``
    split, so the model records it; ``data``: the ``[data]`` section the log was read with, so
    ``warmrec evaluate`` scores it on its meta-test users from its directory alone); cached as
    a model directory."""
    from types import SimpleNamespace

    from warmrec.artifacts import load_model
    from warmrec.experiments.spec import fit_run, spec_from_config

    if cache is not None and (cache / "config.json").is_file():
        return load_model(cache)
    config = dict(model_config or {})
    if model_name == "gru4rec":
        # tasks need a per-task loss: session-parallel batches carry a hidden state across
        # batches (and users); windows are also GRU4Rec's best form on ml-100k user histories
        config.setdefault("training", "windows")
    run = {
        "model": {"name": model_name, **config},
        "train": {"seed": seed, "progress": False, **settings.pretrain},
        "split": {
            "method": "coldstart",
            "scenario": scenario(settings).model_dump(mode="json"),
            "seed": seed,
            "shot": max(settings.shots),
        },
        "eval": {"metrics": list(METRICS)},
    }
    if data:
        run["data"] = dict(data)
    valid = shot_eval_set(split.data, split.valid, max(settings.shots))
    train = split.subset(split.train)
    model = fit_run(spec_from_config(run), SimpleNamespace(train=train, valid=valid, info={}))
    model.meta.item_counts = train.item_counts().astype(np.int64).tolist()
    if cache is not None:
        model.save(cache)
    return model


@dataclass
class ColdStartResult:
    summary: pl.DataFrame
    table: pl.DataFrame
    records: list[dict[str, Any]]
    computed: list[str]
    paths: dict[str, Path]


def summarize(
    records: Sequence[Mapping[str, Any]],
    shots: Sequence[int],
    metrics: Sequence[str] = METRICS,
    higher_better: bool = True,
) -> pl.DataFrame:
    """Per (shots, method): mean and 95 % CI over seeds, ratio and paired test vs finetune.

    Ranking: ratio = NDCG@10 / finetune's, paired test on per-user NDCG@10. Rating
    (``higher_better=False``, metrics RMSE, MAE): ratio = RMSE / finetune's, paired test on
    per-user mean squared error (a negative diff is better). ``paired_users`` says how the
    seeds' users were paired (:func:`_paired_users`): ``mean over seeds``, ``pooled over
    seeds`` or ``one seed``."""
    rows = []
    by: dict[str, dict[int, Mapping[str, Any]]] = {}
    for r in records:
        by.setdefault(r["method"], {})[r["seed"]] = r
    base = by.get(BASELINE, {})
    for method, runs in by.items():
        for k in shots:
            key = str(k)
            row: dict[str, Any] = {"shots": k, "method": method, "n_seeds": len(runs)}
            for m in metrics:
                s = seed_summary(
                    [runs[s]["metrics"][key][m] for s in sorted(runs)], bounds=metric_bounds(m)
                )
                row.update({m: s.mean, f"{m}_lo": s.lo, f"{m}_hi": s.hi})
            row.update(
                ratio=None, diff=None, diff_lo=None, diff_hi=None, p_value=None, paired_users=None
            )
            paired = [s for s in sorted(runs) if s in base]
            if paired:
                a, b, row["paired_users"] = _paired_users(runs, base, paired, key)
                bm = float(b.mean())
                row["ratio"] = float(a.mean()) / bm if bm > 0 else None
                if not higher_better:
                    first = metrics[0]
                    bm = float(np.mean([base[s]["metrics"][key][first] for s in paired]))
                    am = float(np.mean([runs[s]["metrics"][key][first] for s in paired]))
                    row["ratio"] = am / bm if bm > 0 else None
                if method != BASELINE:
                    t = paired_test(a, b, n_boot=5000, seed=0)
                    row.update(
                        diff=t.mean_diff, diff_lo=t.ci[0], diff_hi=t.ci[1], p_value=t.p_value
                    )
            rows.append(row)
    df = pl.DataFrame(rows, infer_schema_length=None)
    cols = ("ratio", "diff", "diff_lo", "diff_hi", "p_value")
    df = df.with_columns(pl.col("paired_users").cast(pl.String))
    primary = "ndcg@10" if higher_better else metrics[0]
    return df.with_columns([pl.col(c).cast(pl.Float64) for c in cols]).sort(
        ["shots", primary], descending=[False, higher_better]
    )


def _keys_digest(eval_set: Any) -> str:
    """Which users an evaluation scored, in order (a digest of its sequence keys)."""
    import hashlib

    return hashlib.sha256("\x1f".join(map(str, eval_set.keys.to_list())).encode()).hexdigest()[:16]


def _paired_users(
    runs: Mapping[int, Mapping[str, Any]],
    base: Mapping[int, Mapping[str, Any]],
    seeds: Sequence[int],
    key: str,
) -> tuple[np.ndarray, np.ndarray, str]:
    """Per-user values of a method and of the baseline over ``seeds``, paired, and how:
    each user's mean over the seeds where every seed scored the same users (``order =
    "time"`` ignores the seed: pooling their arrays counted each user once per seed, as if
    independent, and read p 0.0002 where the per-user means give 0.019): ``"mean over
    seeds"``; else the seeds' users pooled (each seed drew other users): ``"pooled over
    seeds"``, or ``"one seed"``."""
    got = [r.get("user_keys", {}).get(key) for r in [*(runs[s] for s in seeds),
                                                 *(base[s] for s in seeds)]]  # fmt: skip
    a = [np.asarray(runs[s]["per_user"][key], dtype=np.float64) for s in seeds]
    b = [np.asarray(base[s]["per_user"][key], dtype=np.float64) for s in seeds]
    if len(seeds) > 1 and None not in got and len(set(got)) == 1:
        return mean_over_seeds(a), mean_over_seeds(b), "mean over seeds"
    how = "pooled over seeds" if len(seeds) > 1 else "one seed"
    return np.concatenate(a), np.concatenate(b), how


PAIRING_TEXT = {
    "mean over seeds": "each user's mean over the seeds (every seed scored the same users)",
    "pooled over seeds": "users pooled over the seeds (each seed scored other users)",
    "one seed": "the users of one seed",
}


def pairing_text(summary: pl.DataFrame) -> str:
    """How the paired test paired the users (the summary's ``paired_users``), in words: the
    report said "pooled over seeds" where each user's mean over the seeds was taken."""
    hows = [h for h in PAIRING_TEXT if h in set(summary["paired_users"].drop_nulls())]
    if not hows:
        return "no method was paired with per-user fine-tuning"
    text = " or ".join(PAIRING_TEXT[h] for h in hows)
    return text if len(hows) == 1 else f"{text} (per row: paired_users in summary.csv)"


def display_table(summary: pl.DataFrame, metrics: Sequence[str] = METRICS) -> pl.DataFrame:
    """The printed table: ``mean [lo, hi]`` per metric; a row of one seed has no interval over
    seeds (its spread is unknown) and shows ``mean [-]``, never ``[nan, nan]``."""
    from warmrec.reports.tables import format_value, with_ci

    df = summary
    for m in metrics:
        df = with_ci(df, m, f"{m}_lo", f"{m}_hi", name=f"{m} [95% CI]")
        no_ci = pl.col(f"{m}_lo").is_null() | pl.col(f"{m}_lo").is_nan()
        means = pl.Series([f"{format_value(v)} [-]" for v in df[m].to_list()], dtype=pl.String)
        df = df.with_columns(
            pl.when(no_ci).then(means).otherwise(pl.col(f"{m} [95% CI]")).alias(f"{m} [95% CI]")
        )
    # the rating protocol's paired test is on per-user squared error: say so beside RMSE
    diff = "diff [95% CI]" if "rmse" not in metrics else "diff of MSE [95% CI]"
    df = with_ci(df, "diff", "diff_lo", "diff_hi", name=diff)
    # the baseline's own row has no paired difference: an empty cell, not "[, ]"
    df = df.with_columns(
        pl.when(pl.col("diff").is_null()).then(pl.lit("")).otherwise(pl.col(diff)).alias(diff)
    )
    return df.select(
        "shots",
        "method",
        "n_seeds",
        *[f"{m} [95% CI]" for m in metrics],
        "ratio",
        diff,
        "p_value",
    )


def write_outputs(
    out: Path,
    summary: pl.DataFrame,
    table: pl.DataFrame,
    info: Mapping[str, Any],
    metric: str = "ndcg@10",
) -> dict[str, Path]:
    from warmrec.reports.plots import line_plot
    from warmrec.reports.report import write_study_report
    from warmrec.reports.tables import write_csv, write_markdown

    paths = {
        "summary_csv": write_csv(summary, out / "summary.csv"),
        "table_md": write_markdown(table, out / "results.md", title="Cold-start study"),
    }
    name = metric.replace("@", "_at_")
    plot = line_plot(
        summary,
        "shots",
        metric,
        "method",
        out / f"{name}_vs_shots.png",
        f"{metric.upper()} vs revealed interactions (mean, 95% CI over seeds)",
        lo=f"{metric}_lo",
        hi=f"{metric}_hi",
        xlabel="revealed interactions k",
        ylabel=metric,
    )
    paths["plot"] = plot
    if metric == "ndcg@10":
        explain = (
            "Mean over seeds with the 95 % t-interval (meta-test users, full-catalogue ranking "
            "of the event after the k revealed ones); ratio = NDCG@10 / per-user fine-tuning's; "
            "diff [95% CI] and p_value: paired bootstrap of the mean difference from per-user "
            f"fine-tuning in per-user NDCG@10, {pairing_text(summary)}."
        )
    else:
        explain = (
            "MELO's rating setting. Mean over seeds with the 95 % t-interval (meta-test users; "
            "RMSE and MAE in the rating scale's units over every rating after the k revealed "
            "ones); ratio = RMSE / "
            "per-user fine-tuning's (< 1 is better); diff [95% CI] and p_value: paired bootstrap of "
            "the mean difference from per-user fine-tuning in per-user mean squared error, "
            f"{pairing_text(summary)}."
        )
    paths.update(
        write_study_report(
            out, "Cold-start study", info, explain, table, plot, f"{metric} vs shots"
        )
    )
    return paths


def _check_folder(
    out: Path,
    frame: pl.DataFrame,
    model: str,
    model_config: Mapping[str, Any] | None,
    cfg: ColdStartSettings,
) -> None:
    """Refuse an ``out`` whose runs were made with another model, settings, data or trainer
    defaults (runs are kept per seed and method, so other seeds and methods may be added)."""
    from warmrec.experiments.studies.stored import check_settings, data_fingerprint
    from warmrec.training.defaults import trainer_defaults_key

    settings = {
        "model": model,
        "model_config": dict(model_config or {}),
        "settings": config_dict(cfg),
        "data": data_fingerprint(frame),
        "trainer_defaults": trainer_defaults_key(),
    }
    check_settings(
        out, settings, what="cold-start study", advice="use another --out or --no-resume"
    )


def _study_bar(
    out: Path, seeds: Sequence[int], methods: Sequence[str], desc: str, progress: bool | None
) -> Any:
    """A tqdm bar over the study's (seed, method) runs, those already in ``out/runs`` counted
    as done (a resumed study), with the elapsed time and an estimate of what is left; the
    postfix names the step under way (the global model, the learning rate, a method).
    ``progress`` None: a bar where stderr is a terminal, else (inside
    :func:`~warmrec.training.loop.epoch_lines`: a log file, CI) a plain line per step."""
    from tqdm.auto import tqdm

    from warmrec.training.loop import prints_lines, shows_bar

    done = sum((out / "runs" / f"{s}-{m}.json").is_file() for s in seeds for m in methods)
    bar = tqdm(
        total=len(seeds) * len(methods), initial=done, desc=desc, disable=not shows_bar(progress)
    )
    return _LineBar(bar, desc, done) if prints_lines(progress) else bar


class _LineBar:
    """A disabled tqdm bar that prints each step as a line on stderr instead."""

    def __init__(self, bar: Any, desc: str, done: int) -> None:
        self.bar, self.desc, self.done, self.t0 = bar, desc, done, time.perf_counter()

    def set_postfix_str(self, text: str) -> None:
        print(
            f"{self.desc}: {self.done}/{self.bar.total} runs done, now {text} "
            f"({time.perf_counter() - self.t0:.0f} s)",
            file=sys.stderr,
            flush=True,
        )

    def update(self, n: int = 1) -> None:
        self.done += n
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


def run_coldstart_study(
    frame: pl.DataFrame,
    *,
    model: str = "sasrec",
    model_config: Mapping[str, Any] | None = None,
    methods: Sequence[str] = METHODS,
    seeds: Sequence[int] = (0, 1, 2),
    settings: ColdStartSettings | Mapping[str, Any] | None = None,
    out_dir: str | Path = "warmrec-out/coldstart-study",
    resume: bool = True,
    progress: bool | None = False,
    data_source: Mapping[str, Any] | None = None,
) -> ColdStartResult:
    """The study (module docstring); resumes from ``out_dir/runs`` unless ``resume=False``.
    ``data_source``: the ``[data]`` section ``frame`` was read with (recorded in the global
    models)."""
    import shutil

    cfg = build_config(ColdStartSettings, settings)
    if cfg.protocol == "melo":
        return run_melo_study(
            frame,
            model=model,
            model_config=model_config,
            methods=methods,
            seeds=seeds,
            settings=cfg,
            out_dir=out_dir,
            resume=resume,
            progress=progress,
        )
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ConfigError(f"cold-start methods {bad}: expected among {', '.join(METHODS)}")
    check_meta(cfg, methods)
    out = Path(out_dir)
    if not resume and out.exists():
        shutil.rmtree(out)
    _check_folder(out, frame, model, model_config, cfg)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    data = user_sequences(frame)
    records, computed = [], []
    bar = _study_bar(out, seeds, methods, "coldstart study", progress)
    for seed in seeds:
        split = split_users(data, cfg, seed)
        gm = None
        lr = None
        lr_file = out / "runs" / f"{seed}-lr.json"
        for method in methods:
            path = out / "runs" / f"{seed}-{method}.json"
            if path.is_file():
                records.append(json.loads(path.read_text()))
                continue
            if gm is None and method not in ("pop", "sknn"):
                bar.set_postfix_str(f"seed {seed}: pre-training the global model")
                gm = pretrain_global(
                    model, model_config, split, cfg, seed, out / "models" / f"global-s{seed}",
                    data=data_source,
                )  # fmt: skip
            if lr is None and method not in ("pop", "sknn", "global"):
                if lr_file.is_file():
                    lr = json.loads(lr_file.read_text())["inner_lr"]
                else:
                    bar.set_postfix_str(f"seed {seed}: choosing the inner learning rate")
                    lr = choose_lr(split, gm, cfg, seed)
                    atomic_write_text(lr_file, json.dumps({"inner_lr": lr}))
            bar.set_postfix_str(f"seed {seed} {method}")
            rec = run_method(method, split, gm, cfg, seed, lr)
            rec["n_users"] = {
                "train": len(split.train),
                "valid": len(split.valid),
                "test": len(split.test),
            }
            atomic_write_text(path, json.dumps(rec))
            records.append(rec)
            computed.append(f"{seed}-{method}")
            bar.update()
    bar.close()
    summary = summarize(records, cfg.shots)
    table = display_table(summary)
    info = {
        "model": model,
        "methods": ", ".join(methods),
        "seeds": ", ".join(map(str, seeds)),
        "users": f"{len(data.sequences)} ({cfg.order} split)",
        "settings": json.dumps(config_dict(cfg)),
    }
    paths = write_outputs(out, summary, table, info)
    return ColdStartResult(summary, table, records, computed, paths)


# -- MELO's rating setting -------------------------------------------------------------------


def split_rating_users(
    data: Any, settings: ColdStartSettings, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(train, valid, test)`` user indices of a :class:`~warmrec.meta.rating.RatingData`: the
    :class:`ColdStartUsers` scenario with random order, ``melo_test_users`` meta-test users,
    capped so that at least half of all users stay meta-train. ``order`` other than random
    is refused (it was ignored)."""
    if settings.order != "random":
        raise ConfigError(
            f"order {settings.order!r}: the melo protocol splits its users at random (as MELO "
            "does); leave --order out, or use the ranking protocol for a split by time"
        )
    sc = scenario(settings).model_copy(
        update={"order": "random", "n_test_users": settings.melo_test_users, "min_train_share": 0.5}
    )
    parts = sc.assign(data.lengths, seed)
    return parts.train, parts.valid, parts.test


def run_melo_study(
    frame: pl.DataFrame,
    *,
    model: str = "sasrec",
    model_config: Mapping[str, Any] | None = None,
    methods: Sequence[str] = MELO_METHODS,
    seeds: Sequence[int] = (0, 1, 2),
    settings: ColdStartSettings | Mapping[str, Any] | None = None,
    out_dir: str | Path = "warmrec-out/coldstart-melo",
    resume: bool = True,
    progress: bool | None = False,
) -> ColdStartResult:
    """The study in MELO's rating setting (``protocol="melo"``; :mod:`warmrec.meta.rating`):
    the backbone is pre-trained on next items of the meta-train users, then backbone + rating
    head on their ratings (the global model); the inner learning rate is chosen for per-user
    fine-tuning on meta-valid users (lowest mean RMSE over the shots) and used by every
    method, and each meta-method keeps the meta-epoch with the lowest meta-valid RMSE at
    :func:`selection_shot`; results per (seed, method) in ``out/runs`` (resume)."""
    import shutil

    from warmrec.artifacts import load_model, read_weights, save_weights
    from warmrec.meta.maml import meta_train
    from warmrec.meta.rating import (
        RatingMetaModel,
        RatingModel,
        evaluate_ratings,
        fit_rating_model,
        melo_ratings,
    )
    from warmrec.registry import get_model

    cfg = build_config(ColdStartSettings, settings)
    bad = [m for m in methods if m not in MELO_METHODS]
    if bad:
        raise ConfigError(
            f"cold-start methods {bad} under protocol 'melo': expected among "
            f"{', '.join(MELO_METHODS)} (pop and sknn predict no rating)"
        )
    check_meta(cfg, methods, melo=True)
    out = Path(out_dir)
    if not resume and out.exists():
        shutil.rmtree(out)
    _check_folder(out, frame, model, model_config, cfg)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    data = melo_ratings(
        frame,
        min_user=cfg.melo_min_user,
        min_item=cfg.melo_min_item,
        max_len=cfg.melo_max_len,
        scale=cfg.melo_rating_scale,
    )
    model_config = dict(model_config or {})
    if model == "gru4rec":
        model_config.setdefault("training", "windows")
    records, computed = [], []
    n_users: dict[str, int] = {}
    bar = _study_bar(out, seeds, methods, "coldstart study (melo)", progress)
    for seed in seeds:
        tr, va, te = split_rating_users(data, cfg, seed)
        n_users = {"train": len(tr), "valid": len(va), "test": len(te)}
        train = data.subset(tr)
        gm: Any = None
        lr = None

        def evaluate(m: Any, users: np.ndarray) -> dict[int, Any]:
            return {k: evaluate_ratings(m, data, users, k) for k in cfg.shots}

        for method in methods:
            path = out / "runs" / f"{seed}-{method}.json"
            if path.is_file():
                records.append(json.loads(path.read_text()))
                continue
            if gm is None:
                bar.set_postfix_str(f"seed {seed}: the global model")
                cache = out / "models" / f"global-s{seed}"
                if (cache / "head.safetensors").is_file():
                    gm = RatingModel(load_model(cache))
                    gm.net.head.load_state_dict(read_weights(cache / "head.safetensors"))
                else:
                    backbone = get_model(model, model_config)
                    backbone.fit(
                        train.sequences(), **{"seed": seed, "progress": False, **cfg.pretrain}
                    )
                    gm = fit_rating_model(backbone, train, {"seed": seed, **cfg.rating_trainer})
                    backbone.save(cache)
                    save_weights(gm.net.head.state_dict(), cache / "head.safetensors")
            lr_file = out / "runs" / f"{seed}-lr.json"
            if lr is None and method != "global":
                if lr_file.is_file():
                    lr = json.loads(lr_file.read_text())["inner_lr"]
                else:
                    best, found = np.inf, []
                    for cand in cfg.lr_grid:
                        ft = RatingMetaModel(
                            gm,
                            {**cfg.meta, "seed": seed, "algorithm": "finetune", "inner_lr": cand},
                        )
                        v = np.mean([r["summary"]["rmse"] for r in evaluate(ft, va).values()])
                        found.append(f"{cand:g}: {v:g}")
                        if v < best:
                            best, lr = v, cand
                    if lr is None:  # every rate diverged: was MetaConfig's 'inner_lr ... None'
                        raise ConfigError(
                            "coldstart lr_grid: per-user fine-tuning diverged at every rate on "
                            f"meta-valid users (mean RMSE per rate: {', '.join(found)}); "
                            "expected a rate with a finite RMSE: try smaller rates"
                        )
                    atomic_write_text(lr_file, json.dumps({"inner_lr": lr}))
            bar.set_postfix_str(f"seed {seed} {method}")
            t0 = time.perf_counter()
            meta_cfg = {**cfg.meta, "seed": seed}
            info: dict[str, Any] = {}
            if method == "global":
                m = RatingMetaModel(gm, {**meta_cfg, "algorithm": "finetune", "inner_steps": 0})
            elif method == "finetune":
                m = RatingMetaModel(gm, {**meta_cfg, "algorithm": "finetune", "inner_lr": lr})
            else:
                # meta-epochs chosen on meta-valid users: the lowest RMSE at the selection shot
                def minus_valid_rmse(
                    mm: Any, users: np.ndarray = va, k: int = selection_shot(cfg.shots)
                ) -> float:
                    return -evaluate_ratings(mm, data, users, k)["summary"]["rmse"]

                m = meta_train(
                    gm,
                    train,
                    {**meta_cfg, **META_METHODS[method], "inner_lr": lr},
                    cls=RatingMetaModel,
                    valid_score=minus_valid_rmse,
                )
                if m.train_result is not None:
                    info["meta_seconds_per_epoch"] = m.train_result.seconds_per_epoch
                    info["meta_best_epoch"] = m.train_result.best_epoch
            if method != "global":
                info["inner_lr"] = lr
            fit_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            res = evaluate(m, te)
            rec = {
                "seed": seed,
                "method": method,
                "fit_s": fit_s,
                "eval_s": time.perf_counter() - t1,
                "metrics": {str(k): r["summary"] for k, r in res.items()},
                "per_user": {str(k): r["per_user"] for k, r in res.items()},
                "n_users": n_users,
                **info,
            }
            atomic_write_text(path, json.dumps(rec))
            records.append(rec)
            computed.append(f"{seed}-{method}")
            bar.update()
    bar.close()
    summary = summarize(records, cfg.shots, MELO_METRICS, higher_better=False)
    table = display_table(summary, MELO_METRICS)
    info = {
        "protocol": f"melo (rating regression on the {data.scale[0]:g}-{data.scale[1]:g} scale: "
        f"MSE on rating / {data.scale[1]:g}; RMSE, MAE in its units)",
        "model": model,
        "methods": ", ".join(methods),
        "seeds": ", ".join(map(str, seeds)),
        "users": f"{len(data)} after the filter (items >= {cfg.melo_min_item} ratings, users "
        f">= {cfg.melo_min_user}; first {cfg.melo_max_len} ratings each); per seed {n_users}"
        + (
            f" (meta-test capped below the {cfg.melo_test_users} requested)"
            if n_users.get("test", 0) < cfg.melo_test_users
            else ""
        ),
        "settings": json.dumps(config_dict(cfg)),
    }
    paths = write_outputs(out, summary, table, info, metric="rmse")
    return ColdStartResult(summary, table, records, computed, paths)
