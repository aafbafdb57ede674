"""``warmrec train``, ``evaluate``, ``recommend`` and ``models``."""

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
    progress_lines,
    resplit_option,
    set_option,
)


def training_options(f):
    """The training-loop settings most runs change, as flags (each one is ``--set train.KEY=``)."""
    opts = [
        ("--epochs", int, "Maximum number of epochs."),
        ("--patience", int, "Stop after this many evaluations without improvement (0 = never)."),
        ("--seed", int, "Random seed of the training run."),
        ("--device", str, "auto (CUDA when available), cpu, cuda or cuda:N."),
        (
            "--threads",
            int,
            "torch CPU threads (default: the CPUs this process may use less those other work "
            "keeps busy at the start, at least 1).",
        ),
        ("--checkpoint-dir", str, "Write a resumable checkpoint here after each epoch."),
    ]
    f = click.option(
        "--resume",
        is_flag=True,
        default=None,
        help="Continue from the checkpoint in --checkpoint-dir.",
    )(f)
    for flag, typ, text in reversed(opts):
        f = click.option(flag, default=None, type=typ, help=text)(f)
    return f


TRAIN_FLAGS = ("epochs", "patience", "seed", "device", "threads", "checkpoint_dir", "resume")


@click.command(
    epilog="Neural models only: the training options above, and any other training-loop "
    "setting with --set train.KEY=VALUE (e.g. --set train.lr=0.003 --set train.batch_size=256)."
)
@click.option(
    "--model", "model_name", default=None, help="Registered model name (see `warmrec models`)."
)
@click.option("--data", "path", default=None, help="Interaction log (file or folder).")
@data_options
@click.option(
    "--split",
    default=None,
    help="auto (default: a split folder as given, loo for user logs, last_session for session "
    "logs), loo, loo_new (each user's last new item, seen items excluded), temporal "
    "(--set split.test_start=DATE), last_session, user, time_new_learners (--set "
    "split.cut=DATE: learners arriving after it, seen items excluded) or given.",
)
@resplit_option
@training_options
@click.option("--config", "config_file", default=None, help="TOML experiment file.")
@set_option("--set model.max_len=50 --set train.lr=0.003")
@click.option("--out", required=True, help="Model directory to write.")
@click.option(
    "--workers",
    type=int,
    default=None,
    help="Data-parallel training on N Ray Train workers (neural models; same global batch).",
)
@click.option("--address", default=None, help="Ray cluster HOST:PORT for --workers.")
@click.option(
    "--refit-all",
    is_flag=True,
    default=None,
    help="After the fit chosen on validation, fit again on every event of the log (for "
    "deployment; a neural model for the epochs validation kept). The saved model cannot be "
    "evaluated on this log any more (refit_all = true).",
)
@click.option("--json", "as_json", is_flag=True)
def train(
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
    workers,
    address,
    refit_all,
    as_json,
    **train_flags,
):
    """Fit a model (selected on validation) and save it."""
    from warmrec.artifacts import check_model_target
    from warmrec.experiments.run import run_train
    from warmrec.io import check_output

    check_output(out, kind="dir")  # before any work: a bad --out fails at once
    check_model_target(out)  # and one that is not a model directory is not replaced

    flags = flag_config(path, fmt, cols, no_timestamp, order, sep, split, resplit)
    if model_name:
        flags["model"] = {"name": model_name}
    tr = {k: v for k, v in train_flags.items() if v is not None}
    if "threads" in tr:
        tr["num_threads"] = tr.pop("threads")
    if tr:
        flags["train"] = tr
    if refit_all:
        flags["refit_all"] = True
    cfg = command_config(config_file, sets, flags)
    if workers is not None:
        from warmrec.tuning.distributed import train_distributed

        res = train_distributed(cfg, out, workers=workers, address=address, lines=not as_json)
        res.pop("history", None)
        if not res.get("refit"):
            res.pop("refit", None)
        if as_json:
            emit_json(res)
        else:
            click.echo(
                f"saved {res['model']} to {res['out']} ({workers} workers, fit "
                f"{res['fit_s']:.1f} s, best epoch {res['best_epoch']})"
            )
            echo_mapping({f"valid {k}": v for k, v in res["valid"].items()})
            _echo_refit(res)
        return
    with progress_lines(as_json):
        res = run_train(cfg, out)
    if as_json:
        emit_json(res)
    else:
        click.echo(f"saved {res['model']} to {res['out']} (fit {res['fit_s']:.1f} s)")
        echo_mapping({f"valid {k}": v for k, v in res["valid"].items()})
        for k, v in res["choices"].items():
            click.echo(f"chose {k}: {v}")
        _echo_refit(res)


