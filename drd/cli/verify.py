"""``drd verify``: read the stored copies back now, check them and heal what is wrong."""

from __future__ import annotations

import click

from drd.cli.context import CliState
from drd.cli.options import home_option, json_option
from drd.console import output
from drd.console.progress import ProgressBar, human_bytes
from drd.daemon.locks import LOCK_WAIT_SECONDS, systems_locked
from drd.daemon.runs import ForegroundRun, record_runs
from drd.errors import EXIT_FAILED, UserError
from drd.verification import StoreVerification, parse_size, verify
from drd.verification.select import SIZE_HINT, Coverage


def _budget(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return parse_size(text)
    except ValueError as error:
        raise UserError(f"--budget: {error}") from None


def _age(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    minutes = seconds // 60
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    return f"{minutes}m"


def coverage_text(coverage: Coverage | None) -> str:
    """``coverage 97.5%, oldest unverified 3d4h`` (or that nothing is tracked yet)."""
    if coverage is None or coverage.ratio is None:
        return "coverage -, nothing tracked yet"
    data = coverage.as_dict()
    return (f"coverage {coverage.ratio * 100:.1f}%, oldest unverified "
            f"{_age(data['oldest_unverified_seconds'])}")


def summary_line(run: StoreVerification) -> str:
    """One line per system and store: what was read, found, healed, lost."""
    parts = [f"read {run.objects_verified + len(run.corrupt)} objects "
             f"({human_bytes(run.bytes_read)})", f"{run.objects_verified} ok"]
    if run.corrupt:
        parts.append(f"{len(run.corrupt)} corrupt")
    if run.missing:
        parts.append(f"{len(run.missing)} missing")
    if run.hidden:
        parts.append(f"{len(run.hidden)} hidden by delete markers")
    if run.healed:
        sources = sorted({finding.source for finding in run.healed if finding.source})
        parts.append(f"{len(run.healed)} healed (from {', '.join(sources)})")
    if run.lost:
        parts.append(f"{len(run.lost)} LOST")
    if run.unhealed:
        parts.append(f"{len(run.unhealed)} NOT HEALED")
    if run.unchecked:
        parts.append(f"{len(run.unchecked)} unchecked")
    if run.errors:
        parts.append(f"{len(run.errors)} error(s)")
    if run.stopped:
        parts.append("stopped early")
    return f"{run.system} on {run.store}: {', '.join(parts)}; {coverage_text(run.coverage)}"


@click.command("verify")
@home_option
@click.argument("system", required=False)
@click.option("--store", "stores", multiple=True, metavar="S",
              help="Verify only this store (repeatable); the others still serve as "
                   "sources of good copies.")
@click.option("--full", is_flag=True, help="Read everything, whatever the budget.")
@click.option("--budget", metavar="SIZE",
              help=f"Bytes to read per system and store, instead of the store's budget: "
                   f"{SIZE_HINT}.")
@json_option
@click.pass_obj
def verify_command(state: CliState, system: str | None, stores: tuple[str, ...],
                   full: bool, budget: str | None, as_json: bool) -> None:
    """Read stored objects back now, check each against its SHA-256 name (no password
    needed; config, the sealed password and manifests against the SHA-256 the catalog
    recorded) and heal corrupt or missing ones from a store with a good copy; in a store
    with versions (Object Lock), an object hidden by a delete marker or overwritten comes
    back from its newest good version (see drd repair).

    Without --full each store's budget applies: objects never verified first, then the
    least recently verified. Exits 1 when an object is lost (no store holds a good copy)
    or could not be healed.
    """
    budget_bytes = _budget(budget)
    show_progress = not as_json and output.is_terminal()
    bar = ProgressBar("verify", unit="objects") if show_progress else None
    try:
        with systems_locked(state.catalog(), [system] if system else None, exclusive=False,
                            wait=LOCK_WAIT_SECONDS):
            report = verify(state.catalog(), state.master_key(), state.config(),
                            systems=[system] if system else None,
                            stores=list(stores) or None, full=full,
                            budget_bytes=budget_bytes, progress=bar)
    finally:
        if bar is not None:
            bar.finish()
    record_runs(state.catalog(), "verify", [
        ForegroundRun(system=run.system, store=run.store, ok=run.ok,
                      bytes_processed=run.bytes_read,
                      error=next(iter(run.errors + [f"{f.key} {f.reason}: {f.detail}"
                                                    for f in run.lost + run.unhealed]),
                                 None))
        for run in report.runs], started_at=report.started_at)
    if as_json:
        output.emit_json(report.as_dict())
    else:
        if not report.runs:
            output.say("nothing to verify: no enrolled system with a policy keeps copies "
                       "in these stores")
        for run in report.runs:
            output.echo(summary_line(run))
            for finding in run.hidden:
                output.echo(f"  hidden by a delete marker: {finding.key}")
            for finding in run.lost:
                output.echo(f"  LOST {finding.key}: {finding.detail}")
            for finding in run.unhealed:
                output.echo(f"  not healed {finding.key}: {finding.detail}")
            for finding in run.unchecked:
                output.echo(f"  unchecked {finding.key}: {finding.detail}")
            for error in run.errors:
                output.echo(f"  error: {error}")
        for name, coverage in sorted(report.coverage.items()):
            output.echo(f"store {name}: {coverage_text(coverage)}")
    if not report.ok:
        raise SystemExit(EXIT_FAILED)
