"""Entry point of the ``drd`` command: the group and its subcommands.

Exit codes are mapped in :mod:`drd.console.runner`.
"""

from __future__ import annotations

import logging
import sys

import click

from drd import __version__
from drd.cli.context import CliState
from drd.console.runner import run


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
    from drd.cli import (
        alerts,
        backup_now,
        devstores,
        drill,
        init,
        policy,
        retention,
        serve,
        snapshots,
        status,
        store,
        system,
        token,
        verify,
    )

    cli.add_command(init.init_command)
    cli.add_command(store.store_group)
    cli.add_command(policy.policy_group)
    cli.add_command(devstores.dev_stores_group)
    cli.add_command(serve.serve_command)
    cli.add_command(system.system_group)
    cli.add_command(snapshots.snapshots_command)
    cli.add_command(status.status_command)
    cli.add_command(backup_now.backup_now_command)
    cli.add_command(alerts.alerts_command)
    cli.add_command(drill.drill_group)
    cli.add_command(token.token_group)
    cli.add_command(retention.retention_group)
    cli.add_command(verify.verify_command)
    from drd.cli.replicate import replicate_command
    cli.add_command(replicate_command)
    from drd.cli.restore import restore_command
    cli.add_command(restore_command)
    from drd.cli.completion import completion_command
    cli.add_command(completion_command)
    from drd.cli.catalog import catalog_group
    from drd.cli.keys import keys_group
    from drd.cli.recover import recover_command
    cli.add_command(keys_group)
    cli.add_command(catalog_group)
    cli.add_command(recover_command)


_register()


def main(argv: list[str] | None = None) -> None:
    """The ``drd`` console script."""
    run(cli, "drd", argv)


if __name__ == "__main__":
    main()
