"""``warmrec data ...``: stats, gaps, sessionize, split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from warmrec.cli.common import (
    data_options,
    echo_mapping,
    emit_json,
    format_table,
    load_config,
    read_data,
)
from warmrec.errors import ConfigError


@click.group()
def data() -> None:
    """Inspect and prepare interaction logs."""


@data.command()
@click.argument("path")
@data_options
@click.option("--plots", "plots_dir", default=None, help="Write PNG plots into this folder.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def stats(path, fmt, cols, no_timestamp, order, sep, plots_dir, as_json):
    """Sizes, length distribution, sparsity, popularity concentration, time span."""
    from warmrec.data.stats import describe, item_counts, length_counts

    inter = read_data(path, fmt, cols, no_timestamp, order, sep)
    d = describe(inter.interactions, time_unit=inter.time_unit)
    if plots_dir:
        from warmrec.reports.plots import plot_length_distribution, plot_popularity

        out = Path(plots_dir)
        plot_length_distribution(length_counts(inter.interactions), out / "lengths.png")
        plot_popularity(item_counts(inter.interactions), out / "popularity.png")
        d["plots"] = [str(out / "lengths.png"), str(out / "popularity.png")]
    ordinal = no_timestamp or order is not None
    if not ordinal:
        for k in ("time_min", "time_max"):
            if isinstance(d.get(k), int | float):
                d[f"{k}_utc"] = utc_date(d[k])
    if as_json:
        emit_json(d)
    else:
        if not ordinal:  # dates instead of Unix seconds
            d = {k: d.get(f"{k}_utc", v) for k, v in d.items() if not k.endswith("_utc")}
        echo_mapping(d)


def echo_split(d: dict[str, Any], dated: bool) -> None:
    """A split's :meth:`~warmrec.data.split.Split.describe` for people: one table row per part
    (its time span as UTC dates where the log has times in seconds, ``-`` where a figure does not
    apply), then the split's settings, one per line (its start dates as dates too)."""
    import polars as pl

    parts = [k for k in ("train", "valid", "test") if isinstance(d.get(k), dict)]
    keys = list(dict.fromkeys(k for p in parts for k in d[p] if k != "time"))
    rows = []
    for p in parts:
        row = {"part": p, **{k: str(d[p].get(k, "-")) for k in keys}}
        lo, hi = d[p].get("time", ("-", "-"))
        if dated and lo != "-":
            lo, hi = utc_date(lo), utc_date(hi)
        rows.append({**row, "from": str(lo), "to": str(hi)})
    click.echo(format_table(pl.DataFrame(rows)))
    settings = {k: v for k, v in d.items() if k not in parts and not isinstance(v, dict)}
    settings.update(d.get("info") or {})
    for k, v in settings.items():
        if dated and (k.endswith(("_start", "_end")) or k == "cut") and isinstance(v, int | float):
            settings[k] = utc_date(v)
    echo_mapping(settings)


def utc_date(seconds: float) -> str:
    """Unix seconds as an ISO 8601 UTC date-time (``2015-03-01T12:00:00Z``)."""
    from datetime import UTC, datetime

    try:
        t = datetime.fromtimestamp(float(seconds), tz=UTC)
    except (OverflowError, OSError, ValueError):
        return f"{seconds:.6g} s"
    text = t.strftime("%Y-%m-%dT%H:%M:%S")
    if t.microsecond:
        text += f".{t.microsecond:06d}".rstrip("0")
    return text + "Z"


def _sequence_key_option(key: str | None, df: Any, path: str) -> str:
    """``--key`` of gaps and sessionize: user_id or session_id, a column of the log (default:
    user_id where the log has one, else session_id)."""
    from warmrec.data.schema import SESSION, USER, sequence_key

    if key is None:
        return USER if USER in df.columns else sequence_key(df)
    if key not in (USER, SESSION) or key not in df.columns:
        have = [c for c in (USER, SESSION) if c in df.columns]
        raise ConfigError(
            f"--key: expected {' or '.join(have)} (whose events form sequences in {path}), "
            f"found {key!r}"
        )
    return key


