"""``drd replicate [SYSTEM] [--store S]``: bring every store up to date now, in the
foreground (:func:`drd.replication.run.replicate`), and settle the reported snapshots
still unconfirmed, as the daemon's replication job does (:mod:`drd.confirmation`)."""

from __future__ import annotations

import os

import click

from drd.cli.context import CliState
from drd.cli.options import home_option, json_option
from drd.console import output
from drd.console.progress import ProgressBar, human_bytes
from drd.daemon.locks import LOCK_WAIT_SECONDS, systems_locked
from drd.daemon.runs import ForegroundRun, record_runs
from drd.errors import OperationError


def _lag(result) -> str:
    if result.lag_objects is None:
        return "-"
    lag = f"{result.lag_objects} ({human_bytes(result.lag_bytes or 0)})"
    if result.listed:
        return lag
    # what the ledger knows it lacks: at least that
    return f"unreachable (>= {lag})" if result.lag_objects else "unreachable"


@click.command("replicate")
@home_option
@click.argument("system", required=False)
@click.option("--store", "stores", multiple=True, metavar="S",
              help="Bring only this store up to date (repeatable); every store of the "
                   "system still serves as a source.")
@json_option
@click.pass_obj
def replicate_command(state: CliState, system: str | None, stores: tuple[str, ...],
                      as_json: bool) -> None:
    """Copy what each store lacks of SYSTEM's repository (default: every system) from the
    stores that hold it, keyless, and record each store's watermark.

    Exits 1 when a store could not be brought up to date; the daemon retries it on its
    schedule.
    """
    from drd.replication.run import replicate

    bar = None if as_json or not output.is_terminal() else ProgressBar(
        "replicate", unit="objects")
    wanted = [system] if system else None
    try:
        with systems_locked(state.catalog(), wanted, exclusive=False,
                            wait=LOCK_WAIT_SECONDS):
            settled = _confirm(state, wanted)
            report = replicate(state.catalog(), state.master_key(), state.config(),
                               systems=wanted, stores=list(stores) or None, progress=bar)
            # the pass may have copied waiting snapshots to more stores
            settled += _confirm(state, [r.system for r in settled if r.waiting] or [])
    finally:
        if bar is not None:
            bar.finish()
    by_system: dict[str, list] = {}
    for result in report.stores:
        by_system.setdefault(result.system, []).append(result)
    record_runs(state.catalog(), "replicate", [
        ForegroundRun(system=name, store=None, ok=all(r.ok for r in results),
                      bytes_processed=sum(r.bytes_copied for r in results),
                      error=next((e for r in results for e in r.errors), None))
        for name, results in by_system.items()], started_at=report.started_at)
    if as_json:
        output.emit_json(report.as_dict()
                         | {"confirmation": [r.as_dict() for r in settled]})
    else:
        rows = [{"system": r.system, "store": r.store,
                 "copied": f"{r.objects_copied} ({human_bytes(r.bytes_copied)})",
                 "lag": _lag(r),
                 "watermark": r.watermark_at, "state": "ok" if r.ok else "BEHIND"}
                for r in report.stores]
        output.emit_table(rows, ["system", "store", "copied", "lag", "watermark", "state"],
                          empty="no systems to replicate")
        for line in _confirmation_lines(settled):
            output.echo(line)
    failed = report.failed
    if failed:
        reasons = "; ".join(f"{r.system} on {r.store}: {r.errors[0] if r.errors else 'behind'}"
                            for r in failed)
        raise OperationError(f"{len(failed)} store(s) could not be brought up to date "
                             f"({reasons}); the daemon retries on its replication schedule, "
                             "or run drd replicate again")


def _confirm(state: CliState, systems: list[str] | None) -> list:
    """Confirm or reject the unconfirmed reports of ``systems`` (None: every system)."""
    from drd.confirmation.run import confirm_reports, systems_waiting

    if systems == []:
        return []
    return [confirm_reports(state.catalog(), state.master_key(), name,
                            actor=f"cli:{_user()}")
            for name in systems_waiting(state.catalog(), systems)]


def _confirmation_lines(reports: list) -> list[str]:
    """What the confirmation settled, one line per snapshot (the last word per id)."""
    outcome: dict[tuple[str, str], str] = {}
    for report in reports:
        for snapshot in report.confirmed:
            outcome[(report.system, snapshot)] = "confirmed"
        for snapshot, reason in report.rejected.items():
            outcome[(report.system, snapshot)] = f"REJECTED ({reason})"
        for snapshot, reason in report.waiting.items():
            outcome[(report.system, snapshot)] = f"unconfirmed ({reason})"
    return [f"snapshot {snapshot[:8]} of {system}: {said}"
            for (system, snapshot), said in sorted(outcome.items())]


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return str(os.getuid())
