"""Shared CLI plumbing: config files plus --set overrides, data options, output as table or JSON.

Only ``click`` and the standard library are imported at module level: ``warmrec --help`` must not
pay for polars, numpy, scipy or torch; commands import what they need when they run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    import polars as pl

TIME_UNITS = ("auto", "s", "ms", "us", "ns", "ordinal")  # warmrec.data.columns.TIME_UNITS
_TIME_UNIT = "warmrec.time_unit"


def _keep_time_unit(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.meta[_TIME_UNIT] = value


def time_unit() -> str | None:
    """The --time-unit of the running command (kept in the click context, not a parameter)."""
    ctx = click.get_current_context(silent=True)
    return None if ctx is None else ctx.meta.get(_TIME_UNIT)


_FEATURE_FILES = "warmrec.feature_files"


def _keep_feature_file(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.meta.setdefault(_FEATURE_FILES, {})[param.name] = value


def feature_files() -> dict[str, str]:
    """The --items / --users files of the running command (``{"items": PATH, ...}``, kept in
    the click context like --time-unit)."""
    ctx = click.get_current_context(silent=True)
    return {} if ctx is None else dict(ctx.meta.get(_FEATURE_FILES, {}))


_DROP_DUPLICATES = "warmrec.drop_duplicates"


def _keep_drop_duplicates(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta[_DROP_DUPLICATES] = True


def drop_duplicates() -> bool:
    """Whether the running command was given --drop-duplicates (kept like --time-unit)."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.meta.get(_DROP_DUPLICATES))


_NAMES = "warmrec.names"


