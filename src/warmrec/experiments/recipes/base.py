"""What a recipe is, and how one runs: a list of steps, resumable, ending in one report.

A recipe redoes one source project's pipeline (see :mod:`warmrec.experiments.recipes`) as a
list of **steps** built by :meth:`Recipe.runs` ``(quick, data_paths)``:

:class:`RunStep`
    one run: a :class:`~warmrec.experiments.spec.RunSpec` executed by
    :func:`~warmrec.experiments.spec.prepare_run` / :func:`~warmrec.experiments.spec.fit_run` /
    :func:`~warmrec.experiments.spec.save_run` (the model goes to ``OUT/models/<step>``), then
    scored once on the test part under each of its ``test_protocols``. ``config_from`` starts
    the spec from a run config an earlier step wrote (a search's ``best.toml``).
:class:`CallStep`
    one call of a library function that is not a single run (data statistics, sessionising, a
    search, a study, batch prediction), named by its import path with its parameters (see
    :mod:`warmrec.experiments.recipes.steps`).

Strings of a step may hold ``{out}``: the output folder, filled in when the step runs (a
transfer run's source is ``{out}/models/pretrain-...``), so ``warmrec recipe show`` prints the
plan without an output folder.

**Resuming.** :func:`run_recipe` records every finished step in ``OUT/state.json`` (written
atomically after each step: its fingerprint -- a hash of the step's settings --, wall and CPU
seconds (CPU: this process's, on a shared machine the steadier figure), the process's peak
resident memory so far, and its record). Run again with the same ``OUT``, a step
whose fingerprint is recorded as finished is not run again; a step whose settings changed (say
``--quick`` dropped, or a transfer step made under the library's older trainer resolution:
:meth:`Step.semantics`) runs again, its ``OUT/steps/<name>`` folder cleared first, and so does
every step after it (a later step may read what it wrote: a model, a sessionised log, a tuned
config), as every step does when a data file changed on disk (its size, time or sampled
content, :func:`warmrec.io.fingerprint`). A killed
recipe therefore continues from its last finished step; a step killed half-way starts over
(models and study folders are written atomically, and the transfer and cold-start studies
resume their own finished runs).

**Report.** ``OUT/report.md`` and ``OUT/report.html`` (through :mod:`warmrec.reports`): the
source project and its claims beside our figures (:class:`Claim`, with why they differ), the
protocols, every step with its time, a results table of the runs, and the recipe's plots.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from warmrec.errors import ConfigError, DataError, ModelError
from warmrec.experiments.spec import RunSpec, spec_from_config
from warmrec.training.memory import peak_rss_mb

STATE = "state.json"
STATE_VERSION = 1
DATA_ROOT_ENV = "WARMREC_DATA"
"""Environment variable naming the folder of the shared datasets (default ``../shared/data``)."""
DEFAULT_DATA_ROOT = "../shared/data"


# -- data inputs ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataInput:
    """A dataset a recipe reads: its key (``--data KEY=PATH``), default path under the data
    root, what it is and whether a missing one stops the recipe."""

    key: str
    default: str
    about: str
    required: bool = True


def data_root() -> Path:
    """The folder the default data paths are relative to: ``$WARMREC_DATA``, else
    ``$WARMREC_SHARED_DATA`` (what the tests read), else ``../shared/data``."""
    return Path(
        os.environ.get(DATA_ROOT_ENV) or os.environ.get("WARMREC_SHARED_DATA") or DEFAULT_DATA_ROOT
    )


def parse_data_args(items: Sequence[str]) -> dict[str, str]:
    """``["KEY=PATH", ...]`` -> ``{KEY: PATH}``; a malformed item is one line."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, path = item.partition("=")
        if not sep or not key.strip() or not path.strip():
            raise ConfigError(f"--data: expected KEY=PATH, found {item!r}")
        out[key.strip()] = path.strip()
    return out


