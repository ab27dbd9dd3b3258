"""``drd retention plan|run SYSTEM``: what retention would forget and why; apply it now."""

from __future__ import annotations

import click

from drd.catalog.types import utcnow
from drd.cli.context import CliState
from drd.cli.options import home_option, json_option
from drd.console import output
from drd.console.progress import ProgressBar
from drd.crypto.keystore import KeyStore
from drd.daemon.locks import LOCK_WAIT_SECONDS, systems_locked
from drd.daemon.runs import ForegroundRun, record_runs
from drd.errors import OperationError
from drd.retention.run import plan_retention, run_retention


@click.group("retention")
def retention_group() -> None:
    """Which snapshots the policy's retention forgets, and applying it."""


@retention_group.command("plan")
@home_option
@click.argument("system")
@json_option
@click.pass_obj
def plan_command(state: CliState, system: str, as_json: bool) -> None:
    """Show what retention would forget of SYSTEM now, and why each kept snapshot stays.

    Works from the catalog's snapshots; needs no password and touches no store.
    """
    decision = plan_retention(state.catalog(), system)
    if as_json:
        output.emit_json({"system": system, **decision.as_dict()})
        return
    rows = [{"time": snapshot.time, "id": snapshot.id[:8], "action": action,
             "why": "; ".join(decision.reasons[snapshot.id])}
            for action, group in (("keep", decision.keep), ("forget", decision.remove))
            for snapshot in group]
    rows.sort(key=lambda row: row["time"], reverse=True)
    output.emit_table(rows, ["time", "id", "action", "why"], empty="no snapshots yet")


@retention_group.command("run")
@home_option
@click.argument("system")
@json_option
@click.pass_obj
def run_command(state: CliState, system: str, as_json: bool) -> None:
    """Apply SYSTEM's retention now: forget and prune on one store, then remove what
    prune removed from the other stores once the policy's delete delay has passed.

    Unseals the system's password (written to the audit log). Exit status 1 when the
    run did not finish; run it again to resume.
    """
    config = state.config()
    master_key = state.master_key()
    bar = None if as_json or not output.is_terminal() else ProgressBar(
        "retention", unit="objects")
    started_at = utcnow()
    try:
        with systems_locked(state.catalog(), [system], exclusive=True,
                            wait=LOCK_WAIT_SECONDS):
            report = run_retention(state.catalog(), master_key,
                                   KeyStore(config.keys_dir, master_key), config, system,
                                   actor="cli", progress=bar)
    finally:
        if bar is not None:
            bar.finish()
    record_runs(state.catalog(), "retention", [ForegroundRun(
        system=system, store=None, ok=report.ok,
        error=report.errors[0] if report.errors else None)], started_at=started_at)
    if as_json:
        output.emit_json(report.as_dict())
    else:
        output.say(f"{system}: pruned on {report.store or '-'}; forgot "
                   f"{len(report.forgotten)} snapshots, prune removed "
                   f"{report.pruned_objects} objects; {report.deleted_elsewhere} removed "
                   f"from other stores, {report.pending} waiting"
                   + (f"; checked {', '.join(report.checked)} first, "
                      f"{report.resurrected} pruned objects brought back"
                      if report.checked else ""))
    if not report.ok:
        raise OperationError(f"retention of {system} did not finish: "
                             + "; ".join(report.errors))
