"""``warmrec study curve``: the learning curve (:mod:`warmrec.experiments.studies.curve`).

A metric against the share of training sequences (``--fractions``), one line per arm
(``--arms scratch,transfer:DIR,LABEL=transfer:DIR2,model:NAME,LABEL=model:NAME:key=value``: a
model arm is a baseline at its defaults or with the config keys given after its name, values read
as ``--set`` values; :func:`~warmrec.experiments.studies.curve.parse_arm`), ``--seeds`` seeds;
every run is a run spec (the TOML ``--config`` with ``[data] [split] [model] [train] [eval]
[transfer]``, the flags and ``--set`` over it) run by the run owner. Writes the table (95 % CIs
over seeds, the ratio to scratch with a paired per-user bootstrap interval), the plot and a
Markdown + HTML report to ``--out`` with the protocol stated, and resumes there (``--no-resume``
starts over).
"""

from __future__ import annotations

from pathlib import Path

import click

from warmrec.cli.common import (
    command_config,
    data_options,
    emit_json,
    flag_config,
    format_table,
    set_option,
)


def _csv(value: str, what: str, conv=str) -> tuple:
    try:
        items = tuple(conv(x.strip()) for x in value.split(",") if x.strip())
    except ValueError as e:
        raise click.BadParameter(
            f"expected a comma-separated list, found {value!r}", param_hint=what
        ) from e
    if not items:
        raise click.BadParameter(f"expected at least one value, found {value!r}", param_hint=what)
    return items


@click.command("curve")
@click.option("--data", "path", default=None, help="Target log (file, folder or dataset name).")
@data_options
@click.option(
    "--split",
    default=None,
    help="Split method: auto (default), loo, loo_new, temporal, last_session, user, given.",
)
@click.option("--model", "model_name", default=None, help="Model of the scratch arm.")
@click.option(
    "--arms",
    default="scratch",
    show_default=True,
    help="Comma-separated: scratch, transfer:DIR (a pre-trained source), model:NAME (another "
    "model at its defaults: a baseline; model:NAME:key=value:key2=value2 sets its config keys, "
    "values as in --set), each optionally LABEL=..., e.g. "
    "scratch,model:pop,fr=model:featrank:fit_valid=false",
)
@click.option("--fractions", default="0.01,0.05,0.1,0.25,1", show_default=True)
@click.option("--seeds", "n_seeds", default=3, show_default=True, type=int, help="Seeds 0..N-1.")
@click.option("--exclude-seen", is_flag=True, default=None, help="Never rank seen items.")
@click.option("--epochs", type=int, default=None, help="Maximum epochs (train.epochs).")
@click.option("--metric", default="ndcg@10", show_default=True, help="Metric of ratio and plot.")
@click.option(
    "--min-train", default=10, show_default=True, type=int, help="Fewest training sequences."
)
@click.option("--config", "config_file", default=None, help="TOML run spec (+ [transfer]).")
@set_option("--set transfer.strategy=freeze --set train.lr=0.003")
@click.option("--out", default="warmrec-out/curve", show_default=True)
@click.option("--no-resume", is_flag=True, help="Discard earlier runs in --out.")
@click.option("--json", "as_json", is_flag=True)
def study_curve(
    path,
    fmt,
    cols,
    no_timestamp,
    order,
    sep,
    split,
    model_name,
    arms,
    fractions,
    n_seeds,
    exclude_seen,
    epochs,
    metric,
    min_train,
    config_file,
    sets,
    out,
    no_resume,
    as_json,
):
    """Learning curve: scratch vs transfer arms over fractions of the training data and seeds."""
    from warmrec.experiments.spec import spec_from_config
    from warmrec.experiments.studies.curve import run_curve, split_arms

    if n_seeds < 1:
        raise click.BadParameter(f"expected >= 1, found {n_seeds}", param_hint="--seeds")
    flags = flag_config(path, fmt, cols, no_timestamp, order, sep, split)
    if model_name:
        flags["model"] = {"name": model_name}
    if exclude_seen:
        flags["eval"] = {"exclude_seen": True}
    if epochs is not None:
        flags["train"] = {"epochs": epochs}
    cfg = command_config(config_file, sets, flags)
    arm_list = split_arms(arms)
    if not arm_list:
        raise click.BadParameter(f"expected at least one arm, found {arms!r}", param_hint="--arms")
    transfer = cfg.get("transfer")
    if transfer is None and not cfg.get("model") and any("transfer:" in a for a in arm_list):
        transfer = {}  # transfer arms only: the sources decide the model, --epochs trains them
    if isinstance(transfer, dict) and "source" not in transfer:
        cfg["transfer"] = {**transfer, "source": "."}  # each transfer arm gives its own
    base = spec_from_config(cfg)
    res = run_curve(
        base,
        arm_list,
        fractions=_csv(fractions, "--fractions", float),
        seeds=tuple(range(n_seeds)),
        out_dir=out,
        resume=not no_resume,
        primary=metric,
        min_train_sequences=min_train,
        progress=not as_json,
    )
    if as_json:
        emit_json(
            {
                "protocol": res.protocol,
                "computed": res.computed,
                "summary": res.summary.to_dicts(),
                "paths": {k: str(v) for k, v in res.paths.items()},
            }
        )
    else:
        click.echo(f"protocol: {res.protocol}")
        click.echo(format_table(res.table))
        click.echo(f"runs computed now: {len(res.computed)}")
        click.echo(f"written: {Path(out) / 'results.md'}, {res.paths['report_html']}")
