"""``drd store add|list|check``: the object stores that hold the copies."""

from __future__ import annotations

import os
from pathlib import Path

import click

from drd.cli.context import CliState
from drd.cli.options import home_option, json_option
from drd.console import output
from drd.errors import EXIT_FAILED, UserError
from drd.secrets import Secret
from drd.services import stores
from drd.stores.url import StoreSpec


def _keys(access_key_id: str | None, secret_file: str | None) -> tuple[str | None,
                                                                       Secret | None]:
    """The S3 keys: from the options, else from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY."""
    if secret_file and not access_key_id:
        raise UserError("--secret-access-key-file needs --access-key-id")
    if access_key_id:
        if not secret_file:
            raise UserError("--access-key-id needs --secret-access-key-file F "
                            "(secrets are never taken from the command line)")
        try:
            text = Path(secret_file).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise UserError(f"cannot read --secret-access-key-file {secret_file}: "
                            f"{error.strerror}") from None
        except UnicodeDecodeError:
            raise UserError(f"--secret-access-key-file {secret_file} is not text: it must "
                            "hold the secret key alone, on one line") from None
        if not text:
            raise UserError(f"--secret-access-key-file {secret_file} is empty")
        return access_key_id, Secret(text)
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
    return os.environ.get("AWS_ACCESS_KEY_ID"), Secret(secret) if secret else None


@click.group("store")
def store_group() -> None:
    """Object stores: S3-compatible buckets or mounted filesystems."""


@store_group.command("add")
@home_option
@click.argument("name")
@click.option("--url", required=True, metavar="URL",
              help="s3://BUCKET/PREFIX or file:///PATH.")
@click.option("--endpoint", metavar="URL", help="S3 endpoint, e.g. https://s3.example.org.")
@click.option("--region", required=True, metavar="R",
              help="Region (policies need copies in at least two).")
@click.option("--object-lock", is_flag=True,
              help="Create the bucket with S3 Object Lock (immutable copies).")
@click.option("--access-key-id", metavar="ID", help="S3 access key id "
              "(default $AWS_ACCESS_KEY_ID).")
@click.option("--secret-access-key-file", metavar="F", type=click.Path(dir_okay=False),
              help="File holding the S3 secret key (default $AWS_SECRET_ACCESS_KEY).")
@click.option("--verify-budget", metavar="SIZE",
              help="Bytes each verification run reads from this store, all systems "
                   "together (default: enough to re-read everything within each policy's "
                   "verification period).")
@click.option("--credentials", type=click.Choice(stores.CREDENTIAL_CHOICES), default="auto",
              show_default=True,
              help="How each system gets keys of its own here: found out (auto), "
                   "SeaweedFS's IAM, an AWS-style IAM API, or shared (every agent gets "
                   "the store's own keys; policies must allow it).")
@click.option("--iam-endpoint", metavar="URL",
              help="The IAM API, when it is not the S3 endpoint (aws-iam).")
@json_option
@click.pass_obj
def add_command(state: CliState, name: str, url: str, endpoint: str | None, region: str,
                object_lock: bool, access_key_id: str | None,
                secret_access_key_file: str | None, verify_budget: str | None,
                credentials: str, iam_endpoint: str | None, as_json: bool) -> None:
    """Check a store (creating its bucket if missing) and add it to the centre."""
    key_id, secret = _keys(access_key_id, secret_access_key_file)
    budget = _verify_budget(verify_budget)
    spec = StoreSpec(name=name, url=url, endpoint=endpoint, region=region,
                     object_lock=object_lock)
    catalog = state.catalog()
    result = stores.add_store(catalog, state.master_key(), spec, key_id, secret,
                              credentials=credentials, iam_endpoint=iam_endpoint)
    if budget is not None:
        _set_verify_budget(catalog, name, budget)
    if as_json:
        row = stores.store_rows(catalog, [name])[0]
        output.emit_json(stores.describe(row) | {"object_lock_active": result.object_lock})
        return
    lock = "Object Lock on" if result.object_lock else "no Object Lock"
    kind = stores.store_rows(catalog, [name])[0].credentials
    output.say(f"added store {name}: {result.location}, region {region}, {lock}, "
               f"credentials {kind}")


def _verify_budget(text: str | None) -> int | None:
    """``--verify-budget``: a size, or None (also for ``auto``: the default budget)."""
    from drd.verification.select import parse_size

    if text is None or text == "auto":
        return None
    try:
        return parse_size(text)
    except ValueError as error:
        raise UserError(f"--verify-budget: {error}") from None


