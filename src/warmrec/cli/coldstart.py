"""``warmrec study coldstart``: the user cold-start study (:mod:`warmrec.experiments.studies.coldstart`).

Meta-train / meta-valid / meta-test users, ``--shots`` revealed events per test user, every
method of ``--methods`` over ``--seeds`` seeds; writes the table (95 % CIs, paired tests
against per-user fine-tuning), the NDCG@10-vs-shots plot and a Markdown + HTML report to
``--out``, and resumes there after an interruption (``--no-resume`` starts over).
``--protocol melo`` is MELO's own setting instead (rating regression, RMSE and MAE;
:mod:`warmrec.meta.rating`). A TOML
``--config`` may hold ``[model]``, ``[pretrain]`` (trainer of the global model), ``[meta]``
(:class:`~warmrec.meta.maml.MetaConfig`) and ``[coldstart]``
(:class:`~warmrec.experiments.studies.coldstart.ColdStartSettings`) sections.
"""

from __future__ import annotations

from pathlib import Path

import click

from warmrec.cli.common import emit_json, format_table, load_config, progress_lines


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


@click.command("coldstart")
@click.option("--data", "path", required=True, help="Interaction log with user ids.")
@click.option("--format", "fmt", default=None, help="Input format.")
@click.option("--model", "model_name", default="sasrec", show_default=True)
@click.option(
    "--methods",
    default=None,
    help="Default: pop,sknn,global,finetune,reptile,fomaml,maml,mamlpp,mamlpp_loss "
    "(--protocol melo: the same without pop and sknn).",
)
@click.option(
    "--protocol",
    default=None,
    help="ranking (default: next item over the catalogue) or melo (MELO's rating regression: "
    "RMSE, MAE; items >= 50 and users >= 5 ratings, 1,000 test users, each user's first 30 "
    "ratings, where MELO's code evaluates the last 30; users split at random: --order time "
    "is refused).",
)
@click.option(
    "--shots",
    default=None,
    help="Revealed events per test user, comma-separated (default: [coldstart] shots, else "
    "1,3,5,10).",
)
@click.option("--seeds", "n_seeds", default=3, show_default=True, type=int, help="Seeds 0..N-1.")
@click.option("--order", default=None, help="User split: random (default) or time.")
@click.option(
    "--config", "config_file", default=None, help="TOML: [model] [pretrain] [meta] [coldstart]"
)
@click.option(
    "--set", "sets", multiple=True, metavar="KEY=VALUE", help="e.g. --set meta.inner_steps=5"
)
@click.option("--out", default="warmrec-out/coldstart-study", show_default=True)
@click.option("--no-resume", is_flag=True, help="Discard earlier runs in --out.")
@click.option("--json", "as_json", is_flag=True)
def study_coldstart(
    path,
    fmt,
    model_name,
    methods,
    protocol,
    shots,
    n_seeds,
    order,
    config_file,
    sets,
    out,
    no_resume,
    as_json,
):
    """Meta-learning for new users: reveal k events, adapt, rank the next over the catalogue."""
    from warmrec.errors import ConfigError
    from warmrec.experiments.spec import DataSpec
    from warmrec.experiments.studies.coldstart import MELO_METHODS, METHODS, run_coldstart_study

    if n_seeds < 1:
        raise click.BadParameter(f"expected >= 1, found {n_seeds}", param_hint="--seeds")
    cfg = load_config(config_file, sets)
    unknown = set(cfg) - {"model", "pretrain", "meta", "coldstart"}
    if unknown:
        raise ConfigError(
            f"{config_file or '--set'}: unknown section(s) {sorted(unknown)}; expected model, "
            "pretrain, meta, coldstart"
        )
    settings = dict(cfg.get("coldstart", {}))
    if shots is not None or "shots" not in settings:
        settings["shots"] = _csv(shots or "1,3,5,10", "--shots", int)
        where = "--shots"
    else:
        given = settings["shots"]
        where = "coldstart.shots"
        if (
            not isinstance(given, list | tuple)
            or not all(isinstance(k, int) and not isinstance(k, bool) for k in given)
            or not given
        ):
            raise ConfigError(
                f"{config_file or '--set'}: {where}: expected a list of whole numbers, found "
                f"{given!r}"
            )
        settings["shots"] = tuple(given)
    bad = [k for k in settings["shots"] if k < 1]
    if bad:
        raise ConfigError(
            f"{where}: expected numbers of revealed events >= 1, found {', '.join(map(str, bad))}"
        )
    if order:
        settings["order"] = order
    if protocol:
        settings["protocol"] = protocol
    if methods is None:
        methods = ",".join(MELO_METHODS if settings.get("protocol") == "melo" else METHODS)
    if "pretrain" in cfg:
        settings["pretrain"] = cfg["pretrain"]
    if "meta" in cfg:
        settings["meta"] = cfg["meta"]
    data = {"path": path, **({"format": fmt} if fmt else {})}
    log = DataSpec(**data).read()
    with progress_lines(as_json):
        res = run_coldstart_study(
            log.interactions,
            model=model_name,
            model_config=cfg.get("model"),
            methods=_csv(methods, "--methods"),
            seeds=tuple(range(n_seeds)),
            settings=settings,
            out_dir=out,
            resume=not no_resume,
            progress=False if as_json else None,
            data_source=DataSpec(**data).absolute().model_dump(exclude_none=True),
        )
    if as_json:
        emit_json(
            {
                "computed": res.computed,
                "summary": res.summary.to_dicts(),
                "paths": {k: str(v) for k, v in res.paths.items()},
            }
        )
    else:
        click.echo(format_table(res.table))
        click.echo(f"runs computed now: {len(res.computed)}")
        click.echo(f"written: {Path(out) / 'results.md'}, {res.paths['report_html']}")
