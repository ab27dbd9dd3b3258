"""``drd replicate [SYSTEM] [--store S]``: bring every store up to date now, in the
foreground (:func:`drd.replication.run.replicate`)."""

from __future__ import annotations

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
    try:
        with systems_locked(state.catalog(), [system] if system else None, exclusive=False,
                            wait=LOCK_WAIT_SECONDS):
            report = replicate(state.catalog(), state.master_key(), state.config(),
                               systems=[system] if system else None,
                               stores=list(stores) or None, progress=bar)
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
        output.emit_json(report.as_dict())
    else:
        rows = [{"system": r.system, "store": r.store,
                 "copied": f"{r.objects_copied} ({human_bytes(r.bytes_copied)})",
                 "lag": _lag(r),
                 "watermark": r.watermark_at, "state": "ok" if r.ok else "BEHIND"}
                for r in report.stores]
        output.emit_table(rows, ["system", "store", "copied", "lag", "watermark", "state"],
                          empty="no systems to replicate")
    failed = report.failed
    if failed:
        reasons = "; ".join(f"{r.system} on {r.store}: {r.errors[0] if r.errors else 'behind'}"
                            for r in failed)
        raise OperationError(f"{len(failed)} store(s) could not be brought up to date "
                             f"({reasons}); the daemon retries on its replication schedule, "
                             "or run drd replicate again")
