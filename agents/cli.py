"""The ``drd-agent`` command line.

Exit status as for ``drd``: 0 success, 1 a failed operation, 2 bad usage or input.
"""

from __future__ import annotations

import click

from agents.home import is_enrolled, resolve_agent_home
from drd import __version__
from drd.cli import output
from drd.cli.runner import run
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
        output.emit_json(status)
        return
    output.echo(f"home      {status['home']}")
    output.echo(f"enrolled  {'yes' if status['enrolled'] else 'no'}")
    output.echo(f"restic    {version} ({restic.binary})")


def main(argv: list[str] | None = None) -> None:
    """The ``drd-agent`` console script."""
    run(agent_cli, "drd-agent", argv)


if __name__ == "__main__":
    main()