def _keep_names(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        names = [n.strip() for n in value.split(",")]
        if not all(names):
            raise click.BadParameter(
                f"expected column names separated by commas, found {value!r}",
                param_hint="--names",
            )
        ctx.meta[_NAMES] = names


def names() -> list[str] | None:
    """The --names of the running command (kept like --time-unit)."""
    ctx = click.get_current_context(silent=True)
    return None if ctx is None else ctx.meta.get(_NAMES)


def data_options(f):
    """--format, --col canonical=column, --no-timestamp, --order COL, --sep, --names,
    --time-unit, --items, --users, --drop-duplicates for any command that reads data. --names,
    --time-unit, --items, --users and --drop-duplicates reach the reader through
    :func:`names`, :func:`time_unit`, :func:`feature_files` and :func:`drop_duplicates`."""
    f = click.option(
        "--drop-duplicates",
        is_flag=True,
        expose_value=False,
        callback=_keep_drop_duplicates,
        help="Drop exact duplicate events (same sequence, item and time as an earlier row; "
        'data.duplicates = "drop").',
    )(f)
    for name, what in (
        ("--users", "user (user_id or a common name for it)"),
        ("--items", "item (item_id or a common name for it; titles, text, tags for the text "
         "models, categories for BST)"),
    ):  # fmt: skip
        f = click.option(
            name,
            default=None,
            metavar="FILE",
            expose_value=False,
            callback=_keep_feature_file,
            help=f"{what.split()[0].title()} features beside the log: CSV/TSV/Parquet, one row "
            f"per {what}.",
        )(f)
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
        "--names",
        default=None,
        metavar="COL,COL,...",
        expose_value=False,
        callback=_keep_names,
        help="The file has no header line: its columns in order, e.g. --names "
        "user_id,item_id,rating,timestamp (MovieLens' u.data).",
    )(f)
    f = click.option(
        "--sep",
        "sep",
        default=None,
        metavar="CHAR",
        help="Field separator of a delimited text file (default: by the suffix, ',' or tab).",
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


def data_config(
    path: str | None,
    fmt: str | None,
    cols: tuple[str, ...],
    no_timestamp: bool,
    order: str | None,
    sep: str | None = None,
) -> dict[str, Any]:
    """The ``[data]`` config section the data options describe (only what was given)."""
    d: dict[str, Any] = {}
    if path:
        d["path"] = path
    if fmt:
        d["format"] = fmt
    if cols:
        d["columns"] = parse_cols(cols)
    if no_timestamp:
        d["no_timestamp"] = True
    if order:
        d["order"] = order
    if sep is not None:
        d["sep"] = sep
    header = names()
    if header is not None:
        d["names"] = header
    unit = time_unit()
    if unit is not None:
        d["time_unit"] = unit
    d.update(feature_files())
    if drop_duplicates():
        d["duplicates"] = "drop"
    return d


def flag_config(
    path, fmt, cols, no_timestamp, order, sep, split, resplit: bool = False
) -> dict[str, Any]:
    """``[data]`` and ``[split] method`` (and ``resplit``) from command-line flags (sections only
    when given)."""
    base: dict[str, Any] = {}
    d = data_config(path, fmt, cols, no_timestamp, order, sep)
    if d:
        base["data"] = d
    if split:
        base["split"] = {"method": split}
    if resplit:
        base.setdefault("split", {})["resplit"] = True
    return base


def merge_flags(cfg: dict[str, Any], flags: dict[str, Any]) -> dict[str, Any]:
    """Flags over the TOML file, key by key within each section (a top-level value, such as
    ``refit_all``, replaces the file's)."""
    for sec, vals in flags.items():
        cfg[sec] = {**cfg.get(sec, {}), **vals} if isinstance(vals, dict) else vals
    return cfg


def read_data(
    path: str,
    fmt: str | None,
    cols: tuple[str, ...],
    no_timestamp: bool,
    order: str | None,
    sep: str | None = None,
):
    from warmrec.experiments.spec import DataSpec

    return DataSpec(**data_config(path, fmt, cols, no_timestamp, order, sep)).read()


def command_config(
    config_file: str | None, sets: tuple[str, ...], flags: dict[str, Any]
) -> dict[str, Any]:
    """A command's config: the TOML file, the command-line flags over it (key by key within each
    section), then the ``--set`` overrides."""
    cfg = load_config(None, sets, merge_flags(load_config(config_file, ()), flags))
    ctx = click.get_current_context(silent=True)
    if ctx is not None and CONFIG_FILE_KEYS in ctx.meta:  # keys given again: not the file's
        path, keys = ctx.meta[CONFIG_FILE_KEYS]
        given = {k for v in flags.values() if isinstance(v, dict) for k in v}
        given |= {s.split("=", 1)[0].rsplit(".", 1)[-1].strip() for s in sets}
        ctx.meta[CONFIG_FILE_KEYS] = (path, keys - given)
    return cfg


def set_option(example: str = "--set model.d=32 --set train.epochs=10"):
    """``--set KEY=VALUE`` (repeatable): a config value over the TOML file and the flags."""
    return click.option(
        "--set",
        "sets",
        multiple=True,
        metavar="KEY=VALUE",
        help=f"Override a config value, e.g. {example}.",
    )


CONFIG_FILE_KEYS = "warmrec.config_file_keys"
"""ctx.meta key: ``(path, keys)`` of the --config file the running command read."""


def load_config(
    config_file: str | None, sets: tuple[str, ...], base: dict[str, Any] | None = None
) -> dict[str, Any]:
    """TOML file (if any) over ``base``, then ``--set`` overrides."""
    from warmrec.config import apply_overrides, load_toml

    cfg: dict[str, Any] = dict(base or {})
    if config_file:
        loaded = load_toml(config_file)
        ctx = click.get_current_context(silent=True)
        if ctx is not None:  # an error about one of its keys names the file
            keys = {k for v in loaded.values() if isinstance(v, dict) for k in v} | set(loaded)
            ctx.meta[CONFIG_FILE_KEYS] = (str(config_file), keys)
        for k, v in loaded.items():
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


def progress_lines(as_json: bool):
    """Within: a training run whose bar cannot show (stderr is a log file) prints a line per
    epoch (or per tenth of the steps) on stderr; off under ``--json``, whose output stays one
    parseable document (:func:`warmrec.training.loop.epoch_lines`)."""
    from warmrec.training.loop import epoch_lines

    return epoch_lines(not as_json)


def emit_json(obj: Any) -> None:
    """Pretty JSON on stdout; non-ASCII text stays as it is (not ``\\u`` escapes)."""
    click.echo(json.dumps(_clean(obj), indent=2, default=str, ensure_ascii=False))


def format_table(df: pl.DataFrame) -> str:
    """A table for the terminal; floats as the reports write them
    (:func:`~warmrec.reports.tables.format_value`: 4 decimals, ``3.00e-05`` where those would
    read 0)."""
    import polars as pl

    from warmrec.reports.tables import format_value

    df = df.with_columns(
        pl.Series(c, [None if v is None else format_value(v) for v in df[c]], dtype=pl.Utf8)
        for c in df.columns
        if df[c].dtype.is_float()
    )
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
