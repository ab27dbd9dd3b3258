"""``drd alerts``: what an operator must see now (open alerts), newest first."""

from __future__ import annotations

import click

from drd.cli.context import CliState
from drd.cli.options import home_option, json_option
from drd.console import output
from drd.services import alerts as alert_service


@click.command("alerts")
@home_option
@click.option("--all", "show_all", is_flag=True, help="Resolved alerts too.")
@json_option
@click.pass_obj
def alerts_command(state: CliState, show_all: bool, as_json: bool) -> None:
    """List open alerts (damage found by verification, failed checks and jobs)."""
    views = alert_service.list_alerts(state.catalog(), open_only=not show_all)
    if as_json:
        output.emit_json([view.as_dict() for view in views])
        return
    rows = [{"since": view.opened_at, "kind": view.kind, "system": view.system,
             "store": view.store, "times": view.count,
             "state": "resolved" if view.resolved_at else "open", "message": view.message}
            for view in views]
    output.emit_table(rows, ["since", "kind", "system", "store", "times", "state", "message"],
                      empty="no open alerts")
