"""``warmrec predict`` (batch top-K to a file) and ``warmrec serve`` (the HTTP service).

Heavy imports (torch, polars, fastapi, uvicorn) happen inside the commands.
"""

from __future__ import annotations

import click

from warmrec.cli.common import (
    data_options,
    emit_json,
    flag_config,
    load_config,
    merge_flags,
    progress_lines,
    set_option,
)

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
@click.option(
    "--exclude-seen/--keep-seen",
    default=None,
    help="Never rank items already in the history, or rank them (default: as the model was "
    "evaluated, its eval.exclude_seen; warmrec auto chooses it on validation).",
)
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
@set_option("--set split.test_start=2019-07-01 (the options of --split METHOD)")
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
    sets,
    as_json,
):
    """Top-k items for every user or session of a log, to a CSV or Parquet file."""
    import warnings

    from warmrec.errors import ConfigError, WarmrecWarning
    from warmrec.serving.predict import run_predict

    if split in PARTS:
        if part is not None and part != split:
            raise ConfigError(f"--split {split} and --part {part} disagree")
        part, split = split, None
    if k < 1:
        raise ConfigError(f"-k: expected a whole number >= 1, found {k}")
    if batch_size < 1:
        raise ConfigError(f"--batch-size: expected a whole number >= 1, found {batch_size}")
    bad = [x for x in sets if not x.strip().startswith("split.")]
    if bad:
        raise ConfigError(f"--set {bad[0]}: predict takes split.KEY=VALUE only")
    cfg = load_config(
        None, sets, merge_flags({}, flag_config(path, fmt, cols, no_timestamp, order, sep, split))
    )
    with warnings.catch_warnings():
        warnings.simplefilter("always", WarmrecWarning)
        show = warnings.showwarning

        k_typed = click.get_current_context().get_parameter_source("k").name == "COMMANDLINE"

        def quiet_default_k(message, category, *args, **kwargs):
            # the group prints warmrec's warnings as one line; the -k notice only when typed
            if k_typed or not (
                issubclass(category, WarmrecWarning) and str(message).startswith("-k ")
            ):
                show(message, category, *args, **kwargs)

        warnings.showwarning = quiet_default_k
        with progress_lines(as_json):
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
                progress=False if no_progress or as_json else None,
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
@click.option(
    "--max-session-bytes",
    default=8192,
    show_default=True,
    type=int,
    help="Bytes of ids kept per session, in any store (each id counts its JSON length; oldest "
    "dropped first).",
)
@click.option(
    "--max-session-mb",
    default=256.0,
    show_default=True,
    type=float,
    help="Memory bound of all sessions of the in-process store, per worker (ids and events, "
    "estimated); the least recently used sessions are evicted past it. Not used with Redis "
    "(bound it with Redis's maxmemory).",
)
@click.option(
    "--session-store",
    default="memory",
    show_default=True,
    help="Where sessions live: memory (this worker's own) or redis://host:port/db (shared by "
    "every worker, survives restarts; POST /admin/reload then reaches every worker).",
)
@click.option(
    "--max-inflight",
    default=100,
    show_default=True,
    type=int,
    help="Requests a worker holds at once; more are answered 503 with Retry-After at once "
    "(load shedding; 0: no bound). It bounds a batch of work to N x the time of a request: "
    "the wait of an admitted request and how late a 503 comes.",
)
@click.option(
    "--admin-token-file",
    default=None,
    help="A file holding the admin token (16+ printable ASCII characters, no spaces). Enables "
    "POST /admin/reload, which then needs 'Authorization: Bearer <token>'; without it there is "
    "no admin route.",
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    help="A name clients may send in the Host header (repeatable; '*' for any). Always allowed: "
    "IP addresses, localhost, the --host name, and the machine's names when --host is 0.0.0.0 "
    "or ::. Other names are refused (400), against DNS rebinding.",
)
@click.option("--no-docs", is_flag=True, help="No /docs, /redoc nor /openapi.json.")
@click.option(
    "--log-level",
    # uvicorn's levels: another name was a KeyError traceback after the banner, the port bound
    type=click.Choice(["critical", "error", "warning", "info", "debug", "trace"], False),
    default="warning",
    show_default=True,
)
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
    max_session_bytes,
    max_session_mb,
    session_store,
    max_inflight,
    admin_token_file,
    allowed_hosts,
    no_docs,
    log_level,
):
    """Serve a model directory over HTTP (FastAPI on uvicorn; docs at /docs).

    The directory is loaded and checked in full (weights, vocabulary, a warm-up that refuses
    non-finite scores), the session store reached and the port bound before anything starts: a
    bad directory, an unreachable store or a busy port is one line and exit 2. Reload a new
    model written to MODEL_DIR without dropping requests: POST /admin/reload (needs
    --admin-token-file; one worker, or every worker with --session-store redis://...), or
    SIGHUP to this process (any number of workers)."""
    import gc
    import json
    import math
    import os

    from warmrec.errors import ConfigError, WarmrecError

    for name, v in (
        ("--workers", workers),
        ("--threads", threads),
        ("--max-sessions", max_sessions),
        ("--max-events", max_events),
        ("--max-session-bytes", max_session_bytes),
    ):
        if v < 1:
            raise ConfigError(f"{name}: expected a whole number >= 1, found {v}")
    # NaN passed "<= 0" and infinity "> 0": a traceback after the banner, the port bound
    if not (math.isfinite(session_ttl) and session_ttl > 0):
        raise ConfigError(
            f"--session-ttl: expected a finite number of seconds > 0, found {session_ttl}"
        )
    if not (math.isfinite(max_session_mb) and max_session_mb > 0):
        raise ConfigError(f"--max-session-mb: expected a finite size > 0, found {max_session_mb}")
    if max_inflight < 0:
        raise ConfigError(f"--max-inflight: expected a whole number >= 0, found {max_inflight}")
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port: expected 0..65535, found {port}")
    try:
        import fastapi_offline  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise ConfigError(
            "warmrec serve needs the serve extra: pip install 'warmrec[serve]'"
        ) from None
    from warmrec.serving.app import create_app, read_token_file
    from warmrec.serving.bundle import ModelBundle
    from warmrec.serving.guards import AllowedHosts
    from warmrec.serving.server import bind, run

    token = read_token_file(admin_token_file) if admin_token_file else None
    hosts = AllowedHosts.for_bind(host, allowed_hosts)
    if session_store != "memory":  # a bad URL or a server that does not answer: one line
        from warmrec.serving.sessions import open_store

        probe = open_store(session_store)
        try:
            probe.ping()
        except WarmrecError as e:
            raise ConfigError(f"--session-store: {e}") from None
        finally:
            probe.close()
    # the whole directory, loaded and warmed up here, before any worker or socket exists
    bundle = ModelBundle.load(model_dir, threads=threads, engine=engine)
    sock = bind(host, port)
    store_bytes = max(1, int(max_session_mb * 2**20))
    settings = {
        "WARMREC_SERVE_MODEL": os.path.abspath(model_dir),
        "WARMREC_SERVE_THREADS": str(threads),
        "WARMREC_SERVE_ENGINE": engine,
        "WARMREC_SERVE_MAX_SESSIONS": str(max_sessions),
        "WARMREC_SERVE_MAX_EVENTS": str(max_events),
        "WARMREC_SERVE_SESSION_TTL": str(session_ttl),
        "WARMREC_SERVE_MAX_SESSION_BYTES": str(max_session_bytes),
        "WARMREC_SERVE_MAX_STORE_BYTES": str(store_bytes),
        "WARMREC_SERVE_SESSION_STORE": session_store,
        "WARMREC_SERVE_WORKERS": str(workers),
        "WARMREC_SERVE_ALLOWED_HOSTS": json.dumps(sorted(hosts.names)),
        "WARMREC_SERVE_DOCS": "0" if no_docs else "1",
        "WARMREC_SERVE_MAX_INFLIGHT": str(max_inflight),
    }
    if admin_token_file:
        settings["WARMREC_SERVE_ADMIN_TOKEN_FILE"] = os.path.abspath(admin_token_file)
    else:  # one left in the environment gave the workers an admin route the command never had
        os.environ.pop("WARMREC_SERVE_ADMIN_TOKEN_FILE", None)
    bound, real_port = sock.getsockname()[:2]
    where = f"[{bound}]" if ":" in bound else bound
    docs = "no docs" if no_docs else "docs at /docs"
    if session_store == "memory" and workers > 1:  # after every check: errors stay one line
        click.echo(
            f"warmrec: warning: --workers {workers} with --session-store memory: each worker "
            "keeps its own sessions and POST /admin/reload is refused; use --session-store "
            "redis://host:port/db",
            err=True,
        )
    click.echo(f"warmrec: serving {model_dir} on http://{where}:{real_port} ({docs})", err=True)
    if workers == 1:
        app = create_app(
            os.path.abspath(model_dir),
            bundle=bundle,
            threads=threads,
            engine=engine,
            max_sessions=max_sessions,
            max_events=max_events,
            session_ttl_s=session_ttl,
            session_store=session_store,
            max_session_bytes=max_session_bytes,
            max_store_bytes=store_bytes,
            admin_token=token,
            allowed_hosts=hosts,
            docs=not no_docs,
            max_inflight=max_inflight or None,
        )
        run(app, sock, log_level=log_level)
        return
    os.environ.update(settings)
    del bundle  # each worker loads its own
    gc.collect()
    run("warmrec.serving.app:app_from_env", sock, workers=workers, log_level=log_level)
