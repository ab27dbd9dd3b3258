"""The ``drd-agent`` command line.

Exit status as for ``drd``: 0 success, 1 a failed operation, 2 bad usage or input.
"""

from __future__ import annotations

import json
import sys

import click

from agents.home import is_enrolled, resolve_agent_home
from drd import __version__
from drd.errors import EXIT_USAGE, DrdError
from drd.restic import Restic
from drd.restic.version import require_supported


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="drd-agent")
def agent_cli() -> None:
    """drd-agent: backs up this system to the stores its policy names."""


@agent_cli.command("status")
@click.option("--home", envvar="DRD_AGENT_HOME", type=click.Path(file_okay=False),
              help="Agent home (default $DRD_AGENT_HOME, /var/lib/drd-agent for root).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
def status_command(home: str | None, as_json: bool) -> None:
    """Whether this system is enrolled, and which restic it would run."""
    agent_home = resolve_agent_home(home)
    restic = Restic()
    version = require_supported(restic.version(), restic.binary)
    status = {
        "home": str(agent_home),
        "enrolled": is_enrolled(agent_home),
        "restic": {"binary": restic.binary, "version": str(version)},
    }
    if as_json:
        click.echo(json.dumps(status, indent=2))
        return
    click.echo(f"home      {status['home']}")
    click.echo(f"enrolled  {'yes' if status['enrolled'] else 'no'}")
    click.echo(f"restic    {version} ({restic.binary})")


def main(argv: list[str] | None = None) -> None:
    try:
        agent_cli.main(args=argv, prog_name="drd-agent", standalone_mode=False)
    except DrdError as problem:
        click.echo(f"drd-agent: error: {problem}", err=True)
        sys.exit(problem.exit_status)
    except click.ClickException as problem:
        problem.show()
        sys.exit(EXIT_USAGE if problem.exit_code == 2 else problem.exit_code)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.exceptions.Abort:
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
