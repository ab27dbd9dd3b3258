"""A system's repository in each of its stores, opened for the daemon's keyless work.

The same restic repository lives in every store a system's policy names, under
``<store prefix>/<department>/<system>/`` (:func:`drd.credentials.reconcile.repository_path`).
:func:`open_repositories` opens each of those as a :class:`~drd.stores.base.Store`
rooted at the repository, so keys are restic's own (``config``, ``data/ab/ab12...``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from drd.catalog import Catalog
from drd.catalog.models import Store as StoreRow
from drd.catalog.models import System
from drd.credentials.reconcile import repository_path
from drd.crypto.masterkey import MasterKey
from drd.errors import UserError
from drd.secrets import Secret
from drd.services.stores import secret_context
from drd.stores.base import Store
from drd.stores.url import StoreSpec, open_store


@dataclass(frozen=True)
class RepositoryStore:
    """One store holding a system's repository; ``store`` is rooted at the repository."""

    store_id: int
    name: str
    region: str
    object_lock: bool
    store: Store = field(repr=False)


@dataclass(frozen=True)
class SystemRepository:
    """A system's repository: its stores in the policy's order, and the policy itself."""

    system_id: int
    system: str
    department: str
    policy: dict[str, Any]
    stores: list[RepositoryStore]

    def store(self, name: str) -> RepositoryStore:
        for candidate in self.stores:
            if candidate.name == name:
                return candidate
        raise UserError(f"system {self.system!r} is not kept in store {name!r} "
                        f"(its stores: {', '.join(s.name for s in self.stores)})")


def repository_spec(row: StoreRow, department: str, system: str) -> StoreSpec:
    """The spec of ``row`` rooted at ``system``'s repository."""
    return StoreSpec(name=row.name,
                     url=f"{row.url.rstrip('/')}/{repository_path(department, system)}",
                     endpoint=row.endpoint, region=row.region, object_lock=row.object_lock)


def open_repository_store(row: StoreRow, department: str, system: str,
                          master_key: MasterKey, **options) -> Store:
    """Open store ``row`` rooted at ``system``'s repository, with its decrypted keys."""
    secret = None
    if row.secret_encrypted is not None:
        secret = Secret(master_key.decrypt(row.secret_encrypted, secret_context(row.name)))
    return open_store(repository_spec(row, department, system), row.access_key_id, secret,
                      **options)


def open_repositories(catalog: Catalog, master_key: MasterKey,
                      systems: Iterable[str] | None = None, *,
                      stores: Iterable[str] | None = None,
                      **options) -> list[SystemRepository]:
    """The repositories of enrolled systems with a policy (or of ``systems``), by name.

    ``stores`` keeps only those stores (a system kept in none of them is left out).
    ``options`` go to :func:`~drd.stores.url.open_store` (``retry_attempts``, ...).
    Raises :class:`UserError` for a system or store name the catalog does not know.
    """
    wanted = None if systems is None else list(systems)
    only = None if stores is None else set(stores)
    with catalog.session() as session:
        query = (sa.select(System).options(selectinload(System.department),
                                           selectinload(System.policy))
                 .order_by(System.name))
        if wanted is not None:
            query = query.where(System.name.in_(wanted))
        else:
            query = query.where(System.status == "enrolled")
        rows = list(session.scalars(query))
        if wanted is not None:
            unknown = sorted(set(wanted) - {row.name for row in rows})
            if unknown:
                raise UserError(f"no system named {', '.join(map(repr, unknown))} "
                                "(see drd status)")
        store_rows = {row.name: row for row in session.scalars(sa.select(StoreRow))}
        if only is not None:
            unknown = sorted(only - set(store_rows))
            if unknown:
                raise UserError(f"no store named {', '.join(map(repr, unknown))} "
                                "(see drd store list)")
        result = []
        for system in rows:
            if system.policy is None:
                if wanted is not None:
                    raise UserError(f"system {system.name!r} has no policy yet")
                continue
            names = [name for name in system.policy.document.get("stores", [])
                     if only is None or name in only]
            missing = [name for name in names if name not in store_rows]
            if missing:
                raise UserError(f"policy {system.policy.name!r} names stores that are not "
                                f"registered: {', '.join(missing)} (see drd store list)")
            if not names:
                continue
            result.append(SystemRepository(
                system_id=system.id, system=system.name, department=system.department.name,
                policy=dict(system.policy.document),
                stores=[RepositoryStore(
                    store_id=store_rows[name].id, name=name,
                    region=store_rows[name].region or "",
                    object_lock=store_rows[name].object_lock,
                    store=open_repository_store(store_rows[name], system.department.name,
                                                system.name, master_key, **options))
                        for name in names]))
        return result
