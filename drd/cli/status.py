"""``drd status``: every system against its RPO."""

from __future__ import annotations

from collections import Counter

import click

from drd.cli.context import CliState
from drd.cli.options import home_option, json_option
from drd.console import output
from drd.services import credentials
from drd.services import status as status_service


@click.command("status")
@home_option
@json_option
@click.pass_obj
def status_command(state: CliState, as_json: bool) -> None:
    """Each system's last good backup, its age and whether it is later than its RPO.

    With --server: the systems the token may see, through the centre's API."""
    if state.remote is not None:
        _remote_status(state.remote, as_json)
        return
    statuses = status_service.system_statuses(state.catalog())
    totals = status_service.totals(statuses)
    coverage = status_service.store_coverage(state.catalog())
    keys = credentials.pending_work(state.catalog())
    if as_json:
        output.emit_json({"systems": [s.as_dict() for s in statuses], "totals": totals,
                          "stores": coverage, "credentials": [k.as_dict() for k in keys]})
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
    # every key to be disabled, the rest in full only while they are few (an upgrade or a
    # new store makes thousands at once): --json has them all
    urgent = [key for key in keys if key.state == "disabling"]
    rest = [key for key in keys if key.state != "disabling"]
    shown = urgent + (rest if len(rest) <= KEY_LINES else [])
    for key in shown:
        output.echo(f"keys of {key.system} in store {key.store}: {_KEY_WORK[key.state]}"
                    + (f" ({key.reason})" if key.reason else "")
                    + (f"; {key.attempts} failed attempt(s), last: {key.last_error}"
                       if key.last_error else ""))
    if len(rest) > KEY_LINES:
        counts = Counter(key.state for key in rest)
        output.echo("systems' keys: " + ", ".join(
            f"{count} {_KEY_WORK[state]}" for state, count in sorted(counts.items()))
            + " (drd status --json lists them)")


KEY_LINES = 20


_KEY_WORK = {"pending": "to be made", "disabling": "TO BE DISABLED",
             "superseded": "replaced, waiting for the agent to use its new key",
             "unconfirmed": "made, not yet used by the agent (its next heartbeat says)"}


def _remote_status(options, as_json: bool) -> None:
    from drd.cli.remote import PAGE_LIMIT, RemoteCentre

    with RemoteCentre(options) as centre:
        first = centre.get("/v1/status", limit=PAGE_LIMIT)
        systems = list(first["items"])
        if first.get("next"):
            systems += list(centre.pages("/v1/status", cursor=first["next"]))
    if as_json:
        output.emit_json({"verdict": first["verdict"], "counts": first["counts"],
                          "systems": systems})
        return
    rows = [{"system": system["name"], "department": system["department"],
             "policy": system["policy"], "status": system["status"],
             "last_backup_at": (system["last_good_snapshot"] or {}).get("time"),
             "age": status_service.short_age(system["age_seconds"]),
             "rpo": status_service.short_age(system["rpo_seconds"]),
             "late": "LATE" if system["late"] else ("ok" if system["status"] == "enrolled"
                                                    else "-")}
            for system in systems]
    output.emit_table(rows, ["system", "department", "policy", "status", "last_backup_at",
                             "age", "rpo", "late"],
                      empty="this token sees no system (ask the centre's administrator)")
    counts = first["counts"]
    output.echo(f"{first['verdict']}: {counts['systems']} system(s), {counts['late']} late, "
                f"open alerts {sum(counts['alerts'].values())}")
