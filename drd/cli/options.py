"""Options shared by every ``drd`` subcommand."""

from __future__ import annotations

import click

from drd.cli.context import CliState


def _remember_home(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.ensure_object(CliState).home_option = value


def home_option(command):
    """``--home DIR`` on a subcommand (the group takes it too; the last one given wins)."""
    return click.option(
        "--home", type=click.Path(file_okay=False), expose_value=False, is_eager=True,
        callback=_remember_home, help="drd home directory (default $DRD_HOME).",
    )(command)


def json_option(command):
    return click.option("--json", "as_json", is_flag=True,
                        help="Print machine-readable JSON on stdout.")(command)
