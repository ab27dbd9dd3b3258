"""``drd init``: create a DR centre's home, or bring an existing one's catalog up to date."""

from __future__ import annotations

import click

from drd.cli.context import CliState
from drd.cli.options import home_option, json_option
from drd.console import output
from drd.services.centre import initialise


@click.command("init")
@home_option
@click.option("--database-url", metavar="URL", envvar="DRD_DATABASE_URL",
              help="Catalog database (default: a SQLite file in the home; "
                   "postgresql+psycopg://... for several daemons).")
@click.option("--hostname", "hostnames", multiple=True, metavar="NAME",
              help="Extra name for the API's server certificate (repeatable).")
@click.option("--ip", "ip_addresses", multiple=True, metavar="ADDRESS",
              help="Extra IP address for the API's server certificate (repeatable).")
@json_option
@click.pass_obj
def init_command(state: CliState, database_url: str | None, hostnames: tuple[str, ...],
                 ip_addresses: tuple[str, ...], as_json: bool) -> None:
    """Create the config, master key, escrow and signing keys, CA and catalog.

    A PostgreSQL URL names no password: libpq reads it from ~/.pgpass or $PGPASSFILE.
    """
    result = initialise(state.home, database_url, hostnames, ip_addresses)
    if as_json:
        output.emit_json(result.as_dict())
        return
    if not result.created:
        output.say(f"{result.home} is already initialised; catalog at schema "
                   f"{result.schema_revision}")
        return
    output.say_lines([
        f"Initialised a drd centre in {result.home}",
        f"  catalog         {result.as_dict()['database_url']} (schema {result.schema_revision})",
        f"  master key      {result.master_key_source}",
        f"  keys            {result.home}/keys (escrow, signing, CA; private keys encrypted)",
        f"  CA fingerprint  {result.ca_fingerprint}",
        "Export the recovery kit now and keep it offline, apart from its passphrase:",
        f"  drd keys export-recovery-kit --home {result.home} -o drd-recovery-kit.json",
        "Without the escrow key in it no sealed repository password can be recovered;",
        "with it and any one store, 'drd recover-catalog' rebuilds this centre",
        "(docs/recovery.md). Next: add stores with 'drd store add'.",
    ])
