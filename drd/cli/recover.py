"""``drd recover-catalog``: rebuild a centre from one store and the recovery kit."""

from __future__ import annotations

import os
from pathlib import Path

import click

from drd.cli.context import CliState
from drd.cli.keys import recovery_passphrase
from drd.cli.options import home_option, json_option
from drd.console import output
from drd.errors import UserError
from drd.recovery import kit
from drd.recovery.rebuild import SOURCE_NAME, RecoverRequest, check_home_is_free, recover
from drd.secrets import Secret
from drd.stores.url import StoreSpec, open_store, parse_store_url


@click.command("recover-catalog")
@home_option
@click.option("--url", required=True, metavar="URL",
              help="The store to recover from: s3://BUCKET/PREFIX or file:///PATH.")
@click.option("--endpoint", metavar="URL", help="Its S3 endpoint.")
@click.option("--region", metavar="R", help="Its S3 signing region (default us-east-1).")
@click.option("--recovery-kit", "kit_file", required=True, type=click.Path(dir_okay=False),
              help="The kit from 'drd keys export-recovery-kit'.")
@click.option("--store", "store_name", metavar="NAME",
              help="The store's name in the centre, if its URL changed since the copy.")
@click.option("--database-url", metavar="URL", envvar="DRD_DATABASE_URL",
              help="Recover into this (new, empty) PostgreSQL catalog instead of a SQLite "
                   "file in the home.")
@click.option("--hostname", "hostnames", multiple=True, metavar="NAME",
              help="Extra name for the API's new server certificate (repeatable).")
@click.option("--ip", "ip_addresses", multiple=True, metavar="ADDRESS",
              help="Extra IP address for the API's new server certificate (repeatable).")
@json_option
@click.pass_obj
def recover_command(state: CliState, url: str, endpoint: str | None, region: str | None,
                    kit_file: str, store_name: str | None, database_url: str | None,
                    hostnames: tuple[str, ...], ip_addresses: tuple[str, ...],
                    as_json: bool) -> None:
    """Rebuild a centre in a new --home from the newest catalog copy in one store.

    The store's keys come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, the kit's
    passphrase from DRD_RECOVERY_PASSPHRASE (else it is asked for), the new master key's
    passphrase from DRD_MASTER_PASSPHRASE as for 'drd init' (else a key file).
    Every other S3 store then needs its keys again: 'drd store set-keys NAME'.
    """
    home = state.home
    check_home_is_free(home)
    try:
        kit_data = Path(kit_file).read_bytes()
    except OSError as error:
        raise UserError(f"cannot read the recovery kit {kit_file}: {error.strerror}") from None
    kit.read_kit(kit_data)  # a file that is no kit is refused before asking for a passphrase
    parsed = parse_store_url(url)
    access_key_id = os.environ.get("AWS_ACCESS_KEY_ID")
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
    secret_key = Secret(secret) if secret else None
    if parsed.kind == "s3" and not endpoint:
        raise UserError("an s3:// store needs --endpoint")
    spec = StoreSpec(name=SOURCE_NAME, url=url, endpoint=endpoint, region=region)
    source = open_store(spec, access_key_id, secret_key, retry_attempts=3, retry_backoff=0.5)
    keys = kit.open_kit(kit_data, recovery_passphrase(confirm=False))
    quiet = as_json or not output.is_terminal()
    result = recover(RecoverRequest(
        home=home, keys=keys, source=source, source_url=url, source_endpoint=endpoint,
        access_key_id=access_key_id, secret_access_key=secret_key, store_name=store_name,
        database_url=database_url, hostnames=hostnames, ip_addresses=ip_addresses),
        say=(lambda message: None) if quiet else output.say)
    if as_json:
        output.emit_json(result.as_dict())
        return
    counts = result.counts
    lines = [
        f"Recovered a drd centre in {result.home} from {result.copy_key}",
        f"  copy made       {result.copy_created_at}",
        f"  catalog         {counts.get('departments', 0)} departments, "
        f"{counts.get('systems', 0)} systems, {counts.get('policies', 0)} policies, "
        f"{counts.get('stores', 0)} stores, {counts.get('snapshots', 0)} snapshots, "
        f"{counts.get('snapshot_manifests', 0)} manifests, {counts.get('drills', 0)} drills",
        f"  CA fingerprint  {result.ca_fingerprint} (the same: enrolled agents trust it)",
        f"  master key      {result.master_key_source}",
    ]
    if result.copy_signed_by_retired_key:
        lines.append(f"  signed by       the retired signing key "
                     f"{result.copy_signed_by_retired_key} (listed in the kit)")
    for skipped in result.skipped_copies:
        lines.append(f"  skipped         {skipped['copy']}: {skipped['reason']}")
    lines.append("Next:")
    if result.stores_needing_keys:
        lines.append("  - re-enter the keys of each other store (AWS_ACCESS_KEY_ID / "
                     "AWS_SECRET_ACCESS_KEY set for it):")
        lines += [f"      drd store set-keys {name}" for name in result.stores_needing_keys]
    lines += [
        "  - point the centre's address (public_url, DNS) here and start 'drd serve';",
        "    agents reconnect by themselves",
        "  - prove it: drd drill run SYSTEM; then export a new recovery kit if the old one",
        "    was exposed (drd keys export-recovery-kit)",
    ]
    output.say_lines(lines)
