"""The ``warmrec`` entry point: command groups, and one-line errors with a non-zero exit."""

from __future__ import annotations

import sys

import click

from warmrec import __version__
from warmrec.errors import WarmrecError


class WarmrecGroup(click.Group):
    """Turns warmrec's own exceptions into one line on stderr and exit status 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except WarmrecError as e:
            click.echo(f"warmrec: error: {e}", err=True)
            sys.exit(2)
        except FileNotFoundError as e:
            click.echo(f"warmrec: error: {e.filename or e}: no such file or directory", err=True)
            sys.exit(2)


@click.group(cls=WarmrecGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="warmrec")
def cli() -> None:
    """warmrec: next-item recommendation for small, cold domains."""


def _register() -> None:
    from warmrec.cli import data, demo, models
    from warmrec.cli import transfer as transfer_cli

    cli.add_command(data.data)
    for cmd in (models.train, models.evaluate_cmd, models.recommend, models.list_models):
        cli.add_command(cmd)
    cli.add_command(demo.demo)
    cli.add_command(transfer_cli.pretrain)
    cli.add_command(transfer_cli.transfer_cmd)
    cli.add_command(transfer_cli.study)


_register()


def main() -> None:
    cli(prog_name="warmrec")


if __name__ == "__main__":  # pragma: no cover
    main()
