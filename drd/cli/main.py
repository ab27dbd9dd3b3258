"""Entry point of the ``drd`` command: the group, shared options and exit codes.

Exit status: 0 success, 1 a failed operation, 2 bad usage or bad input. Errors are
caught here, at the edge, and printed as one line that says what to do.
"""

from __future__ import annotations

import logging
import sys

import click

from drd import __version__
from drd.cli import output
from drd.cli.context import CliState
from drd.errors import EXIT_FAILED, EXIT_USAGE, DrdError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", type=click.Path(file_okay=False), envvar="DRD_HOME",
              help="drd home directory (default $DRD_HOME, /var/lib/drd for root, "
                   "else ~/.local/share/drd).")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv: debug).")
@click.version_option(__version__, prog_name="drd")
@click.pass_context
def cli(ctx: click.Context, home: str | None, verbose: int) -> None:
    """drd: disaster-recovery and backup orchestration on restic."""
    state = ctx.ensure_object(CliState)
    if home and not state.home_option:
        state.home_option = home
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")


def _register() -> None:
    from drd.cli import devstores, init, policy, store

    cli.add_command(init.init_command)
    cli.add_command(store.store_group)
    cli.add_command(policy.policy_group)
    cli.add_command(devstores.dev_stores_group)


_register()


def main(argv: list[str] | None = None) -> None:
    """Run the CLI and exit with drd's exit status convention."""
    try:
        cli.main(args=argv, prog_name="drd", standalone_mode=False)
    except DrdError as problem:
        output.error(str(problem))
        sys.exit(problem.exit_status)
    except click.exceptions.Abort:
        output.error("aborted")
        sys.exit(EXIT_FAILED)
    except click.ClickException as problem:
        problem.show()
        sys.exit(EXIT_USAGE if problem.exit_code == 2 else problem.exit_code)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except KeyboardInterrupt:
        output.error("interrupted")
        sys.exit(130)
    sys.exit(0)


if __name__ == "__main__":
    main()
