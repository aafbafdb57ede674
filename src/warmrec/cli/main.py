"""The ``warmrec`` entry point: command groups, and one-line errors with a non-zero exit.

Commands are loaded on first use (:class:`WarmrecGroup` knows them by name), and no command module
imports numpy, polars, scipy or torch at module level, so ``warmrec --help`` and ``--version``
start fast. Library messages name Python keyword arguments (``columns={'item_id': '<name>'}``,
``order='<column>'``, ``no_timestamp=True``, ``sep=';'``); :func:`cli_language` rewrites them
into the flags a CLI user types (``--col item_id=<name>``, ``--order <column>``, ...).
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import importlib
import re
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import click

from warmrec import __version__
from warmrec.errors import DataNote, WarmrecError, WarmrecWarning

# command name -> (module, attribute); loaded when the command is used or listed
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("warmrec.cli.data", "data"),
    "train": ("warmrec.cli.models", "train"),
    "evaluate": ("warmrec.cli.models", "evaluate_cmd"),
    "recommend": ("warmrec.cli.models", "recommend"),
    "add-items": ("warmrec.cli.models", "add_items_cmd"),
    "models": ("warmrec.cli.models", "list_models"),
    "demo": ("warmrec.cli.demo", "demo"),
    "pretrain": ("warmrec.cli.transfer", "pretrain"),
    "pretrain-multi": ("warmrec.cli.transfer", "pretrain_multi"),
    "transfer": ("warmrec.cli.transfer", "transfer_cmd"),
    "study": ("warmrec.cli.transfer", "study"),
    "predict": ("warmrec.cli.serving", "predict_cmd"),
    "serve": ("warmrec.cli.serving", "serve"),
    "tune": ("warmrec.cli.tune", "tune"),
    "recipe": ("warmrec.cli.recipe", "recipe"),
    "auto": ("warmrec.cli.auto", "auto_cmd"),
}
# group name -> {subcommand name -> (module, attribute)}: subcommands living in other modules
SUBCOMMANDS: dict[str, dict[str, tuple[str, str]]] = {
    "study": {
        "coldstart": ("warmrec.cli.coldstart", "study_coldstart"),
        "curve": ("warmrec.cli.curve", "study_curve"),
    },
}

_REWRITES: list[tuple[re.Pattern[str], Any]] = [
    (re.compile(r"columns=\{'(\w+)': '([^']*)'\}"), r"--col \1=\2"),
    (re.compile(r"columns=\{[^}]*\}"), "--col CANONICAL=COLUMN"),
    (re.compile(r"(?<![\w.])order='([^']*)'"), r"--order \1"),
    (re.compile(r"(?<![\w.])no_timestamp=True"), "--no-timestamp"),
    (re.compile(r"(?<![\w.])sep=('[^']*'|\"[^\"]*\")"), r"--sep \1"),
    (re.compile(r"(?<![\w.])format='([^']*)'"), r"--format \1"),
    # a command without --format (pretrain-multi reads each source's format from its section)
    (re.compile(r"--format (\w+)"), lambda m: _format_flag(m.group(1))),
    (re.compile(r"(?<![\w.])fallback='([^']*)'"), r"--fallback \1"),
    (re.compile(r"field 'gap_seconds'"), "--gap"),
    # run-spec fields that have a flag of their own, then the rest as --set keys
    (
        re.compile(r"\bTrainerConfig\.(num_threads|epochs|patience|seed|device|checkpoint_dir)\b"),
        lambda m: _flag_or(
            _TRAINER_FLAGS.get(m.group(1), "--" + m.group(1)), "train." + m.group(1)
        ),
    ),
    (re.compile(r"\bTrainerConfig\.(\w+)"), r"train.\1"),
    (
        re.compile(r"\b(?:RunSpec\.transfer|TransferSpec)\.(strategy|init|seed)\b"),
        lambda m: _flag_or("--" + m.group(1), "transfer." + m.group(1)),
    ),
    (re.compile(r"\bTransferSpec\.(\w+)"), r"transfer.\1"),
    (re.compile(r"\bRunSpec\.(\w+)"), r"\1"),
    (re.compile(r"\bEvalSpec\.(\w+)"), r"eval.\1"),
    (re.compile(r"\bDataSpec\.(\w+)"), r"data.\1"),
    # a model's config class, as the user knows it: the model and its TOML section
    (
        re.compile(r"\bfor (\w+(?:Config|Spec))\b(?!\.)"),
        lambda m: f"for {_model_of_config(m.group(1))}",
    ),
]

_TRAINER_FLAGS = {"num_threads": "--threads", "checkpoint_dir": "--checkpoint-dir"}
_FLAGS: contextvars.ContextVar[set[str] | None] = contextvars.ContextVar("flags", default=None)
"""The options of the command that failed, while :func:`cli_language` rewrites its message
(None: any flag is taken to exist)."""


def _format_flag(fmt: str) -> str:
    flags = _FLAGS.get()
    if flags is None or "--format" in flags:
        return f"--format {fmt}"
    if "--source" in flags:
        return f"--set sources.LABEL.data.format={fmt}"
    return f"--set data.format={fmt}"


def _flag_or(flag: str, key: str) -> str:
    """``flag`` where the running command has it, else the config key that sets the value."""
    flags = _FLAGS.get()
    return flag if flags is None or flag in flags else key


_SECTIONS = {
    "TrainerConfig": "[train] (--set train.KEY)",
    "DataSpec": "[data] (--set data.KEY)",
    "EvalSpec": "[eval] (--set eval.KEY)",
    "TransferSpec": "[transfer] (--set transfer.KEY)",
    "MultiSourceConfig": "[multi] (--set multi.KEY)",
    "RunSpec": "the run config (sections data, split, model, train, eval, transfer)",
}
"""Config classes a user meets as TOML sections, by the name they know them by."""


def _model_of_config(config_class: str) -> str:
    """``"model 'sasrec' ([model], --set model.KEY)"`` for ``"SASRecConfig"``; other config
    classes unchanged. Imports the registered models (only on this error path)."""
    if config_class in _SECTIONS:
        return _SECTIONS[config_class]
    from warmrec.registry import available_models, model_class

    for name in available_models():
        try:
            cls = model_class(name)
        except Exception:  # noqa: BLE001 - a model whose extra is missing cannot be the one
            continue
        if getattr(getattr(cls, "Config", None), "__name__", None) == config_class:
            return f"model '{name}' ([model], --set model.KEY)"
    return config_class


def cli_language(message: str, flags: set[str] | None = None) -> str:
    """A library message with Python keyword arguments rewritten as CLI flags; a trainer or
    transfer field becomes its flag only where the command has it (``flags``: its options;
    None: every flag), else its config key (``train.epochs``)."""
    token = _FLAGS.set(flags)
    try:
        for pattern, repl in _REWRITES:
            message = pattern.sub(repl, message)
    finally:
        _FLAGS.reset(token)
    return message


_KEYS_IN_MESSAGES: list[tuple[re.Pattern[str], str | None]] = [
    (re.compile(r"unknown key '([^']+)'"), None),
    (re.compile(r"^(?:[\w.]*\.)?(\w+): (?:expected|unknown \w+ ')"), None),
    (re.compile(r"^unknown config section\(s\) (\w+)"), None),
    (re.compile(r"^split method: expected"), "method"),
    (re.compile(r"^unknown model '"), "name"),
]
"""How a message names the config key it is about: the pattern's group, else the key given."""


