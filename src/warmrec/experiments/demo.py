"""``warmrec demo``: every baseline (and the neural models) on one dataset, one table.

With no data it generates the synthetic cross-domain set (no network) and works on the small
target domain, the setting warmrec is built for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
from tqdm.auto import tqdm

from warmrec.experiments.pipeline import Prepared, evaluate_model, fit_model, prepare, read, timed
from warmrec.io import atomic_write_text, write_csv

BASELINES = ("pop", "sessionpop", "markov", "ar", "sr", "itemknn", "sknn", "vsknn")
NEURAL = ("sasrec", "gru4rec")
DEMO_METRICS = ("hr@10", "ndcg@10", "mrr@10", "hr@20", "ndcg@20", "mrr@20", "coverage@20")
NEURAL_DEMO_TRAIN = {"epochs": 30, "patience": 5}


def default_split(frame: pl.DataFrame) -> str:
    """Session logs: each user's (or the latest) last session held out; user logs: leave-one-out."""
    return "last_session" if "session_id" in frame.columns else "loo"


def demo_data(data: str | Path | None, fmt: str | None, seed: int) -> tuple[pl.DataFrame, str]:
    if data is None:
        from warmrec.data.synthetic import generate_cross_domain

        cd = generate_cross_domain(seed=seed)
        return cd.target, "synthetic cross-domain (target domain)"
    inter = read(data, format=fmt)
    return inter.interactions, str(data)


def run_demo(
    data: str | Path | None = None,
    *,
    fmt: str | None = None,
    out: str | Path = "warmrec-out/demo",
    models: tuple[str, ...] | None = None,
    split: str | None = None,
    seed: int = 0,
    neural_train: dict[str, Any] | None = None,
    progress: bool = True,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Fit and evaluate ``models`` (default: every baseline, SASRec and GRU4Rec); write the table
    as Markdown and CSV under ``out``. Returns (table, info)."""
    from warmrec.registry import available_models

    frame, source = demo_data(data, fmt, seed)
    split = split or default_split(frame)
    prep: Prepared = prepare(frame, split=split)
    known = set(available_models())
    names = [m for m in (models or BASELINES + NEURAL) if m in known]
    rows = []
    for name in tqdm(names, desc="demo", disable=not progress):
        train_cfg = None
        if name in NEURAL:
            train_cfg = {**NEURAL_DEMO_TRAIN, "seed": seed, **(neural_train or {})}
        model, fit_s = timed(fit_model, name, prep, None, train_cfg)
        res, eval_s = timed(evaluate_model, model, prep.test, prep, metrics=DEMO_METRICS)
        rows.append({"model": name, **res.summary, "fit_s": fit_s, "eval_s": eval_s})
    table = pl.DataFrame(rows).sort("ndcg@10", descending=True)
    table = table.with_columns([pl.col(c).round(4) for c in table.columns if c != "model"])
    info = {
        "data": source,
        "split": split,
        "train_sequences": len(prep.train.sequences),
        "items": prep.vocab.n_items,
        "test_examples": len(prep.test),
        "protocol": "full-catalogue ranking, seen items not excluded",
    }
    outdir = Path(out)
    write_csv(table, outdir / "results.csv")
    atomic_write_text(outdir / "results.md", render_markdown(table, info))
    return table, info


def render_markdown(table: pl.DataFrame, info: dict[str, Any]) -> str:
    head = "| " + " | ".join(table.columns) + " |"
    sep = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in table.iter_rows()]
    meta = "\n".join(f"- {k}: {v}" for k, v in info.items())
    return f"# warmrec demo\n\n{meta}\n\n" + "\n".join([head, sep, *body]) + "\n"
