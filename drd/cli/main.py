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
from drd.secrets import quiet_wire_loggers


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", type=click.Path(file_okay=False), envvar="DRD_HOME",
              help="drd home directory (default $DRD_HOME, /var/lib/drd for root, "
                   "else ~/.local/share/drd).")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv: debug).")
@click.option("--server", envvar="DRD_SERVER", metavar="URL",
              help="A system owner's mode: run status, snapshots, backup-now or restore "
                   "through the centre's API at URL (https://centre:8443) with an owner "
                   "token, from any machine ($DRD_SERVER).")
@click.option("--token", envvar="DRD_TOKEN", metavar="TOKEN",
              help="The API token for --server ($DRD_TOKEN; prefer it or --token-file: "
                   "other users can see command lines).")
@click.option("--token-file", type=click.Path(dir_okay=False), metavar="FILE",
              help="Read the token for --server from FILE.")
@click.option("--ca-cert", envvar="DRD_CA_CERT", type=click.Path(dir_okay=False),
              metavar="FILE", help="The centre's CA certificate (PEM) for --server "
                                   "($DRD_CA_CERT).")
@click.option("--ca-fingerprint", envvar="DRD_CA_FINGERPRINT", metavar="SHA256",
              help="Or the SHA-256 of the centre's CA (drd serve logs it): the CA is "
                   "fetched and pinned if it matches ($DRD_CA_FINGERPRINT).")
@click.version_option(__version__, prog_name="drd")
@click.pass_context
def cli(ctx: click.Context, home: str | None, verbose: int, server: str | None,
        token: str | None, token_file: str | None, ca_cert: str | None,
        ca_fingerprint: str | None) -> None:
    """drd: disaster-recovery and backup orchestration on restic.

    On the centre, commands work on its home. With --server URL (and an owner's token)
    status, snapshots, backup-now and restore work from anywhere through the API.
    """
    state = ctx.ensure_object(CliState)
    if home and not state.home_option:
        state.home_option = home
    if server and ctx.invoked_subcommand is not None:
        from drd.cli.remote import REMOTE_COMMANDS, RemoteOptions

        if ctx.invoked_subcommand in REMOTE_COMMANDS:
            if ctx.get_parameter_source("token") == click.core.ParameterSource.COMMANDLINE:
                click.echo("drd: warning: --token on the command line is visible to other "
                           "users of this machine (ps); prefer $DRD_TOKEN or --token-file "
                           "FILE", err=True)
            state.remote = RemoteOptions.parse(server, token, token_file, ca_cert,
                                               ca_fingerprint)
        elif ctx.get_parameter_source("server") != click.core.ParameterSource.ENVIRONMENT:
            raise click.UsageError(
                f"'drd {ctx.invoked_subcommand}' works on the centre's home, not through "
                f"--server (which serves: {', '.join(sorted(REMOTE_COMMANDS))})")
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    quiet_wire_loggers()


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
    from drd.cli.repair import repair_command
    cli.add_command(repair_command)
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