def _key_in_message(message: str) -> str | None:
    for pattern, key in _KEYS_IN_MESSAGES:
        m = pattern.search(message)
        if m:
            return key or m.group(1)
    return None


def _name_config_file(ctx: click.Context, message: str) -> str:
    """``message`` with the --config file in front where the key it names is one of the
    file's (``cfg.toml: unknown key 'dd' for model 'sasrec' ...``)."""
    from warmrec.cli.common import CONFIG_FILE_KEYS

    found = ctx.meta.get(CONFIG_FILE_KEYS)
    key = _key_in_message(message)
    if found is None or key is None or message.startswith(found[0]):
        return message
    path, keys = found
    return f"{path}: {message}" if key in keys else message


def _command_flags(group: click.Group, ctx: click.Context, args: list[str]) -> set[str] | None:
    """The options of the (sub)command ``args`` name, or None where none is found."""
    cmd: click.Command = group
    while isinstance(cmd, click.Group) and args:
        sub = cmd.get_command(ctx, args[0])
        if sub is None:
            return None
        cmd, args = sub, args[1:]
    if cmd is group:
        return None
    return {
        o for p in cmd.params for o in (*getattr(p, "opts", ()), *getattr(p, "secondary_opts", ()))
    }


_ONE_LINE_ERRNOS = {
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EISDIR,
    errno.ENOTDIR,
    errno.EEXIST,
    errno.ENAMETOOLONG,
}
"""OS errors of paths the user named: one line and exit 2, as any bad input (others: a traceback)."""


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Within: warmrec's own warnings (:class:`~warmrec.errors.WarmrecWarning`) print as one line,
    ``warmrec: warning: ...``, not as Python shows a warning (the source path and line of code
    that raised it); other packages' warnings are shown as Python shows them."""
    show = warnings.showwarning

    def one_line(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, DataNote):
            click.echo(f"warmrec: note: {cli_language(str(message))}", err=True)
        elif issubclass(category, WarmrecWarning):
            click.echo(f"warmrec: warning: {cli_language(str(message))}", err=True)
        else:
            show(message, category, filename, lineno, file, line)

    warnings.showwarning = one_line
    try:
        yield
    finally:
        warnings.showwarning = show