def _set_verify_budget(catalog, name: str, budget: int | None) -> None:
    import sqlalchemy as sa

    from drd.catalog import audit
    from drd.catalog.models import Store as StoreRow

    with catalog.session() as session:
        row = session.scalar(sa.select(StoreRow).where(StoreRow.name == name))
        if row is None:
            raise UserError(f"no store named {name!r} (see drd store list)")
        row.verify_budget_bytes = budget
        audit.record(session, "cli", "store.set", name, verify_budget_bytes=budget)


@store_group.command("set")
@home_option
@click.argument("name")
@click.option("--verify-budget", metavar="SIZE|auto",
              help="Bytes each verification run reads from this store, all systems "
                   "together; 'auto' for the default (everything within the period).")
@click.option("--credentials", type=click.Choice(stores.CREDENTIAL_CHOICES),
              help="Another way for systems to get keys of their own here (checked as at "
                   "store add; keys of the old way are disabled first).")
@click.option("--iam-endpoint", metavar="URL",
              help="With --credentials aws-iam: the IAM API, when not the S3 endpoint.")
@click.pass_obj
def set_command(state: CliState, name: str, verify_budget: str | None,
                credentials: str | None, iam_endpoint: str | None) -> None:
    """Change a store's settings."""
    if verify_budget is None and credentials is None:
        raise UserError("nothing to change: give --verify-budget and/or --credentials")
    if iam_endpoint and not credentials:
        raise UserError("--iam-endpoint goes with --credentials")
    if verify_budget is not None:
        budget = _verify_budget(verify_budget)
        _set_verify_budget(state.catalog(), name, budget)
        output.say(f"store {name}: verification budget "
                   f"{'auto' if budget is None else f'{budget} bytes per run'}")
    if credentials is not None:
        kind = stores.change_broker(state.catalog(), state.master_key(), name, credentials,
                                    iam_endpoint)
        output.say(f"store {name}: credentials {kind}")


@store_group.command("set-keys")
@home_option
@click.argument("name")
@click.option("--access-key-id", metavar="ID", help="S3 access key id "
              "(default $AWS_ACCESS_KEY_ID).")
@click.option("--secret-access-key-file", metavar="F", type=click.Path(dir_okay=False),
              help="File holding the S3 secret key (default $AWS_SECRET_ACCESS_KEY).")
@click.pass_obj
def set_keys_command(state: CliState, name: str, access_key_id: str | None,
                     secret_access_key_file: str | None) -> None:
    """Re-enter a store's S3 keys (after drd recover-catalog, or a key rotation).

    The store is checked with the new keys first; on failure nothing changes.
    """
    from drd.services.store_keys import set_store_keys

    key_id, secret = _keys(access_key_id, secret_access_key_file)
    result = set_store_keys(state.catalog(), state.master_key(), name, key_id, secret)
    output.say(f"store {name}: keys checked and kept ({result.location})")
    from drd.cli.system import apply_keys

    # systems' own keys there can be made, replaced or disabled again (after a recovery)
    apply_keys(state, None)


@store_group.command("list")
@home_option
@json_option
@click.pass_obj
def list_command(state: CliState, as_json: bool) -> None:
    """List the stores (never their secrets)."""
    rows = [stores.describe(row) for row in stores.store_rows(state.catalog())]
    if as_json:
        output.emit_json(rows)
        return
    output.emit_table(rows, ["name", "kind", "region", "url", "endpoint", "object_lock",
                             "credentials"],
                      empty="no stores yet: add one with 'drd store add'")


@store_group.command("check")
@home_option
@click.argument("names", nargs=-1)
@json_option
@click.pass_obj
def check_command(state: CliState, names: tuple[str, ...], as_json: bool) -> None:
    """Check that each store (or those named) is reachable, writable and readable.

    Exits 1 if any store fails, with one line per failed store naming the cause.
    """
    rows = stores.store_rows(state.catalog(), names)
    if not rows:
        raise UserError("no stores to check: add one with 'drd store add'")
    results = stores.check_stores(rows, state.master_key(), state.catalog())
    if as_json:
        output.emit_json([result.as_dict() for result in results])
    else:
        for result in results:
            if result.check is not None:
                lock = "Object Lock on" if result.check.object_lock else "no Object Lock"
                verdict = "ok" if result.ok else "FAILED"
                output.echo(f"{result.name}: {verdict} ({result.check.location}, {lock}, "
                            f"{result.check.seconds * 1000:.0f} ms)")
                if result.credentials_error:
                    output.echo(f"  credentials: FAILED: {result.credentials_error}")
                else:
                    output.echo(f"  credentials: {result.credentials}")
            else:
                output.echo(f"{result.name}: FAILED: {result.error}")
    if not all(result.ok for result in results):
        raise SystemExit(EXIT_FAILED)
