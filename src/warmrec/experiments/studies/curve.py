"""The learning curve: a metric against the share of training data, one line per arm.

A curve is a list of :class:`~warmrec.experiments.spec.RunSpec` -- one per (arm, fraction,
seed) -- built from one base spec (:func:`curve_runs`), and every run goes through the run
owner: :func:`~warmrec.experiments.spec.prepare_run` (``[split] train_fraction`` /
``fraction_seed``: the :class:`~warmrec.experiments.scenarios.DataScarcity` scenario, nested
for one seed, validation and test unchanged), :func:`~warmrec.experiments.spec.fit_run` and
:func:`~warmrec.experiments.spec.evaluate_run` on the test part.

An *arm* is how the target model starts:

``scratch``
    the base spec's ``[model]`` fit from random weights;
``transfer:DIR`` (or ``LABEL=transfer:DIR``)
    the pre-trained source in ``DIR`` (``warmrec pretrain`` writes one) carried over with the
    base spec's ``[transfer]`` options (strategy, init and their options; ``source`` is the
    arm's). Scratch vs each source vs a multi-source model are three kinds of arm.
``model:NAME`` (or ``LABEL=model:NAME``, ``LABEL=model:NAME:key=value:key2=value2``)
    another registered model, fit from the same data (no ``[transfer]``; the base's ``[train]``
    where it trains with the loop): the simple baselines a transfer has to beat on the small
    target (popularity, SR, item-kNN, FeatRank, ...), each at every fraction, its ratio read
    against ``scratch`` like every other arm's. At its defaults, or with the config keys given
    after the name, each ``:key=value`` (a dotted key reaches a nested table) with the value
    read as a ``--set`` value is (:func:`~warmrec.config.parse_value`: ``false``, ``0.5``,
    ``[1, 2]``, ``"x"``, anything else a string); a key the model does not have refuses in one
    line naming the arm and the key. In Python an :class:`Arm` gives them as pairs
    (``Arm("fr", model="featrank", config=(("fit_valid", False),))``, the same as
    ``parse_arm("fr=model:featrank:fit_valid=false")``). A list of arms in one string
    (``--arms``) is split at the commas outside brackets and quotes (:func:`split_arms`), so a
    list value such as ``ks=[10, 20]`` stays in its arm.

Before any model is fit the sizes are checked (:func:`check_sizes`): a fraction that keeps fewer
than ``min_train_sequences`` training sequences refuses in one line. Each finished run is
written atomically to ``out/runs/<arm>-f<fraction>-s<seed>.json`` with the spec that made it;
a rerun reads those back and fits nothing (a run file whose spec differs from the current one is
an error: start over with ``resume=False`` or another ``out``).

The summary (:func:`summarize`): per (arm, fraction) the mean of each metric over seeds with
its 95 % t-interval, and against ``scratch`` at the same fraction: the ratio of the primary
metric with a 95 % per-user paired bootstrap interval (each test user's mean over the seeds,
users resampled in pairs: :func:`~warmrec.evaluation.stats.mean_over_seeds`), the paired mean difference with its interval and p-value
(:func:`~warmrec.evaluation.stats.paired_test`). The report (``results.md``, ``report.md``,
``report.html``, a plot of the metric against the fraction on a log axis) states the protocol:
split method, seen items kept or excluded, full ranking or a sampled protocol.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from warmrec.errors import ConfigError, DataError
from warmrec.experiments.spec import (
    ModelSpec,
    RunSpec,
    evaluate_run,
    fit_run,
    prepare_run,
    spec_from_config,
)
from warmrec.io import atomic_write_text

FRACTIONS = (0.01, 0.05, 0.1, 0.25, 1.0)
SCRATCH = "scratch"
SPLIT_NAMES = {
    "loo": "leave-one-out per user (last event test, the one before validation)",
    "loo_new": "leave-one-out on new items (each user's last event on an item not seen before "
    "is the target)",
    "temporal": "global time split",
    "last_session": "last session held out",
    "user": "user-disjoint split",
    "time_new_learners": "trained before a cut, learners arriving after it tested on their last "
    "new item",
    "given": "the split folder's own parts",
}


@dataclass(frozen=True)
class Arm:
    """One line of the curve: ``scratch``, a transfer from ``source`` or another ``model``."""

    name: str
    source: str | None = None
    model: str | None = None
    config: tuple[tuple[str, Any], ...] = ()
    """A model arm's config keys (``(key, value)`` pairs; the model's defaults elsewhere)."""

    @property
    def is_scratch(self) -> bool:
        return self.source is None and self.model is None


_KEY_SEP = re.compile(r":(?=\s*[A-Za-z_][A-Za-z0-9_.]*\s*=)")
"""Where a model arm's next ``:key=value`` starts: a colon followed by a key and ``=`` (a
colon inside a value, e.g. a path, is kept)."""


def check_model_config(arm: str, model: str, config: Mapping[str, Any]) -> None:
    """Refuse config keys or values that ``model``'s config does not take, in one line naming
    the arm (a :class:`~warmrec.errors.ConfigError`)."""
    from warmrec.config import build_config
    from warmrec.registry import model_class

    try:
        build_config(model_class(model).Config, dict(config))
    except ConfigError as e:
        raise ConfigError(f"arm {arm!r}: {e}") from None


def _model_arm(text: str, label: str | None, body: str) -> Arm:
    """``NAME`` or ``NAME:key=value:key2=value2`` (after ``model:``) -> a model arm."""
    from warmrec.config import apply_overrides
    from warmrec.registry import available_models

    name, _, rest = body.partition(":")
    name = name.strip()
    if name not in available_models():
        raise ConfigError(
            f"arm {text!r}: expected a registered model after model:, found {name!r} "
            f"(known: {', '.join(sorted(available_models()))})"
        )
    head, *pairs = _KEY_SEP.split(":" + rest) if rest.strip() else [""]
    if head.strip():  # something after NAME: that is not key=value
        raise ConfigError(
            f"arm {text!r}: expected key=value after model:{name}:, found {rest.strip()!r}"
        )
    config = apply_overrides({}, pairs)
    check_model_config(text, name, config)
    return Arm(label or name, model=name, config=tuple(config.items()))


def parse_arm(text: str) -> Arm:
    """``scratch``, ``transfer:DIR``, ``model:NAME[:key=value...]`` or ``LABEL=`` one of them
    -> :class:`Arm` (a model arm's keys as in the module docstring)."""
    t = text.strip()
    label = None
    if "=" in t and not t.startswith(("transfer:", "model:")):
        label, t = (s.strip() for s in t.split("=", 1))
    if t == SCRATCH:
        return Arm(label or SCRATCH)
    if t.startswith("model:") and t.removeprefix("model:").strip():
        return _model_arm(text, label, t.removeprefix("model:"))
    if t.startswith("transfer:") and t[len("transfer:") :].strip():
        src = t[len("transfer:") :].strip()
        if not Path(src).is_dir():
            raise ConfigError(
                f"arm {text!r}: expected a pre-trained model directory, found no folder {src!r}"
            )
        return Arm(label or f"transfer:{Path(src).name}", src)
    raise ConfigError(
        f"arm {text!r}: expected scratch, transfer:DIR, model:NAME[:key=value...] or LABEL= "
        "one of them"
    )


_MODEL_ARM = re.compile(r"\s*(?:[^=]*=)?\s*model:")


def split_arms(text: str) -> list[str]:
    """A comma-separated list of arms (``--arms``) -> one string per arm: split at every comma
    but those inside a model arm's ``[...]``, ``{...}`` or quotes, so that a list or table value
    (``ks=[10, 20]``) keeps its commas; a transfer arm's folder is taken as it is."""
    parts: list[str] = []
    cur = ""
    depth, quote = 0, ""
    for ch in text:
        in_model = not cur.lstrip().startswith("transfer:") and _MODEL_ARM.match(cur)
        if quote:
            quote = "" if ch == quote else quote
        elif in_model and ch in "\"'":
            quote = ch
        elif in_model and ch in "[{":
            depth += 1
        elif in_model and ch in "]}":
            depth = max(depth - 1, 0)
        elif ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def parse_arms(texts: Sequence[str | Arm]) -> list[Arm]:
    arms = [a if isinstance(a, Arm) else parse_arm(a) for a in texts]
    names = [a.name for a in arms]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"arms: each needs its own name, found {', '.join(dup)} twice")
    # run files are named by the arm's name with odd characters replaced: "a b" and "a_b" shared
    # theirs, and one arm's runs were read back as the other's (or refused as another spec's)
    files: dict[str, str] = {}
    for n in names:
        other = files.setdefault(_file_name(n), n)
        if other != n:
            raise ConfigError(
                f"arms: {other!r} and {n!r} share the run file name {_file_name(n)!r}; "
                "rename one (letters, digits and _ . + - only)"
            )
    if not arms:
        raise ConfigError("arms: expected at least one (scratch, transfer:DIR), found none")
    return arms