class WarmrecGroup(click.Group):
    """Turns warmrec's own exceptions into one line on stderr and exit status 2."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in COMMANDS:
            module, attr = COMMANDS[name]
            cmd = getattr(importlib.import_module(module), attr)
            for sub, (sub_module, sub_attr) in SUBCOMMANDS.get(name, {}).items():
                cmd.add_command(getattr(importlib.import_module(sub_module), sub_attr), sub)
            self.add_command(cmd, name)
        return self.commands.get(name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if (
            name
            and not name.startswith("-")
            and not ctx.resilient_parsing
            and self.get_command(ctx, name) is None
        ):  # close names among every command, not only those loaded so far
            raise click.exceptions.NoSuchCommand(
                name, possibilities=self.list_commands(ctx), ctx=ctx
            )
        return super().resolve_command(ctx, args)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        """Click's entry, with a usage error (a bad or missing option, an unknown command) as
        one line naming the help to read, like every other error, instead of click's usage
        block."""
        if kwargs.get("standalone_mode", True) is False:
            return super().main(*args, **kwargs)
        kwargs["standalone_mode"] = False
        try:
            rv = super().main(*args, **kwargs)
        except click.UsageError as e:
            if isinstance(e, getattr(click.exceptions, "NoArgsIsHelpError", ())):
                e.show()  # a bare group: its help
                sys.exit(e.exit_code)
            where = e.ctx.command_path if e.ctx is not None else "warmrec"
            message = e.format_message().rstrip(".")
            click.echo(f"warmrec: error: {message} (see {where} -h)", err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx: click.Context):
        # emptied by the group's invoke; click 8.2+ keeps them as _protected_args (its
        # protected_args property warns), and a warning filter changed here would reset
        # Python's once-per-location record of every warning shown so far
        protected = getattr(ctx, "_protected_args", None)
        if protected is None:
            protected = ctx.protected_args
        args = [*protected, *ctx.args]
        try:
            with one_line_warnings():
                return super().invoke(ctx)
        except WarmrecError as e:
            named = _name_config_file(ctx, str(e))
            # a value from the file is named by its key there (train.epochs), not by a flag
            flags = set() if named != str(e) else _command_flags(self, ctx, args)
            message = cli_language(named, flags)
            click.echo(f"warmrec: error: {message}", err=True)
            sys.exit(2)
        except FileNotFoundError as e:
            click.echo(f"warmrec: error: {e.filename or e}: no such file or directory", err=True)
            sys.exit(2)
        except OSError as e:  # a file that cannot be written (read-only, full disk) or read
            if e.errno not in _ONE_LINE_ERRNOS:
                raise
            # a rename onto the user's path names it second (the first: warmrec's temporary)
            name = str(e.filename2 or e.filename or "")
            if len(name) > 120:  # ENAMETOOLONG: the name itself is the problem
                name = f"{name[:60]}...{name[-40:]} ({len(name):,} characters)"
            where = f"{name}: " if name else ""
            click.echo(f"warmrec: error: {where}{(e.strerror or str(e)).lower()}", err=True)
            sys.exit(2)


@click.group(cls=WarmrecGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="warmrec")
def cli() -> None:
    """warmrec: next-item recommendation for small, cold domains."""


def main() -> None:
    cli(prog_name="warmrec")


if __name__ == "__main__":  # pragma: no cover
    main()
