"""MARS: text-aware SASRec (item_repr id / text / id+text) against TF-IDF, Pop and SR.

Two protocols, each named with its figures:

- ``loo`` -- leave-one-out per learner (last event test, the one before valid), full ranking
  over the catalogue, seen items kept (and, in a third column, excluded);
- ``time`` -- a global time split at 2019-07-01 (train before 2019-04-01, valid up to the cut
  for early stopping, every event after the cut a next-item target whose history is all the
  learner's earlier events); slices reported apart: all targets, returning learners, new
  learners, and **new videos** (targets with no event before the cut: only text can rank them).

Composites (``--models`` also takes them; their members must be listed before them):
``hybrid text+prior+tfidf`` (``models.hybrid``, the weight chosen on valid HR@10), ``fresh tfidf``
and ``fresh hybrid`` (``models.fresh``: a bonus for videos without training events that follows
the share of such videos in the recent history, two weights chosen on valid HR@10),
``fresh+order tfidf`` and ``fresh+order hybrid`` (plus the catalogue order: the id offset from the
last video, learned from the training transitions), their ``wide`` / ``cold-share`` variants,
and ``fresh+order+text`` / ``fresh+order+text+seen`` (plus the centred MiniLM cosine with the
recent history, then a bonus on the history's own videos); the new-video slice gets each
model's ratio to TF-IDF with a learner-bootstrap interval. ``--section
NAME`` writes a run of some models into its own section beside the main one.

Text models read title, tags, difficulty, type and description through offline MiniLM (vectors
cached on disk); ``id+text`` drops each item's id part at rate 0.3 in training; ``+prior`` adds
the text cosine with the last 5 history items (``text_prior = 5``). One thread::

    OMP_NUM_THREADS=1 python benchmarks/mars_text.py [--data ../shared/data/mars] [--seeds 0]

Writes the ``text`` section of ``benchmarks/results/mars.md``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import LoadSampler, write_section  # noqa: E402

from warmrec import evaluate  # noqa: E402
from warmrec.data.prepared import prepare  # noqa: E402
from warmrec.data.readers import load_interactions  # noqa: E402
from warmrec.registry import get_model  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "mars"
OUT = ROOT / "benchmarks" / "results" / "mars.md"
TITLE = "# MARS (MOOC) results\n"
CUT, VALID_START = "2019-07-01", "2019-04-01"
METRICS = ["hr@10", "ndcg@10"]
MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "pop": ("pop", {}),
    "sr": ("sr", {}),
    "tfidf": ("tfidf", {}),
    "sasrec id": ("sasrec", {}),
    "sasrec text": ("sasrec", {"item_repr": "text"}),
    "sasrec id+text": ("sasrec", {"item_repr": "id+text", "id_dropout": 0.3}),
    "sasrec text+prior": ("sasrec", {"item_repr": "text", "text_prior": 5}),
    "sasrec id+text+prior": (
        "sasrec",
        {"item_repr": "id+text", "id_dropout": 0.3, "text_prior": 5},
    ),
    # models.featrank: its weights fitted on training prefixes and validation (defaults: TF-IDF
    # base, the cross-fitted markov feature, order window 5, tag fields detected: difficulty,
    # job, software, theme, type; the publication year's gap where it pays on validation)
    "featrank": ("featrank", {}),
    "featrank -year": ("featrank", {"gap_fields": []}),
    "featrank -transitions": ("featrank", {"transitions": False}),
    "featrank always-refit": ("featrank", {"refit": True}),
    "featrank steps-1": ("featrank", {"transition_steps": 1}),
    "featrank steps-3": ("featrank", {"transition_steps": 3}),
    "featrank cold-share": ("featrank", {"cold_target_share": "catalogue"}),
    "featrank cold-share +year": (
        "featrank",
        {"cold_target_share": "catalogue", "gap_fields": ["year"]},
    ),
}


COMPOSITES: dict[str, tuple[str, ...]] = {
    # fused with weights chosen on validation HR@10 (models.hybrid / models.fresh) from the
    # fitted models of the same run
    "hybrid text+prior+tfidf": ("sasrec text+prior", "tfidf"),
    "fresh tfidf": ("tfidf",),
    "fresh hybrid": ("hybrid text+prior+tfidf",),
    "fresh+order tfidf": ("tfidf",),
    "fresh+order hybrid": ("hybrid text+prior+tfidf",),
    # wider grids (the order weight sat at the edge, 16), then the cold validation targets
    # weighed as the catalogue's cold share (models.fresh cold_target_share)
    "fresh+order tfidf wide": ("tfidf",),
    "fresh+order tfidf wide cold-share": ("tfidf",),
    # plus the dense-text term (models.fresh text_window: the centred MiniLM cosine with the
    # last 5 history items, its weight chosen on validation with the others)
    "fresh+order+text tfidf wide cold-share": ("tfidf",),
    # plus the repeat term (models.fresh seen_window: a bonus on the last 50 history items)
    "fresh+order+text+seen tfidf wide cold-share": ("tfidf",),
}

TEXT = {"text_window": 5, "text_grid": [0.0, 0.25, 0.5, 1.0, 2.0]}
SEEN = {"seen_window": 50, "seen_grid": [0.0, 0.5, 1.0, 2.0, 4.0]}

WIDE = {
    "cold_grid": [-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 4.0, 8.0],
    "affinity_grid": [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0],
    "order_grid": [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0],
}


ORDER_GRID = [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0]


PATIENCE = 5
"""SASRec's early-stopping patience in these runs (its default until 2026-12-05, 30 since:
``benchmarks/results/sasrec_patience.md``), kept so that the committed tables reproduce."""


def fit_composite(name: str, train, valid, members: list[Any]) -> tuple[Any, float, str]:
    from warmrec.models.fresh import Fresh
    from warmrec.models.hybrid import Hybrid

    t0 = time.perf_counter()
    if name.startswith("hybrid"):
        model = Hybrid.from_members(*members, select_metric="hr@10").fit(train, valid)
        note = f"w {model.weight_:.1f}"
    else:
        order = {"order_window": 5, "order_grid": ORDER_GRID} if "+order" in name else {}
        if " wide" in name:
            order.update(WIDE)
        if " cold-share" in name:
            order["cold_target_share"] = "catalogue"
        if "+text" in name:
            order.update(TEXT)
        if "+seen" in name:
            order.update(SEEN)
        model = Fresh.from_base(members[0], **order).fit(train, valid)
        note = "a {:g}, b {:g}, o {:g}".format(*model.weights_)
        if "+text" in name:
            note += f", t {model.weights_[3]:g}"
        if "+seen" in name:
            note += f", r {model.weights_[4]:g}"
    return model, time.perf_counter() - t0, note


def fit(name: str, train, valid, seed: int, args, fitted=None) -> tuple[Any, float, str]:
    if name in COMPOSITES:
        members = [(fitted or {}).get((m, seed)) for m in COMPOSITES[name]]
        if any(m is None for m in members):
            raise SystemExit(f"{name}: list its members first ({', '.join(COMPOSITES[name])})")
        return fit_composite(name, train, valid, members)
    kind, cfg = MODELS[name]
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    model = get_model(kind, cfg)
    if kind == "sasrec":
        model.fit(
            train,
            valid,
            epochs=args.epochs,
            patience=PATIENCE,
            seed=seed,
            time_budget_s=args.budget,
            progress=False,
        )
        r = model.train_result
        note = f"{r.epochs_run} ep, best {r.best_epoch}"
    elif kind == "featrank":
        model.fit(train, valid)
        secs = time.perf_counter() - t0
        top = sorted(model.weights().items(), key=lambda kv: -abs(kv[1]))[:4]
        note = ", ".join(f"{k} {v:.2f}" for k, v in top)
        check = model.refit_check
        if check is not None:
            took = "yes" if check["refit"] > check["kept"] else "no"
            note += f"; refit {took} ({check['refit']:.4f} vs {check['kept']:.4f})"
        gaps = model.gap_check
        if gaps is not None:
            took = "yes" if gaps["with"] > gaps["without"] else "no"
            note += f"; year {took} ({gaps['with']:.4f} vs {gaps['without']:.4f})"
        # the feature set judged out of sample: the first step's weights (training prefixes
        # only, the gap fields the fit kept) on the validation targets, which the later steps
        # fit (not in the fit time)
        first = get_model(kind, {**cfg, "gap_fields": sorted(model.gaps)}).fit(train)
        note += f"; valid {evaluate(first, valid, ['ndcg@10'])['ndcg@10']:.4f}"
        return model, secs, note
    else:
        model.fit(train)
        note = ""
    return model, time.perf_counter() - t0, note


def scores(model, test) -> dict[str, float]:
    if len(test) == 0:
        return {"n": 0}
    out = {"n": len(test), **evaluate(model, test, METRICS).summary}
    out["hr@10 seen excl."] = evaluate(model, test, ["hr@10"], exclude_seen=True)["hr@10"]
    return out


# the library's cold-start slices (warmrec.evaluation.slices), under this file's names
SLICE_NAMES = {
    "all": "all targets",
    "returning_users": "returning learners",
    "new_users": "new learners",
    "new_items": "new videos",
    "new_items_first": "new videos, first view by the learner",
}


def time_slices(q) -> dict[str, np.ndarray]:
    """Example indices of the time split's test set by slice."""
    from warmrec.evaluation.slices import cold_slices

    return {SLICE_NAMES[k]: v for k, v in cold_slices(q).items()}