def _echo_refit(res: dict) -> None:
    if res.get("refit"):
        r = res["refit"]
        epochs = f", {r['epochs']} epochs" if r.get("epochs") else ""
        click.echo(
            f"refit on all {r['events']:,} events ({r['sequences']:,} sequences{epochs}, "
            f"{r['fit_seconds']:.1f} s): the validation figures above are the validated fit's"
        )


@click.command("evaluate")
@click.argument("model_dir")
@click.option("--data", "path", default=None, help="Interaction log (default: the training data).")
@data_options
@click.option(
    "--split",
    default=None,
    help="Split method (default: the one used in training; another whose scored part holds "
    "events the model trained on is refused).",
)
@resplit_option
@click.option("--part", default="test", show_default=True, help="test or valid.")
@click.option("--metrics", default=None, help="Comma-separated, e.g. hr@10,ndcg@10,mrr@20.")
@click.option(
    "--protocol",
    default=None,
    help="full (default), sampled-uniform-N, sampled-pop-N or sampled-unseen-N (SASRec.pytorch).",
)
@click.option("--exclude-seen", is_flag=True, help="Never rank items already in the history.")
@click.option(
    "--slices",
    is_flag=True,
    help="Also report cold-start slices apart: returning and new users, targets on new items "
    "(no event before the part) and their first views (warmrec.evaluation.slices).",
)
@click.option("--config", "config_file", default=None)
@set_option("--set eval.exclude_seen=true")
@click.option("--json", "as_json", is_flag=True)
def evaluate_cmd(
    model_dir,
    path,
    fmt,
    cols,
    no_timestamp,
    order,
    sep,
    split,
    resplit,
    part,
    metrics,
    protocol,
    exclude_seen,
    slices,
    config_file,
    sets,
    as_json,
):
    """Evaluate a saved model on the test (or validation) part; prints the metrics table."""
    from warmrec.experiments.run import run_evaluate

    flags = flag_config(path, fmt, cols, no_timestamp, order, sep, split, resplit)
    ev = {}
    if metrics:
        ev["metrics"] = [m.strip() for m in metrics.split(",") if m.strip()]
    if protocol:
        ev["protocol"] = protocol
    if exclude_seen:
        ev["exclude_seen"] = True
    if ev:
        flags["eval"] = ev
    cfg = command_config(config_file, sets, flags)
    res, info = run_evaluate(model_dir, cfg, part, slices=slices)
    by_slice = info.pop("slices", None)
    if as_json:
        out = {**info, "protocol": res.protocol, "metrics": res.summary}
        if by_slice is not None:
            out["slices"] = {
                k: {"n": r.n_examples, "metrics": r.summary} for k, r in by_slice.items()
            }
        emit_json(out)
    else:
        seen = "seen items excluded" if info["exclude_seen"] else "seen items kept"
        left = (
            f"; {info['n_dropped']} {part} targets on items the model does not know left out"
            if info["n_dropped"]
            else ""
        )
        click.echo(
            f"{info['model']} on {info['n']} {part} examples of split {info['split']} "
            f"({res.protocol} ranking, {seen}{left})"
        )
        if by_slice is None:
            click.echo(format_table(res.table))
        else:
            from warmrec.evaluation.slices import slices_table

            click.echo(format_table(slices_table(by_slice)))


