"""``warmrec recipe``: list, show and run the recipes of the source projects
(:mod:`warmrec.experiments.recipes`). Heavy imports happen inside the commands."""

from __future__ import annotations

import click

from warmrec.cli.common import emit_json

_DATA_HELP = "KEY=PATH: a recipe input (see `warmrec recipe list`); repeatable."


@click.group()
def recipe() -> None:
    """One command per source project: its pipeline, with its figures beside ours."""


@recipe.command("list")
@click.option("--json", "as_json", is_flag=True)
def list_cmd(as_json: bool) -> None:
    """The recipes, what each redoes, and the data each reads."""
    from warmrec.experiments.recipes import get_recipe, list_recipes
    from warmrec.experiments.recipes.base import data_root

    rows = []
    for name in list_recipes():
        r = get_recipe(name)
        rows.append(
            {
                "name": name,
                "title": r.title,
                "data": {i.key: str(data_root() / i.default) for i in r.inputs},
            }
        )
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        click.echo(f"{row['name']:<16} {row['title']}")
        data = ", ".join(f"{k}={v}" for k, v in row["data"].items())
        click.echo(f"{'':<16} data: {data}")


@recipe.command("show")
@click.argument("name")
@click.option("--quick", is_flag=True, help="The quick plan (tiny epochs and samples).")
@click.option("--data", "data", multiple=True, metavar="KEY=PATH", help=_DATA_HELP)
def show(name: str, quick: bool, data: tuple[str, ...]) -> None:
    """The steps NAME runs, as TOML (a run step's [step.run] is a run config)."""
    from warmrec.experiments.recipes import get_recipe
    from warmrec.experiments.recipes.base import parse_data_args, steps_toml

    r = get_recipe(name)
    given = parse_data_args(data)
    steps = r.steps(quick, given)
    click.echo(steps_toml(r, steps, quick, r.data_paths(given)), nl=False)


@recipe.command("run")
@click.argument("name")
@click.option("--quick", is_flag=True, help="Tiny epochs and samples: minutes, not hours.")
@click.option("--data", "data", multiple=True, metavar="KEY=PATH", help=_DATA_HELP)
@click.option("--out", required=True, help="Output folder; run again into it to resume.")
@click.option("--json", "as_json", is_flag=True)
def run_cmd(name: str, quick: bool, data: tuple[str, ...], out: str, as_json: bool) -> None:
    """Run recipe NAME into --out (resuming its finished steps) and write its report."""
    from warmrec.experiments.recipes import get_recipe, run_recipe
    from warmrec.experiments.recipes.base import parse_data_args

    r = get_recipe(name)
    res = run_recipe(r, out, quick=quick, data=parse_data_args(data), progress=not as_json)
    summary = {
        "recipe": res.recipe,
        "ran": res.ran,
        "resumed": res.skipped,
        "seconds": round(res.seconds, 1),
        "peak_rss_mb": round(res.peak_rss_mb, 1),
        "report": {k: str(v) for k, v in res.paths.items()},
    }
    if as_json:
        emit_json(summary)
        return
    click.echo(
        f"recipe {res.recipe}: {len(res.ran)} steps ran, {len(res.skipped)} resumed, "
        f"{res.seconds:.1f} s, peak memory {res.peak_rss_mb:.0f} MiB"
    )
    click.echo(f"report: {res.paths['report_md']} and {res.paths['report_html']}")
