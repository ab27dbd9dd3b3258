"""The ``drd-agent`` command line.

Exit status as for ``drd``: 0 success, 1 a failed operation, 2 bad usage or input.
Data goes to stdout (JSON with ``--json``), messages and progress to stderr.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path

import click

from agents.daemon import (
    DEFAULT_HEARTBEAT_SECONDS,
    DEFAULT_MISFIRE_GRACE_SECONDS,
    DEFAULT_STOP_GRACE_SECONDS,
    AgentDaemon,
)
from agents.enroll import enroll
from agents.home import AgentHome, is_enrolled, resolve_agent_home
from agents.restore import restore_command
from agents.service import backup_system, fanout_target, list_snapshots, make_restic
from agents.spool import Spool
from drd import __version__
from drd.cli.completion import completion_command
from drd.console import output
from drd.console.progress import ProgressBar
from drd.console.runner import run
from drd.errors import OperationError, UserError
from drd.restic import Restic
from drd.restic.version import require_supported
from drd.secrets import quiet_wire_loggers


def home_option(command):
    return click.option(
        "--home", envvar="DRD_AGENT_HOME", type=click.Path(file_okay=False),
        help="Agent home (default $DRD_AGENT_HOME, /var/lib/drd-agent for root, "
             "else ~/.local/share/drd-agent).")(command)


def json_option(command):
    return click.option("--json", "as_json", is_flag=True,
                        help="Print machine-readable JSON on stdout.")(command)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv: debug).")
@click.version_option(__version__, prog_name="drd-agent")
def agent_cli(verbose: int) -> None:
    """drd-agent: backs up this system to the stores its policy names."""
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    quiet_wire_loggers()


# -- enroll -------------------------------------------------------------------------------


@agent_cli.command("enroll")
@click.option("--server", required=True, help="The centre's URL, as in the token.")
@click.option("--token-file", type=click.Path(dir_okay=False), metavar="FILE",
              help="A file that holds the enrollment token ('drd system token' prints it).")
@click.option("--token", metavar="-",
              help="'-': read the enrollment token from stdin. A token given here is "
                   "visible to other users in ps: prefer --token-file or '-'.")
@home_option
@json_option
def enroll_command(server: str, token_file: str | None, token: str | None, home: str | None,
                   as_json: bool) -> None:
    """Enroll this system with the centre (once; the token is single-use).

    Give the token with --token-file FILE or --token - (stdin), never on the command
    line, where every user of the machine can read it (ps, /proc).
    """
    token_text = _enrollment_token(token, token_file)
    agent_home = AgentHome(resolve_agent_home(home))
    result = enroll(agent_home, server, token_text, restic=make_restic(agent_home),
                    target_factory=fanout_target)
    if as_json:
        output.emit_json(result.as_dict())
        return
    output.say(f"enrolled system {result.system} (department {result.department}) with "
               f"{result.server}; repository {result.repository} in "
               f"{', '.join(result.stores)}; home {result.home}")


ARGV_TOKEN_WARNING = ("drd-agent: warning: --token on the command line is visible to other "
                      "users of this machine (ps); prefer --token-file FILE or --token - "
                      "(stdin)")


def _enrollment_token(token: str | None, token_file: str | None) -> str:
    """The token from ``--token-file``, from stdin (``--token -``; a prompt that does not
    echo on a terminal) or, with :data:`ARGV_TOKEN_WARNING` on stderr, from argv.

    Raises ``click.UsageError`` for neither or both, :class:`UserError` for a file that
    cannot be read.
    """
    if (token is None) == (token_file is None):
        raise click.UsageError("give the enrollment token with --token-file FILE or "
                               "--token - (read from stdin)")
    if token_file is not None:
        try:
            return Path(token_file).read_text(encoding="utf-8", errors="replace")
        except OSError as error:
            raise UserError(f"--token-file: cannot read {token_file}: "
                            f"{error.strerror or error}") from None
    if token == "-":
        if sys.stdin.isatty():
            return click.prompt("enrollment token", hide_input=True, err=True)
        return sys.stdin.readline()
    click.echo(ARGV_TOKEN_WARNING, err=True)
    return token


# -- backup -------------------------------------------------------------------------------


@agent_cli.command("backup")
@home_option
@json_option
def backup_command(home: str | None, as_json: bool) -> None:
    """Back up this system now, as its policy says; report to the centre."""
    agent_home = AgentHome(resolve_agent_home(home))
    bar = ProgressBar() if not as_json and output.is_terminal() else None
    stop = threading.Event()
    previous = _stop_on_signals(stop)
    try:
        outcome = backup_system(agent_home, progress=bar, should_stop=stop.is_set)
    finally:
        _restore_signals(previous)
        if bar is not None:
            bar.finish()
    result = outcome.result
    for warning in result.warnings:
        output.say(f"warning: {warning}")
    if as_json:
        output.emit_json(outcome.as_dict())
    else:
        document = outcome.as_dict()
        for snapshot in document["snapshots"]:
            output.echo(f"snapshot {snapshot['snapshot_id'][:8]}  {snapshot['time'] or '-'}  "
                        f"{','.join(snapshot['paths'])}  {snapshot['files']} files  "
                        f"{snapshot['bytes']} bytes"
                        + ("  (partial)" if snapshot["partial"] else ""))
        stores = "  ".join(f"{name}:{'complete' if complete else 'INCOMPLETE'}"
                           for name, complete in document["stores"].items())
        output.echo(f"stores    {stores or '-'}")
        output.echo(f"duration  {document['duration_seconds']:.1f}s")
        output.echo(f"reports   {document['reports']['delivered']} delivered, "
                    f"{document['reports']['spooled']} spooled")
    if not result.ok:
        raise OperationError(result.failure())


def _stop_on_signals(stop: threading.Event) -> dict:
    """First SIGINT/SIGTERM: stop the run cleanly (restic's lock removed, ``after``
    commands run, reports kept); a second one interrupts at once."""
    def handler(number, _frame):
        if stop.is_set():
            raise KeyboardInterrupt
        output.say("stopping the backup (again to interrupt at once)...")
        stop.set()

    return {number: signal.signal(number, handler)
            for number in (signal.SIGINT, signal.SIGTERM)}


def _restore_signals(previous: dict) -> None:
    for number, handler in previous.items():
        signal.signal(number, handler)


# -- snapshots ----------------------------------------------------------------------------


@agent_cli.command("snapshots")
@home_option
@json_option
def snapshots_command(home: str | None, as_json: bool) -> None:
    """This system's snapshots, read from the first store that answers."""
    agent_home = AgentHome(resolve_agent_home(home))
    store, snapshots = list_snapshots(agent_home)
    rows = [{"id": snapshot.id, "short_id": snapshot.short_id, "time": snapshot.time,
             "host": snapshot.hostname, "paths": list(snapshot.paths),
             "tags": list(snapshot.tags)} for snapshot in snapshots]
    if as_json:
        output.emit_json(rows)
        return
    output.say(f"read from store {store}")
    output.emit_table([{**row, "id": row["short_id"]} for row in rows],
                      ["id", "time", "host", "paths", "tags"], empty="(no snapshots)")