def check_fractions(fractions: Sequence[float]) -> tuple[float, ...]:
    fr = tuple(sorted({float(f) for f in fractions}))
    bad = [f for f in fr if not 0 < f <= 1]
    if not fr or bad:
        raise ConfigError(f"fractions: expected values in (0, 1], found {list(fractions)}")
    return fr


@dataclass(frozen=True)
class CurveRun:
    """One point of one line for one seed."""

    arm: Arm
    fraction: float
    seed: int
    spec: RunSpec

    @property
    def key(self) -> str:
        return f"{_file_name(self.arm.name)}-f{self.fraction:g}-s{self.seed}"


def _file_name(arm: str) -> str:
    """An arm's name as its run files spell it."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", arm)


def arm_spec(base: RunSpec, arm: Arm, fraction: float, seed: int) -> RunSpec:
    """The base spec at ``fraction`` (``fraction_seed`` = ``seed``), trained with ``seed``;
    a transfer arm gets ``[transfer] source`` = its directory (and ``seed``), a model arm
    its model with the arm's config keys (the model's defaults elsewhere) in place of the
    base's (and no ``[transfer]``); a key the model does not take refuses naming the arm."""
    cfg = base.to_config()
    cfg["split"] = {**cfg.get("split", {}), "train_fraction": fraction, "fraction_seed": seed}
    if arm.model is not None:
        check_model_config(arm.name, arm.model, dict(arm.config))
        cfg["model"] = {"name": arm.model, **dict(arm.config)}
    looped = bool(cfg.get("model")) and ModelSpec(name=cfg["model"]["name"]).takes_trainer()
    if arm.model is not None and not looped:
        cfg.pop("train", None)  # the loop's settings mean nothing to it
    if arm.source is not None or looped:
        cfg["train"] = {**cfg.get("train", {}), "seed": seed}
    if arm.source is None:
        cfg.pop("transfer", None)
        if arm.is_scratch and base.model is None:
            raise ConfigError("arm scratch: no model: give --model NAME or [model] name")
    else:
        cfg["transfer"] = {**cfg.get("transfer", {}), "source": arm.source, "seed": seed}
    return spec_from_config(cfg)


