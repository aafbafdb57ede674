"""``warmrec predict`` (batch top-K to a file) and ``warmrec serve`` (the HTTP service).

Heavy imports (torch, polars, fastapi, uvicorn) happen inside the commands.
"""

from __future__ import annotations

import click

from warmrec.cli.common import data_options, emit_json, flag_config, load_config, merge_flags

PARTS = ("all", "train", "valid", "test")  # warmrec.serving.predict.PARTS


@click.command("predict")
@click.argument("model_dir")
@click.option("--data", "path", default=None, help="Interaction log (default: the training data).")
@data_options
@click.option(
    "--part",
    type=click.Choice(PARTS),
    default=None,
    help="Whose histories: all (default: every sequence of the log, all its events), train, "
    "or the last prefix of each valid/test sequence of the model's split.",
)
@click.option(
    "--split",
    default=None,
    help="A part (all, train, valid, test; same as --part) or the split method for "
    "--part valid/test (default: the one used in training).",
)
@click.option("-k", "k", default=10, show_default=True, type=int, help="Items per sequence.")
@click.option("--exclude-seen", is_flag=True, help="Never rank items already in the history.")
@click.option(
    "--fallback",
    type=click.Choice(["none", "popular"]),
    default="none",
    show_default=True,
    help="Sequences with no known item: skip them (none) or give the most popular items.",
)
@click.option("--batch-size", default=512, show_default=True, type=int)
@click.option("--threads", default=0, type=int, help="Torch threads (0: all cores).")
@click.option("--out", required=True, help="Output file: .csv or .parquet (written atomically).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True)
def predict_cmd(
    model_dir,
    path,
    fmt,
    cols,
    no_timestamp,
    order,
    sep,
    part,
    split,
    k,
    exclude_seen,
    fallback,
    batch_size,
    threads,
    out,
    no_progress,
    as_json,
):
    """Top-k items for every user or session of a log, to a CSV or Parquet file."""
    from warmrec.errors import ConfigError
    from warmrec.serving.predict import run_predict

    if split in PARTS:
        if part is not None and part != split:
            raise ConfigError(f"--split {split} and --part {part} disagree")
        part, split = split, None
    if k < 1:
        raise ConfigError(f"-k: expected a whole number >= 1, found {k}")
    if batch_size < 1:
        raise ConfigError(f"--batch-size: expected a whole number >= 1, found {batch_size}")
    cfg = load_config(
        None, (), merge_flags({}, flag_config(path, fmt, cols, no_timestamp, order, sep, split))
    )
    res = run_predict(
        model_dir,
        cfg,
        out,
        part=part or "all",
        k=k,
        exclude_seen=exclude_seen,
        fallback=None if fallback == "none" else fallback,
        batch_size=batch_size,
        threads=threads,
        progress=not no_progress and not as_json,
    )
    if as_json:
        emit_json(res.as_dict())
    else:
        click.echo(
            f"wrote {res.n_rows} rows for {res.n_sequences} sequences to {res.out} "
            f"({res.per_second:.0f} sequences/s"
            + (f"; {res.n_skipped} without a known item skipped" if res.n_skipped else "")
            + ")"
        )


@click.command("serve")
@click.argument("model_dir")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="Worker processes.")
@click.option("--threads", default=1, show_default=True, type=int, help="Torch threads per worker.")
@click.option(
    "--engine",
    type=click.Choice(["auto", "eager", "torchscript"]),
    default="auto",
    show_default=True,
    help="Inference path: auto = a TorchScript trace checked against eager for neural models, "
    "the serving index (knn_index/) for session-kNN models; eager = plain model.score + top-k.",
)
@click.option("--max-sessions", default=100_000, show_default=True, type=int)
@click.option("--max-events", default=200, show_default=True, type=int, help="Kept per session.")
@click.option("--session-ttl", default=1800.0, show_default=True, type=float, help="Seconds.")
@click.option("--log-level", default="warning", show_default=True)
def serve(
    model_dir,
    host,
    port,
    workers,
    threads,
    engine,
    max_sessions,
    max_events,
    session_ttl,
    log_level,
):
    """Serve a model directory over HTTP (FastAPI on uvicorn; docs at /docs).

    Reload a new model written to MODEL_DIR without dropping requests: POST /admin/reload (one
    worker), or SIGHUP to this process (any number of workers)."""
    import inspect
    import os

    from warmrec.artifacts import read_info
    from warmrec.errors import ConfigError

    for name, v in (
        ("--workers", workers),
        ("--threads", threads),
        ("--max-sessions", max_sessions),
        ("--max-events", max_events),
    ):
        if v < 1:
            raise ConfigError(f"{name}: expected a whole number >= 1, found {v}")
    if session_ttl <= 0:
        raise ConfigError(f"--session-ttl: expected seconds > 0, found {session_ttl}")
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port: expected 0..65535, found {port}")
    read_info(model_dir)  # a bad directory fails here, in one line, before any worker starts
    try:
        import uvicorn
    except ImportError:
        raise ConfigError(
            "warmrec serve needs the serve extra: pip install 'warmrec[serve]'"
        ) from None
    os.environ.update(
        {
            "WARMREC_SERVE_MODEL": os.path.abspath(model_dir),
            "WARMREC_SERVE_THREADS": str(threads),
            "WARMREC_SERVE_ENGINE": engine,
            "WARMREC_SERVE_MAX_SESSIONS": str(max_sessions),
            "WARMREC_SERVE_MAX_EVENTS": str(max_events),
            "WARMREC_SERVE_SESSION_TTL": str(session_ttl),
        }
    )
    click.echo(f"warmrec: serving {model_dir} on http://{host}:{port} (docs at /docs)", err=True)
    extra = {}
    if "timeout_worker_healthcheck" in inspect.signature(uvicorn.Config).parameters:
        # SIGHUP restarts the workers one by one; a new worker is ready once its model is loaded
        # and warmed up, which takes longer than uvicorn's default 5 s on a busy machine
        extra["timeout_worker_healthcheck"] = 300
    uvicorn.run(
        "warmrec.serving.app:app_from_env",
        **extra,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=False,
    )
