"""``drd drill``: run a restore drill now, list drills, export and verify their reports."""

from __future__ import annotations

import os

import click

from drd.catalog.types import utcnow
from drd.cli.context import CliState
from drd.cli.drill_report import report_command, verify_report_command
from drd.cli.options import home_option, json_option
from drd.console import output
from drd.console.fill import FillWatcher
from drd.console.progress import ProgressBar, human_bytes
from drd.crypto.keystore import KeyStore
from drd.daemon.locks import LOCK_WAIT_SECONDS, systems_locked
from drd.daemon.runs import ForegroundRun, record_runs
from drd.errors import EXIT_FAILED
from restore_drills.verdict import format_seconds


@click.group("drill")
def drill_group() -> None:
    """Restore drills: prove that each store's copy of a system can be restored."""


drill_group.add_command(report_command)
drill_group.add_command(verify_report_command)


class _SandboxWatcher(FillWatcher):
    """A :class:`~drd.console.fill.FillWatcher` driven by the drill's phases: it watches
    the sandbox during the ``restore`` phase."""

    def __call__(self, progress) -> None:
        self.stop()
        if progress.phase == "restore" and progress.sandbox is not None:
            self.start(progress.sandbox, progress.expected_bytes)


@drill_group.command("run")
@home_option
@click.argument("system")
@click.option("--store", metavar="S", help="Restore from this store (default: the next in "
                                           "rotation, the one drilled longest ago).")
@click.option("--snapshot", "snapshot_id", metavar="ID",
              help="Drill the restore point of this snapshot (full id or a unique prefix; "
                   "default: the policy's drill.snapshot, the newest good one).")
@json_option
@click.pass_obj
def run_command(state: CliState, system: str, store: str | None, snapshot_id: str | None,
                as_json: bool) -> None:
    """Restore SYSTEM from one store into a sandbox, check it and sign the report.

    Reads from that store alone, so a pass proves that copy. Checks: restic restore
    --verify, file count and bytes, every file against the agent's signed manifest
    (with a negative control that must be caught), the policy's application checks,
    RTO and RPO against their targets. Unseals the system's password (audit log).
    Exit status 0 when the drill passed, 1 when it failed.
    """
    from restore_drills.run import run_drill

    config = state.config()
    master_key = state.master_key()
    watcher = None
    if not as_json and output.is_terminal():
        watcher = _SandboxWatcher(ProgressBar("restore", unit=None))
    started_at = utcnow()
    try:
        # shared: drills, replication and verification go together; retention waits
        with systems_locked(state.catalog(), [system], exclusive=False,
                            wait=LOCK_WAIT_SECONDS):
            outcome = run_drill(state.catalog(), master_key,
                                KeyStore(config.keys_dir, master_key), config, state.home,
                                system, store=store, snapshot=snapshot_id,
                                actor=f"cli:{_user()}", trigger="cli", on_phase=watcher)
    finally:
        if watcher is not None:
            watcher.stop()
    report = outcome.report
    record_runs(state.catalog(), "drill", [ForegroundRun(
        # one drill job per system (no store): the store is in the error when it failed
        system=system, store=None, ok=outcome.passed,
        bytes_processed=(report.get("restore") or {}).get("bytes") if outcome.passed else None,
        error=None if outcome.passed else
        f"drill {outcome.id} from {report['store']}: {report['reasons'][0]}")],
        started_at=started_at)
    if as_json:
        output.emit_json(outcome.summary())
    else:
        _print_outcome(report)
    if not outcome.passed:
        raise SystemExit(EXIT_FAILED)


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return str(os.getuid())


def _print_outcome(report: dict) -> None:
    verdict = "PASSED" if report["passed"] else "FAILED"
    output.echo(f"drill {report['id']}: {report['system']} from {report['store']}, snapshot "
                f"{report['snapshot'][:12]}: {verdict}")
    targets = report.get("targets") or {}
    rto = report["rto_seconds"]
    output.echo(f"RTO {format_seconds(rto) if rto is not None else '- (no restore)'} (target "
                f"{format_seconds(targets.get('rto_seconds') or 0)}), RPO "
                f"{format_seconds(report['rpo_seconds'] or 0)} (target "
                f"{format_seconds(targets.get('rpo_seconds') or 0)})")
    rows = [{"check": name, "result": "ok" if check["passed"] else "FAILED",
             "detail": check["detail"]} for name, check in report["checks"].items()]
    output.emit_table(rows, ["check", "result", "detail"], empty="no checks ran")
    phases = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in report["phases"].items())
    restored = report.get("restore") or {}
    output.echo(f"phases: {phases}")
    if restored.get("files") is not None:
        output.echo(f"restored {restored['files']} files ({human_bytes(restored['bytes'])})")
    affected = report.get("affected_files") or []
    if affected:
        output.echo(f"files affected ({len(affected)}): " + ", ".join(affected[:10])
                    + (" ..." if len(affected) > 10 else ""))
    for reason in report.get("reasons") or []:
        output.echo(f"  - {reason}")
    output.echo(f"report: drd drill report {report['id']} --format html -o drill-"
                f"{report['id']}.html")


@drill_group.command("list")
@home_option
@click.argument("system", required=False)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000),
              help="Show at most this many drills, newest first.")
@json_option
@click.pass_obj
def list_command(state: CliState, system: str | None, limit: int, as_json: bool) -> None:
    """List drills (of SYSTEM), newest first: verdict, store, RTO and RPO."""
    from restore_drills.records import list_drills

    drills = list_drills(state.catalog(), system, limit=limit)
    if as_json:
        output.emit_json([drill.as_dict() for drill in drills])
        return
    rows = [{"id": drill.id, "started": drill.started_at, "system": drill.system,
             "store": drill.store, "snapshot": (drill.snapshot or "-")[:8],
             "verdict": drill.verdict,
             "rto": format_seconds(drill.rto_seconds) if drill.rto_seconds is not None else "-",
             "rpo": format_seconds(drill.rpo_seconds) if drill.rpo_seconds is not None else "-",
             "reason": drill.reason or ""}
            for drill in drills]
    output.emit_table(rows, ["id", "started", "system", "store", "snapshot", "verdict", "rto",
                             "rpo", "reason"], empty="no drills yet")
