"""``drd repair STORE [SYSTEM]``: bring back what delete markers and overwrites cover in a
store with versions (:mod:`drd.services.repair`)."""

from __future__ import annotations

import os

import click

from drd.cli.context import CliState
from drd.cli.options import home_option, json_option
from drd.console import output
from drd.console.progress import ProgressBar
from drd.daemon.locks import LOCK_WAIT_SECONDS, systems_locked
from drd.errors import EXIT_FAILED
from drd.repair.repository import ObjectRepair


def _line(item: ObjectRepair, *, dry_run: bool) -> str:
    what = "hidden by a delete marker" if item.reason == "hidden" else "overwritten"
    verb = "would bring back" if dry_run else "brought back"
    return f"  {item.key} ({what}): {verb} version {item.version} ({item.size} bytes)"


@click.command("repair")
@home_option
@click.argument("store")
@click.argument("system", required=False)
@click.option("--dry-run", is_flag=True,
              help="Find and judge what is covered, change nothing.")
@json_option
@click.pass_obj
def repair_command(state: CliState, store: str, system: str | None, dry_run: bool,
                   as_json: bool) -> None:
    """Bring back, in STORE, every object of SYSTEM (default: every system kept there)
    that a delete marker hides or an overwrite covers, from its newest good version.

    Only for stores that keep versions (S3 buckets with Object Lock). Good means: the
    bytes hash to the object's name, or, for config, the sealed password and manifests,
    match the SHA-256 the catalog recorded. The version is put back as the current one
    (the marker or bad version stays beneath it, as evidence), with the policy's Object
    Lock retention, an object.repair audit entry and a tamper alert naming the system.
    Run it again: it does nothing the second time. Exits 1 when an object stays covered
    (no good version in this store: drd verify heals it from another store) or a system
    could not be read.
    """
    from drd.services.repair import repair_store

    catalog = state.catalog()
    bar = None if as_json or not output.is_terminal() else ProgressBar(
        "repair", unit="objects")
    try:
        with systems_locked(catalog, [system] if system else None, exclusive=False,
                            wait=LOCK_WAIT_SECONDS):
            report = repair_store(catalog, state.master_key(), store,
                                  [system] if system else None, actor=f"cli:{_user()}",
                                  dry_run=dry_run, progress=bar)
    finally:
        if bar is not None:
            bar.finish()
    if as_json:
        output.emit_json(report.as_dict())
    else:
        _print(report)
    if not report.ok:
        raise SystemExit(EXIT_FAILED)


def _print(report) -> None:
    if not report.runs:
        output.say(f"nothing to repair: no enrolled system with a policy keeps copies in "
                   f"{report.store}")
        return
    if not report.keeps_versions:
        output.say(f"{report.store} keeps no versions: a deleted or overwritten object "
                   "cannot be brought back from it (drd verify heals from another store)")
        return
    for run in report.runs:
        if run.errors:
            output.echo(f"{run.system} on {run.store}: ERROR {'; '.join(run.errors)}")
            continue
        done = "would bring back" if report.dry_run else "brought back"
        parts = [f"{run.looked_at} covered object(s) looked at",
                 f"{len(run.repaired)} {done}"]
        if run.unrepaired:
            parts.append(f"{len(run.unrepaired)} NOT REPAIRED")
        if run.unchecked:
            parts.append(f"{len(run.unchecked)} unchecked")
        if run.stopped:
            parts.append("stopped early")
        output.echo(f"{run.system} on {run.store}: {', '.join(parts)}")
        for item in run.repaired:
            output.echo(_line(item, dry_run=report.dry_run))
        for item in run.unrepaired:
            output.echo(f"  NOT REPAIRED {item.key} ({item.reason}): {item.detail}")
        for item in run.unchecked:
            output.echo(f"  unchecked {item.key}: {item.detail}")


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return str(os.getuid())
