"""Shared CLI plumbing: config files plus --set overrides, data options, output as table or JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click
import polars as pl

from warmrec.config import apply_overrides, load_toml

TIME_UNITS = ("auto", "s", "ms", "us", "ns", "ordinal")  # warmrec.data.columns.TIME_UNITS
_TIME_UNIT = "warmrec.time_unit"


def _keep_time_unit(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.meta[_TIME_UNIT] = value


def time_unit() -> str | None:
    """The --time-unit of the running command (kept in the click context, not a parameter)."""
    ctx = click.get_current_context(silent=True)
    return None if ctx is None else ctx.meta.get(_TIME_UNIT)


def data_options(f):
    """--format, --col canonical=column, --no-timestamp, --order COL, --time-unit for any command
    that reads data. --time-unit reaches the reader through :func:`time_unit`."""
    f = click.option(
        "--time-unit",
        type=click.Choice(TIME_UNITS),
        default=None,
        expose_value=False,
        callback=_keep_time_unit,
        help="Unit of numeric timestamps: s, ms, us, ns, or ordinal (event positions, not "
        "times: no time spans, gaps or splits by days); default auto (s, ms, us or ns by size).",
    )(f)
    f = click.option(
        "--order",
        "order",
        default=None,
        help="Column giving the event order, for logs without timestamps.",
    )(f)
    f = click.option(
        "--no-timestamp",
        is_flag=True,
        help="The log has no time column: file order is the event order.",
    )(f)
    f = click.option(
        "--col",
        "cols",
        multiple=True,
        metavar="CANONICAL=COLUMN",
        help="Column mapping, e.g. --col session_id=SessionId (repeatable).",
    )(f)
    f = click.option(
        "--format",
        "fmt",
        default=None,
        help="Input format or dataset name (detected from the path if omitted).",
    )(f)
    return f


def resplit_option(f):
    """--resplit: merge a split folder's train/valid/test files and split them again."""
    return click.option(
        "--resplit",
        is_flag=True,
        help="For a folder of train/valid/test files (used as given by default): merge them "
        "and split again (by --split, or the default split).",
    )(f)


def parse_cols(cols: tuple[str, ...]) -> dict[str, str] | None:
    if not cols:
        return None
    out = {}
    for c in cols:
        if "=" not in c:
            raise click.BadParameter(f"expected CANONICAL=COLUMN, found {c!r}", param_hint="--col")
        k, v = c.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def read_data(
    path: str, fmt: str | None, cols: tuple[str, ...], no_timestamp: bool, order: str | None
):
    from warmrec.data.prepared import read

    return read(
        path,
        format=fmt,
        columns=parse_cols(cols),
        no_timestamp=no_timestamp,
        order=order,
        time_unit=time_unit(),
    )


def load_config(
    config_file: str | None, sets: tuple[str, ...], base: dict[str, Any] | None = None
) -> dict[str, Any]:
    """TOML file (if any) over ``base``, then ``--set`` overrides."""
    cfg: dict[str, Any] = dict(base or {})
    if config_file:
        for k, v in load_toml(config_file).items():
            if isinstance(v, dict) and isinstance(cfg.get(k), dict):
                cfg[k] = {**cfg[k], **v}
            else:
                cfg[k] = v
    return apply_overrides(cfg, sets)


def _clean(v: Any) -> Any:
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    if hasattr(v, "item"):
        return v.item()
    return v


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(_clean(obj), indent=2, default=str))


def format_table(df: pl.DataFrame) -> str:
    with pl.Config(
        tbl_formatting="ASCII_MARKDOWN",
        tbl_hide_column_data_types=True,
        tbl_hide_dataframe_shape=True,
        tbl_rows=200,
        tbl_cols=50,
        tbl_width_chars=250,
        fmt_str_lengths=60,
        float_precision=4,
    ):
        return str(df)


def echo_mapping(d: dict[str, Any]) -> None:
    width = max((len(k) for k in d), default=0)
    for k, v in d.items():
        if isinstance(v, float):
            v = f"{v:.4g}"
        click.echo(f"{k:<{width}}  {v}")


def out_path(p: str | None) -> Path | None:
    return Path(p) if p else None
