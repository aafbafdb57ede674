"""``warmrec pretrain``, ``warmrec transfer`` and ``warmrec study transfer``: options and output.

The runs are :func:`warmrec.experiments.run.run_pretrain` / ``run_transfer`` (one RunSpec each).
``pretrain`` fits a neural model on a source log and saves it (with the source's training item
counts and, when the data has an item ``title`` feature, the item titles, both in the model's
meta); ``transfer`` turns such a model into a target-domain model and fine-tunes it on the
target's training split with the shared training loop (selected on validation); ``study
transfer`` runs :func:`warmrec.experiments.transfer_study.run_transfer_study` (``--strategies``
may name ``reptile``; its :class:`~warmrec.meta.ReptileConfig` is the TOML ``[reptile]`` section).
"""

from __future__ import annotations

from pathlib import Path

import click

from warmrec.cli.common import (
    command_config,
    data_options,
    echo_mapping,
    emit_json,
    flag_config,
    format_table,
    load_config,
    progress_lines,
    resplit_option,
    set_option,
)


@click.command()
@click.option("--model", "model_name", default=None, help="Neural model (default: sasrec).")
@click.option("--data", "path", required=True, help="Source-domain interaction log.")
@data_options
@click.option(
    "--split",
    default=None,
    help="auto (default: loo for user logs, last_session for session logs), loo, temporal "
    "(--set split.test_start=DATE), last_session, user or the other methods of train --split.",
)
@resplit_option
@click.option("--config", "config_file", default=None, help="TOML file: [model], [train].")
@set_option()
@click.option("--out", required=True, help="Model directory to write.")
@click.option("--json", "as_json", is_flag=True)
def pretrain(
    model_name,
    path,
    fmt,
    cols,
    no_timestamp,
    order,
    sep,
    split,
    resplit,
    config_file,
    sets,
    out,
    as_json,
):
    """Pre-train a neural model on a source domain (selected on validation) and save it."""
    from warmrec.artifacts import check_model_target
    from warmrec.experiments.run import run_pretrain
    from warmrec.io import check_output

    check_output(out, kind="dir")  # before any work: a bad --out fails at once
    check_model_target(out)  # and one that is not a model directory is not replaced

    flags = flag_config(path, fmt, cols, no_timestamp, order, sep, split, resplit)
    if model_name:
        flags["model"] = {"name": model_name}
    cfg = command_config(config_file, sets, flags)
    with progress_lines(as_json):
        info = run_pretrain(cfg, out)
    if as_json:
        emit_json(info)
    else:
        click.echo(
            f"saved pre-trained {info['model']} to {out} "
            f"(fit {info['fit_s']:.1f} s, split {info['split']})"
        )
        echo_mapping({f"valid {k}": v for k, v in info["valid"].items()})


@click.command("pretrain-multi")
@click.option(
    "--source",
    "sources",
    multiple=True,
    metavar="LABEL=PATH",
    help="A source log (repeatable); its format is detected, or set sources.LABEL.data.format.",
)
@click.option("--model", "model_name", default=None, help="Neural model (default: sasrec).")
@click.option("--order", type=click.Choice(["joint", "sequential"]), default=None)
@click.option("--sampling", type=click.Choice(["size", "temperature", "uniform"]), default=None)
@click.option("--temperature", type=float, default=None, help="p ~ size^(1/T) (default 2).")
@click.option("--steps", type=int, default=None, help="Optimizer steps in all (default 2000).")
@click.option(
    "--domain-token",
    is_flag=True,
    help="Give each source a learned vector added to the shared encoder's input.",
)
@click.option("--config", "config_file", default=None, help="TOML: [model] [multi] [sources.X].")
@set_option("--set sources.wiki.data.format=sasrec --set multi.time_budget_s=600")
@click.option("--out", required=True, help="Folder: one model directory per source.")
@click.option("--json", "as_json", is_flag=True)
def pretrain_multi(
    sources,
    model_name,
    order,
    sampling,
    temperature,
    steps,
    domain_token,
    config_file,
    sets,
    out,
    as_json,
):
    """Pre-train one shared encoder on several sources (per-source item tables), save each."""
    from warmrec.io import check_output
    from warmrec.transfer.multisource import run_multisource

    check_output(out, kind="dir")
    flags: dict = {}
    for s in sources:
        label, sep, path = s.partition("=")
        if not sep or not label.strip() or not path.strip():
            raise click.BadParameter(f"expected LABEL=PATH, found {s!r}", param_hint="--source")
        if label.strip() in flags.get("sources", {}):
            raise click.BadParameter(
                f"label {label.strip()!r} given twice (each source needs its own label)",
                param_hint="--source",
            )
        flags.setdefault("sources", {})[label.strip()] = {"data": {"path": path.strip()}}
    if model_name:
        flags["model"] = {"name": model_name}
    multi = {"order": order, "sampling": sampling, "temperature": temperature, "steps": steps}
    multi = {k: v for k, v in multi.items() if v is not None}
    if domain_token:
        multi["domain_token"] = True
    if multi:
        flags["multi"] = multi
    cfg = command_config(config_file, sets, flags)
    with progress_lines(as_json):
        info = run_multisource(cfg, out)
    if as_json:
        emit_json(info)
    else:
        click.echo(
            f"saved {len(info['domains'])} source models ({', '.join(info['domains'])}) to {out} "
            f"({info['seconds']:.1f} s, peak RSS {info['peak_rss_mb']:.0f} MB)"
        )
        echo_mapping({f"valid {d} {k}": v for d, m in info["valid"].items() for k, v in m.items()})