def _history_ids(items: str) -> list[str]:
    """The ids of ``--items``: cells of one CSV line (double quotes honoured, a quoted cell kept
    as written), unquoted cells without the spaces around them, empty cells dropped."""
    import csv

    from warmrec.errors import ConfigError

    try:
        cells = next(csv.reader([items], skipinitialspace=True, strict=True), [])
    except csv.Error as e:
        raise ConfigError(
            f"--items: expected comma-separated item ids, found {items!r} ({e})"
        ) from None
    quoted = [p.strip().startswith('"') for p in _raw_cells(items)]
    if len(quoted) != len(cells):
        quoted = [False] * len(cells)
    return [c if q else c.strip() for c, q in zip(cells, quoted) if (c if q else c.strip())]


def _raw_cells(line: str) -> list[str]:
    """``line`` split at the commas outside double quotes (an even number of quotes follows
    them), the quotes kept."""
    import re

    return re.split(r',(?=(?:[^"]*"[^"]*")*[^"]*$)', line)


@click.command()
@click.argument("model_dir")
@click.option(
    "--items",
    required=True,
    help="Comma-separated raw item ids, oldest first; an id holding a comma or spaces at its "
    "ends in double quotes, as in a CSV line (--items '7,\"a, b\"').",
)
@click.option("-k", "k", default=10, show_default=True, type=int, help="How many items (>= 1).")
@click.option(
    "--exclude-seen/--keep-seen",
    default=None,
    help="Never rank items already in the history, or rank them (default: as the model was "
    "evaluated, its eval.exclude_seen).",
)
@click.option(
    "--fallback",
    type=click.Choice(["none", "popular"]),
    default="none",
    show_default=True,
    help="For a history with no known item: refuse (none) or the most popular training items.",
)
@click.option("--json", "as_json", is_flag=True)
def recommend(model_dir, items, k, exclude_seen, fallback, as_json):
    """Top-k next items for one history of raw item ids.

    The service's path (:meth:`warmrec.serving.bundle.ModelBundle.recommend`: ids read by the
    model's vocabulary, the same masking and fallback as ``POST /recommend``; not its request
    limits: the history's length is not capped, and a -k above the catalogue gives all of it)."""
    from warmrec.errors import ConfigError
    from warmrec.serving.bundle import ModelBundle

    if k < 1:
        raise ConfigError(f"-k: expected a whole number >= 1, found {k}")
    hist = _history_ids(items)
    if not hist and fallback == "none":
        raise ConfigError(
            f"--items: expected comma-separated item ids, found {items!r} "
            "(for an empty history pass --fallback popular)"
        )
    bundle = ModelBundle.load(model_dir, engine="eager")
    vocab = bundle.model.vocab
    ranked = bundle.recommend(
        hist, k, exclude_seen=exclude_seen, fallback=None if fallback == "none" else fallback
    )
    if ranked.unknown:
        click.echo(
            f"warmrec: warning: {len(ranked.unknown)} unknown item id(s) ignored, "
            f"e.g. {ranked.unknown[0]!r}",
            err=True,
        )
    if click.get_current_context().get_parameter_source("k").name == "COMMANDLINE":
        from warmrec.serving.predict import clamp_notice

        note = clamp_notice(k, len(vocab.ids))  # the vocabulary less its padding index
        if note:
            click.echo(f"warmrec: warning: {note}", err=True)
    if ranked.popularity_filled and not ranked.fallback_used:
        click.echo(
            f"warmrec: note: {ranked.popularity_filled} of the {len(ranked.items)} items are "
            "ranked by training popularity alone (the model scores no other item after this "
            "history)",
            err=True,
        )
    if as_json:
        from warmrec.serving.bundle import json_id

        shown = [json_id(int(x)) if not vocab.is_str and vocab.index_of(x) else x for x in hist]
        emit_json(
            {
                "model": bundle.model.name,
                "history": shown,
                "items": [json_id(i) for i in ranked.items],
                "scores": ranked.scores,
                "unknown": ranked.unknown,
                "fallback_used": ranked.fallback_used,
                "popularity_filled": ranked.popularity_filled,
            }
        )
    else:
        for r, item in enumerate(ranked.items, 1):
            click.echo(f"{r:>3}  {item}")


