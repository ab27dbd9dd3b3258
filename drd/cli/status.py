"""``drd status``: every system against its RPO."""

from __future__ import annotations

import click

from drd.cli.context import CliState
from drd.cli.options import home_option, json_option
from drd.console import output
from drd.services import status as status_service


@click.command("status")
@home_option
@json_option
@click.pass_obj
def status_command(state: CliState, as_json: bool) -> None:
    """Each system's last good backup, its age and whether it is later than its RPO."""
    statuses = status_service.system_statuses(state.catalog())
    totals = status_service.totals(statuses)
    coverage = status_service.store_coverage(state.catalog())
    if as_json:
        output.emit_json({"systems": [s.as_dict() for s in statuses], "totals": totals,
                          "stores": coverage})
        return
    rows = [s.as_dict() | {"late": "LATE" if s.late else ("ok" if s.status == "enrolled"
                                                          else "-")}
            for s in statuses]
    output.emit_table(rows, ["system", "department", "policy", "status", "last_backup_at",
                             "age", "rpo", "late"],
                      empty="no systems yet: issue a token with 'drd system token'")
    if statuses:
        output.echo(f"{totals['systems']} system(s): {totals['enrolled']} enrolled, "
                    f"{totals['pending']} pending, {totals['late']} late")
    for store in coverage:
        if store["coverage"] is not None:
            output.echo(f"store {store['store']}: verified {store['coverage'] * 100:.1f}% "
                        f"within the period, oldest unverified "
                        f"{store['oldest_unverified_seconds'] // 3600}h")
