"""``drd restore``: restore a system's snapshot (a file, a folder, all of it) into a
directory on the centre's machine."""

from __future__ import annotations

import os
from pathlib import Path

import click

from drd.cli.context import CliState
from drd.cli.options import home_option
from drd.console.restore import make_request, restore_options, run_printed
from drd.crypto.keystore import KeyStore


@click.command("restore")
@home_option
@click.argument("system")
@restore_options
@click.pass_obj
def restore_command(state: CliState, system: str, snapshot: str | None, at: str | None,
                    store: str | None, target: Path, includes: tuple[str, ...],
                    overwrite: bool, verify: bool, as_json: bool) -> None:
    """Restore SYSTEM's snapshot into a directory (--target).

    Reads from the healthiest store -- one holding a present copy of the snapshot, not
    found unreachable, with the fewest problems -- and, if it fails (even mid-way), from
    the next, into a clean target. The restored tree is checked against the snapshot's
    listing before it is moved into place; symbolic links are restored as links.
    Unseals the system's password and writes the restore to the audit log.

    With --server URL (an owner's token): the centre restores and streams the tree to
    this machine, where it lands in --target the same way.

    Exit status 0 restored, 1 every store failed, 2 bad input (nothing written).
    """
    if state.remote is not None:
        from drd.cli.remote import restore_through_api

        restore_through_api(state.remote, system, target=target, snapshot=snapshot, at=at,
                            store=store, includes=includes, overwrite=overwrite,
                            verify=verify, as_json=as_json)
        return
    from drd.services.restore.centre import restore_system

    request = make_request(target=target, snapshot=snapshot, at=at, store=store,
                           includes=includes, overwrite=overwrite, verify=verify)
    config = state.config()
    master_key = state.master_key()
    catalog = state.catalog()
    keystore = KeyStore(config.keys_dir, master_key)
    run_printed(lambda console: restore_system(catalog, master_key, keystore, config, system,
                                               request, actor=f"cli:{_user()}",
                                               on_event=console),
                as_json=as_json)


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return str(os.getuid())
