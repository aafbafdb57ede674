"""``warmrec auto``'s entry point (:func:`auto`): arguments checked, a run started or resumed from
``OUT/auto_state.json`` (4, refused under other settings), searched and finished."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from warmrec.errors import ConfigError
from warmrec.experiments.auto.budget import parse_budget
from warmrec.experiments.auto.executors import LocalExecutor, RayExecutor
from warmrec.experiments.auto.plan import FAMILIES, NETWORKS, find_spaces, plan_portfolio
from warmrec.experiments.auto.profile import cold_targets, describe_log
from warmrec.experiments.auto.report import finish
from warmrec.experiments.auto.search import STATE, STATE_VERSION, AutoSearch, spent_before
from warmrec.experiments.auto.steps import StepContext, resolve_cold_share
from warmrec.experiments.auto.text import settle_text_trials


def _state_args(
    data: Any,
    split: Any,
    metric: str,
    families: Any,
    seed: int,
    spaces: Any,
    cold_target_share: float | str | None = None,
) -> dict[str, Any]:
    """What a resumed run must share with the first (its plan, trials and checkpoints were made
    under them): the arguments, the search spaces' content, and the trainer defaults the
    networks resolve (:func:`~warmrec.training.defaults.trainer_defaults_key`)."""
    from warmrec.training.defaults import trainer_defaults_key

    args = {
        "data": data,
        "split": split,
        "metric": metric,
        "cold_target_share": cold_target_share,
        "families": sorted(set(families)) if families else None,
        "seed": seed,
        # what the search draws from (its files' content)
        "spaces": {name: sp.record() for name, sp in sorted(find_spaces(spaces).items())},
        "trainer_defaults": trainer_defaults_key(),
    }
    return json.loads(json.dumps(args, default=str))  # as the state file reads them back


def check_cold_share(value: Any) -> float | str | None:
    """``--cold-target-share``: None, ``"catalogue"`` or a share in [0, 1]."""
    if value is None or value == "catalogue":
        return value
    try:
        share = float(value)
    except (TypeError, ValueError):
        share = float("nan")
    if not 0.0 <= share <= 1.0:
        raise ConfigError(
            f"--cold-target-share: expected a share in [0, 1] or 'catalogue', found {value!r}"
        )
    return share


def cold_note(ctx: StepContext, share: float | str) -> str:
    """The report's note on how validation weighs the targets on new items."""
    cold = cold_targets(ctx.prepared.train, ctx.prepared.valid)
    value = f"{100 * resolve_cold_share(ctx.prepared, share):.1f} %"
    what = (
        f"the catalogue's share of items without a training event, {value}"
        if share == "catalogue"
        else value
    )
    if ctx.weights is None:
        return (
            f"--cold-target-share {share}: no effect, validation has "
            + ("no target" if not cold.any() else "only targets")
            + " on items without a training event"
        )
    return (
        f"--cold-target-share {share}: the validation figure that chooses weighs the "
        f"{int(cold.sum()):,} targets on items without a training event "
        f"({100 * float(cold.mean()):.1f} % of validation) as {what} of it (the others as the "
        "rest); the networks' early stopping and the hybrid's weight still read the plain figure"
    )


