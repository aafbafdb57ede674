"""The user cold-start protocol and study: reveal k events of a new user, adapt, rank the next.

Users, not events, are split (:func:`split_users`): meta-train / meta-valid / meta-test users
are disjoint; ``order="random"`` draws them with the seed, ``order="time"`` puts the users who
start last into meta-test (valid just before them: a cut-off in time). Meta-valid and meta-test
users need at least ``max(shots) + 1`` events; meta-train users keep all their events. Users are
cold, items are warm: the catalogue (vocabulary) is every item of the log, and ranking is over
the full catalogue (contract 4).

For a meta-valid or meta-test user and ``k`` in ``shots``, :func:`shot_eval_set` makes one
example: history = the user's first ``k`` events, target = event ``k + 1``. Adaptation sees the
history only (:meth:`~warmrec.meta.maml.MetaModel.score` gets a Batch of histories), so it never
sees the query item. With ``k = 1`` a next-item objective has no (input, target) pair: every
adapting method equals the global model there.

Methods (:data:`METHODS`): ``pop``, ``sknn`` (fit on meta-train users), ``global`` (the
pre-trained model, selected on meta-valid users, no adaptation), ``finetune`` (per-user
fine-tuning of the global model: ``inner_steps`` SGD steps), ``reptile``, ``maml``, ``fomaml``,
``mamlpp``, ``mamlpp_loss`` (MAML++ with the learned adaptive loss). The inner learning rate is
searched on meta-valid users for ``finetune`` (``lr_grid``) and the meta-methods are meta-trained
at the learning rate chosen there (MAML++ then learns its own rates): the same steps and the
same search for all; nothing is chosen on meta-test users. GRU4Rec is trained with
``training="windows"`` unless the model config says otherwise (a task's inner loss must not carry
a session-parallel hidden state over from other users).

:func:`run_coldstart_study` runs every (seed, method), writes each finished run atomically to
``out/runs/<seed>-<method>.json`` (resume: finished runs are read back, not redone), the global
model per seed to ``out/models/global-s<seed>`` (a normal model directory) and then the table
(mean over seeds with 95 % t-interval, NDCG@10 ratio to ``finetune`` and a paired bootstrap
test against ``finetune`` on per-user NDCG@10 pooled over seeds), the plot (metric vs shots) and
a Markdown + HTML report.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import Field

from warmrec.config import ConfigModel, build_config, config_dict
from warmrec.data.dataset import EvalSet, SequenceDataset
from warmrec.data.vocab import ItemVocab
from warmrec.errors import ConfigError, DataError
from warmrec.evaluation.evaluate import evaluate
from warmrec.evaluation.stats import paired_test, seed_summary
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
BASELINE = "finetune"


class ColdStartSettings(ConfigModel):
    """Settings of the cold-start protocol and study (unknown keys are rejected)."""

    shots: tuple[int, ...] = (1, 3, 5, 10)
    """Revealed events per meta-valid / meta-test user."""
    order: Literal["random", "time"] = "random"
    """How users are split: at random, or by the time of their first event (test last)."""
    valid_users: float = Field(0.1, gt=0, lt=1)
    """Share of eligible users in meta-valid."""
    test_users: float = Field(0.2, gt=0, lt=1)
    """Share of eligible users in meta-test."""
    max_valid_users: int = Field(0, ge=0)
    """Cap on meta-valid users (0 = none; keeps the lr search cheap)."""
    max_test_users: int = Field(0, ge=0)
    """Cap on meta-test users (0 = none)."""
    lr_grid: tuple[float, ...] = (0.01, 0.05, 0.2)
    """Inner learning rates searched on meta-valid users (per-user fine-tuning)."""
    pretrain: dict[str, Any] = Field(default_factory=dict)
    """Trainer settings of the global model (fit on meta-train users, validated on meta-valid)."""
    meta: dict[str, Any] = Field(default_factory=dict)
    """:class:`~warmrec.meta.maml.MetaConfig` settings shared by the meta-methods."""


@dataclass
class UserSplit:
    """Per-user sequences (time order) and which users are meta-train / valid / test."""

    data: SequenceDataset
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray

    def subset(self, which: np.ndarray) -> SequenceDataset:
        d = self.data
        return SequenceDataset(d.sequences.subset(which), d.vocab, d.key)


def user_sequences(frame: pl.DataFrame) -> SequenceDataset:
    """One time-ordered sequence per user over the catalogue of every item in ``frame``."""
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
    return SequenceDataset.from_frame(df, ItemVocab.from_ids(df["item_id"]))


def split_users(data: SequenceDataset, settings: ColdStartSettings, seed: int) -> UserSplit:
    """User-disjoint meta-train / meta-valid / meta-test (module docstring)."""
    lens = data.sequences.lengths
    need = max(settings.shots) + 1
    eligible = np.flatnonzero(lens >= need)
    n_valid = int(round(settings.valid_users * len(eligible)))
    n_test = int(round(settings.test_users * len(eligible)))
    if n_valid < 1 or n_test < 1 or len(data.sequences) - n_valid - n_test < 2:
        raise DataError(
            "too few users for the cold-start split",
            field="shots",
            expected=f"users with >= {need} events for meta-valid and meta-test",
            found=f"{len(eligible)} eligible of {len(lens)} users",
        )
    if settings.order == "time":
        ts = data.sequences.timestamps
        if ts is None:
            raise DataError(
                "order='time' needs timestamps",
                field="timestamp",
                expected="a column",
                found="none",
            )
        first = ts[data.sequences.offsets[:-1]]
        order = eligible[np.argsort(first[eligible], kind="stable")]
        test, valid = order[len(order) - n_test :], order[len(order) - n_test - n_valid : -n_test]
    else:
        rng = np.random.default_rng(seed)
        order = rng.permutation(eligible)
        test, valid = order[:n_test], order[n_test : n_test + n_valid]
    if settings.max_test_users:
        test = test[: settings.max_test_users]
    if settings.max_valid_users:
        valid = valid[: settings.max_valid_users]
    held = np.zeros(len(lens), bool)
    held[np.concatenate([test, valid])] = True
    if settings.order == "time":
        held[order[len(order) - n_test - n_valid :]] = True  # cut-off users never train
    else:
        held[order[: n_test + n_valid]] = True
    return UserSplit(data, np.flatnonzero(~held), np.sort(valid), np.sort(test))


def shot_eval_set(data: SequenceDataset, users: np.ndarray, k: int) -> EvalSet:
    """History = each user's first ``k`` events, target = event ``k + 1``."""
    seqs = data.sequences
    users = np.asarray(users, dtype=np.int64)
    starts = seqs.offsets[users]
    if (seqs.lengths[users] < k + 1).any():
        raise DataError(
            "shot_eval_set: a user has too few events", field="k", expected=f">= {k + 1}"
        )
    return EvalSet(
        seqs.items,
        starts,
        starts + k,
        seqs.items[starts + k],
        len(data.vocab),
        seqs.keys.gather(users),
    )


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
        model = meta_train(global_model, train, cfg)
        info["inner_lr"] = chosen_lr
        if model.train_result is not None:
            info["meta_seconds_per_epoch"] = model.train_result.seconds_per_epoch
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
) -> Any:
    """The global model: fit on meta-train users, early-stopped on meta-valid users at the
    largest shot; cached as a model directory."""
    from warmrec.artifacts import load_model
    from warmrec.registry import get_model

    if cache is not None and (cache / "config.json").is_file():
        return load_model(cache)
    config = dict(model_config or {})
    if model_name == "gru4rec":
        # tasks need a per-task loss: session-parallel batches carry a hidden state across
        # batches (and users); windows are also GRU4Rec's best form on ml-100k user histories
        config.setdefault("training", "windows")
    model = get_model(model_name, config)
    valid = shot_eval_set(split.data, split.valid, max(settings.shots))
    train = split.subset(split.train)
    model.fit(train, valid, **{"seed": seed, "progress": False, **settings.pretrain})
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