def anatomy(q, slices: dict[str, np.ndarray]) -> str:
    """What the new-video targets are made of (why a content model that ranks the history's
    own videos first does well there), as a paragraph."""
    test = q.test
    idx = slices["new videos"]
    first = slices["new videos, first view by the learner"]
    hist = [test.history(int(j)) for j in idx]
    in_hist = np.array([test.targets[j] in h for j, h in zip(idx, hist)])
    is_last = np.array([len(h) > 0 and test.targets[j] == h[-1] for j, h in zip(idx, hist)])
    no_hist = np.array([len(test.history(int(j))) == 0 for j in first])
    ids = q.vocab.ids.to_numpy()
    nxt = np.array(
        [
            len(test.history(int(j))) > 0
            and ids[test.targets[j] - 1] - ids[test.history(int(j))[-1] - 1] == 1
            for j in first
        ]
    )
    cold = q.train.item_counts() == 0
    allh = [test.history(j) for j in range(len(test))]
    last_cold = np.array([len(h) > 0 and bool(cold[h[-1]]) for h in allh])
    tgt_cold = cold[test.targets]
    return (
        f"Anatomy of the {len(idx):,} new-video targets: {in_hist.mean():.1%} are a video "
        f"already in the learner's history ({is_last.mean():.1%} the very last one: a "
        "content model scores a history's own videos highest, the last one first, so it "
        "gets those almost for free); the other "
        f"{len(first):,} are first views, {no_hist.mean():.1%} of them with no history at "
        "all (a learner's first event: nothing but popularity can rank them, and these videos "
        f"have none) and {nxt.mean():.1%} the video whose id follows the last one's (the next "
        "video of a course). Over all test targets, the next video has no training events "
        f"{tgt_cold[last_cold].mean():.1%} of the time after a video without training events "
        f"and {tgt_cold[~last_cold & (np.array([len(h) for h in allh]) > 0)].mean():.1%} after "
        "one with some.\n"
    )


