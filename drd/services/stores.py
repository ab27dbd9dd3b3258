"""The centre's stores: adding, listing, opening and checking them.

A store's secret access key is encrypted under the master key (context
``store:<name>``) before it reaches the catalog, and is decrypted only to open the
store. Adding a store checks it first, so the catalog never names a store that was
not reachable with the keys given.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa

from drd.catalog import Catalog, audit
from drd.catalog.models import Store as StoreRow
from drd.crypto.errors import CryptoError
from drd.crypto.masterkey import MasterKey
from drd.errors import UserError
from drd.names import require_name
from drd.secrets import Secret
from drd.stores.base import Store, StoreCheck
from drd.stores.errors import StoreError
from drd.stores.url import StoreSpec, open_store, validate_spec


def secret_context(name: str) -> str:
    return f"store:{name}"


def validate_store_name(name: str) -> str:
    return require_name(name, "store name")


def spec_of(row: StoreRow) -> StoreSpec:
    return StoreSpec(name=row.name, url=row.url, endpoint=row.endpoint, region=row.region,
                     object_lock=row.object_lock)


def describe(row: StoreRow) -> dict:
    """A store as shown to people and scripts: everything but the secret."""
    return {
        "name": row.name,
        "kind": row.kind,
        "url": row.url,
        "endpoint": row.endpoint,
        "region": row.region,
        "object_lock": row.object_lock,
        "access_key_id": row.access_key_id,
        "created_at": row.created_at,
    }


def add_store(catalog: Catalog, master_key: MasterKey, spec: StoreSpec,
              access_key_id: str | None, secret_access_key: Secret | None,
              actor: str = "cli") -> StoreCheck:
    """Check the store (creating its bucket or directory if missing) and register it.

    Raises :class:`UserError` for a bad name, URL or region, or a name already taken;
    :class:`~drd.stores.errors.StoreError` (exit 1) when the store cannot be reached,
    the keys are wrong or it cannot be written. Nothing is registered on failure.
    """
    validate_store_name(spec.name)
    parsed = validate_spec(spec)
    if not spec.region:
        raise UserError(f"store {spec.name!r} needs --region (policies spread copies over "
                        "regions)")
    with catalog.session() as session:
        if session.scalar(sa.select(StoreRow.id).where(StoreRow.name == spec.name)):
            raise UserError(f"a store named {spec.name!r} exists already (see drd store list)")
    store = open_store(spec, access_key_id, secret_access_key, retry_attempts=2,
                       retry_backoff=0.5)
    store.create_if_missing(object_lock=spec.object_lock)
    result = store.check()
    if spec.object_lock and not result.object_lock:
        raise UserError(
            f"store {spec.name!r}: the bucket exists without Object Lock, which cannot be "
            "turned on later here; use a new bucket or drop --object-lock"
        )
    encrypted = (master_key.encrypt(secret_access_key.reveal().encode(),
                                    secret_context(spec.name))
                 if secret_access_key else None)
    with catalog.session() as session:
        session.add(StoreRow(
            name=spec.name, kind=parsed.kind, url=spec.url, endpoint=spec.endpoint,
            region=spec.region, object_lock=spec.object_lock,
            access_key_id=access_key_id if parsed.kind == "s3" else None,
            secret_encrypted=encrypted if parsed.kind == "s3" else None,
        ))
        audit.record(session, actor, "store.add", spec.name, url=spec.url,
                     endpoint=spec.endpoint, region=spec.region, object_lock=spec.object_lock)
    return result


def store_rows(catalog: Catalog, names: Iterable[str] = ()) -> list[StoreRow]:
    """The registered stores (all, or those named), by name.

    Raises :class:`UserError` naming any store that is not registered.
    """
    wanted = list(names)
    with catalog.session() as session:
        query = sa.select(StoreRow).order_by(StoreRow.name)
        if wanted:
            query = query.where(StoreRow.name.in_(wanted))
        rows = list(session.scalars(query))
    missing = sorted(set(wanted) - {row.name for row in rows})
    if missing:
        raise UserError(f"no store named {', '.join(missing)} (see drd store list)")
    return rows


def store_regions(catalog: Catalog) -> dict[str, str]:
    """Every registered store's region, for the policies' region rule."""
    return {row.name: row.region or "" for row in store_rows(catalog)}


def open_registered(row: StoreRow, master_key: MasterKey, **options) -> Store:
    """Open a registered store with its decrypted keys."""
    secret = None
    if row.secret_encrypted is not None:
        secret = Secret(master_key.decrypt(row.secret_encrypted, secret_context(row.name)))
    return open_store(spec_of(row), row.access_key_id, secret, **options)


@dataclass(frozen=True)
class StoreHealth:
    name: str
    ok: bool
    check: StoreCheck | None = None
    error: str | None = None

    def as_dict(self) -> dict:
        result = {"name": self.name, "ok": self.ok, "error": self.error}
        if self.check:
            result.update(location=self.check.location, object_lock=self.check.object_lock,
                          versioning=self.check.versioning,
                          seconds=round(self.check.seconds, 3))
        return result


def check_stores(rows: Iterable[StoreRow], master_key: MasterKey) -> list[StoreHealth]:
    """Check each store on its own; one store failing does not stop the others.

    A store whose secret cannot be decrypted or whose recorded settings no longer
    validate is reported as failed like one that cannot be reached.
    """
    results = []
    for row in rows:
        try:
            store = open_registered(row, master_key, retry_attempts=2, retry_backoff=0.5)
            results.append(StoreHealth(row.name, True, check=store.check()))
        except CryptoError:
            results.append(StoreHealth(row.name, False, error=(
                f"store {row.name!r}: its secret key cannot be decrypted with this centre's "
                "master key (was the catalog copied from another centre?)")))
        except (StoreError, UserError) as problem:
            results.append(StoreHealth(row.name, False, error=str(problem)))
    return results