def curve_runs(
    base: RunSpec, arms: Sequence[Arm], fractions: Sequence[float], seeds: Sequence[int]
) -> list[CurveRun]:
    """Every (arm, fraction, seed) as a :class:`CurveRun` (seed-major: a seed's prepared data
    is shared by its arms)."""
    fr = check_fractions(fractions)
    return [
        CurveRun(a, f, s, arm_spec(base, a, f, s)) for s in seeds for f in fr for a in arms
    ]  # fmt: skip


def check_sizes(
    prep: Any, fractions: Sequence[float], seeds: Sequence[int], min_train_sequences: int
) -> dict[float, int]:
    """Training sequences kept at each fraction (the scenario's own count); a fraction that
    keeps fewer than ``min_train_sequences`` refuses in one line, before anything is fit."""
    from warmrec.experiments.scenarios import DataScarcity

    train = prep.split.train if prep.split is not None else None
    if train is None:
        raise DataError(
            "a learning curve needs a row split",
            field="split.method",
            expected="loo, loo_new, temporal, last_session, user or given",
            found="the coldstart scenario",
        )
    out = {}
    for f in fractions:
        sc = DataScarcity(fraction=f, seed=seeds[0], min_sequences=min_train_sequences)
        out[f] = int(sc.keys(train).len())
    return out