@data.command()
@click.argument("path")
@data_options
@click.option(
    "--key", default=None, help="Column whose gaps are analysed (default user_id, else session_id)."
)
@click.option("--plot", "plot_path", default=None, help="Write the gap histogram as PNG.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def gaps(path, fmt, cols, no_timestamp, order, sep, key, plot_path, as_json):
    """Inactivity gaps between consecutive events: quantiles, histogram, suggested threshold."""
    from warmrec.data.schema import require_seconds
    from warmrec.data.sessionize import gap_analysis

    inter = read_data(path, fmt, cols, no_timestamp, order, sep)
    require_seconds(inter.time_unit, "data gaps", source=inter.source)
    df = inter.interactions
    key = _sequence_key_option(key, df, path)
    rep = gap_analysis(df, key=key)
    d = rep.to_dict()
    if plot_path:
        from warmrec.reports.plots import plot_gap_histogram

        plot_gap_histogram(rep.bin_edges, rep.counts, rep.suggested_threshold, plot_path)
        d["plot"] = str(plot_path)
    if as_json:
        emit_json(d)
    else:
        flat = {k: v for k, v in d.items() if not isinstance(v, list | dict)}
        flat.update({f"gap {q} (s)": v for q, v in rep.quantiles.items()})
        echo_mapping(flat)


@data.command()
@click.argument("path")
@data_options
@click.option(
    "--gap",
    "gap_seconds",
    type=float,
    default=1800.0,
    show_default=True,
    help="Inactivity gap (seconds) that starts a new session.",
)
@click.option(
    "--key",
    default=None,
    help="Whose events are cut: user_id (the default where the log has users) or session_id.",
)
@click.option("--collapse-repeats", is_flag=True, help="Drop consecutive repeats of an item.")
@click.option("--out", "out", required=True, help="Output file: .parquet, .csv or .tsv.")
@click.option("--json", "as_json", is_flag=True)
def sessionize(
    path, fmt, cols, no_timestamp, order, sep, gap_seconds, key, collapse_repeats, out, as_json
):
    """Cut each user's events into sessions at inactivity gaps; writes the log with its
    session_id (Parquet, CSV or TSV, by the suffix of --out)."""
    from warmrec.data.schema import require_seconds, whole_seconds
    from warmrec.data.sessionize import sessionize as do_sessionize
    from warmrec.io import check_output, check_table_suffix, write_table

    check_table_suffix(out)
    check_output(out, kind="file")  # before reading: a bad --out fails at once
    inter = read_data(path, fmt, cols, no_timestamp, order, sep)
    require_seconds(inter.time_unit, "data sessionize (a gap in seconds)", source=inter.source)
    df = inter.interactions
    key = _sequence_key_option(key, df, path)
    res = do_sessionize(df, gap_seconds=gap_seconds, key=key, collapse_repeats=collapse_repeats)
    write_table(whole_seconds(res), out)
    d = {"events": res.height, "sessions": res["session_id"].n_unique(), "out": out}
    emit_json(d) if as_json else echo_mapping(d)


@data.command()
@click.argument("path")
@data_options
@click.option(
    "--method",
    default="auto",
    show_default=True,
    help="auto (the default policy of every command: loo for user logs, last_session for "
    "session logs), loo, temporal (--set test_start=DATE [--set valid_start=DATE]), "
    "last_session or user.",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Split options, e.g. --set test_start=2019-07-01 or --set seed=3.",
)
@click.option(
    "--out",
    "out",
    required=True,
    help="Output folder: train/valid/test Parquet and manifest.json, written as one unit.",
)
@click.option("--json", "as_json", is_flag=True)
def split(path, fmt, cols, no_timestamp, order, sep, method, sets, out, as_json):
    """Split a log into a split folder: train / valid / test Parquet files and a manifest.

    The folder is written as one unit (a temporary folder renamed into place); reading it back
    (e.g. ``warmrec train --data OUT``) uses the split as given and checks the manifest."""
    from warmrec.data.schema import SESSION
    from warmrec.data.split import require_split_time
    from warmrec.data.split import split as do_split
    from warmrec.data.splitdir import check_split_target, write_split
    from warmrec.errors import ConfigError
    from warmrec.experiments.spec import GivenSplit, resolve_split, split_spec

    check_split_target(out)  # before reading: a bad --out fails at once
    opts = load_config(None, sets)
    spec = split_spec({"method": method, **opts})  # options checked before the log is read
    if spec.train_fraction < 1.0:
        raise ConfigError(
            "train_fraction subsamples training sequences at training time (--set "
            "split.train_fraction=... in train); a split folder keeps every event"
        )
    inter = read_data(path, fmt, cols, no_timestamp, order, sep)
    df = inter.interactions
    spec = resolve_split(spec.model_copy(update={"resplit": True}), inter)
    if isinstance(spec, GivenSplit):
        raise ConfigError(f"{path}: already a split folder; name a --method to split it again")
    method, opts = spec.method, spec.options()
    if method == "loo" and SESSION in df.columns:
        raise ConfigError(
            f"{path}: --method loo holds out the last events of each sequence, so a session "
            "would sit in two parts, which a split folder cannot hold: use --method "
            "last_session, or split at training time (warmrec train --split loo)"
        )
    require_split_time(df, method, opts, inter.time_unit)
    sp = do_split(df, method, **opts)
    if sp.valid.height == 0:
        from warmrec.data.prepared import held_out_none

        hint = " (give --set valid_start=DATE before test_start)" if method == "temporal" else ""
        none = held_out_none(sp, "valid")
        hint = f" ({none}: give --set valid_frac=...)" if none else hint
        raise ConfigError(
            f"{path}: the {method} split leaves the validation part empty{hint}; models are "
            "selected on validation"
        )
    write_split(sp, out, method=method, options=opts, source=str(path))
    d = sp.describe()
    if as_json:
        emit_json(d)
    else:
        echo_split(d, dated=inter.time_unit != "ordinal")