# -- steps -----------------------------------------------------------------------------------------
def fill_out(value: Any, out: str) -> Any:
    """``value`` with ``{out}`` in every string replaced by ``out`` (recursively)."""
    if isinstance(value, str):
        return value.replace("{out}", out)
    if isinstance(value, Mapping):
        return {k: fill_out(v, out) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [fill_out(v, out) for v in value]
    return value


@dataclass
class Context:
    """What a running step sees: the output folder, the data paths, quick mode, the records of
    the steps before it, and whether to print progress."""

    out: Path
    data: dict[str, str]
    quick: bool
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    progress: bool = False

    def step_dir(self, name: str) -> Path:
        return self.out / "steps" / name

    def say(self, text: str) -> None:
        if self.progress:
            print(f"[recipe] {text}", file=sys.stderr, flush=True)


@dataclass
class Step:
    """A step of a recipe: a unique ``name``, a ``kind`` (what it does, for the report) and a
    one-line ``about``."""

    name: str
    kind: str
    about: str = ""

    def settings(self) -> dict[str, Any]:  # pragma: no cover - abstract
        """The step as a TOML-shaped table (what ``recipe show`` prints and the fingerprint)."""
        raise NotImplementedError

    def run(self, ctx: Context) -> dict[str, Any]:  # pragma: no cover - abstract
        """Execute; returns a JSON-serialisable record."""
        raise NotImplementedError

    def semantics(self) -> dict[str, Any]:
        """How the library resolves what the settings leave open, where that once changed (part
        of the fingerprint, so a step made under the older resolution runs again)."""
        return {}

    def fingerprint(self) -> str:
        """A hash of what the step computes (its settings, its description left out)."""
        d = {k: v for k, v in self.settings().items() if k != "about"}
        if self.semantics():
            d["semantics"] = self.semantics()
        text = json.dumps(d, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _trainer_semantics(*, transfers: bool) -> dict[str, Any]:
    """The :meth:`Step.semantics` of a step that trains with the loop: the trainer defaults its
    runs resolve (:func:`~warmrec.training.defaults.trainer_defaults_key`), and for a step that
    transfers how ``transfer`` resolves its trainer
    (:data:`warmrec.transfer.transfer.TRANSFER_TRAINER`)."""
    from warmrec.training.defaults import trainer_defaults_key

    out: dict[str, Any] = {"trainer_defaults": trainer_defaults_key()}
    if transfers:
        from warmrec.transfer.transfer import TRANSFER_TRAINER

        out["transfer_trainer"] = TRANSFER_TRAINER
    return out


@dataclass
class RunStep(Step):
    """One run (module docstring). ``run_config`` is the run config (a dict as in a TOML file);
    ``config_from`` a run config file written by an earlier step, whose ``[model]`` and
    ``[train]`` replace those of ``run_config``; ``test_protocols`` the protocols the test part is
    scored under; ``categories`` an item feature column (tag lists or one value per item) whose
    values are the "subgroups" scored by :func:`subgroup_scores` at each of ``subgroup_k``."""

    kind: str = "train"
    run_config: dict[str, Any] = field(default_factory=dict)
    config_from: str | None = None
    test_protocols: tuple[str, ...] = ("full",)
    categories: str | None = None
    subgroup_k: tuple[int, ...] = (1, 50)
    save: bool = True

    def settings(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.about:
            d["about"] = self.about
        if self.config_from:
            d["config_from"] = self.config_from
        d["test_protocols"] = list(self.test_protocols)
        if self.categories:
            d["categories"] = self.categories
            d["subgroup_k"] = list(self.subgroup_k)
        d["run"] = self.spec_config()
        return d

    def semantics(self) -> dict[str, Any]:
        spec = spec_from_config(self.run_config)
        if spec.transfer is not None:
            return _trainer_semantics(transfers=True)
        model = spec.model
        if self.config_from or (model is not None and model.takes_trainer()):
            return _trainer_semantics(transfers=False)  # (config_from: known when it runs)
        return {}

    def spec_config(self) -> dict[str, Any]:
        """The run config, validated as a :class:`RunSpec` (errors name the step) and written
        back in its TOML shape (defaults left out)."""
        try:
            return spec_from_config(self.run_config).to_config()
        except (ConfigError, ModelError) as e:
            raise ConfigError(f"recipe step {self.name!r}: {e}") from None

    def spec(self, ctx: Context) -> RunSpec:
        cfg = fill_out(self.run_config, str(ctx.out))
        if self.config_from:
            from warmrec.config import load_toml

            tuned = load_toml(fill_out(self.config_from, str(ctx.out)), resolve=False)
            cfg = {**cfg, "model": tuned["model"], "train": tuned.get("train", {})}
            if not cfg["train"]:
                cfg.pop("train")
        try:
            return spec_from_config(cfg)
        except (ConfigError, ModelError) as e:
            raise ConfigError(f"recipe step {self.name!r}: {e}") from None

    def run(self, ctx: Context) -> dict[str, Any]:
        from warmrec.experiments.spec import evaluate_run, fit_run, prepare_run, save_run

        spec = self.spec(ctx)
        prep = prepare_run(spec)
        model = fit_run(spec, prep)
        if self.save:
            save_run(model, ctx.out / "models" / self.name)
        run = model.meta.run
        test: dict[str, dict[str, float]] = {}
        eval_s: dict[str, float] = {}
        for protocol in self.test_protocols:
            ev = spec.eval.model_copy(update={"protocol": protocol})
            t0 = time.perf_counter()
            res = evaluate_run(model, prep.test, spec.model_copy(update={"eval": ev}), prep)
            eval_s[protocol] = time.perf_counter() - t0
            test[protocol] = {k: float(v) for k, v in res.summary.items()}
        n_test = len(prep.test)
        if self.categories:
            cats = category_matrix(prep, self.categories)
            test["subgroups"] = (
                subgroup_scores(model, prep.test, cats, self.subgroup_k) if cats is not None else {}
            )
        record: dict[str, Any] = {
            "model": model.name,
            "config": spec.to_config(absolute=True),
            "fit_s": run.fit_seconds,
            "valid": dict(run.valid),
            "n_valid": run.n_valid,
            "test": test,
            "n_test": n_test,
            "eval_s": eval_s,
            "split": prep.info["split"],
            "split_info": _jsonable(prep.info["split_info"]),
            "sizes": prep.info.get("sizes", {}),
        }
        history = getattr(model.meta, "history", None)
        if history:
            record["history"] = _jsonable(history)
        tr = getattr(model, "train_result", None)
        if tr is not None:
            record["epochs"] = _jsonable(getattr(tr, "history", None) or [])
        tmeta = getattr(model.meta, "transfer", None)
        if tmeta is not None:
            record["transfer"] = _jsonable(
                tmeta.model_dump() if hasattr(tmeta, "model_dump") else tmeta
            )
        features = getattr(model.meta, "features", None)
        if features is not None:
            record["features"] = _jsonable(
                features.model_dump() if hasattr(features, "model_dump") else features
            )
        return record


def category_matrix(prep: Any, column: str) -> np.ndarray | None:
    """``[n_items, n_levels]`` booleans: the values of item feature ``column`` (a tag list or
    one value per item) of each item index; None when the data has no such feature."""
    import polars as pl

    from warmrec.data.schema import ITEM

    feats = prep.item_features
    if feats is None or column not in feats.columns:
        return None
    col = feats.select(ITEM, column)
    if not isinstance(col.schema[column], pl.List):
        col = col.with_columns(pl.concat_list(pl.col(column)))
    col = col.explode(column).drop_nulls()
    levels = sorted(col[column].unique().to_list(), key=str)
    code = {v: i for i, v in enumerate(levels)}
    idx = prep.vocab.encode(col[ITEM])
    cats = np.zeros((len(prep.vocab), max(len(levels), 1)), dtype=bool)
    keep = idx > 0
    cats[idx[keep], [code[v] for v, k in zip(col[column].to_list(), keep) if k]] = True
    return cats


def subgroup_scores(
    model: Any, eval_set: Any, cats: np.ndarray, ks: Sequence[int], batch_size: int = 512
) -> dict[str, float]:
    """The model's ranking read as a ranking of *subgroups* (the Hahow "seen subgroup" task):
    a subgroup ranks where its best-scored item ranks (its first occurrence in the ranked
    catalogue); ``subgroup_map@K`` is the average precision of the target item's subgroups in
    the top ``K`` subgroups (divided by ``min(K, its number of subgroups)``), ``subgroup_hr@K``
    whether any is there. Examples whose target has no subgroup are left out."""
    import torch

    has = cats[eval_set.targets].any(axis=1)
    rows = np.flatnonzero(has)
    if not len(rows):
        return {}
    members = [torch.from_numpy(np.flatnonzero(cats[:, c])) for c in range(cats.shape[1])]
    maxlen = int(getattr(model, "history_len", 50))
    was = getattr(model, "training", None)
    if isinstance(was, bool) and callable(getattr(model, "eval", None)):
        model.eval()
    ap = {k: [] for k in ks}
    hit = {k: [] for k in ks}
    try:
        with torch.no_grad():
            for lo in range(0, len(rows), batch_size):
                idx = rows[lo : lo + batch_size]
                sc = torch.as_tensor(model.score(eval_set.batch(idx, maxlen))).float()
                sc = torch.nan_to_num(sc, nan=-torch.inf)
                sc[:, 0] = -torch.inf
                best = torch.stack(
                    [
                        sc[:, m].max(dim=1).values
                        if len(m)
                        else torch.full((len(idx),), -torch.inf)
                        for m in members
                    ],
                    dim=1,
                )  # [B, n_subgroups]
                rel_all = cats[eval_set.targets[idx]]  # [B, n_subgroups]
                # ties against the model: a relevant subgroup after the others of its score
                order = np.lexsort((rel_all, -best.numpy()), axis=1)
                rel = np.take_along_axis(rel_all, order, axis=1)
                n_rel = rel_all.sum(axis=1)
                for k in ks:
                    r = rel[:, :k]
                    prec = np.cumsum(r, axis=1) / np.arange(1, r.shape[1] + 1)
                    ap[k].append((prec * r).sum(axis=1) / np.minimum(k, n_rel))
                    hit[k].append(r.any(axis=1).astype(float))
    finally:
        if isinstance(was, bool):
            model.train(was)
    out: dict[str, float] = {"n": float(len(rows))}
    for k in ks:
        out[f"subgroup_map@{k}"] = float(np.concatenate(ap[k]).mean())
        out[f"subgroup_hr@{k}"] = float(np.concatenate(hit[k]).mean())
    return out


@dataclass
class CallStep(Step):
    """One call of ``call`` (``"module:function"``, a function of
    :mod:`warmrec.experiments.recipes.steps` or any importable one) as ``fn(ctx, name,
    **params)``; it returns the step's record."""

    kind: str = "call"
    call: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    def settings(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.about:
            d["about"] = self.about
        d["call"] = self.call
        d["params"] = dict(self.params)
        return d

    def semantics(self) -> dict[str, Any]:
        # a call may train anything (a study, a search): every call counts as training
        return _trainer_semantics(transfers="transfer_study" in self.call)

    def function(self) -> Callable[..., dict[str, Any]]:
        module, _, attr = self.call.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ConfigError(f"recipe step {self.name!r}: cannot import {self.call!r}") from e

    def run(self, ctx: Context) -> dict[str, Any]:
        params = fill_out(self.params, str(ctx.out))
        return _jsonable(self.function()(ctx, self.name, **params))


def _jsonable(value: Any) -> Any:
    """JSON round trip with numpy scalars and paths as plain values."""
    import numpy as np

    def default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, Path):
            return str(o)
        return str(o)

    return json.loads(json.dumps(value, default=default))


# -- claims and recipes ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Claim:
    """A figure of the source project set beside ours: what it measures, its value as the
    project states it (or why there is none), where ours is in the results (``ours``: step,
    then keys into its record, e.g. ``("transfer", "test", "sampled-unseen-100",
    "ndcg@10")``), the protocol, and why the two may differ."""

    what: str
    theirs: str
    ours: tuple[str, ...] | None
    protocol: str
    why: str = ""
    value: Any = None
    """Our figure when it is not one value of a record (``ours`` None), e.g. two times."""

    def our_value(self, records: Mapping[str, Any]) -> Any:
        if self.ours is None:
            return self.value
        v: Any = records
        for k in self.ours:
            if not isinstance(v, Mapping) or k not in v:
                return None
            v = v[k]
        return v


class Recipe:
    """A source project's pipeline as steps (module docstring). Subclasses set the class
    attributes and implement :meth:`runs`; :meth:`claims`, :meth:`protocols` and
    :meth:`report_blocks` fill the report."""

    name: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str]
    source: ClassVar[str]
    """The source project: what it is and what it did."""
    inputs: ClassVar[tuple[DataInput, ...]]

    def runs(self, quick: bool, data_paths: Mapping[str, str]) -> list[Step]:
        raise NotImplementedError

    def claims(self, records: Mapping[str, Any]) -> list[Claim]:
        """The source's figures and ours (may depend on the results, e.g. a choice made on
        validation)."""
        return []

    def protocols(self) -> list[str]:
        """One sentence per protocol the recipe measures with."""
        return []

    def report_blocks(self, records: Mapping[str, Any], out: Path) -> list[Any]:
        """Extra report blocks (plots, tables) written into ``out``."""
        return []

    # -- data -------------------------------------------------------------------------------
    def data_paths(self, given: Mapping[str, str] | None = None) -> dict[str, str]:
        """Every input's path: ``given`` (``--data KEY=PATH``) over the defaults under
        :func:`data_root`; an unknown key is an error."""
        given = dict(given or {})
        keys = {i.key for i in self.inputs}
        unknown = sorted(set(given) - keys)
        if unknown:
            raise ConfigError(
                f"--data {unknown[0]}=...: recipe {self.name!r} reads "
                f"{', '.join(sorted(keys))}, not {', '.join(unknown)}"
            )
        root = data_root()
        return {i.key: given.get(i.key, str(root / i.default)) for i in self.inputs}

    def check_data(self, paths: Mapping[str, str]) -> None:
        """Refuse, in one line, a required input that does not exist."""
        for i in self.inputs:
            p = paths.get(i.key)
            if i.required and (p is None or not Path(p).exists()):
                raise DataError(
                    f"recipe {self.name}: no {i.about} at that path (pass --data {i.key}=PATH, "
                    f"or set ${DATA_ROOT_ENV} to the folder holding {i.default})",
                    path=p,
                    expected="an existing file or folder",
                    found="nothing",
                )

    def steps(self, quick: bool, given: Mapping[str, str] | None = None) -> list[Step]:
        """:meth:`runs` with the data paths resolved; step names must be unique."""
        steps = self.runs(quick, self.data_paths(given))
        names = [s.name for s in steps]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"recipe {self.name}: step names repeat: {', '.join(dup)}")
        return steps


# -- running ---------------------------------------------------------------------------------------
def read_state(out: Path, recipe: str) -> dict[str, Any]:
    """``OUT/state.json`` (a fresh state if absent); a folder of another recipe is refused."""
    p = out / STATE
    if not p.is_file():
        return {"version": STATE_VERSION, "recipe": recipe, "steps": {}}
    try:
        state = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise DataError("unreadable recipe state", path=p, expected="JSON", found=str(e)) from None
    if state.get("recipe") != recipe:
        raise ConfigError(
            f"{out}: holds the state of recipe {state.get('recipe')!r}, not {recipe!r}; "
            "choose another --out"
        )
    return state


def data_changed(recorded: Mapping[str, Any], now: Mapping[str, str | None]) -> bool:
    """Whether the data inputs differ from those a state recorded: another set of inputs, or
    one whose log is not the same (:func:`~warmrec.io.same_log`: a file touched but not
    changed is the same, and so is a record of an older warmrec's hash where size and time
    are unchanged)."""
    from warmrec.io import same_log

    if set(recorded) != set(now):
        return True
    for k, fp in now.items():
        rec = recorded[k]
        if rec != fp and (rec is None or fp is None or not same_log(rec, fp)):
            return True
    return False


def write_state(out: Path, state: Mapping[str, Any]) -> None:
    from warmrec.io import atomic_write_text

    atomic_write_text(out / STATE, json.dumps(state, indent=1, sort_keys=False) + "\n")


@dataclass
class RecipeResult:
    """What :func:`run_recipe` did: each step's record, which ran now, the state file and the
    report paths."""

    recipe: str
    records: dict[str, dict[str, Any]]
    ran: list[str]
    skipped: list[str]
    out: Path
    paths: dict[str, Path]
    seconds: float
    peak_rss_mb: float


def run_recipe(
    recipe: Recipe,
    out: str | Path,
    *,
    quick: bool = False,
    data: Mapping[str, str] | None = None,
    progress: bool = False,
) -> RecipeResult:
    """Run (or resume) ``recipe`` into ``out`` and write its report (module docstring)."""
    from warmrec.io import check_output

    out = Path(out)
    steps = recipe.steps(quick, data)  # every step checked before any data is read
    for s in steps:
        s.settings()
    paths = recipe.data_paths(data)
    recipe.check_data(paths)
    check_output(out, kind="dir")
    out.mkdir(parents=True, exist_ok=True)
    state = read_state(out, recipe.name)
    from warmrec.io import fingerprint

    data_fp = {k: fingerprint(v) for k, v in sorted(paths.items())}
    # a data file changed under its name: every step runs again
    changed = data_changed(state.get("data_fingerprints", data_fp), data_fp)
    state.update(quick=quick, data=paths, data_fingerprints=data_fp)
    done = state["steps"]
    ctx = Context(out.resolve(), dict(paths), quick, progress=progress)
    ran, skipped = [], []
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    t_all = time.perf_counter()
    for i, step in enumerate(steps, 1):
        fp = step.fingerprint()
        prev = done.get(step.name)
        same = prev and prev.get("status") == "done" and prev.get("fingerprint") == fp
        if same and not changed:
            ctx.records[step.name] = prev["record"]
            skipped.append(step.name)
            ctx.say(f"{i}/{len(steps)} {step.name}: finished earlier, skipped")
            continue
        if prev and ctx.step_dir(step.name).is_dir():
            # made under other settings or from other inputs (or stale: a step before it ran
            # again): its outputs (a study's run files) are not resumed
            shutil.rmtree(ctx.step_dir(step.name))
        changed = True  # the steps after this one may read what it writes
        for later in steps[i:]:
            # and are stale from now on: a run killed after this step had resumed them (the
            # state already held the new data's fingerprints) with their old records
            if later.name in done:
                done[later.name]["status"] = "stale"
        ctx.say(f"{i}/{len(steps)} {step.name} ({step.kind}) ...")
        t0, c0 = time.perf_counter(), time.process_time()
        record = step.run(ctx)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        ctx.records[step.name] = record
        done[step.name] = {
            "status": "done",
            "kind": step.kind,
            "fingerprint": fp,
            "seconds": seconds,
            "cpu_s": cpu,
            "peak_rss_mb": peak_rss_mb(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "record": record,
        }
        write_state(out, state)
        ran.append(step.name)
        ctx.say(f"{i}/{len(steps)} {step.name}: {seconds:.1f} s")
    # steps no longer in the recipe are dropped from the state
    names = {s.name for s in steps}
    for stale in [n for n in done if n not in names]:
        done.pop(stale)
    total = time.perf_counter() - t_all
    if "invocations" not in state:  # a state written before invocations were kept
        state["invocations"] = [state["last_run"]] if "last_run" in state else []
    state["last_run"] = {"started": started, "seconds": total, "ran": ran, "skipped": skipped}
    state["invocations"].append(state["last_run"])
    write_state(out, state)
    from warmrec.experiments.recipes.report import write_recipe_report

    report_paths = write_recipe_report(recipe, steps, state, out, quick=quick)
    return RecipeResult(
        recipe.name, ctx.records, ran, skipped, out, report_paths, total, peak_rss_mb()
    )


# -- the plan as TOML --------------------------------------------------------------------------------
def _toml_table(prefix: str, table: Mapping[str, Any], lines: list[str]) -> None:
    from warmrec.tuning.results import toml_value

    subs = []
    for k, v in table.items():
        if v is None:
            continue
        if isinstance(v, Mapping) and v and not _inline(v):
            subs.append((k, v))
        else:
            lines.append(f"{_key(k)} = {_inline_value(v, toml_value)}")
    for k, v in subs:
        lines += ["", f"[{prefix}.{_key(k)}]"]
        _toml_table(f"{prefix}.{_key(k)}", v, lines)


def _inline_value(v: Any, toml_value: Callable[[Any], str]) -> str:
    if isinstance(v, Mapping):
        inner = ", ".join(f"{_key(k)} = {_inline_value(x, toml_value)}" for k, x in v.items())
        return "{ " + inner + " }" if inner else "{}"
    return toml_value(v)


def _inline(v: Mapping[str, Any]) -> bool:
    """Small tables of scalars are written inline (``{ type = "int", low = 1 }``)."""
    return len(v) <= 4 and all(not isinstance(x, Mapping | list | tuple) for x in v.values())


def _key(k: str) -> str:
    import re

    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def steps_toml(recipe: Recipe, steps: Sequence[Step], quick: bool, paths: Mapping[str, str]) -> str:
    """The steps of a recipe as TOML (``warmrec recipe show``): one ``[[step]]`` table each, a
    run step's ``[step.run]`` being a run config as ``warmrec train --config`` reads it."""
    lines = [
        f"# recipe {recipe.name}{' (quick)' if quick else ''}: {recipe.title}",
        "# data: " + ", ".join(f"{k} = {v}" for k, v in paths.items()),
        "# {out} is the --out folder of `warmrec recipe run`",
    ]
    for s in steps:
        lines += ["", "[[step]]"]
        _toml_table("step", s.settings(), lines)
    return "\n".join(lines) + "\n"