def auto(
    data: Any,
    *,
    out: str | Path,
    budget: str | float = "10m",
    metric: str = "ndcg@10",
    cold_target_share: float | str | None = None,
    split: str | Mapping[str, Any] | None = None,
    families: list[str] | None = None,
    spaces: str | Path | None = None,
    address: str | None = None,
    seed: int = 0,
    progress: bool | None = None,
    started: float | None = None,
) -> dict[str, Any]:
    """Choose a recommender for a log within a wall-clock budget (see the package docstring).

    ``data``: a path (file, folder or dataset name), a ``[data]`` table (path and read options),
    or a canonical table / :class:`~warmrec.data.readers.Interactions` in memory (local runs
    only; the saved model then records no data source). ``split``: a method name or a
    ``[split]`` table (default: the default split policy). ``families``: a subset of
    :data:`FAMILIES` (default all that fit the log). ``spaces``: a folder of
    ``<family>.toml`` search spaces (default: the built-in ones). ``cold_target_share``: weigh
    the validation targets on items without a training event as this share of the metric
    (``"catalogue"``: the catalogue's share of such items) when choosing (default: as they
    come; :func:`~warmrec.experiments.auto.steps.cold_weights`). ``address``: ``HOST:PORT`` of
    a Ray cluster (or ``"local"`` for Ray on this machine). ``progress``: a line per step on
    stderr (default: when stderr is a terminal). ``started``: ``time.time()`` the budget counts
    from (default now; the CLI passes its own start).

    Returns the summary also written to ``OUT/summary.json``; the winner is in ``OUT/model``."""
    t_start = time.time() if started is None else float(started)
    budget_s = parse_budget(budget)
    from warmrec.evaluation.metrics import parse_rank_metric
    from warmrec.experiments.spec import prepare_run, spec_from_config
    from warmrec.io import check_output
    from warmrec.tuning.local import check_seed

    metric = parse_rank_metric(metric, "--metric").label
    check_seed(seed)
    cold_target_share = check_cold_share(cold_target_share)
    if families is not None:
        names = [f.name for f in FAMILIES]
        bad = [f for f in families if f not in names]
        if bad or not families:
            raise ConfigError(
                f"--families: expected names among {', '.join(names)}, found "
                f"{', '.join(bad) if bad else 'none'}"
            )
        families = list(dict.fromkeys(families))  # a name given twice is one family
    out = check_output(out, kind="dir")
    frame = None
    if isinstance(data, (str, Path)):
        data_cfg: dict[str, Any] | None = {"path": str(data)}
    elif isinstance(data, Mapping):
        data_cfg = dict(data)
    else:
        data_cfg, frame = None, data
        if address is not None:
            raise ConfigError(
                "--address: a Ray cluster reads the log from a path; give data as a path"
            )
    split_cfg = {"method": split} if isinstance(split, str) else dict(split or {})
    base_cfg: dict[str, Any] = {"split": split_cfg}
    if data_cfg is not None:
        base_cfg["data"] = data_cfg
    base_spec = spec_from_config(base_cfg)
    args = _state_args(
        data_cfg or {"in_memory": _frame_fingerprint(frame)},
        split_cfg,
        metric,
        families,
        seed,
        spaces,
        cold_target_share,
    )
    state_path = out / STATE
    state: dict[str, Any] | None = None
    finished: dict[str, Any] | None = None  # read back once the data is known to be the same
    if state_path.exists():
        try:
            state = json.loads(state_path.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(
                f"{state_path}: not a readable auto state ({e}); move it away or choose "
                "another --out"
            ) from None
        if state.get("version") != STATE_VERSION:
            raise ConfigError(
                f"{state_path}: auto state version {state.get('version')!r}, expected "
                f"{STATE_VERSION}; choose another --out"
            )
        old = dict(state.get("args", {}))
        if isinstance(old.get("families"), list):  # stored with a name twice before 2026-12-08
            old["families"] = sorted(set(old["families"]))
        diff = [k for k in args if old.get(k) != args[k]]
        if diff:
            k = diff[0]
            was, now = repr(old.get(k)), repr(args[k])
            what = f"{k} {was} there, {now} now" if len(was + now) <= 120 else f"{k} differ"
            raise ConfigError(
                f"--out {out}: holds an auto run with other settings ({what}); use the same "
                "settings to resume it, or another --out"
            )
        if state.get("phase") == "done" and (out / "summary.json").exists():
            try:
                done = json.loads((out / "summary.json").read_text())
            except (OSError, ValueError) as e:
                raise ConfigError(
                    f"{out / 'summary.json'}: not a readable auto summary ({e}); move the "
                    "folder away or choose another --out"
                ) from None
            if abs(float(done.get("budget_s", budget_s)) - budget_s) > 0.5:
                raise ConfigError(
                    f"--out {out}: holds a finished auto run with a budget of "
                    f"{float(done['budget_s']):.0f} s, not {budget_s:.0f} s (a finished run is "
                    "read back, not searched further); give another --out, or its budget to "
                    "read it"
                )
            finished = done
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    prepared = prepare_run(base_spec, data=frame)
    base = prepared.info["spec"]
    from warmrec.experiments.studies.stored import prepared_fingerprint

    fp = prepared_fingerprint(prepared)  # a log (or feature file) overwritten, or another frame
    if state is not None and state.get("data_fingerprint", fp) != fp:
        raise ConfigError(
            f"--out {out}: holds an auto run on other data (the log's content differs from "
            "what it searched); give another --out"
        )
    if finished is not None:
        return finished
    profile = describe_log(prepared)
    space_map = find_spaces(spaces)
    if state is None:
        plan = plan_portfolio(profile, families, spaces=space_map, metric=metric)
        if not plan.families:  # it had searched nothing, then said "give more time"
            why = "; ".join(f"{f}: {w}" for f, w in plan.left_out.items())
            raise ConfigError(
                f"--families {','.join(families or [])}: none of them fits this log ({why}); "
                "name others, or leave --families out"
            )
        text_s = settle_text_trials(plan, prepared.train, budget_s - (time.time() - t_start))
        state = {
            "version": STATE_VERSION,
            "args": args,
            "data_fingerprint": fp,
            "data": data_cfg or {},
            "phase": "search",
            "spent_s": 0.0,
            "round": 0,
            "families": plan.families,
            "alive": list(plan.families),
            "dropped": {},
            "left_out": plan.left_out,
            "exclude_seen": plan.exclude_seen,
            "notes": plan.notes,
            "hybrid_pair": None,
            "trials": [asdict(t) for t in plan.trials],
            "timings": {"text_s": text_s} if text_s else {},
            "load": [],
            "invocations": 0,
        }
    else:
        state["spent_s"] = spent_before(out, state)  # a kill inside a step: its time counts
        for t in state["trials"]:  # what a kill interrupted runs again (a network resumes)
            if t["status"] == "running":
                t["status"] = (
                    "paused" if (t["family"] in NETWORKS and t.get("value")) else "pending"
                )
    state["invocations"] = int(state.get("invocations", 0)) + 1
    with contextlib.suppress(OSError):
        state.setdefault("load", []).append(round(__import__("os").getloadavg()[0], 2))
    show = bool(getattr(sys.stderr, "isatty", lambda: False)()) if progress is None else progress
    ctx = StepContext(prepared, base, work, metric, cold_target_share)
    if state["invocations"] == 1 and cold_target_share is not None:
        state["notes"].append(cold_note(ctx, cold_target_share))
    if address is not None:
        executor: Any = RayExecutor(
            address, base.to_config(absolute=True), work, metric, cold_target_share
        )
    else:
        executor = LocalExecutor(ctx)
    try:
        search = AutoSearch(
            out=out,
            ctx=ctx,
            state=state,
            spaces=space_map,
            executor=executor,
            budget_s=budget_s,
            t_start=t_start,
            progress=show,
            seed=seed,
        )
        if state["invocations"] == 1:
            for line in profile.lines():
                search.say(f"log: {line}")
            for note in state["notes"]:
                search.say(f"plan: {note}")
        else:
            search.say(
                f"resuming: {sum(t.value is not None for t in search.trials.values())} trials "
                f"scored, {search.spent_prev:.0f} s of {budget_s:.0f} s spent"
            )
        if state["invocations"] == 1:
            state["timings"]["prepare_s"] = time.time() - t_start
        search.save()
        with search.ticking():
            search.run()
    finally:
        # before the final step (which runs here): Ray's shutdown is part of the command's
        # time, and of elapsed_s (the reserve keeps its seconds)
        executor.close()
    summary = finish(search, state["notes"], profile)
    if summary["winner"] is None:
        raise ConfigError(_no_winner(search, out, budget))
    return summary


def _no_winner(search: AutoSearch, out: Path, budget: str | float) -> str:
    """Why no model was picked: every family's best failed the final step, or every trial
    failed (more time would not help either way: the first error and where the others are),
    or no step fitted and scored within the budget (a trial cut or never run)."""
    trials = list(search.trials.values())
    failed = [t for t in trials if t.status == "failed"]
    # scored on validation, then left out of the final step (its model does not load, or its
    # test scoring raised): every family's best was, and the run must not ask for more time
    final = ("its saved model does not load", "its test scoring failed")  # report.finish's
    left_out = [t for t in trials if t.value is not None and str(t.error or "").startswith(final)]
    if left_out:
        return (
            f"no model was picked: every family's best was left out of the final step "
            f"({len(left_out)}; the first, {left_out[0].id}: {left_out[0].error}); every error "
            f"is in {out / 'trials.csv'}"
        )
    if failed and len(failed) == len(trials):  # a cut trial: more time would help
        return (
            f"every trial failed, none was scored ({len(failed)} failed; the first, "
            f"{failed[0].id}: {failed[0].error}); every error is in {out / 'trials.csv'}"
        )
    prepare_s = search.state["timings"].get("prepare_s", 0)
    return (
        f"--budget {budget}: no model was fitted and scored within the budget (starting, "
        f"reading and describing the log took {prepare_s:.1f} s"
        + (f"; {len(failed)} trials failed, see {out / 'trials.csv'}" if failed else "")
        + "); give more time"
    )


def _frame_fingerprint(frame: Any) -> str | bool:
    """A content hash of a log given in memory (a Polars or pandas frame, or Interactions),
    so that another frame does not resume (or read back) its folder; True where none."""
    import polars as pl

    from warmrec.experiments.studies.stored import data_fingerprint

    table = getattr(frame, "interactions", frame)
    if type(table).__module__.split(".")[0] == "pandas":
        table = pl.from_pandas(table)
    if not isinstance(table, pl.DataFrame):
        return True
    features = (getattr(frame, "item_features", None), getattr(frame, "user_features", None))
    return data_fingerprint(table, *features)
