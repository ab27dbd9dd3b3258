"""``drd backup-now SYSTEM``: ask a system's agent to back up at its next heartbeat."""

from __future__ import annotations

import click

from drd.cli.context import CliState
from drd.cli.options import home_option
from drd.console import output
from drd.services.agents import request_backup


@click.command("backup-now")
@home_option
@click.argument("system")
@click.pass_obj
def backup_now_command(state: CliState, system: str) -> None:
    """Ask SYSTEM's agent to back up now (it learns of it at its next heartbeat)."""
    requested = request_backup(state.catalog(), system)
    output.say(f"backup of {system} requested ({requested:%Y-%m-%d %H:%M:%S}Z); its agent "
               "starts it at its next heartbeat")