def protocol_text(spec: RunSpec) -> str:
    """The named protocol of a run, as printed with every figure."""
    sp = spec.split
    method = SPLIT_NAMES.get(sp.method, sp.method)
    opts = {k: v for k, v in sp.options().items() if k not in ("scenario",)}
    extra = f" {json.dumps(opts, default=str)}" if opts else ""
    seen = "seen items excluded" if spec.eval.exclude_seen else "seen items kept"
    ranking = (
        "full ranking over the catalogue"
        if spec.eval.protocol == "full"
        else f"sampled ranking ({spec.eval.protocol})"
    )
    return f"split: {sp.method} = {method}{extra}; {seen}; {ranking}"


def paired_ratio_ci(
    a: np.ndarray, b: np.ndarray, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float, float]:
    """``mean(a) / mean(b)`` and its percentile bootstrap interval, pairs resampled together
    (NaN bounds when ``b`` sums to 0). A pair with a NaN (a user the metric has no value
    for) is left out, as :func:`~warmrec.evaluation.stats.paired_test` leaves it out."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise DataError("paired values", field="a, b", expected="equal 1-D", found=str(a.shape))
    both = ~(np.isnan(a) | np.isnan(b))
    a, b = a[both], b[both]
    if not len(a):
        return float("nan"), float("nan"), float("nan")
    bm = b.mean()
    if bm <= 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    n = len(a)
    ratios = np.empty(n_boot)
    step = max(1, (1 << 22) // n)
    for lo in range(0, n_boot, step):
        k = min(step, n_boot - lo)
        idx = rng.integers(0, n, size=(k, n))
        sb = b[idx].sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios[lo : lo + k] = np.where(sb > 0, a[idx].sum(axis=1) / sb, np.nan)
    ratios = ratios[~np.isnan(ratios)]
    q = np.quantile(ratios, [alpha / 2, 1 - alpha / 2]) if len(ratios) else [np.nan, np.nan]
    return float(a.mean() / bm), float(q[0]), float(q[1])


def summarize(
    records: Sequence[Mapping[str, Any]],
    metrics: Sequence[str],
    primary: str,
    *,
    baseline: str = SCRATCH,
    n_boot: int = 2000,
) -> pl.DataFrame:
    """One row per (arm, fraction): means and 95 % t-intervals over seeds, and the ratio to
    ``baseline`` of ``primary`` (per-user paired bootstrap, each user's mean over seeds) with the
    paired difference and its p-value."""
    from warmrec.evaluation.stats import mean_over_seeds, metric_bounds, paired_test, seed_summary

    by: dict[tuple[str, float], dict[int, Mapping[str, Any]]] = {}
    for r in records:
        by.setdefault((r["arm"], r["fraction"]), {})[r["seed"]] = r
    rows = []
    for (arm, frac), runs in sorted(by.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        seeds = sorted(runs)
        row: dict[str, Any] = {
            "arm": arm,
            "fraction": frac,
            "n_train": int(np.mean([runs[s]["n_train_sequences"] for s in seeds])),
            "n_seeds": len(seeds),
        }
        for m in metrics:
            s = seed_summary([runs[x]["metrics"][m] for x in seeds], bounds=metric_bounds(m))
            row.update({m: s.mean, f"{m}_lo": s.lo, f"{m}_hi": s.hi})
        row.update(ratio=None, ratio_lo=None, ratio_hi=None, diff=None, p_value=None)
        base = by.get((baseline, frac), {})
        paired = [s for s in seeds if s in base]
        if paired and arm != baseline:
            # the same test users in every run: one value per user, its seeds' mean
            a = mean_over_seeds([runs[s]["per_user"] for s in paired])
            b = mean_over_seeds([base[s]["per_user"] for s in paired])
            if a.shape == b.shape:
                r, lo, hi = paired_ratio_ci(a, b, n_boot=n_boot)
                t = paired_test(a, b, n_boot=n_boot, seed=0)
                row.update(ratio=r, ratio_lo=lo, ratio_hi=hi, diff=t.mean_diff, p_value=t.p_value)
        elif arm == baseline:
            row["ratio"] = 1.0
        rows.append(row)
    df = pl.DataFrame(rows, infer_schema_length=None)
    cols = ("ratio", "ratio_lo", "ratio_hi", "diff", "p_value")
    return df.with_columns([pl.col(c).cast(pl.Float64) for c in cols])


def display_table(summary: pl.DataFrame, metrics: Sequence[str]) -> pl.DataFrame:
    """``mean [lo, hi]`` per metric (``mean [-]`` for one seed) and the ratio with its CI."""
    from warmrec.reports.tables import format_value

    def cell(v, lo, hi) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
            return f"{format_value(v)} [-]"
        return f"{format_value(v)} [{format_value(lo)}, {format_value(hi)}]"

    out = summary.select("arm", "fraction", "n_train", "n_seeds")
    for m in metrics:
        vals = [
            cell(v, lo, hi)
            for v, lo, hi in zip(summary[m], summary[f"{m}_lo"], summary[f"{m}_hi"], strict=True)
        ]
        out = out.with_columns(pl.Series(f"{m} [95% CI]", vals, dtype=pl.String))
    ratio = [
        cell(v, lo, hi) if lo is not None else ("1" if v == 1.0 else "")
        for v, lo, hi in zip(
            summary["ratio"], summary["ratio_lo"], summary["ratio_hi"], strict=True
        )
    ]
    return out.with_columns(
        pl.Series("ratio to scratch [95% CI]", ratio, dtype=pl.String), summary["p_value"]
    )


@dataclass
class CurveResult:
    summary: pl.DataFrame
    table: pl.DataFrame
    records: list[dict[str, Any]]
    computed: list[str]
    paths: dict[str, Path] = field(default_factory=dict)
    protocol: str = ""


def _stale(rec: Mapping[str, Any], label: str, fp: str, n_users: int) -> str | None:
    """Why a stored run cannot be read back here (None: it can): another primary metric in its
    per-user values, other data, or per-example values of a log whose users have several."""
    primary = rec.get("primary")
    if primary is None:  # written before the field: its values are the mean's own metric?
        vals = np.asarray(rec.get("per_user", []), np.float64)
        m = rec.get("metrics", {}).get(label)
        if m is None or not len(vals) or abs(float(np.nanmean(vals)) - float(m)) > 1e-9:
            return f"its per-user values are not {label}'s (made for another primary metric)"
    elif primary != label:
        return f"its per-user values are {primary}'s, not {label}'s"
    if rec.get("data_fingerprint", fp) != fp:
        return "made on other data (the log's content differs)"
    if len(rec.get("per_user", [])) != n_users:
        return "its values are per test example, not per test user (an older warmrec)"
    return None


def _spec_key(spec: RunSpec) -> str:
    """A run file's key: the spec, and for a run that trains with the loop (or transfers) how
    its open trainer settings resolve (:func:`~warmrec.training.defaults.trainer_defaults_key`,
    and transfer's :data:`~warmrec.transfer.transfer.TRANSFER_TRAINER`), so that run files made
    under other defaults are refused instead of reused."""
    cfg: Any = spec.to_config(absolute=True)
    if spec.transfer is not None or (spec.model is not None and spec.model.takes_trainer()):
        from warmrec.training.defaults import trainer_defaults_key

        cfg = {"spec": cfg, "trainer_defaults": trainer_defaults_key()}
    if spec.transfer is not None:
        from warmrec.transfer.transfer import TRANSFER_TRAINER

        cfg["transfer_trainer"] = TRANSFER_TRAINER
        # the source by its weights, not its path: a source re-trained into the same folder
        # was reused from the run files of the old one
        cfg["source_weights"] = _weights_digest(Path(spec.transfer.source))
    return json.dumps(cfg, sort_keys=True, default=str)


def _weights_digest(model_dir: Path) -> str | None:
    """SHA-256 of a model directory's weights and config (None where it has none)."""
    from warmrec.artifacts import file_sha256

    files = [model_dir / n for n in ("model.safetensors", "config.json")]
    return "+".join(file_sha256(f) for f in files if f.is_file()) or None


def run_curve(
    base: RunSpec,
    arms: Sequence[str | Arm] = (SCRATCH,),
    *,
    fractions: Sequence[float] = FRACTIONS,
    seeds: Sequence[int] = (0, 1, 2),
    out_dir: str | Path = "warmrec-out/curve",
    resume: bool = True,
    primary: str = "ndcg@10",
    min_train_sequences: int = 10,
    n_boot: int = 2000,
    progress: bool = False,
    data: Any = None,
) -> CurveResult:
    """Run the curve (module docstring) and write its table, plot and report to ``out_dir``.
    ``data``: the log already read (an ``Interactions`` or canonical table) instead of
    ``base.data``."""
    from warmrec.evaluation.metrics import parse_metric

    arm_list = parse_arms(arms)
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ConfigError("seeds: expected at least one, found none")
    metrics = list(base.eval.metrics)
    if primary not in metrics:
        raise ConfigError(f"primary metric {primary!r}: expected one of {', '.join(metrics)}")
    label = parse_metric(primary).label
    if parse_metric(primary).name == "coverage":
        # a catalogue-level value: no per-user values to pair (was a KeyError after a fit)
        raise ConfigError(
            f"primary metric {primary!r}: expected a per-example metric (ndcg@10, hr@10, ...); "
            "coverage is one value per ranking of the whole test set"
        )
    runs = curve_runs(base, arm_list, fractions, seeds)
    fr = check_fractions(fractions)
    out = Path(out_dir)
    if not resume and out.exists():
        shutil.rmtree(out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    if data is None:
        if base.data is None:
            raise ConfigError("no data path: give --data PATH or [data] path in the config")
        data = base.data.read()
    full = prepare_run(base.replace(split={**base.to_config()["split"], "train_fraction": 1.0}),
                       data=data)  # fmt: skip
    sizes = check_sizes(full, fr, seeds, min_train_sequences)
    from warmrec.evaluation.stats import example_units, per_user_values
    from warmrec.experiments.studies.stored import prepared_fingerprint

    fp = prepared_fingerprint(full)
    n_users = example_units(full.test)[1]
    ran_spec: RunSpec = full.info["spec"]
    protocol = protocol_text(ran_spec.model_copy(update={"eval": base.eval}))
    records: list[dict[str, Any]] = []
    computed: list[str] = []
    prepared: dict[tuple[float, int], Any] = {}
    for run in runs:
        path = out / "runs" / f"{run.key}.json"
        key = _spec_key(run.spec)
        if path.is_file():
            rec = json.loads(path.read_text())
            if rec.get("spec_key") != key:
                raise ConfigError(
                    f"{path}: made by another spec than this curve's, or under other trainer "
                    "defaults (a model's default trainer changed since); start over with "
                    "--no-resume (resume=False) or give another --out"
                )
            why = _stale(rec, label, fp, n_users)
            if why:
                raise ConfigError(
                    f"{path}: {why}; start over with --no-resume (resume=False) or give another "
                    "--out"
                )
            records.append(rec)
            continue
        pk = (run.fraction, run.seed)
        if pk not in prepared:
            prepared.clear()  # one (fraction, seed) at a time: arms share it
            prepared[pk] = prepare_run(run.spec, data=data)
        prep = prepared[pk]
        if progress:
            print(
                f"[curve] {run.arm.name} fraction {run.fraction:g} seed {run.seed} ...", flush=True
            )
        t0 = time.perf_counter()
        model = fit_run(run.spec, prep)
        fit_s = time.perf_counter() - t0
        res = evaluate_run(model, prep.test, run.spec, prep)
        rec = {
            "arm": run.arm.name,
            "source": run.arm.source,
            "model": run.spec.model.name if run.spec.model is not None else None,
            "fraction": run.fraction,
            "seed": run.seed,
            "n_train_sequences": len(prep.train.sequences),
            "n_test": res.n_examples,
            "metrics": {m: float(res.summary[parse_metric(m).label]) for m in metrics},
            # one value per test user (its examples' mean): the unit the intervals resample
            "per_user": per_user_values(prep.test, res.per_example[label]).tolist(),
            "primary": label,
            "data_fingerprint": fp,
            "fit_seconds": fit_s,
            **_training_facts(model),
            "protocol": protocol,
            "spec_key": key,
            "spec": run.spec.to_config(absolute=True),
        }
        atomic_write_text(path, json.dumps(rec))
        records.append(rec)
        computed.append(run.key)
    # the ratio's baseline is the scratch arm by its name: one labelled ``LABEL=scratch`` had
    # no row named "scratch" to be divided by, and every ratio of the table was empty
    baseline = next((a.name for a in arm_list if a.is_scratch), SCRATCH)
    summary = summarize(records, metrics, primary, baseline=baseline, n_boot=n_boot)
    table = display_table(summary, metrics)
    info = {
        "protocol": protocol,
        "arms": ", ".join(_shown(a) for a in arm_list),
        "fractions": ", ".join(f"{f:g} ({sizes[f]} training sequences)" for f in fr),
        "seeds": ", ".join(map(str, seeds)),
        "test examples": str(records[0]["n_test"]) if records else "0",
        "model": base.model.name if base.model is not None else "(the sources')",
        "transfer": json.dumps(
            {k: v for k, v in (base.to_config().get("transfer") or {}).items() if k != "source"}
        ),
        "train": json.dumps(base.train),
    }
    paths = write_outputs(out, summary, table, info, primary)
    return CurveResult(summary, table, records, computed, paths, protocol)


def _shown(arm: Arm) -> str:
    """An arm as the report names it: ``NAME (SOURCE)``, ``NAME (model M, key = value)``."""
    if arm.source:
        return f"{arm.name} ({arm.source})"
    if arm.model:
        keys = "".join(f", {k} = {json.dumps(v)}" for k, v in arm.config)
        return f"{arm.name} (model {arm.model}{keys})"
    return arm.name


def _training_facts(model: Any) -> dict[str, Any]:
    """What selection saw (the validation metrics of the fitted model) and how training ended:
    ``valid``, for loop-trained models ``epochs_run``, ``best_epoch``, ``stopped_early``, and
    for transferred ones the resolved ``trainer`` settings."""
    meta = getattr(model, "meta", None)
    run = getattr(meta, "run", None)
    out: dict[str, Any] = {
        "valid": {k: float(v) for k, v in (getattr(run, "valid", {}) or {}).items()}
    }
    tinfo = getattr(meta, "transfer", None)
    if tinfo is not None and tinfo.trainer:
        out["trainer"] = dict(tinfo.trainer)
    tr = getattr(model, "train_result", None)
    if tr is not None:
        out.update(epochs_run=int(tr.epochs_run), best_epoch=int(tr.best_epoch),
                   stopped_early=bool(tr.stopped_early))  # fmt: skip
    return out


def write_outputs(
    out: Path,
    summary: pl.DataFrame,
    table: pl.DataFrame,
    info: Mapping[str, str],
    metric: str,
) -> dict[str, Path]:
    """``summary.csv``, ``results.md``, the plot and ``report.md`` / ``report.html``; the
    protocol is written above the table and in the plot's caption."""
    from warmrec.reports.plots import line_plot
    from warmrec.reports.report import write_study_report
    from warmrec.reports.tables import write_csv

    protocol = info["protocol"]
    name = metric.replace("@", "_at_")
    plot = line_plot(
        summary,
        "fraction",
        metric,
        "arm",
        out / f"{name}_vs_fraction.png",
        f"{metric.upper()} vs training fraction (mean, 95% CI over seeds)",
        lo=f"{metric}_lo",
        hi=f"{metric}_hi",
        xlabel="fraction of training sequences (log scale)",
        ylabel=metric,
        logx=True,
    )
    explain = (
        f"Protocol: {protocol}. Mean over seeds with the 95 % t-interval; ratio to scratch = "
        f"{metric} / scratch's at the same fraction, with a 95 % paired bootstrap interval over "
        "test users (each user's mean over the seeds); p_value: paired bootstrap test of the "
        "mean difference."
    )
    from warmrec.reports.tables import to_markdown

    md = f"# Learning curve\n\n{explain}\n\n" + to_markdown(table) + "\n"
    atomic_write_text(out / "results.md", md)
    paths = {"summary_csv": write_csv(summary, out / "summary.csv"), "table_md": out / "results.md"}
    paths["plot"] = plot
    paths.update(
        write_study_report(
            out, "Learning curve", info, explain, table, plot, f"{metric} vs fraction; {protocol}"
        )
    )
    return paths
