"""``warmrec auto``: choose a recommender for a log within a wall-clock budget (see
:mod:`warmrec.experiments.auto`). Heavy imports happen inside the command."""

from __future__ import annotations

import time

import click

from warmrec.cli.common import (
    data_options,
    emit_json,
    flag_config,
    load_config,
    resplit_option,
)


def process_start() -> float:
    """``time.time()`` at which this process started (Linux ``/proc``; elsewhere: now), so
    that the budget counts the interpreter's start-up too."""
    import os

    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat", encoding="ascii") as f:
            boot = next(int(x.split()[1]) for x in f if x.startswith("btime"))
        started = boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()
    now = time.time()
    return started if now - 600 < started <= now else now


def data_split_config(base: dict, sets: tuple[str, ...]) -> dict:
    """The flags' ``[data]``/``[split]`` sections with ``--set`` over them; a key outside those
    two sections is refused (the portfolio owns every ``[model]``/``[train]``/``[eval]``)."""
    from warmrec.errors import ConfigError

    for item in sets:
        section = item.split("=", 1)[0].strip().split(".", 1)[0]
        if section not in ("data", "split") or "." not in item.split("=", 1)[0]:
            raise ConfigError(
                f"--set {item}: expected data.KEY=VALUE or split.KEY=VALUE (auto chooses the "
                "model, training and evaluation settings itself)"
            )
    return load_config(None, sets, base=base)


@click.command(
    epilog="Every family first runs at its defaults, then samples its built-in search space "
    "(warmrec.tuning.builtin_spaces(), configs/spaces/ in a checkout); "
    "time is shared by successive halving across families on the validation metric, and the "
    "final step (test scoring, saving, the report) is inside the budget. Running the same "
    "command into the same --out after a kill resumes it and spends what is left of the budget."
)
@click.option("--data", "path", required=True, help="Interaction log (file, folder or dataset).")
@data_options
@click.option("--split", default=None, help="loo, temporal, last_session or user (default: auto).")
@resplit_option
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="A [data] or [split] option, e.g. --set split.time_order=recbole or "
    "--set split.test_days=30 (the split of a benchmark to compare with).",
)
@click.option(
    "--budget",
    default="10m",
    show_default=True,
    help="Wall-clock time for the whole command: 90s, 10m, 1h.",
)
@click.option(
    "--metric", default="ndcg@10", show_default=True, help="Validation metric that chooses."
)
@click.option(
    "--cold-target-share",
    default=None,
    metavar="SHARE|catalogue",
    help="Weigh the validation targets on items without a training event as this share of "
    "the metric (or 'catalogue': the catalogue's share of such items) when choosing: for a "
    "catalogue that keeps growing, where the served period will have more new items than the "
    "validation period (default: as they come).",
)
@click.option(
    "--families",
    default=None,
    help="Comma-separated subset of the portfolio (default: every family that fits the log).",
)
@click.option(
    "--spaces",
    default=None,
    help="Folder of <family>.toml search spaces (default: the built-in ones).",
)
@click.option(
    "--address", default=None, help="Ray cluster HOST:PORT: run the steps there (same code)."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the samplers.")
@click.option("--out", required=True, help="Output folder (leaderboard, model/, winner.toml).")
@click.option(
    "--progress/--no-progress",
    default=None,
    help="A line per step on stderr (default: when stderr is a terminal).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def auto_cmd(
    path,
    fmt,
    cols,
    no_timestamp,
    order,
    sep,
    split,
    resplit,
    sets,
    budget,
    metric,
    cold_target_share,
    families,
    spaces,
    address,
    seed,
    out,
    progress,
    as_json,
):
    """Choose the best recommender for a log on validation, within a time budget."""
    started = process_start()
    from warmrec.experiments.auto import auto

    cfg = data_split_config(
        flag_config(path, fmt, cols, no_timestamp, order, sep, split, resplit), sets
    )
    fams = [f.strip() for f in families.split(",") if f.strip()] if families else None
    res = auto(
        cfg["data"],
        out=out,
        budget=budget,
        metric=metric,
        cold_target_share=cold_target_share,
        split=cfg.get("split"),
        families=fams,
        spaces=spaces,
        address=address,
        seed=seed,
        progress=progress,
        started=started,
    )
    if as_json:
        emit_json(res)
        return
    from pathlib import Path

    click.echo((Path(out) / "leaderboard.md").read_text(), nl=False)
    w = res["winner"]
    label = res["metric"]
    click.echo(
        f"pick: {w['trial']} ({w['origin']}): validation {label}"
        + (f" ({res['valid_weighed']})" if res.get("valid_weighed") else "")
        + f" {w['valid_value']:.4f}, "
        f"test {w['test'].get(label, float('nan')):.4f}; seen items {w['seen_items']}"
    )
    click.echo(f"model: {w['model_dir']}   spec: {w['config']}   report: {Path(out) / 'report.md'}")
    click.echo(f"{res['elapsed_s']:.1f} s of a {res['budget_s']:.0f} s budget")