def table(rows: list[dict[str, Any]]) -> str:
    cols = ["model", "n", "hr@10", "ndcg@10", "hr@10 seen excl.", "fit s", "training"]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, "")
            if c == "fit s":
                cells.append(f"{v:.0f}")
            elif isinstance(v, float):
                sd = r.get(c + " sd")
                cells.append(f"{v:.4f}" + (f" ± {sd:.4f}" if sd is not None else ""))
            else:
                cells.append(f"{v:,}" if isinstance(v, int) else str(v))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def mean_rows(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean over seeds (``+- sd`` kept as text when several seeds ran)."""
    first = dict(runs[0])
    if len(runs) == 1:
        return first
    for k in ("hr@10", "ndcg@10", "hr@10 seen excl.", "fit s"):
        vals = [r[k] for r in runs if k in r]
        if vals:
            first[k] = float(np.mean(vals))
            if k != "fit s":
                first[k + " sd"] = float(np.std(vals, ddof=1))
    first["training"] = "; ".join(str(r.get("training", "")) for r in runs)
    return first


def ratios(fitted: dict, q, slices: dict[str, np.ndarray], models: list[str], seeds: list[int]):
    """A line: each model's new-video HR@10 over TF-IDF's, with its 95 % paired bootstrap
    interval (learners resampled, their targets together: ``paired_ratio_ci`` of per-learner
    hit counts, 2,000 draws)."""
    from warmrec.experiments.studies.curve import paired_ratio_ci

    if any(("tfidf", seed) not in fitted for seed in seeds):
        return ""
    idx = slices["new videos"]
    nv = q.test.subset(idx)
    _, learner = np.unique(
        np.asarray(q.test.keys.to_list(), dtype=object)[idx], return_inverse=True
    )
    out = []
    for seed in seeds:
        base = evaluate(fitted["tfidf", seed], nv, ["hr@10"]).per_example["hr@10"]
        b = np.bincount(learner, weights=base)
        for name in models:
            if name in ("pop", "tfidf") or (name, seed) not in fitted:
                continue
            hits = evaluate(fitted[name, seed], nv, ["hr@10"]).per_example["hr@10"]
            r, lo, hi = paired_ratio_ci(np.bincount(learner, weights=hits), b)
            out.append(
                f"`{name}` {r:.2f}x [{lo:.2f}, {hi:.2f}]"
                + (f" (seed {seed})" if len(seeds) > 1 else "")
            )
    if not out:
        return ""
    return (
        "\nRatio to TF-IDF on the new-video slice (HR@10, 95 % paired bootstrap interval, the "
        f"{len(np.unique(learner)):,} learners resampled with their targets, 2,000 draws): "
        + "; ".join(out)
        + ".\n"
    )


def against(fitted: dict, q, models: list[str], seeds: list[int], ref: str) -> str:
    """A line: each ``featrank`` row's NDCG@10 on all targets over ``ref``'s, with its 95 %
    paired bootstrap interval (learners resampled with their targets, 2,000 draws)."""
    from warmrec.experiments.studies.curve import paired_ratio_ci

    rows = [m for m in models if m.startswith("featrank")]
    if not rows or any((ref, seed) not in fitted for seed in seeds):
        return ""
    _, learner = np.unique(np.asarray(q.test.keys.to_list(), dtype=object), return_inverse=True)
    out = []
    for seed in seeds:
        base = evaluate(fitted[ref, seed], q.test, ["ndcg@10"]).per_example["ndcg@10"]
        b = np.bincount(learner, weights=base)
        for name in rows:
            got = evaluate(fitted[name, seed], q.test, ["ndcg@10"]).per_example["ndcg@10"]
            r, lo, hi = paired_ratio_ci(np.bincount(learner, weights=got), b)
            out.append(
                f"`{name}` {r:.3f}x [{lo:.3f}, {hi:.3f}]"
                + (f" (seed {seed})" if len(seeds) > 1 else "")
            )
    return (
        f"\nRatio to `{ref}` on all targets (NDCG@10, 95 % paired bootstrap interval, the "
        f"{len(np.unique(learner)):,} learners resampled with their targets, 2,000 draws): "
        + "; ".join(out)
        + ".\n"
    )


def ceiling(fitted: dict, q, slices: dict[str, np.ndarray], seeds: list[int]) -> str:
    """Diagnostic lines: the best new-video HR@10 any point of the wide grids reaches with its
    weights chosen on the TEST slice itself (a ceiling for the cold, order and text terms over
    the TF-IDF base, not a result), against TF-IDF's."""
    lines = []
    for name in (
        "fresh+order tfidf wide",
        "fresh+order+text tfidf wide cold-share",
        "fresh+order+text+seen tfidf wide cold-share",
    ):
        if any((name, seed) not in fitted or ("tfidf", seed) not in fitted for seed in seeds):
            continue
        nv = q.test.subset(slices["new videos"])
        out = []
        for seed in seeds:
            curve = fitted[name, seed].validation_curve(nv)
            a, b, o, t, rw, best = max(curve, key=lambda r: r[5])
            base = evaluate(fitted["tfidf", seed], nv, ["hr@10"])["hr@10"]
            at = f"a {a:g}, b {b:g}, o {o:g}" + (f", t {t:g}" if "+text" in name else "")
            at += f", r {rw:g}" if "+seen" in name else ""
            out.append(f"seed {seed}: {best:.4f} at {at} = {best / base:.2f}x TF-IDF's {base:.4f}")
        lines.append(
            "\nCeiling (diagnostic, chosen on the test slice, not a result): the best new-video "
            f"HR@10 of `{name}` over its whole grid, " + "; ".join(out) + ".\n"
        )
    return "".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--seeds", default="0", help="comma-separated")
    ap.add_argument("--epochs", type=int, default=60, help="epoch cap (early stopping, patience 5)")
    ap.add_argument("--budget", type=float, default=300.0, help="training seconds per SASRec run")
    ap.add_argument("--models", default=",".join(MODELS), help=f"also: {', '.join(COMPOSITES)}")
    ap.add_argument("--protocols", default="loo,time")
    ap.add_argument(
        "--section",
        default="text",
        help="the marked section of the results file written (another name: a run of some "
        "models, e.g. the composites, beside the main table)",
    )
    args = ap.parse_args()
    begin, end = f"<!-- begin: {args.section} -->", f"<!-- end: {args.section} -->"
    seeds = [int(s) for s in args.seeds.split(",")]
    models = [m.strip() for m in args.models.split(",")]
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    load = LoadSampler()
    t_all = time.perf_counter()
    inter = load_interactions(args.data)
    # the text vectors, once (the models below read them from the cache)
    from warmrec.models.settings import TextSettings
    from warmrec.models.text import default_cache_dir, encode_texts, item_texts, texts_key

    vocab = prepare(inter, split="loo").vocab
    texts, _ = item_texts(inter.item_features, vocab, TextSettings().text_fields, 2000)
    key = texts_key(texts, "minilm")
    cached = any(default_cache_dir().glob(f"minilm-{key[:40]}.npy"))
    t0 = time.perf_counter()
    encode_texts(texts, "minilm")
    enc = f"{time.perf_counter() - t0:.1f} s ({'read from the cache' if cached else 'encoded'})"
    sections = []
    if "loo" in args.protocols:
        p = prepare(inter, split="loo")
        rows = []
        fitted: dict[tuple[str, int], Any] = {}
        for name in models:
            runs = []
            for seed in seeds:
                model, secs, note = fit(name, p.train, p.valid, seed, args, fitted)
                fitted[name, seed] = model
                runs.append(
                    {"model": name, **scores(model, p.test), "fit s": secs, "training": note}
                )
                print(name, seed, runs[-1], flush=True)
            rows.append(mean_rows(runs))
        sections.append(
            "### Protocol `loo`: leave-one-out per learner, full ranking\n\n"
            f"{len(p.train.vocab) - 1} videos ranked, {len(p.test):,} test learners (learners with "
            "at least 3 events). Seen items kept in the ranking (first two metric columns) and "
            "excluded (third).\n\n" + table(rows)
        )
    if "time" in args.protocols:
        q = prepare(
            inter,
            split="temporal",
            split_options={"test_start": CUT, "valid_start": VALID_START, "drop_unseen": False},
        )
        slices = time_slices(q)
        by_slice: dict[str, list[dict[str, Any]]] = {s: [] for s in slices}
        fitted = {}
        for name in models:
            runs: dict[str, list[dict[str, Any]]] = {s: [] for s in slices}
            for seed in seeds:
                model, secs, note = fit(name, q.train, q.valid, seed, args, fitted)
                fitted[name, seed] = model
                for s, idx in slices.items():
                    row = {"model": name, **scores(model, q.test.subset(idx)), "fit s": secs}
                    row["training"] = note
                    runs[s].append(row)
                print(name, seed, {s: r[-1] for s, r in runs.items()}, flush=True)
            for s in slices:
                by_slice[s].append(mean_rows(runs[s]))
        n_train = int(q.train.item_counts().astype(bool).sum())
        text = (
            f"### Protocol `time`: global split at {CUT}, full ranking\n\n"
            f"Train before {VALID_START} ({n_train} videos with events), valid "
            f"{VALID_START} to {CUT} (early stopping only), test: every event after the cut "
            f"({len(q.test):,} targets; history = all earlier events of the learner). New videos: "
            "targets with no event before the cut (ID vectors of such videos were never trained "
            "as targets); many are a learner coming back to a new video they opened after the "
            "cut (the video is in their history), so the last slice keeps only the first view "
            "of the video by the learner: there, with seen items excluded or not, only the "
            "video's text can rank it.\n\n" + anatomy(q, slices)
        )
        for s, rows in by_slice.items():
            text += f"\n#### Slice: {s}\n\n" + table(rows) + "\n"
        text += ratios(fitted, q, slices, models, seeds)
        text += against(fitted, q, models, seeds, "fresh+order tfidf")
        text += ceiling(fitted, q, slices, seeds)
        sections.append(text)
    took = time.perf_counter() - t_all
    cmd = "OMP_NUM_THREADS=1 python " + shlex.join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    heading = "Text-aware models (SASRec item_repr, TF-IDF)"
    if args.section != "text":
        heading += f": run `{args.section}`"
    composites = [m for m in models if m in COMPOSITES]
    fused = (
        " Composites (of the models fitted above in the same run): `hybrid text+prior+tfidf` "
        "is `models.hybrid` of `sasrec text+prior` (A) and `tfidf` (B) (z-scored scores, "
        "`w * A + (1 - w) * B`, w in 0, 0.1, ..., 1 chosen on valid HR@10); `fresh M` is "
        "`models.fresh` over M: M's z-scored scores plus `(a + b * c(h))` "
        "on every video without training events, `c(h)` the share of such videos among the "
        "last 5 of the history (weights 0.5^age), a in -2, -1, -0.5, 0, 0.5, 1 and b in 0, "
        "0.5, 1, 2, 4, 8 chosen on valid HR@10 (the validation targets on videos first viewed "
        "in the validation months stand for the new videos); `fresh+order M` adds the catalogue "
        "order: `o * p(d)`, d the id offset of a video from the last history item (|d| <= 5), "
        "p(d) the share of training transitions with that offset over the largest share "
        "(d = +1: the next video of the course, 1.0; then d = +2, 0.19, and d = -1, 0.14), o "
        "in 0, 0.5, 1, 2, 4, 8, 16 chosen with a and b. `M wide`: a in -2 ... 8, b in 0 ... "
        "32, o in 0, 1, 2, ..., 128 (the order weight had stopped at its grid's edge). `M wide "
        "cold-share`: the validation targets on videos without training events weigh as the share "
        'of such videos in the catalogue (`cold_target_share = "catalogue"`, 33 %; they are 7 '
        "% of the validation targets and 33 % of the test targets), the rest as the other "
        "share. `fresh+order+text M`: plus the dense-text term `t * norm(x_i . sum_k 0.5^k "
        "x_{h_k})` over the last 5 history items, x the MiniLM vectors centred on the catalogue "
        "mean and L2-normalised (`text_window = 5`), t in 0, 0.25, 0.5, 1, 2 chosen with a, b "
        "and o. `+seen`: plus the repeat term `r * seen(i, h)` (1 on the last 50 history "
        "items, `seen_window = 50`), r in 0, 0.5, 1, 2, 4 chosen with the others."
        if composites
        else ""
    )
    ranked = (
        " `featrank`: `models.featrank`, a weighted sum of item-agnostic features: TF-IDF's "
        "z-scored scores, `log(1 + n)` with n the training transitions from the last history "
        "item to the video (cross-fitted on the training prefixes: 5 folds of sequences), the "
        "catalogue order p(d) (|d| <= 5, as above), 1 on the last 50 "
        "history items and on the last one, for each tag field (difficulty, job, software, "
        "theme, type; detected) the share of the last 5 history items (weights 0.5^age) with "
        "the video's values, the training popularity (z-scored log count; 0 without events; "
        "the popularity and the catalogue order cross-fitted as the transitions since "
        "session 32), and for videos without training events 1, `c(h)` and the TF-IDF score; the weights "
        "fitted by softmax cross-entropy over the catalogue (L-BFGS), first on training "
        "prefixes (all but the cold weights), then the cold weights on the validation targets, "
        "then all of them on validation with an L2 pull (0.01) to the previous step where that "
        "pays out of fold (`refit`: the validation NDCG@10 with and without that step, each "
        "half of the validation learners scored by the weights fitted on the other half); "
        'nothing is searched on a grid. By default (`gap_fields = "auto"`) also minus the distance '
        "between the video's publication year and the last history item's, over its spread, "
        "where it raises the first step's validation NDCG@10 (`year`: with the gap, without "
        "it); `-year`: never. `cold-share`: the validation targets on videos without training "
        "events weigh as the catalogue's share of such videos (as above); `+year`: the year "
        'named (`gap_fields = ["year"]`), whatever validation says; '
        "the transitions are counted between events up to 3 steps apart, each 1 / gap (as "
        "the sequential rules; `steps-1`: consecutive events only, the default before "
        "session 17; `steps-3` names 3); "
        "`-transitions`: without the transition feature; `always-refit`: the last step taken "
        "whatever it gives out of fold (both were the defaults before session 16). The "
        "training column lists the four largest weights, `refit` with the two out-of-fold "
        "figures (with the last step, without), `year` with its two, then `valid`: the "
        "validation NDCG@10 "
        "of the weights of the first step alone (fitted on training prefixes only, so out of "
        "sample on validation: how the feature sets are compared)."
        if any(m.startswith("featrank") for m in models)
        else ""
    )
    block = (
        f"{begin}\n## {heading}\n\n"
        f"Command: `{cmd}` ({took / 60:.0f} min, seeds {args.seeds}; 1-minute load average "
        f"{load.stop()} on the shared 2-core machine). SASRec: the model's and trainer's defaults "
        f"(d 64, 2 blocks, max_len 50, batch 32, lr 2e-3 cosine), early stopping on valid "
        f"NDCG@10 (patience 5), at most {args.epochs} epochs or {args.budget:.0f} s of training; "
        "`text`: MiniLM vectors of title, tags, difficulty, type and description (encoded once, "
        "cached) through a whitening adaptor; `id+text`: plus id vectors (items without training "
        "events get none; id dropout 0.3); `+prior`: `text_prior = 5` (the MiniLM cosine with "
        "the last 5 history items, weights 0.5^age, added with a learned weight). Text items "
        "without training events are out of the training softmax. "
        "TF-IDF: the same text, cosine to the last 5 items "
        f"(weights 0.5^age). Text vectors of the {len(texts)} videos: {enc}; encoding them "
        "cold took 182 s on one thread of this loaded machine. Fit times exclude it."
        + fused
        + ranked
        + "\n\n"
        + "\n\n".join(sections)
        + f"\n{end}"
    )
    write_section(Path(args.out), begin, end, block, TITLE)
    print(f"written {args.out} ({took:.0f} s)")


if __name__ == "__main__":
    main()
