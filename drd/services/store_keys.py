"""Re-entering a registered store's S3 keys (``drd store set-keys``).

A recovered centre knows its stores but not their secret keys (catalog copies never
carry them), and keys get rotated: this checks the store with the new keys first, so a
wrong key is refused and the old one (if any) stays.
"""

from __future__ import annotations

import sqlalchemy as sa

from drd.catalog import Catalog, audit
from drd.catalog.models import Store as StoreRow
from drd.crypto.masterkey import MasterKey
from drd.errors import UserError
from drd.secrets import Secret
from drd.services.stores import secret_context, spec_of
from drd.stores.base import StoreCheck
from drd.stores.url import open_store


def stores_without_keys(catalog: Catalog) -> list[str]:
    """The S3 stores that have no secret key (after a recovery), by name."""
    with catalog.read_session() as session:
        return list(session.scalars(sa.select(StoreRow.name).where(
            StoreRow.kind == "s3", StoreRow.secret_encrypted.is_(None)).order_by(StoreRow.name)))


def set_store_keys(catalog: Catalog, master_key: MasterKey, name: str,
                   access_key_id: str | None, secret_access_key: Secret | None,
                   actor: str = "cli") -> StoreCheck:
    """Check store ``name`` with the given keys, then keep them (the secret encrypted).

    Raises :class:`UserError` for an unknown store, a file store (it has no keys) or
    missing keys; :class:`~drd.stores.errors.StoreError` (exit 1) when the store does not
    work with these keys -- then nothing is changed.
    """
    with catalog.session() as session:
        row = session.scalar(sa.select(StoreRow).where(StoreRow.name == name))
        if row is None:
            raise UserError(f"no store named {name!r} (see drd store list)")
        if row.kind != "s3":
            raise UserError(f"store {name!r} is a {row.kind} store: it has no keys")
        spec = spec_of(row)
    if not access_key_id or not secret_access_key:
        raise UserError(f"store {name!r} needs S3 keys: set AWS_ACCESS_KEY_ID and "
                        "AWS_SECRET_ACCESS_KEY (or --access-key-id and "
                        "--secret-access-key-file)")
    result = open_store(spec, access_key_id, secret_access_key, retry_attempts=2,
                        retry_backoff=0.5).check()
    encrypted = master_key.encrypt(secret_access_key.reveal().encode(), secret_context(name))
    with catalog.session() as session:
        row = session.scalar(sa.select(StoreRow).where(StoreRow.name == name))
        row.access_key_id = access_key_id
        row.secret_encrypted = encrypted
        row.checked_at, row.reachable, row.check_error = None, None, None
        audit.record(session, actor, "store.set_keys", name, access_key_id=access_key_id)
    return result
