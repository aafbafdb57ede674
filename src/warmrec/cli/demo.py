"""``warmrec demo``: baselines (and neural models) fitted and evaluated on one dataset."""

from __future__ import annotations

import click

from warmrec.cli.common import emit_json, format_table, resplit_option


@click.command()
@click.option("--data", default=None, help="A real dataset (default: generated synthetic data).")
@click.option("--format", "fmt", default=None, help="Input format or dataset name.")
@click.option("--split", default=None, help="Split method (default: last_session or loo).")
@resplit_option
@click.option("--models", default=None, help="Comma-separated model names (default: all).")
@click.option("--out", default="warmrec-out/demo", show_default=True, help="Output folder.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--no-transfer",
    is_flag=True,
    help="Skip the transfer study (run only without --data/--models).",
)
@click.option("--json", "as_json", is_flag=True)
def demo(data, fmt, split, resplit, models, out, seed, no_transfer, as_json):
    """Generate data (or read --data), fit every baseline, evaluate, print the table."""
    from warmrec.experiments.demo import run_demo

    names = tuple(m.strip() for m in models.split(",")) if models else None
    table, info = run_demo(
        data,
        fmt=fmt,
        out=out,
        models=names,
        split=split,
        resplit=resplit,
        seed=seed,
        progress=not as_json,
        transfer=False if no_transfer else None,
    )
    if as_json:
        emit_json({"info": info, "results": table.to_dicts()})
    else:
        for k, v in info.items():
            click.echo(f"{k}: {v}")
        click.echo(format_table(table))
        click.echo(f"written: {out}/results.md, {out}/results.csv")
        if "transfer_results" in info:
            from pathlib import Path

            click.echo("\ntransfer study (synthetic source -> target):")
            click.echo(Path(info["transfer_results"]).read_text())
