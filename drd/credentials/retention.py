"""The default retention of brokered Object Lock buckets: how systems' objects get locked.

A system's own key has no right to set a retention (``s3:PutObjectRetention``): with it,
a compromised agent could lock its objects until any date and make its repository
unprunable (SeaweedFS evaluates no cap). So agents send no lock headers to brokered
stores, and the bucket locks every new object with its *default retention*, which the
centre sets with the store's own keys to the longest ``object_lock_days`` of the policies
naming the store (:func:`wanted_days`). It is set before an agent first writes (the
enrollment preview) and kept in step by the leader's key pass when policies change.

A bucket serves several policies: a system whose policy asks fewer days than another's
gets the longer lock (never a shorter one). The centre's own writes that carry a
retention (replication, catalog copies) keep theirs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from drd.catalog import Catalog, audit
from drd.catalog.models import Policy
from drd.catalog.models import Store as StoreRow
from drd.crypto.errors import CryptoError
from drd.crypto.masterkey import MasterKey
from drd.secrets import Secret
from drd.stores.credentials import BROKERED_KINDS
from drd.stores.errors import StoreError
from drd.stores.retry import RetryingStore
from drd.stores.url import open_store

log = logging.getLogger(__name__)


def wanted_days(store: str, policies: Iterable[Mapping[str, Any]]) -> int:
    """The longest ``object_lock_days`` of the policy documents naming ``store`` (0: none)
    (pure)."""
    return max((int(document.get("object_lock_days") or 0) for document in policies
                if store in (document.get("stores") or [])), default=0)


def ensure_default_retention(catalog: Catalog, master_key: MasterKey,
                             stores: Iterable[str] | None = None, actor: str = "daemon"
                             ) -> dict[str, str]:
    """Bring the default retention of each brokered Object Lock store (or those named) to
    :func:`wanted_days`; ``{store: what happened or why not}``. A store that fails is
    reported and left for the next call; never raises for a store."""
    from drd.credentials.reconcile import store_secret_context, store_spec

    named = set(stores) if stores is not None else None
    with catalog.read_session() as session:
        documents = [document for (document,) in session.execute(sa.select(Policy.document))]
        rows = [row for row in session.scalars(
            sa.select(StoreRow).where(StoreRow.credentials.in_(BROKERED_KINDS),
                                      StoreRow.object_lock.is_(True)))
                if named is None or row.name in named]
    done: dict[str, str] = {}
    for row in rows:
        days = wanted_days(row.name, documents)
        if days < 1:
            done[row.name] = "no policy locks it"
            continue
        try:
            secret = (Secret(master_key.decrypt(row.secret_encrypted,
                                                store_secret_context(row.name)))
                      if row.secret_encrypted is not None else None)
            store = open_store(store_spec(row), row.access_key_id, secret, retry_attempts=2)
            raw = store.inner if isinstance(store, RetryingStore) else store
            if raw.default_retention_days() == days:
                done[row.name] = f"{days} days"
                continue
            raw.set_default_retention(days)
        except (StoreError, CryptoError) as error:
            log.warning("default retention of %s: %s", row.name, error)
            done[row.name] = str(error)
            continue
        with catalog.session() as session:
            audit.record(session, actor, "store.default_retention", row.name, days=days)
        log.info("store %s locks new objects for %d days by default", row.name, days)
        done[row.name] = f"{days} days (set)"
    return done