# -- status -------------------------------------------------------------------------------


@agent_cli.command("status")
@home_option
@json_option
def status_command(home: str | None, as_json: bool) -> None:
    """Whether this system is enrolled, its last backup, what waits to be reported."""
    agent_home = AgentHome(resolve_agent_home(home))
    restic = Restic()
    version = require_supported(restic.version(), restic.binary)
    status = {
        "home": str(agent_home.root),
        "enrolled": is_enrolled(agent_home.root),
        "system": None,
        "department": None,
        "server": None,
        "last_backup": agent_home.last_backup(),
        "spooled_reports": Spool(agent_home.spool_dir).count(),
        "rejected_reports": Spool(agent_home.spool_dir).rejected_count(),
        "enrollment_pending": agent_home.pending() is not None,
        "restic": {"binary": restic.binary, "version": str(version)},
    }
    if status["enrolled"]:
        config = agent_home.require_enrolled()
        status.update(system=config.system, department=config.department,
                      server=config.server)
    if as_json:
        output.emit_json(status)
        return
    last = status["last_backup"] or {}
    output.echo(f"home      {status['home']}")
    output.echo(f"enrolled  {'yes' if status['enrolled'] else 'no'}"
                + ("  (an enrollment is pending: run the same 'drd-agent enroll' again)"
                   if status["enrollment_pending"] else ""))
    if status["enrolled"]:
        output.echo(f"system    {status['system']} (department {status['department']})")
        output.echo(f"server    {status['server']}")
    if last:
        outcome = "ok" if last.get("ok") else "FAILED: " + "; ".join(last.get("problems", []))
        output.echo(f"last run  {last.get('finished') or last.get('started')}  {outcome}")
        output.echo(f"last ok   {last.get('last_success') or 'never'}")
    else:
        output.echo("last run  never")
    output.echo(f"spooled   {status['spooled_reports']} report(s)/manifest(s) not yet "
                "delivered" + (f", {status['rejected_reports']} refused by the centre"
                               if status["rejected_reports"] else ""))
    output.echo(f"restic    {version} ({restic.binary})")


# -- run ----------------------------------------------------------------------------------


@agent_cli.command("run")
@home_option
@click.option("--heartbeat", "heartbeat_seconds", type=click.FloatRange(min=1),
              default=DEFAULT_HEARTBEAT_SECONDS, show_default=True,
              help="Seconds between heartbeats to the centre.")
@click.option("--misfire-grace", "misfire_grace_seconds", type=click.IntRange(min=1),
              default=DEFAULT_MISFIRE_GRACE_SECONDS, show_default=True,
              help="How many seconds late a scheduled backup may still start.")
@click.option("--stop-grace", "stop_grace_seconds", type=click.FloatRange(min=0),
              default=DEFAULT_STOP_GRACE_SECONDS, show_default=True,
              help="On SIGTERM, how long a running backup may go on before restic is "
                   "stopped.")
def run_command(home: str | None, heartbeat_seconds: float, misfire_grace_seconds: int,
                stop_grace_seconds: float) -> None:
    """The agent daemon: backs up on the policy's schedule, heartbeats, delivers reports."""
    from drd.api.server import configure_logging  # the journald-friendly form of drd serve

    configure_logging()
    if logging.getLogger().getEffectiveLevel() >= logging.INFO:
        # one line per job run and per request would drown what matters
        for noisy in ("apscheduler.executors", "apscheduler.scheduler", "httpx"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    agent_home = AgentHome(resolve_agent_home(home))
    if not agent_home.is_enrolled():
        raise UserError(f"{agent_home.root} is not enrolled: run 'drd-agent enroll "
                        "--server URL --token-file FILE' first")
    AgentDaemon(agent_home, heartbeat_seconds=heartbeat_seconds,
                misfire_grace_seconds=misfire_grace_seconds,
                stop_grace_seconds=stop_grace_seconds).run()


agent_cli.add_command(completion_command)
agent_cli.add_command(restore_command)


def main(argv: list[str] | None = None) -> None:
    """The ``drd-agent`` console script."""
    run(agent_cli, "drd-agent", argv)


if __name__ == "__main__":
    main()