def summarize(records: Sequence[Mapping[str, Any]], shots: Sequence[int]) -> pl.DataFrame:
    """Per (shots, method): mean and 95 % CI over seeds, ratio and paired test vs finetune."""
    rows = []
    by: dict[str, dict[int, Mapping[str, Any]]] = {}
    for r in records:
        by.setdefault(r["method"], {})[r["seed"]] = r
    base = by.get(BASELINE, {})
    for method, runs in by.items():
        for k in shots:
            key = str(k)
            row: dict[str, Any] = {"shots": k, "method": method, "n_seeds": len(runs)}
            for m in METRICS:
                s = seed_summary([runs[s]["metrics"][key][m] for s in sorted(runs)])
                row.update({m: s.mean, f"{m}_lo": s.lo, f"{m}_hi": s.hi})
            row.update(ratio=None, diff=None, diff_lo=None, diff_hi=None, p_value=None)
            paired = [s for s in sorted(runs) if s in base]
            if paired:
                b = np.concatenate([base[s]["per_user"][key] for s in paired])
                a = np.concatenate([runs[s]["per_user"][key] for s in paired])
                bm = float(b.mean())
                row["ratio"] = float(a.mean()) / bm if bm > 0 else None
                if method != BASELINE:
                    t = paired_test(a, b, n_boot=5000, seed=0)
                    row.update(
                        diff=t.mean_diff, diff_lo=t.ci[0], diff_hi=t.ci[1], p_value=t.p_value
                    )
            rows.append(row)
    df = pl.DataFrame(rows, infer_schema_length=None)
    cols = ("ratio", "diff", "diff_lo", "diff_hi", "p_value")
    return df.with_columns([pl.col(c).cast(pl.Float64) for c in cols]).sort(
        ["shots", "ndcg@10"], descending=[False, True]
    )


