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
    """Ask SYSTEM's agent to back up now (it learns of it at its next heartbeat).

    With --server: through the centre's API, as an owner of SYSTEM."""
    if state.remote is not None:
        from drd.cli.remote import RemoteCentre, system_path

        with RemoteCentre(state.remote) as centre:
            answer = centre.post(system_path(system, "backup-now"))
        output.say(f"backup of {answer['system']} requested ({answer['requested_at']}); its "
                   "agent starts it at its next heartbeat")
        return
    requested = request_backup(state.catalog(), system)
    output.say(f"backup of {system} requested ({requested:%Y-%m-%d %H:%M:%S}Z); its agent "
               "starts it at its next heartbeat")
