"""``warmrec demo``: baselines (and neural models) fitted and evaluated on one dataset."""

from __future__ import annotations

import click

from warmrec.cli.common import emit_json, format_table, load_config, resplit_option


@click.command()
@click.option("--data", default=None, help="A real dataset (default: generated synthetic data).")
@click.option("--format", "fmt", default=None, help="Input format or dataset name.")
@click.option(
    "--split",
    default=None,
    help="loo, temporal, last_session or user (default: last_session for session logs, else loo).",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="split.KEY=VALUE",
    help="Split options, as in `warmrec train`, e.g. --set split.test_days=7.",
)
@resplit_option
@click.option("--models", default=None, help="Comma-separated model names (default: all).")
@click.option("--out", default="warmrec-out/demo", show_default=True, help="Output folder.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--no-transfer",
    is_flag=True,
    help="Skip the transfer study (run only without --data/--models).",
)
@click.option(
    "--no-coldstart",
    is_flag=True,
    help="Skip the user cold-start study (run only without --data/--models).",
)
@click.option("--json", "as_json", is_flag=True)
def demo(data, fmt, split, sets, resplit, models, out, seed, no_transfer, no_coldstart, as_json):
    """Generate data (or read --data), fit every baseline, evaluate, print the table."""
    from warmrec.errors import ConfigError
    from warmrec.experiments.demo import check_models, run_demo

    names = tuple(m.strip() for m in models.split(",")) if models is not None else None
    check_models(names)  # before any data is read
    cfg = load_config(None, sets)
    bad = sorted(set(cfg) - {"split"})
    if bad:
        raise ConfigError(
            f"--set {bad[0]}.KEY: demo takes only split options (--set split.KEY=VALUE)"
        )
    split_options = dict(cfg.get("split", {}))
    split = split or split_options.pop("method", None)
    table, info = run_demo(
        data,
        fmt=fmt,
        out=out,
        models=names,
        split=split,
        split_options=split_options,
        resplit=resplit,
        seed=seed,
        progress=False if as_json else None,  # bars on a terminal, not in a log file
        transfer=False if no_transfer else None,
        coldstart=False if no_coldstart else None,
    )
    transfer_rows = info.pop("transfer_summary", None)
    coldstart_rows = info.pop("coldstart_summary", None)
    if as_json:
        res = {"info": info, "results": table.to_dicts()}
        if transfer_rows is not None:
            res["transfer"] = transfer_rows
        if coldstart_rows is not None:
            res["coldstart"] = coldstart_rows
        emit_json(res)
    else:
        for k, v in info.items():
            click.echo(f"{k}: {v}")
        click.echo(format_table(table))
        click.echo(f"written: {out}/results.md, {out}/results.csv")
        if "transfer_results" in info:
            from pathlib import Path

            click.echo("\ntransfer study (synthetic source -> target):")
            click.echo(Path(info["transfer_results"]).read_text())
        if "coldstart_results" in info:
            from pathlib import Path

            click.echo("\nuser cold start (synthetic ratings, planted per-user offset):")
            click.echo(Path(info["coldstart_results"]).read_text())
