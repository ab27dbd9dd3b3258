"""``drd catalog backup``: write a copy of the catalog into every store, now.

The leader daemon does the same on its own (every ``catalog_copy_minutes``, and soon
after changes); this is for the first copy after ``drd init`` and before maintenance.
"""

from __future__ import annotations

import click

from drd.cli.context import CliState
from drd.cli.options import home_option, json_option
from drd.console import output
from drd.console.progress import human_bytes
from drd.crypto.keystore import KeyStore
from drd.errors import EXIT_FAILED
from drd.recovery.copies import publish


@click.group("catalog")
def catalog_group() -> None:
    """The catalog's own copies, kept in every store for disaster recovery."""


@catalog_group.command("backup")
@home_option
@click.option("--store", "stores", multiple=True, metavar="S",
              help="Only this store (repeatable; default: every store).")
@json_option
@click.pass_obj
def backup_command(state: CliState, stores: tuple[str, ...], as_json: bool) -> None:
    """Write a signed, encrypted copy of the catalog into every store.

    Only the escrow key (in the recovery kit) opens it. Exits 1 if any store failed;
    the others still got the copy.
    """
    config = state.config()
    master_key = state.master_key()
    result = publish(state.catalog(), master_key, KeyStore(config.keys_dir, master_key),
                     config, store_names=list(stores))
    if as_json:
        output.emit_json(result.as_dict())
    else:
        output.say(f"catalog copy {result.key}: {human_bytes(result.size)} in "
                   f"{result.seconds:.1f} s")
        for store in result.stores:
            output.echo(f"{store.store}: ok" if store.ok else
                        f"{store.store}: FAILED: {store.error}")
    if result.failed:
        raise SystemExit(EXIT_FAILED)