@click.command(
    "add-items",
    epilog="The served model picks the new items up on POST /admin/reload (or SIGHUP). Models "
    "that read item text (SASRec with item_repr text or id+text, TF-IDF, Fresh) rank a new item "
    "by its text; models that score items only from their events (pop, rules, kNN, item2vec) "
    "know it without evidence (as a catalogue item nobody has used); a hybrid adds it to both "
    "members. Models that learn a vector per item without text (an ID-only SASRec, GRU4Rec, "
    "...) need warmrec train again.",
)
@click.argument("model_dir")
@click.option(
    "--items",
    "items_file",
    required=True,
    metavar="FILE",
    help="Item features (CSV/TSV/Parquet, one row per item, the model's text fields); items "
    "the model already knows are left as they are.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "plain", "mars"]),
    default="auto",
    show_default=True,
    help="How the items file is read: mars (MARS's items_en.csv layout: name -> title, "
    "['Excel'] -> a list, as training read it), plain (columns as they are), auto (mars for a "
    "file with MARS's item_id, name and Software columns).",
)
@click.option("--out", default=None, help="Write the model here (default: MODEL_DIR, replaced).")
@click.option("--json", "as_json", is_flag=True)
def add_items_cmd(model_dir, items_file, fmt, out, as_json):
    """Add new items to a saved model without retraining (warmrec.models.catalogue.add_items):
    text models give each the vector of its text, event-only models know it without evidence."""
    from warmrec.data.features import key_as
    from warmrec.data.parsers import item_table
    from warmrec.models.base import Recommender
    from warmrec.models.catalogue import add_items, text_fields

    table = item_table(items_file, fmt)
    model = Recommender.load(model_dir)
    before = len(model.vocab.ids)
    table = key_as(table, "item_id", model.vocab.ids.dtype, items_file, drop=False)
    from warmrec.errors import ModelError

    try:
        added = add_items(model, table)
    except ModelError as e:  # named by its directory, as every other error of a model is
        raise ModelError(f"{model_dir}: {e}") from None
    target = Path(out) if out else Path(model_dir)
    model.save(target)
    info = {
        "model": model.name,
        "out": str(target),
        "added": len(added),
        "known": table.height - len(added),
        "items": before + len(added),
        "text_fields": [f for f in text_fields(model) if f in table.columns],
    }
    if as_json:
        emit_json({**info, "added_ids": added})
    else:
        read = ", ".join(info["text_fields"])
        click.echo(
            f"added {info['added']} item(s) to {model.name} ({info['known']} already known; "
            f"{info['items']} items now) -> {target}"
            + (f"; their text from {read}" if read and added else "")
        )


@click.command("models")
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--schema",
    "schema",
    default=None,
    metavar="NAME",
    help="Print the JSON Schema of a model's config (--schema train: the trainer's; "
    "--schema run: a whole run config).",
)
def list_models(as_json, schema):
    """List the registered models, or print a config's JSON Schema."""
    from warmrec.registry import available_models, model_class

    if schema:
        from warmrec.schema import config_schema

        emit_json(config_schema(schema))
        return
    names = available_models()
    if as_json:
        emit_json(names)
    else:
        for n in names:
            click.echo(f"{n:<12} {first_sentence(model_class(n).__doc__)}")


def first_sentence(doc: str | None) -> str:
    """The first sentence of a docstring's summary paragraph (lines joined, never cut)."""
    import re

    para = " ".join((doc or "").strip().split("\n\n")[0].split())
    m = re.search(r"(?<!\be\.g)(?<!\bi\.e)(?<!\bal)(?<!\bvs)\.(\s|$)", para)
    return para[: m.start() + 1] if m else para
