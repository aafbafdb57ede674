"""``warmrec tune``: a hyperparameter search over a TOML search space (Optuna locally, Ray Tune on
a cluster). Heavy imports happen inside the command."""

from __future__ import annotations

import click

from warmrec.cli.common import (
    command_config,
    data_options,
    echo_mapping,
    emit_json,
    flag_config,
    resplit_option,
    set_option,
)


@click.command(
    epilog="The space file's [model] and [train] tables name the searched settings; without "
    "--space the model's built-in space is searched (shipped with the package; the same files "
    "as configs/spaces/ in a checkout). Trials are scored on validation only; the best configuration is refitted "
    "and evaluated once on test. Running the same command into the same --out resumes (the optuna "
    "backend; a Ray search is refused there), with new "
    "draws (the sampler is seeded with --seed plus the trials already run); an --out holding a "
    "search with another model, space, data, split or trainer defaults is refused (study.json)."
)
@click.option("--model", "model_name", default=None, help="Registered model name.")
@click.option("--data", "path", default=None, help="Interaction log (file or folder).")
@data_options
@click.option(
    "--split",
    default=None,
    help="auto (default: loo for user logs, last_session for session logs), loo, temporal "
    "(--set split.test_start=DATE), last_session, user or the other methods of train --split.",
)
@resplit_option
@click.option(
    "--space",
    "space_path",
    default=None,
    help="Search space TOML file (default: the model's built-in space).",
)
@click.option("--trials", type=int, required=True, help="Finished trials wanted in total.")
@click.option(
    "--backend",
    type=click.Choice(["optuna", "ray"]),
    default="optuna",
    show_default=True,
    help="optuna: this machine (SQLite study in --out); ray: Ray Tune (local or --address).",
)
@click.option("--address", default=None, help="Ray cluster address HOST:PORT (--backend ray only).")
@click.option("--timeout", type=float, default=None, help="Stop starting trials after S seconds.")
@click.option(
    "--n-jobs",
    type=int,
    default=1,
    show_default=True,
    help="Trials run at once (above 1 the trials' parameters depend on which finishes first: "
    "the search is not repeatable, --seed notwithstanding).",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the sampler: a search with --n-jobs 1 (and a local study) repeats exactly.",
)
@click.option(
    "--pruner",
    type=click.Choice(["median", "none"]),
    default="median",
    show_default=True,
    help="Stop trials whose per-epoch validation metric is below the median (ASHA on Ray).",
)
@click.option("--cpus-per-trial", type=float, default=1.0, show_default=True, help="Ray only.")
@click.option("--gpus-per-trial", type=float, default=0.0, show_default=True, help="Ray only.")
@click.option(
    "--max-failures",
    type=int,
    default=2,
    show_default=True,
    help="Ray: retries per trial whose node or process dies or that crashes; warmrec's own "
    "errors are not retried (values that do not go together fail the trial, bad data or "
    "config stops the search, as with optuna).",
)
@click.option(
    "--config", "config_file", default=None, help="TOML experiment file ([data], [split], [eval])."
)
@set_option(
    "--set train.epochs=1 --set eval.exclude_seen=true (model./train. values replace the "
    "space's fixed ones; a searched parameter cannot be set)"
)
@click.option("--out", required=True, help="Output folder (study, tables, plots, best.toml).")
@click.option(
    "--progress/--no-progress", default=True, show_default=True, help="A line per trial on stderr."
)
@click.option("--json", "as_json", is_flag=True)
def tune(
    model_name,
    path,
    fmt,
    cols,
    no_timestamp,
    order,
    sep,
    split,
    resplit,
    space_path,
    trials,
    backend,
    address,
    timeout,
    n_jobs,
    seed,
    pruner,
    cpus_per_trial,
    gpus_per_trial,
    max_failures,
    config_file,
    sets,
    out,
    progress,
    as_json,
):
    """Search hyperparameters on validation; write the trials, plots and the best config."""
    from warmrec.tuning.run import run_tune

    flags = flag_config(path, fmt, cols, no_timestamp, order, sep, split, resplit)
    cfg = command_config(config_file, sets, flags)
    res = run_tune(
        cfg,
        model=model_name,
        space_path=space_path,
        trials=trials,
        out=out,
        backend=backend,
        address=address,
        timeout=timeout,
        n_jobs=n_jobs,
        seed=seed,
        pruner=pruner,
        progress=progress,
        cpus_per_trial=cpus_per_trial,
        gpus_per_trial=gpus_per_trial,
        max_failures=max_failures,
    )
    if as_json:
        emit_json({k: v for k, v in res.items() if k != "rows"})
        if res["best"] is None:
            _no_trial_completed(res)
        return
    from pathlib import Path

    click.echo((Path(out) / "trials.md").read_text(), nl=False)
    click.echo(
        f"{res['trials']} trials ({res['n_complete']} complete, {res['n_pruned']} pruned, "
        f"{res['n_failed']} failed"
        + (f", {res['n_interrupted']} interrupted" if res.get("n_interrupted") else "")
        + f") in {res['wall_s']:.1f} s; the refit, test and plots "
        f"{res.get('finish_s', 0.0):.1f} s"
    )
    best = res["best"]
    if best is None:
        _no_trial_completed(res)
    click.echo(f"best trial {best['trial']}: {best['params']}")
    echo_mapping({f"valid {k}": v for k, v in best["valid"].items()})
    refit = best.get("refit_valid")
    if refit is not None and refit != best["valid"]:  # the test figures are the refit model's
        echo_mapping({f"valid {k} (refit)": v for k, v in refit.items()})
    echo_mapping({f"test {k}": v for k, v in best.get("test", {}).items()})
    click.echo(f"best config: {best['config']} (warmrec train --config {best['config']} --out DIR)")


def _no_trial_completed(res: dict) -> None:
    from warmrec.errors import ModelError

    errors = [r["error"] for r in res.get("rows", []) if r.get("error")]
    why = f"; the first failure: {errors[0]}" if errors else ""
    raise ModelError(f"no trial completed ({res['trials']} run, see trials.csv){why}")