def display_table(summary: pl.DataFrame) -> pl.DataFrame:
    from warmrec.reports.tables import with_ci

    df = summary
    for m in METRICS:
        df = with_ci(df, m, f"{m}_lo", f"{m}_hi", name=f"{m} [95% CI]")
    return df.select(
        "shots",
        "method",
        "n_seeds",
        *[f"{m} [95% CI]" for m in METRICS],
        "ratio",
        "diff",
        "p_value",
    )


def write_outputs(
    out: Path, summary: pl.DataFrame, table: pl.DataFrame, info: Mapping[str, Any]
) -> dict[str, Path]:
    from warmrec.reports.plots import line_plot
    from warmrec.reports.report import Heading, Image, Table, Text, write_report
    from warmrec.reports.tables import write_csv, write_markdown

    paths = {
        "summary_csv": write_csv(summary, out / "summary.csv"),
        "table_md": write_markdown(table, out / "results.md", title="Cold-start study"),
    }
    plot = line_plot(
        summary,
        "shots",
        "ndcg@10",
        "method",
        out / "ndcg_at_10_vs_shots.png",
        "NDCG@10 vs revealed interactions (mean, 95% CI over seeds)",
        lo="ndcg@10_lo",
        hi="ndcg@10_hi",
        xlabel="revealed interactions k",
        ylabel="ndcg@10",
    )
    paths["plot"] = plot
    blocks = [
        Heading("Setting"),
        Text("\n".join(f"{k}: {v}" for k, v in info.items())),
        Heading("Results"),
        Text(
            "Mean over seeds with the 95 % t-interval (meta-test users, full-catalogue ranking of "
            "the event after the k revealed ones); ratio = NDCG@10 / per-user fine-tuning's; "
            "diff and p_value: paired bootstrap test against per-user fine-tuning on per-user "
            "NDCG@10 pooled over seeds."
        ),
        Table(table),
        Heading("Plot"),
        Image(plot, alt="ndcg@10 vs shots", caption="NDCG@10 vs shots"),
    ]
    for suffix in ("md", "html"):
        paths[f"report_{suffix}"] = write_report(
            out / f"report.{suffix}", "Cold-start study", blocks
        )
    return paths


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
    progress: bool = False,
) -> ColdStartResult:
    """The study (module docstring); resumes from ``out_dir/runs`` unless ``resume=False``."""
    import shutil

    cfg = build_config(ColdStartSettings, settings)
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ConfigError(f"cold-start methods {bad}: expected among {', '.join(METHODS)}")
    out = Path(out_dir)
    if not resume and out.exists():
        shutil.rmtree(out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    data = user_sequences(frame)
    records, computed = [], []
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
                gm = pretrain_global(
                    model, model_config, split, cfg, seed, out / "models" / f"global-s{seed}"
                )
            if lr is None and method not in ("pop", "sknn", "global"):
                if lr_file.is_file():
                    lr = json.loads(lr_file.read_text())["inner_lr"]
                else:
                    lr = choose_lr(split, gm, cfg, seed)
                    atomic_write_text(lr_file, json.dumps({"inner_lr": lr}))
            if progress:
                print(f"[coldstart] seed {seed} {method} ...", flush=True)
            rec = run_method(method, split, gm, cfg, seed, lr)
            rec["n_users"] = {
                "train": len(split.train),
                "valid": len(split.valid),
                "test": len(split.test),
            }
            atomic_write_text(path, json.dumps(rec))
            records.append(rec)
            computed.append(f"{seed}-{method}")
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
