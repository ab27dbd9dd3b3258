"""What ``drd restore`` and ``drd-agent restore`` share on the command line: their
options, the messages and progress bar while they run, and the summary they print."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import click

from drd.console import output
from drd.console.fill import FillWatcher
from drd.console.progress import ProgressBar, human_bytes
from drd.errors import UserError
from drd.services.restore import (
    AT_HELP,
    RestoreEvent,
    RestoreFailed,
    RestoreRequest,
    RestoreResult,
    parse_at,
)


def restore_options(command: Callable) -> Callable:
    """The options both restore commands take (SYSTEM is each command's own)."""
    options = [
        click.option("--snapshot", "snapshot", metavar="ID|latest",
                     help="The snapshot: a full id, a unique prefix, or 'latest' (the "
                          "default: the newest good one)."),
        click.option("--at", "at", metavar="TIME",
                     help=f"The newest good snapshot at or before TIME: {AT_HELP}."),
        click.option("--store", metavar="S",
                     help="Read from this store only, no fallback (default: the stores in "
                          "turn, the healthiest first, until one succeeds)."),
        click.option("--target", required=True, metavar="DIR",
                     type=click.Path(path_type=Path),
                     help="Restore into DIR (new or empty; created if missing). Files land "
                          "at DIR/<path in the snapshot>."),
        click.option("--include", "includes", multiple=True, metavar="PATH",
                     help="Restore only PATH (absolute, as in the snapshot) and what lies "
                          "beneath it; repeat for more."),
        click.option("--overwrite", is_flag=True,
                     help="Allow a non-empty target: what the snapshot holds replaces what "
                          "is there; other files stay."),
        click.option("--verify", is_flag=True,
                     help="Re-read every restored file against its blob hashes (restic "
                          "restore --verify)."),
        click.option("--json", "as_json", is_flag=True,
                     help="Print a JSON summary on stdout (system, snapshot, time, store, "
                          "attempts, files, bytes, seconds, target)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def make_request(*, target: Path, snapshot: str | None, at: str | None, store: str | None,
                 includes: tuple[str, ...], overwrite: bool, verify: bool,
                 now: dt.datetime | None = None) -> RestoreRequest:
    """The request from the options, checked (UserError: exit 2)."""
    if snapshot is not None and at is not None:
        raise UserError("give --snapshot or --at, not both")
    moment = parse_at(at, now or dt.datetime.now(dt.UTC)) if at is not None else None
    return RestoreRequest(target=target, snapshot=snapshot, at=moment, store=store,
                          includes=includes, overwrite=overwrite, verify=verify).checked()


class RestoreConsole:
    """``on_event`` for a restore: says on stderr which store is tried and why one
    failed, and draws a progress bar on a terminal unless ``quiet`` (``--json``)."""

    def __init__(self, *, quiet: bool) -> None:
        self.quiet = quiet
        self.watcher = None
        if not quiet and output.is_terminal():
            self.watcher = FillWatcher(ProgressBar("restore", unit=None))

    def __call__(self, event: RestoreEvent) -> None:
        if event.kind == "restoring":
            if self.watcher is not None:
                self.watcher.start(event.staging, event.expected_bytes)
            return
        self.stop()
        if event.kind == "failed":
            # always said, also with --json: the summary's attempts carry it too
            output.say(f"store {event.store} failed: {event.error}")
        elif event.kind == "attempt" and not self.quiet:
            output.say(f"restoring from store {event.store} ...")

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()


def print_result(result: RestoreResult, *, as_json: bool) -> None:
    if as_json:
        output.emit_json(result.as_dict())
        return
    fallback = len(result.attempts) > 1
    output.echo(f"restored {result.system} snapshot {result.snapshot[:12]} ({result.time}) "
                f"from store {result.store}" + (f" after {len(result.attempts) - 1} failed "
                                                "store(s)" if fallback else ""))
    output.echo(f"{result.files} files, {human_bytes(result.bytes)}, in "
                f"{result.seconds:.1f} s, into {result.target}")


def run_printed(work: Callable[[RestoreConsole], RestoreResult], *, as_json: bool) -> None:
    """Run ``work`` with a console; print its result, or (``--json``) the failed
    summary before the error is raised on."""
    console = RestoreConsole(quiet=as_json)
    try:
        result = work(console)
    except RestoreFailed as failure:
        if as_json:
            output.emit_json(failure.as_dict())
        raise
    finally:
        console.stop()
    print_result(result, as_json=as_json)