@click.command("transfer")
@click.option("--from", "source_dir", required=True, help="A model directory from `pretrain`.")
@click.option("--data", "path", required=True, help="Target-domain interaction log.")
@data_options
@click.option("--strategy", default=None, help="Transfer strategy (default: finetune).")
@click.option("--init", "init", default=None, help="Item-table init (default: popularity).")
@click.option(
    "--split",
    default=None,
    help="auto (default: loo for user logs, last_session for session logs), loo, temporal "
    "(--set split.test_start=DATE), last_session, user or the other methods of train --split.",
)
@resplit_option
@click.option("--seed", default=None, type=int, help="Seed of the target initialisation (0).")
@click.option("--config", "config_file", default=None, help="TOML file: [train], [transfer]...")
@set_option("--set train.epochs=10 --set transfer.model_options.dropout=0.3")
@click.option("--out", required=True, help="Model directory to write.")
@click.option("--json", "as_json", is_flag=True)
def transfer_cmd(
    source_dir,
    path,
    fmt,
    cols,
    no_timestamp,
    order,
    sep,
    strategy,
    init,
    split,
    resplit,
    seed,
    config_file,
    sets,
    out,
    as_json,
):
    """Transfer a pre-trained model to a target domain, fine-tune, save, print validation metrics.

    Config sections: [train] (training loop), [transfer] (strategy_options, init_options,
    max_len, position_init; [strategy] and [init] tables are read as its options), [split].
    """
    from warmrec.artifacts import check_model_target
    from warmrec.experiments.run import run_transfer
    from warmrec.io import check_output

    check_output(out, kind="dir")  # before any work: a bad --out fails at once
    check_model_target(out)  # and one that is not a model directory is not replaced

    flags = flag_config(path, fmt, cols, no_timestamp, order, sep, split, resplit)
    cfg = command_config(config_file, sets, flags)
    with progress_lines(as_json):
        info = run_transfer(cfg, out, source=source_dir, strategy=strategy, init=init, seed=seed)
    if as_json:
        emit_json(info)
    else:
        click.echo(
            f"saved {info['model']} ({info['strategy']}, init {info['init']}) to {out} "
            f"(fit {info['fit_s']:.1f} s)"
        )
        n = info["n_shared_items"]
        click.echo(
            f"items matched to source items ({info['match_items']}): {n:,}"
            + (" (they copy the source rows)" if n else "")
        )
        echo_mapping({f"valid {k}": v for k, v in info["valid"].items()})


def _csv(value: str, what: str, conv=str) -> tuple:
    try:
        items = tuple(conv(x.strip()) for x in value.split(",") if x.strip())
    except ValueError as e:
        raise click.BadParameter(f"expected a comma-separated list, found {value!r}") from e
    if not items:
        raise click.BadParameter(f"expected at least one value, found {value!r}", param_hint=what)
    return items


@click.group()
def study() -> None:
    """Multi-run studies (mean and CI over seeds, tests, plots, report)."""


