"""``drd keys export-recovery-kit | check-recovery-kit``: the keys kept offline.

(``change-passphrase``, ``rotate-escrow``, ``rotate-signing`` and ``finish-rotation``
live in :mod:`drd.cli.keys_rotation` and are added to the group at the end.)

The recovery kit holds the escrow, signing and CA private keys under a passphrase of
the administrators' choosing (``$DRD_RECOVERY_PASSPHRASE``, else typed twice, hidden).
With it and any one store, ``drd recover-catalog`` rebuilds the centre.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import click

from drd.cli.context import CliState
from drd.cli.options import home_option, json_option
from drd.console import output
from drd.crypto.keystore import KeyStore
from drd.errors import UserError
from drd.fsutil import PRIVATE_FILE_MODE, write_new_file
from drd.recovery import kit
from drd.secrets import Secret


def recovery_passphrase(*, confirm: bool) -> Secret:
    """The recovery passphrase: ``$DRD_RECOVERY_PASSPHRASE``, else typed on a terminal
    (hidden; twice when ``confirm``). Raises :class:`UserError` when there is neither."""
    value = os.environ.get(kit.PASSPHRASE_VARIABLE)
    if value:
        return Secret(value)
    if not sys.stdin.isatty():
        raise UserError(f"no recovery passphrase: set {kit.PASSPHRASE_VARIABLE} or run this "
                        "on a terminal to type it")
    typed = click.prompt("Recovery passphrase", hide_input=True,
                         confirmation_prompt="Repeat it" if confirm else False,
                         err=True, show_default=False)
    return Secret(typed)


@click.group("keys")
def keys_group() -> None:
    """The centre's keys: the recovery kit administrators keep offline, and rotation."""


@keys_group.command("export-recovery-kit")
@home_option
@click.option("-o", "--output", "target", required=True, type=click.Path(dir_okay=False),
              help="Where to write the kit (a new file, mode 0600).")
@json_option
@click.pass_obj
def export_command(state: CliState, target: str, as_json: bool) -> None:
    """Write the escrow, signing and CA private keys, encrypted under a passphrase.

    Keep the kit offline (printed, or on removable media in a safe), apart from the
    passphrase. With the kit and any one store, 'drd recover-catalog' rebuilds this
    centre; without the escrow key no sealed repository password can be recovered.
    """
    path = Path(target)
    if path.exists():
        raise UserError(f"{path} already exists; refusing to overwrite it")
    if not path.parent.is_dir():
        raise UserError(f"the directory of {path} does not exist")
    keystore = KeyStore(state.config().keys_dir, state.master_key())
    keys = kit.RecoveryKeys(escrow=keystore.escrow_private_key(),
                            signing=keystore.signing_private_key(),
                            ca_key=keystore.ca_private_key(),
                            ca_certificate=keystore.ca_certificate(),
                            retired_signing=tuple(keystore.retired_signing_public_keys()))
    passphrase = recovery_passphrase(confirm=True)
    kit.check_new_passphrase(passphrase)
    data = kit.build_kit(keys, passphrase, hostname=socket.gethostname())
    try:
        write_new_file(path, data, PRIVATE_FILE_MODE)
    except OSError as error:
        raise UserError(f"-o {path}: cannot write it: {error.strerror or error}") from None
    summary = _summary(kit.read_kit(data), path)
    if as_json:
        output.emit_json(summary)
        return
    output.say_lines([
        f"wrote the recovery kit {path} (mode 0600)",
        f"  escrow key   sha256 {summary['escrow_key_sha256']}",
        f"  signing key  sha256 {summary['signing_key_sha256']}",
        f"  CA           sha256 {summary['ca_certificate_sha256']}",
        "Keep it offline, apart from its passphrase. Check a kit at any time, without the",
        f"passphrase: drd keys check-recovery-kit {path}",
    ])


@keys_group.command("check-recovery-kit")
@home_option
@click.argument("file", type=click.Path(dir_okay=False))
@json_option
@click.pass_obj
def check_command(state: CliState, file: str, as_json: bool) -> None:
    """Show a kit's key fingerprints (no passphrase needed) and, on a centre, whether
    they are this centre's keys. Exits 1 if they are not."""
    path = Path(file)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror}") from None
    summary = _summary(kit.read_kit(data), path)
    matches = None
    try:
        keystore = KeyStore(state.config().keys_dir, None)
        matches = (summary["escrow_key_sha256"] == kit.escrow_fingerprint(
                       keystore.escrow_public_key())
                   and summary["signing_key_sha256"] == kit.signing_fingerprint(
                       keystore.signing_public_key())
                   and summary["ca_certificate_sha256"] == keystore.ca_fingerprint())
    except UserError:
        pass  # no centre here: show the fingerprints only
    summary["matches_this_centre"] = matches
    if as_json:
        output.emit_json(summary)
    else:
        output.echo(f"kit          {path} (made {summary['created_at']} on "
                    f"{summary['hostname']})")
        output.echo(f"escrow key   sha256 {summary['escrow_key_sha256']}")
        output.echo(f"signing key  sha256 {summary['signing_key_sha256']}")
        output.echo(f"CA           sha256 {summary['ca_certificate_sha256']}")
        if matches is not None:
            output.echo("this centre  " + ("same keys" if matches else "DIFFERENT keys"))
    if matches is False:
        raise SystemExit(1)


def _summary(document: dict, path: Path) -> dict:
    public = document["public"]
    return {"file": str(path), "created_at": document.get("created_at"),
            "hostname": (document.get("centre") or {}).get("hostname"),
            "escrow_key_sha256": public["escrow_key_sha256"],
            "signing_key_sha256": public["signing_key_sha256"],
            "ca_certificate_sha256": public["ca_certificate_sha256"]}


def _add_rotation_commands() -> None:
    from drd.cli.keys_rotation import COMMANDS

    for command in COMMANDS:
        keys_group.add_command(command)


_add_rotation_commands()