@study.command("transfer")
@click.option("--source", "source_path", required=True, help="Source-domain log.")
@click.option("--target", "target_path", required=True, help="Target-domain log.")
@click.option("--format", "fmt", default=None, help="Input format of both logs.")
@click.option(
    "--source-format", default=None, help="Input format of the source log (over --format)."
)
@click.option(
    "--target-format",
    default=None,
    help="Input format of the target log (over --format), e.g. sasrec for Wiki1000.",
)
@click.option(
    "--source-col",
    multiple=True,
    metavar="CANONICAL=COLUMN",
    help="Column mapping of the source log (repeatable).",
)
@click.option(
    "--target-col",
    multiple=True,
    metavar="CANONICAL=COLUMN",
    help="Column mapping of the target log (repeatable).",
)
@click.option("--model", "model_name", default="sasrec", show_default=True)
@click.option(
    "--strategies",
    default="scratch,finetune,freeze_embeddings",
    show_default=True,
    help="Comma-separated strategies; 'reptile' meta-trains the source first ([reptile] in TOML).",
)
@click.option("--inits", default="popularity", show_default=True, help="Comma-separated inits.")
@click.option("--fractions", default="0.05,0.1,0.25,0.5,1", show_default=True)
@click.option("--seeds", "n_seeds", default=3, show_default=True, type=int, help="Seeds 0..N-1.")
@click.option("--baselines", default="pop,sknn", show_default=True, help="'' for none.")
@click.option("--split", default="auto", show_default=True, help="Target split.")
@click.option(
    "--config",
    "config_file",
    default=None,
    help="TOML: [model] [train] [source_train] [strategy] [init] [reptile]",
)
@set_option("--set model.d=32 --set train.epochs=10 --set source_train.epochs=20")
@click.option("--out", default="warmrec-out/transfer-study", show_default=True)
@click.option("--no-resume", is_flag=True, help="Discard earlier runs in --out.")
@click.option("--json", "as_json", is_flag=True)
def study_transfer(
    source_path,
    target_path,
    fmt,
    source_format,
    target_format,
    source_col,
    target_col,
    model_name,
    strategies,
    inits,
    fractions,
    n_seeds,
    baselines,
    split,
    config_file,
    sets,
    out,
    no_resume,
    as_json,
):
    """Transfer vs scratch vs baselines over fractions of target data and seeds."""
    from warmrec.errors import ConfigError
    from warmrec.experiments.spec import item_titles
    from warmrec.experiments.transfer_study import run_transfer_study

    if n_seeds < 1:
        raise click.BadParameter(f"expected >= 1, found {n_seeds}", param_hint="--seeds")
    cfg = load_config(config_file, sets)
    allowed = {"model", "train", "source_train", "strategy", "init", "reptile"}
    if set(cfg) - allowed:
        raise ConfigError(
            f"unknown config section(s) {', '.join(sorted(set(cfg) - allowed))}; valid: "
            + ", ".join(sorted(allowed))
        )
    from warmrec.cli.common import parse_cols
    from warmrec.experiments.spec import DataSpec

    src = DataSpec(
        path=source_path, format=source_format or fmt, columns=parse_cols(source_col)
    ).read()
    tgt = DataSpec(
        path=target_path, format=target_format or fmt, columns=parse_cols(target_col)
    ).read()
    with progress_lines(as_json):
        res = run_transfer_study(
            src.interactions,
            tgt.interactions,
            model=model_name,
            strategies=_csv(strategies, "--strategies"),
            inits=_csv(inits, "--inits"),
            fractions=_csv(fractions, "--fractions", float),
            seeds=tuple(range(n_seeds)),
            model_config=cfg.get("model"),
            trainer=cfg.get("train"),
            source_trainer=cfg.get("source_train"),
            baselines=tuple(b.strip() for b in baselines.split(",") if b.strip()),
            out_dir=out,
            resume=not no_resume,
            source_titles=item_titles(src.item_features),
            target_titles=item_titles(tgt.item_features),
            split=split,
            strategy_options=cfg.get("strategy"),
            init_options=cfg.get("init"),
            reptile_config=cfg.get("reptile"),
            progress=False if as_json else None,  # a bar on a terminal, else a line per run
        )
    if as_json:
        emit_json(
            {
                "info": res.info,
                "computed": res.computed,
                "summary": res.summary.to_dicts(),
                "paths": {k: str(v) for k, v in res.paths.items()},
            }
        )
    else:
        for k, v in res.info.items():
            click.echo(f"{k}: {v}")
        click.echo(format_table(res.table))
        click.echo(f"runs computed now: {len(res.computed)}")
        click.echo(f"written: {Path(out) / 'results.md'}, {res.paths['report_html']}")
